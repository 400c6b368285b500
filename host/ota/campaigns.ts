/**
 * Campaigns (SPEC.md §12.8): creation (the manifest verified against the server's trust bundle, the
 * stored image against the manifest, the rollout rules checked), status ingest and the operator
 * transitions; the wave engine is waves.ts, the API's view campaign-view.ts. Every change is one
 * atomic store step that re-reads the row (OtaStore.updateCampaign), so two instances sharing the
 * store never open a wave twice or undo each other's transition. Who changed what is recorded as a
 * campaign event (SPEC.md §12.9 "Campaign events").
 */
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { bytesEqual, toHex } from '../../shared/bytes.js';
import { type CodeName } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { LIMITS } from '../../shared/limits.js';
import { type Manifest, parseManifest } from '../../shared/manifest.js';
import { chunkCount, pageCount } from '../../shared/merkle.js';
import { type Announcement } from '../../shared/ota/messages.js';
import { type StatusEvent } from '../../shared/ota/status.js';
import { ID_PATTERN } from '../../shared/ota/topics.js';
import { encodeDigestTable } from '../digests.js';
import { FwsealError } from '../errors.js';
import { nodeSha256 } from '../hash.js';
import { writeFileAtomic } from '../io.js';
import { hashImage } from '../pack.js';
import { verifyFiles } from '../verify.js';
import { digestTableFile, imageFile } from './assets.js';
import { type CampaignMetrics } from './metrics.js';
import { formatDuration, inWave, rolloutFor, tally } from './progress.js';
import { type RootVersions } from './root-store.js';
import { type CampaignRow, type CampaignState, DEFAULT_DEVICE_TIMEOUT_MS, type NewCampaign, type OtaStore, type WaveGate } from './store.js';

export { type DeviceView, detail, summary } from './campaign-view.js';
export { bucketOf, inWave, rolloutFor } from './progress.js';

/** An API failure with its HTTP status (the body carries the fwseal code). */
export class ApiError extends FwsealError {
  constructor(
    readonly status: number,
    codeName: Exclude<CodeName, 'OK'>,
    message: string,
  ) {
    super(codeName, message);
  }
}

export const DEFAULT_WAVES = Object.freeze([5, 25, 100]);
export const DEFAULT_ABORT_FAILURE_RATE = 0.1;
const MAX_WAVES = LIMITS.maxWaves;
/** Device timeout and wave soak: at most 30 days; a timeout of at least one second. */
export const MAX_DURATION_MS = 30 * 86_400_000;
export const MIN_DEVICE_TIMEOUT_MS = 1000;

export type CreateCampaign = {
  readonly manifest: Uint8Array;
  readonly image: string;
  readonly group: string;
  readonly waves?: readonly number[];
  readonly abortFailureRate?: number;
  readonly blockSize?: number;
  /** The rollout rules (SPEC.md §12.9 "Rollouts that finish"); defaults: 1 h, 1, 0, auto. */
  readonly deviceTimeoutMs?: number;
  readonly abortMinDevices?: number;
  readonly waveSoakMs?: number;
  readonly waveGate?: WaveGate;
};

/** The rollout rules of a new campaign, checked (400 BAD_VALUE), with their defaults. */
type RolloutRules = Pick<NewCampaign, 'device_timeout_ms' | 'abort_min_devices' | 'wave_soak_ms' | 'wave_gate'>;

function wholeIn(v: unknown, min: number, max: number, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max)
    throw new ApiError(400, 'BAD_VALUE', `${name} must be a whole number from ${min} to ${max}`);
  return v;
}

export function checkRolloutRules(req: CreateCampaign): RolloutRules {
  const gate = req.waveGate ?? 'auto';
  if (gate !== 'auto' && gate !== 'manual') throw new ApiError(400, 'BAD_VALUE', 'waveGate must be auto or manual');
  return {
    device_timeout_ms: wholeIn(req.deviceTimeoutMs ?? DEFAULT_DEVICE_TIMEOUT_MS, MIN_DEVICE_TIMEOUT_MS, MAX_DURATION_MS, 'deviceTimeoutMs'),
    abort_min_devices: wholeIn(req.abortMinDevices ?? 1, 1, LIMITS.maxKnownDevices, 'abortMinDevices'),
    wave_soak_ms: wholeIn(req.waveSoakMs ?? 0, 0, MAX_DURATION_MS, 'waveSoakMs'),
    wave_gate: gate,
  };
}

