/** The OTA device client (host/ota/device-client.ts) against a real mosquitto and a minimal in-test server. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitStatusFor } from '../host/errors.js';
import { OtaDevice as Device, type OtaDevice, type OtaDeviceOptions } from '../host/ota/device-client.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { encodeAnnouncement, encodeBlockResponse, parseBlockRequest } from '../shared/ota/messages.js';
import { encodeRootAnnouncement } from '../shared/ota/root.js';
import { encodeStatusEvent, parseStatusEvent, type StatusEvent } from '../shared/ota/status.js';
import { ROLLOUT_ALL, topics } from '../shared/ota/topics.js';
import { fileWriter, runCli } from './support/cli-run.js';
import { makeRevocations, makeTrust } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { OtaResponder, otaWorld, until } from './support/ota-responder.js';

const world = otaWorld();
const { v0, v2 } = world;
const blocks = Math.ceil(v2.image.length / (16 * 1024)); // default block size: 16 chunks of 1 KiB
const fast = { timeoutMs: 2000, baseBackoffMs: 20, maxBackoffMs: 100, retryBaseMs: 20, retryMaxMs: 100 };

let broker: Mosquitto;
let server: OtaResponder;
const devices: OtaDevice[] = [];
const clients: MqttClient[] = [];
const dir = mkdtempSync(join(tmpdir(), 'fwseal-ota-device-'));

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
  server = await OtaResponder.start(broker.url);
});
afterAll(async () => {
  for (const d of devices) await d.stop();
  for (const c of clients) await c.endAsync();
  await server?.stop();
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function start(id: string, group: string, extra: Partial<OtaDeviceOptions> & { version?: 4 | 5 } = {}, dev = world.device()) {
  const { version = 4, ...rest } = extra;
  const d = await Device.start({
    id,
    group,
    flash: dev.flash,
    layout: dev.layout,
    trust: world.trust,
    maxTrialBoots: 2,
    pull: fast,
    mqtt: { url: broker.url, options: { protocolVersion: version, clientId: `dev-${id}-${Math.random().toString(16).slice(2, 8)}`, reconnectPeriod: 0 } },
    ...rest,
  });
  devices.push(d);
  return { d, dev };
}

async function rogue(): Promise<MqttClient> {
  const c = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
  clients.push(c);
  return c;
}

const terminal = (campaign: string) => (e: { campaign?: string; state: string }) =>
  e.campaign === campaign && ['confirmed', 'rejected', 'failed'].includes(e.state);

describe('OtaDevice over MQTT', () => {
  for (const version of [4, 5] as const) {
    it(`updates v1 -> v2 end to end on MQTT ${version === 4 ? '3.1.1' : '5'}: confirmed, counter raised, status events published`, async () => {
      const group = `g-e2e-${version}`;
      const id = `dev-e2e-${version}`;
      // Watch the status topic as a server would.
      const watcher = await rogue();
      const states: string[] = [];
      watcher.on('message', (_t, payload) => {
        const e = parseStatusEvent(payload);
        if (e.ok) states.push(e.value.state);
      });
      await watcher.subscribeAsync(topics.status('fwseal', id), { qos: 1 });
      const { d } = await start(id, group, { version });
      expect(d.state()).toMatchObject({ version: '1.0.0', counter: 5, slot: 0 });
      const done = d.waitFor(terminal(`c-e2e-${version}`));
      await server.announce(group, `c-e2e-${version}`, v2);
      expect((await done).state).toBe('confirmed');
      expect(d.state()).toMatchObject({ version: '2.0.0', counter: 6, slot: 1 });
      const reqs = server.requestsFor(id);
      expect(reqs.filter((r) => r.kind === 'block').length).toBeGreaterThan(0);
      expect(reqs.filter((r) => r.kind === 'block').length).toBeLessThan(blocks); // coalesced into multi-block requests
      expect(new Set(server.blocksFor(id)).size).toBe(blocks);
      if (version === 5) expect(reqs.every((r) => r.responseTopic === topics.reply('fwseal', id) && r.correlation?.length === 4)).toBe(true);
      else expect(reqs.every((r) => r.responseTopic === undefined)).toBe(true);
      await until(() => states.includes('confirmed'), 10_000, 'confirmed on the status topic');
      expect(states[0]).toBe('online');
      expect(states).toEqual(expect.arrayContaining(['accepted', 'downloading', 'verifying', 'installed', 'confirmed']));
      // The same campaign again (e.g. a restarted server): reported confirmed, nothing fetched.
      const before = server.requestsFor(id).length;
      const again = d.waitFor(terminal(`c-e2e-${version}b`));
      await server.announce(group, `c-e2e-${version}b`, v2);
      expect((await again).state).toBe('confirmed');
      expect(server.requestsFor(id).length).toBe(before);
      expect(d.stats().malformed).toBe(0);
    });
  }

  it('rejects a rogue block response injected on the reply topic, fetches the block again and completes', async () => {
    const group = 'g-rogue';
    const id = 'dev-rogue';
    const r = await rogue();
    // The rogue sees the device's first block request and answers it with tampered data before the server.
    let injected = 0;
    r.on('message', (_t, payload) => {
      const m = parseBlockRequest(payload);
      if (!m.ok || injected > 0) return;
      const block = m.value.ranges![0]![0];
      const data = v2.image.slice(block * 16384, (block + 1) * 16384);
      data[100] ^= 1;
      injected++;
      r.publish(topics.reply('fwseal', id), Buffer.from(encodeBlockResponse({ campaign: 'c-rogue', requestId: m.value.requestId, block, data })), { qos: 1 });
    });
    await r.subscribeAsync(topics.request('fwseal', 'c-rogue', id), { qos: 1 });
    server.blockDelay = (req, n) => (req.device === id && n === 0 ? 300 : 0);
    try {
      const { d } = await start(id, group);
      const done = d.waitFor(terminal('c-rogue'));
      await server.announce(group, 'c-rogue', v2);
      expect((await done).state).toBe('confirmed');
      expect(injected).toBe(1);
      expect(d.stats().rejected).toBeGreaterThanOrEqual(1);
      const first = server.requestsFor(id).find((q) => q.kind === 'block')!.blocks[0]!;
      expect(server.blocksFor(id).filter((b) => b === first).length).toBe(2);
      expect(d.state().counter).toBe(6);
    } finally {
      server.blockDelay = () => 0;
    }
  });

  it('reports rejected with ROLLBACK for an announcement of an older release, and does not retry it', async () => {
    const group = 'g-old';
    const id = 'dev-old';
    const { d } = await start(id, group);
    const done = d.waitFor(terminal('c-old'));
    await server.announce(group, 'c-old', v0);
    const e = await done;
    expect(e).toMatchObject({ state: 'rejected', code: CODES.ROLLBACK });
    expect(server.requestsFor(id).map((q) => q.kind)).toEqual(['manifest']);
    // Re-announced under a new campaign id: refused from memory, no request.
    const again = d.waitFor(terminal('c-old2'));
    await server.announce(group, 'c-old2', v0);
    expect(await again).toMatchObject({ state: 'rejected', code: CODES.ROLLBACK });
    expect(server.requestsFor(id).length).toBe(1);
    expect(d.state()).toMatchObject({ version: '1.0.0', counter: 5 });
  });

  it('reports how long its checks took and where it refused (SPEC.md §12.2 keys 15–17): manifest and image times, the stage of every refusal', async () => {
    const group = 'g-report';
    const id = 'dev-report';
    const { d } = await start(id, group);
    const events: StatusEvent[] = [];
    d.on('status', (e) => events.push(e));
    const done = d.waitFor(terminal('c-report'));
    await server.announce(group, 'c-report', v2);
    expect((await done).state).toBe('confirmed');
    const of = (state: string) => events.filter((e) => e.state === state);
    expect(of('accepted')).toEqual([{ campaign: 'c-report', device: id, state: 'accepted', manifestMs: expect.any(Number) }]);
    expect(of('installed')).toEqual([{ campaign: 'c-report', device: id, state: 'installed', imageMs: expect.any(Number) }]);
    for (const e of [...of('accepted'), ...of('installed')]) expect(Number.isInteger(e.manifestMs ?? e.imageMs)).toBe(true);
    expect([...of('downloading'), ...of('verifying'), ...of('confirmed')].every((e) => e.manifestMs === undefined && e.imageMs === undefined)).toBe(true);
    // An older release: refused at the manifest, with the time the check took.
    const refused = d.waitFor(terminal('c-report-old'));
    await server.announce(group, 'c-report-old', v0);
    expect(await refused).toMatchObject({ state: 'rejected', code: CODES.ROLLBACK, stage: 'manifest', manifestMs: expect.any(Number) });
    // A root announcement the device refuses: the bundle (one root signature of two), then the list (release keys sign no list).
    const w = world.w;
    const trust = makeTrust({ root: [w.A, w.B, w.C], rootThreshold: 2, release: [w.R1, w.R2, w.R3], releaseThreshold: 2, signers: [w.A], version: 2 });
    const list = makeRevocations({ version: 3, signers: [w.R1, w.R2] });
    // `online` goes to the status topic only (no `status` event): watch it as a server would.
    const r = await rogue();
    const reports = new Promise<StatusEvent[]>((resolve) => {
      const got: StatusEvent[] = [];
      r.on('message', (_t, payload) => {
        const e = parseStatusEvent(payload);
        if (e.ok && e.value.state === 'online' && e.value.code !== undefined && got.push(e.value) === 2) resolve(got);
      });
    });
    await r.subscribeAsync(topics.status('fwseal', id), { qos: 1 });
    await r.publishAsync(topics.root('fwseal'), Buffer.from(encodeRootAnnouncement({ trustVersion: 2, trust, revocations: list })), { qos: 1 });
    expect((await reports).map((e) => [e.stage, e.code])).toEqual([
      ['trust', CODES.TRUST_THRESHOLD_NOT_MET],
      ['revocation', CODES.REVOCATION_THRESHOLD_NOT_MET],
    ]);
    expect(d.stats().rootRefused).toBe(2);
  });

  it('resumes after a crash mid-download: the restarted device fetches only the missing blocks', async () => {
    const group = 'g-crash';
    const id = 'dev-crash';
    const { d, dev } = await start(id, group, { pull: { ...fast, window: 2 } });
    const half = new Promise<void>((resolve) =>
      d.on('progress', (done: number) => {
        if (done >= blocks / 2) resolve();
      }),
    );
    await server.announce(group, 'c-crash', v2);
    await half;
    d.crash();
    const firstRun = server.blocksFor(id).length;
    expect(firstRun).toBeLessThan(blocks);
    const { d: d2 } = await start(id, group, {}, dev);
    const done = d2.waitFor(terminal('c-crash'));
    expect((await done).state).toBe('confirmed');
    const second = server.blocksFor(id).length - firstRun;
    expect(second).toBeGreaterThan(0);
    expect(second).toBeLessThan(blocks);
    expect(new Set(server.blocksFor(id)).size).toBe(blocks);
    expect(d2.state()).toMatchObject({ version: '2.0.0', counter: 6 });
  });

  it('asks for nothing while not eligible (rollout 0), then updates once the rollout includes it', async () => {
    const group = 'g-wave';
    const id = 'dev-wave';
    const { d } = await start(id, group);
    await server.announce(group, 'c-wave', v2, { rollout: 0 });
    await until(() => d.state().phase === 'waiting', 10_000, 'waiting');
    expect(server.requestsFor(id)).toEqual([]);
    const done = d.waitFor(terminal('c-wave'));
    await server.rollout(group, 'c-wave', ROLLOUT_ALL);
    expect((await done).state).toBe('confirmed');
  });

  it('stops pulling when the rollout drops to 0 mid-download and resumes when it is restored', async () => {
    const group = 'g-pause';
    const id = 'dev-pause';
    const { d } = await start(id, group, { pull: { ...fast, window: 1 } });
    const some = new Promise<void>((resolve) =>
      d.on('progress', (n: number) => {
        if (n >= 3) resolve();
      }),
    );
    await server.announce(group, 'c-pause', v2);
    await some;
    await server.rollout(group, 'c-pause', 0);
    await until(() => d.state().phase === 'waiting', 10_000, 'waiting');
    const paused = server.requestsFor(id).length;
    const done = d.waitFor(terminal('c-pause'));
    await server.rollout(group, 'c-pause', ROLLOUT_ALL);
    expect((await done).state).toBe('confirmed');
    expect(server.requestsFor(id).length).toBeGreaterThan(paused);
    expect(server.blocksFor(id).length).toBeLessThan(blocks + 4);
  });

  it('stops a download when the campaign is withdrawn (empty retained payload); a new campaign of the same release resumes it', async () => {
    const group = 'g-withdraw';
    const id = 'dev-withdraw';
    const { d } = await start(id, group, { pull: { ...fast, window: 1 } });
    const some = new Promise<void>((resolve) =>
      d.on('progress', (n: number) => {
        if (n >= 4) resolve();
      }),
    );
    await server.announce(group, 'c-withdraw', v2);
    await some;
    await server.withdraw(group);
    await until(() => d.state().phase === 'idle', 10_000, 'idle after the withdrawal');
    expect(d.state().lastStatus?.state).toBe('downloading');
    const before = server.blocksFor(id).length;
    expect(before).toBeLessThan(blocks);
    const done = d.waitFor(terminal('c-withdraw2'));
    await server.announce(group, 'c-withdraw2', v2);
    expect((await done).state).toBe('confirmed');
    expect(server.blocksFor(id).length - before).toBeLessThan(blocks);
    expect(new Set(server.blocksFor(id)).size).toBe(blocks);
  });

  it('survives a broker crash mid-download: reconnects and completes the update, fetching only the missing blocks', async () => {
    const b2 = await startMosquitto({ persistence: true });
    let s2 = await OtaResponder.start(b2.url);
    const id = 'dev-broker';
    const group = 'g-broker';
    const dev = world.device();
    const d = await Device.start({
      id,
      group,
      flash: dev.flash,
      layout: dev.layout,
      trust: world.trust,
      maxTrialBoots: 2,
      pull: { ...fast, window: 1, timeoutMs: 500 },
      mqtt: { url: b2.url, options: { protocolVersion: 4, clientId: `dev-${id}`, reconnectPeriod: 100 } },
    });
    try {
      const some = new Promise<void>((resolve) =>
        d.on('progress', (n: number) => {
          if (n >= 4) resolve();
        }),
      );
      await s2.announce(group, 'c-broker', v2);
      await some;
      await b2.kill();
      await s2.stop().catch(() => undefined);
      await b2.start();
      s2 = await OtaResponder.start(b2.url);
      const done = d.waitFor(terminal('c-broker'));
      await s2.announce(group, 'c-broker', v2);
      expect((await done).state).toBe('confirmed');
      expect(d.state()).toMatchObject({ version: '2.0.0', counter: 6 });
      // After the restart only the blocks still missing were fetched.
      expect(s2.blocksFor(id).length).toBeLessThan(blocks);
    } finally {
      await d.stop();
      await s2.stop().catch(() => undefined);
      await b2.stop();
    }
  });

  it('retries CAMPAIGN_INACTIVE replies and completes once the server serves again', async () => {
    const group = 'g-inactive';
    const id = 'dev-inactive';
    const { d } = await start(id, group, { pull: { ...fast, window: 2, maxAttempts: 2 } });
    let switched = false;
    const some = new Promise<void>((resolve) =>
      d.on('progress', (n: number) => {
        if (n >= 2 && !switched) {
          switched = true;
          server.setMode('c-inactive', 'inactive');
          resolve();
        }
      }),
    );
    await server.announce(group, 'c-inactive', v2);
    await some;
    const at = server.requestsFor(id).length;
    await until(() => server.requestsFor(id).length >= at + 6, 20_000, 'retries');
    expect(d.state().lastStatus?.state).not.toBe('failed');
    const done = d.waitFor(terminal('c-inactive'));
    server.setMode('c-inactive', 'serve');
    expect((await done).state).toBe('confirmed');
  });

  it('fails with UNKNOWN_CAMPAIGN (602) when the server does not know the campaign', async () => {
    const group = 'g-unknown';
    const id = 'dev-unknown';
    const { d } = await start(id, group);
    const done = d.waitFor(terminal('c-unknown'));
    await server.announce(group, 'c-unknown', v2, { mode: 'unknown' });
    expect(await done).toMatchObject({ state: 'failed', code: CODES.UNKNOWN_CAMPAIGN });
    expect(d.state()).toMatchObject({ version: '1.0.0', counter: 5 });
  });

  it('counts malformed and oversize messages on the reply and announce topics and keeps working', async () => {
    const group = 'g-junk';
    const id = 'dev-junk';
    const { d } = await start(id, group);
    const r = await rogue();
    const junk = [
      Buffer.from([0xff, 0x00, 0x13]),
      Buffer.from('not cbor at all'),
      Buffer.alloc(LIMITS.maxOtaMessageBytes + 1000, 0x41),
      Buffer.from(encodeStatusEvent({ device: id, state: 'online', group })), // the wrong message type
      Buffer.from(
        encodeAnnouncement({
          campaign: 'x',
          manifestDigest: new Uint8Array(32),
          manifestSize: 10,
          imageSize: 1,
          chunkSize: 512,
          blockSize: 512,
          pageCount: 1,
          rollout: 0,
        }),
      ).subarray(0, 20),
    ];
    for (const j of junk) {
      await r.publishAsync(topics.reply('fwseal', id), j, { qos: 1 });
      await r.publishAsync(topics.announce('fwseal', group), j, { qos: 1 });
    }
    await until(() => d.stats().malformed >= 2 * junk.length, 10_000, 'malformed count');
    expect(d.stats().malformed).toBe(2 * junk.length);
    const done = d.waitFor(terminal('c-junk'));
    await server.announce(group, 'c-junk', v2);
    expect((await done).state).toBe('confirmed');
  });
});

describe('fwseal device run --broker', () => {
  const file = fileWriter(dir);
  const trust = file('trust.cbor', world.trust);
  const v1m = file('v1.cose', world.v1.envelope);
  const v1i = file('v1.bin', world.v1.image);
  const cli = (...argv: string[]) => runCli(argv);

  it('updates a provisioned device from an MQTT campaign and exits after it (--exit-after-update)', async () => {
    const state = join(dir, 'cli-dev');
    expect(
      (
        await cli(
          'device',
          'provision',
          '--state',
          state,
          '--trust',
          trust,
          '--device-class',
          'acme-gw',
          '--manifest',
          v1m,
          '--image',
          v1i,
          '--slot-size',
          '524288',
        )
      ).status,
    ).toBe(0);
    await server.announce('g-cli', 'c-cli', v2);
    const base = ['device', 'run', '--broker', broker.url, '--id', 'cli-1', '--group', 'g-cli', '--trust', trust, '--state', state];
    const wrong = await cli(...base, '--device-class', 'other-class', '--exit-after-update');
    expect(wrong.status).toBe(2);
    expect(wrong.err).toContain(`code ${CODES.USAGE}`);
    const r = await cli(...base, '--device-class', 'acme-gw', '--exit-after-update', '--json');
    expect(r.err).toBe('');
    expect(r.status).toBe(0);
    const last = JSON.parse(r.out.trim().split('\n').pop()!) as { state: string; version: string; counter: number };
    expect(last).toMatchObject({ state: 'confirmed', version: '2.0.0', counter: 6 });
    // A second run finds v2 installed: confirmed again without a download.
    const before = server.requestsFor('cli-1').length;
    const again = await cli(...base, '--device-class', 'acme-gw', '--exit-after-update');
    expect(again.status).toBe(0);
    expect(again.out).toContain('confirmed');
    expect(server.requestsFor('cli-1').length).toBe(before);
  });

  it('exits 1 when the campaign is rejected, and reports BROKER_UNREACHABLE without a broker', async () => {
    const state = join(dir, 'cli-dev2');
    expect(
      (
        await cli(
          'device',
          'provision',
          '--state',
          state,
          '--trust',
          trust,
          '--device-class',
          'acme-gw',
          '--manifest',
          v1m,
          '--image',
          v1i,
          '--slot-size',
          '524288',
        )
      ).status,
    ).toBe(0);
    await server.announce('g-cli2', 'c-cli2', v0);
    const base = [
      'device',
      'run',
      '--id',
      'cli-2',
      '--group',
      'g-cli2',
      '--trust',
      trust,
      '--state',
      state,
      '--device-class',
      'acme-gw',
      '--exit-after-update',
    ];
    const r = await cli(...base, '--broker', broker.url, '--json');
    expect(r.status).toBe(1);
    expect(JSON.parse(r.out.trim().split('\n').pop()!)).toMatchObject({ state: 'rejected', code: CODES.ROLLBACK });
    const port = broker.port === 65535 ? 65534 : broker.port + 1;
    const none = await cli(...base, '--broker', `mqtt://127.0.0.1:${port}`, '--connect-timeout', '1000');
    expect(none.status).toBe(exitStatusFor(CODES.BROKER_UNREACHABLE));
    expect(none.err).toContain(`code ${CODES.BROKER_UNREACHABLE}`);
  });
});
