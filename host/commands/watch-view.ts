/**
 * `fwseal campaign status --watch` (SPEC.md §12.9 "Operator CLI"): what it prints while it follows a
 * campaign, and the polling loop. On a terminal one screen is redrawn in place and always fits it,
 * whatever the fleet size: the campaign, its wave and what the wave waits for, a progress bar and the
 * failure rate, the devices counted by state, then as many of the newest changes (device reports and
 * campaign events) as the rows left allow. A table of 1,000 devices would push the header out of
 * sight and flood the scrollback; the full table stays in `campaign status` without --watch.
 * Elsewhere (CI logs) one line is appended per change, and nothing while nothing changes; with --json
 * one JSON line per change.
 */
import { codeName } from '../../shared/codes.js';
import { type FwsealError } from '../errors.js';
import { type ApiTarget, apiGetRetrying } from '../ota/api-client.js';
import { formatDuration } from '../ota/progress.js';
import { type Io } from './common.js';
import { type CampaignDetail } from './ota.js';

/** The rows and columns the screen may use. */
export type Screen = { readonly rows: number; readonly columns: number };

/** A terminal that does not tell its size is taken to be the VT100's. */
export const DEFAULT_SCREEN: Screen = Object.freeze({ rows: 24, columns: 80 });

/** stdout's size, read at every redraw (the terminal may be resized meanwhile). */
export function terminalScreen(): Screen {
  return { rows: process.stdout.rows || DEFAULT_SCREEN.rows, columns: process.stdout.columns || DEFAULT_SCREEN.columns };
}

export const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** The server's own end states (SPEC.md §12.9 "Rollouts that finish"), when the server reports them. */
export const ended = (c: Record<string, number>) => (c['timed-out'] === undefined ? '' : `  timed-out ${c['timed-out']}  excluded ${c.excluded}`);

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is escaped
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
/** Ids, actors and details come from devices and tokens files: an escape sequence in one must not drive the terminal. */
const printable = (s: string) => s.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
/** Time of day, UTC: the changes of a live rollout are recent. */
const clock = (ms: number) => `${new Date(ms).toISOString().slice(11, 19)}Z`;

/** The device states in the order a rollout moves through them; `waiting`: eligible, nothing reported yet. */
const COUNTED = ['waiting', 'accepted', 'downloading', 'verifying', 'installed', 'confirmed', 'rejected', 'failed', 'timed-out', 'excluded'] as const;

/** Devices at an end state of any kind (SPEC.md §12.9), over the devices known in the group. */
function doneOf(c: Record<string, number>): { done: number; all: number } {
  const done = c.confirmed + c.rejected + c.failed + (c['timed-out'] ?? 0) + (c.excluded ?? 0);
  return { done, all: Math.max(c.known, done, 1) };
}

/** What the open wave waits for (SPEC.md §12.9 "Rollouts that finish"), in a few words. */
function waitText(d: CampaignDetail): string {
  if (d.waitingFor === 'devices') return 'waiting for its devices';
  if (d.waitingFor === 'operator') return 'waiting for fwseal campaign next';
  if (d.waitingFor !== 'soak') return '';
  const until = d.nextWaveAt ? ` until ${clock(d.nextWaveAt)}` : '';
  return `soaking${until}${d.waveApproved ? ', next approved' : ''}`;
}

/** `parts` joined by two spaces into lines no wider than `width` (a part wider than that gets a line of its own). */
function wrap(parts: readonly string[], width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const part of parts) {
    if (line && line.length + 2 + part.length > width) {
      lines.push(line);
      line = '';
    }
    line = line ? `${line}  ${part}` : part;
  }
  if (line) lines.push(line);
  return lines;
}

/** The summary, most important first: on a screen too short for all of it, the first lines stay. */
function summaryLines(d: CampaignDetail, columns: number): string[] {
  const c = d.counts;
  const { done, all } = doneOf(c);
  const barWidth = Math.max(10, Math.min(40, columns - 60));
  const fill = Math.round((done / all) * barWidth);
  const wait = waitText(d);
  const lines = [
    `campaign ${d.id}  group ${d.group}  version ${printable(d.version)} (counter ${d.securityCounter})`,
    `${d.state}  wave ${d.wave}/${d.waves.length} (${d.waves[d.wave - 1]}% of ${d.waves.join(',')})${wait ? `  ${wait}` : ''}`,
    `[${'#'.repeat(fill)}${'.'.repeat(barWidth - fill)}] ${done}/${all} done  failure rate ${pct(d.failureRate)} (halts above ${pct(d.abortFailureRate)})`,
    ...wrap([`devices: known ${c.known}`, `eligible ${c.eligible}`, ...COUNTED.filter((s) => c[s] !== undefined).map((s) => `${s} ${c[s]}`)], columns),
  ];
  if (d.haltCode) lines.push(`halted by the root of trust: ${codeName(d.haltCode)} (code ${d.haltCode}); no longer announced or served`);
  if (d.deviceTimeoutMs !== undefined) {
    const gate = d.waveGate === 'manual' ? 'manual gate' : 'automatic gate';
    lines.push(
      `rules: ${gate}, soak ${d.waveSoakMs ? formatDuration(d.waveSoakMs) : 'none'}, device timeout ${formatDuration(d.deviceTimeoutMs)}, halts after ${d.abortMinDevices} reported`,
    );
  }
  return lines;
}

/** One change: a device's last report or a campaign event (who paused, which wave opened, ...). */
type Change = { at: number; who: string; what: string; detail: string };

