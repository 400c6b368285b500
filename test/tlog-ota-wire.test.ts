/**
 * How a log proof travels (issue 19 item 2): the log proof request and response over MQTT (SPEC.md
 * §12.2), strict like every OTA message, and the FWSBND2 update bundle (§13.5) that carries the proof
 * over serial next to the unchanged manifest, while FWSBND1 stays byte for byte what it was.
 */
import { describe, expect, it } from 'vitest';
import { makeBundle, makeRelease } from '../hil/world.js';
import {
  BUNDLE_HEADER_BYTES,
  BUNDLE_MAGIC,
  BUNDLE_MAGIC_V2,
  BUNDLE_V2_HEADER_BYTES,
  bundleHeaderBytes,
  bundleLayout,
  parseBundleHeader,
  parseBundleHeaderAny,
} from '../shared/bundle.js';
import { type Encodable, encodeCbor } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { MSG, messageType } from '../shared/ota/codec.js';
import { encodeLogProofRequest, encodeLogProofResponse, parseLogProofRequest, parseLogProofResponse } from '../shared/ota/log-proof.js';
import { encodeManifestRequest, parseAnnouncement } from '../shared/ota/messages.js';

const bytes = (n: number, fill = 0xa5) => new Uint8Array(n).fill(fill);
const raw = (entries: [number, Encodable][]) => encodeCbor(new Map<number, Encodable>(entries));

describe('log proof messages (SPEC.md §12.2)', () => {
  it('round-trip with the next free type numbers, and the largest response fits an OTA message', () => {
    const q = { campaign: 'c-1', requestId: 9, replyTopic: 'fwseal/device/gw-1/reply', fromSize: 41 };
    const qb = encodeLogProofRequest(q);
    expect(parseLogProofRequest(qb)).toMatchObject({ ok: true, value: q });
    expect(messageType(qb)).toMatchObject({ ok: true, type: 'logProofRequest' });
    expect([MSG.logProofRequest, MSG.logProofResponse]).toEqual([13, 14]);
    const r = { campaign: 'c'.repeat(LIMITS.maxIdBytes), requestId: LIMITS.maxRequestId, proof: bytes(LIMITS.maxLogProofBytes) };
    const rb = encodeLogProofResponse(r);
    expect(rb.length).toBeLessThanOrEqual(LIMITS.maxOtaMessageBytes);
    expect(parseLogProofResponse(rb)).toMatchObject({ ok: true, value: r });
    expect(parseLogProofRequest(encodeLogProofRequest({ campaign: 'c-1', requestId: 0, fromSize: 0 }))).toMatchObject({ ok: true });
  });

  it('a proof above maxLogProofBytes is TOO_LARGE and an empty one BAD_VALUE, before anything is copied', () => {
    const base: [number, Encodable][] = [
      [0, MSG.logProofResponse],
      [1, 'c-1'],
      [2, 1],
    ];
    expect(parseLogProofResponse(raw([...base, [4, bytes(LIMITS.maxLogProofBytes + 1)]])).code).toBe(CODES.TOO_LARGE);
    expect(parseLogProofResponse(raw([...base, [4, new Uint8Array(0)]])).code).toBe(CODES.BAD_VALUE);
    expect(parseLogProofResponse(raw([...base, [4, 'text']])).code).toBe(CODES.WRONG_TYPE);
    expect(parseLogProofResponse(raw(base)).code).toBe(CODES.MISSING_FIELD);
  });

  it('closed maps with stable codes: an unknown key, a missing or negative from size, a bad reply topic, another type', () => {
    const base: [number, Encodable][] = [
      [0, MSG.logProofRequest],
      [1, 'c-1'],
      [2, 1],
    ];
    expect(parseLogProofRequest(raw([...base, [4, 0]])).ok).toBe(true);
    expect(parseLogProofRequest(raw([...base, [4, 0], [9, 1]])).code).toBe(CODES.UNKNOWN_KEY);
    expect(parseLogProofRequest(raw(base)).code).toBe(CODES.MISSING_FIELD);
    expect(parseLogProofRequest(raw([...base, [4, -1]])).code).toBe(CODES.BAD_VALUE);
    expect(parseLogProofRequest(raw([...base, [4, 'x']])).code).toBe(CODES.WRONG_TYPE);
    expect(parseLogProofRequest(raw([...base, [3, 'fwseal/#'], [4, 0]])).code).toBe(CODES.BAD_VALUE);
    expect(
      parseLogProofRequest(
        raw([
          [0, MSG.logProofRequest],
          [1, 'bad id'],
          [2, 1],
          [4, 0],
        ]),
      ).code,
    ).toBe(CODES.BAD_VALUE);
    const manifestRequest = encodeManifestRequest({ campaign: 'c-1', requestId: 1 });
    expect(parseLogProofRequest(manifestRequest).code).toBe(CODES.WRONG_KIND);
    expect(parseLogProofResponse(encodeLogProofRequest({ campaign: 'c-1', requestId: 1, fromSize: 0 })).code).toBe(CODES.WRONG_KIND);
    expect(() => encodeLogProofResponse({ campaign: 'c-1', requestId: 1, proof: bytes(LIMITS.maxLogProofBytes + 1) })).toThrow(RangeError);
  });

  it('the announcement is unchanged: a key 11 (a proof hint) is refused as by every device in the field', () => {
    const a: [number, Encodable][] = [
      [0, MSG.announcement],
      [1, 'c-1'],
      [4, bytes(32)],
      [5, 100],
      [6, 2048],
      [7, 1024],
      [8, 1024],
      [9, 1],
      [10, 2 ** 32],
    ];
    expect(parseAnnouncement(raw(a)).ok).toBe(true);
    expect(parseAnnouncement(raw([...a, [11, 1]])).code).toBe(CODES.UNKNOWN_KEY);
  });
});

