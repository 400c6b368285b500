/**
 * The verifier API, bound to one platform (SPEC.md §6). `createVerifier()` uses the pure-JS
 * primitives; `createVerifier({ sha256, sha512 })` plugs in native or hardware hashing.
 */
import { fail, type Result } from '../shared/codes.js';
import { type Manifest } from '../shared/manifest.js';
import { type DeviceCrypto, deviceCrypto, isPlatformError, type Platform } from './crypto/platform.js';
import { type DigestPage, type ImageVerifier, imageVerifier, verifyChunk, verifyDigestPage } from './verify/image.js';
import { type LogCheckpoint, type LogVerdict, verifyLogProof } from './verify/log.js';
import { type DeviceState, type VerifiedManifest, verifyManifest, verifyManifestWithTrust } from './verify/manifest.js';
import { loadTrust, type VerifiedRevocations, type VerifiedTrust, verifyRevocations, verifyTrustUpdate } from './verify/trust.js';

export type Verifier = {
  /** V1–V9: a signed manifest for this device. Never throws. */
  verifyManifest(envelope: Uint8Array, trust: Uint8Array, state: DeviceState): Result<VerifiedManifest>;
  /** V1, V3–V9 against a trust bundle loaded once. */
  verifyManifestWithTrust(envelope: Uint8Array, trust: VerifiedTrust, state: DeviceState): Result<VerifiedManifest>;
  /** T1–T4: a trust bundle carrying its own root threshold. */
  loadTrust(trust: Uint8Array): Result<{ trust: VerifiedTrust }>;
  /** T1–T7: a new trust bundle replacing `current`; `stored` is the device's revocation list, verified against `current`. */
  verifyTrustUpdate(candidate: Uint8Array, current: VerifiedTrust, stored?: VerifiedRevocations): Result<{ trust: VerifiedTrust }>;
  /** R1–R5: a revocation list; `stored` is the list the device keeps (its revoked keys stay revoked). */
  verifyRevocations(list: Uint8Array, trust: VerifiedTrust, minVersion?: number, stored?: VerifiedRevocations): Result<{ revocations: VerifiedRevocations }>;
  /** L1–L7 (SPEC.md §16.8): the manifest envelope is in the log the trust bundle's policy names, consistent with `stored`. */
  verifyLogProof(envelope: Uint8Array, proof: Uint8Array, trust: VerifiedTrust, stored?: LogCheckpoint): Result<LogVerdict>;
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

/** A Result-returning entry point never throws for its arguments (SPEC.md §6.6); a broken platform hook still does. */
function guard<A extends unknown[], R>(f: (...args: A) => Result<R>): (...args: A) => Result<R> {
  return (...args) => {
    try {
      return f(...args);
    } catch (e) {
      if (isPlatformError(e)) throw e;
      return fail('INVALID_ARGUMENT', 'an argument is not what this function takes');
    }
  };
}

/** Byte-returning primitives take bytes only: anything else is the caller's bug (TypeError, §6.6). */
function bytesIn<R>(f: (data: Uint8Array) => R): (data: Uint8Array) => R {
  return (data) => {
    if (!(data instanceof Uint8Array)) throw new TypeError('expected a Uint8Array');
    return f(data);
  };
}

export function createVerifier(platform?: Platform): Verifier {
  return verifierFrom(deviceCrypto(platform));
}

/**
 * The verifier over given primitives. Not part of the device bundle's API (device/bundle.ts exports
 * createVerifier only): the host uses it to memoise Ed25519 outcomes for simulated fleets
 * (host/hash.ts), which a device must never be able to do.
 */
export function verifierFrom(c: DeviceCrypto): Verifier {
  return Object.freeze({
    verifyManifest: guard((envelope: Uint8Array, trust: Uint8Array, state: DeviceState) => verifyManifest(c, envelope, trust, state)),
    verifyManifestWithTrust: guard((envelope: Uint8Array, trust: VerifiedTrust, state: DeviceState) => verifyManifestWithTrust(c, envelope, trust, state)),
    loadTrust: guard((trust: Uint8Array) => loadTrust(c, trust)),
    verifyTrustUpdate: guard((candidate: Uint8Array, current: VerifiedTrust, stored?: VerifiedRevocations) => verifyTrustUpdate(c, candidate, current, stored)),
    verifyRevocations: guard((list: Uint8Array, trust: VerifiedTrust, minVersion = 0, stored?: VerifiedRevocations) =>
      verifyRevocations(c, list, trust, minVersion, stored),
    ),
    verifyLogProof: guard((envelope: Uint8Array, proof: Uint8Array, trust: VerifiedTrust, stored?: LogCheckpoint) =>
      verifyLogProof(c, envelope, proof, trust, stored),
    ),
    imageVerifier: (manifest: Manifest) => imageVerifier(c, manifest),
    verifyChunk: guard((manifest: Manifest, index: number, chunk: Uint8Array, proof: Uint8Array) => verifyChunk(c, manifest, index, chunk, proof)),
    verifyDigestPage: guard((manifest: Manifest, page: number, leaves: Uint8Array, proof: Uint8Array) => verifyDigestPage(c, manifest, page, leaves, proof)),
    verifyEd25519: c.verify,
    keyId: bytesIn(c.keyId),
    sha256: bytesIn(c.sha256),
    sha512: bytesIn(c.sha512),
  });
}
