/**
 * `import ... from 'fwseal'`: the host API, what the CLI's keygen, trust, pack, sign, attach, verify,
 * revoke and inspect are built from (package.json `exports`). Re-exports only: the CLI and a library
 * caller run the same code. Nothing here loads an optional package (host/optional.ts), so the
 * library works after `npm install --omit=optional`. The verifier itself is `fwseal/device`.
 *
 * Failures throw FwsealError with a stable code (SPEC.md §9); verdicts (verifyFiles) are results,
 * never exceptions.
 */

export { CODES, type CodeName, codeName, type Result } from '../shared/codes.js';
export { encodeEnvelope, parseEnvelope } from '../shared/cose.js';
export { encodeManifest, type Manifest, parseManifest } from '../shared/manifest.js';
export { parseRevocationList, parseTrustBundle } from '../shared/trust.js';
export { type AttachResult, attachSignatures, type MergeResult, mergeCopies } from './attach.js';
export { decodeDetached, encodeDetached } from './detached.js';
export { digestPages, encodeDigestTable } from './digests.js';
export { exitStatusFor, FwsealError } from './errors.js';
export { envelopeKind, type Inspection, inspectBytes, type ObjectKind } from './inspect.js';
export { readFileLimited, writeFileAtomic } from './io.js';
export {
  generateKey,
  loadPublicKey,
  loadSigningKey,
  type PublicKeyInfo,
  type SigningKey,
  signingKeyFromSeed,
  writeKeyPair,
  writePublicKeyFile,
} from './keys.js';
export { DEFAULT_CHUNK_SIZE, hashImage, type Packed, type PackOptions, pack } from './pack.js';
export type { PassphraseSource } from './passphrase.js';
export { checkSignerRole, type SignOptions, type SignResult, signEnvelope, signPayload } from './sign.js';
export { buildRevocationList, buildTrustBundle, type RevokeOptions, type TrustInitOptions, type TrustInitResult, trustCompleteness } from './trust.js';
export { explainManifestSignatures, type IgnoredSignature, type VerifyFilesOptions, type VerifyFilesResult, verifyFiles } from './verify.js';
