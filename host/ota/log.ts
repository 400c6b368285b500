/**
 * The server's log (SPEC.md §12.9 "Logs"): structured events from `fwseal serve` on stderr, through
 * pino. Every line is one event with a stable name (`event`, e.g. `campaign.transition`), its fields,
 * a sentence for people (`msg`), the level and an ISO 8601 time. `--log-format json` writes pino's
 * JSON lines as they are (one object per line, for log shippers); `text`, the default, turns each into
 * one readable line: `TIME LEVEL [component] event: msg | key=value ...`. Each part of the server logs
 * through a child named after it (`component`). Secrets are never fields: tokens and passwords stay in
 * the code that checks them.
 */
import { type Logger, pino } from 'pino';
import { codeName } from '../../shared/codes.js';
import { type Parsed, str } from '../commands/common.js';
import { FwsealError } from '../errors.js';
import { detail } from './campaigns.js';
import { type Halted } from './root-recheck.js';
import { type CampaignRow, type OtaStore } from './store.js';
import { SERVER_ACTOR } from './waves.js';

export const LOG_FORMATS = Object.freeze(['text', 'json'] as const);
export type LogFormat = (typeof LOG_FORMATS)[number];
export const LOG_LEVELS = Object.freeze(['debug', 'info', 'warn', 'error'] as const);
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Readonly<Record<string, unknown>>;
type Emit = (event: string, fields: LogFields, msg: string) => void;

/** A logger of named events; `child` names the part of the server that logs. */
export type ServerLog = {
  readonly debug: Emit;
  readonly info: Emit;
  readonly warn: Emit;
  readonly error: Emit;
  child(component: string): ServerLog;
};

/** What older callers hand the server: a function taking one line per event (rendered as `text`). */
export type LineSink = (line: string) => void;
export type LogTarget = ServerLog | LineSink;

export type LogOptions = {
  readonly format?: LogFormat;
  readonly level?: LogLevel;
  /** Receives each line, newline included (serve: its stderr). */
  readonly write: (line: string) => void;
};

/** Fields pino writes itself; `text` shows them in the line's head (time, level, component, event, msg) or not at all (pid, hostname). */
const HEAD_FIELDS = new Set(['time', 'level', 'msg', 'event', 'component', 'pid', 'hostname']);

/** C0 and C1 controls, DEL and the line separators: escaped, so a logged value can neither break a line nor drive a terminal. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is escaped
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const escapeControls = (s: string) => s.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
/** Printed bare in a text line; anything else is quoted as JSON. */
const BARE = /^[A-Za-z0-9._:/@+%-]+$/;

function textValue(v: unknown): string {
  if (typeof v === 'string') return BARE.test(v) ? v : escapeControls(JSON.stringify(v));
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  return escapeControls(JSON.stringify(v) ?? 'undefined');
}

/** One JSON line from pino as one readable line (the `text` format). */
export function textLine(jsonLine: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(jsonLine) as Record<string, unknown>;
  } catch {
    return `${escapeControls(jsonLine.trimEnd())}\n`; // never expected: pino writes JSON
  }
  const level = String(o.level ?? 'info').toUpperCase();
  const component = typeof o.component === 'string' ? ` [${escapeControls(o.component)}]` : '';
  const fields = Object.entries(o)
    .filter(([k]) => !HEAD_FIELDS.has(k))
    .map(([k, v]) => `${escapeControls(k)}=${textValue(v)}`);
  const msg = typeof o.msg === 'string' ? `: ${escapeControls(o.msg)}` : '';
  return `${o.time} ${level.padEnd(5)}${component} ${escapeControls(String(o.event ?? '-'))}${msg}${fields.length ? ` | ${fields.join(' ')}` : ''}\n`;
}

function wrap(logger: Logger): ServerLog {
  const at =
    (level: LogLevel): Emit =>
    (event, fields, msg) => {
      if (!logger.isLevelEnabled(level)) return;
      // The event first (readable), and set again after the fields: a field can never rename the event.
      const o: Record<string, unknown> = { event, ...fields };
      o.event = event;
      logger[level](o, msg);
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (component) => wrap(logger.child({ component })) };
}

