/**
 * A campaign as the HTTP API shows it (SPEC.md §12.9 "HTTP API"): the summary of the list, and the
 * detail with counts derived from the (campaign, device) rows, the rollout rules and where the open
 * wave stands (devices, soak, operator), and the campaign's recorded events (who did what).
 */
import { toHex } from '../../shared/bytes.js';
import { failureRate, inWave, tally } from './progress.js';
import { type CampaignRow, DEVICE_STATES, type OtaStore, TERMINAL_RANK } from './store.js';

/** The newest events a campaign detail shows (oldest first); the store keeps them all. */
export const DETAIL_EVENTS = 100;

export type DeviceView = {
  id: string;
  state: string;
  done: number | null;
  total: number | null;
  code: number | null;
  updated: number | null;
  /** The root of trust the device last acknowledged (§12.13; null: never reported). */
  trustVersion: number | null;
  revocationVersion: number | null;
};

/** One recorded action on a campaign: an operator's (by token name) or the server's own. */
export type EventView = { at: number; action: string; actor: string; detail: string };

/** What the open wave waits for before the next opens (or the campaign completes); null: nothing (or not running). */
export type WaitingFor = 'devices' | 'soak' | 'operator' | null;

export function summary(row: CampaignRow) {
  return {
    id: row.id,
    group: row.grp,
    version: row.version,
    securityCounter: row.security_counter,
    state: row.state,
    /** The verifier's code when the root of trust halted the campaign (§12.13), else null. */
    haltCode: row.halt_code,
    wave: row.wave + 1,
    waves: JSON.parse(row.waves) as number[],
    rollout: row.rollout,
    created: row.created,
    updated: row.updated,
  };
}

/** The rollout rules of a campaign and where its open wave stands (SPEC.md §12.9 "Rollouts that finish"). */
function rolloutState(row: CampaignRow, waveEnded: boolean, now: number) {
  const last = row.wave >= (JSON.parse(row.waves) as number[]).length - 1;
  const soakEnds = row.wave_done_at === null ? null : row.wave_done_at + row.wave_soak_ms;
  let waitingFor: WaitingFor = null;
  if (row.state === 'running') {
    if (!waveEnded) waitingFor = 'devices';
    else if (last) waitingFor = null;
    else if (now < (soakEnds ?? now + row.wave_soak_ms)) waitingFor = 'soak';
    else if (row.wave_gate === 'manual' && row.approved_wave !== row.wave) waitingFor = 'operator';
  }
  return {
    deviceTimeoutMs: row.device_timeout_ms,
    abortMinDevices: row.abort_min_devices,
    waveSoakMs: row.wave_soak_ms,
    waveGate: row.wave_gate,
    waveDoneAt: row.wave_done_at,
    nextWaveAt: last ? null : soakEnds,
    waveApproved: row.wave_gate === 'manual' && row.approved_wave === row.wave,
    waitingFor,
  };
}

/** The API's campaign detail: counts derived from the (campaign, device) rows. */
export async function detail(store: OtaStore, row: CampaignRow, now = Date.now()) {
  const t = tally(await store.statuses(row.id));
  const known = await store.devices(row.grp);
  const counts: Record<string, number> = { known: known.length, eligible: 0, waiting: 0 };
  for (const s of DEVICE_STATES) counts[s] = 0;
  for (const s of t.statuses.values()) counts[s.state]++;
  const devices: DeviceView[] = [];
  const root = new Map(known.map((d) => [d.id, { trustVersion: d.trust_version, revocationVersion: d.revocation_version }]));
  const unknownRoot = { trustVersion: null, revocationVersion: null };
  let waveEnded = true;
  for (const d of known) {
    if (!inWave(row.id, d.id, row.rollout)) continue;
    counts.eligible++;
    if (!t.statuses.has(d.id)) {
      counts.waiting++;
      waveEnded = false;
      devices.push({ id: d.id, state: 'waiting', done: null, total: null, code: null, updated: null, ...root.get(d.id)! });
    }
  }
  for (const s of t.statuses.values()) {
    if (s.rank < TERMINAL_RANK && inWave(row.id, s.device, row.rollout)) waveEnded = false;
    devices.push({ id: s.device, state: s.state, done: s.done, total: s.total, code: s.code, updated: s.updated, ...(root.get(s.device) ?? unknownRoot) });
  }
  devices.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const events: EventView[] = (await store.events(row.id, DETAIL_EVENTS)).map((e) => ({ at: e.at, action: e.action, actor: e.actor, detail: e.detail }));
  return {
    ...summary(row),
    imageSha256: row.image_sha,
    imageSize: row.image_size,
    chunkSize: row.chunk_size,
    blockSize: row.block_size,
    manifestSha256: toHex(new Uint8Array(row.manifest_sha)),
    abortFailureRate: row.abort_failure_rate,
    ...rolloutState(row, waveEnded, now),
    counts,
    failureRate: failureRate(t),
    devices,
    events,
  };
}
