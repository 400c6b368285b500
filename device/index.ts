/**
 * fwseal device verifier: the one verifier, used by devices, boot agents and the host CLI alike.
 * Pure functions over bytes; imports only shared/ (the build allows @noble/* too, and nothing else).
 * The functions below use the pure-JS primitives; `createVerifier(platform)` binds others.
 */
import { createVerifier } from './verifier.js';

const defaults = createVerifier();
export const {
  verifyManifest, verifyManifestWithTrust, loadTrust, verifyTrustUpdate, verifyRevocations,
  imageVerifier, verifyChunk, verifyDigestPage, verifyEd25519, keyId, sha256, sha512,
} = defaults;
export { createVerifier, type Verifier } from './verifier.js';
export { type Platform } from './crypto/platform.js';
export { type DeviceState, type VerifiedManifest } from './verify/manifest.js';
export { type VerifiedTrust, type VerifiedRevocations } from './verify/trust.js';
export { type ImageVerifier, type DigestPage } from './verify/image.js';
export { isAcceptablePublicKey, isTrustableRoleKey } from './crypto/ed25519.js';
export { CODES, codeName } from '../shared/codes.js';
export { parseEnvelope } from '../shared/cose.js';
export { parseManifest, type Manifest } from '../shared/manifest.js';
export { parseTrustBundle, parseRevocationList } from '../shared/trust.js';
