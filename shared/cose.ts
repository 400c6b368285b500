/**
 * fwseal's COSE_Sign profile (RFC 9052 §4.1, SPEC.md §Envelope).
 *
 *   COSE_Sign = #6.98([ h'', {}, payload: bstr, [* COSE_Signature] ])
 *   COSE_Signature = [ h'A10127' ({1: -8}), {4: kid}, signature: bstr .size 64 ]
 *
 * The body headers are empty: the payload says what it is (key 0, `kind`). Every signature carries
 * exactly alg EdDSA (-8) in its protected header and its key id in the unprotected header.
 * An envelope with no signature is an unsigned draft (what `pack` writes before `sign`); it decodes,
 * and never meets a threshold.
 */

import { bytesEqual, compareBytes, concatBytes } from './bytes.js';
import { CborTag, decodeCbor, encodeCbor } from './cbor.js';
import { fail, ok, type Result } from './codes.js';
import { asArray, asMap, FieldReader, SchemaError, schemaFail } from './fields.js';
import { KEY_ID_BYTES, WIRE_LIMITS as LIMITS, SIGNATURE_BYTES } from './limits.js';

export const COSE_SIGN_TAG = 98;
export const HEADER_ALG = 1;
export const HEADER_KID = 4;
export const ALG_EDDSA = -8;
/** The only accepted signer protected header: the deterministic encoding of {1: -8}. */
export const SIGNER_PROTECTED: Uint8Array = Uint8Array.of(0xa1, 0x01, 0x27); // {1: -8}, deterministic
const EMPTY = new Uint8Array(0);

export type CoseSignature = {
  readonly kid: Uint8Array;
  readonly signature: Uint8Array;
};

export type Envelope = {
  readonly payload: Uint8Array;
  readonly signatures: readonly CoseSignature[];
};

/** E1–E4 of SPEC.md: decode and check the envelope structure. Never throws. */
export function parseEnvelope(bytes: Uint8Array): Result<{ envelope: Envelope }> {
  // E1: size limit before anything else, then strict deterministic decoding.
  if (!(bytes instanceof Uint8Array)) return fail('WRONG_TYPE', 'envelope is not bytes');
  if (bytes.length > LIMITS.maxEnvelopeBytes) return fail('TOO_LARGE', `envelope of ${bytes.length} bytes`);
  const decoded = decodeCbor(bytes);
  if (!decoded.ok) return decoded;
  try {
    // E2: tag 98 around a 4-element array.
    const top = decoded.value;
    if (!(top instanceof CborTag) || top.tag !== COSE_SIGN_TAG) schemaFail('BAD_HEADER', 'not a COSE_Sign (tag 98)');
    const parts = asArray(top.value, 'COSE_Sign', 4);
    if (parts.length !== 4) schemaFail('MALFORMED', 'COSE_Sign is not a 4-element array');
    const [bodyProtected, bodyUnprotected, payload, signatures] = parts;
    // E3: empty body headers; payload is a byte string (not detached).
    if (!(bodyProtected instanceof Uint8Array) || bodyProtected.length !== 0) schemaFail('BAD_HEADER', 'body protected header must be empty');
    if (asMap(bodyUnprotected, 'body unprotected header').size !== 0) schemaFail('BAD_HEADER', 'body unprotected header must be empty');
    if (!(payload instanceof Uint8Array)) schemaFail('WRONG_TYPE', 'payload is not a byte string');
    if (payload.length > LIMITS.maxPayloadBytes) schemaFail('TOO_LARGE', `payload of ${payload.length} bytes`);
    // E4: each COSE_Signature has exactly {1:-8} protected, {4: kid} unprotected, 64-byte signature.
    const list = asArray(signatures, 'signatures', LIMITS.maxSignatures);
    const out: CoseSignature[] = [];
    for (const entry of list) {
      const sig = asArray(entry, 'COSE_Signature', 3);
      if (sig.length !== 3) schemaFail('MALFORMED', 'COSE_Signature is not a 3-element array');
      const [prot, unprot, value] = sig;
      if (!(prot instanceof Uint8Array)) schemaFail('WRONG_TYPE', 'signer protected header is not a byte string');
      if (!bytesEqual(prot, SIGNER_PROTECTED)) {
        // Distinguish "another algorithm" from "other header content" for the error code.
        const inner = decodeCbor(prot);
        const alg = inner.ok && inner.value instanceof Map ? inner.value.get(HEADER_ALG) : undefined;
        if (alg !== undefined && alg !== ALG_EDDSA && inner.ok && (inner.value as Map<unknown, unknown>).size === 1) {
          schemaFail('UNSUPPORTED_ALGORITHM', `alg ${String(alg)}`);
        }
        schemaFail('BAD_HEADER', 'signer protected header must be exactly {1: -8}');
      }
      const fields = new FieldReader(asMap(unprot, 'signer unprotected header'), 'signer unprotected header');
      const kid = fields.required(HEADER_KID, 'kid');
      fields.done();
      if (!(kid instanceof Uint8Array) || kid.length !== KEY_ID_BYTES) schemaFail('BAD_HEADER', `kid must be ${KEY_ID_BYTES} bytes`);
      if (!(value instanceof Uint8Array) || value.length !== SIGNATURE_BYTES) schemaFail('MALFORMED', 'signature must be 64 bytes');
      out.push(Object.freeze({ kid: kid.slice(), signature: value.slice() }));
    }
    return ok({ envelope: Object.freeze({ payload: payload.slice(), signatures: Object.freeze(out) }) });
  } catch (e) {
    if (e instanceof SchemaError) return fail(e.name, e.detail);
    return fail('MALFORMED', 'envelope');
  }
}

/** RFC 9052 §4.4 Sig_structure for one signer of a COSE_Sign: the exact bytes Ed25519 signs. */
export function sigStructure(payload: Uint8Array): Uint8Array {
  // ["Signature", h'', h'A10127', h'', payload] in deterministic CBOR, written directly so the
  // device needs no general encoder (test/cose.test.ts checks it against encodeCbor and cbor-x).
  const n = payload.length;
  const head =
    n < 24 ? [0x40 | n] : n < 0x100 ? [0x58, n] : n < 0x10000 ? [0x59, n >> 8, n & 0xff] : [0x5a, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  return concatBytes(SIG_STRUCTURE_PREFIX, Uint8Array.from(head), payload);
}

/** 0x85, "Signature", h'', h'A10127', h'' */
const SIG_STRUCTURE_PREFIX = Uint8Array.of(0x85, 0x69, 0x53, 0x69, 0x67, 0x6e, 0x61, 0x74, 0x75, 0x72, 0x65, 0x40, 0x43, 0xa1, 0x01, 0x27, 0x40);

/**
 * Encode an envelope. Signatures are sorted by key id so that the bytes do not depend on the order
 * in which signers worked (SPEC.md §Envelope); duplicate kids are a caller error.
 */
export function encodeEnvelope(envelope: Envelope): Uint8Array {
  const sorted = [...envelope.signatures].sort((a, b) => compareBytes(a.kid, b.kid));
  for (let i = 1; i < sorted.length; i++) {
    if (bytesEqual(sorted[i - 1].kid, sorted[i].kid)) throw new RangeError('two signatures with one key id');
  }
  return encodeCbor(
    new CborTag(COSE_SIGN_TAG, [EMPTY, new Map(), envelope.payload, sorted.map((s) => [SIGNER_PROTECTED, new Map([[HEADER_KID, s.kid]]), s.signature])]),
  );
}