/**
 * A pino logger writing synchronously to `write` (so a line is out before the process may exit, and an
 * in-process test sees it at once). `time` is ISO 8601 UTC and `level` its name, in both formats.
 */
export function createServerLog(opts: LogOptions): ServerLog {
  const format = opts.format ?? 'text';
  const destination = { write: format === 'json' ? (line: string) => opts.write(line) : (line: string) => opts.write(textLine(line)) };
  const logger = pino(
    {
      level: opts.level ?? 'info',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  return wrap(logger);
}

const SILENT: ServerLog = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, child: () => SILENT };

/** The server's logger from what a caller gave: a ServerLog as is, a line function as `text` lines, nothing as silence. */
export function asServerLog(target: LogTarget | undefined): ServerLog {
  if (target === undefined) return SILENT;
  if (typeof target !== 'function') return target;
  return createServerLog({ format: 'text', level: 'info', write: (line) => target(line.replace(/\n$/, '')) });
}

/** serve's flags for its log (SPEC.md §12.9 "Logs"). */
export const LOG_FLAGS = { 'log-format': { type: 'string' }, 'log-level': { type: 'string' } } as const;
export const LOG_USAGE = `Logs: one event per line on stderr, --log-format text (default: time, level, event, message, fields)
    or json (one JSON object per line: time, level, event, msg, fields); --log-level debug|info|warn|error
    (default info; debug adds why each ignored status event was ignored).`;

function oneOf<T extends string>(p: Parsed, flag: string, allowed: readonly T[], fallback: T): T {
  const v = str(p, flag) ?? fallback;
  if (!(allowed as readonly string[]).includes(v)) throw new FwsealError('USAGE', `--${flag} must be one of ${allowed.join(', ')}`);
  return v as T;
}

/** The logger --log-format and --log-level ask for, writing to `write` (serve: its stderr). */
export function serveLog(p: Parsed, write: (line: string) => void): ServerLog {
  return createServerLog({ format: oneOf(p, 'log-format', LOG_FORMATS, 'text'), level: oneOf(p, 'log-level', LOG_LEVELS, 'info'), write });
}

/** The fields of an error worth logging: its code name when it has one, and its message. */
export function errorFields(e: unknown): { error: string; code?: string } {
  const code = (e as { codeName?: unknown } | null)?.codeName;
  return { error: e instanceof Error ? e.message : String(e), ...(typeof code === 'string' ? { code } : {}) };
}

/** Test hook: a logger keeping its lines (JSON by default, every level) and the events they parse to. */
export function captureLog(format: LogFormat = 'json', level: LogLevel = 'debug'): { log: ServerLog; lines: string[]; events(): Record<string, unknown>[] } {
  const lines: string[] = [];
  const log = createServerLog({ format, level, write: (line) => lines.push(line) });
  return { log, lines, events: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

// ---- the campaign events (SPEC.md §12.9 "Logs"): names and fields other tools may rely on ----

/**
 * Why a campaign changed state: an operator's call, the failure-rate rule, the root of trust's code
 * (§12.13), devices timing out, the last wave done, or another rule of the wave engine.
 */
export type TransitionReason = 'operator' | 'failure-rate' | 'halt-code' | 'timeout' | 'completed' | 'wave-engine';

export type Transition = {
  readonly campaign: string;
  readonly group: string;
  /** The state before (null: the campaign was just created). */
  readonly from: string | null;
  readonly to: string;
  readonly reason: TransitionReason;
  /** Who: the API token's name (`api` on an open API), `server` for the wave engine (as in the campaign's events), or `startup` for a root of trust given to serve. */
  readonly actor: string;
  /** The operator's call (create, pause, resume, abort, ...), when there was one. */
  readonly action?: string;
};

/** One `campaign.transition` event; halts (and a completed campaign the root of trust withdrew) are warnings, the rest information. */
export function logTransition(log: ServerLog, t: Transition, extra: LogFields = {}): void {
  const because = t.reason === 'operator' ? `${t.action ?? 'changed'} by ${t.actor}` : `${t.reason}, ${t.actor}`;
  const msg = `campaign ${t.campaign} ${t.from ?? 'created'} -> ${t.to} (${because})`;
  (t.to === 'halted' || t.reason === 'halt-code' ? log.warn : log.info)('campaign.transition', { ...t, ...extra }, msg);
}

/** The devices' codes of a halted campaign, most frequent first: `[{code, name, count}]`. */
export function codeCounts(devices: readonly { readonly state: string; readonly code: number | null }[]): { code: number; name: string; count: number }[] {
  const counts = new Map<number, number>();
  for (const d of devices) if (d.code !== null && (d.state === 'rejected' || d.state === 'failed')) counts.set(d.code, (counts.get(d.code) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0]).map(([code, count]) => ({ code, name: codeName(code), count }));
}

/**
 * What one wave step did to a running campaign (`before` as the step found it): a halt with the
 * failure rate and the devices' codes, a completion, or a wave opened or sized (`campaign.wave`). Never throws:
 * the step has happened, and a detail that cannot be read is logged as its error.
 */
export async function logWaveStep(log: ServerLog, store: OtaStore, before: CampaignRow, after: CampaignRow): Promise<void> {
  const who = { campaign: after.id, group: after.grp, actor: SERVER_ACTOR };
  if (after.state === before.state) {
    if (after.wave === before.wave && after.rollout === before.rollout) return; // the engine's own bookkeeping: nothing to tell
    const waves = JSON.parse(after.waves) as number[];
    const msg = `campaign ${after.id} wave ${after.wave + 1}/${waves.length} open (${waves[after.wave]}%, rollout ${after.rollout})`;
    return log.info('campaign.wave', { ...who, wave: after.wave + 1, waves, rollout: after.rollout }, msg);
  }
  const reason: TransitionReason = after.state === 'halted' ? 'failure-rate' : after.state === 'completed' ? 'completed' : 'wave-engine';
  let extra: LogFields = {};
  if (reason === 'failure-rate') {
    try {
      const d = await detail(store, after);
      extra = { failureRate: d.failureRate, abortFailureRate: d.abortFailureRate, abortMinDevices: d.abortMinDevices, codes: codeCounts(d.devices) };
    } catch (e) {
      extra = errorFields(e);
    }
  }
  logTransition(log, { ...who, from: before.state, to: after.state, reason }, extra);
}

/** Devices of the open wave that the engine timed out (SPEC.md §12.9 "Rollouts that finish"): one warning per step. */
export function logTimeouts(log: ServerLog, row: CampaignRow, devices: readonly string[]): void {
  const fields = {
    campaign: row.id,
    group: row.grp,
    actor: SERVER_ACTOR,
    reason: 'timeout',
    devices: devices.length,
    first: devices.slice(0, 10),
    deviceTimeoutMs: row.device_timeout_ms,
  };
  log.warn('campaign.timeout', fields, `campaign ${row.id}: ${devices.length} device(s) timed out after ${row.device_timeout_ms} ms of silence`);
}

/** Each campaign's state, read before a root of trust change halts some of them (the `from` of their events). */
export async function campaignStates(store: OtaStore): Promise<Map<string, string>> {
  return new Map((await store.campaigns()).map((c) => [c.id, c.state]));
}

/** Root of trust halts as `campaign.transition` events (SPEC.md §12.13): the verifier's code, and who stored the root. */
export function logRootHalts(log: ServerLog, halted: readonly Halted[], before: ReadonlyMap<string, string>, actor: string): void {
  for (const { row, code, error } of halted)
    logTransition(
      log,
      { campaign: row.id, group: row.grp, from: before.get(row.id) ?? null, to: row.state, reason: 'halt-code', actor },
      { code, codeName: error },
    );
}
