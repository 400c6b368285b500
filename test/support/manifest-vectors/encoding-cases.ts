/**
 * Cases about the bytes: device state and policy (V1, V8, V9), the wrong kind of object (V5),
 * truncations and trailing bytes (V4), one bit flip per layer, the envelope profile (E2–E4) and the
 * manifest payload (V5; re-signed, so only the encoding or a field is at fault).
 */
import { encodeEnvelope, SIGNER_PROTECTED } from '../../../shared/cose.js';
import { cat, cbor, type Entry, flipBit, manifestEntries, offsetOf, rawEnvelope, rawSignature, signatureBy, without, withValue } from './raw-cbor.js';
import { type VectorWorld } from './world.js';

/** V1, V8, V9: policy and the device state. */
export function policyCases(w: VectorWorld): void {
  const { payload, add } = w;
  add('policy: wrong device class', 'WRONG_DEVICE_CLASS', { state: { deviceClass: 'acme-cam' } });
  add('policy: rollback (counter 7, stored 8)', 'ROLLBACK', { state: { counter: 8 } });
  add('policy: unsigned manifest for another device class (signatures before policy)', 'THRESHOLD_NOT_MET', {
    envelope: encodeEnvelope({ payload, signatures: [] }),
    state: { deviceClass: 'acme-cam' },
  });
  add('state: empty device class', 'INVALID_STATE', { state: { deviceClass: '' } });
  add('state: negative counter', 'INVALID_STATE', { state: { counter: -1 } });
  add('state: fractional trust version', 'INVALID_STATE', { state: { trustVersion: 1.5 } });
}

/** V5: an object of the wrong kind. */
export function kindCases(w: VectorWorld): void {
  const { trust, signedPayload, rlUnrelated, add } = w;
  add('kind: a trust bundle given as the manifest', 'WRONG_KIND', { envelope: trust });
  add('kind: a revocation list given as the manifest', 'WRONG_KIND', { envelope: rlUnrelated });
  add('kind: a device state record (kind 4) signed by R1 and R2', 'WRONG_KIND', {
    envelope: signedPayload(
      cbor.map([
        [cbor.uint(0), cbor.uint(4)],
        [cbor.uint(1), cbor.uint(1)],
        [cbor.uint(2), cbor.uint(1)],
      ]),
    ),
  });
}

/** V4: truncations and bytes around the envelope. */
export function lengthCases(w: VectorWorld): void {
  const { good, add } = w;
  add('truncated: empty input', 'TRUNCATED', { envelope: new Uint8Array(0) });
  add('truncated: the first byte only', 'TRUNCATED', { envelope: good.subarray(0, 1) });
  add('truncated: half the envelope', 'TRUNCATED', { envelope: good.subarray(0, good.length >> 1) });
  add('truncated: the last byte missing', 'TRUNCATED', { envelope: good.subarray(0, good.length - 1) });
  add('trailing: one byte after the envelope', 'TRAILING_BYTES', { envelope: cat(good, Uint8Array.of(0)) });
  add('too large: 16385 bytes', 'TOO_LARGE', { envelope: cat(good, new Uint8Array(16385 - good.length)) });
}

/** Bit flips, one per layer. */
export function bitFlipCases(w: VectorWorld): void {
  const { R1, R2, payload, good, add } = w;
  const sigs = [signatureBy(R1, payload), signatureBy(R2, payload)].sort((a, b) => Buffer.compare(a.kid, b.kid));
  const first = rawSignature(sigs[0]);
  const at = offsetOf(good, first);
  add('flip: tag 98 -> 99 (E2)', 'BAD_HEADER', { envelope: flipBit(good, 1, 0x01) });
  add('flip: COSE_Sign array of 4 -> 5 items', 'TRUNCATED', { envelope: flipBit(good, 2, 0x01) });
  add('flip: protected header alg -8 -> -7 (E4)', 'UNSUPPORTED_ALGORITHM', { envelope: flipBit(good, at + 4, 0x01) });
  add('flip: protected header label 1 -> 3 (E4)', 'BAD_HEADER', { envelope: flipBit(good, at + 3, 0x02) });
  add('flip: a bit of the first kid', 'THRESHOLD_NOT_MET', { envelope: flipBit(good, at + 8, 0x80) });
  add('flip: a bit of the first signature', 'THRESHOLD_NOT_MET', { envelope: flipBit(good, at + first.length - 1, 0x10) });
  add("flip: a bit of the payload's device class (still well formed)", 'THRESHOLD_NOT_MET', {
    envelope: flipBit(good, offsetOf(good, payload) + offsetOf(payload, Buffer.from('acme-gw')), 0x02),
  });
  add("flip: the payload's counter becomes a negative integer", 'WRONG_TYPE', {
    envelope: flipBit(good, offsetOf(good, payload) + offsetOf(payload, Uint8Array.of(0x04, 0x07, 0x05)) + 1, 0x20),
  });
}

