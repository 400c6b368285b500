/**
 * Rollouts that always finish (issue 15 item 1; SPEC.md §12.9 "Rollouts that finish", "Campaign
 * events"), against a real mosquitto and the real server, raw MQTT clients acting as devices: a silent
 * device times out (its own end state, outside the failure rate) so the campaign completes, and moves
 * on when it comes back; the failure-rate rule waits for --abort-min-devices; a soak between waves; a
 * manual gate opened with `next`; a device excluded; several instances take each step once; and who
 * did what is in the campaign's events and `campaign status`. No timed assertions: short timeouts and
 * soaks, a fast tick, and waits for states; orderings are checked on recorded times.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureLog } from '../host/ota/log.js';
import { type OtaServer, type OtaServerOptions } from '../host/ota/server.js';
import { openStore } from '../host/ota/store.js';
import { CODES } from '../shared/codes.js';
import { encodeStatusEvent, offlineWill, parseStatusEvent, STATUS_STATES } from '../shared/ota/status.js';
import { topics } from '../shared/ota/topics.js';
import { runCli } from './support/cli-run.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { errorOf, eventually, RawDevice } from './support/ota-client.js';
import { api, createCampaign, metricsOf, sample, TestServers } from './support/ota-harness.js';

const w = standardWorld();
const image = detBytes(40_000, 'rollout image');
const release = { envelope: makeManifestEnvelope(makeManifest(image, { version: '2.0.0', securityCounter: 8 }), [w.R1, w.R2]), image };

let broker: Mosquitto;
let server: OtaServer;
const devices: RawDevice[] = [];
const timers: NodeJS.Timeout[] = [];

/** The file's servers on fresh data folders (test/support/ota-harness.ts); closed and removed in afterAll. */
const servers = new TestServers({ broker: () => broker.url, trust: w.trust, tickMs: 50, tag: 'rollout' });
const tempDir = (): string => servers.tempDir();
const startServer = (opts: Partial<OtaServerOptions> = {}): Promise<OtaServer> => servers.start(opts);

/** Devices of `group` that reported online (version 1.0.0); known to the server before the campaign. */
async function fleet(s: OtaServer, group: string, ids: string[], prefix = 'fwseal'): Promise<Map<string, RawDevice>> {
  const out = new Map<string, RawDevice>();
  for (const id of ids) {
    const d = await RawDevice.connect(broker.url, id, { prefix });
    devices.push(d);
    await d.online(group);
    out.set(id, d);
  }
  await eventually(async () => (await s.store.devices(group)).length === ids.length, 10_000, `${group} known`);
  return out;
}

/** A device that keeps reporting online (never silent), so only the device under test can time out. */
function keepTalking(d: RawDevice, group: string): void {
  timers.push(setInterval(() => void d.online(group).catch(() => {}), 200));
}

type Detail = {
  id: string;
  state: string;
  wave: number;
  counts: Record<string, number>;
  failureRate: number;
  waitingFor: string | null;
  waveDoneAt: number | null;
  devices: { id: string; state: string; updated: number | null }[];
  events: { at: number; action: string; actor: string; detail: string }[];
};
const detailOf = async (s: OtaServer, id: string): Promise<Detail> => (await api(s, 'GET', `/api/campaigns/${id}`)).body as Detail;
const until = (s: OtaServer, id: string, what: string, check: (d: Detail) => boolean, ms = 15_000) =>
  eventually(
    async () => {
      const d = await detailOf(s, id);
      return check(d) ? d : null;
    },
    ms,
    what,
  );

/** Fetch the manifest (the server then counts the device's events, §12.9 rule 5) and report `state`. */
async function take(d: RawDevice, campaign: string, state: 'confirmed' | 'failed', rid: number): Promise<void> {
  expect((await d.manifest(campaign, rid)).type).toBe('manifestResponse');
  await d.status({ campaign, device: d.id, state, ...(state === 'failed' ? { code: CODES.TRANSPORT_TIMEOUT } : {}) });
}

async function create(s: OtaServer, group: string, extra: Record<string, unknown>): Promise<Detail> {
  const r = await createCampaign(s, group, release, extra);
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body as Detail;
}

