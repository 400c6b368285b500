/**
 * Trust bundle and revocation list checks (SPEC.md §Verification, steps T1–T6 and R1–R4).
 */
import { bytesEqual } from '../../shared/bytes.js';
import { type Result, fail, ok } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { type RevocationList, type Role, type TrustBundle, parseRevocationList, parseTrustBundle } from '../../shared/trust.js';
import { type DeviceCrypto } from '../crypto/platform.js';
import { type RoleKeys, countSigners } from './signers.js';

export type VerifiedTrust = {
  readonly bundle: TrustBundle;
  readonly root: RoleKeys;
  readonly release: RoleKeys;
  /** SHA-256 of the trust payload: identifies this exact bundle. */
  readonly digest: Uint8Array;
};

export type VerifiedRevocations = { readonly list: RevocationList };

function roleKeys(c: DeviceCrypto, role: Role): RoleKeys | null {
  const kids: Uint8Array[] = [];
  for (const key of role.keys) {
    if (!c.trustableKey(key)) return null;
    kids.push(c.keyId(key));
  }
  return Object.freeze({ threshold: role.threshold, keys: role.keys, kids: Object.freeze(kids) });
}

/**
 * Load a trust bundle that is signed by a threshold of its own root keys (the provisioning check).
 * T1 envelope, T2 payload, T3 keys acceptable (canonical, not small order), T4 own root threshold.
 */
export function loadTrust(c: DeviceCrypto, bytes: Uint8Array): Result<{ trust: VerifiedTrust }> {
  const env = parseEnvelope(bytes); // T1
  if (!env.ok) return env;
  const parsed = parseTrustBundle(env.envelope.payload); // T2
  if (!parsed.ok) return parsed;
  const bundle = parsed.value;
  const root = roleKeys(c, bundle.root); // T3
  const release = roleKeys(c, bundle.release);
  if (!root || !release) return fail('BAD_VALUE', 'trust bundle lists an unacceptable Ed25519 public key');
  const count = countSigners(c, env.envelope, root, []); // T4
  if (count.valid < root.threshold) {
    return fail('TRUST_THRESHOLD_NOT_MET', `${count.valid} of ${root.threshold} root signatures`);
  }
  return ok({ trust: Object.freeze({ bundle, root, release, digest: c.sha256(env.envelope.payload) }) });
}

/**
 * Accept a new trust bundle in place of the current one (rotation, TUF-style):
 * T5 version is exactly current + 1 (the same version is accepted only for the identical bundle);
 * T6 signed by a threshold of the *current* root keys not revoked, and (T4) of its own root keys.
 */
export function verifyTrustUpdate(c: DeviceCrypto, candidate: Uint8Array, current: VerifiedTrust, revoked: readonly Uint8Array[] = []): Result<{ trust: VerifiedTrust }> {
  const loaded = loadTrust(c, candidate);
  if (!loaded.ok) return loaded;
  const next = loaded.trust;
  const have = current.bundle.version;
  if (next.bundle.version < have) return fail('TRUST_ROLLBACK', `version ${next.bundle.version} < ${have}`);
  if (next.bundle.version === have) {
    return bytesEqual(next.digest, current.digest) ? loaded : fail('TRUST_ROLLBACK', `a different bundle with the current version ${have}`);
  }
  if (next.bundle.version !== have + 1) return fail('TRUST_VERSION_SKIP', `version ${next.bundle.version} after ${have}`);
  const env = parseEnvelope(candidate);
  if (!env.ok) return env;
  const count = countSigners(c, env.envelope, current.root, revoked);
  if (count.valid < current.root.threshold) {
    return fail('ROTATION_NOT_AUTHORIZED', `${count.valid} of ${current.root.threshold} signatures by the current root keys`);
  }
  return loaded;
}

/**
 * R1 envelope, R2 payload, R3 signed by a root threshold of `trust` (root keys this list or the
 * stored one revokes do not count), R4 version >= the highest version the device has seen.
 */
export function verifyRevocations(c: DeviceCrypto, bytes: Uint8Array, trust: VerifiedTrust, minVersion = 0): Result<{ revocations: VerifiedRevocations }> {
  // A corrupted stored version must not switch the rollback check off.
  if (typeof minVersion !== 'number' || !Number.isSafeInteger(minVersion) || minVersion < 0) return fail('INVALID_STATE', 'minVersion');
  const env = parseEnvelope(bytes); // R1
  if (!env.ok) return env;
  const parsed = parseRevocationList(env.envelope.payload); // R2
  if (!parsed.ok) return parsed;
  const count = countSigners(c, env.envelope, trust.root, parsed.value.keyIds); // R3
  if (count.valid < trust.root.threshold) {
    return fail('REVOCATION_THRESHOLD_NOT_MET', `${count.valid} of ${trust.root.threshold} root signatures`);
  }
  if (parsed.value.version < minVersion) { // R4
    return fail('REVOCATION_ROLLBACK', `revocation list version ${parsed.value.version} < ${minVersion}`);
  }
  return ok({ revocations: Object.freeze({ list: parsed.value }) });
}
