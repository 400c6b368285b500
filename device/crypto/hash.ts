/**
 * Hash primitives of the device verifier. Pure JS defaults from @noble/hashes; one place to swap in
 * native or hardware hashing later (issue: platform hooks).
 */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { KEY_ID_BYTES } from '../../shared/limits.js';

export function sha256(data: Uint8Array): Uint8Array {
  return nobleSha256(data);
}

/** Key id (SPEC.md §Key ids): the first 16 bytes of SHA-256 over the 32-byte Ed25519 public key. */
export function keyId(publicKey: Uint8Array): Uint8Array {
  return sha256(publicKey).slice(0, KEY_ID_BYTES);
}
