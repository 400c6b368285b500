/**
 * The wave engine (SPEC.md §12.8, §12.9 "Campaigns and waves", "Rollouts that finish"): one step of a
 * running campaign times out its silent devices, halts on too many failures (once enough devices
 * reported), and, when every device of the open wave is at an end state, completes the campaign or,
 * after the soak and the operator's `next` where the campaign asks for them, opens the next wave.
 * Every write is an atomic store step that re-checks the stored rows (OtaStore.recordTimeouts,
 * updateCampaign), so with several instances on one store only one of them takes each step. The
 * server's own steps are recorded as campaign events (actor `server`); so are the operator's `next`
 * and `exclude`.
 */
import { codeName } from '../../shared/codes.js';
import { ID_PATTERN } from '../../shared/ota/topics.js';
import { ApiError } from './campaigns.js';
import { failureRate, formatDuration, inWave, rolloutFor, type Tally, tally } from './progress.js';
import { type CampaignProgress, type CampaignRow, type OtaStore, TERMINAL_RANK } from './store.js';

/** The actor of the engine's own steps in the campaign events. */
export const SERVER_ACTOR = 'server';
/** A timeout event names at most this many devices (then how many more). */
const NAMED_DEVICES = 10;

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

function someIds(ids: readonly string[]): string {
  const named = ids.slice(0, NAMED_DEVICES).join(', ');
  return ids.length > NAMED_DEVICES ? `${named} and ${ids.length - NAMED_DEVICES} more` : named;
}

