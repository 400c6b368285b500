/**
 * The log proof attachment (SPEC.md §16.8): what a release carries next to its manifest so that a
 * device whose trust bundle has a log policy can check that the manifest envelope is in the
 * transparency log (RFC 9162 §2.1.3 inclusion) under a checkpoint signed by the log key and
 * cosigned by witnesses (C2SP tlog-checkpoint, tlog-cosignature), consistent with the checkpoint
 * the device stored (RFC 9162 §2.1.4). Not signed as a whole: every part is checked on its own.
 *
 *   log-proof = { 0: 5, 1: 1,
 *     2: uint,                 ; entry index of the manifest envelope in the log
 *     3: uint,                 ; checkpoint tree size (> index)
 *     4: bstr .size 32,        ; checkpoint root hash
 *     5: [* bstr .size 32],    ; inclusion proof PATH(index, D[size])
 *     6: bstr .size 64,        ; the log's Ed25519 note signature over the checkpoint text
 *     ? 7: [+ [bstr .size 4, uint, bstr .size 64]],   ; witness cosignatures: key ID, time, signature
 *     ? 8: uint,               ; consistency from this old size (the device's stored checkpoint size)
 *     ? 9: [* bstr .size 32] } ; consistency proof PROOF(old, D[size]); with 8
 */
import { type CborKey, type CborValue, type Encodable, encodeCbor } from './cbor.js';
import { type Result } from './codes.js';
import { asArray, asBytes, asUint, schemaFail } from './fields.js';
import { DIGEST_BYTES, WIRE_LIMITS as LIMITS, SIGNATURE_BYTES } from './limits.js';
import { KEY_FORMAT, KEY_KIND, KIND, parsePayload } from './payload.js';

/** The payload kind of a log proof (SPEC.md §4: kinds 1–4 are signed objects and the state record). */
export const LOG_PROOF_KIND = KIND.logProof;
export const LOG_PROOF_KEY = Object.freeze({ index: 2, size: 3, root: 4, inclusion: 5, signature: 6, cosignatures: 7, fromSize: 8, consistency: 9 });
/** A witness key ID: the first 4 bytes of SHA-256(name || 0x0A || 0x04 || key) (SPEC.md §16.3). */
export const WITNESS_KEY_ID_BYTES = 4;

export type Cosignature = { readonly keyId: Uint8Array; readonly time: number; readonly signature: Uint8Array };
export type LogProof = {
  readonly index: number;
  readonly size: number;
  readonly root: Uint8Array;
  readonly inclusion: readonly Uint8Array[];
  readonly signature: Uint8Array;
  readonly cosignatures: readonly Cosignature[];
  /** Consistency proof from the tree of `fromSize` leaves (the device's stored checkpoint). */
  readonly fromSize?: number;
  readonly consistency?: readonly Uint8Array[];
};

/** An array of 32-byte digests, its length bounded before anything is copied. */
function digests(v: CborValue | undefined, what: string, max: number): Uint8Array[] {
  return asArray(v, what, max).map((d) => asBytes(d, what, DIGEST_BYTES));
}

function readCosignature(v: CborValue): Cosignature {
  const a = asArray(v, 'cosignature', 3);
  if (a.length !== 3) schemaFail('BAD_VALUE', 'a cosignature is [key ID, time, signature]');
  return {
    keyId: asBytes(a[0], 'witness key ID', WITNESS_KEY_ID_BYTES),
    time: asUint(a[1], 'time', 0, LIMITS.maxCounter),
    signature: asBytes(a[2], 'cosignature', SIGNATURE_BYTES),
  };
}

export function parseLogProof(bytes: Uint8Array): Result<{ value: LogProof }> {
  const K = LOG_PROOF_KEY;
  return parsePayload(bytes, 'logProof', (f) => {
    const index = asUint(f.required(K.index, 'index'), 'index', 0, LIMITS.maxCounter);
    const size = asUint(f.required(K.size, 'size'), 'size', index + 1, LIMITS.maxCounter);
    const root = asBytes(f.required(K.root, 'root'), 'root', DIGEST_BYTES);
    const inclusion = digests(f.required(K.inclusion, 'inclusion proof'), 'inclusion proof', LIMITS.maxProofNodes);
    const signature = asBytes(f.required(K.signature, 'log signature'), 'log signature', SIGNATURE_BYTES);
    const c = f.optional(K.cosignatures);
    const cosignatures = c === undefined ? [] : asArray(c, 'cosignatures', LIMITS.maxRoleKeys).map(readCosignature);
    if (c !== undefined && cosignatures.length === 0) schemaFail('BAD_VALUE', 'an empty cosignature list');
    const from = f.optional(K.fromSize);
    const cons = f.optional(K.consistency);
    if ((from === undefined) !== (cons === undefined)) schemaFail('MISSING_FIELD', 'a consistency proof needs its old size and nodes');
    const tail =
      from === undefined
        ? {}
        : { fromSize: asUint(from, 'old size', 1, LIMITS.maxCounter), consistency: digests(cons, 'consistency proof', LIMITS.maxProofNodes + 1) };
    // Frozen at the top only: the verifier reads it and hands none of it out.
    return Object.freeze({ index, size, root, inclusion, signature, cosignatures, ...tail });
  });
}

export function encodeLogProof(p: LogProof): Uint8Array {
  const K = LOG_PROOF_KEY;
  const entries: [CborKey, Encodable][] = [
    [KEY_KIND, LOG_PROOF_KIND],
    [KEY_FORMAT, 1],
    [K.index, p.index],
    [K.size, p.size],
    [K.root, p.root],
    [K.inclusion, [...p.inclusion]],
    [K.signature, p.signature],
  ];
  if (p.cosignatures.length > 0) entries.push([K.cosignatures, p.cosignatures.map((c) => [c.keyId, c.time, c.signature])]);
  if (p.fromSize !== undefined) entries.push([K.fromSize, p.fromSize], [K.consistency, [...(p.consistency ?? [])]]);
  const bytes = encodeCbor(new Map(entries));
  const check = parseLogProof(bytes);
  if (!check.ok) throw new RangeError(`log proof rejected: ${check.error}${check.detail ? ` (${check.detail})` : ''}`);
  return bytes;
}
