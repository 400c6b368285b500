/**
 * The rollout rules on the command line (SPEC.md §12.9 "Rollouts that finish"): `campaign create`'s
 * --device-timeout, --abort-min-devices, --wave-soak and --wave-gate, turned into the API's fields,
 * and the lines `campaign status` prints for them and for the campaign's events (who did what).
 */
import { LIMITS } from '../../shared/limits.js';
import { FwsealError } from '../errors.js';
import { formatDuration } from '../ota/progress.js';
import { type Parsed, str } from './common.js';

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** The server's bounds (campaigns.ts): timeouts from 1 s, both at most 30 days. */
const MAX_MS = 30 * 86_400_000;

/** A duration flag: a whole number and a unit, `90s`, `10m`, `2h`, `1d` (`ms` too); USAGE otherwise. */
export function parseDuration(text: string, flag: string, min = 0): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text);
  const ms = m ? Number(m[1]) * UNITS[m[2]] : Number.NaN;
  if (!(ms >= min && ms <= MAX_MS)) throw new FwsealError('USAGE', `--${flag} must be a duration like 90s, 10m, 2h or 1d, from ${min / 1000} s to 30 days`);
  return ms;
}

export const ROLLOUT_FLAGS = {
  'device-timeout': { type: 'string' },
  'abort-min-devices': { type: 'string' },
  'wave-soak': { type: 'string' },
  'wave-gate': { type: 'string' },
} as const;

export const ROLLOUT_USAGE = `Rollouts that always finish (all optional):
  --device-timeout D      a device of the open wave silent for D (no status event, no manifest request)
                          counts as timed-out, an end state of its own outside the failure rate
                          (default 1h; 90s, 10m, 2h, 1d)
  --abort-min-devices N   the failure rate may halt the campaign only once N devices reported an end
                          state (default 1)
  --wave-soak D           after a wave is done, wait D before the next opens (default 0)
  --wave-gate auto|manual manual: the next wave opens only after fwseal campaign next ID`;

/** The API fields of the rollout flags given (POST /api/campaigns). */
export function rolloutBody(p: Parsed): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  const timeout = str(p, 'device-timeout');
  if (timeout !== undefined) out.deviceTimeoutMs = parseDuration(timeout, 'device-timeout', 1000);
  const soak = str(p, 'wave-soak');
  if (soak !== undefined) out.waveSoakMs = parseDuration(soak, 'wave-soak');
  const min = str(p, 'abort-min-devices');
  if (min !== undefined) {
    const n = /^\d{1,9}$/.test(min) ? Number(min) : 0;
    if (n < 1 || n > LIMITS.maxKnownDevices) throw new FwsealError('USAGE', `--abort-min-devices must be a whole number from 1 to ${LIMITS.maxKnownDevices}`);
    out.abortMinDevices = n;
  }
  const gate = str(p, 'wave-gate');
  if (gate !== undefined && gate !== 'auto' && gate !== 'manual') throw new FwsealError('USAGE', '--wave-gate must be auto or manual');
  if (gate !== undefined) out.waveGate = gate;
  return out;
}

/** What the campaign detail says of its rules, its open wave and its events (all absent from an older server). */
export type RolloutDetail = {
  deviceTimeoutMs?: number;
  abortMinDevices?: number;
  waveSoakMs?: number;
  waveGate?: string;
  waveDoneAt?: number | null;
  nextWaveAt?: number | null;
  waveApproved?: boolean;
  waitingFor?: string | null;
  events?: { at: number; action: string; actor: string; detail: string }[];
};

const time = (ms: number) => new Date(ms).toISOString();
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is escaped
const printable = (s: string) => s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** The rules line and, while running, what the open wave waits for. */
export function formatRollout(d: RolloutDetail & { state: string; wave: number }): string[] {
  if (d.deviceTimeoutMs === undefined) return [];
  const gate = d.waveGate === 'manual' ? 'manual gate (fwseal campaign next)' : 'automatic';
  const lines = [
    `rules: device timeout ${formatDuration(d.deviceTimeoutMs)}, halts only after ${d.abortMinDevices} device(s) reported, soak ${formatDuration(d.waveSoakMs ?? 0)}, ${gate}`,
  ];
  const until = d.nextWaveAt ? ` until ${time(d.nextWaveAt)}` : '';
  if (d.waitingFor === 'devices') lines.push(`wave ${d.wave}: waiting for its devices`);
  else if (d.waitingFor === 'soak') lines.push(`wave ${d.wave} done: soaking${until}${d.waveApproved ? '; next wave let open' : ''}`);
  else if (d.waitingFor === 'operator') lines.push(`wave ${d.wave} done: waiting for fwseal campaign next`);
  return lines;
}

/** The campaign's events, oldest first: when, who, what (control characters escaped: they come from tokens files and devices). */
export function formatEvents(d: RolloutDetail): string[] {
  if (!d.events || d.events.length === 0) return [];
  return ['', 'EVENTS', ...d.events.map((e) => `${time(e.at)}  ${printable(e.actor)}  ${e.action}  ${printable(e.detail)}`)];
}
