/**
 * Trust bundle and revocation list checks (SPEC.md §6.1 steps T1–T7, §6.2 steps R1–R5).
 *
 * Revocation is monotonic (SPEC.md §6.2, §6.7): a key id revoked by the list the device stores never
 * counts toward a root threshold again (R3, T6, T7), and a new list must keep revoking it for as
 * long as the trust bundle lists the key (R5). So a holder of revoked root keys can do nothing a
 * holder of unknown keys could not.
 */
import { bytesEqual } from '../../shared/bytes.js';
import { fail, ok, type Result } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { parseRevocationList, parseTrustBundle, type RevocationList, type Role, type TrustBundle } from '../../shared/trust.js';
import { type DeviceCrypto } from '../crypto/platform.js';
import { countSigners, hasKid, type RoleKeys } from './signers.js';

export type VerifiedTrust = {
  readonly bundle: TrustBundle;
  readonly root: RoleKeys;
  readonly release: RoleKeys;
  /** SHA-256 of the trust payload: identifies this exact bundle. */
  readonly digest: Uint8Array;
};

export type VerifiedRevocations = {
  readonly list: RevocationList;
  /** SHA-256 of the list's payload: identifies this exact list. */
  readonly digest: Uint8Array;
};

/**
 * The trust bundles and revocation lists this module verified (SPEC.md §6.6). Every entry point
 * that takes one refuses any other object (INVALID_ARGUMENT): a caller cannot hand the verifier a
 * look-alike, e.g. one rebuilt from JSON or with its threshold changed (the objects are frozen).
 */
const issued = new WeakSet<object>();

function issue<T extends object>(value: T): T {
  issued.add(value);
  return value;
}

export function isIssued(value: unknown): boolean {
  return typeof value === 'object' && value !== null && issued.has(value);
}

function badTrust(): Result<never> {
  return fail('INVALID_ARGUMENT', 'trust must come from loadTrust or verifyTrustUpdate');
}

function roleKeys(c: DeviceCrypto, role: Role): RoleKeys | null {
  const kids: Uint8Array[] = [];
  for (const key of role.keys) {
    if (!c.trustableKey(key)) return null;
    kids.push(c.keyId(key));
  }
  return Object.freeze({ threshold: role.threshold, keys: role.keys, kids: Object.freeze(kids) });
}

/** The key ids a stored list revokes (none when there is no stored list). */
function storedKids(stored: VerifiedRevocations | undefined): readonly Uint8Array[] {
  return stored === undefined ? [] : stored.list.keyIds;
}

/**
 * Load a trust bundle that is signed by a threshold of its own root keys (the provisioning check).
 * T1 envelope, T2 payload, T3 keys acceptable (canonical, not small order), T4 own root threshold.
 */
export function loadTrust(c: DeviceCrypto, bytes: Uint8Array): Result<{ trust: VerifiedTrust }> {
  if (!(bytes instanceof Uint8Array)) return fail('WRONG_TYPE', 'a trust bundle must be bytes');
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
  return ok({ trust: issue(Object.freeze({ bundle, root, release, digest: c.sha256(env.envelope.payload) })) });
}

/**
 * Accept a new trust bundle in place of the current one (rotation, TUF-style). `stored` is the
 * revocation list the device keeps, verified against `current`.
 * T5 version is exactly current + 1 (the same version is accepted only for the identical bundle);
 * T6 a threshold of the *current* root keys not revoked by `stored` signed it;
 * T7 a threshold of its *own* root keys not revoked by `stored` signed it (T4 without the keys the
 * device has seen revoked: a rotation can never hand the root back to them).
 */
export function verifyTrustUpdate(
  c: DeviceCrypto,
  candidate: Uint8Array,
  current: VerifiedTrust,
  stored?: VerifiedRevocations,
): Result<{ trust: VerifiedTrust }> {
  if (!isIssued(current)) return badTrust();
  if (stored !== undefined && !isIssued(stored)) return fail('INVALID_ARGUMENT', 'the stored list must come from verifyRevocations');
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
  const revoked = storedKids(stored);
  const count = countSigners(c, env.envelope, current.root, revoked); // T6
  if (count.valid < current.root.threshold) {
    return fail('ROTATION_NOT_AUTHORIZED', `${count.valid} of ${current.root.threshold} signatures by the current, unrevoked root keys`);
  }
  if (next.root.kids.some((kid) => hasKid(revoked, kid))) {
    // T7 (T4 already holds without revocations)
    const own = countSigners(c, env.envelope, next.root, revoked);
    if (own.valid < next.root.threshold) {
      return fail('TRUST_THRESHOLD_NOT_MET', `${own.valid} of ${next.root.threshold} signatures by its own unrevoked root keys`);
    }
  }
  return loaded;
}

/**
 * R1 envelope, R2 payload, R3 signed by a root threshold of `trust`, not counting root keys revoked
 * by this list or by the stored one, R4 version >= the highest version the device has seen (equal
 * only for the identical list), R5 it still revokes every key id of the stored list that `trust`
 * lists (revocation is monotonic until a rotation removes the key).
 */
export function verifyRevocations(
  c: DeviceCrypto,
  bytes: Uint8Array,
  trust: VerifiedTrust,
  minVersion = 0,
  stored?: VerifiedRevocations,
): Result<{ revocations: VerifiedRevocations }> {
  if (!isIssued(trust)) return badTrust();
  if (stored !== undefined && !isIssued(stored)) return fail('INVALID_ARGUMENT', 'the stored list must come from verifyRevocations');
  // A corrupted stored version must not switch the rollback check off.
  if (typeof minVersion !== 'number' || !Number.isSafeInteger(minVersion) || minVersion < 0) return fail('INVALID_STATE', 'minVersion');
  if (!(bytes instanceof Uint8Array)) return fail('WRONG_TYPE', 'a revocation list must be bytes');
  const env = parseEnvelope(bytes); // R1
  if (!env.ok) return env;
  const parsed = parseRevocationList(env.envelope.payload); // R2
  if (!parsed.ok) return parsed;
  const list = parsed.value;
  const before = storedKids(stored);
  const count = countSigners(c, env.envelope, trust.root, before.length === 0 ? list.keyIds : [...list.keyIds, ...before]); // R3
  if (count.valid < trust.root.threshold) {
    return fail('REVOCATION_THRESHOLD_NOT_MET', `${count.valid} of ${trust.root.threshold} unrevoked root signatures`);
  }
  const digest = c.sha256(env.envelope.payload);
  const floor = stored === undefined ? minVersion : Math.max(minVersion, stored.list.version);
  if (list.version < floor) return fail('REVOCATION_ROLLBACK', `revocation list version ${list.version} < ${floor}`); // R4
  if (stored !== undefined && list.version === stored.list.version && !bytesEqual(digest, stored.digest)) {
    return fail('REVOCATION_ROLLBACK', `a different list with the stored version ${list.version}`);
  }
  for (const kid of before) {
    // R5
    const listed = hasKid(trust.root.kids, kid) || hasKid(trust.release.kids, kid);
    if (listed && !hasKid(list.keyIds, kid)) return fail('REVOCATION_ROLLBACK', 'the list no longer revokes a key the device has seen revoked');
  }
  return ok({ revocations: issue(Object.freeze({ list, digest })) });
}
