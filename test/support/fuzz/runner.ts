/**
 * The fuzzer's engine (issue: "npm run fuzz"): mutated and random envelopes, trust bundles,
 * revocation lists, images, chunks and proofs are fed to the device verifier, and every call is held
 * to one oracle:
 *
 *   - it returns (never throws)                                   else a "crash"
 *   - within `hangMs` (1 s)                                       else a "hang"
 *   - a well-formed result: ok === false with a code the table knows and error === codeName(code)
 *     (or ok === true with code 0 and error 'OK')                 else a "bad result"
 *   - a rejection, unless the input is one the target legitimately accepts: one of its valid
 *     inputs (listed by construction, never by asking the verifier), or the same signed payload
 *     still carrying all of that input's signature entries unchanged            else "accepted"
 *
 * Every valid input carries exactly the signatures its thresholds need, for every target that
 * accepts it: no mutation can destroy a surplus signature and leave a still-valid object.
 *
 * Reproducible: case n of seed s draws from its own PRNG stream (sfc32 seeded from s and n), so a
 * failure is replayed from (seed, case) alone, whatever the number of runs or workers.
 * Pure functions over the fixtures; no Math.random, no clock except for measuring calls.
 *
 * The engine lives in test/support/fuzz/ because it is test support shared by `npm test` and
 * tools/fuzz.ts, one module per job:
 *   runner.ts                 this file: makeCase, the oracle (judge), replayCase, runFuzz
 *   report.ts                 findings, FuzzReport, mergeReports
 *   world.ts                  the valid inputs (fixtures) and the standard targets
 *   target.ts                 what a target and a case are
 *   signed-object-target.ts   envelope, trust bundle and revocation list bytes; the acceptance oracle
 *   image-targets.ts          the image stream; chunks, proofs and digest pages
 *   api-target.ts             wrongly typed API arguments
 *   mutators.ts               byte-level mutators and the weighted mix (`mutate`)
 *   cbor-mutators.ts          CBOR-structural mutation and random CBOR items
 *   rng.ts                    the sfc32 PRNG, one stream per (seed, case)
 */
import { toHex } from '../../../shared/bytes.js';
import { codeName } from '../../../shared/codes.js';
import { emptyReport, type Finding, type FindingKind, type FuzzReport } from './report.js';
import { Rng } from './rng.js';
import { describe, type FuzzCase, type FuzzTarget } from './target.js';
import { defaultWorld, type World } from './world.js';

export type FuzzOptions = {
  runs: number;
  seed: number;
  /** Targets to use instead of the standard world's (e.g. a deliberately broken one). */
  targets?: readonly FuzzTarget[];
  corpus?: readonly Uint8Array[];
  /** Only targets whose name starts with one of these. */
  only?: readonly string[];
  /** A call slower than this counts as a hang (default 1000 ms). */
  hangMs?: number;
  /** Cases first, first + stride, ... below `runs` (for workers); defaults 0 and 1. */
  first?: number;
  stride?: number;
  /** Case numbers not to run (a CLI worker restarted after a case that never returned). */
  skip?: ReadonlySet<number>;
  maxFindings?: number;
  /** Called before and after every case (cheap: for progress and watchdogs). */
  onCaseStart?: (caseIndex: number) => void;
  onCase?: (caseIndex: number, done: number) => void;
};

/** Pick the target and build case `index` of `seed`: the same (seed, index) always gives the same case. */
export function makeCase(
  seed: number,
  index: number,
  targets: readonly FuzzTarget[],
  corpus: readonly Uint8Array[],
): { target: FuzzTarget; fuzzCase: FuzzCase } {
  const rng = new Rng(seed, index);
  const target = rng.weighted(targets.map((t) => [t, t.weight] as const));
  return { target, fuzzCase: target.make(rng, corpus) };
}

/** Judge one result: null if it is a well-formed rejection (or a legitimate acceptance). */
export function judge(result: unknown, legit: () => boolean): { kind: FindingKind; message: string } | { kind: 'ok'; code: string; legitAccepted: boolean } {
  if (result === null || typeof result !== 'object') return { kind: 'bad-result', message: `result is ${describe(result)}` };
  const r = result as { ok?: unknown; code?: unknown; error?: unknown; detail?: unknown };
  if (r.ok === true) {
    if (r.code !== 0 || r.error !== 'OK') return { kind: 'bad-result', message: `ok with code ${describe(r.code)} error ${describe(r.error)}` };
    return legit() ? { kind: 'ok', code: 'OK', legitAccepted: true } : { kind: 'accepted', message: 'a mutated input was accepted' };
  }
  if (r.ok !== false) return { kind: 'bad-result', message: `ok is ${describe(r.ok)}` };
  if (typeof r.code !== 'number') return { kind: 'bad-result', message: `code is ${describe(r.code)}` };
  const name = codeName(r.code);
  if (name === `UNKNOWN_${String(r.code)}` || r.code === 0) return { kind: 'bad-result', message: `code ${r.code} is not in the table` };
  if (r.error !== name) return { kind: 'bad-result', message: `error ${describe(r.error)} !== codeName(${r.code}) = ${name}` };
  if (r.detail !== undefined && typeof r.detail !== 'string') return { kind: 'bad-result', message: `detail is ${describe(r.detail)}` };
  return { kind: 'ok', code: name, legitAccepted: false };
}

