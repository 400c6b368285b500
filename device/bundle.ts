/** Entry of the one-file device bundle (dist/device/fwseal-verifier.js, global `fwsealVerifier`). */
export {
  verifyManifest, loadTrust, verifyTrustUpdate, verifyRevocations, imageVerifier, verifyChunk, verifyDigestPage,
  verifyEd25519, isAcceptablePublicKey, keyId, sha256, CODES, codeName, parseEnvelope, parseManifest,
  parseTrustBundle, parseRevocationList,
} from './index.js';
