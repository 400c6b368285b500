/**
 * npm run fuzz -- [--runs N] [--seed S] [--json] [--workers W] [--only PREFIX[,PREFIX]] [--case N] [--hang-ms MS]
 *                  [--smp-runs N] [--ota-runs N]
 *
 * Feeds mutated and random envelopes, trust bundles, revocation lists, images, chunks and proofs to
 * the device verifier (engine: test/support/fuzz/runner.ts) and fails when a call throws, hangs,
 * returns a malformed result or accepts a mutated input. Case n of seed s is the same on every
 * machine and with any number of workers: `--seed s --case n` replays it and prints its input.
 *
 * Runs are spread over worker threads (one per core by default). A watchdog reads each worker's
 * current case from shared memory: a call that never returns is reported as a hang with its case
 * number, the worker is replaced, and the run goes on.
 *
 * `--smp-runs N` then throws N SMP offset/length/type abuse cases at an in-process simulated device
 * (tools/fuzz-smp.ts), `--ota-runs N` N status-event and reply-topic abuse cases at a live server
 * behind a real mosquitto (tools/fuzz-ota.ts); each counts as failures in the exit status.
 *
 * Exit status: 0 when every case was a well-formed rejection (or a legitimate acceptance of a valid
 * input), 1 on any crash, hang, malformed result or acceptance, 2 on a usage error.
 */