/** Why the failure-rate rule halted: the rate, the minimum, and the devices' codes, most frequent first. */
function haltReason(row: CampaignRow, t: Tally): string {
  const codes = new Map<number, number>();
  for (const s of t.statuses.values()) if (s.code !== null && (s.state === 'rejected' || s.state === 'failed')) codes.set(s.code, (codes.get(s.code) ?? 0) + 1);
  const named = [...codes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${codeName(c)} (code ${c}) x${n}`);
  const rate = `failure rate ${pct(failureRate(t))} above ${pct(row.abort_failure_rate)}`;
  return `${rate}: ${t.failures} of ${t.reported} reported devices (at least ${row.abort_min_devices})${named.length ? `; codes ${named.join(', ')}` : ''}`;
}

/** Every known device of the open wave is at an end state (timed-out and excluded included). */
function openWaveEnded(row: CampaignRow, progress: CampaignProgress, t: Tally): boolean {
  return progress.devices.every((d) => !inWave(row.id, d.id, row.rollout) || (t.statuses.get(d.id)?.rank ?? -1) >= TERMINAL_RANK);
}

/** One decided step: the fields to write, the event to record, and whether the announcement changes. */
type Step = { readonly fields: Partial<CampaignRow>; readonly event: { action: string; detail: string } | null; readonly announce: boolean };

/** The step of a running campaign from its row and progress as stored now (pure: may run again). */
export function decideStep(row: CampaignRow, progress: CampaignProgress, now: number): Step | null {
  if (row.state !== 'running') return null;
  const t = tally(progress.statuses);
  const enough = t.reported >= Math.max(1, row.abort_min_devices);
  if (enough && t.failures / t.reported > row.abort_failure_rate && t.failures > row.halt_baseline)
    return { fields: { state: 'halted' }, event: { action: 'halt', detail: haltReason(row, t) }, announce: true };
  const waves = JSON.parse(row.waves) as number[];
  const known = progress.devices.map((d) => d.id);
  const eligible = known.filter((d) => inWave(row.id, d, row.rollout));
  if (eligible.length === 0) {
    // The wave opened before any device of the group was known: size it now.
    const rollout = rolloutFor(row.id, known, waves[row.wave]);
    return rollout > row.rollout ? { fields: { rollout }, event: null, announce: true } : null;
  }
  if (!openWaveEnded(row, progress, t)) {
    // A device that joined the open wave after it was done: the wave is not done (nor soaking) any more.
    return row.wave_done_at !== null ? { fields: { wave_done_at: null }, event: null, announce: false } : null;
  }
  const last = row.wave >= waves.length - 1;
  if (last) return { fields: { state: 'completed' }, event: { action: 'complete', detail: `every device of wave ${row.wave + 1} is done` }, announce: true };
  const doneAt = row.wave_done_at ?? now;
  const mark: Step | null = row.wave_done_at === null ? { fields: { wave_done_at: now }, event: null, announce: false } : null;
  if (now < doneAt + row.wave_soak_ms) return mark;
  if (row.wave_gate === 'manual' && row.approved_wave !== row.wave) return mark;
  const wave = row.wave + 1;
  const rollout = Math.max(row.rollout, rolloutFor(row.id, known, waves[wave]));
  const detail = `wave ${wave + 1}/${waves.length} opened (${waves[wave]}%)`;
  return { fields: { wave, rollout, wave_done_at: null, wave_started: now }, event: { action: 'wave', detail }, announce: true };
}

/**
 * Time out the open wave's silent devices (SPEC.md §12.9 "Rollouts that finish"): no status event that
 * counted and no manifest request for longer than the campaign's device timeout, counted from the
 * wave's start (or the last resume) at the earliest. The candidates come from a read; the store writes
 * only those that are still silent and not at an end state, in one atomic step.
 */
async function timeOutSilent(store: OtaStore, id: string, now: number): Promise<string[]> {
  const row = await store.campaign(id);
  if (row?.state !== 'running') return [];
  const cutoff = now - row.device_timeout_ms;
  if (row.wave_started > cutoff) return []; // nobody can have been silent that long yet
  const [statuses, devices] = await Promise.all([store.statuses(id), store.devices(row.grp)]);
  const rows = new Map(statuses.map((s) => [s.device, s]));
  const candidates = devices
    .filter((d) => {
      if (d.last_seen > cutoff || !inWave(id, d.id, row.rollout)) return false;
      const r = rows.get(d.id);
      return !r || (r.rank < TERMINAL_RANK && r.updated <= cutoff);
    })
    .map((d) => d.id);
  if (candidates.length === 0) return [];
  const timedOut = await store.recordTimeouts(id, candidates, cutoff);
  if (timedOut.length > 0) {
    const detail = `${timedOut.length} device(s) silent for over ${formatDuration(row.device_timeout_ms)}: ${someIds(timedOut)}`;
    await store.recordEvent({ campaign: id, at: now, action: 'timeout', actor: SERVER_ACTOR, detail });
  }
  return timedOut;
}

/**
 * One step of the wave engine for a campaign: timeouts first (they may end the open wave), then the
 * decided step, in one atomic store step. Returns the changed row when its state, wave or rollout
 * changed (the caller republishes the announcement), else null; a soak starting or ending is recorded
 * in the row only.
 */
export async function advance(store: OtaStore, id: string, now = Date.now(), onTimedOut?: (devices: readonly string[]) => void): Promise<CampaignRow | null> {
  const timedOut = await timeOutSilent(store, id, now);
  if (timedOut.length > 0) onTimedOut?.(timedOut);
  let step: Step | null = null;
  const row = await store.updateCampaign(
    id,
    (r, { progress }) => {
      step = decideStep(r, progress!, now);
      return step?.fields ?? null;
    },
    { progress: true },
  );
  const taken = step as Step | null;
  if (!row || !taken) return null;
  if (taken.event) await store.recordEvent({ campaign: id, at: now, actor: SERVER_ACTOR, ...taken.event });
  return taken.announce ? row : null;
}

/**
 * `campaign next` (manual gate): let the campaign's next wave open once the open one is done and
 * soaked. 404 for no campaign; 409 unless it is running with the manual gate, its open wave is not the
 * last, is done, and was not let go already. The wave itself opens at the engine's next step.
 */
export async function approveNextWave(store: OtaStore, id: string, actor: string, now = Date.now()): Promise<CampaignRow> {
  if (!(await store.campaign(id))) throw new ApiError(404, 'NOT_FOUND', `no campaign ${id}`);
  let refused = 'gone';
  const row = await store.updateCampaign(
    id,
    (r, { progress }) => {
      const waves = JSON.parse(r.waves) as number[];
      if (r.state !== 'running') refused = `the campaign is ${r.state}`;
      else if (r.wave_gate !== 'manual') refused = 'the campaign opens its waves by itself (no --wave-gate manual)';
      else if (r.wave >= waves.length - 1) refused = 'the last wave is open';
      else if (!openWaveEnded(r, progress!, tally(progress!.statuses))) refused = `wave ${r.wave + 1} is not done yet`;
      else if (r.approved_wave === r.wave) refused = `wave ${r.wave + 2} is already let open`;
      // The engine may not have marked the wave done yet: the soak starts now at the latest.
      else return { approved_wave: r.wave, wave_done_at: r.wave_done_at ?? now };
      return null;
    },
    { progress: true },
  );
  if (!row) throw new ApiError(409, 'CONFLICT', `cannot open the next wave: ${refused}`);
  const waves = JSON.parse(row.waves) as number[];
  const soak = (row.wave_done_at ?? now) + row.wave_soak_ms;
  const when = soak > now ? `after the soak, at ${new Date(soak).toISOString()}` : 'now';
  await store.recordEvent({ campaign: id, at: now, action: 'next', actor, detail: `wave ${row.wave + 2}/${waves.length} let open ${when}` });
  return row;
}

/**
 * `campaign exclude` (SPEC.md §12.9): the device leaves the campaign (row `excluded`: not counted,
 * never served the campaign again). 400 for a malformed device id, 404 for no campaign or a device
 * not known in its group, 409 for an aborted campaign or a device excluded already.
 */
export async function excludeFromCampaign(store: OtaStore, id: string, device: string, actor: string, now = Date.now()): Promise<CampaignRow> {
  if (!ID_PATTERN.test(device)) throw new ApiError(400, 'BAD_VALUE', 'device must be 1..64 characters of [A-Za-z0-9_-]');
  const r = await store.excludeDevice(id, device);
  if (r === 'no-campaign') throw new ApiError(404, 'NOT_FOUND', `no campaign ${id}`);
  if (r === 'no-device') throw new ApiError(404, 'NOT_FOUND', `no device ${device} known in the campaign's group`);
  if (r === 'inactive') throw new ApiError(409, 'CONFLICT', `campaign ${id} is aborted`);
  if (r === 'already') throw new ApiError(409, 'CONFLICT', `device ${device} is excluded from ${id} already`);
  await store.recordEvent({ campaign: id, at: now, action: 'exclude', actor, detail: `device ${device}` });
  return (await store.campaign(id))!;
}
