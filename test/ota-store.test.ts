/**
 * The server store's contract (host/ota/store.ts, SPEC.md §12.9 "Status ingest", "Persistence and
 * several instances"), through the OtaStore interface only, for every backend in BACKENDS: rows that
 * only move forward, the fleet bound, acknowledgements written with the device row, fetch records for
 * the campaign's group only, one active campaign per group, and the atomic steps (insert and update
 * under a root of trust precondition, concurrent read-modify-writes that lose nothing). Then what the
 * server builds on an asynchronous store: a resume checked under an older root changes nothing, and
 * one device's events are applied in arrival order even when a write is slower than a read. Last, two
 * store objects on one database (two instances; PostgreSQL: two connection pools, so truly at once)
 * racing the same compare-and-set, the same group, the same fleet bound and the same root change.
 * And what /metrics reads (SPEC.md §12.9 "Metrics"): campaigns by state, M10's unexpected releases,
 * the stored trust chain.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { transition } from '../host/ota/campaigns.js';
import { Metrics } from '../host/ota/metrics.js';
import { StatusIngest } from '../host/ota/status-ingest.js';
import { type NewCampaign, type OtaStore, openStore } from '../host/ota/store.js';
import { encodeStatusEvent } from '../shared/ota/status.js';
import { ROLLOUT_ALL } from '../shared/ota/topics.js';
import { type Postgres, startPostgres } from './support/postgres.js';

/** PostgreSQL (test/support/postgres.ts): one server for this file, started on first use; one database per data folder. */
let postgres: Promise<Postgres> | null = null;
const databases = new Map<string, string>();
async function openPostgres(dir: string): Promise<OtaStore> {
  const server = await (postgres ??= startPostgres().then((p) => {
    process.env.PGPASSWORD = p.env.PGPASSWORD; // as `fwseal serve` gets it: never in the URL
    return p;
  }));
  let url = databases.get(dir);
  if (url === undefined) databases.set(dir, (url = await server.database()));
  return openStore({ kind: 'postgres', url, dataDir: dir });
}
afterAll(async () => {
  await (await postgres)?.stop();
});

/** Every backend runs the same cases. Opening a folder again opens a second store on the same data (another instance). */
const BACKENDS: { name: string; open: (dir: string) => Promise<OtaStore> }[] = [
  { name: 'sqlite', open: (dir) => openStore({ kind: 'sqlite', dataDir: dir }) },
  { name: 'postgresql', open: openPostgres },
];

const sha = (n: number) => Buffer.alloc(32, n);

function campaignRow(id: string, group: string, extra: Partial<NewCampaign> = {}): NewCampaign {
  return {
    id,
    grp: group,
    version: '2.0.0',
    security_counter: 2,
    state: 'running',
    wave: 0,
    waves: '[100]',
    rollout: ROLLOUT_ALL,
    abort_failure_rate: 0.1,
    manifest: Buffer.from(`manifest of ${id}`),
    manifest_sha: sha(1),
    image_sha: '00'.repeat(32),
    image_size: 1024,
    chunk_size: 1024,
    block_size: 1024,
    page_count: 1,
    created: 1,
    updated: 1,
    device_timeout_ms: 3_600_000,
    abort_min_devices: 1,
    wave_soak_ms: 0,
    wave_gate: 'auto',
    wave_started: 1,
    ...extra,
  };
}

/** Root rows as the store keeps them (the store never verifies: root-of-trust.ts decides what is stored). */
const trustRow = (version: number) => ({ version, envelope: Buffer.from(`trust ${version}`), digest: sha(10 + version) });
const listRow = (version: number) => ({ version, envelope: Buffer.from(`list ${version}`), digest: sha(20 + version), trust_version: 1 });

