/**
 * Authoring the root of trust: trust bundles (init and rotation) and revocation lists. Every output
 * is checked with the device verifier before it is written.
 */

import { keyId, loadTrust, sha256, type VerifiedTrust, verifyRevocations, verifyTrustUpdate } from '../device/index.js';
import { bytesEqual, fromHex } from '../shared/bytes.js';
import { parseEnvelope } from '../shared/cose.js';
import { KEY_ID_BYTES, LIMITS } from '../shared/limits.js';
import { encodeRevocationList, encodeTrustBundle, type LogPolicy, parseRevocationList } from '../shared/trust.js';
import { FwsealError } from './errors.js';
import { type PublicKeyInfo, type SigningKey } from './keys.js';
import { signPayload } from './sign.js';

export type TrustInitOptions = {
  readonly root: readonly PublicKeyInfo[];
  readonly rootThreshold: number;
  readonly release: readonly PublicKeyInfo[];
  readonly releaseThreshold: number;
  readonly signers: readonly SigningKey[];
  /** For a rotation: the bundle being replaced (its root keys may sign; version = its version + 1). */
  readonly previous?: VerifiedTrust;
  readonly version?: number;
  /** Require transparency log proofs (SPEC.md §4.2 format 2, §16): absent writes a format-1 bundle. */
  readonly log?: LogPolicy;
};

export type TrustInitResult = { readonly envelope: Uint8Array; readonly version: number; readonly complete: boolean; readonly missing: string[] };

function checkRoleInput(keys: readonly PublicKeyInfo[], threshold: number, role: string): void {
  if (keys.length === 0) throw new FwsealError('USAGE', `at least one --${role} key is needed`);
  if (keys.length > LIMITS.maxRoleKeys) throw new FwsealError('USAGE', `at most ${LIMITS.maxRoleKeys} --${role} keys`);
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > keys.length) {
    throw new FwsealError('USAGE', `--${role}-threshold must be between 1 and the number of --${role} keys (${keys.length})`);
  }
  for (let i = 0; i < keys.length; i++) {
    for (let j = 0; j < i; j++)
      if (bytesEqual(keys[i].publicKey, keys[j].publicKey)) throw new FwsealError('USAGE', `--${role} key ${keys[i].name} is listed twice`);
  }
}

export function buildTrustBundle(opts: TrustInitOptions): TrustInitResult {
  checkRoleInput(opts.root, opts.rootThreshold, 'root');
  checkRoleInput(opts.release, opts.releaseThreshold, 'release');
  const version = opts.version ?? (opts.previous ? opts.previous.bundle.version + 1 : 1);
  if (!Number.isSafeInteger(version) || version < 1) throw new FwsealError('USAGE', '--version must be a whole number >= 1');
  const allowed = [...opts.root.map((k) => k.keyId), ...(opts.previous ? opts.previous.root.kids : [])];
  for (const s of opts.signers) {
    if (!allowed.some((kid) => bytesEqual(kid, s.keyId)))
      throw new FwsealError('KEY_NOT_IN_TRUST', `--sign key ${s.name} is not a root key${opts.previous ? ' of the new or the previous bundle' : ''}`);
  }
  const payload = encodeTrustBundle({
    version,
    root: { threshold: opts.rootThreshold, keys: opts.root.map((k) => k.publicKey) },
    release: { threshold: opts.releaseThreshold, keys: opts.release.map((k) => k.publicKey) },
    ...(opts.log ? { log: opts.log } : {}),
  });
  const envelope = signPayload(payload, opts.signers);
  return { envelope, version, ...trustCompleteness(envelope, opts.previous) };
}

/** Which thresholds an envelope still misses (so partial signing across machines can be reported). */
export function trustCompleteness(envelope: Uint8Array, previous?: VerifiedTrust): { complete: boolean; missing: string[] } {
  const missing: string[] = [];
  const own = loadTrust(envelope);
  if (!own.ok) missing.push(`own root threshold (${own.error})`);
  else if (previous) {
    const rot = verifyTrustUpdate(envelope, previous);
    if (!rot.ok) missing.push(`previous root threshold (${rot.error})`);
  }
  return { complete: missing.length === 0, missing };
}

export type RevokeOptions = {
  readonly trust: VerifiedTrust;
  readonly version: number;
  readonly keys: readonly PublicKeyInfo[];
  readonly keyIdsHex: readonly string[];
  readonly manifestEnvelopes: readonly Uint8Array[];
  readonly signers: readonly SigningKey[];
  /** A list to carry forward: its entries stay revoked; the new version must be higher. */
  readonly previous?: Uint8Array;
};

export function buildRevocationList(opts: RevokeOptions): { envelope: Uint8Array; complete: boolean; error?: string } {
  if (!Number.isSafeInteger(opts.version) || opts.version < 1) throw new FwsealError('USAGE', '--version must be a whole number >= 1');
  const keyIds: Uint8Array[] = [];
  const manifests: Uint8Array[] = [];
  const addUnique = (list: Uint8Array[], item: Uint8Array) => {
    if (!list.some((x) => bytesEqual(x, item))) list.push(item);
  };
  if (opts.previous) {
    const prev = verifyRevocations(opts.previous, opts.trust);
    if (!prev.ok) throw FwsealError.from(prev, '--previous revocation list');
    if (opts.version <= prev.revocations.list.version)
      throw new FwsealError('USAGE', `--version must be above the previous list's ${prev.revocations.list.version}`);
    for (const k of prev.revocations.list.keyIds) addUnique(keyIds, k);
    for (const m of prev.revocations.list.manifests) addUnique(manifests, m);
  }
  for (const k of opts.keys) addUnique(keyIds, keyId(k.publicKey));
  for (const hex of opts.keyIdsHex) {
    const kid = fromHex(hex);
    if (!kid || kid.length !== KEY_ID_BYTES) throw new FwsealError('USAGE', `--kid must be ${KEY_ID_BYTES * 2} hex digits`);
    addUnique(keyIds, kid);
  }
  for (const m of opts.manifestEnvelopes) {
    const env = parseEnvelope(m);
    if (!env.ok) throw FwsealError.from(env, '--manifest');
    addUnique(manifests, sha256(env.envelope.payload));
  }
  if (keyIds.length === 0 && manifests.length === 0) throw new FwsealError('USAGE', 'nothing to revoke: give --key, --kid or --manifest');
  if (keyIds.length > LIMITS.maxRevokedKeys || manifests.length > LIMITS.maxRevokedManifests) throw new FwsealError('TOO_LARGE', 'too many revoked entries');
  for (const s of opts.signers) {
    if (!opts.trust.root.kids.some((kid) => bytesEqual(kid, s.keyId)))
      throw new FwsealError('KEY_NOT_IN_TRUST', `--sign key ${s.name} is not a root key of the trust bundle`);
  }
  const payload = encodeRevocationList({ version: opts.version, keyIds, manifests });
  const envelope = signPayload(payload, opts.signers);
  const check = verifyRevocations(envelope, opts.trust);
  if (!parseRevocationList(payload).ok) throw new FwsealError('INTERNAL', 'revocation list failed to re-parse');
  return check.ok ? { envelope, complete: true } : { envelope, complete: false, error: check.error };
}
