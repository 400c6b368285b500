/**
 * The server store's contract (host/ota/store.ts, SPEC.md §12.9 "Status ingest", "Persistence and
 * several instances"), through the OtaStore interface only, for every backend in BACKENDS: rows that
 * only move forward, the fleet bound, acknowledgements written with the device row, fetch records for
 * the campaign's group only, one active campaign per group, and the atomic steps (insert and update
 * under a root of trust precondition, concurrent read-modify-writes that lose nothing). Then what the
 * server builds on an asynchronous store: a resume checked under an older root changes nothing, and
 * one device's events are applied in arrival order even when a write is slower than a read.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { transition } from '../host/ota/campaigns.js';
import { Metrics } from '../host/ota/metrics.js';
import { StatusIngest } from '../host/ota/status-ingest.js';
import { type NewCampaign, type OtaStore, openStore } from '../host/ota/store.js';
import { encodeStatusEvent } from '../shared/ota/status.js';
import { ROLLOUT_ALL } from '../shared/ota/topics.js';

/** Every backend runs the same cases (a PostgreSQL entry joins this list). */
const BACKENDS: { name: string; open: (dir: string) => Promise<OtaStore> }[] = [{ name: 'sqlite', open: (dir) => openStore({ kind: 'sqlite', dataDir: dir }) }];

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
});
