/**
 * OTA end to end against a real mosquitto: the real `fwseal serve` (OtaServer, its store, HTTP API),
 * the operator CLI (`fwseal campaign ...` through main()), and real device clients (OtaDevice over
 * simulated flash). Issue list: waves over 50 devices, a rogue publisher, a replayed older manifest,
 * broker and server restarts mid-campaign, a device reset mid-download, junk on every topic. The
 * waves and the rogue publisher run on an anonymous broker and on one that enforces the shipped ACL
 * file (SPEC.md §12.12) with a password per device and one for the servers; every case runs on both
 * stores, SQLite and a real PostgreSQL (test/support/postgres.ts), a fresh database per case.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { SimFlash } from '../device/sim/flash.js';
import { fleetVerifier, nodeSha256 } from '../host/hash.js';
import { OtaDevice } from '../host/ota/device-client.js';
import { OtaServer } from '../host/ota/server.js';
import { CODES } from '../shared/codes.js';
import { encodeBlockResponse, parseAnnouncement, parseBlockRequest, requestedBlocks } from '../shared/ota/messages.js';
import { rolloutBucket, topics } from '../shared/ota/topics.js';
import { fileWriter, runCli } from './support/cli-run.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Credentials, fleetAuth, type Mosquitto, SERVER_USERNAME, startMosquitto } from './support/mosquitto.js';
import { type ServerState, STORE_KINDS, type StoreKind, stateIn } from './support/ota-harness.js';
import { onePostgres } from './support/postgres.js';

const w = standardWorld();
const verifier = fleetVerifier();
const release = (version: string, counter: number, size: number) => {
  const image = detBytes(size, `e2e ${version}`);
  const envelope = makeManifestEnvelope(makeManifest(image, { version, securityCounter: counter, chunkSize: 4096 }), [w.R1, w.R2]);
  return { version, counter, image, envelope };
};
const v1 = release('1.0.0', 5, 50_000);
const v2 = release('2.0.0', 6, 256 * 1024);
const v3 = release('3.0.0', 7, 460_000);
const old = release('0.9.0', 4, 60_000);

const E = 4096;
const SLOT = 512 * 1024;
const geometry = { size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
const layout = createLayout(geometry, { slotSize: SLOT });

const dir = mkdtempSync(join(tmpdir(), 'fwseal-e2e-'));
const file = fileWriter(dir);
const files = {
  v2: { manifest: file('v2.cose', v2.envelope), image: file('v2.bin', v2.image) },
  v3: { manifest: file('v3.cose', v3.envelope), image: file('v3.bin', v3.image) },
  old: { manifest: file('old.cose', old.envelope), image: file('old.bin', old.image) },
};

let broker: Mosquitto;
/** Broker credentials of a user when the broker enforces the ACL file; none on an anonymous broker. */
let login: (user: string) => Credentials | object = () => ({});
const live: { stop(): Promise<void> }[] = [];

/** Each describe block brings its broker: anonymous, or with the ACL file and these devices' credentials. */
function useBroker(acl?: readonly { id: string; group: string }[]): void {
  beforeAll(async () => {
    const fleet = acl ? fleetAuth(acl) : null;
    broker = await startMosquitto(fleet ? { auth: fleet.auth } : {});
    login = fleet ? fleet.credentials : () => ({});
  });
  afterAll(async () => {
    await broker?.stop();
  });
}

