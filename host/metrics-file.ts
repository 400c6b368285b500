/**
 * M3, host signing latency, for Prometheus without a server to scrape (SPEC.md §14, the
 * signing metrics file): `fwseal sign --metrics-file F` adds each run to F, a file in the text format of
 * node_exporter's textfile collector (`--collector.textfile.directory`, files named `*.prom`): the
 * histogram fwseal_sign_duration_seconds and the counter fwseal_signatures_total{result,code}. The
 * file accumulates (counters only grow, as Prometheus expects): each run reads it, adds itself, and
 * replaces it atomically (a reader never sees half a file) under a lock file, so runs on one machine
 * at the same time lose no count. The same file can be pushed to a Pushgateway as it is.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { FwsealError } from './errors.js';
import { writeFileAtomic } from './io.js';

/** Upper bounds (s): a key file signs in well under a millisecond, a token or a remote signer in seconds (their limit is 30 s). */
export const SIGN_DURATION_BUCKETS = Object.freeze([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30]);
const DURATION = 'fwseal_sign_duration_seconds';
const SIGNATURES = 'fwseal_signatures_total';
/** A metrics file is small; anything larger is not one this command wrote. */
const MAX_FILE_BYTES = 64 * 1024;
/** How long a run waits for another run's lock, and the age after which a lock is taken to be a crashed run's. */
const LOCK_WAIT_MS = 10_000;
const LOCK_STALE_MS = 30_000;

/** One run of `fwseal sign`: how long the signer took (absent: it was not called), and the code it was refused with (absent: ok). */
export type SignRun = { readonly seconds?: number; readonly refused?: string };

/** What the file holds: cumulative bucket counts as in the text, sum, count, and runs by `result/code`. */
export type SignMetrics = { buckets: number[]; sum: number; count: number; runs: Map<string, number> };

const empty = (): SignMetrics => ({ buckets: SIGN_DURATION_BUCKETS.map(() => 0), sum: 0, count: 0, runs: new Map() });

const notOurs = (path: string, why: string) => new FwsealError('USAGE', `--metrics-file ${path} is not a file fwseal sign wrote: ${why}`);

/** One sample line: the histogram's, or a counter's with `result` and `code` (code names only: no quotes to escape). */
const SAMPLE =
  /^(fwseal_sign_duration_seconds_(?:bucket\{le="([^"]+)"\}|sum|count)|fwseal_signatures_total\{result="(ok|refused)",code="([A-Z0-9_]*)"\}) (\S+)$/;

/** The file's text, as written by renderSignMetrics (comments and blank lines aside); USAGE for anything else. */
export function parseSignMetrics(text: string, path: string): SignMetrics {
  const m = empty();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const s = SAMPLE.exec(line);
    const value = s ? Number(s[5]) : Number.NaN;
    if (!s || !Number.isFinite(value) || value < 0) throw notOurs(path, `line ${JSON.stringify(line.slice(0, 80))}`);
    if (s[3] !== undefined) m.runs.set(`${s[3]}/${s[4]}`, value);
    else if (s[1].endsWith('_sum')) m.sum = value;
    else if (s[1].endsWith('_count')) m.count = value;
    else if (s[2] !== '+Inf') {
      const i = SIGN_DURATION_BUCKETS.indexOf(Number(s[2]));
      if (i < 0) throw notOurs(path, `a bucket le="${s[2]}" this fwseal does not write`);
      m.buckets[i] = value;
    }
  }
  return m;
}

/** The text of the file (Prometheus text format 0.0.4; `promtool check metrics` passes it). */
export function renderSignMetrics(m: SignMetrics): string {
  const lines = [
    `# HELP ${DURATION} Time fwseal sign waited for each signature: the signer's call (key file, PKCS#11 token, external signer) with its check; prompts excluded.`,
    `# TYPE ${DURATION} histogram`,
    ...SIGN_DURATION_BUCKETS.map((b, i) => `${DURATION}_bucket{le="${b}"} ${m.buckets[i]}`),
    `${DURATION}_bucket{le="+Inf"} ${m.count}`,
    `${DURATION}_sum ${m.sum}`,
    `${DURATION}_count ${m.count}`,
    `# HELP ${SIGNATURES} Runs of fwseal sign by result: ok (the file carries the signature), or refused with the code.`,
    `# TYPE ${SIGNATURES} counter`,
    ...[...m.runs]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, n]) => {
        const [result, code] = k.split('/');
        return `${SIGNATURES}{result="${result}",code="${code}"} ${n}`;
      }),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * The text of a metrics file this command may have written, or null when there is none; a file larger
 * than a metrics file is (`maxBytes`) is `tooLarge`'s error, read errors are IO. Also the monitor's
 * (host/tlog/monitor-metrics.ts).
 */
export function readMetricsText(path: string, maxBytes: number, tooLarge: () => FwsealError): string | null {
  if (!existsSync(path)) return null;
  try {
    if (statSync(path).size > maxBytes) throw tooLarge();
    return readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof FwsealError) throw e;
    throw new FwsealError('IO', `cannot read --metrics-file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

function readMetrics(path: string): SignMetrics {
  const text = readMetricsText(path, MAX_FILE_BYTES, () => notOurs(path, `larger than ${MAX_FILE_BYTES} bytes`));
  return text === null ? empty() : parseSignMetrics(text, path);
}

/** Before anything is signed: the file is absent or one this command wrote (USAGE), in a folder that exists (IO). */
export function checkSignMetricsFile(path: string): void {
  readMetrics(path);
  const folder = dirname(path);
  if (!existsSync(folder)) throw new FwsealError('IO', `--metrics-file ${path}: no folder ${folder}`);
}

const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Run `body` holding `PATH.lock` (created exclusively; a lock older than LOCK_STALE_MS is a crashed run's and is taken over). */
function locked<T>(path: string, body: () => T): T {
  const lock = `${path}.lock`;
  for (const deadline = Date.now() + LOCK_WAIT_MS; ; sleep(20)) {
    try {
      closeSync(openSync(lock, 'wx', 0o644));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new FwsealError('IO', `cannot lock ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
      let age = 0;
      try {
        age = Date.now() - statSync(lock).mtimeMs;
      } catch {
        continue; // released meanwhile
      }
      if (age > LOCK_STALE_MS) rmSync(lock, { force: true });
      else if (Date.now() > deadline) throw new FwsealError('IO', `${lock} is held by another fwseal sign`);
    }
  }
  try {
    return body();
  } finally {
    rmSync(lock, { force: true });
  }
}

/** Add one run to the file: read it again under the lock, add, replace it atomically. */
export function recordSignRun(path: string, run: SignRun): void {
  locked(path, () => {
    const m = readMetrics(path);
    if (run.seconds !== undefined) {
      const s = run.seconds;
      SIGN_DURATION_BUCKETS.forEach((b, i) => {
        if (s <= b) m.buckets[i]++;
      });
      m.sum += s;
      m.count++;
    }
    const key = run.refused === undefined ? 'ok/' : `refused/${run.refused}`;
    m.runs.set(key, (m.runs.get(key) ?? 0) + 1);
    writeFileAtomic(path, renderSignMetrics(m), 0o644);
  });
}