/** The root of trust a new campaign is verified against, and its versions (RootOfTrust.forCampaigns). */
export type Trust = { readonly trust: Uint8Array; readonly revocations?: Uint8Array; readonly versions: RootVersions };

/** A root of trust stored between a campaign's verification and its insert: verified again, at most this many times in all. */
const CREATE_ATTEMPTS = 3;

const isPow2 = (n: number) => Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** Block size announced for a chunk size (brief: 16 chunks, at most maxBlockBytes, never across a page). */
export function defaultBlockSize(chunkSize: number): number {
  return Math.max(chunkSize, Math.min(LIMITS.maxBlockBytes, chunkSize * 16, chunkSize * LIMITS.pageLeaves));
}

export function checkWaves(waves: unknown): number[] {
  if (!Array.isArray(waves) || waves.length === 0 || waves.length > MAX_WAVES)
    throw new ApiError(400, 'BAD_VALUE', `waves must be 1..${MAX_WAVES} percentages`);
  let prev = 0;
  for (const w of waves) {
    if (typeof w !== 'number' || !Number.isFinite(w) || w <= prev || w > 100)
      throw new ApiError(400, 'BAD_VALUE', 'waves must be ascending percentages in (0, 100]');
    prev = w;
  }
  if (prev !== 100) throw new ApiError(400, 'BAD_VALUE', 'the last wave must be 100');
  return waves as number[];
}

export function newCampaignId(): string {
  return `c${Date.now().toString(36)}${toHex(randomBytes(3))}`;
}

/** The announcement of a campaign (rollout 0 while paused or halted); null when aborted or halted by the root of trust (§12.13). */
export function announcementOf(row: CampaignRow): Announcement | null {
  if (row.state === 'aborted' || row.halt_code !== null) return null;
  return {
    campaign: row.id,
    manifestDigest: new Uint8Array(row.manifest_sha),
    manifestSize: row.manifest.length,
    imageSize: row.image_size,
    chunkSize: row.chunk_size,
    blockSize: row.block_size,
    pageCount: row.page_count,
    rollout: row.state === 'running' || row.state === 'completed' ? row.rollout : 0,
  };
}

/** The request's fields, its image and its group, checked before any hashing (conflicts are cheap to find). */
async function checkRequest(
  store: OtaStore,
  req: CreateCampaign,
): Promise<{ waves: number[]; rate: number; rules: RolloutRules; imagePath: string; manifest: Manifest }> {
  if (!ID_PATTERN.test(req.group)) throw new ApiError(400, 'BAD_VALUE', 'group must be 1..64 characters of [A-Za-z0-9_-]');
  if (!/^[0-9a-f]{64}$/.test(req.image)) throw new ApiError(400, 'BAD_VALUE', 'image must be a lowercase SHA-256 hex digest');
  const waves = checkWaves(req.waves ?? DEFAULT_WAVES);
  const rate = req.abortFailureRate ?? DEFAULT_ABORT_FAILURE_RATE;
  if (typeof rate !== 'number' || !(rate >= 0 && rate <= 1)) throw new ApiError(400, 'BAD_VALUE', 'abortFailureRate must be in [0, 1]');
  const rules = checkRolloutRules(req);
  if (req.manifest.length > LIMITS.maxEnvelopeBytes) throw new ApiError(413, 'TOO_LARGE', `manifest of ${req.manifest.length} bytes`);
  const imagePath = imageFile(store, req.image);
  if (!existsSync(imagePath)) throw new ApiError(404, 'NOT_FOUND', `no stored image ${req.image} (PUT /api/images/<sha256> first)`);
  const other = await store.activeInGroup(req.group);
  if (other) throw new ApiError(409, 'CONFLICT', `group ${req.group} already has the active campaign ${other}`);
  const env = parseEnvelope(req.manifest);
  const parsed = env.ok ? parseManifest(env.envelope.payload) : env;
  if (!parsed.ok) throw new ApiError(422, parsed.error as Exclude<CodeName, 'OK'>, `manifest: ${parsed.detail ?? parsed.error}`);
  return { waves, rate, rules, imagePath, manifest: parsed.value };
}

