/**
 * fwseal device verifier: the one verifier, used by devices, boot agents and the host CLI alike.
 * Pure functions over bytes; imports only shared/ (the build allows @noble/* too, and nothing else).
 * The functions below use the pure-JS primitives; `createVerifier(platform)` binds others.
 */
import { createVerifier } from './verifier.js';

const defaults = createVerifier();
export const {
  verifyManifest,
  verifyManifestWithTrust,
  loadTrust,
  verifyTrustUpdate,
  verifyRevocations,
  verifyLogProof,
  imageVerifier,
  verifyChunk,
  verifyDigestPage,
  verifyEd25519,
  keyId,
  sha256,
  sha512,
} = defaults;
export { CODES, codeName } from '../shared/codes.js';
export { parseEnvelope } from '../shared/cose.js';
export { type Manifest, parseManifest } from '../shared/manifest.js';
export { parseRevocationList, parseTrustBundle } from '../shared/trust.js';
export { isAcceptablePublicKey, isTrustableRoleKey } from './crypto/ed25519.js';
export type { Platform } from './crypto/platform.js';
export { createVerifier, type Verifier } from './verifier.js';
export type { DigestPage, ImageVerifier } from './verify/image.js';
export type { LogCheckpoint, LogVerdict } from './verify/log.js';
export type { DeviceState, VerifiedManifest } from './verify/manifest.js';
export type { VerifiedRevocations, VerifiedTrust } from './verify/trust.js';
