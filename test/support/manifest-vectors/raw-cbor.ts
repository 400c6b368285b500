/**
 * Raw CBOR and COSE writers for the vectors: encodings the deterministic encoder refuses to write
 * (non-shortest heads, indefinite lengths, unsorted or repeated keys), and envelopes written piece
 * by piece so one layer can be bent or one bit flipped.
 */

import { type SigningKey } from '../../../host/keys.js';
import { SIGNER_PROTECTED, sigStructure } from '../../../shared/cose.js';
import { type Manifest } from '../../../shared/manifest.js';

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
export const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(parts));

/** A head with the argument in `width` extra bytes (0 = in the initial byte), shortest or not. */
function head(major: number, value: number, width?: 0 | 1 | 2 | 4 | 8): Uint8Array {
  const w = width ?? (value < 24 ? 0 : value < 0x100 ? 1 : value < 0x10000 ? 2 : value < 0x100000000 ? 4 : 8);
  if (w === 0) return Uint8Array.of((major << 5) | value);
  const out = new Uint8Array(1 + w);
  out[0] = (major << 5) | { 1: 24, 2: 25, 4: 26, 8: 27 }[w];
  let v = BigInt(value);
  for (let i = w; i >= 1; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}
export const cbor = {
  uint: (n: number, width?: 0 | 1 | 2 | 4 | 8) => head(0, n, width),
  bytes: (b: Uint8Array, width?: 0 | 1 | 2 | 4 | 8) => cat(head(2, b.length, width), b),
  text: (s: string) => cat(head(3, Buffer.byteLength(s)), Buffer.from(s)),
  array: (items: Uint8Array[]) => cat(head(4, items.length), ...items),
  arrayIndefinite: (items: Uint8Array[]) => cat(Uint8Array.of(0x9f), ...items, Uint8Array.of(0xff)),
  /** Entries written in the order given: no sorting, duplicates allowed. */
  map: (entries: [Uint8Array, Uint8Array][]) => cat(head(5, entries.length), ...entries.flat()),
  mapIndefinite: (entries: [Uint8Array, Uint8Array][]) => cat(Uint8Array.of(0xbf), ...entries.flat(), Uint8Array.of(0xff)),
  tag: (t: number, item: Uint8Array) => cat(head(6, t), item),
};
export type Entry = [Uint8Array, Uint8Array];

/** The manifest payload as raw map entries, keys 0..10 in order; encodes to exactly encodeManifest(m). */
export function manifestEntries(m: Manifest): Entry[] {
  return [
    [cbor.uint(0), cbor.uint(1)],
    [cbor.uint(1), cbor.uint(1)],
    [cbor.uint(2), cbor.text(m.deviceClass)],
    [cbor.uint(3), cbor.text(m.version)],
    [cbor.uint(4), cbor.uint(m.securityCounter)],
    [cbor.uint(5), cbor.uint(m.imageSize)],
    [cbor.uint(6), cbor.uint(m.chunkSize)],
    [cbor.uint(7), cbor.bytes(m.merkleRoot)],
    [cbor.uint(10), cbor.uint(m.created)],
  ];
}
export const withValue = (entries: Entry[], key: number, value: Uint8Array): Entry[] =>
  entries.map(([k, v]) => [k, k.length === 1 && k[0] === key ? value : v]);
export const without = (entries: Entry[], key: number): Entry[] => entries.filter(([k]) => !(k.length === 1 && k[0] === key));

export type RawSignature = { kid: Uint8Array; signature: Uint8Array; protectedHeader?: Uint8Array; unprotected?: Uint8Array };

export function rawSignature(s: RawSignature): Uint8Array {
  return cbor.array([
    cbor.bytes(s.protectedHeader ?? SIGNER_PROTECTED),
    s.unprotected ?? cbor.map([[cbor.uint(4), cbor.bytes(s.kid)]]),
    cbor.bytes(s.signature),
  ]);
}

/** A COSE_Sign written piece by piece (signatures in the order given). */
export function rawEnvelope(
  payload: Uint8Array,
  sigs: RawSignature[],
  o: { payloadItem?: Uint8Array; signaturesItem?: Uint8Array; bodyProtected?: Uint8Array; bodyUnprotected?: Uint8Array; tag?: number } = {},
): Uint8Array {
  const body = cbor.array([
    o.bodyProtected ?? cbor.bytes(new Uint8Array(0)),
    o.bodyUnprotected ?? cbor.map([]),
    o.payloadItem ?? cbor.bytes(payload),
    o.signaturesItem ?? cbor.array(sigs.map(rawSignature)),
  ]);
  return o.tag === undefined ? cbor.tag(98, body) : o.tag < 0 ? body : cbor.tag(o.tag, body);
}

export const signatureBy = (key: SigningKey, payload: Uint8Array, kid = key.keyId): RawSignature => ({ kid, signature: key.sign(sigStructure(payload)) });

export function flipBit(bytes: Uint8Array, offset: number, mask = 1): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[offset] ^= mask;
  return out;
}

/** Offset of `inner` inside `outer` (the place a layer's bytes sit in the envelope). */
export function offsetOf(outer: Uint8Array, inner: Uint8Array): number {
  const at = Buffer.from(outer).indexOf(Buffer.from(inner));
  if (at < 0) throw new Error('layer not found in the envelope');
  return at;
}