/** The main server's log (host/ota/log.ts): its timeout warnings are checked below. */
const serverLog = captureLog();

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
  server = await startServer({ log: serverLog.log });
});

afterAll(async () => {
  for (const t of timers) clearInterval(t);
  for (const d of devices) await d.close().catch(() => {});
  await servers.close();
  await broker?.stop();
});

describe('the offline status event (the MQTT last will, SPEC.md §12.2)', () => {
  it('carries the device and nothing else; the will is on its own status topic, QoS 1, not retained', () => {
    const bytes = encodeStatusEvent({ device: 'd1', state: 'offline' });
    const r = parseStatusEvent(bytes);
    expect(r.ok && r.value).toEqual({ device: 'd1', state: 'offline' });
    expect(STATUS_STATES.indexOf('offline')).toBe(8);
    expect(() => encodeStatusEvent({ device: 'd1', state: 'offline', campaign: 'c1' })).toThrow();
    expect(() => encodeStatusEvent({ device: 'd1', state: 'offline', group: 'g' })).toThrow();
    const will = offlineWill('fleet', 'd1');
    expect({ topic: will.topic, qos: will.qos, retain: will.retain }).toEqual({ topic: topics.status('fleet', 'd1'), qos: 1, retain: false });
    expect(parseStatusEvent(will.payload).ok && parseStatusEvent(will.payload)).toMatchObject({ value: { device: 'd1', state: 'offline' } });
  });
});

describe('a silent device times out and the campaign finishes (the issue: "running wave 1/2 … waiting 1" forever)', () => {
  it('the silent device of wave 1 is timed-out, wave 2 opens, the campaign completes; it moves on when it comes back and confirms', async () => {
    const devs = await fleet(server, 'g-silent', ['s-1', 's-2']);
    const c = await create(server, 'g-silent', { waves: [50, 100], deviceTimeoutMs: 1000 });
    const silent = c.devices.find((d) => d.state === 'waiting')!.id; // the one device of the 50% wave
    const talker = [...devs.keys()].find((id) => id !== silent)!;
    keepTalking(devs.get(talker)!, 'g-silent');
    const opened = await until(server, c.id, 'wave 2 open', (d) => d.wave === 2);
    expect(opened.devices.find((d) => d.id === silent)?.state).toBe('timed-out');
    // The log says so too: one warning naming the campaign, the device and the reason.
    const warned = serverLog.events().filter((e) => e.event === 'campaign.timeout' && e.campaign === c.id);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatchObject({ level: 'warn', reason: 'timeout', devices: 1, first: [silent], actor: 'server' });
    await take(devs.get(talker)!, c.id, 'confirmed', 1);
    const done = await until(server, c.id, 'completed', (d) => d.state === 'completed');
    expect(done.counts).toMatchObject({ confirmed: 1, 'timed-out': 1, failed: 0, rejected: 0 });
    expect(done.failureRate).toBe(0);
    const metrics = await metricsOf(server);
    expect(sample(metrics, 'fwseal_campaign_devices', `{campaign="${c.id}",state="timed-out"}`)).toBe(1);
    expect(done.events.map((e) => [e.action, e.actor])).toEqual([
      ['create', 'api'],
      ['timeout', 'server'],
      ['wave', 'server'],
      ['complete', 'server'],
    ]);
    expect(done.events[1].detail).toContain(silent);
    const text = await runCli(['campaign', 'status', c.id, '--server', server.address()!.url]);
    expect(text.status).toBe(0);
    expect(text.out).toMatch(/timed-out 1/);
    expect(text.out).toMatch(/server {2}timeout/);
    // It comes back: its own confirmed replaces timed-out (a progress step would not).
    await devs.get(silent)!.status({ campaign: c.id, device: silent, state: 'downloading', done: 1, total: 3 });
    await take(devs.get(silent)!, c.id, 'confirmed', 2);
    const back = await until(server, c.id, 'the silent device confirmed', (d) => d.counts.confirmed === 2);
    expect(back.counts['timed-out']).toBe(0);
  });
});

