/**
 * SQLite status writes gathered into one transaction (host/ota/store-sqlite-batch.ts, SPEC.md §12.9
 * "Persistence and several instances"): a burst commits in a few transactions instead of one per
 * event; a write whose promise settled is committed (another connection reads it, and a process
 * killed right after loses none of them); one write that fails fails alone; close() writes what is
 * still gathered.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type NewCampaign } from '../host/ota/store.js';
import { SqliteStore } from '../host/ota/store-sqlite.js';
import { SQLITE_WRITE_BATCH } from '../host/ota/store-sqlite-batch.js';
import { ROLLOUT_ALL } from '../shared/ota/topics.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

function campaignRow(id: string): NewCampaign {
  return {
    ...{ id, grp: 'g', version: '2.0.0', security_counter: 2, state: 'running', wave: 0, waves: '[100]', rollout: ROLLOUT_ALL },
    ...{ abort_failure_rate: 0.1, manifest: Buffer.from('m'), manifest_sha: Buffer.alloc(32, 1), image_sha: '00'.repeat(32) },
    ...{ image_size: 1024, chunk_size: 1024, block_size: 1024, page_count: 1, created: 1, updated: 1 },
    ...{ device_timeout_ms: 3_600_000, abort_min_devices: 1, wave_soak_ms: 0, wave_gate: 'auto', wave_started: 1 },
  };
}

describe('SQLite status writes in batches', () => {
  let dir: string;
  let store: SqliteStore;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fwseal-batch-'));
    store = new SqliteStore(dir);
    await store.insertCampaign(campaignRow('c1'));
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a burst of 60 status writes and 20 online reports commits in a few transactions (one each before)', async () => {
    const before = store.writes.commits;
    const moved = await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => store.recordOnline(`d${i}`, { group: 'g', version: '1.0.0', counter: 1 }, 100)),
      ...Array.from({ length: 60 }, (_, i) => store.recordStatus({ campaign: 'c1', device: `d${i}`, state: 'accepted' })),
    ]);
    expect(moved.every((m) => m === true)).toBe(true);
    expect(store.writes.commits - before).toBeLessThanOrEqual(2);
    expect((await store.statuses('c1')).length).toBe(60);
    expect((await store.device('d3'))?.version).toBe('1.0.0');
  });

  it('at most SQLITE_WRITE_BATCH writes go in one transaction', async () => {
    const before = store.writes.commits;
    await Promise.all(Array.from({ length: SQLITE_WRITE_BATCH + 1 }, (_, i) => store.recordStatus({ campaign: 'c1', device: `d${i}`, state: 'accepted' })));
    expect(store.writes.commits - before).toBe(2);
  });

  it('a write whose promise settled is committed: another connection on the folder reads it', async () => {
    const other = new SqliteStore(dir);
    try {
      expect(await store.recordStatus({ campaign: 'c1', device: 'd1', state: 'downloading', done: 1, total: 4 })).toBe(true);
      expect((await other.statuses('c1')).map((r) => [r.device, r.state, r.done])).toEqual([['d1', 'downloading', 1]]);
    } finally {
      await other.close();
    }
  });

  it('one write that fails fails alone: the others of its batch commit, in their order', async () => {
    const results = await Promise.allSettled([
      store.recordStatus({ campaign: 'c1', device: 'd1', state: 'accepted' }),
      store.writes.write(() => {
        throw new Error('a failing write');
      }),
      store.recordStatus({ campaign: 'c1', device: 'd1', state: 'downloading', done: 2, total: 4 }),
      store.recordStatus({ campaign: 'c1', device: 'd2', state: 'accepted' }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect((await store.statuses('c1')).map((r) => [r.device, r.state])).toEqual([
      ['d1', 'downloading'],
      ['d2', 'accepted'],
    ]);
  });

  it("a device's gathered online is written before its fetch record, which needs its row: the manifest served right after counts", async () => {
    const online = store.recordOnline('d7', { group: 'g', version: '1.0.0', counter: 1 }, 100);
    await store.recordFetch('c1', 'd7'); // the device asked for the manifest before the batch's turn came
    expect(await online).toBe(true);
    expect(await store.fetchedDevices('c1')).toEqual(['d7']);
    expect(await store.statusContext('c1', 'd7')).toMatchObject({ device_grp: 'g', fetched: 1 });
  });

  it("a herd's fetch records (manifest requests) commit together, each settled only once committed", async () => {
    await Promise.all(Array.from({ length: 30 }, (_, i) => store.recordOnline(`h${i}`, { group: 'g', version: '1.0.0', counter: 1 }, 100)));
    const before = store.writes.commits;
    await Promise.all(Array.from({ length: 30 }, (_, i) => store.recordFetch('c1', `h${i}`)));
    expect(store.writes.commits - before).toBe(1);
    expect((await store.fetchedDevices('c1')).length).toBe(30);
  });

  it('close() writes what is still gathered', async () => {
    const pending = store.recordStatus({ campaign: 'c1', device: 'd9', state: 'accepted' });
    expect(store.writes.pending).toBe(1);
    await store.close();
    expect(await pending).toBe(true);
    store = new SqliteStore(dir);
    expect((await store.statuses('c1')).map((r) => r.device)).toEqual(['d9']);
  });
});

/** A child that records status events in bursts and prints each device once its write settled; killed mid-way. */
const CHILD = `
import { SqliteStore } from ${JSON.stringify(pathToFileURL(join(ROOT, 'host/ota/store-sqlite.ts')).href)};
const store = new SqliteStore(process.env.DIR);
for (let burst = 0; ; burst++) {
  await Promise.all(Array.from({ length: 16 }, async (_, k) => {
    const device = 'd' + (burst * 16 + k);
    await store.recordStatus({ campaign: 'c1', device, state: 'accepted' });
    process.stdout.write(device + '\\n'); // a pipe: written synchronously
  }));
}
`;

describe('SQLite status writes and a killed process', () => {
  it('every write reported settled before SIGKILL is in the database', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fwseal-batch-kill-'));
    try {
      const setup = new SqliteStore(dir);
      await setup.insertCampaign(campaignRow('c1'));
      await setup.close();
      const child = spawn(process.execPath, ['--import', TSX, '--input-type=module', '-e', CHILD], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', DIR: dir },
      });
      let out = '';
      let err = '';
      child.stderr!.on('data', (b: Buffer) => {
        err += b.toString();
      });
      const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
      await new Promise<void>((ok, fail) => {
        child.stdout!.on('data', (b: Buffer) => {
          out += b.toString();
          if (out.split('\n').length > 500) {
            child.kill('SIGKILL');
            ok();
          }
        });
        child.once('exit', () => fail(new Error(`the child exited by itself: ${err.slice(-500)}`)));
      });
      await exited;
      const told = out.split('\n').filter((l) => /^d\d+$/.test(l));
      // The kill comes once 500 lines are complete (split gives one more element): at least 500 were told.
      expect(told.length).toBeGreaterThanOrEqual(500);
      const store = new SqliteStore(dir);
      try {
        const stored = new Set((await store.statuses('c1')).map((r) => r.device));
        expect(told.filter((d) => !stored.has(d))).toEqual([]);
      } finally {
        await store.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
