/**
 * What a campaign's rows add up to (SPEC.md §12.8, §12.9): each device's rollout bucket, the rollout
 * that admits a wave, and the tally the halt rule, the waves and the API read. Shared by the wave
 * engine (waves.ts), the operator transitions (campaigns.ts) and the campaign detail (campaign-view.ts).
 */
import { LIMITS } from '../../shared/limits.js';
import { ROLLOUT_ALL, rolloutBucket } from '../../shared/ota/topics.js';
import { BoundedMemo, nodeSha256 } from '../hash.js';
import { type DeviceCampaignRow, TERMINAL_RANK } from './store.js';

/** Rollout buckets the server has computed (a SHA-256 each; wave steps and the API ask for every device, often). */
const buckets = new BoundedMemo<number>(4 * LIMITS.maxFleetDevices);

/** rolloutBucket (SPEC.md §12.8), remembered for up to 4 x maxFleetDevices (campaign, device) pairs. */
export function bucketOf(campaign: string, device: string): number {
  const key = `${campaign}/${device}`;
  let b = buckets.get(key);
  if (b === undefined) {
    b = rolloutBucket(nodeSha256, campaign, device);
    buckets.set(key, b);
  }
  return b;
}

/**
 * Whether the open waves admit the device (SPEC.md §12.8: `rolloutBucket < rollout`). Every bucket is
 * below ROLLOUT_ALL (the last wave open), so then no bucket is computed: a SHA-256 and a memo lookup
 * per request, status event and device of a campaign view saved (tools/bench ota, profiled).
 */
export function inWave(campaign: string, device: string, rollout: number): boolean {
  return rollout >= ROLLOUT_ALL || bucketOf(campaign, device) < rollout;
}

/** rollout admitting exactly ceil(percent% of the known devices): just above the k-th smallest bucket. */
export function rolloutFor(campaign: string, devices: readonly string[], percent: number): number {
  if (percent >= 100) return ROLLOUT_ALL;
  const k = Math.ceil((percent * devices.length) / 100);
  if (k === 0) return 0;
  const sorted = devices.map((d) => bucketOf(campaign, d)).sort((a, b) => a - b);
  return sorted[k - 1] + 1;
}

/**
 * A campaign's rows: `failures` (rejected + failed) over `reported` (the end states a device reported
 * itself: confirmed, rejected, failed) is the failure rate; `timed-out` and `excluded` are in neither
 * (SPEC.md §12.9 "Rollouts that finish"). `ended`: rows at an end state of any kind (a wave is done
 * when each of its devices has one).
 */
export type Tally = { readonly statuses: Map<string, DeviceCampaignRow>; readonly failures: number; readonly reported: number; readonly ended: number };

export function tally(rows: readonly DeviceCampaignRow[]): Tally {
  const statuses = new Map<string, DeviceCampaignRow>();
  let failures = 0;
  let reported = 0;
  let ended = 0;
  for (const s of rows) {
    statuses.set(s.device, s);
    if (s.rank >= TERMINAL_RANK) ended++;
    if (s.state === 'rejected' || s.state === 'failed') failures++;
    if (s.state === 'confirmed' || s.state === 'rejected' || s.state === 'failed') reported++;
  }
  return { statuses, failures, reported, ended };
}

export const failureRate = (t: Tally): number => (t.reported === 0 ? 0 : t.failures / t.reported);

/** A duration for people: 90s, 10m, 2h, 1d (whole units where they fit, else seconds). */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const)
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}