afterEach(async () => {
  await Promise.allSettled(live.splice(0).map((x) => x.stop()));
});
/** One PostgreSQL for the file, started when a postgresql case first needs a database. */
const postgres = onePostgres();
afterAll(async () => {
  await postgres.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Fresh state for one case's server in dir/NAME-STORE: SQLite there, or a new database with the folder as its cache. */
const state = (name: string, store: StoreKind): Promise<ServerState> => stateIn(store, join(dir, `${name}-${store}`), postgres);

async function startServer(where: ServerState, coalesceMs?: number): Promise<OtaServer> {
  const s = await OtaServer.start({
    mqtt: {
      url: broker.url,
      options: { protocolVersion: 5, clientId: `e2e-server-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 200, ...login(SERVER_USERNAME) },
    },
    ...where,
    trust: w.trust,
    http: { host: '127.0.0.1', port: 0 },
    tickMs: 100,
    ...(coalesceMs !== undefined ? { coalesceMs } : {}),
  });
  live.push({ stop: () => s.close() });
  return s;
}

type Sim = { id: string; flash: SimFlash; device: OtaDevice; events: string[] };

async function startDevice(id: string, group: string, flash?: SimFlash, window = 8): Promise<Sim> {
  let f = flash;
  if (!f) {
    f = new SimFlash(geometry);
    const p = provision(f, layout, { deviceClass: 'acme-gw', trust: w.trust, envelope: v1.envelope, image: v1.image, verifier });
    if (!p.ok) throw new Error(`provision: ${p.error}`);
  }
  const events: string[] = [];
  const device = await OtaDevice.start({
    id,
    group,
    flash: f,
    layout,
    trust: w.trust,
    verifier,
    maxTrialBoots: 2,
    mqtt: { url: broker.url, options: { protocolVersion: 4, clientId: `e2e-${id}`, reconnectPeriod: 200, ...login(id) } },
    pull: { timeoutMs: 1500, baseBackoffMs: 100, maxBackoffMs: 1000, retryBaseMs: 100, retryMaxMs: 1000, window },
    onStatus: (e) => events.push(`${e.campaign ?? ''}:${e.state}${e.code ? `:${e.code}` : ''}`),
  });
  const sim = { id, flash: f, device, events };
  live.push({ stop: () => device.stop() });
  return sim;
}

const cli = (...argv: string[]) => runCli(argv);

async function createCampaign(server: OtaServer, rel: { manifest: string; image: string }, group: string, ...extra: string[]): Promise<string> {
  const r = await cli('campaign', 'create', '--server', server.address()!.url, '--manifest', rel.manifest, '--image', rel.image, '--group', group, ...extra);
  expect(r.err).toBe('');
  expect(r.status).toBe(0);
  return r.out.trim();
}

type Detail = { state: string; wave: number; counts: Record<string, number>; devices: { id: string; state: string; code: number | null }[] };
async function detail(server: OtaServer, id: string): Promise<Detail> {
  const r = await cli('campaign', 'status', id, '--json', '--server', server.address()!.url);
  expect(r.status).toBe(0);
  return JSON.parse(r.out) as Detail;
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const confirmed = (s: Sim, version: string) => s.device.state().version === version && s.device.state().lastStatus?.state === 'confirmed';
const knownDevices = async (server: OtaServer) => (await (await fetch(`${server.address()!.url}/api/devices`)).json()) as { devices: unknown[] };

/** Slot bytes of the active image equal `image` (what was installed is exactly what was signed). */
function activeImage(s: Sim): Uint8Array {
  const slot = s.device.state().slot!;
  const region = layout.slots[slot]!;
  return s.flash.read(region.offset, region.size);
}

const WAVES = Array.from({ length: 50 }, (_, i) => ({ id: `w-${String(i).padStart(2, '0')}`, group: 'waves' }));
const ROGUE = [{ id: 'rogue-victim', group: 'rogue' }];

const BROKERS = [
  { broker: 'an anonymous broker', tag: 'anonymous', acl: undefined },
  { broker: 'a broker with the ACL file and per-device credentials', tag: 'acl', acl: [...WAVES, ...ROGUE] },
];

describe.each(STORE_KINDS.flatMap((store) => BROKERS.map((b) => ({ ...b, store }))))(
  'OTA end to end on $broker, $store store (mosquitto, fwseal serve, device clients)',
  ({ tag: brokerTag, acl, store }) => {
    useBroker(acl);
    const tag = `${brokerTag}-${store}`;

    it(acl ? 'the broker refuses a client without credentials' : 'the broker admits anonymous clients', async () => {
      const anonymous = mqtt.connectAsync(broker.url, { clientId: `e2e-anon-${tag}`, reconnectPeriod: 0, connectTimeout: 5000 });
      if (acl) await expect(anonymous).rejects.toThrow();
      else await (await anonymous).endAsync(true);
    });

    it('updates 50 devices in waves 10%, 50%, 100%: each wave exactly its share, in order, all confirmed', async () => {
      const server = await startServer(await state(`waves-${brokerTag}`, store));
      const sims = await Promise.all(WAVES.map((d) => startDevice(d.id, d.group)));
      await until('50 devices known', async () => (await knownDevices(server)).devices.length === 50);

      // Watch the retained announcement: every rollout value the server publishes, in order (with the
      // ACL file, as a device of the group: only they may read it).
      const watcher = await mqtt.connectAsync(broker.url, { clientId: `e2e-watch-${tag}`, reconnectPeriod: 0, ...login('w-00') });
      live.push({ stop: () => watcher.endAsync(true) });
      const rollouts: number[] = [];
      watcher.on('message', (_t, payload) => {
        const a = parseAnnouncement(payload);
        if (a.ok && rollouts.at(-1) !== a.value.rollout) rollouts.push(a.value.rollout);
      });
      await watcher.subscribeAsync(topics.announce('fwseal', 'waves'), { qos: 1 });
      // Order of first `accepted` per device, to check that no device of a later wave started early.
      const acceptedOrder: string[] = [];
      for (const s of sims)
        s.device.on('status', (e: { state: string }) => {
          if (e.state === 'accepted') acceptedOrder.push(s.id);
        });

      const id = await createCampaign(server, files.v2, 'waves', '--waves', '10,50,100');
      await until('every device confirmed', () => sims.every((s) => confirmed(s, '2.0.0')), 90_000);
      await until('campaign completed', async () => (await detail(server, id)).state === 'completed');

      const d = await detail(server, id);
      expect(d.counts.confirmed).toBe(50);
      expect(d.counts.failed ?? 0).toBe(0);
      const bucket = (s: string) => rolloutBucket(nodeSha256, id, s);
      const waveRollouts = rollouts.filter((r) => r > 0);
      expect(waveRollouts.length).toBe(3);
      expect(waveRollouts[2]).toBe(2 ** 32);
      const ids = sims.map((s) => s.id);
      expect(ids.filter((x) => bucket(x) < waveRollouts[0]!).length).toBe(5);
      expect(ids.filter((x) => bucket(x) < waveRollouts[1]!).length).toBe(25);
      // The first five devices to accept are exactly wave 1; the first 25 are waves 1 and 2.
      expect(new Set(acceptedOrder.slice(0, 5))).toEqual(new Set(ids.filter((x) => bucket(x) < waveRollouts[0]!)));
      expect(new Set(acceptedOrder.slice(0, 25))).toEqual(new Set(ids.filter((x) => bucket(x) < waveRollouts[1]!)));
      for (const s of sims.slice(0, 3)) expect(Buffer.compare(Buffer.from(activeImage(s).subarray(0, v2.image.length)), Buffer.from(v2.image))).toBe(0);

      // A replayed older manifest: every device refuses it (ROLLBACK) and the campaign halts. The halt
      // waits for 3 devices (--abort-min-devices): with the default 1 the first rejection halts it, and
      // how many devices had the manifest by then is a race (on PostgreSQL, under load, once fewer than 3).
      const replay = await createCampaign(server, files.old, 'waves', '--waves', '100', '--abort-failure-rate', '0.05', '--abort-min-devices', '3');
      await until('devices rejected the replay', async () => ((await detail(server, replay)).counts.rejected ?? 0) >= 3);
      await until('replay campaign halted', async () => (await detail(server, replay)).state === 'halted');
      const rd = await detail(server, replay);
      for (const dev of rd.devices.filter((x) => x.state === 'rejected')) expect(dev.code).toBe(CODES.ROLLBACK);
      expect(sims.every((s) => s.device.state().version === '2.0.0' && s.device.state().counter === 6)).toBe(true);
    }, 150_000);

    it('a rogue publisher injects bad blocks: the device rejects them, fetches them again, installs the signed image', async () => {
      const where = await state(`rogue-${brokerTag}`, store);
      let server = await startServer(where);
      // One block per request: every request after the server stops is for a block still outstanding.
      const victim = await startDevice('rogue-victim', 'rogue', undefined, 1);
      await until('device known', async () => (await knownDevices(server)).devices.length === 1);
      // The attacker reads the victim's requests and answers with flipped bytes: anybody on an
      // anonymous broker; with the ACL file only a holder of the servers' credentials (a rogue or
      // compromised server; a device's credentials cannot, test/ota-acl.test.ts). So that its answers
      // are not merely late duplicates, the real server goes down at the victim's first block request
      // and comes back (same store) once two forged blocks went out.
      const attacker: MqttClient = await mqtt.connectAsync(broker.url, { clientId: `e2e-attacker-${tag}`, reconnectPeriod: 0, ...login(SERVER_USERNAME) });
      live.push({ stop: () => attacker.endAsync(true) });
      let forged = 0;
      let down: Promise<void> | null = null;
      let back: Promise<OtaServer> | null = null;
      attacker.on('message', (_topic, payload) => {
        const r = parseBlockRequest(payload);
        if (!r.ok) return;
        const stopped = (down ??= server.close()); // the server answers nothing from here on
        if (forged >= 2) return;
        // At once: waiting for the close to finish could let the request expire first.
        const block = requestedBlocks(r.value)[0]!;
        const data = Uint8Array.from(v2.image.subarray(block * 65536, (block + 1) * 65536));
        data[100] ^= 0xff;
        forged++;
        const reply = r.value.replyTopic ?? topics.reply('fwseal', 'rogue-victim');
        void attacker
          .publishAsync(reply, Buffer.from(encodeBlockResponse({ campaign: r.value.campaign, requestId: r.value.requestId, block, data })), { qos: 0 })
          .catch(() => undefined);
        if (forged === 2) back = stopped.then(() => startServer(where));
      });
      await attacker.subscribeAsync(`fwseal/campaign/+/req/rogue-victim`, { qos: 0 });
      await createCampaign(server, files.v2, 'rogue', '--waves', '100');
      await until('two forged blocks sent and the server back', () => back !== null, 60_000);
      server = await back!;
      await until('victim confirmed', () => confirmed(victim, '2.0.0'), 60_000);
      expect(forged).toBe(2);
      expect(victim.device.stats().rejected).toBeGreaterThanOrEqual(1);
      expect(Buffer.compare(Buffer.from(activeImage(victim).subarray(0, v2.image.length)), Buffer.from(v2.image))).toBe(0);
    }, 90_000);
  },
);

describe.each(STORE_KINDS)('OTA end to end: restarts, resets and junk, %s store (anonymous mosquitto, fwseal serve, device clients)', (store) => {
  useBroker();

  it('the broker is killed mid-campaign and the server with it; both restart (the server on its store): every device completes', async () => {
    const where = await state('restarts', store);
    // Block answers wait for more askers (multicast) until 500 ms pass without one: the broker can
    // die after the devices asked for blocks and before the blocks go out.
    let server = await startServer(where, 500);
    const sims = await Promise.all(Array.from({ length: 8 }, (_, i) => startDevice(`r-${i}`, 'restarts')));
    await until('devices known', async () => (await knownDevices(server)).devices.length === 8);
    const id = await createCampaign(server, files.v3, 'restarts', '--waves', '100');
    // The broker dies once a device has verified the manifest and started to pull: mid-flight.
    await until('a device pulling', () => sims.some((s) => s.events.includes(`${id}:accepted`)), 30_000);
    await broker.kill();
    expect(sims.filter((s) => confirmed(s, '3.0.0')).length).toBeLessThan(sims.length);
    // The server goes down too while there is no broker (so nobody can finish meanwhile): it comes
    // back on the same store after the broker, once the devices have reconnected and asked in vain.
    await server.close();
    expect(sims.filter((s) => confirmed(s, '3.0.0')).length).toBeLessThan(sims.length);
    await broker.start();
    await new Promise((r) => setTimeout(r, 500));
    expect(sims.filter((s) => confirmed(s, '3.0.0')).length).toBeLessThan(sims.length);
    server = await startServer(where);
    await until('every device confirmed', () => sims.every((s) => confirmed(s, '3.0.0')), 90_000);
    await until('campaign completed after the restarts', async () => (await detail(server, id)).state === 'completed');
    expect((await detail(server, id)).counts.confirmed).toBe(8);
  }, 150_000);

  it('a device reset mid-download resumes from flash and fetches fewer blocks than a full download', async () => {
    const server = await startServer(await state('reset', store));
    const first = await startDevice('reset-1', 'reset');
    await until('device known', async () => (await knownDevices(server)).devices.length === 1);
    const campaign = createCampaign(server, files.v3, 'reset', '--waves', '100');
    const total = Math.ceil(v3.image.length / 65536);
    // Reset (no goodbye, nothing flushed) right after the second block is written.
    const crashed = new Promise<number>((resolve) => {
      first.device.on('progress', (done: number) => {
        if (done >= 2 && done < total) {
          first.device.crash();
          resolve(done);
        }
      });
    });
    await campaign;
    const before = await crashed;
    expect(first.device.stats().blocksReceived).toBeLessThan(total);
    const again = await startDevice('reset-1', 'reset', first.flash);
    await until('resumed device confirmed', () => confirmed(again, '3.0.0'), 60_000);
    expect(again.device.stats().blocksReceived).toBeLessThan(total);
    expect(before).toBeGreaterThanOrEqual(2);
  }, 90_000);

  it('junk and oversize messages on every topic are counted and ignored; an update still completes', async () => {
    const server = await startServer(await state('junk', store));
    const sim = await startDevice('junk-1', 'junk');
    await until('device known', async () => (await knownDevices(server)).devices.length === 1);
    const junk: MqttClient = await mqtt.connectAsync(broker.url, { clientId: `e2e-junk-${store}`, reconnectPeriod: 0 });
    live.push({ stop: () => junk.endAsync(true) });
    const payloads = [Buffer.alloc(0), Buffer.from([0xff]), Buffer.from('not cbor'), Buffer.from([0xa1, 0x00, 0x63]), Buffer.alloc(70_000, 0xa5)];
    const targets = [
      topics.request('fwseal', 'no-such-campaign', 'junk-1'),
      topics.status('fwseal', 'junk-1'),
      topics.reply('fwseal', 'junk-1'),
      'fwseal/campaign/x/req',
      'fwseal/device/junk-1/status/extra',
    ];
    for (const t of targets) for (const p of payloads) await junk.publishAsync(t, p, { qos: 1 });
    await until('server counted junk', async () => {
      const m = await (await fetch(`${server.address()!.url}/metrics`)).text();
      return /fwseal_malformed_messages_total\{[^}]*\} [1-9]/.test(m);
    });
    await until('device counted junk', () => sim.device.stats().malformed > 0);
    await createCampaign(server, files.v2, 'junk', '--waves', '100');
    await until('device confirmed after junk', () => confirmed(sim, '2.0.0'), 60_000);
  }, 90_000);
});
