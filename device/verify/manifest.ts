/**
 * Manifest verification, the checklist of SPEC.md §Verification (V1–V9). Starts from failure; the
 * result becomes "ok" in exactly one place, after every step passed.
 */
import { bytesEqual } from '../../shared/bytes.js';
import { type Failure, fail, ok, type Result } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { WIRE_LIMITS as LIMITS } from '../../shared/limits.js';
import { type Manifest, parseManifest } from '../../shared/manifest.js';
import { type DeviceCrypto, isPlatformError } from '../crypto/platform.js';
import { countSigners } from './signers.js';
import { isIssued, loadTrust, type VerifiedRevocations, type VerifiedTrust, verifyRevocations } from './trust.js';

export type DeviceState = {
  /** The device class this device is (V8). */
  readonly deviceClass: string;
  /** The stored security counter: manifests below it are rollbacks (V9). */
  readonly counter: number;
  /** The stored revocation list, if any (V3). */
  readonly revocations?: Uint8Array;
  /** Highest revocation list version seen; an older list is refused (V3). */
  readonly revocationVersion?: number;
  /** Highest trust bundle version seen; an older bundle is refused (V2). */
  readonly trustVersion?: number;
};

export type VerifiedManifest = {
  readonly manifest: Manifest;
  /** SHA-256 of the manifest payload: what revocation lists name, and what the device records. */
  readonly manifestDigest: Uint8Array;
  /** Key ids of the release keys whose signatures counted. */
  readonly signers: readonly Uint8Array[];
  readonly trustVersion: number;
  readonly revocationVersion: number;
};

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 && n <= LIMITS.maxCounter;
}

/** V1. Each failure is spelled out so that the device build drops its detail (SPEC.md §9, §10). */
function checkState(state: DeviceState): Failure | null {
  if (state === null || typeof state !== 'object') return fail('INVALID_STATE', 'state is not an object');
  if (typeof state.deviceClass !== 'string' || state.deviceClass.length === 0) return fail('INVALID_STATE', 'state.deviceClass');
  if (!isCount(state.counter)) return fail('INVALID_STATE', 'state.counter');
  if (state.revocations !== undefined && !(state.revocations instanceof Uint8Array)) return fail('INVALID_STATE', 'state.revocations');
  if (state.revocationVersion !== undefined && !isCount(state.revocationVersion)) return fail('INVALID_STATE', 'state.revocationVersion');
  if (state.trustVersion !== undefined && !isCount(state.trustVersion)) return fail('INVALID_STATE', 'state.trustVersion');
  return null;
}

/** Verify a signed manifest for this device. Never throws: bad input of any kind yields a code. */
export function verifyManifest(c: DeviceCrypto, envelopeBytes: Uint8Array, trustBytes: Uint8Array, state: DeviceState): Result<VerifiedManifest> {
  try {
    // V2 (first half): the trust bundle carries its own root threshold.
    const loaded = loadTrust(c, trustBytes);
    if (!loaded.ok) return loaded;
    return verifyManifestSteps(c, envelopeBytes, loaded.trust, state);
  } catch (e) {
    if (isPlatformError(e)) throw e; // a broken hook is the integrator's bug, not bad input
    return fail('MALFORMED', 'verifier failure');
  }
}

/**
 * The same checks with a trust bundle loaded once (boot agents and servers that verify many
 * manifests against one bundle). `trust` must come from loadTrust / verifyTrustUpdate.
 */
export function verifyManifestWithTrust(c: DeviceCrypto, envelopeBytes: Uint8Array, trust: VerifiedTrust, state: DeviceState): Result<VerifiedManifest> {
  try {
    if (!isIssued(trust)) return fail('INVALID_ARGUMENT', 'trust must come from loadTrust or verifyTrustUpdate');
    return verifyManifestSteps(c, envelopeBytes, trust, state);
  } catch (e) {
    if (isPlatformError(e)) throw e;
    // Unreachable by design (every step returns codes); kept so that "never throws" holds even for
    // an engine-level failure such as running out of memory in a small heap.
    return fail('MALFORMED', 'verifier failure');
  }
}

function verifyManifestSteps(c: DeviceCrypto, envelopeBytes: Uint8Array, trust: VerifiedTrust, state: DeviceState): Result<VerifiedManifest> {
  // V1: the caller's state is well formed.
  const bad = checkState(state);
  if (bad !== null) return bad;
  if (!(envelopeBytes instanceof Uint8Array)) return fail('WRONG_TYPE', 'the envelope must be bytes');

  // V2 (second half): the trust bundle is not older than the device has seen.
  if (state.trustVersion !== undefined && trust.bundle.version < state.trustVersion) {
    return fail('TRUST_ROLLBACK', `trust version ${trust.bundle.version} < ${state.trustVersion}`);
  }

  // V3: the revocation list, if any, is signed by a root threshold and not older than seen.
  let revocations: VerifiedRevocations | null = null;
  if (state.revocations !== undefined) {
    const r = verifyRevocations(c, state.revocations, trust, state.revocationVersion ?? 0);
    if (!r.ok) return r;
    revocations = r.revocations;
  }
  const revokedKids = revocations ? revocations.list.keyIds : [];

  // V4: the envelope is a well-formed fwseal COSE_Sign.
  const env = parseEnvelope(envelopeBytes);
  if (!env.ok) return env;

  // V5: the payload is a well-formed manifest.
  const parsed = parseManifest(env.envelope.payload);
  if (!parsed.ok) return parsed;
  const manifest = parsed.value;

  // V6: a threshold of distinct, non-revoked release keys signed it.
  const count = countSigners(c, env.envelope, trust.release, revokedKids);
  if (count.valid < trust.release.threshold) {
    if (count.revokedValid > 0 && count.valid + count.revokedValid >= trust.release.threshold) {
      return fail('REVOKED_KEY', `${count.valid} of ${trust.release.threshold} signatures once revoked keys are excluded`);
    }
    return fail('THRESHOLD_NOT_MET', `${count.valid} of ${trust.release.threshold} release signatures`);
  }

  // V7: this exact manifest has not been revoked.
  const manifestDigest = c.sha256(env.envelope.payload);
  if (revocations?.list.manifests.some((d) => bytesEqual(d, manifestDigest))) {
    return fail('REVOKED_MANIFEST', 'the revocation list names this manifest');
  }

  // V8: it is for this kind of device.
  if (manifest.deviceClass !== state.deviceClass) {
    return fail('WRONG_DEVICE_CLASS', `manifest for ${manifest.deviceClass}`);
  }

  // V9: anti-rollback: security counter >= the stored counter.
  if (manifest.securityCounter < state.counter) {
    return fail('ROLLBACK', `security counter ${manifest.securityCounter} < stored ${state.counter}`);
  }

  return ok({
    manifest,
    manifestDigest,
    signers: count.signers,
    trustVersion: trust.bundle.version,
    revocationVersion: revocations ? revocations.list.version : (state.revocationVersion ?? 0),
  });
}