const MAX_HEX_BYTES = 65536;

/** The targets whose name starts with one of `only` (all when `only` is empty). Case n depends on this selection. */
export function selectTargets(targets: readonly FuzzTarget[], only?: readonly string[]): readonly FuzzTarget[] {
  const chosen = only && only.length > 0 ? targets.filter((t) => only.some((p) => t.name.startsWith(p))) : targets;
  if (chosen.length === 0) throw new Error(`no fuzz target matches ${JSON.stringify(only)}`);
  return chosen;
}

/** Replay one case of the standard world (same seed, case number and `only` as the run that reported it). */
export function replayCase(
  seed: number,
  index: number,
  only?: readonly string[],
): {
  target: string;
  note: string;
  input: Uint8Array;
  ms: number;
  result?: unknown;
  thrown?: unknown;
  verdict: string;
} {
  const world = defaultWorld();
  const { target, fuzzCase } = makeCase(seed >>> 0, index, selectTargets(world.targets, only), world.corpus);
  const t0 = performance.now();
  try {
    const result = fuzzCase.run();
    const ms = performance.now() - t0;
    const j = judge(result, () => fuzzCase.legit());
    const verdict = j.kind === 'ok' ? (j.legitAccepted ? 'accepted (legitimately: a valid input)' : `rejected with ${j.code}`) : `${j.kind}: ${j.message}`;
    return { target: target.name, note: fuzzCase.note, input: fuzzCase.input, ms, result, verdict };
  } catch (e) {
    return { target: target.name, note: fuzzCase.note, input: fuzzCase.input, ms: performance.now() - t0, thrown: e, verdict: 'crash' };
  }
}

/** Run the fuzzer in this thread. Never throws for a verifier failure: failures are in the report. */
export function runFuzz(options: FuzzOptions): FuzzReport {
  const world = options.targets ? null : defaultWorld();
  const targets = selectTargets(options.targets ?? (world as World).targets, options.only);
  const corpus = options.corpus ?? world?.corpus ?? [];
  const seed = options.seed >>> 0;
  const hangMs = options.hangMs ?? 1000;
  const maxFindings = options.maxFindings ?? 20;
  const first = options.first ?? 0;
  const stride = options.stride ?? 1;
  const report = emptyReport(seed);
  const lists: Record<FindingKind, Finding[]> = { crash: report.crashes, hang: report.hangs, accepted: report.accepted, 'bad-result': report.badResults };
  const countKey = { crash: 'crashes', hang: 'hangs', accepted: 'accepted', 'bad-result': 'badResults' } as const;
  const start = performance.now();

  for (let i = first; i < options.runs; i += stride) {
    if (options.skip?.has(i)) continue;
    options.onCaseStart?.(i);
    const { target, fuzzCase } = makeCase(seed, i, targets, corpus);
    for (const op of fuzzCase.ops) report.byMutator[op] = (report.byMutator[op] ?? 0) + 1;
    let result: unknown;
    let threw: unknown;
    let didThrow = false;
    const t0 = performance.now();
    try {
      result = fuzzCase.run();
    } catch (e) {
      didThrow = true;
      threw = e;
    }
    const ms = performance.now() - t0;
    const stats = (report.byTarget[target.name] ??= { runs: 0, ms: 0, codes: {} });
    stats.runs++;
    stats.ms += ms;
    report.runs++;
    if (ms > report.slowestMs) {
      report.slowestMs = ms;
      report.slowest = { target: target.name, case: i, note: fuzzCase.note };
    }
    const findings: { kind: FindingKind; message: string }[] = [];
    if (didThrow) findings.push({ kind: 'crash', message: threw instanceof Error ? `${threw.name}: ${threw.message}` : `threw ${describe(threw)}` });
    else {
      const j = judge(result, () => fuzzCase.legit());
      if (j.kind === 'ok') {
        report.byCode[j.code] = (report.byCode[j.code] ?? 0) + 1;
        stats.codes[j.code] = (stats.codes[j.code] ?? 0) + 1;
        if (j.legitAccepted) report.counts.legitAccepted++;
      } else findings.push(j);
    }
    if (ms > hangMs) findings.push({ kind: 'hang', message: `call took ${ms.toFixed(0)} ms (limit ${hangMs} ms)` });
    for (const f of findings) {
      report.counts[countKey[f.kind]]++;
      const list = lists[f.kind];
      if (list.length < maxFindings) {
        list.push({
          kind: f.kind,
          seed,
          case: i,
          target: target.name,
          note: fuzzCase.note,
          message: f.message,
          ms,
          inputHex: toHex(fuzzCase.input.subarray(0, MAX_HEX_BYTES)),
        });
      }
    }
    options.onCase?.(i, report.runs);
  }
  report.elapsedMs = performance.now() - start;
  return report;
}