/** Every change the detail shows, newest first (ties: by who, so that a redraw is stable). */
export function changesOf(d: CampaignDetail): Change[] {
  const out: Change[] = [];
  for (const x of d.devices) {
    if (x.updated === null) continue; // eligible, never reported: no change yet
    const detail = x.code ? `${codeName(x.code)} (code ${x.code})` : x.total ? `${x.done}/${x.total}` : '';
    out.push({ at: x.updated, who: x.id, what: x.state, detail });
  }
  for (const e of d.events ?? []) out.push({ at: e.at, who: e.actor, what: e.action, detail: e.detail });
  return out.sort((a, b) => b.at - a.at || (a.who < b.who ? -1 : a.who > b.who ? 1 : 0));
}

/**
 * The screen for one poll: at most `rows - 1` lines (the cursor rests on the last row without
 * scrolling), none wider than `columns`. Pure: the same detail and screen give the same lines.
 */
export function renderWatch(d: CampaignDetail, screen: Screen): string[] {
  const budget = Math.max(1, screen.rows - 1);
  const columns = Math.max(1, screen.columns);
  const lines = summaryLines(d, columns).slice(0, budget);
  const room = budget - lines.length - 2; // a blank line and the title
  const changes = changesOf(d);
  if (room >= 1 && changes.length > 0) {
    const shown = changes.slice(0, room);
    const w = Math.min(24, Math.max(...shown.map((x) => printable(x.who).length)));
    const more = changes.length > shown.length ? ` (newest ${shown.length} of ${changes.length}; all: fwseal campaign status ${d.id})` : '';
    lines.push('', `CHANGES, UTC${more}`);
    for (const x of shown) lines.push(`${clock(x.at)}  ${printable(x.who).padEnd(w)}  ${printable(x.what).padEnd(11)}  ${printable(x.detail)}`.trimEnd());
  }
  return lines.map((l) => (l.length > columns ? l.slice(0, columns) : l));
}

/** The line appended per change where stdout is not a terminal. */
export function changeLine(d: CampaignDetail): string {
  const c = d.counts;
  const wait = d.waitingFor ? ` waiting-for ${d.waitingFor}` : '';
  return `${d.id} ${d.state} wave ${d.wave}/${d.waves.length} eligible ${c.eligible} downloading ${c.downloading} confirmed ${c.confirmed} rejected ${c.rejected} failed ${c.failed}${ended(c)} failure-rate ${pct(d.failureRate)}${wait}\n`;
}

/** Cursor home, clear to the end of the line, clear below, clear the screen (ECMA-48 CUP, EL, ED). */
const HOME = '\x1b[H';
const CLEAR_LINE = '\x1b[K';
const CLEAR_BELOW = '\x1b[J';
const CLEAR_SCREEN = '\x1b[2J';

export type WatchOutput = 'json' | 'lines' | 'screen';

/**
 * What each poll prints: the text, or '' when nothing changed since the last poll. `screen` clears
 * the terminal once, then overwrites its lines in place from the top left (no scrollback flood).
 */
export class WatchPrinter {
  private last = '';
  private drawn = false;

  constructor(
    private readonly output: WatchOutput,
    private readonly screen: () => Screen = terminalScreen,
  ) {}

  print(d: CampaignDetail): string {
    const text = this.output === 'json' ? `${JSON.stringify(d)}\n` : this.output === 'lines' ? changeLine(d) : renderWatch(d, this.screen()).join('\n');
    if (text === this.last) return '';
    this.last = text;
    if (this.output !== 'screen') return text;
    const clear = this.drawn ? '' : CLEAR_SCREEN;
    this.drawn = true;
    return `${clear}${HOME}${text.split('\n').join(`${CLEAR_LINE}\n`)}${CLEAR_LINE}\n${CLEAR_BELOW}`;
  }
}

const FINAL = new Set(['completed', 'aborted', 'halted']);

/** Why a watched campaign ended without completing (one stderr line): the halt code, or the failure rate and the devices' codes. */
export function endReason(d: CampaignDetail): string {
  if (d.state !== 'halted') return `campaign ${d.id} ${d.state}`;
  if (d.haltCode) return `campaign ${d.id} halted by the root of trust: ${codeName(d.haltCode)} (code ${d.haltCode})`;
  const codes = new Map<number, number>();
  for (const x of d.devices) if (x.code) codes.set(x.code, (codes.get(x.code) ?? 0) + 1);
  const named = [...codes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${codeName(c)} (code ${c}) x${n}`);
  return `campaign ${d.id} halted: failure rate ${pct(d.failureRate)} above ${pct(d.abortFailureRate)}${named.length ? `; device codes: ${named.join(', ')}` : ''}`;
}

export type WatchOptions = { readonly output: WatchOutput; readonly retryForMs: number; readonly screen?: () => Screen; readonly pollMs?: number };

/**
 * Poll until a final state; 0 only for completed, 1 for halted or aborted (SPEC.md §12.9). A server
 * that does not answer (restart, reset, a proxy's 502/503/504) is asked again with backoff for
 * `retryForMs` since its last answer, then SERVER_UNREACHABLE (exit 2).
 */
export async function watchCampaign(io: Io, t: ApiTarget, id: string, opts: WatchOptions): Promise<number> {
  const onRetry = (e: FwsealError, attempt: number, ms: number) =>
    io.stderr(`fwseal campaign status: ${e.codeName} (code ${e.code}); asking again in ${(ms / 1000).toFixed(1)} s (attempt ${attempt + 1})\n`);
  const printer = new WatchPrinter(opts.output, opts.screen);
  for (;;) {
    const d = await apiGetRetrying<CampaignDetail>(t, `api/campaigns/${encodeURIComponent(id)}`, { giveUpMs: opts.retryForMs, onRetry });
    const text = printer.print(d);
    if (text) io.stdout(text);
    if (d.state === 'completed') return 0;
    if (FINAL.has(d.state)) {
      io.stderr(`fwseal campaign status: ${endReason(d)}\n`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 1000));
  }
}
