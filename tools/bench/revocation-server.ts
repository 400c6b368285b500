/**
 * `fwseal serve` as the "revocation" section (tools/bench/revocation.ts) uses it: started from the
 * built CLI in a child process, a list published with POST /api/root (SPEC.md §12.9), and what
 * /metrics says about it: `fwseal_revocation_propagation_seconds` (the list's acceptance to each
 * device's first acknowledgement as the server ingests it, SPEC.md §12.13) and
 * `fwseal_revocation_enforcing_ratio`.
 */
import { sample } from '../../test/support/ota-harness.js';
import { type BenchProcesses, getJson, type Proc, waitFor } from './ota-procs.js';

export type Serve = { readonly proc: Proc; readonly api: string };

/** The server's propagation histogram (cumulative buckets), the enforcing ratio and the published list version. */
export type RootMetrics = {
  readonly bounds: readonly number[];
  readonly buckets: readonly number[];
  readonly count: number;
  readonly sum: number;
  readonly enforcingRatio: number;
  readonly published: number;
};

const HIST = 'fwseal_revocation_propagation_seconds';
const auth = (): Record<string, string> => (process.env.FWSEAL_SERVER_TOKEN ? { authorization: `Bearer ${process.env.FWSEAL_SERVER_TOKEN}` } : {});

/** `fwseal serve` on `broker` with its data in `dataDir`, trust bundle `trust`, topics under `prefix`; resolves with its API address. */
export async function startServe(procs: BenchProcesses, broker: string, dataDir: string, trust: string, prefix: string): Promise<Serve> {
  const proc = procs.start('fwseal serve', ['serve', '--broker', broker, '--data', dataDir, '--trust', trust, '--prefix', prefix, '--http', '127.0.0.1:0']);
  let api = '';
  await waitFor(
    'the server address line',
    20_000,
    () => {
      const m = proc.out.match(/HTTP API on (http:\/\/\S+)/);
      if (m) api = m[1]!;
      return !!m;
    },
    50,
    proc,
  );
  return { proc, api };
}

/** Wait until the server knows `n` devices that acknowledged revocation version `version` (0: known at all). */
export function devicesAt(s: Serve, n: number, version: number, ms: number): Promise<void> {
  return waitFor(
    `${n} devices at revocation version ${version} on the server`,
    ms,
    async () => {
      const d = await getJson<{ devices: { revocationVersion: number | null }[] }>(`${s.api}/api/devices`);
      return d.devices.filter((x) => (x.revocationVersion ?? 0) >= version).length >= n;
    },
    100,
    s.proc,
  );
}

/** POST /api/root with a signed list: the times (performance.now()) just before the call and when it answered. */
export async function publishList(s: Serve, envelope: Uint8Array): Promise<{ t0: number; answered: number }> {
  const t0 = performance.now();
  const r = await fetch(`${s.api}/api/root`, { method: 'POST', headers: { 'content-type': 'application/octet-stream', ...auth() }, body: envelope });
  const answered = performance.now();
  const body = (await r.json()) as { changed?: boolean; error?: string };
  if (r.status !== 200 || body.changed !== true) throw new Error(`POST /api/root: ${r.status} ${JSON.stringify(body)}`);
  return { t0, answered };
}

/** When the server accepted its newest list (ms since the epoch, its clock), from GET /api/root. */
export async function listPublishedAt(s: Serve): Promise<number | null> {
  const r = await fetch(`${s.api}/api/root`, { headers: auth() });
  return ((await r.json()) as { revocationPublished: number | null }).revocationPublished;
}

export async function rootMetrics(s: Serve): Promise<RootMetrics> {
  const text = await (await fetch(`${s.api}/metrics`)).text();
  const bounds = [...text.matchAll(new RegExp(`^${HIST}_bucket\\{le="([0-9.e+]+)"\\}`, 'gm'))].map((m) => Number(m[1]));
  return {
    bounds,
    buckets: bounds.map((b) => sample(text, `${HIST}_bucket`, `{le="${b}"}`)),
    count: sample(text, `${HIST}_count`),
    sum: sample(text, `${HIST}_sum`),
    enforcingRatio: sample(text, 'fwseal_revocation_enforcing_ratio'),
    published: sample(text, 'fwseal_root_revocation_version'),
  };
}

/**
 * The observations between two scrapes: count, mean, and for each quantile the upper bound of the
 * bucket it falls in (what a histogram can tell; `> last bound` when beyond every bucket).
 */
export function histogramDelta(before: RootMetrics, after: RootMetrics, qs: readonly number[]): { count: number; mean: number; bounds: string[] } {
  const count = after.count - before.count;
  const cum = after.buckets.map((b, i) => b - (before.buckets[i] ?? 0));
  const bounds = qs.map((q) => {
    const i = cum.findIndex((c) => c >= Math.ceil(q * count));
    return i < 0 ? `> ${after.bounds[after.bounds.length - 1]} s` : `<= ${after.bounds[i]} s`;
  });
  return { count, mean: count ? (after.sum - before.sum) / count : Number.NaN, bounds };
}