import { availableParallelism } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { toHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { emptyReport, type Finding, type FuzzReport, mergeReports } from '../test/support/fuzz/report.js';
import { makeCase, replayCase, runFuzz, selectTargets } from '../test/support/fuzz/runner.js';
import { defaultWorld } from '../test/support/fuzz/world.js';

type Options = {
  runs: number;
  seed: number;
  json: boolean;
  workers: number;
  only: string[];
  replay: number | null;
  hangMs: number;
  smpRuns: number;
  otaRuns: number;
};

type WorkerJob = {
  seed: number;
  lane: number;
  start: number;
  end: number;
  stride: number;
  only: string[];
  hangMs: number;
  skip: number[];
  progress: SharedArrayBuffer;
};

type WorkerMessage = { type: 'block'; report: FuzzReport; next: number } | { type: 'done' };

const BLOCK = 2000; // cases per lane between two partial reports
const USAGE =
  'usage: tsx tools/fuzz.ts [--runs N] [--seed S] [--json] [--workers W] [--only PREFIX[,PREFIX]] [--case N] [--hang-ms MS] [--smp-runs N] [--ota-runs N]';

function parseArgs(argv: readonly string[]): Options {
  const o: Options = {
    runs: 20_000,
    seed: 1,
    json: false,
    workers: Math.min(availableParallelism(), 8),
    only: [],
    replay: null,
    hangMs: 1000,
    smpRuns: 0,
    otaRuns: 0,
  };
  const int = (flag: string, v: string | undefined, min: number, max: number): number => {
    const n = v !== undefined && /^(0x[0-9a-f]+|\d+)$/i.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new Error(`${flag} needs an integer in ${min}..${max}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runs') o.runs = int(a, argv[++i], 1, 2 ** 31 - 1);
    else if (a === '--seed') o.seed = int(a, argv[++i], 0, 0xffffffff);
    else if (a === '--workers') o.workers = int(a, argv[++i], 0, 64);
    else if (a === '--case') o.replay = int(a, argv[++i], 0, 2 ** 31 - 1);
    else if (a === '--hang-ms') o.hangMs = int(a, argv[++i], 1, 3_600_000);
    else if (a === '--smp-runs') o.smpRuns = int(a, argv[++i], 0, 2 ** 31 - 1);
    else if (a === '--ota-runs') o.otaRuns = int(a, argv[++i], 0, 2 ** 31 - 1);
    else if (a === '--only') o.only = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (a === '--json') o.json = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

// ---- worker side ----

function workerMain(job: WorkerJob): void {
  const progress = new Int32Array(job.progress);
  const skip = new Set(job.skip);
  for (let s = job.start; s < job.end; s += BLOCK * job.stride) {
    const report = runFuzz({
      seed: job.seed,
      runs: Math.min(job.end, s + BLOCK * job.stride),
      first: s,
      stride: job.stride,
      only: job.only,
      hangMs: job.hangMs,
      skip,
      onCaseStart: (i) => Atomics.store(progress, 2 * job.lane, i),
      onCase: () => Atomics.add(progress, 2 * job.lane + 1, 1),
    });
    parentPort!.postMessage({ type: 'block', report, next: s + BLOCK * job.stride } satisfies WorkerMessage);
  }
  Atomics.store(progress, 2 * job.lane, -1);
  parentPort!.postMessage({ type: 'done' } satisfies WorkerMessage);
}

// ---- main side ----

function spawn(job: WorkerJob): Worker {
  // Worker threads do not inherit tsx's loader on Node 20: load this file through tsx's API.
  const api = import.meta.resolve('tsx/esm/api');
  const self = import.meta.url;
  const code = `import(${JSON.stringify(api)}).then((m) => m.tsImport(${JSON.stringify(self)}, ${JSON.stringify(self)}))`;
  return new Worker(code, { eval: true, workerData: job });
}

/** What the lanes of a parallel run share: progress in shared memory, the reports so far, and the hangs the watchdog saw. */
type Pool = {
  readonly o: Options;
  readonly lanes: number;
  readonly progress: SharedArrayBuffer;
  /** Per lane: the case it is running (-1 done, -2 starting) and how many cases it has finished. */
  readonly view: Int32Array;
  readonly reports: FuzzReport[];
  readonly hangs: FuzzReport;
  /** A case running this long is a hang. */
  readonly stallMs: number;
  readonly started: number;
};

async function runParallel(o: Options): Promise<FuzzReport> {
  const lanes = Math.max(1, Math.min(o.workers, o.runs));
  const progress = new SharedArrayBuffer(8 * lanes);
  const pool: Pool = {
    o,
    lanes,
    progress,
    view: new Int32Array(progress),
    reports: [],
    hangs: emptyReport(o.seed),
    stallMs: Math.max(10_000, 10 * o.hangMs),
    started: performance.now(),
  };
  const ticker = progressTicker(pool);
  try {
    await Promise.all(Array.from({ length: lanes }, (_, l) => runLane(pool, l)));
  } finally {
    clearInterval(ticker);
  }
  const merged = mergeReports([...pool.reports, pool.hangs]);
  merged.elapsedMs = performance.now() - pool.started;
  return merged;
}

/** One lane: cases lane, lane + lanes, ... in a worker, replaced (skipping the case) when a call hangs. */
function runLane(pool: Pool, lane: number): Promise<void> {
  const { o, lanes, progress, view, reports, stallMs } = pool;
  return new Promise((resolve, reject) => {
    const skip: number[] = [];
    let start = lane;
    let last = { caseIndex: -2, since: performance.now() };
    const launch = (): void => {
      Atomics.store(view, 2 * lane, -2);
      const w = spawn({ seed: o.seed, lane, start, end: o.runs, stride: lanes, only: o.only, hangMs: o.hangMs, skip, progress });
      let finished = false;
      const timer = setInterval(() => {
        const current = Atomics.load(view, 2 * lane);
        if (current !== last.caseIndex) last = { caseIndex: current, since: performance.now() };
        else if (current >= 0 && performance.now() - last.since > stallMs) {
          // A call that never returns: report it, replace the worker, skip that case.
          clearInterval(timer);
          finished = true;
          void w.terminate();
          skip.push(current);
          recordHang(pool, current, last.since);
          launch();
        }
      }, 250);
      w.on('message', (m: WorkerMessage) => {
        if (m.type === 'block') {
          reports.push(m.report);
          start = m.next;
        } else {
          finished = true;
          clearInterval(timer);
          void w.terminate();
          resolve();
        }
      });
      w.on('error', (e) => {
        clearInterval(timer);
        if (!finished) reject(e);
        finished = true;
      });
      w.on('exit', (code) => {
        clearInterval(timer);
        if (!finished) reject(new Error(`fuzz worker ${lane} exited with code ${code} before finishing`));
      });
    };
    launch();
  });
}

/** A hang finding for case `caseIndex`, running since `since`, with its input made again from seed and case number. */
function recordHang(pool: Pool, caseIndex: number, since: number): void {
  const { o, hangs, stallMs } = pool;
  hangs.runs++;
  hangs.counts.hangs++;
  const { target, fuzzCase } = makeCase(o.seed, caseIndex, selectTargets(defaultWorld().targets, o.only), defaultWorld().corpus);
  hangs.hangs.push({
    kind: 'hang',
    seed: o.seed,
    case: caseIndex,
    target: target.name,
    note: fuzzCase.note,
    ms: performance.now() - since,
    message: `no return after ${stallMs} ms (worker terminated)`,
    inputHex: toHex(fuzzCase.input.subarray(0, 65536)),
  });
}

/** A progress line on stderr at every tenth of the runs, from the lanes' counters in shared memory. */
function progressTicker(pool: Pool): NodeJS.Timeout {
  const { o, lanes, view, reports, hangs, started } = pool;
  let nextTenth = 1;
  return setInterval(() => {
    let done = 0;
    for (let l = 0; l < lanes; l++) done += Atomics.load(view, 2 * l + 1);
    while (nextTenth <= 9 && done >= (o.runs * nextTenth) / 10) {
      const s = (performance.now() - started) / 1000;
      const failures = reports.reduce((n, r) => n + r.counts.crashes + r.counts.hangs + r.counts.accepted + r.counts.badResults, hangs.counts.hangs);
      process.stderr.write(`[fuzz] ${nextTenth * 10}%  ${done}/${o.runs} runs  ${s.toFixed(0)} s  ${(done / s).toFixed(0)} runs/s  ${failures} failures\n`);
      nextTenth++;
    }
  }, 500);
}

function runInProcess(o: Options): FuzzReport {
  let nextTenth = 1;
  const started = performance.now();
  return runFuzz({
    runs: o.runs,
    seed: o.seed,
    only: o.only,
    hangMs: o.hangMs,
    onCase: (_i, done) => {
      if (nextTenth <= 9 && done >= (o.runs * nextTenth) / 10) {
        const s = (performance.now() - started) / 1000;
        process.stderr.write(`[fuzz] ${nextTenth * 10}%  ${done}/${o.runs} runs  ${s.toFixed(0)} s  ${(done / s).toFixed(0)} runs/s\n`);
        nextTenth++;
      }
    },
  });
}

function failures(r: FuzzReport): number {
  return r.counts.crashes + r.counts.hangs + r.counts.accepted + r.counts.badResults;
}

function printFinding(f: Finding, only: readonly string[]): void {
  const hex = f.inputHex.length > 512 ? `${f.inputHex.slice(0, 512)}... (${f.inputHex.length / 2} bytes)` : f.inputHex;
  const onlyArg = only.length > 0 ? ` --only ${only.join(',')}` : '';
  process.stdout.write(`  ${f.kind.toUpperCase()} ${f.target} seed ${f.seed} case ${f.case}: ${f.message}\n`);
  process.stdout.write(`    mutation: ${f.note}   time: ${f.ms.toFixed(1)} ms\n    input: ${hex || '(empty)'}\n`);
  process.stdout.write(`    replay: npm run fuzz -- --seed ${f.seed} --case ${f.case}${onlyArg}\n`);
}

function printSummary(r: FuzzReport, o: Options, workers: number): void {
  const s = r.elapsedMs / 1000;
  const out: string[] = [];
  out.push(
    `fwseal fuzz: seed ${r.seed}, ${r.runs} runs, ${workers === 0 ? 'in process' : `${workers} workers`}, ${s.toFixed(1)} s, ${(r.runs / s).toFixed(0)} runs/s`,
  );
  out.push('');
  out.push(`  crashes        ${r.counts.crashes}`);
  out.push(`  hangs          ${r.counts.hangs}   (a call over ${o.hangMs} ms)`);
  out.push(`  accepted       ${r.counts.accepted}`);
  out.push(`  bad results    ${r.counts.badResults}`);
  out.push(`  valid inputs   ${r.counts.legitAccepted}   (mutation left a valid input: accepted, as it should be)`);
  out.push(`  slowest call   ${r.slowestMs.toFixed(1)} ms${r.slowest ? `  (${r.slowest.target}, case ${r.slowest.case}: ${r.slowest.note})` : ''}`);
  out.push('');
  out.push(`  rejections by code (${Object.keys(r.byCode).filter((c) => c !== 'OK').length} distinct):`);
  const codes = Object.entries(r.byCode)
    .filter(([c]) => c !== 'OK')
    .sort((a, b) => b[1] - a[1]);
  for (const [name, n] of codes)
    out.push(
      `    ${String(CODES[name as keyof typeof CODES] ?? '?').padStart(3)} ${name.padEnd(30)} ${String(n).padStart(9)}  ${((100 * n) / r.runs).toFixed(2).padStart(6)} %`,
    );
  out.push('');
  out.push('  by target:                       runs    avg ms  codes');
  for (const [name, t] of Object.entries(r.byTarget).sort((a, b) => b[1].runs - a[1].runs)) {
    out.push(`    ${name.padEnd(26)} ${String(t.runs).padStart(9)} ${(t.ms / t.runs).toFixed(2).padStart(9)}  ${Object.keys(t.codes).length}`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
  const all = [...r.crashes, ...r.hangs, ...r.accepted, ...r.badResults];
  if (all.length > 0) {
    process.stdout.write(`\nFAILED: ${failures(r)} failing cases (first ${all.length} below)\n`);
    for (const f of all) printFinding(f, o.only);
  } else {
    process.stdout.write('\nOK: no crash, no hang, no malformed result, no mutated input accepted.\n');
  }
}

function replay(o: Options, index: number): number {
  const r = replayCase(o.seed, index, o.only);
  const result = r.thrown !== undefined ? { thrown: r.thrown instanceof Error ? r.thrown.stack : String(r.thrown) } : r.result;
  const view = {
    seed: o.seed,
    case: index,
    target: r.target,
    mutation: r.note,
    ms: Number(r.ms.toFixed(3)),
    verdict: r.verdict,
    result: JSON.parse(JSON.stringify(result ?? null, (_k, v: unknown) => (v instanceof Uint8Array ? toHex(v) : v))) as unknown,
    inputHex: toHex(r.input),
  };
  process.stdout.write(`${JSON.stringify(view, null, 2)}\n`);
  return r.verdict.startsWith('rejected') || r.verdict.startsWith('accepted (legit') ? 0 : 1;
}

async function main(): Promise<number> {
  let o: Options;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (o.replay !== null) return replay(o, o.replay);
  // Few runs are not worth the workers' start-up (each builds and checks the fixtures).
  const workers = o.runs < 2000 ? 0 : o.workers;
  process.stderr.write(`[fuzz] seed ${o.seed}, ${o.runs} runs, ${workers === 0 ? 'in process' : `${workers} workers`}\n`);
  const report = workers === 0 ? runInProcess(o) : await runParallel({ ...o, workers });
  const extra = await runOtherSuites(o);
  const ok = failures(report) === 0 && extra.every((e) => e.failures.length === 0);
  if (o.json) {
    process.stdout.write(
      `${JSON.stringify({ ...report, workers, runsPerSecond: Math.round(report.runs / (report.elapsedMs / 1000)), suites: extra, ok }, null, 2)}\n`,
    );
  } else {
    printSummary(report, o, workers);
    for (const e of extra) {
      process.stdout.write(`${e.suite}: ${e.cases} cases, seed ${o.seed}, ${e.failures.length} failures in ${e.seconds.toFixed(1)} s\n`);
      for (const f of e.failures.slice(0, 20)) process.stdout.write(`  ${f}\n`);
    }
  }
  return ok ? 0 : 1;
}

type SuiteReport = { suite: string; cases: number; failures: string[]; seconds: number };

/** The SMP and OTA-server suites (issue 11), loaded only when asked for. */
async function runOtherSuites(o: Options): Promise<SuiteReport[]> {
  const out: SuiteReport[] = [];
  const timed = async (suite: string, run: () => Promise<{ cases: number; failures: string[] }>) => {
    const t0 = Date.now();
    process.stderr.write(`[fuzz] ${suite}\n`);
    const r = await run();
    out.push({ suite, cases: r.cases, failures: r.failures, seconds: (Date.now() - t0) / 1000 });
  };
  if (o.smpRuns > 0) await timed('smp', async () => (await import('./fuzz-smp.js')).fuzzSmp({ runs: o.smpRuns, seed: o.seed }));
  if (o.otaRuns > 0) await timed('ota-server', async () => (await import('./fuzz-ota.js')).fuzzOtaServer({ runs: o.otaRuns, seed: o.seed }));
  return out;
}

if (isMainThread) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`fuzz: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
} else {
  workerMain(workerData as WorkerJob);
}