describe('--abort-min-devices', () => {
  it('the failure-rate rule halts only once that many devices reported an end state', async () => {
    const devs = [...(await fleet(server, 'g-min', ['m-1', 'm-2', 'm-3'])).values()];
    const c = await create(server, 'g-min', { abortFailureRate: 0.1, abortMinDevices: 3 });
    await take(devs[0], c.id, 'failed', 1);
    await until(server, c.id, 'the failure counted', (d) => d.counts.failed === 1);
    await server.tick();
    expect((await detailOf(server, c.id)).state).toBe('running'); // 1 of 1 failed, but only 1 reported
    await take(devs[1], c.id, 'confirmed', 2);
    await until(server, c.id, 'the second counted', (d) => d.counts.confirmed === 1);
    await server.tick();
    expect((await detailOf(server, c.id)).state).toBe('running');
    await take(devs[2], c.id, 'confirmed', 3);
    const halted = await until(server, c.id, 'halted', (d) => d.state === 'halted');
    expect(halted.counts).toMatchObject({ failed: 1, confirmed: 2 });
    const halt = halted.events.find((e) => e.action === 'halt')!;
    expect(halt.actor).toBe('server');
    expect(halt.detail).toContain('TRANSPORT_TIMEOUT');
  });
});

describe('--wave-soak', () => {
  it('after a wave is done the next opens only once the soak is over', async () => {
    const devs = await fleet(server, 'g-soak', ['k-1', 'k-2']);
    const c = await create(server, 'g-soak', { waves: [50, 100], waveSoakMs: 1500 });
    const first = c.devices.find((d) => d.state === 'waiting')!.id;
    await take(devs.get(first)!, c.id, 'confirmed', 1);
    const opened = await until(server, c.id, 'wave 2 open', (d) => d.wave === 2);
    const confirmedAt = opened.devices.find((d) => d.id === first)!.updated!;
    const wave = opened.events.find((e) => e.action === 'wave')!;
    expect(wave.at - confirmedAt).toBeGreaterThanOrEqual(1500); // the soak counted from when wave 1 was done
  });
});

describe('--wave-gate manual and campaign next', () => {
  it('the next wave opens only when an operator says next; who did what is in the events and in campaign status', async () => {
    const devs = await fleet(server, 'g-gate', ['q-1', 'q-2']);
    const c = await create(server, 'g-gate', { waves: [50, 100], waveGate: 'manual' });
    const auto = await create(server, 'g-auto', {});
    expect((await api(server, 'POST', `/api/campaigns/${auto.id}/next`)).body.code).toBe(CODES.CONFLICT); // no manual gate
    expect((await api(server, 'POST', `/api/campaigns/${c.id}/next`)).status).toBe(409); // wave 1 not done
    expect((await api(server, 'POST', '/api/campaigns/none/next')).status).toBe(404);
    const first = c.devices.find((d) => d.state === 'waiting')!.id;
    await take(devs.get(first)!, c.id, 'confirmed', 1);
    await until(server, c.id, 'waiting for the operator', (d) => d.waitingFor === 'operator');
    await server.tick();
    await server.tick();
    expect((await detailOf(server, c.id)).wave).toBe(1);
    await server.transition(c.id, 'pause', 'alice');
    expect((await api(server, 'POST', `/api/campaigns/${c.id}/resume`)).status).toBe(200);
    const next = await api(server, 'POST', `/api/campaigns/${c.id}/next`);
    expect(next.status).toBe(200);
    expect(next.body.wave).toBe(2);
    expect((await api(server, 'POST', `/api/campaigns/${c.id}/next`)).status).toBe(409); // the last wave is open
    const actions = (next.body as Detail).events.map((e) => `${e.actor} ${e.action}`);
    expect(actions).toEqual(['api create', 'alice pause', 'api resume', 'api next', 'server wave']);
    const text = await runCli(['campaign', 'status', c.id, '--server', server.address()!.url]);
    expect(text.out).toMatch(/alice {2}pause/);
    expect(text.out).toMatch(/api {2}next/);
  });
});

