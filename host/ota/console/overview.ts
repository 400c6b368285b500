/**
 * `GET /api/overview` (viewer; SPEC.md §12.9 "Web console"): what the console's first page shows, in
 * one answer: the fleet by installed version and presence, the root of trust in force and how many
 * online devices enforce it, the campaigns in progress (and the latest finished ones) with their
 * counts and failure rate, and the SLIs read back from the server's own /metrics (M2 pass rate, M4
 * verify latency, M8 rejections and refusals by code).
 *
 * The answer is shared for OVERVIEW_CACHE_MS by every caller of one server: however many consoles
 * poll it, the store is read at most once per period.
 */
import { detail } from '../campaigns.js';
import { ONLINE_WINDOW_MS } from '../metrics.js';
import { type OtaServer } from '../server.js';
import { type CampaignRow, type CampaignState, type OtaStore } from '../store.js';
import { type HistogramView, histogram, parseSamples, type Sample, select, total } from './prom-text.js';

/** How long one overview is served before the store is read again. */
export const OVERVIEW_CACHE_MS = 2000;
/** Devices read for the version breakdown, a page at a time; a larger fleet is shown in part (`complete: false`). */
export const FLEET_SCAN_MAX = 50_000;
const SCAN_PAGE = 1000;
/** The versions listed, most devices first. */
export const VERSIONS_SHOWN = 50;
/** Finished campaigns shown after the active ones, newest first. */
export const FINISHED_SHOWN = 10;
const ACTIVE: readonly CampaignState[] = ['running', 'paused', 'halted'];
const STATES: readonly CampaignState[] = ['running', 'paused', 'halted', 'completed', 'aborted'];

type VersionCount = { version: string | null; online: number; offline: number };

/** Every known device once (up to FLEET_SCAN_MAX), by version, online as the fleet view counts it (http-fleet.ts). */
async function fleet(store: OtaStore, now: number) {
  const byVersion = new Map<string | null, VersionCount>();
  let online = 0;
  let scanned = 0;
  let after: string | undefined;
  for (;;) {
    const rows = await store.devicePage({ limit: SCAN_PAGE, ...(after !== undefined ? { after } : {}) });
    for (const d of rows) {
      const on = d.online === 1 && d.last_seen >= now - ONLINE_WINDOW_MS;
      const v = byVersion.get(d.version) ?? { version: d.version, online: 0, offline: 0 };
      if (on) v.online++;
      else v.offline++;
      byVersion.set(d.version, v);
      if (on) online++;
    }
    scanned += rows.length;
    if (rows.length < SCAN_PAGE || scanned >= FLEET_SCAN_MAX) break;
    after = rows[rows.length - 1].id;
  }
  const known = await store.deviceCount();
  const versions = [...byVersion.values()].sort((a, b) => b.online + b.offline - (a.online + a.offline)).slice(0, VERSIONS_SHOWN);
  return { known, scanned, complete: scanned >= known, online, offline: scanned - online, versions };
}

/** The trust bundle and revocation list the servers publish, and what the devices acknowledged (SPEC.md §12.13). */
async function root(store: OtaStore, now: number) {
  const published = await store.root.versions();
  const e = await store.root.enforcing(published.list, now - ONLINE_WINDOW_MS);
  const rows = (r: { v: number | null; n: number }[]) => r.map((x) => ({ version: x.v, devices: x.n }));
  return {
    trustVersion: published.trust,
    revocationVersion: published.list,
    online: e.online,
    enforcing: e.enforcing,
    trustVersions: rows(await store.root.trustVersionsSeen()),
    revocationVersions: rows(await store.root.revocationVersions()),
  };
}

/** The active campaigns, then the newest finished ones: each with its counts, as its detail has them. */
async function campaigns(store: OtaStore, now: number) {
  const all = await store.campaigns();
  const states = Object.fromEntries(STATES.map((s) => [s, all.filter((c) => c.state === s).length]));
  const newest = (a: CampaignRow, b: CampaignRow) => b.updated - a.updated;
  const active = all.filter((c) => ACTIVE.includes(c.state)).sort(newest);
  const finished = all
    .filter((c) => !ACTIVE.includes(c.state))
    .sort(newest)
    .slice(0, FINISHED_SHOWN);
  const shown = [];
  for (const row of [...active, ...finished]) {
    const d = await detail(store, row, now);
    shown.push({
      id: d.id,
      group: d.group,
      version: d.version,
      state: d.state,
      haltCode: d.haltCode,
      wave: d.wave,
      waves: d.waves,
      waitingFor: d.waitingFor,
      counts: d.counts,
      failureRate: d.failureRate,
      abortFailureRate: d.abortFailureRate,
      updated: d.updated,
    });
  }
  return { states, shown };
}

/** A histogram as the console draws it: which metric and stage, its finite buckets, count and sum. */
function latency(samples: readonly Sample[], metric: string, stage: string | null) {
  const h: HistogramView | null = histogram(samples, metric, stage === null ? {} : { stage });
  return h === null ? [] : [{ metric, stage, ...h }];
}

/** The SLIs of the metric contract (common to the dashboards), from this server's own scrape. */
function slis(text: string) {
  const s = parseSamples(text);
  return {
    verifications: {
      pass: total(s, 'fwseal_manifest_verifications', { result: 'pass' }),
      reject: total(s, 'fwseal_manifest_verifications', { result: 'reject' }),
    },
    rejections: select(s, 'fwseal_rejections').map((x) => ({ code: x.labels.code ?? '', devices: x.value })),
    refusals: select(s, 'fwseal_refusals_total')
      .filter((x) => x.value > 0)
      .map((x) => ({ code: x.labels.code ?? '', stage: x.labels.stage ?? '', count: x.value })),
    latency: [
      ...latency(s, 'fwseal_device_verify_seconds', 'manifest'),
      ...latency(s, 'fwseal_device_verify_seconds', 'image'),
      ...latency(s, 'fwseal_server_verify_seconds', null),
    ],
  };
}

async function build(server: OtaServer, now: number) {
  return {
    at: now,
    fleet: await fleet(server.store, now),
    root: await root(server.store, now),
    campaigns: await campaigns(server.store, now),
    slis: slis(await server.metrics.render(server.store)),
  };
}

export type Overview = Awaited<ReturnType<typeof build>>;

const cache = new WeakMap<OtaServer, { at: number; value: Promise<Overview> }>();

/** The overview, at most OVERVIEW_CACHE_MS old; a failed read is not kept. */
export function overview(server: OtaServer, now = Date.now()): Promise<Overview> {
  const hit = cache.get(server);
  if (hit && now - hit.at < OVERVIEW_CACHE_MS) return hit.value;
  const value = build(server, now);
  cache.set(server, { at: now, value });
  value.catch(() => {
    if (cache.get(server)?.value === value) cache.delete(server);
  });
  return value;
}
