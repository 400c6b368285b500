/**
 * The findings of a fuzz run and how the reports of workers that ran disjoint cases combine.
 */

export type FindingKind = 'crash' | 'hang' | 'accepted' | 'bad-result';

export type Finding = {
  readonly kind: FindingKind;
  readonly seed: number;
  readonly case: number;
  readonly target: string;
  readonly note: string;
  readonly message: string;
  readonly ms: number;
  /** The mutated input, hex (the first 64 KiB of it). */
  readonly inputHex: string;
};

export type FuzzReport = {
  seed: number;
  runs: number;
  crashes: Finding[];
  hangs: Finding[];
  accepted: Finding[];
  badResults: Finding[];
  /** True totals (the finding lists keep the first `maxFindings` of each kind). */
  counts: { crashes: number; hangs: number; accepted: number; badResults: number; legitAccepted: number };
  slowestMs: number;
  slowest: { target: string; case: number; note: string } | null;
  byCode: Record<string, number>;
  byTarget: Record<string, { runs: number; ms: number; codes: Record<string, number> }>;
  byMutator: Record<string, number>;
  elapsedMs: number;
};

export function emptyReport(seed: number): FuzzReport {
  return {
    seed,
    runs: 0,
    crashes: [],
    hangs: [],
    accepted: [],
    badResults: [],
    counts: { crashes: 0, hangs: 0, accepted: 0, badResults: 0, legitAccepted: 0 },
    slowestMs: 0,
    slowest: null,
    byCode: {},
    byTarget: {},
    byMutator: {},
    elapsedMs: 0,
  };
}

/** Combine the reports of workers that ran disjoint cases of the same seed. */
export function mergeReports(reports: readonly FuzzReport[], maxFindings = 20): FuzzReport {
  const out = emptyReport(reports[0]?.seed ?? 0);
  for (const r of reports) {
    out.runs += r.runs;
    for (const k of ['crashes', 'hangs', 'accepted', 'badResults'] as const) {
      out.counts[k] += r.counts[k];
      out[k].push(...r[k]);
    }
    out.counts.legitAccepted += r.counts.legitAccepted;
    if (r.slowestMs > out.slowestMs) {
      out.slowestMs = r.slowestMs;
      out.slowest = r.slowest;
    }
    for (const [k, v] of Object.entries(r.byCode)) out.byCode[k] = (out.byCode[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.byMutator)) out.byMutator[k] = (out.byMutator[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.byTarget)) {
      const t = (out.byTarget[k] ??= { runs: 0, ms: 0, codes: {} });
      t.runs += v.runs;
      t.ms += v.ms;
      for (const [c, n] of Object.entries(v.codes)) t.codes[c] = (t.codes[c] ?? 0) + n;
    }
    out.elapsedMs = Math.max(out.elapsedMs, r.elapsedMs);
  }
  for (const k of ['crashes', 'hangs', 'accepted', 'badResults'] as const) {
    out[k].sort((a, b) => a.case - b.case);
    out[k].length = Math.min(out[k].length, maxFindings);
  }
  return out;
}