describe('campaign exclude', () => {
  it('the device leaves the campaign: not counted, refused CAMPAIGN_INACTIVE, its events ignored; the campaign completes without it', async () => {
    const devs = await fleet(server, 'g-excl', ['x-1', 'x-2']);
    const c = await create(server, 'g-excl', {});
    const ex = (body: unknown, id = c.id) => api(server, 'POST', `/api/campaigns/${id}/exclude`, body);
    expect((await ex({ device: 'x-1' })).status).toBe(200);
    expect((await ex({ device: 'x-1' })).status).toBe(409);
    expect((await ex({ device: 'nobody' })).status).toBe(404);
    expect((await ex({ device: 'x-1' }, 'none')).status).toBe(404);
    expect((await ex({ device: 'bad/id' })).body.code).toBe(CODES.BAD_VALUE);
    expect((await ex({ device: 'x-2', more: 1 })).body.code).toBe(CODES.UNKNOWN_KEY);
    expect((await ex({})).body.code).toBe(CODES.MISSING_FIELD);
    const refused = await devs.get('x-1')!.manifest(c.id, 1);
    expect(errorOf(refused).code).toBe(CODES.CAMPAIGN_INACTIVE);
    await devs.get('x-1')!.status({ campaign: c.id, device: 'x-1', state: 'failed', code: CODES.TRANSPORT_TIMEOUT });
    await take(devs.get('x-2')!, c.id, 'confirmed', 2);
    const done = await until(server, c.id, 'completed', (d) => d.state === 'completed');
    expect(done.counts).toMatchObject({ excluded: 1, confirmed: 1, failed: 0 });
    expect(done.failureRate).toBe(0);
    expect(done.devices.find((d) => d.id === 'x-1')?.state).toBe('excluded');
    expect(done.events.find((e) => e.action === 'exclude')).toMatchObject({ actor: 'api', detail: 'device x-1' });
  });
});

describe('several instances on one data folder', () => {
  it('both tick, yet each timeout, wave step and completion is taken and recorded once', async () => {
    // Their own prefix: the broker shares each status event among every server of a prefix.
    const dataDir = tempDir();
    const a = await startServer({ dataDir, tickMs: 20, prefix: 'two' });
    const b = await startServer({ dataDir, tickMs: 20, prefix: 'two' });
    const devs = await fleet(a, 'g-two', ['t-1', 't-2', 't-3'], 'two');
    const c = await create(a, 'g-two', { waves: [34, 100], deviceTimeoutMs: 1000 });
    const done = await until(b, c.id, 'completed', (d) => d.state === 'completed');
    expect(done.counts['timed-out']).toBe(3);
    expect(done.events.map((e) => e.action)).toEqual(['create', 'timeout', 'wave', 'timeout', 'complete']);
    expect(devs.size).toBe(3);
  });
});

describe('a data folder from before the rollout rules and the fleet view', () => {
  it('gets the new columns when first opened: a campaign in flight counts silence from the upgrade and has no events yet', async () => {
    const dir = tempDir();
    const before = await startServer({ dataDir: dir, prefix: 'old' });
    const c = await create(before, 'g-old', {});
    await before.close();
    const db = new Database(join(dir, 'fwseal.db'));
    db.exec('DROP TABLE campaign_events');
    for (const col of ['device_timeout_ms', 'abort_min_devices', 'wave_soak_ms', 'wave_gate', 'wave_started', 'wave_done_at', 'approved_wave'])
      db.exec(`ALTER TABLE campaigns DROP COLUMN ${col}`);
    for (const col of ['online', 'last_error_code', 'last_error_campaign']) db.exec(`ALTER TABLE devices DROP COLUMN ${col}`);
    db.close();
    const opened = Date.now();
    const store = await openStore({ kind: 'sqlite', dataDir: dir });
    try {
      const row = (await store.campaign(c.id))!;
      expect([row.device_timeout_ms, row.abort_min_devices, row.wave_soak_ms, row.wave_gate, row.wave_done_at]).toEqual([3_600_000, 1, 0, 'auto', null]);
      expect(row.wave_started).toBeGreaterThanOrEqual(opened);
      expect(await store.events(c.id, 10)).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