/** E2–E4: the envelope profile. */
export function envelopeProfileCases(w: VectorWorld): void {
  const { R1, R2, payload, add } = w;
  const two = [signatureBy(R1, payload), signatureBy(R2, payload)];
  add('envelope: not tagged (a bare array)', 'BAD_HEADER', { envelope: rawEnvelope(payload, two, { tag: -1 }) });
  add('envelope: tag 18 (COSE_Sign1) instead of 98', 'BAD_HEADER', { envelope: rawEnvelope(payload, two, { tag: 18 }) });
  add('envelope: body protected header not empty', 'BAD_HEADER', { envelope: rawEnvelope(payload, two, { bodyProtected: cbor.bytes(SIGNER_PROTECTED) }) });
  add('envelope: body unprotected header not empty', 'BAD_HEADER', {
    envelope: rawEnvelope(payload, two, { bodyUnprotected: cbor.map([[cbor.uint(1), Uint8Array.of(0x27)]]) }),
  });
  add('envelope: detached payload (null)', 'WRONG_TYPE', { envelope: rawEnvelope(payload, two, { payloadItem: Uint8Array.of(0xf6) }) });
  add('envelope: a 63-byte signature', 'MALFORMED', {
    envelope: rawEnvelope(payload, [two[0], { kid: R2.keyId, signature: two[1].signature.subarray(0, 63) }]),
  });
  add('envelope: a 15-byte kid', 'BAD_HEADER', { envelope: rawEnvelope(payload, [two[0], { kid: R2.keyId.subarray(0, 15), signature: two[1].signature }]) });
  add('envelope: an unprotected header with more than the kid', 'BAD_HEADER', {
    envelope: rawEnvelope(payload, [
      two[0],
      {
        ...two[1],
        unprotected: cbor.map([
          [cbor.uint(1), Uint8Array.of(0x27)],
          [cbor.uint(4), cbor.bytes(R2.keyId)],
        ]),
      },
    ]),
  });
  add('envelope: 17 signatures (above maxSignatures)', 'TOO_LARGE', {
    envelope: rawEnvelope(
      payload,
      Array.from({ length: 17 }, () => two[0]),
    ),
  });
  add('non-deterministic: payload length in a non-shortest head', 'NON_DETERMINISTIC', {
    envelope: rawEnvelope(payload, two, { payloadItem: cbor.bytes(payload, 2) }),
  });
  add('non-deterministic: indefinite-length signature array', 'NON_DETERMINISTIC', {
    envelope: rawEnvelope(payload, two, { signaturesItem: cbor.arrayIndefinite(two.map(rawSignature)) }),
  });
}

/** V5: the payload, re-signed by R1 and R2, so only the encoding or a field is at fault. */
export function payloadCases(w: VectorWorld): void {
  const { manifest, payload, signedPayload, add } = w;
  const e = manifestEntries(manifest);
  const signedMap = (entries: Entry[]) => signedPayload(cbor.map(entries));
  add('non-deterministic: counter 7 written as 0x18 0x07', 'NON_DETERMINISTIC', { envelope: signedMap(withValue(e, 4, cbor.uint(7, 1))) });
  add('non-deterministic: image size in 8 bytes', 'NON_DETERMINISTIC', { envelope: signedMap(withValue(e, 5, cbor.uint(manifest.imageSize, 8))) });
  add('non-deterministic: keys out of order (3 before 2)', 'NON_DETERMINISTIC', { envelope: signedMap([e[0], e[1], e[3], e[2], ...e.slice(4)]) });
  add('non-deterministic: indefinite-length payload map', 'NON_DETERMINISTIC', { envelope: signedPayload(cbor.mapIndefinite(e)) });
  add('payload: a key repeated', 'DUPLICATE_KEY', { envelope: signedMap([...e.slice(0, 5), e[4], ...e.slice(5)]) });
  add('payload: unknown key 11', 'UNKNOWN_KEY', { envelope: signedMap([...e, [cbor.uint(11), cbor.uint(0)]]) });
  add('payload: Merkle root missing', 'MISSING_FIELD', { envelope: signedMap(without(e, 7)) });
  add('payload: format version 2', 'UNSUPPORTED_FORMAT', { envelope: signedMap(withValue(e, 1, cbor.uint(2))) });
  add('payload: created as a float', 'UNSUPPORTED_FORMAT', {
    envelope: signedMap(withValue(e, 10, Uint8Array.from([0xfb, ...Buffer.from('41da4c3d80000000', 'hex')]))),
  });
  add('payload: chunk size 1000 (not a power of two)', 'BAD_VALUE', { envelope: signedMap(withValue(e, 6, cbor.uint(1000))) });
  add('payload: image size 0', 'BAD_VALUE', { envelope: signedMap(withValue(e, 5, cbor.uint(0))) });
  add('payload: device class is an integer', 'WRONG_TYPE', { envelope: signedMap(withValue(e, 2, cbor.uint(1))) });
  add("payload: version '2.1' is not SemVer", 'BAD_VALUE', { envelope: signedMap(withValue(e, 3, cbor.text('2.1'))) });
  add('payload: a 31-byte Merkle root', 'BAD_VALUE', { envelope: signedMap(withValue(e, 7, cbor.bytes(manifest.merkleRoot.subarray(0, 31)))) });
  add('payload: counter above 2^53 - 1', 'TOO_LARGE', {
    envelope: signedMap(withValue(e, 4, Uint8Array.from([0x1b, 0x00, 0x20, 0, 0, 0, 0, 0, 0]))),
  });
  add('payload: invalid UTF-8 in the version', 'MALFORMED', { envelope: signedMap(withValue(e, 3, Uint8Array.of(0x62, 0xc3, 0x28))) });
  add('payload: nested 9 deep under an unknown key', 'TOO_DEEP', {
    envelope: signedMap([...e, [cbor.uint(11), Array.from({ length: 8 }).reduce<Uint8Array>((inner) => cbor.array([inner]), cbor.uint(0))]]),
  });
  add('payload: a byte after the map', 'TRAILING_BYTES', { envelope: signedPayload(cat(payload, Uint8Array.of(0))) });
}
