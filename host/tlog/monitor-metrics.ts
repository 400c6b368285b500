/**
 * The log monitor's findings as metrics (issue 19 item 4; SPEC.md §16.5, `--metrics-file`): a cron or
 * CI command has no server to scrape, so `fwseal log monitor --metrics-file F` writes F in the text
 * format of node_exporter's textfile collector, as `fwseal sign --metrics-file` does for M3 (SPEC.md
 * §14 H11). The figures are gauges of the last run, so each run replaces the whole file atomically
 * (host/io.ts: the collector never reads half a file); only the end of the last clean run is carried
 * over from the file before, read back from lines this module wrote.
 */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { FwsealError } from '../errors.js';
import { writeFileAtomic } from '../io.js';
import { readMetricsText } from '../metrics-file.js';
import { type MonitorReport } from './monitor.js';

/** The codes `findings{code}` always carries (0 when none): the entry findings, then the verdicts on the log itself (exit 1). */
export const MONITOR_FINDING_CODES = Object.freeze([
  'KEY_NOT_IN_TRUST',
  'REVOKED_KEY',
  'WRONG_DEVICE_CLASS',
  'MALFORMED',
  'LOG_INVALID',
  'BAD_SIGNATURE',
  'THRESHOLD_NOT_MET',
] as const);

const P = 'fwseal_tlog_monitor_';
const LAST_RUN = `${P}last_run_timestamp_seconds`;
const LAST_CLEAN = `${P}last_clean_timestamp_seconds`;
const FINDINGS = `${P}findings`;
const RUN_FAILED = `${P}run_failed`;
const LOG_SIZE = `${P}log_size`;
const EXAMINED = `${P}entries_examined`;
/** A file of one log's gauges is well under 2 KiB; anything larger is not one this command wrote. */
const MAX_FILE_BYTES = 64 * 1024;

/** One run as the command saw it: the report (exit 0 or findings), the verdict on the log (exit 1), or a failure to check. */
export type MonitorRun = {
  /** The log's origin, when the run learnt it (its report, or the folder's log.json). */
  readonly origin?: string;
  readonly report?: MonitorReport;
  /** The code of a verdict on the log (LOG_INVALID, BAD_SIGNATURE, ...): exit 1 without a report. */
  readonly verdict?: string;
  /** The run could not check the log (an error that is no verdict: exit 2). */
  readonly failed: boolean;
  /** End of the run, Unix seconds. */
  readonly endedAt: number;
};

/** What the file before holds: the log it was about and the end of its last clean run (absent: none, or no file). */
export type MonitorMetricsBefore = { readonly log?: string; readonly lastClean?: number };

const notOurs = (path: string, why: string) => new FwsealError('USAGE', `--metrics-file ${path} is not a file fwseal log monitor wrote: ${why}`);

/** One sample line as renderMonitorMetrics writes it: a known name, the `log` label (escaped as the text format says), maybe `code`. */
const SAMPLE =
  /^fwseal_tlog_monitor_(last_run_timestamp_seconds|last_clean_timestamp_seconds|findings|run_failed|log_size|entries_examined)\{log="((?:[^"\\\n]|\\[\\"n])*)"(?:,code="([A-Z_]+)")?\} (\S+)$/;

const escapeLabel = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const unescapeLabel = (s: string) => s.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));

/** The file's text, as written by renderMonitorMetrics (comments and blank lines aside); USAGE for anything else. */
export function parseMonitorMetrics(text: string, path: string): MonitorMetricsBefore {
  let log: string | undefined;
  let lastClean: number | undefined;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const s = SAMPLE.exec(line);
    const value = s ? Number(s[4]) : Number.NaN;
    if (!s || !Number.isFinite(value) || value < 0) throw notOurs(path, `line ${JSON.stringify(line.slice(0, 80))}`);
    const label = unescapeLabel(s[2]);
    if (log !== undefined && label !== log) throw notOurs(path, 'it holds more than one log');
    log = label;
    if (s[1] === 'last_clean_timestamp_seconds' && value > 0) lastClean = value;
  }
  return { ...(log !== undefined ? { log } : {}), ...(lastClean !== undefined ? { lastClean } : {}) };
}

