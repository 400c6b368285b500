/**
 * Re-signing the releases a revocation stranded (SPEC.md §11.4 "Policy after a revocation"): the
 * same manifest payload gets signatures by release keys that remain, added with host/sign.ts under
 * the role checks of `fwseal sign --trust` (SPEC.md §14 H1, H2), and must then pass the one verifier
 * under the fleet's trust bundle and the new list before anything is published.
 */
import { createHash } from 'node:crypto';
import { bytesEqual, toHex } from '../../shared/bytes.js';
import { type CodeName } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { type Manifest, parseManifest } from '../../shared/manifest.js';
import { FwsealError } from '../errors.js';
import { type PublicKeyInfo, type SigningKey } from '../keys.js';
import { checkSignerRole, signEnvelope } from '../sign.js';
import { verifyFiles } from '../verify.js';

/** A --resign file as read: its path, bytes and the SHA-256 of the envelope (what the server names a campaign's manifest by). */
export type StrandedRelease = { readonly path: string; readonly envelope: Uint8Array; readonly envelopeSha256: string };

/** A release re-signed and verified under the new list. */
export type ResignedRelease = StrandedRelease & {
  readonly resigned: Uint8Array;
  readonly manifest: Manifest;
  /** Names of the keys whose signature was added (a valid one already there is kept, H1). */
  readonly added: readonly string[];
};

export function strandedRelease(path: string, envelope: Uint8Array): StrandedRelease {
  return { path, envelope, envelopeSha256: createHash('sha256').update(envelope).digest('hex') };
}

/**
 * H2 for every --release-key on every --resign file, with the public halves (before any passphrase):
 * a release key of --trust (else KEY_NOT_IN_TRUST, exit 2), and not one the new list revokes (its
 * signature would not count: USAGE). The role keys, for H1's duplicate handling.
 */
export function checkReleaseSigners(
  releases: readonly StrandedRelease[],
  signers: readonly PublicKeyInfo[],
  trustBytes: Uint8Array,
  revoked: readonly Uint8Array[],
): readonly Uint8Array[] {
  let knownKeys: readonly Uint8Array[] = [];
  for (const s of signers) {
    if (revoked.some((kid) => bytesEqual(kid, s.keyId)))
      throw new FwsealError('USAGE', `--release-key ${s.name} (${toHex(s.keyId)}) is revoked by the new list: re-sign with the remaining release keys`);
    for (const r of releases) knownKeys = checkSignerRole(r.envelope, s, trustBytes).knownKeys;
  }
  return knownKeys;
}

/**
 * Add the signatures, then verify: signatures, threshold and revocations under `trustBytes` and
 * `list` (device class and counter are each device's business, as for a campaign on the server).
 * A release that still fails is the verifier's code (exit 1): the drill stops before publishing.
 */
export function resignRelease(
  r: StrandedRelease,
  keys: readonly SigningKey[],
  knownKeys: readonly Uint8Array[],
  trustBytes: Uint8Array,
  list: Uint8Array,
): ResignedRelease {
  let envelope = r.envelope;
  const added: string[] = [];
  for (const key of keys) {
    const signed = signEnvelope(envelope, key, { knownKeys });
    if (signed.added) added.push(key.name);
    envelope = signed.envelope;
  }
  const env = parseEnvelope(envelope);
  const parsed = env.ok ? parseManifest(env.envelope.payload) : env;
  if (!parsed.ok) throw FwsealError.from(parsed, r.path);
  const state = { deviceClass: parsed.value.deviceClass, counter: 0, revocations: list };
  const checked = verifyFiles({ envelope, trust: trustBytes, state }).result;
  if (!checked.ok) {
    const why = `${r.path} does not verify under the new list even re-signed (${checked.detail ?? checked.error}); add release keys with --release-key`;
    throw new FwsealError(checked.error as Exclude<CodeName, 'OK'>, why);
  }
  return { ...r, resigned: envelope, manifest: parsed.value, added };
}