/**
 * Signatures, threshold and revocation under `trust`; device class and counter are each device's
 * business. Timed (M4, fwseal_server_verify_seconds): the manifest check is the verify latency.
 */
function verifyManifestUnder(envelope: Uint8Array, trust: Trust, manifest: Manifest, metrics?: CampaignMetrics): void {
  const state = { deviceClass: manifest.deviceClass, counter: 0, ...(trust.revocations ? { revocations: trust.revocations } : {}) };
  const started = performance.now();
  const signed = verifyFiles({ envelope, trust: trust.trust, state }).result;
  metrics?.serverVerified((performance.now() - started) / 1000);
  if (!signed.ok) throw new ApiError(422, signed.error as Exclude<CodeName, 'OK'>, signed.detail ?? signed.error);
}

/**
 * The stored image against the verified manifest (SPEC.md §12.9: size, then Merkle root), in the one
 * pass that also gives the digest table's leaves; the image used to be read and hashed twice, by the
 * image verifier and again for the table. The codes are the image verifier's (§6.4).
 */
function checkedLeaves(imagePath: string, manifest: Manifest): Uint8Array {
  const size = statSync(imagePath).size;
  if (size > manifest.imageSize) throw new ApiError(422, 'IMAGE_TOO_LONG', `image is ${size} bytes; the manifest says ${manifest.imageSize}`);
  if (size < manifest.imageSize) throw new ApiError(422, 'IMAGE_TOO_SHORT', `${size} of ${manifest.imageSize} bytes`);
  const { leaves, root } = hashImage(imagePath, manifest.chunkSize);
  if (!bytesEqual(root, manifest.merkleRoot)) throw new ApiError(422, 'MERKLE_ROOT_MISMATCH', 'image root differs from the manifest');
  return leaves;
}

function checkBlockSize(req: CreateCampaign, manifest: Manifest): number {
  const blockSize = req.blockSize ?? defaultBlockSize(manifest.chunkSize);
  if (manifest.chunkSize > LIMITS.maxBlockBytes)
    throw new ApiError(400, 'BAD_VALUE', `chunks of ${manifest.chunkSize} bytes do not fit a ${LIMITS.maxBlockBytes}-byte block`);
  const most = Math.min(LIMITS.maxBlockBytes, manifest.chunkSize * LIMITS.pageLeaves);
  if (!isPow2(blockSize) || blockSize < manifest.chunkSize || blockSize > most)
    throw new ApiError(400, 'BAD_VALUE', `blockSize must be a power of two from the chunk size ${manifest.chunkSize} to ${most}`);
  return blockSize;
}

/** An active campaign in the group, found by the insert (another instance created it meanwhile): 409. */
const conflict = (e: unknown): never => {
  throw e instanceof FwsealError && e.codeName === 'CONFLICT' ? new ApiError(409, 'CONFLICT', e.message) : e;
};

/**
 * Verify and insert a campaign; the caller publishes its announcement. `rootNow` gives the root of
 * trust as stored now: the insert happens only while it is still the one the manifest was verified
 * under (a root change in between would not re-check a campaign it does not see yet, §12.13).
 * `metrics` counts the verdict on the signed artifact (M1): created, or refused with the code of a
 * manifest or image that does not parse or verify (422); other refusals (400, 404, 409) judge no artifact.
 */
export async function createCampaign(
  store: OtaStore,
  rootNow: () => Promise<Trust>,
  req: CreateCampaign,
  now = Date.now(),
  actor = 'api',
  metrics?: CampaignMetrics,
): Promise<CampaignRow> {
  try {
    const row = await verifyAndInsert(store, rootNow, req, now, actor, metrics);
    metrics?.campaignCreated();
    return row;
  } catch (e) {
    if (e instanceof ApiError && e.status === 422) metrics?.campaignCreated(e.codeName);
    throw e;
  }
}

