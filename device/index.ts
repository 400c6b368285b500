/**
 * fwseal device verifier: the one verifier, used by devices, boot agents and the host CLI alike.
 * Pure functions over bytes; imports shared/ and @noble/* only (enforced by the build).
 */
export { verifyManifest, verifyManifestWithTrust, type DeviceState, type VerifiedManifest } from './verify/manifest.js';
export { loadTrust, verifyTrustUpdate, verifyRevocations, type VerifiedTrust, type VerifiedRevocations } from './verify/trust.js';
export { imageVerifier, verifyChunk, verifyDigestPage, type ImageVerifier, type DigestPage } from './verify/image.js';
export { verifyEd25519, isAcceptablePublicKey, isTrustableRoleKey } from './crypto/ed25519.js';
export { keyId, sha256 } from './crypto/hash.js';
export { CODES, codeName } from '../shared/codes.js';
export { parseEnvelope } from '../shared/cose.js';
export { parseManifest, type Manifest } from '../shared/manifest.js';
export { parseTrustBundle, parseRevocationList } from '../shared/trust.js';
