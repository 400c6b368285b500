/**
 * `fwseal serve --db postgres://...` (SPEC.md §12.9 "PostgreSQL"): two `fwseal serve` processes with
 * separate --data folders (as on two machines: they share no folder), one mosquitto, one database in a
 * real PostgreSQL, and real device clients (OtaDevice over simulated flash). An image uploaded to one
 * instance and a campaign created on the other: both serve blocks, every device confirms, a cache file
 * that does not hash to its name is fetched again from the database. One instance killed (SIGKILL) mid-campaign: the
 * campaign completes on the other and no device reports a failure. Then the password rule of --db,
 * the bound on store calls in flight, and status events written many per statement. Codes are asserted,
 * never messages.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { SimFlash } from '../device/sim/flash.js';
import { fleetVerifier, nodeSha256 } from '../host/hash.js';
import { OtaDevice } from '../host/ota/device-client.js';
import { OtaServer } from '../host/ota/server.js';
import { type NewCampaign, openStore, type StatusRecord } from '../host/ota/store.js';
import { connectDb, type PgDb } from '../host/ota/store-pg-db.js';
import { toHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { encodeStatusEvent } from '../shared/ota/status.js';
import { ROLLOUT_ALL, topics } from '../shared/ota/topics.js';
import { runCli } from './support/cli-run.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually } from './support/ota-client.js';
import { serverMqtt } from './support/ota-harness.js';
import { type Postgres, startPostgres } from './support/postgres.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const w = standardWorld();
const verifier = fleetVerifier();
const release = (version: string, counter: number, size: number) => {
  const image = detBytes(size, `pg ${version}`);
  const envelope = makeManifestEnvelope(makeManifest(image, { version, securityCounter: counter, chunkSize: 4096 }), [w.R1, w.R2]);
  return { version, image, envelope, sha: toHex(nodeSha256(image)) };
};
const v1 = release('1.0.0', 5, 40_000);
const v2 = release('2.0.0', 6, 460_000);

const E = 4096;
const SLOT = 512 * 1024;
const layout = createLayout({ size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff }, { slotSize: SLOT });

const dir = mkdtempSync(join(tmpdir(), 'fwseal-pg-e2e-'));
const trustFile = join(dir, 'trust.cbor');
writeFileSync(trustFile, w.trust);
let broker: Mosquitto;
let postgres: Postgres;
const live: { stop(): Promise<void> }[] = [];

beforeAll(async () => {
  [broker, postgres] = await Promise.all([startMosquitto({ persistence: false }), startPostgres()]);
});
afterEach(async () => {
  await Promise.allSettled(live.splice(0).map((x) => x.stop()));
});
afterAll(async () => {
  await Promise.allSettled([broker?.stop(), postgres?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

type Serve = { url: string; data: string; kill(): Promise<void>; stderr(): string };

/** `fwseal serve --db` as its own process, on its own --data folder; the password only in its environment (PGPASSWORD). */
async function startServe(name: string, db: string): Promise<Serve> {
  const data = join(dir, name);
  const args = ['serve', '--broker', broker.url, '--data', data, '--db', db, '--trust', trustFile, '--http', '127.0.0.1:0', '--tick-ms', '100'];
  const child: ChildProcess = spawn(process.execPath, ['--import', TSX, join(ROOT, 'host', 'cli.ts'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...postgres.env },
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  live.push({ stop: kill });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const url = await new Promise<string>((ok, fail) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = out.match(/HTTP API on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) ok(m[1]!);
    });
    child.once('exit', (code) => fail(new Error(`serve exited with ${code}: ${err}`)));
  });
  return { url, data, kill, stderr: () => err };
}

type Sim = { id: string; device: OtaDevice; events: string[]; progress: number };

