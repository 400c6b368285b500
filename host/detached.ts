/**
 * Detached signatures for offline ceremonies (SPEC.md §15.4): one COSE_Signature in a small file
 * that names the payload it covers, so that a key holder on an air-gapped machine can sign a copy
 * and carry back only the signature, and `attach` can refuse one made over another payload.
 *
 *   DetachedSignature = {
 *     0: 100,                 ; marker: an fwseal detached signature (not a payload kind, §4)
 *     1: uint,                ; payload kind of the object signed (1 manifest, 2 trust bundle, 3 revocation list)
 *     2: bstr .size 32,       ; SHA-256 of the payload
 *     3: COSE_Signature       ; [h'A10127', {4: kid}, bstr .size 64] exactly as in the envelope (§3)
 *   }
 */
import { sha256 } from '../device/index.js';
import { bytesEqual } from '../shared/bytes.js';
import { decodeCbor, encodeCbor } from '../shared/cbor.js';
import { type CoseSignature, HEADER_KID, SIGNER_PROTECTED } from '../shared/cose.js';
import { asArray, asBytes, asMap, asUint, FieldReader, SchemaError, schemaFail } from '../shared/fields.js';
import { DIGEST_BYTES, KEY_ID_BYTES, LIMITS, SIGNATURE_BYTES } from '../shared/limits.js';
import { KIND } from '../shared/payload.js';
import { FwsealError } from './errors.js';
import { type ObjectKind } from './inspect.js';

export const DETACHED_MARKER = 100;
/** The first bytes of every detached signature file: map(4), 0: 100 (for file recognition, §14 H8). */
export const DETACHED_HEAD = Uint8Array.of(0xa4, 0x00, 0x18, DETACHED_MARKER);

const KIND_NUMBER: Readonly<Record<ObjectKind, number>> = Object.freeze({
  manifest: KIND.manifest,
  'trust-bundle': KIND.trust,
  'revocation-list': KIND.revocations,
});

export type DetachedSignature = {
  readonly kind: ObjectKind;
  readonly payloadDigest: Uint8Array;
  readonly signature: CoseSignature;
};

export function encodeDetached(d: DetachedSignature): Uint8Array {
  return encodeCbor(
    new Map<number, unknown>([
      [0, DETACHED_MARKER],
      [1, KIND_NUMBER[d.kind]],
      [2, d.payloadDigest],
      [3, [SIGNER_PROTECTED, new Map([[HEADER_KID, d.signature.kid]]), d.signature.signature]],
    ]) as never,
  );
}

/** Strict decoding (deterministic CBOR, exact fields and sizes); `what` names the file in errors. */
export function decodeDetached(bytes: Uint8Array, what: string): DetachedSignature {
  const decoded = decodeCbor(bytes, { maxBytes: LIMITS.maxDetachedSignatureBytes, maxDepth: 4, maxContainerEntries: 4, maxTextBytes: 0, maxItems: 16 });
  if (!decoded.ok) throw new FwsealError(decoded.error as 'MALFORMED', `${what}: not an fwseal detached signature (${decoded.detail ?? decoded.error})`);
  try {
    const f = new FieldReader(asMap(decoded.value, 'detached signature'), 'detached signature');
    if (f.required(0, 'marker') !== DETACHED_MARKER) schemaFail('WRONG_KIND', 'not an fwseal detached signature');
    const kindNumber = asUint(f.required(1, 'kind'), 'kind', 1, 3);
    const kind = (Object.keys(KIND_NUMBER) as ObjectKind[]).find((k) => KIND_NUMBER[k] === kindNumber) as ObjectKind;
    const payloadDigest = asBytes(f.required(2, 'payload digest'), 'payload digest', DIGEST_BYTES);
    const sig = asArray(f.required(3, 'COSE_Signature'), 'COSE_Signature', 3);
    f.done();
    if (sig.length !== 3) schemaFail('MALFORMED', 'COSE_Signature is not a 3-element array');
    const [prot, unprot, value] = sig;
    if (!(prot instanceof Uint8Array) || !bytesEqual(prot, SIGNER_PROTECTED)) schemaFail('BAD_HEADER', 'signer protected header must be exactly {1: -8}');
    const h = new FieldReader(asMap(unprot, 'signer unprotected header'), 'signer unprotected header');
    const kid = asBytes(h.required(HEADER_KID, 'kid'), 'kid', KEY_ID_BYTES);
    h.done();
    const signature = asBytes(value, 'signature', SIGNATURE_BYTES);
    return Object.freeze({ kind, payloadDigest, signature: Object.freeze({ kid, signature }) });
  } catch (e) {
    if (e instanceof SchemaError) throw new FwsealError(e.name, `${what}: ${e.detail}`);
    throw e;
  }
}

/** The detached signature of `signature` over `payload` of `kind`. */
export function detachedFor(kind: ObjectKind, payload: Uint8Array, signature: CoseSignature): DetachedSignature {
  return Object.freeze({ kind, payloadDigest: sha256(payload), signature });
}

/** §15.4: a detached signature belongs to this object only when kind and payload digest both match. */
export function checkCovers(d: DetachedSignature, kind: ObjectKind, payload: Uint8Array, what: string): void {
  if (d.kind !== kind) throw new FwsealError('PAYLOAD_MISMATCH', `${what} signs a ${d.kind.replace('-', ' ')}, not a ${kind.replace('-', ' ')}`);
  if (!bytesEqual(d.payloadDigest, sha256(payload)))
    throw new FwsealError('PAYLOAD_MISMATCH', `${what} covers another payload than this ${kind.replace('-', ' ')}`);
}
