/**
 * Just enough of the Prometheus text format 0.0.4 to read the server's own /metrics back (SPEC.md
 * §12.9 "Web console"): the console's SLI charts show what Prometheus would scrape, by the names of
 * the metric contract, so the console and the dashboards cannot disagree about a figure.
 */

export type Sample = { readonly name: string; readonly labels: Readonly<Record<string, string>>; readonly value: number };

/** A histogram's finite buckets (cumulative counts, ascending `le`), its count and sum. */
export type HistogramView = { readonly buckets: { le: number; count: number }[]; readonly count: number; readonly sum: number };

const LINE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?$/;
const LABEL = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

const unescapeLabel = (v: string) => v.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));

function sampleValue(text: string): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(text);
}

/** Every sample line of a scrape; comments, blank lines and lines that do not parse are skipped. */
export function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]] = unescapeLabel(l[2]);
    out.push({ name: m[1], labels, value: sampleValue(m[3]) });
  }
  return out;
}

const matches = (s: Sample, want: Readonly<Record<string, string>>) => Object.entries(want).every(([k, v]) => s.labels[k] === v);

/** The samples of one metric whose labels include `want`. */
export function select(samples: readonly Sample[], name: string, want: Readonly<Record<string, string>> = {}): Sample[] {
  return samples.filter((s) => s.name === name && matches(s, want));
}

/** The sum of the matching samples (0 when there are none, NaN values skipped). */
export function total(samples: readonly Sample[], name: string, want: Readonly<Record<string, string>> = {}): number {
  return select(samples, name, want).reduce((n, s) => (Number.isFinite(s.value) ? n + s.value : n), 0);
}

/** One histogram (the series with labels `want`), or null when the scrape has no such series. */
export function histogram(samples: readonly Sample[], name: string, want: Readonly<Record<string, string>> = {}): HistogramView | null {
  const count = select(samples, `${name}_count`, want);
  if (count.length === 0) return null;
  const buckets = select(samples, `${name}_bucket`, want)
    .map((s) => ({ le: sampleValue(s.labels.le ?? ''), count: s.value }))
    .filter((b) => Number.isFinite(b.le))
    .sort((a, b) => a.le - b.le);
  return { buckets, count: count[0].value, sum: total(samples, `${name}_sum`, want) };
}