async function startDevice(id: string, group: string, window: number): Promise<Sim> {
  const flash = new SimFlash({ size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff });
  const p = provision(flash, layout, { deviceClass: 'acme-gw', trust: w.trust, envelope: v1.envelope, image: v1.image, verifier });
  if (!p.ok) throw new Error(`provision: ${p.error}`);
  const sim: Sim = { id, device: undefined as unknown as OtaDevice, events: [], progress: 0 };
  sim.device = await OtaDevice.start({
    id,
    group,
    flash,
    layout,
    trust: w.trust,
    verifier,
    maxTrialBoots: 2,
    mqtt: { url: broker.url, options: { protocolVersion: 4, clientId: `pg-${id}`, reconnectPeriod: 200 } },
    pull: { timeoutMs: 1500, baseBackoffMs: 100, maxBackoffMs: 1000, retryBaseMs: 100, retryMaxMs: 1000, window },
    onStatus: (e) => sim.events.push(`${e.state}${e.code ? `:${e.code}` : ''}`),
  });
  sim.device.on('progress', (done: number) => {
    sim.progress = done;
  });
  live.push({ stop: () => sim.device.stop() });
  return sim;
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 90_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const getJson = async (s: Serve, path: string) => (await fetch(s.url + path)).json() as Promise<any>;
const blocksServed = async (s: Serve) => Number((await (await fetch(`${s.url}/metrics`)).text()).match(/^fwseal_blocks_served_total (\S+)$/m)?.[1] ?? 0);
const errorReplies = async (s: Serve) =>
  (await (await fetch(`${s.url}/metrics`)).text()).split('\n').filter((l) => l.startsWith('fwseal_error_replies_total{'));
const confirmed = (s: Sim) => s.device.state().version === v2.version && s.device.state().lastStatus?.state === 'confirmed';

/** PUT the image to `s` (201: stored, in the database too). */
async function upload(s: Serve): Promise<void> {
  const r = await fetch(`${s.url}/api/images/${v2.sha}`, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: Buffer.from(v2.image),
  });
  expect(r.status).toBe(201);
}