async function verifyAndInsert(
  store: OtaStore,
  rootNow: () => Promise<Trust>,
  req: CreateCampaign,
  now: number,
  actor: string,
  metrics?: CampaignMetrics,
): Promise<CampaignRow> {
  const { waves, rate, rules, imagePath, manifest } = await checkRequest(store, req);
  let trust = await rootNow();
  verifyManifestUnder(req.manifest, trust, manifest, metrics);
  const leaves = checkedLeaves(imagePath, manifest);
  const blockSize = checkBlockSize(req, manifest);
  const id = newCampaignId();
  writeFileAtomic(digestTableFile(store, id), encodeDigestTable(leaves));
  const devices = (await store.devices(req.group)).map((d) => d.id);
  const row: NewCampaign = {
    id,
    grp: req.group,
    version: manifest.version,
    security_counter: manifest.securityCounter,
    state: 'running',
    wave: 0,
    waves: JSON.stringify(waves),
    rollout: rolloutFor(id, devices, waves[0]),
    abort_failure_rate: rate,
    manifest: Buffer.from(req.manifest),
    manifest_sha: nodeSha256(req.manifest) as Buffer,
    image_sha: req.image,
    image_size: manifest.imageSize,
    chunk_size: manifest.chunkSize,
    block_size: blockSize,
    page_count: pageCount(chunkCount(manifest.imageSize, manifest.chunkSize)),
    created: now,
    updated: now,
    ...rules,
    wave_started: now,
  };
  for (let attempt = 1; !(await store.insertCampaign(row, trust.versions).catch(conflict)); attempt++) {
    if (attempt >= CREATE_ATTEMPTS) throw new ApiError(409, 'CONFLICT', 'the root of trust kept changing while the campaign was created; try again');
    trust = await rootNow();
    verifyManifestUnder(req.manifest, trust, manifest, metrics); // the image was checked against the manifest, which is unchanged
  }
  const gate = `${rules.wave_gate} gate, soak ${formatDuration(rules.wave_soak_ms)}`;
  const what = `group ${req.group}, version ${manifest.version}, waves ${waves.join(',')}, device timeout ${formatDuration(rules.device_timeout_ms)}, ${gate}`;
  await store.recordEvent({ campaign: id, at: now, action: 'create', actor, detail: what });
  return (await store.campaign(id))!;
}

/** Why a status event changed nothing (`fwseal_status_ignored_total{reason}`): a closed set. */
export const IGNORED_REASONS = ['unknown_campaign', 'unknown_device', 'other_group', 'outside_wave', 'not_fetched', 'stale', 'fleet_full'] as const;
export type IgnoredReason = (typeof IGNORED_REASONS)[number];

export type Ingested = { readonly counted: true; readonly terminal: boolean } | { readonly counted: false; readonly reason: IgnoredReason };

const ignored = (reason: IgnoredReason): Ingested => ({ counted: false, reason });

/**
 * Status ingest (SPEC.md §12.9). `online` records the device (a new one only while fewer than
 * `maxDevices` are known). Any other event counts toward a campaign only from a device (a) of the
 * campaign's group, (b) inside its open waves (§12.8), (c) that was served the campaign's manifest
 * envelope, or, for `confirmed` only, whose last `online` named the campaign's version and counter
 * (it runs the release already and has nothing to fetch); and only when it moves the device's row
 * forward. The halt rule and the waves read those rows only, so a forged event changes nothing.
 * One read, then one atomic write: what is read only moves one way (nothing is deleted, a rollout only
 * grows) but a device's group, and an `online` moving the device in between is as if it came first.
 */