describe.each(BACKENDS)('OtaStore on $name', ({ open }) => {
  let dir: string;
  let store: OtaStore;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fwseal-store-'));
    store = await open(dir);
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a (campaign, device) row only moves forward, within downloading only to more blocks; a terminal row never changes', async () => {
    await store.insertCampaign(campaignRow('c1', 'g'));
    const moved: boolean[] = [];
    for (const s of [
      { state: 'accepted' },
      { state: 'downloading', done: 5, total: 10 },
      { state: 'downloading', done: 3, total: 10 },
      { state: 'downloading', done: 5, total: 10 },
      { state: 'accepted' },
      { state: 'confirmed' },
      { state: 'failed', code: 607 },
      { state: 'rejected', code: 300 },
    ] as const)
      moved.push(await store.recordStatus({ campaign: 'c1', device: 'd1', ...s }));
    expect(moved).toEqual([true, true, false, false, false, true, false, false]);
    expect((await store.statuses('c1')).map((r) => [r.device, r.state, r.code])).toEqual([['d1', 'confirmed', null]]);
    expect(await store.stateCounts()).toEqual([{ campaign: 'c1', state: 'confirmed', n: 1 }]);
  });

  it('a new device is added only while fewer than maxKnownDevices are known; a known one is always updated', async () => {
    expect(await store.recordOnline('a', { group: 'g', version: '1.0.0', counter: 1 }, 2)).toBe(true);
    expect(await store.recordOnline('b', { group: 'g' }, 2)).toBe(true);
    expect(await store.recordOnline('c', { group: 'g' }, 2)).toBe(false);
    expect(await store.recordOnline('a', { group: 'h', version: '2.0.0', counter: 2 }, 2)).toBe(true);
    expect(await store.deviceCount()).toBe(2);
    expect((await store.devices('h')).map((d) => [d.id, d.version, d.counter])).toEqual([['a', '2.0.0', 2]]);
  });

  it('a known device whose revocation version rose acknowledges each list in between once; a device first seen enforcing one is no observation', async () => {
    await store.root.change(() => ({ result: null, trust: trustRow(1), list: listRow(1) }));
    for (const v of [2, 3]) await store.root.change(() => ({ result: null, list: listRow(v) }));
    await store.recordOnline('d', { group: 'g', revocationVersion: 1 }, 10);
    await store.recordOnline('late', { group: 'g', revocationVersion: 3 }, 10);
    expect((await store.root.propagation()).count).toBe(0);
    await store.recordOnline('d', { group: 'g', revocationVersion: 3 }, 10);
    await store.recordOnline('d', { group: 'g', revocationVersion: 3 }, 10);
    expect((await store.root.propagation()).count).toBe(2);
    expect(await store.root.revocationVersions()).toEqual([{ v: 3, n: 2 }]);
  });

  it('a manifest fetch is recorded only for a known device of the campaign group, and counts for every campaign of that envelope', async () => {
    await store.insertCampaign(campaignRow('c1', 'g'));
    await store.recordOnline('mine', { group: 'g' }, 10);
    await store.recordOnline('other', { group: 'h' }, 10);
    for (const d of ['mine', 'other', 'invented']) await store.recordFetch('c1', d);
    expect(await store.fetchCount()).toBe(1);
    await store.updateCampaign('c1', () => ({ state: 'aborted' }));
    await store.insertCampaign(campaignRow('c2', 'g')); // the same envelope again
    expect(await store.fetchedDevices('c2')).toEqual(['mine']);
    expect((await store.statusContext('c2', 'mine'))?.fetched).toBe(1);
    expect((await store.statusContext('c2', 'other'))?.device_grp).toBe('h');
    expect(await store.statusContext('nothing', 'mine')).toBeUndefined();
  });

  it('one active campaign per group (CONFLICT); an insert under an older root of trust inserts nothing', async () => {
    await store.root.change(() => ({ result: null, trust: trustRow(1) }));
    expect(await store.insertCampaign(campaignRow('c1', 'g'), { trust: 1, list: 0 })).toBe(true);
    await expect(store.insertCampaign(campaignRow('c2', 'g'))).rejects.toMatchObject({ codeName: 'CONFLICT' });
    await store.root.change(() => ({ result: null, list: listRow(1) }));
    expect(await store.insertCampaign(campaignRow('c3', 'h'), { trust: 1, list: 0 })).toBe(false);
    expect((await store.campaigns()).map((c) => c.id)).toEqual(['c1']);
    expect(await store.activeInGroup('g')).toBe('c1');
  });

  it('updateCampaign sees the row, the progress and the root versions of the same step; null for no change or no campaign', async () => {
    await store.insertCampaign(campaignRow('c1', 'g'));
    await store.recordOnline('d1', { group: 'g' }, 10);
    await store.recordStatus({ campaign: 'c1', device: 'd1', state: 'failed', code: 607 });
    let seen: unknown;
    const row = await store.updateCampaign(
      'c1',
      (r, c) => {
        seen = [r.state, c.progress?.statuses.map((s) => s.state), c.progress?.devices.map((d) => d.id), c.root];
        return { state: 'halted' };
      },
      { progress: true },
    );
    expect(seen).toEqual(['running', ['failed'], ['d1'], { trust: 0, list: 0 }]);
    expect(row?.state).toBe('halted');
    expect((await store.campaign('c1'))?.state).toBe('halted');
    expect(await store.updateCampaign('c1', () => null)).toBeNull();
    expect(await store.updateCampaign('none', () => ({ state: 'paused' }))).toBeNull();
  });

  it('read-modify-write steps started together lose no update', async () => {
    await store.insertCampaign(campaignRow('c1', 'g', { rollout: 0 }));
    await Promise.all(Array.from({ length: 20 }, () => store.updateCampaign('c1', (r) => ({ rollout: r.rollout + 1 }))));
    expect((await store.campaign('c1'))?.rollout).toBe(20);
  });

  it('a root change sees the newest rows; one that throws stores nothing', async () => {
    await store.root.change(() => ({ result: null, trust: trustRow(1) }));
    const failing = store.root.change((newest) => {
      if (newest.trust?.version === 1) throw new Error('refused');
      return { result: null, trust: trustRow(2) };
    });
    await expect(failing).rejects.toThrow('refused');
    expect(await store.root.versions()).toEqual({ trust: 1, list: 0 });
    expect(await store.root.change((newest) => ({ result: newest.trust?.version, list: listRow(1) }))).toBe(1);
    expect((await store.root.listFor(1))?.version).toBe(1);
  });

  it('a resume whose manifest was checked under an older root of trust changes nothing (the server checks again)', async () => {
    await store.root.change(() => ({ result: null, trust: trustRow(1) }));
    await store.insertCampaign(campaignRow('c1', 'g', { state: 'halted' }));
    await store.root.change(() => ({ result: null, list: listRow(1) }));
    expect(await transition(store, 'c1', 'resume', { trust: 1, list: 0 })).toBeNull();
    expect((await store.campaign('c1'))?.state).toBe('halted');
    expect((await transition(store, 'c1', 'resume', { trust: 1, list: 1 }))?.state).toBe('running');
  });

  it("one device's events are applied in arrival order even when the store writes slower than it reads", async () => {
    await store.insertCampaign(campaignRow('c1', 'g'));
    // A backend whose device write takes longer than the next event's read: ordering must not rest on timing.
    const slow = new Proxy(store, {
      get(target, key) {
        const v = Reflect.get(target, key);
        if (key !== 'recordOnline') return typeof v === 'function' ? v.bind(target) : v;
        return async (...args: Parameters<OtaStore['recordOnline']>) => {
          await new Promise((r) => setTimeout(r, 30));
          return target.recordOnline(...args);
        };
      },
    });
    const metrics = new Metrics();
    const ingest = new StatusIngest({ store: slow, metrics, maxDevices: 10, announce: async () => undefined, log: () => undefined });
    const online = ingest.receive(Buffer.from(encodeStatusEvent({ device: 'd1', state: 'online', group: 'g', version: '2.0.0', counter: 2 })), 'd1');
    const confirmed = ingest.receive(Buffer.from(encodeStatusEvent({ campaign: 'c1', device: 'd1', state: 'confirmed' })), 'd1');
    await Promise.all([online, confirmed]);
    ingest.close();
    await ingest.settled();
    expect(metrics.statusIgnored.get('unknown_device')).toBe(0);
    expect((await store.statuses('c1')).map((s) => s.state)).toEqual(['confirmed']);
  });

  // ---- issue 15: the fleet view and rollouts that always finish (SPEC.md §12.9) ----

  it('the device row follows every event that counts: confirmed installs the release, rejected and failed are its last error; a stale one changes nothing', async () => {
    await store.insertCampaign(campaignRow('c1', 'g', { version: '2.0.0', security_counter: 2 }));
    await store.insertCampaign(campaignRow('c2', 'h', { version: '3.0.0', security_counter: 3 }));
    await store.recordOnline('d1', { group: 'g', version: '1.0.0', counter: 1 }, 10);
    await store.recordOnline('d2', { group: 'g', version: '1.0.0', counter: 1 }, 10);
    expect(await store.recordStatus({ campaign: 'c1', device: 'd1', state: 'confirmed' })).toBe(true);
    expect(await store.recordStatus({ campaign: 'c1', device: 'd2', state: 'rejected', code: 300 })).toBe(true);
    const d1 = await store.device('d1');
    expect([d1?.version, d1?.counter, d1?.online, d1?.last_error_code]).toEqual(['2.0.0', 2, 1, null]);
    const d2 = await store.device('d2');
    expect([d2?.version, d2?.counter, d2?.last_error_code, d2?.last_error_campaign]).toEqual(['1.0.0', 1, 300, 'c1']);
    await store.recordOffline('d2');
    expect(await store.recordStatus({ campaign: 'c1', device: 'd2', state: 'failed', code: 607 })).toBe(false); // stale: changes no device
    expect([(await store.device('d2'))?.last_error_code, (await store.device('d2'))?.online]).toEqual([300, 0]);
    expect(await store.device('nobody')).toBeUndefined();
  });

  it('the last will marks a known device offline, an online report marks it online again; an unknown device is not added', async () => {
    await store.recordOnline('d1', { group: 'g' }, 10);
    const seen = (await store.device('d1'))!.last_seen;
    expect(await store.recordOffline('d1')).toBe(true);
    expect(await store.recordOffline('ghost')).toBe(false);
    expect([(await store.device('d1'))?.online, (await store.device('d1'))?.last_seen]).toEqual([0, seen]);
    expect(await store.deviceCount()).toBe(1);
    await store.recordOnline('d1', { group: 'g' }, 10);
    expect((await store.device('d1'))?.online).toBe(1);
  });

  it('timeouts: only silent devices of a running campaign, each once; a timed-out device that comes back takes its own end state, not a progress step', async () => {
    await store.insertCampaign(campaignRow('c1', 'g', { wave_started: 1 }));
    for (const d of ['a', 'b', 'c', 'other']) await store.recordOnline(d, { group: d === 'other' ? 'h' : 'g' }, 10);
    await store.recordStatus({ campaign: 'c1', device: 'b', state: 'downloading', done: 1, total: 4 });
    await store.recordStatus({ campaign: 'c1', device: 'c', state: 'confirmed' });
    expect(await store.recordTimeouts('c1', ['a', 'b'], 2)).toEqual([]); // heard after the cutoff
    const later = Date.now() + 60_000;
    expect(await store.recordTimeouts('c1', ['a', 'b', 'c', 'other', 'ghost'], later)).toEqual(['a', 'b']);
    expect(await store.recordTimeouts('c1', ['a', 'b'], later)).toEqual([]);
    expect((await store.statuses('c1')).map((r) => [r.device, r.state, r.rank])).toEqual([
      ['a', 'timed-out', 4],
      ['b', 'timed-out', 4],
      ['c', 'confirmed', 4],
    ]);
    expect(await store.recordStatus({ campaign: 'c1', device: 'a', state: 'downloading', done: 2, total: 4 })).toBe(false);
    expect(await store.recordStatus({ campaign: 'c1', device: 'a', state: 'confirmed' })).toBe(true);
    expect(await store.recordStatus({ campaign: 'c1', device: 'a', state: 'failed', code: 607 })).toBe(false);
    expect((await store.statuses('c1')).find((r) => r.device === 'a')?.state).toBe('confirmed');
    await store.insertCampaign(campaignRow('c2', 'h', { wave_started: Date.now() + 120_000 }));
    expect(await store.recordTimeouts('c2', ['other'], later)).toEqual([]); // its wave started after the cutoff
    await store.updateCampaign('c1', () => ({ state: 'paused' }));
    await store.recordOnline('d', { group: 'g' }, 10);
    expect(await store.recordTimeouts('c1', ['d'], later)).toEqual([]); // not running
  });

  it('exclude: the row becomes excluded for good, the gate shows the device rollout 0; unknown campaign, foreign device, aborted campaign and a second exclude are told apart', async () => {
    await store.insertCampaign(campaignRow('c1', 'g'));
    await store.recordOnline('d1', { group: 'g' }, 10);
    await store.recordOnline('h1', { group: 'h' }, 10);
    await store.recordStatus({ campaign: 'c1', device: 'd1', state: 'downloading', done: 1, total: 2 });
    expect((await store.gate('c1', 'd1'))?.rollout).toBe(ROLLOUT_ALL); // read before: the exclusion must not be answered from it
    expect(await store.excludeDevice('nope', 'd1')).toBe('no-campaign');
    expect(await store.excludeDevice('c1', 'h1')).toBe('no-device');
    expect(await store.excludeDevice('c1', 'ghost')).toBe('no-device');
    expect(await store.excludeDevice('c1', 'd1')).toBe('excluded');
    expect(await store.excludeDevice('c1', 'd1')).toBe('already');
    expect(await store.recordStatus({ campaign: 'c1', device: 'd1', state: 'confirmed' })).toBe(false);
    expect(await store.recordTimeouts('c1', ['d1'], Date.now() + 60_000)).toEqual([]);
    expect((await store.statuses('c1')).map((r) => [r.state, r.rank])).toEqual([['excluded', 5]]);
    expect((await store.gate('c1', 'd1'))?.rollout).toBe(0);
    expect((await store.gate('c1', 'h1'))?.rollout).toBe(ROLLOUT_ALL);
    expect((await store.gate('c1'))?.rollout).toBe(ROLLOUT_ALL);
    await store.updateCampaign('c1', () => ({ state: 'aborted' }));
    expect((await store.gate('c1', 'h1'))?.state).toBe('aborted'); // this instance's own change applies at once
    await store.recordOnline('d2', { group: 'g' }, 10);
    expect(await store.excludeDevice('c1', 'd2')).toBe('inactive');
  });

  it('campaign events: appended in order, the newest `limit` read oldest first, per campaign', async () => {
    for (let i = 1; i <= 5; i++) await store.recordEvent({ campaign: 'c1', at: 100 + i, action: `a${i}`, actor: i % 2 ? 'ops' : 'server', detail: `d${i}` });
    await store.recordEvent({ campaign: 'c2', at: 1, action: 'create', actor: 'ci', detail: '' });
    expect((await store.events('c1', 3)).map((e) => e.action)).toEqual(['a3', 'a4', 'a5']);
    expect(await store.events('c2', 10)).toEqual([{ campaign: 'c2', at: 1, action: 'create', actor: 'ci', detail: '' }]);
    expect(await store.events('none', 10)).toEqual([]);
  });

  it('device pages: filters by group, version and presence, ordered by id after `after`; the history lists every campaign the device has a row in', async () => {
    for (let i = 0; i < 7; i++) await store.recordOnline(`d${i}`, { group: i < 5 ? 'g' : 'h', version: i % 2 ? '2.0.0' : '1.0.0' }, 100);
    await store.recordOffline('d1');
    const ids = (rows: { id: string }[]) => rows.map((r) => r.id);
    expect(ids(await store.devicePage({ limit: 3 }))).toEqual(['d0', 'd1', 'd2']);
    expect(ids(await store.devicePage({ limit: 3, after: 'd2' }))).toEqual(['d3', 'd4', 'd5']);
    expect(ids(await store.devicePage({ limit: 10, group: 'g', version: '2.0.0' }))).toEqual(['d1', 'd3']);
    expect(ids(await store.devicePage({ limit: 10, group: 'g', presence: { online: false, since: 0 } }))).toEqual(['d1']);
    expect(ids(await store.devicePage({ limit: 10, group: 'h', presence: { online: true, since: 0 } }))).toEqual(['d5', 'd6']);
    expect(ids(await store.devicePage({ limit: 10, presence: { online: false, since: Date.now() + 60_000 } }))).toHaveLength(7); // not heard since
    await store.insertCampaign(campaignRow('c1', 'g', { created: 1, version: '2.0.0' }));
    await store.recordStatus({ campaign: 'c1', device: 'd0', state: 'failed', code: 607 });
    await store.updateCampaign('c1', () => ({ state: 'aborted' }));
    await store.insertCampaign(campaignRow('c2', 'g', { created: 2, version: '2.0.1' }));
    await store.recordStatus({ campaign: 'c2', device: 'd0', state: 'confirmed' });
    expect((await store.deviceHistory('d0')).map((h) => [h.campaign, h.version, h.campaign_state, h.state, h.code])).toEqual([
      ['c1', '2.0.0', 'aborted', 'failed', 607],
      ['c2', '2.0.1', 'running', 'confirmed', null],
    ]);
    expect(await store.deviceHistory('d6')).toEqual([]);
  });

  // ---- issue 16: what /metrics reads (SPEC.md §12.9 "Metrics") ----

  it('campaignCounts: campaigns by state, a state with none left out', async () => {
    expect(await store.campaignCounts()).toEqual([]);
    await store.insertCampaign(campaignRow('c1', 'g'));
    await store.insertCampaign(campaignRow('c2', 'h'));
    await store.insertCampaign(campaignRow('c3', 'k'));
    await store.updateCampaign('c2', () => ({ state: 'halted' }));
    await store.updateCampaign('c3', () => ({ state: 'completed' }));
    const counts = Object.fromEntries((await store.campaignCounts()).map((c) => [c.state, c.n]));
    expect(counts).toEqual({ running: 1, halted: 1, completed: 1 });
  });

  it('unexpectedReleases (M10): a release no campaign carried counts, unless the device was first seen with it; confirmed releases never do', async () => {
    await store.insertCampaign(campaignRow('c1', 'g', { version: '2.0.0', security_counter: 2 }));
    await store.recordOnline('factory', { group: 'g', version: '0.9.0', counter: 1 }, 10); // provisioned before the server: its first release
    await store.recordOnline('updated', { group: 'g', version: '1.0.0', counter: 1 }, 10);
    await store.recordStatus({ campaign: 'c1', device: 'updated', state: 'confirmed' }); // 2.0.0 / 2: carried by c1
    await store.recordOnline('moved', { group: 'g', version: '1.0.0', counter: 1 }, 10);
    await store.recordOnline('moved', { group: 'g', version: '6.6.6', counter: 66 }, 10); // nothing the server delivered
    await store.recordOnline('reverted', { group: 'g', version: '1.0.0', counter: 1 }, 10);
    await store.recordOnline('reverted', { group: 'g', version: '2.0.0', counter: 2 }, 10);
    await store.recordOnline('reverted', { group: 'g', version: '1.0.0', counter: 1 }, 10); // back on its first release
    await store.recordOnline('blank', { group: 'g' }, 10);
    await store.recordOnline('blank', { group: 'g', version: '7.0.0' }, 10); // no counter: not a release the rule can judge
    await store.recordOnline('counterless', { group: 'g', version: '2.0.0', counter: 3 }, 10); // the version alone is not the release
    expect(await store.unexpectedReleases()).toEqual({ notInHistory: 1, notReleaseRole: 0 });
    await store.recordOnline('counterless', { group: 'g', version: '2.0.0', counter: 4 }, 10);
    expect(await store.unexpectedReleases()).toEqual({ notInHistory: 2, notReleaseRole: 0 });
  });

  it('unexpectedReleases (M10): a release that only campaigns halted by the root of trust carried counts as not signed by the release role', async () => {
    await store.insertCampaign(campaignRow('c1', 'g', { version: '2.0.0', security_counter: 2 }));
    await store.insertCampaign(campaignRow('c2', 'h', { version: '2.0.0', security_counter: 2 }));
    for (const d of ['a', 'b']) {
      await store.recordOnline(d, { group: 'g', version: '1.0.0', counter: 1 }, 10);
      await store.recordStatus({ campaign: 'c1', device: d, state: 'confirmed' });
    }
    await store.updateCampaign('c1', () => ({ state: 'halted', halt_code: 302 }));
    expect(await store.unexpectedReleases()).toEqual({ notInHistory: 0, notReleaseRole: 0 }); // c2 carries it and still verifies
    await store.updateCampaign('c2', () => ({ state: 'halted', halt_code: 302 }));
    expect(await store.unexpectedReleases()).toEqual({ notInHistory: 0, notReleaseRole: 2 });
  });

  it('trustChain: every stored trust bundle, oldest first, with when it was stored', async () => {
    expect(await store.root.trustChain()).toEqual([]);
    await store.root.change(() => ({ result: null, trust: trustRow(1) }), 1000);
    await store.root.change(() => ({ result: null, trust: trustRow(2) }), 2000);
    const chain = await store.root.trustChain();
    expect(chain.map((r) => [r.version, r.accepted, Buffer.from(r.envelope).toString()])).toEqual([
      [1, 1000, 'trust 1'],
      [2, 2000, 'trust 2'],
    ]);
  });
});

