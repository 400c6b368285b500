/**
 * host/ota/gate-cache.ts (SPEC.md §12.9 "Request gate"): a campaign's gate is read at most once per
 * gateCacheMs per instance, concurrent requests share one read, the instance's own changes drop it,
 * excluded devices read rollout 0, and nothing is remembered of a campaign that does not exist or a
 * read that failed. A fake clock and a counting reader, no store.
 */
import { describe, expect, it } from 'vitest';
import { GateCache, type GateRead } from '../host/ota/gate-cache.js';
import { type CampaignGate } from '../host/ota/store.js';
import { LIMITS } from '../shared/limits.js';

const gate = (id: string, state: CampaignGate['state'] = 'running'): CampaignGate => ({ id, state, rollout: 1000, halt_code: null });

function world(initial: Record<string, GateRead | undefined> = {}) {
  const t = { now: 0, reads: [] as string[], rows: { ...initial } as Record<string, GateRead | undefined>, fail: false };
  const cache = new GateCache(
    async (id) => {
      t.reads.push(id);
      if (t.fail) throw new Error('store down');
      return t.rows[id];
    },
    () => t.now,
  );
  return { t, cache };
}

describe('GateCache', () => {
  it('reads a campaign once per gateCacheMs; concurrent requests share the read', async () => {
    const { t, cache } = world({ c: { gate: gate('c'), excluded: new Set() } });
    const got = await Promise.all([cache.get('c', 'd1'), cache.get('c', 'd2'), cache.get('c')]);
    expect(got.map((g) => g?.state)).toEqual(['running', 'running', 'running']);
    t.now += LIMITS.gateCacheMs - 1;
    t.rows.c = { gate: gate('c', 'paused'), excluded: new Set() }; // another instance paused it
    expect((await cache.get('c', 'd1'))?.state).toBe('running');
    expect(t.reads).toEqual(['c']);
    t.now += 1;
    expect((await cache.get('c', 'd1'))?.state).toBe('paused');
    expect(t.reads).toEqual(['c', 'c']);
  });

  it('invalidate (this instance changed the campaign): the next request reads it again', async () => {
    const { t, cache } = world({ c: { gate: gate('c'), excluded: new Set() } });
    await cache.get('c');
    t.rows.c = { gate: gate('c', 'aborted'), excluded: new Set() };
    cache.invalidate('c');
    expect((await cache.get('c'))?.state).toBe('aborted');
    expect(t.reads).toEqual(['c', 'c']);
  });

  it('an excluded device reads rollout 0, the others the campaign rollout', async () => {
    const { cache } = world({ c: { gate: gate('c'), excluded: new Set(['d1']) } });
    expect((await cache.get('c', 'd1'))?.rollout).toBe(0);
    expect((await cache.get('c', 'd2'))?.rollout).toBe(1000);
    expect((await cache.get('c'))?.rollout).toBe(1000);
  });

  it('remembers nothing of an unknown campaign or a failed read', async () => {
    const { t, cache } = world();
    expect(await cache.get('new')).toBeUndefined();
    t.rows.new = { gate: gate('new'), excluded: new Set() }; // created meanwhile (by another instance)
    expect((await cache.get('new'))?.state).toBe('running');
    t.fail = true;
    await expect(cache.get('other')).rejects.toThrow('store down');
    t.fail = false;
    t.rows.other = { gate: gate('other'), excluded: new Set() };
    expect((await cache.get('other'))?.state).toBe('running');
    expect(t.reads).toEqual(['new', 'new', 'other', 'other']);
  });

  it(`keeps at most gateCacheEntries campaigns (${LIMITS.gateCacheEntries}), the oldest read goes first`, async () => {
    const rows: Record<string, GateRead> = {};
    for (let i = 0; i <= LIMITS.gateCacheEntries; i++) rows[`c${i}`] = { gate: gate(`c${i}`), excluded: new Set() };
    const { t, cache } = world(rows);
    for (let i = 0; i <= LIMITS.gateCacheEntries; i++) await cache.get(`c${i}`);
    await cache.get(`c${LIMITS.gateCacheEntries}`);
    await cache.get('c1');
    expect(t.reads.length).toBe(LIMITS.gateCacheEntries + 1);
    await cache.get('c0');
    expect(t.reads.length).toBe(LIMITS.gateCacheEntries + 2);
  });
});