export async function ingestStatus(store: OtaStore, s: StatusEvent, maxDevices: number): Promise<Ingested> {
  if (s.state === 'online') return ingestOnline(store, s, maxDevices);
  // The device's MQTT last will (SPEC.md §12.2): a known device is marked offline, nothing else.
  if (s.state === 'offline') return (await store.recordOffline(s.device)) ? { counted: true, terminal: false } : ignored('unknown_device');
  const c = await store.statusContext(s.campaign!, s.device);
  if (!c) return ignored('unknown_campaign'); // a campaign another deployment runs, or one long gone
  if (c.device_grp === null) return ignored('unknown_device');
  if (c.device_grp !== c.grp) return ignored('other_group');
  if (!inWave(c.id, s.device, c.rollout)) return ignored('outside_wave');
  const runsRelease = s.state === 'confirmed' && c.device_version === c.version && c.device_counter === c.security_counter;
  if (!c.fetched && !runsRelease) return ignored('not_fetched');
  const moved = await store.recordStatus({
    campaign: c.id,
    device: s.device,
    state: s.state,
    ...(s.done !== undefined ? { done: s.done, total: s.total } : {}),
    ...(s.code !== undefined ? { code: s.code } : {}),
  });
  if (!moved) return ignored('stale'); // backwards, redelivered, or after a terminal state
  return { counted: true, terminal: s.state === 'confirmed' || s.state === 'rejected' || s.state === 'failed' };
}

/**
 * `online`: the device, its release and the root of trust it enforces (keys 12-14). A device known
 * before that now reports a newer revocation version acknowledged every list in between: one
 * propagation time per list (SPEC.md §12.13; fwseal_revocation_propagation_seconds), in the same
 * atomic step as the device row (OtaStore.recordOnline), so the version it rose from is the stored one.
 */
async function ingestOnline(store: OtaStore, s: StatusEvent, maxDevices: number): Promise<Ingested> {
  if (!(await store.recordOnline(s.device, { ...s, group: s.group! }, maxDevices))) return ignored('fleet_full');
  return { counted: true, terminal: false };
}

const TRANSITIONS: Record<'pause' | 'resume' | 'abort', { from: readonly CampaignState[]; to: CampaignState }> = {
  pause: { from: ['running'], to: 'paused' },
  resume: { from: ['paused', 'halted'], to: 'running' },
  abort: { from: ['running', 'paused', 'halted', 'completed'], to: 'aborted' },
};

/**
 * pause | resume | abort; 404 for an unknown campaign, 409 for a transition its state does not allow.
 * `root`: the root of trust versions a resume's manifest check held for (§12.13); when the stored root
 * is no longer at them, nothing changes and the result is null (check the manifest again). `actor`:
 * who asked, recorded with the transition as a campaign event. `metrics` counts a pause or abort of a
 * running campaign as an operator's halt (the state read in the atomic step).
 */
export async function transition(
  store: OtaStore,
  id: string,
  action: 'pause' | 'resume' | 'abort',
  root?: RootVersions,
  actor = 'api',
  metrics?: CampaignMetrics,
): Promise<CampaignRow | null> {
  if (!(await store.campaign(id))) throw new ApiError(404, 'NOT_FOUND', `no campaign ${id}`);
  const t = TRANSITIONS[action];
  let refused: CampaignState | null = null;
  let rootChanged = false;
  let what = '';
  let from: CampaignState | null = null;
  const now = Date.now();
  const row = await store.updateCampaign(
    id,
    (r, context) => {
      refused = null;
      rootChanged = false;
      from = r.state;
      what = `${r.state} -> ${t.to}`;
      if (!t.from.includes(r.state)) {
        refused = r.state;
        return null;
      }
      if (root && (context.root.trust !== root.trust || context.root.list !== root.list)) {
        rootChanged = true;
        return null;
      }
      // A resumed campaign counts its devices' silence from now (SPEC.md §12.9 "Rollouts that finish").
      if (action !== 'resume') return { state: t.to };
      // Resuming a halted campaign is the operator's override of the failures seen so far.
      // The caller verified the manifest again before a resume (§12.13): a halt by the root of trust ends here too.
      if (r.state !== 'halted') return { state: t.to, wave_started: now };
      const failures = tally(context.progress!.statuses).failures;
      what += `; ${failures} failure(s) so far overridden`;
      return { state: t.to, halt_baseline: failures, halt_code: null, wave_started: now };
    },
    { progress: action === 'resume' },
  );
  if (rootChanged) return null;
  if (!row) throw new ApiError(409, 'CONFLICT', `cannot ${action} a campaign that is ${refused ?? 'gone'}`);
  if (from === 'running' && action !== 'resume') metrics?.campaignHalted('operator');
  await store.recordEvent({ campaign: id, at: now, action, actor, detail: what });
  return row;
}
