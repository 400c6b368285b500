/**
 * The prom-client pieces /metrics is built from (SPEC.md §12.9 "Metrics"): counters that show a
 * number or a map the server keeps, gauges filled from the store at scrape time, a histogram whose
 * buckets the store counted, the process metrics (one set per process) and `fwseal_build_info`. Each
 * server instance has registries of its own, never prom-client's global one, so several servers in
 * one process (the tests) never share a series.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Aggregator, Counter, collectDefaultMetrics, Gauge, type Metric, Registry } from 'prom-client';
import { type Histogram as CountedHistogram } from './root-store.js';

/** Upper bounds (s) of the M4 verify histograms: 5 ms to 10 s, with the 0.1 s target a bound of its own. */
export const VERIFY_BUCKETS = Object.freeze([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);

/** One sample of a gauge: its labels and its value. */
export type Sample = readonly [labels: Readonly<Record<string, string>>, value: number];

/** A counter whose value is a number the server keeps (`blocksServed++` and the like), read at scrape time. */
export function mirrorCounter(registry: Registry, name: string, help: string, read: () => number): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A counter with one label whose values are the entries of a map the server keeps (every key shown, 0 included). */
export function mirrorCounterMap<K>(
  registry: Registry,
  name: string,
  help: string,
  label: string,
  map: ReadonlyMap<K, number>,
  show: (k: K) => string = String,
): Counter {
  return new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [k, n] of map) this.inc({ [label]: show(k) }, n);
    },
  });
}

/**
 * A gauge whose samples are computed at scrape time from what `read` returns (the store's figures of
 * this scrape; null: none read yet, the last values stay). Label sets that are gone disappear.
 */
export function derivedGauge<F>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly string[],
  read: () => F | null,
  samples: (figures: F) => readonly Sample[],
): Gauge {
  return new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      const f = read();
      if (f === null) return;
      this.reset();
      for (const [labels, v] of samples(f)) this.set(labels, v);
    },
  });
}

/**
 * A histogram whose buckets the store already counted (fwseal_revocation_propagation_seconds: one
 * observation per device and list, cumulative counts per bound). prom-client's Histogram only takes
 * observations one by one, so this is a metric object of the shape a Registry reads (`get`).
 */
export function countedHistogram(registry: Registry, name: string, help: string, bounds: readonly number[], read: () => CountedHistogram | null): void {
  let last: CountedHistogram = { buckets: bounds.map(() => 0), count: 0, sum: 0 };
  const metric = {
    name,
    help,
    type: 'histogram' as const,
    aggregator: 'sum' as Aggregator,
    async get() {
      last = read() ?? last;
      const bucket = `${name}_bucket`;
      const values = [
        ...bounds.map((b, i) => ({ metricName: bucket, labels: { le: b }, value: last.buckets[i] ?? 0 })),
        { metricName: bucket, labels: { le: '+Inf' }, value: last.count },
        { metricName: `${name}_sum`, labels: {}, value: last.sum },
        { metricName: `${name}_count`, labels: {}, value: last.count },
      ];
      return { name, help, type: metric.type, aggregator: metric.aggregator, values };
    },
    reset() {
      last = { buckets: bounds.map(() => 0), count: 0, sum: 0 };
    },
  };
  registry.registerMetric(metric as unknown as Metric);
}

/**
 * Gauges of the default set that promtool's lint refuses (`check metrics`: a gauge must not end in
 * `_total`); their by-type twins (`nodejs_active_handles{type}` ...) stay, and sum() gives the total.
 */
const LINTED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

let processMetrics: Registry | null = null;

/**
 * prom-client's default metrics (process_*, nodejs_*) in a registry of their own, made once per
 * process: they describe the process, and each set starts a GC observer and an event-loop monitor
 * that would otherwise pile up with every server a process starts.
 */
export function processRegistry(): Registry {
  if (processMetrics === null) {
    const r = new Registry();
    collectDefaultMetrics({ register: r });
    for (const name of LINTED_DEFAULTS) r.removeSingleMetric(name);
    processMetrics = r;
  }
  return processMetrics;
}

let version: string | null = null;

/**
 * fwseal's version, from its package.json, read once. The file is found by walking up from this
 * module (host/ota/ in the sources, dist/ once bundled), never imported: a JSON import from outside a
 * layer's folder would break the layered build.
 */
export function fwsealVersion(): string {
  if (version !== null) return version;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 4 && version === null; up++, dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'fwseal' && typeof pkg.version === 'string') version = pkg.version;
    } catch {
      // no package.json here: one folder up
    }
  }
  version ??= 'unknown';
  return version;
}

/** `fwseal_build_info{version,node} 1` (the Prometheus convention for a build's identity). */
export function buildInfo(registry: Registry): void {
  const g = new Gauge({
    name: 'fwseal_build_info',
    help: 'Always 1: the fwseal version and the Node.js version of this instance.',
    labelNames: ['version', 'node'],
    registers: [registry],
  });
  g.set({ version: fwsealVersion(), node: process.version }, 1);
}
