/**
 * The verifier API, bound to one platform (SPEC.md §6). `createVerifier()` uses the pure-JS
 * primitives; `createVerifier({ sha256, sha512 })` plugs in native or hardware hashing.
 */
import { type Result } from '../shared/codes.js';
import { type Manifest } from '../shared/manifest.js';
import { type DeviceCrypto, type Platform, deviceCrypto } from './crypto/platform.js';
import { type DigestPage, type ImageVerifier, imageVerifier, verifyChunk, verifyDigestPage } from './verify/image.js';
import { type DeviceState, type VerifiedManifest, verifyManifest, verifyManifestWithTrust } from './verify/manifest.js';
import { type VerifiedRevocations, type VerifiedTrust, loadTrust, verifyRevocations, verifyTrustUpdate } from './verify/trust.js';

export type Verifier = {
  /** V1–V9: a signed manifest for this device. Never throws. */
  verifyManifest(envelope: Uint8Array, trust: Uint8Array, state: DeviceState): Result<VerifiedManifest>;
  /** V1, V3–V9 against a trust bundle loaded once. */
  verifyManifestWithTrust(envelope: Uint8Array, trust: VerifiedTrust, state: DeviceState): Result<VerifiedManifest>;
  /** T1–T4: a trust bundle carrying its own root threshold. */
  loadTrust(trust: Uint8Array): Result<{ trust: VerifiedTrust }>;
  /** T1–T6: a new trust bundle replacing `current`. */
  verifyTrustUpdate(candidate: Uint8Array, current: VerifiedTrust, revokedKeyIds?: readonly Uint8Array[]): Result<{ trust: VerifiedTrust }>;
  /** R1–R4: a revocation list. */
  verifyRevocations(list: Uint8Array, trust: VerifiedTrust, minVersion?: number): Result<{ revocations: VerifiedRevocations }>;
  /** I1–I5: the image streamed in order. */
  imageVerifier(manifest: Manifest): ImageVerifier;
  /** I6: one chunk, any order, with its inclusion proof. */
  verifyChunk(manifest: Manifest, index: number, chunk: Uint8Array, proof: Uint8Array): Result;
  /** I2: a digest page proven against the root. */
  verifyDigestPage(manifest: Manifest, page: number, leaves: Uint8Array, proof: Uint8Array): Result<{ digestPage: DigestPage }>;
  verifyEd25519(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
  keyId(publicKey: Uint8Array): Uint8Array;
  sha256(data: Uint8Array): Uint8Array;
  sha512(data: Uint8Array): Uint8Array;
};

export function createVerifier(platform?: Platform): Verifier {
  const c: DeviceCrypto = deviceCrypto(platform);
  return Object.freeze({
    verifyManifest: (envelope: Uint8Array, trust: Uint8Array, state: DeviceState) => verifyManifest(c, envelope, trust, state),
    verifyManifestWithTrust: (envelope: Uint8Array, trust: VerifiedTrust, state: DeviceState) => verifyManifestWithTrust(c, envelope, trust, state),
    loadTrust: (trust: Uint8Array) => loadTrust(c, trust),
    verifyTrustUpdate: (candidate: Uint8Array, current: VerifiedTrust, revoked: readonly Uint8Array[] = []) => verifyTrustUpdate(c, candidate, current, revoked),
    verifyRevocations: (list: Uint8Array, trust: VerifiedTrust, minVersion = 0) => verifyRevocations(c, list, trust, minVersion),
    imageVerifier: (manifest: Manifest) => imageVerifier(c, manifest),
    verifyChunk: (manifest: Manifest, index: number, chunk: Uint8Array, proof: Uint8Array) => verifyChunk(c, manifest, index, chunk, proof),
    verifyDigestPage: (manifest: Manifest, page: number, leaves: Uint8Array, proof: Uint8Array) => verifyDigestPage(c, manifest, page, leaves, proof),
    verifyEd25519: c.verify,
    keyId: c.keyId,
    sha256: c.sha256,
    sha512: c.sha512,
  });
}