describe.each(BACKENDS)('two stores on one $name database (two instances) racing', ({ open }) => {
  let dir: string;
  let a: OtaStore;
  let b: OtaStore;
  /** `n` calls started together, alternating between the two stores. */
  const both = <T>(n: number, call: (s: OtaStore, i: number) => Promise<T>) => Promise.allSettled(Array.from({ length: n }, (_, i) => call(i % 2 ? a : b, i)));
  const values = <T>(r: PromiseSettledResult<T>[]) => r.map((x) => (x.status === 'fulfilled' ? x.value : x.reason));
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fwseal-store2-'));
    a = await open(dir);
    b = await open(dir);
  });
  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('the same compare-and-set from both: no update lost, and one pause of a running campaign wins', async () => {
    await a.insertCampaign(campaignRow('c1', 'g', { rollout: 0 }));
    expect(values(await both(30, (s) => s.updateCampaign('c1', (r) => ({ rollout: r.rollout + 1 })))).every((r) => r?.id === 'c1')).toBe(true);
    expect((await b.campaign('c1'))?.rollout).toBe(30);
    const paused = values(await both(6, (s) => s.updateCampaign('c1', (r) => (r.state === 'running' ? { state: 'paused' } : null))));
    expect(paused.filter((r) => r !== null).map((r) => r.state)).toEqual(['paused']);
  });

  it('campaigns for one group inserted by both at once: one is active, the others are CONFLICT', async () => {
    const r = await both(6, (s, i) => s.insertCampaign(campaignRow(`c${i}`, 'g')));
    expect(values(r).filter((x) => x === true)).toHaveLength(1);
    expect(values(r.filter((x) => x.status === 'rejected')).map((e) => e.codeName)).toEqual(Array(5).fill('CONFLICT'));
    expect(await a.campaigns()).toHaveLength(1);
  });

  it('new devices reported to both at once: exactly maxKnownDevices are added', async () => {
    const added = values(await both(40, (s, i) => s.recordOnline(`d${i}`, { group: 'g' }, 10)));
    expect(added.filter((x) => x === true)).toHaveLength(10);
    expect(added.filter((x) => x === false)).toHaveLength(30);
    expect(await b.deviceCount()).toBe(10);
  });

  it('one new device reported to both at once is added once and counted once toward the bound', async () => {
    expect(values(await both(10, (s) => s.recordOnline('same', { group: 'g', counter: 1 }, 2)))).toEqual(Array(10).fill(true));
    expect(await a.recordOnline('second', { group: 'g' }, 2)).toBe(true);
    expect(await b.recordOnline('third', { group: 'g' }, 2)).toBe(false);
    expect((await a.devices()).map((d) => d.id)).toEqual(['same', 'second']);
  });

  it('root changes from both at once: each sees the one committed before it, no version is stored twice', async () => {
    await a.root.change(() => ({ result: 0, trust: trustRow(1) }));
    const next = (s: OtaStore) =>
      s.root.change((newest) => {
        const v = (newest.list?.version ?? 0) + 1;
        return { result: v, list: listRow(v) };
      });
    const stored = values(await both(10, next));
    expect([...stored].sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(await b.root.versions()).toEqual({ trust: 1, list: 10 });
  });

  it('timeouts and exclusions from both at once: each device times out once, one exclusion wins', async () => {
    await a.insertCampaign(campaignRow('c1', 'g'));
    const ids = Array.from({ length: 8 }, (_, i) => `d${i}`);
    for (const d of ids) await a.recordOnline(d, { group: 'g' }, 100);
    const later = Date.now() + 60_000;
    const timedOut = values(await both(6, (s) => s.recordTimeouts('c1', ids, later))).flat();
    expect([...timedOut].sort()).toEqual(ids);
    await a.recordOnline('x', { group: 'g' }, 100);
    expect(values(await both(6, (s) => s.excludeDevice('c1', 'x'))).sort()).toEqual(['already', 'already', 'already', 'already', 'already', 'excluded']);
  });
});