describe('update bundles carrying a log proof (SPEC.md §13.5)', () => {
  const rel = makeRelease({ version: '2.0.0', counter: 2, signers: ['R1', 'R2'], deviceClass: 'hil-board', imageSize: 130 * 512, chunkSize: 512 });
  const proof = bytes(777, 0x3c);

  it('FWSBND1 is what it was: 12-byte header, pages right after the manifest', () => {
    const b = makeBundle(rel);
    expect([...b.subarray(0, 8)]).toEqual([...BUNDLE_MAGIC]);
    expect(parseBundleHeader(b.subarray(0, BUNDLE_HEADER_BYTES))).toBe(rel.envelope.length);
    const l = bundleLayout(rel.envelope.length, rel.manifest.imageSize, rel.manifest.chunkSize);
    expect(l).toMatchObject({ headerBytes: 12, proofBytes: 0, length: b.length });
    expect(l.pages[0].digestsAt).toBe(12 + rel.envelope.length);
  });

  it('FWSBND2: a 16-byte header with both lengths, the same manifest bytes, the proof, then the same pages', () => {
    const v1 = makeBundle(rel);
    const v2 = makeBundle(rel, { logProof: proof });
    expect([...v2.subarray(0, 8)]).toEqual([...BUNDLE_MAGIC_V2]);
    expect(bundleHeaderBytes(v2)).toBe(BUNDLE_V2_HEADER_BYTES);
    expect(parseBundleHeaderAny(v2.subarray(0, 16))).toEqual({ manifestBytes: rel.envelope.length, proofBytes: proof.length });
    expect(parseBundleHeader(v2.subarray(0, 12))).toBeNull(); // an FWSBND1 reader refuses it: MALFORMED, never misreads it
    expect(v2.subarray(16, 16 + rel.envelope.length)).toEqual(rel.envelope);
    expect(v2.subarray(16 + rel.envelope.length, 16 + rel.envelope.length + proof.length)).toEqual(proof);
    expect(v2.length).toBe(v1.length + 4 + proof.length);
    expect(v2.subarray(v2.length - (v1.length - 12 - rel.envelope.length))).toEqual(v1.subarray(12 + rel.envelope.length));
  });

  it('layout bounds: a proof of 0 or above maxLogProofBytes has no layout; another magic has no header', () => {
    expect(() => bundleLayout(300, 4096, 1024, 0)).toThrow(RangeError);
    expect(() => bundleLayout(300, 4096, 1024, LIMITS.maxLogProofBytes + 1)).toThrow(RangeError);
    expect(bundleLayout(300, 4096, 1024, LIMITS.maxLogProofBytes).headerBytes).toBe(16);
    expect(bundleHeaderBytes(new Uint8Array([...BUNDLE_MAGIC.slice(0, 6), 0x33, 0]))).toBeNull();
    expect(parseBundleHeaderAny(new Uint8Array([...BUNDLE_MAGIC_V2, 0, 0, 1, 0]))).toBeNull(); // FWSBND2 needs all 16 bytes
  });
});
