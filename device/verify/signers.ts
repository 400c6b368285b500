/**
 * Threshold counting (SPEC.md V6 / T4, T6, T7 / R3): the number of distinct, non-revoked key ids of a role
 * with a valid Ed25519 signature over the envelope's Sig_structure. A second signature by the same
 * key counts once; kids the role does not list are ignored; revoked kids never count.
 */
import { bytesEqual } from '../../shared/bytes.js';
import { type Envelope, sigStructure } from '../../shared/cose.js';
import { type DeviceCrypto } from '../crypto/platform.js';

export type RoleKeys = { readonly threshold: number; readonly keys: readonly Uint8Array[]; readonly kids: readonly Uint8Array[] };

export type SignerCount = {
  /** Distinct non-revoked role keys whose signature verified (stops counting at the threshold). */
  readonly valid: number;
  /** Distinct revoked role keys whose signature verified (only computed when `valid` fell short). */
  readonly revokedValid: number;
  readonly signers: readonly Uint8Array[];
};

function indexOfKid(kids: readonly Uint8Array[], kid: Uint8Array): number {
  for (let i = 0; i < kids.length; i++) if (bytesEqual(kids[i], kid)) return i;
  return -1;
}

/** Whether `kids` (a role's key ids, or the ids a list revokes) holds `kid`. */
export function hasKid(kids: readonly Uint8Array[], kid: Uint8Array): boolean {
  return indexOfKid(kids, kid) >= 0;
}

export function countSigners(c: DeviceCrypto, envelope: Envelope, role: RoleKeys, revoked: readonly Uint8Array[]): SignerCount {
  const message = sigStructure(envelope.payload);
  const counted: number[] = [];
  const revokedCandidates: number[] = [];
  const signers: Uint8Array[] = [];
  for (const sig of envelope.signatures) {
    if (counted.length >= role.threshold) break; // enough: no need to spend more verifications
    const i = indexOfKid(role.kids, sig.kid);
    if (i < 0 || counted.includes(i)) continue; // unknown kid, or this key already counted
    if (hasKid(revoked, sig.kid)) {
      if (!revokedCandidates.includes(i)) revokedCandidates.push(i);
      continue;
    }
    if (c.verify(sig.signature, message, role.keys[i])) {
      counted.push(i);
      signers.push(role.kids[i]);
    }
  }
  let revokedValid = 0;
  if (counted.length < role.threshold) {
    // Only to tell "revoked signer" from "too few signers" in the error code.
    const seen: number[] = [];
    for (const sig of envelope.signatures) {
      const i = indexOfKid(role.kids, sig.kid);
      if (!revokedCandidates.includes(i) || seen.includes(i)) continue;
      if (c.verify(sig.signature, message, role.keys[i])) {
        seen.push(i);
        revokedValid++;
      }
    }
  }
  return { valid: counted.length, revokedValid, signers };
}