async function create(s: Serve, group: string): Promise<string> {
  const body = { manifest: Buffer.from(v2.envelope).toString('base64'), image: v2.sha, group, waves: [100] };
  const r = await fetch(`${s.url}/api/campaigns`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const created = (await r.json()) as { id: string };
  expect(r.status).toBe(201);
  return created.id;
}

/** Nothing a device would not see with one server: no failure, no refused block, no error reply from a server still running. */
function expectNoDeviceError(sims: Sim[]): void {
  for (const s of sims) {
    expect(
      s.events.filter((e) => e.startsWith('failed') || e.startsWith('rejected')),
      s.id,
    ).toEqual([]);
    expect(s.device.stats().rejected, s.id).toBe(0);
    expect(s.device.stats().malformed, s.id).toBe(0);
  }
}

describe('two fwseal serve instances on separate folders, one broker, one PostgreSQL database', () => {
  it('an image uploaded to one and a campaign created on the other: both serve blocks, every device confirms', async () => {
    const db = await postgres.database();
    // Both start at once on the empty database: one stores the root of trust, the other finds it (one atomic root change).
    const [a, b] = await Promise.all([startServe('split-a', db), startServe('split-b', db)]);
    // A file in a's cache that does not hash to its name: a must fetch the image from the database instead.
    mkdirSync(join(a.data, 'images'), { recursive: true });
    writeFileSync(join(a.data, 'images', v2.sha), Buffer.alloc(v2.image.length, 0x5a));
    const sims = await Promise.all(Array.from({ length: 8 }, (_, i) => startDevice(`split-${i}`, 'pg-split', 2)));
    await until(
      '8 devices known to both',
      async () => (await getJson(a, '/api/devices')).devices.length === 8 && (await getJson(b, '/api/devices')).devices.length === 8,
    );
    await upload(b);
    const id = await create(a, 'pg-split');
    await until('every device confirmed', () => sims.every(confirmed));
    await until('campaign completed', async () => (await getJson(b, `/api/campaigns/${id}`)).state === 'completed');
    expect((await getJson(a, `/api/campaigns/${id}`)).counts).toMatchObject({ confirmed: 8, failed: 0, rejected: 0 });
    expect(await blocksServed(a)).toBeGreaterThan(0);
    expect(await blocksServed(b)).toBeGreaterThan(0);
    expectNoDeviceError(sims);
    expect(await errorReplies(a)).toEqual([]);
    expect(await errorReplies(b)).toEqual([]);
    // The folders are caches: no SQLite database, and the image in a's cache is the signed one now.
    expect(existsSync(join(a.data, 'fwseal.db')) || existsSync(join(b.data, 'fwseal.db'))).toBe(false);
    expect(Buffer.compare(readFileSync(join(a.data, 'images', v2.sha)), Buffer.from(v2.image))).toBe(0);
  }, 150_000);

  it('one instance killed (SIGKILL) mid-campaign: the other completes it and no device sees an error', async () => {
    const db = await postgres.database();
    const [a, b] = await Promise.all([startServe('kill-a', db), startServe('kill-b', db)]);
    const sims = await Promise.all(Array.from({ length: 8 }, (_, i) => startDevice(`kill-${i}`, 'pg-kill', 1)));
    await until('8 devices known', async () => (await getJson(b, '/api/devices')).devices.length === 8);
    await upload(a);
    const id = await create(a, 'pg-kill');
    // Mid-campaign: the victim has served blocks, devices are downloading, none has finished.
    await until('both serving', async () => (await blocksServed(a)) > 0 && sims.some((s) => s.progress >= 2));
    expect(sims.filter(confirmed).length).toBeLessThan(sims.length);
    await a.kill();
    await until('every device confirmed', () => sims.every(confirmed));
    await until('campaign completed', async () => (await getJson(b, `/api/campaigns/${id}`)).state === 'completed');
    expect((await getJson(b, `/api/campaigns/${id}`)).counts).toMatchObject({ confirmed: 8, failed: 0, rejected: 0 });
    expect(await blocksServed(b)).toBeGreaterThan(0);
    expectNoDeviceError(sims);
    expect(await errorReplies(b)).toEqual([]);
  }, 150_000);
});

describe('--db and the database connection', () => {
  it('a password in --db is refused (USAGE, exit 2) and never printed; a wrong PGPASSWORD fails the start (IO, exit 2)', async () => {
    const db = await postgres.database();
    const secret = 'pw-in-the-url-8c1f';
    const inUrl = await runCli(['serve', '--broker', broker.url, '--data', join(dir, 'usage'), '--db', db.replace('postgres@', `postgres:${secret}@`)]);
    expect(inUrl.status).toBe(2);
    expect(inUrl.err).toContain(`(code ${CODES.USAGE})`);
    expect(inUrl.err + inUrl.out).not.toContain(secret);
    const saved = process.env.PGPASSWORD;
    process.env.PGPASSWORD = 'not-the-password-71d2';
    try {
      const wrong = await runCli(['serve', '--broker', broker.url, '--data', join(dir, 'wrong'), '--db', db, '--trust', trustFile]);
      expect(wrong.status).toBe(2);
      expect(wrong.err).toContain(`(code ${CODES.IO})`);
      expect(wrong.err + wrong.out).not.toContain('not-the-password-71d2');
    } finally {
      if (saved === undefined) delete process.env.PGPASSWORD;
      else process.env.PGPASSWORD = saved;
    }
  });

  it('request store calls are bounded per instance (one more is SERVER_BUSY); the status path is never refused there', async () => {
    process.env.PGPASSWORD = postgres.env.PGPASSWORD;
    const store = await openStore({ kind: 'postgres', url: await postgres.database(), dataDir: join(dir, 'bound'), maxPending: 2 });
    try {
      // Three campaigns: concurrent reads of one campaign's gate share one store call (gate-cache.ts).
      const settled = await Promise.allSettled([store.gate('c1'), store.gate('c2'), store.gate('c3')]);
      expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
      expect((settled[2] as PromiseRejectedResult).reason).toMatchObject({ codeName: 'SERVER_BUSY' });
      // Status events wait for the store instead (status-ingest.ts holds the broker): none refused.
      const status = [store.statusContext('c', 'd'), store.statusContext('c', 'd'), store.recordOffline('d'), store.recordOffline('d')];
      expect(await Promise.all(status)).toEqual([undefined, undefined, false, false]);
      // Operator and wave engine calls are not device traffic: never refused.
      expect(await Promise.all([store.campaigns(), store.campaigns(), store.campaigns()])).toEqual([[], [], []]);
      expect(await store.gate('c')).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('the status path waits for a lane, never in the pool queue where the connect timeout counts', async () => {
    process.env.PGPASSWORD = postgres.env.PGPASSWORD;
    // A 300 ms connect timeout and 100 calls of 50 ms each: ten at a time, the last would wait ~450 ms.
    const db = await connectDb(new URL(await postgres.database()), undefined, 300);
    try {
      const slow = () => db.rows('SELECT pg_sleep(0.05)');
      const direct = await Promise.allSettled(Array.from({ length: 100 }, slow));
      expect(direct.some((r) => r.status === 'rejected')).toBe(true); // the hazard the lanes avoid
      const laned = await Promise.allSettled(Array.from({ length: 100 }, () => db.statusLane(slow)));
      expect(laned.filter((r) => r.status === 'rejected')).toEqual([]);
    } finally {
      await db.close();
    }
  });

  it('a burst of status events larger than every bound is ingested whole: the server holds the broker, never drops one', async () => {
    process.env.PGPASSWORD = postgres.env.PGPASSWORD;
    const N = 400;
    const server = await OtaServer.start({
      mqtt: serverMqtt(broker.url),
      dataDir: join(dir, 'burst'),
      store: { kind: 'postgres', url: await postgres.database(), dataDir: join(dir, 'burst'), maxPending: 1 },
      trust: w.trust,
      maxStatusBacklog: 8,
    });
    live.push({ stop: () => server.close() });
    const sender = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: 'burst-sender' });
    live.push({ stop: () => sender.endAsync(true) });
    // QoS 0, all at once: the broker passes them on as fast as the server reads.
    for (let i = 0; i < N; i++) {
      const device = `burst-${i}`;
      sender.publish(
        topics.status('fwseal', device),
        Buffer.from(encodeStatusEvent({ device, state: 'online', group: 'g-burst', version: '1.0.0', counter: 1 })),
      );
    }
    await eventually(async () => (await server.store.deviceCount()) === N, 30_000, `all ${N} devices stored`);
    const text = await server.metrics.render(server.store);
    expect(text).toContain(`fwseal_status_events_total ${N}\n`);
    expect(text).toContain('fwseal_status_backlog 0\n');
  });
});

/** A running campaign row for the store-level cases (the store never verifies what it is given). */
function campaignRow(id: string, group: string): NewCampaign {
  return {
    ...{ id, grp: group, version: '2.0.0', security_counter: 2, state: 'running', wave: 0, waves: '[100]', rollout: ROLLOUT_ALL },
    ...{ abort_failure_rate: 0.1, manifest: Buffer.from(`manifest of ${id}`), manifest_sha: Buffer.alloc(32, 1), image_sha: '00'.repeat(32) },
    ...{ image_size: 1024, chunk_size: 1024, block_size: 1024, page_count: 1, created: 1, updated: 1, device_timeout_ms: 3_600_000 },
    ...{ abort_min_devices: 1, wave_soak_ms: 0, wave_gate: 'auto', wave_started: 1 },
  };
}

describe('status events on PostgreSQL', () => {
  it('a burst goes many events per statement, with the answers and rows one at a time gives', async () => {
    process.env.PGPASSWORD = postgres.env.PGPASSWORD;
    const store = await openStore({ kind: 'postgres', url: await postgres.database(), dataDir: join(dir, 'batch') });
    try {
      await store.insertCampaign(campaignRow('c1', 'g'));
      const N = 60;
      const ids = Array.from({ length: N }, (_, i) => `b-${String(i).padStart(2, '0')}`);
      for (const id of ids) await store.recordOnline(id, { group: 'g', version: '1.0.0', counter: 1 }, 1000);
      // Count the statements the status path sends from here on.
      const db = (store as unknown as { db: PgDb }).db;
      let statements = 0;
      const query = db.pool.query.bind(db.pool) as (...a: unknown[]) => unknown;
      (db.pool as unknown as { query: unknown }).query = (...a: unknown[]) => {
        statements++;
        return query(...a);
      };
      const contexts = await Promise.all(ids.map((id) => store.statusContext('c1', id)));
      expect(contexts.map((c) => [c?.id, c?.device_grp, c?.device_version, c?.fetched])).toEqual(ids.map(() => ['c1', 'g', '1.0.0', 0]));
      expect(statements).toBeLessThan(10); // one at a time: 60
      expect(await Promise.all([store.statusContext('nothing', ids[0]!), store.statusContext('c1', 'never-online')])).toEqual([
        undefined,
        expect.objectContaining({ id: 'c1', device_grp: null }),
      ]);
      // Every device accepted; b-00 then confirms, b-01 then fails, b-02 goes back to accepted (stale): one device's
      // events never share a statement, so they apply in this order as if one at a time.
      const events: StatusRecord[] = [
        ...ids.map((device) => ({ campaign: 'c1', device, state: 'accepted' as const })),
        { campaign: 'c1', device: ids[0]!, state: 'confirmed' },
        { campaign: 'c1', device: ids[1]!, state: 'failed', code: 607 },
        { campaign: 'c1', device: ids[2]!, state: 'accepted' },
      ];
      statements = 0;
      const moved = await Promise.all(events.map((e) => store.recordStatus(e)));
      expect(moved).toEqual([...ids.map(() => true), true, true, false]);
      expect(statements).toBeLessThan(10); // one at a time: 63
      const rows = new Map((await store.statuses('c1')).map((r) => [r.device, [r.state, r.code]]));
      expect(rows.get(ids[0]!)).toEqual(['confirmed', null]);
      expect(rows.get(ids[1]!)).toEqual(['failed', 607]);
      expect(rows.get(ids[2]!)).toEqual(['accepted', null]);
      expect(rows.size).toBe(N);
      // The device rows follow in the same statement: the installed release on confirmed, the last error on failed.
      const devices = new Map((await store.devices('g')).map((d) => [d.id, d]));
      expect(devices.get(ids[0]!)).toMatchObject({ version: '2.0.0', counter: 2, last_error_code: null });
      expect(devices.get(ids[1]!)).toMatchObject({ version: '1.0.0', last_error_code: 607, last_error_campaign: 'c1' });
    } finally {
      await store.close();
    }
  });
});
