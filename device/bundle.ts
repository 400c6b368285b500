/**
 * Entry of the one-file device bundle: dist/device/fwseal-verifier.js defines the global
 * `fwsealVerifier`; dist/device/fwseal-verifier.mjs is the same as an ES module (SPEC.md §10).
 */
export {
  verifyManifest, verifyManifestWithTrust, loadTrust, verifyTrustUpdate, verifyRevocations, imageVerifier, verifyChunk,
  verifyDigestPage, verifyEd25519, keyId, sha256, sha512, createVerifier, CODES, codeName,
} from './index.js';
export const version = '0.1.0';