/**
 * Before the run: F is absent or a file this command wrote (USAGE, F left as it is), in a folder that
 * exists (IO). Returns what F holds, for the run's labels and its last clean run.
 */
export function readMonitorMetricsFile(path: string): MonitorMetricsBefore {
  const folder = dirname(path);
  if (!existsSync(folder)) throw new FwsealError('IO', `--metrics-file ${path}: no folder ${folder}`);
  const text = readMetricsText(path, MAX_FILE_BYTES, () => notOurs(path, `larger than ${MAX_FILE_BYTES} bytes`));
  return text === null ? {} : parseMonitorMetrics(text, path);
}

/** Findings of the run by code: the report's, and a verdict on the log counted once; every code present. */
function findingsByCode(run: MonitorRun): Map<string, number> {
  const counts = new Map<string, number>(MONITOR_FINDING_CODES.map((c) => [c, 0]));
  for (const f of run.report?.findings ?? []) counts.set(f.error, (counts.get(f.error) ?? 0) + 1);
  if (run.verdict !== undefined && !run.failed) counts.set(run.verdict, (counts.get(run.verdict) ?? 0) + 1);
  return counts;
}

/** The label of the run: the origin it learnt, else the one the file was about (one cron job, one log), else "unknown". */
export const monitorLogLabel = (run: MonitorRun, before: MonitorMetricsBefore): string => run.report?.origin ?? run.origin ?? before.log ?? 'unknown';

/** The text of the file (Prometheus text format 0.0.4; `promtool check metrics` passes it). */
export function renderMonitorMetrics(run: MonitorRun, before: MonitorMetricsBefore): string {
  const log = monitorLogLabel(run, before);
  const l = `{log="${escapeLabel(log)}"}`;
  const clean = !run.failed && run.verdict === undefined && run.report !== undefined && run.report.findings.length === 0;
  // A clean run is the new last clean run; otherwise the file's, when it was about this log; 0: none recorded.
  const lastClean = clean ? run.endedAt : before.log === log ? (before.lastClean ?? 0) : 0;
  const gauge = (name: string, help: string, samples: string[]) => [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, ...samples];
  const lines = [
    ...gauge(LAST_RUN, 'End of the last run of fwseal log monitor on this log (Unix time).', [`${LAST_RUN}${l} ${run.endedAt}`]),
    ...gauge(LAST_CLEAN, 'End of the last clean run (exit 0) of fwseal log monitor on this log (Unix time); 0: none recorded.', [
      `${LAST_CLEAN}${l} ${lastClean}`,
    ]),
    ...gauge(
      FINDINGS,
      'Findings of the last run by code: entries signed by a key not expected, revoked, for another device class, malformed; or the log itself refused (fork, rollback, bad checkpoint).',
      [...findingsByCode(run)].map(([code, n]) => `${FINDINGS}{log="${escapeLabel(log)}",code="${code}"} ${n}`),
    ),
    ...gauge(RUN_FAILED, '1 when the last run could not check the log (exit 2: unreachable server, unreadable input), else 0.', [
      `${RUN_FAILED}${l} ${run.failed ? 1 : 0}`,
    ]),
  ];
  if (run.report) {
    const r = run.report;
    lines.push(...gauge(LOG_SIZE, 'Size of the newest checkpoint the last run checked the log against.', [`${LOG_SIZE}${l} ${r.toSize}`]));
    lines.push(
      ...gauge(EXAMINED, 'Entries the last run read and examined: from the checkpoint seen before to the newest.', [
        `${EXAMINED}${l} ${r.toSize - r.fromSize}`,
      ]),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Replace F with this run's gauges (atomically: the collector reads the old file or the new one). */
export function recordMonitorRun(path: string, run: MonitorRun, before: MonitorMetricsBefore): void {
  writeFileAtomic(path, renderMonitorMetrics(run, before), 0o644);
}
