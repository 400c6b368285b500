/**
 * Entry of the one-file device bundle: dist/device/fwseal-verifier.js defines the global
 * `fwsealVerifier`; dist/device/fwseal-verifier.mjs is the same as an ES module (SPEC.md §10).
 */
export {
  CODES,
  codeName,
  createVerifier,
  imageVerifier,
  keyId,
  loadTrust,
  sha256,
  sha512,
  verifyChunk,
  verifyDigestPage,
  verifyEd25519,
  verifyLogProof,
  verifyManifest,
  verifyManifestWithTrust,
  verifyRevocations,
  verifyTrustUpdate,
} from './index.js';
export const version = '0.1.0';
