/** OTA over MQTT wire forms (SPEC.md §12): topics, and every message's encode + strict parse. */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256 } from '../device/crypto/sha256.js';
import { type CborKey, type CborMap, type CborValue, decodeCbor, type Encodable, encodeCbor } from '../shared/cbor.js';
import { CODES, type Result } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { type MessageType, MSG, messageType } from '../shared/ota/codec.js';
import {
  type BlockRequest,
  encodeAnnouncement,
  encodeBlockRequest,
  encodeBlockResponse,
  encodeErrorReply,
  encodeManifestRequest,
  encodeManifestResponse,
  encodePageRequest,
  encodePageResponse,
  maxBlockResponseBytes,
  parseAnnouncement,
  parseBlockRequest,
  parseBlockResponse,
  parseErrorReply,
  parseManifestRequest,
  parseManifestResponse,
  parsePageRequest,
  parsePageResponse,
  requestedBlocks,
} from '../shared/ota/messages.js';
import { encodeStatusEvent, parseStatusEvent, STATUS_STATES } from '../shared/ota/status.js';
import { isValidId, parseRequestTopic, parseStatusTopic, ROLLOUT_ALL, rolloutBucket, SHARE_GROUP, topics } from '../shared/ota/topics.js';

const idArb = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const u32 = fc.integer({ min: 0, max: LIMITS.maxRequestId });
const bytesArb = (min: number, max: number, multiple = 1) =>
  fc.integer({ min: min / multiple, max: max / multiple }).chain((n) => fc.uint8Array({ minLength: n * multiple, maxLength: n * multiple }));
const replyArb = fc.option(fc.constantFrom('fwseal/device/d1/reply', 'r', 'a/b/c'), { nil: undefined });
const digest = new Uint8Array(32).fill(7);
const withReply = <T extends object>(m: T & { replyTopic?: string }) => (m.replyTopic === undefined ? (({ replyTopic: _, ...rest }) => rest)(m) : m);

type Case = {
  readonly type: MessageType;
  readonly parse: (b: Uint8Array) => Result<{ value: unknown }>;
  readonly encode: (m: never) => Uint8Array;
  readonly sample: object;
  readonly arb: fc.Arbitrary<object>;
  readonly required: readonly number[];
};

const announcementArb = fc
  .record({
    campaign: idArb,
    manifestDigest: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    manifestSize: fc.integer({ min: 1, max: LIMITS.maxEnvelopeBytes }),
    imageSize: fc.integer({ min: 1, max: LIMITS.maxImageSize }),
    chunkExp: fc.integer({ min: 9, max: 16 }),
    blockExtra: fc.integer({ min: 0, max: 7 }),
    rollout: fc.oneof(fc.constant(0), fc.constant(ROLLOUT_ALL), fc.integer({ min: 0, max: ROLLOUT_ALL })),
  })
  .map(({ chunkExp, blockExtra, ...a }) => {
    const chunkSize = 2 ** chunkExp;
    const blockSize = 2 ** Math.min(16, chunkExp + blockExtra);
    return { ...a, chunkSize, blockSize, pageCount: Math.ceil(Math.ceil(a.imageSize / chunkSize) / LIMITS.pageLeaves) };
  });

const rangesArb = fc.array(fc.tuple(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 4 })), { minLength: 1, maxLength: 4 }).map((steps) => {
  let next = 0;
  return steps.map(([gap, count]) => {
    const first = next + gap - (next === 0 ? 1 : 0);
    next = first + count;
    return [first, count] as const;
  });
});
const bitmapArb = fc
  .uniqueArray(fc.integer({ min: 0, max: LIMITS.maxBitmapBytes * 8 - 1 }), { minLength: 1, maxLength: LIMITS.maxBlocksPerRequest })
  .map((bits) => {
    const bitmap = new Uint8Array(Math.floor(Math.max(...bits) / 8) + 1);
    for (const b of bits) bitmap[b >> 3] |= 0x80 >> (b & 7);
    return bitmap;
  });

const cases: Case[] = [
  {
    type: 'announcement',
    parse: parseAnnouncement,
    encode: encodeAnnouncement as (m: never) => Uint8Array,
    required: [0, 1, 4, 5, 6, 7, 8, 9],
    sample: {
      campaign: 'spring-2025',
      manifestDigest: digest,
      manifestSize: 900,
      imageSize: 1_000_000,
      chunkSize: 4096,
      blockSize: 16384,
      pageCount: 2,
      rollout: ROLLOUT_ALL,
    },
    arb: announcementArb,
  },
  {
    type: 'manifestRequest',
    parse: parseManifestRequest,
    encode: encodeManifestRequest as (m: never) => Uint8Array,
    required: [0, 1, 2],
    sample: { campaign: 'c1', requestId: 7, replyTopic: 'fwseal/device/d1/reply' },
    arb: fc.record({ campaign: idArb, requestId: u32, replyTopic: replyArb }).map(withReply),
  },
  {
    type: 'manifestResponse',
    parse: parseManifestResponse,
    encode: encodeManifestResponse as (m: never) => Uint8Array,
    required: [0, 1, 2, 4],
    sample: { campaign: 'c1', requestId: 7, manifest: new Uint8Array(40).fill(1) },
    arb: fc.record({ campaign: idArb, requestId: u32, manifest: fc.uint8Array({ minLength: 1, maxLength: 2000 }) }),
  },
  {
    type: 'pageRequest',
    parse: parsePageRequest,
    encode: encodePageRequest as (m: never) => Uint8Array,
    required: [0, 1, 2, 4],
    sample: { campaign: 'c1', requestId: 8, replyTopic: 'x/y', page: 3 },
    arb: fc.record({ campaign: idArb, requestId: u32, replyTopic: replyArb, page: fc.integer({ min: 0, max: LIMITS.maxImageSize }) }).map(withReply),
  },
  {
    type: 'pageResponse',
    parse: parsePageResponse,
    encode: encodePageResponse as (m: never) => Uint8Array,
    required: [0, 1, 2, 4, 5, 6],
    sample: { campaign: 'c1', requestId: 8, page: 3, leaves: new Uint8Array(64).fill(2), proof: new Uint8Array(32).fill(3) },
    arb: fc.record({
      campaign: idArb,
      requestId: u32,
      page: fc.integer({ min: 0, max: 1 << 20 }),
      leaves: bytesArb(32, 4096, 32),
      proof: bytesArb(0, 1024, 32),
    }),
  },
  {
    type: 'blockRequest',
    parse: parseBlockRequest,
    encode: encodeBlockRequest as (m: never) => Uint8Array,
    required: [0, 1, 2],
    sample: {
      campaign: 'c1',
      requestId: 9,
      replyTopic: 'x/y',
      ranges: [
        [0, 2],
        [5, 1],
      ],
    },
    arb: fc.oneof(
      fc.record({ campaign: idArb, requestId: u32, replyTopic: replyArb, ranges: rangesArb }).map(withReply),
      fc.record({ campaign: idArb, requestId: u32, replyTopic: replyArb, bitmapBase: fc.integer({ min: 0, max: 1 << 24 }), bitmap: bitmapArb }).map(withReply),
    ),
  },
  {
    type: 'blockResponse',
    parse: parseBlockResponse,
    encode: encodeBlockResponse as (m: never) => Uint8Array,
    required: [0, 1, 2, 4, 5],
    sample: { campaign: 'c1', requestId: 9, block: 5, data: new Uint8Array(48).fill(9) },
    arb: fc.record({
      campaign: idArb,
      requestId: u32,
      block: fc.integer({ min: 0, max: LIMITS.maxImageSize }),
      data: fc.uint8Array({ minLength: 1, maxLength: 4096 }),
    }),
  },
  {
    type: 'errorReply',
    parse: parseErrorReply,
    encode: encodeErrorReply as (m: never) => Uint8Array,
    required: [0, 4],
    sample: { campaign: 'c1', requestId: 9, code: CODES.UNKNOWN_BLOCK, index: 99 },
    arb: fc.record(
      { campaign: idArb, requestId: u32, code: fc.integer({ min: 1, max: 999 }), index: fc.integer({ min: 0, max: LIMITS.maxImageSize }) },
      { requiredKeys: ['code'] },
    ),
  },
  {
    type: 'statusEvent',
    parse: parseStatusEvent,
    encode: encodeStatusEvent as (m: never) => Uint8Array,
    required: [0, 1, 4, 5],
    sample: { campaign: 'c1', device: 'dev-42', state: 'downloading', done: 3, total: 10 },
    arb: fc
      .record({
        campaign: idArb,
        device: idArb,
        state: fc.constantFrom(...STATUS_STATES.filter((s) => s !== 'online' && s !== 'offline')),
        total: fc.integer({ min: 0, max: 1 << 20 }),
        frac: fc.double({ min: 0, max: 1, noNaN: true }),
        progress: fc.boolean(),
        code: fc.integer({ min: 1, max: 999 }),
      })
      .map(({ frac, progress, total, code, ...e }) => ({
        ...e,
        ...(progress || e.state === 'downloading' ? { done: Math.floor(total * frac), total } : {}),
        ...(e.state === 'rejected' || e.state === 'failed' ? { code } : {}),
      })),
  },
];

const mapOf = (bytes: Uint8Array): CborMap => {
  const d = decodeCbor(bytes);
  if (!d.ok || !(d.value instanceof Map)) throw new Error('sample is not a map');
  return d.value;
};
const reencode = (m: CborMap, edit: (m: Map<CborKey, CborValue>) => void) => {
  const copy = new Map(m);
  edit(copy);
  return encodeCbor(copy as ReadonlyMap<CborKey, Encodable>);
};
const otherKind = (v: CborValue): Encodable =>
  typeof v === 'number' ? 'x' : typeof v === 'string' ? 1 : v instanceof Uint8Array ? 1 : Array.isArray(v) ? new Uint8Array(1) : 0;

describe.each(cases)('$type message', (c) => {
  const encode = c.encode as (m: object) => Uint8Array;
  const sampleBytes = encode(c.sample);

  it('round-trips (property)', () => {
    fc.assert(
      fc.property(c.arb, (m) => {
        const bytes = encode(m);
        const r = c.parse(bytes);
        expect(r.ok).toBe(true);
        if (r.ok) expect(r.value).toEqual(m);
        expect(encode(r.ok ? (r.value as object) : {})).toEqual(bytes);
      }),
      { numRuns: 100 },
    );
  });

  it('carries its type in key 0 and is rejected as any other type', () => {
    expect(mapOf(sampleBytes).get(0)).toBe(MSG[c.type]);
    const t = messageType(sampleBytes);
    expect(t.ok && t.type).toBe(c.type);
    for (const other of cases.filter((o) => o.type !== c.type)) expect(other.parse(sampleBytes).code, other.type).toBe(CODES.WRONG_KIND);
    expect(c.parse(reencode(mapOf(sampleBytes), (m) => m.set(0, 99))).code).toBe(CODES.WRONG_KIND);
  });

  it('rejects truncation at every offset', () => {
    for (let i = 0; i < sampleBytes.length; i++) {
      const r = c.parse(sampleBytes.subarray(0, i));
      expect(r.ok, `cut at ${i}`).toBe(false);
      expect(r.code, `cut at ${i}`).toBe(CODES.TRUNCATED);
    }
  });

  it('rejects trailing bytes, non-maps and random bytes without throwing', () => {
    expect(c.parse(Uint8Array.of(...sampleBytes, 0)).code).toBe(CODES.TRAILING_BYTES);
    expect(c.parse(encodeCbor([1, 2])).code).toBe(CODES.WRONG_TYPE);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
        expect(typeof c.parse(b).ok).toBe('boolean');
      }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: sampleBytes.length - 1 }), fc.integer({ min: 0, max: 255 }), (at, byte) => {
        const b = sampleBytes.slice();
        b[at] = byte;
        expect(typeof c.parse(b).ok).toBe('boolean');
      }),
    );
  });

  it('rejects unknown keys (closed map)', () => {
    const m = mapOf(sampleBytes);
    expect(c.parse(reencode(m, (x) => x.set(99, 0))).code).toBe(CODES.UNKNOWN_KEY);
    expect(c.parse(reencode(m, (x) => x.set('extra', 0))).code).toBe(CODES.UNKNOWN_KEY);
  });

  it('rejects every field of the wrong kind', () => {
    const m = mapOf(sampleBytes);
    for (const [k, v] of m) expect(c.parse(reencode(m, (x) => x.set(k, otherKind(v)))).code, `key ${k}`).toBe(CODES.WRONG_TYPE);
    expect(c.parse(reencode(m, (x) => x.set(0, -1))).code).toBe(CODES.WRONG_KIND);
  });

  it('rejects every missing required field', () => {
    const m = mapOf(sampleBytes);
    for (const k of c.required) expect(c.parse(reencode(m, (x) => x.delete(k))).code, `key ${k}`).toBe(CODES.MISSING_FIELD);
  });

  it('rejects ids that are empty, too long, or contain "/", "+", "#"', () => {
    const m = mapOf(sampleBytes);
    const idKeys = [1, ...(c.type === 'statusEvent' ? [4] : [])];
    for (const k of idKeys) {
      for (const bad of ['', 'a/b', 'a+', '#', '+', 'a b', 'caf\u00e9']) {
        expect(c.parse(reencode(m, (x) => x.set(k, bad))).code, JSON.stringify(bad)).toBe(CODES.BAD_VALUE);
      }
      expect(c.parse(reencode(m, (x) => x.set(k, 'a'.repeat(65)))).code).toBe(CODES.TOO_LARGE);
      expect(c.parse(reencode(m, (x) => x.set(k, 'a'.repeat(64)))).ok).toBe(true);
    }
  });

  it('rejects negative and oversize integers', () => {
    const m = mapOf(sampleBytes);
    for (const [k, v] of m) {
      if (typeof v !== 'number' || k === 0) continue;
      expect(c.parse(reencode(m, (x) => x.set(k, -1))).code, `key ${k}`).toBe(CODES.BAD_VALUE);
      expect(c.parse(reencode(m, (x) => x.set(k, 2 ** 32 + 1))).code, `key ${k}`).toBe(CODES.BAD_VALUE);
    }
  });

  it('encoders refuse values outside the schema', () => {
    expect(() => encode({ ...c.sample, campaign: 'a/b' })).toThrow(RangeError);
  });
});

describe('message-specific rules', () => {
  const am = mapOf(encodeAnnouncement(cases[0].sample as never));
  const br = { campaign: 'c1', requestId: 1 };

  it('announcement: chunk/block sizes are powers of two, blocks whole chunks, page count consistent', () => {
    expect(parseAnnouncement(reencode(am, (x) => x.set(7, 3000))).code).toBe(CODES.BAD_VALUE);
    expect(parseAnnouncement(reencode(am, (x) => x.set(8, 2048))).code).toBe(CODES.BAD_VALUE); // block < chunk
    expect(parseAnnouncement(reencode(am, (x) => x.set(8, 131072))).code).toBe(CODES.BAD_VALUE); // block > maxBlockBytes
    expect(parseAnnouncement(reencode(am, (x) => x.set(9, 3))).code).toBe(CODES.BAD_VALUE);
    expect(parseAnnouncement(reencode(am, (x) => x.set(4, new Uint8Array(31)))).code).toBe(CODES.BAD_VALUE);
    expect(parseAnnouncement(reencode(am, (x) => x.set(5, LIMITS.maxEnvelopeBytes + 1))).code).toBe(CODES.BAD_VALUE);
  });

  it('block request: exactly one of ranges or bitmap, ranges ascending and disjoint, few blocks', () => {
    const rm = mapOf(encodeBlockRequest({ ...br, ranges: [[0, 2]] }));
    expect(parseBlockRequest(reencode(rm, (x) => x.set(5, 0).set(6, Uint8Array.of(0x80)))).code).toBe(CODES.BAD_VALUE);
    expect(parseBlockRequest(reencode(rm, (x) => x.delete(4))).code).toBe(CODES.MISSING_FIELD);
    expect(
      parseBlockRequest(
        reencode(rm, (x) => {
          x.delete(4);
          x.set(5, 0);
        }),
      ).code,
    ).toBe(CODES.MISSING_FIELD);
    expect(parseBlockRequest(reencode(rm, (x) => x.set(4, []))).code).toBe(CODES.BAD_VALUE);
    expect(
      parseBlockRequest(
        reencode(rm, (x) =>
          x.set(4, [
            [5, 2],
            [6, 1],
          ]),
        ),
      ).code,
    ).toBe(CODES.BAD_VALUE); // overlap
    expect(
      parseBlockRequest(
        reencode(rm, (x) =>
          x.set(4, [
            [5, 2],
            [7, 1],
          ]),
        ),
      ).code,
    ).toBe(CODES.BAD_VALUE); // touching
    expect(
      parseBlockRequest(
        reencode(rm, (x) =>
          x.set(4, [
            [5, 2],
            [1, 1],
          ]),
        ),
      ).code,
    ).toBe(CODES.BAD_VALUE); // descending
    expect(parseBlockRequest(reencode(rm, (x) => x.set(4, [[5, 0]]))).code).toBe(CODES.BAD_VALUE);
    expect(parseBlockRequest(reencode(rm, (x) => x.set(4, [[5]]))).code).toBe(CODES.BAD_VALUE);
    expect(
      parseBlockRequest(
        reencode(rm, (x) =>
          x.set(4, [
            [0, 10],
            [20, 7],
          ]),
        ),
      ).code,
    ).toBe(CODES.TOO_LARGE);
    const many = Array.from({ length: LIMITS.maxRangesPerRequest + 1 }, (_, i) => [i * 2, 1]);
    expect(parseBlockRequest(reencode(rm, (x) => x.set(4, many))).code).toBe(CODES.TOO_LARGE);
    expect(parseBlockRequest(reencode(rm, (x) => x.set(4, [[LIMITS.maxImageSize, 2]]))).code).toBe(CODES.BAD_VALUE);
  });

  it('block request bitmap: bit 7 of byte 0 is the base block; no trailing zero byte; bounded', () => {
    const m: BlockRequest = { ...br, bitmapBase: 64, bitmap: Uint8Array.of(0x81, 0x00, 0x40) };
    expect(requestedBlocks(m)).toEqual([64, 71, 81]);
    expect(
      requestedBlocks({
        ...br,
        ranges: [
          [0, 2],
          [5, 1],
        ],
      }),
    ).toEqual([0, 1, 5]);
    const bm = mapOf(encodeBlockRequest(m));
    expect(parseBlockRequest(reencode(bm, (x) => x.set(6, Uint8Array.of(0x80, 0)))).code).toBe(CODES.BAD_VALUE);
    expect(parseBlockRequest(reencode(bm, (x) => x.set(6, new Uint8Array(0)))).code).toBe(CODES.BAD_VALUE);
    expect(parseBlockRequest(reencode(bm, (x) => x.set(6, new Uint8Array(LIMITS.maxBitmapBytes + 1).fill(1)))).code).toBe(CODES.TOO_LARGE);
    expect(parseBlockRequest(reencode(bm, (x) => x.set(6, Uint8Array.of(0xff, 0xff, 0x01)))).code).toBe(CODES.TOO_LARGE); // 17 blocks
    expect(parseBlockRequest(reencode(bm, (x) => x.delete(5))).code).toBe(CODES.MISSING_FIELD);
  });

  it('reply topics are publishable topics: no wildcards, no "$", bounded', () => {
    const m = mapOf(encodeManifestRequest({ ...br, replyTopic: 'a/b' }));
    for (const bad of ['a/+', 'a/#', '$SYS/x', 'a\u0000b', '']) expect(parseManifestRequest(reencode(m, (x) => x.set(3, bad))).code, bad).toBe(CODES.BAD_VALUE);
    expect(parseManifestRequest(reencode(m, (x) => x.set(3, 'a'.repeat(LIMITS.maxTopicBytes + 1)))).code).toBe(CODES.TOO_LARGE);
  });

  it('oversize payload fields are TOO_LARGE', () => {
    const big = (n: number) => new Uint8Array(n);
    expect(
      parseBlockResponse(reencode(mapOf(encodeBlockResponse({ ...br, block: 0, data: big(1) })), (x) => x.set(5, big(LIMITS.maxBlockBytes + 1)))).code,
    ).toBe(CODES.TOO_LARGE);
    expect(
      parseManifestResponse(reencode(mapOf(encodeManifestResponse({ ...br, manifest: big(1) })), (x) => x.set(4, big(LIMITS.maxEnvelopeBytes + 1)))).code,
    ).toBe(CODES.TOO_LARGE);
    const pm = mapOf(encodePageResponse({ ...br, page: 0, leaves: big(32), proof: big(0) }));
    expect(parsePageResponse(reencode(pm, (x) => x.set(5, big(LIMITS.pageLeaves * 32 + 32)))).code).toBe(CODES.TOO_LARGE);
    expect(parsePageResponse(reencode(pm, (x) => x.set(6, big(LIMITS.maxProofNodes * 32 + 32)))).code).toBe(CODES.TOO_LARGE);
    expect(parsePageResponse(reencode(pm, (x) => x.set(5, big(33)))).code).toBe(CODES.BAD_VALUE);
    expect(parsePageResponse(reencode(pm, (x) => x.set(6, big(31)))).code).toBe(CODES.BAD_VALUE);
    expect(parseBlockResponse(new Uint8Array(LIMITS.maxOtaMessageBytes + 1)).code).toBe(CODES.TOO_LARGE);
    expect(() => encodeBlockResponse({ ...br, block: 0, data: big(LIMITS.maxBlockBytes + 1) })).toThrow(RangeError);
  });

  it('a block response of the largest block fits a 128 KB broker cap with MQTT overhead', () => {
    const size = maxBlockResponseBytes();
    expect(size).toBeGreaterThan(LIMITS.maxBlockBytes);
    expect(size).toBeLessThanOrEqual(LIMITS.maxOtaMessageBytes);
    // PUBLISH: fixed header (<= 5) + topic (2 + maxTopicBytes) + packet id (2) + MQTT 5 properties
    // (correlation data <= 2 + 3 + maxTopicBytes, property length <= 4, user properties: none).
    const mqttOverhead = 5 + 2 + LIMITS.maxTopicBytes + 2 + 4 + 3 + 2 + LIMITS.maxTopicBytes;
    expect(size + mqttOverhead).toBeLessThan(128 * 1000);
  });

  it('status events: codes only for rejected/failed, progress for downloading, done <= total', () => {
    const sm = mapOf(encodeStatusEvent({ campaign: 'c1', device: 'd1', state: 'failed', code: CODES.TRANSPORT_TIMEOUT }));
    expect(parseStatusEvent(reencode(sm, (x) => x.delete(8))).code).toBe(CODES.MISSING_FIELD);
    expect(parseStatusEvent(reencode(sm, (x) => x.set(5, 4))).code).toBe(CODES.BAD_VALUE); // confirmed with a code
    expect(parseStatusEvent(reencode(sm, (x) => x.set(5, 7))).code).toBe(CODES.BAD_VALUE); // unknown state
    expect(
      parseStatusEvent(
        reencode(sm, (x) => {
          x.set(5, 1);
          x.delete(8);
        }),
      ).code,
    ).toBe(CODES.MISSING_FIELD); // downloading without n/m
    expect(parseStatusEvent(reencode(sm, (x) => x.set(6, 3))).code).toBe(CODES.MISSING_FIELD); // done without total
    expect(parseStatusEvent(reencode(sm, (x) => x.set(6, 11).set(7, 10))).code).toBe(CODES.BAD_VALUE);
    expect(parseStatusEvent(reencode(sm, (x) => x.set(8, 0))).code).toBe(CODES.BAD_VALUE);
  });

  it('error replies need only a code (a request too broken to name its id still gets one)', () => {
    const r = parseErrorReply(encodeErrorReply({ code: CODES.BAD_REQUEST }));
    expect(r.ok && r.value).toEqual({ code: CODES.BAD_REQUEST });
    expect(parseErrorReply(reencode(mapOf(encodeErrorReply({ code: 604 })), (x) => x.set(4, 0))).code).toBe(CODES.BAD_VALUE);
  });

  it('messageType dispatches known types and rejects others', () => {
    expect(messageType(encodeCbor(new Map([[0, 42]]))).code).toBe(CODES.WRONG_KIND);
    expect(messageType(encodeCbor(new Map([[1, 1]]))).code).toBe(CODES.MISSING_FIELD);
    expect(messageType(encodeCbor(7)).code).toBe(CODES.WRONG_TYPE);
    expect(messageType(new Uint8Array(0)).code).toBe(CODES.TRUNCATED);
  });
});

/** MQTT topic filter matching (MQTT 5 §4.7), for checking the filters fwseal subscribes to. */
function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

describe('topics', () => {
  it('builds the topic table of SPEC.md §12.1', () => {
    expect(topics.announce('fwseal', 'g1')).toBe('fwseal/group/g1/announce');
    expect(topics.request('fwseal', 'c1', 'd1')).toBe('fwseal/campaign/c1/req/d1');
    expect(topics.reply('acme/fleet', 'd1')).toBe('acme/fleet/device/d1/reply');
    expect(topics.status('fwseal', 'd1')).toBe('fwseal/device/d1/status');
  });

  it('servers share requests and status events through $share/fwseal/... subscriptions', () => {
    const req = topics.shared(topics.requestFilter('fwseal'));
    expect(req).toBe(`$share/${SHARE_GROUP}/fwseal/campaign/+/req/+`);
    expect(topics.shared(topics.statusFilter('fwseal'), 'blue')).toBe('$share/blue/fwseal/device/+/status');
    const filter = req.split('/').slice(2).join('/');
    expect(matches(filter, topics.request('fwseal', 'c1', 'd1'))).toBe(true);
    expect(matches(filter, topics.status('fwseal', 'd1'))).toBe(false);
    expect(matches(topics.statusFilter('fwseal'), topics.status('fwseal', 'd-9'))).toBe(true);
    expect(() => topics.shared('a/#', 'x/y')).toThrow(RangeError);
    expect(() => topics.shared('$share/x/a')).toThrow(RangeError);
  });

  it('ids: 1..64 of [A-Za-z0-9_-], never "/", "+", "#" or empty', () => {
    fc.assert(
      fc.property(idArb, (id) => {
        expect(isValidId(id)).toBe(true);
      }),
    );
    for (const bad of ['', 'a/b', '+', '#', 'a+b', 'a#', 'a'.repeat(65), ' ', '$SYS', 'x\u0000']) {
      expect(isValidId(bad), JSON.stringify(bad)).toBe(false);
      expect(() => topics.request('fwseal', bad, 'd1')).toThrow(RangeError);
      expect(() => topics.status('fwseal', bad)).toThrow(RangeError);
      expect(() => topics.announce('fwseal', bad)).toThrow(RangeError);
    }
    for (const bad of ['', '/x', 'x/', 'a//b', 'a/+', '#', '$share/x']) expect(() => topics.reply(bad, 'd1')).toThrow(RangeError);
  });

  it('parses request and status topics back to their ids', () => {
    fc.assert(
      fc.property(idArb, idArb, (c, d) => {
        const r = parseRequestTopic('acme/ota', topics.request('acme/ota', c, d));
        expect(r.ok && [r.campaign, r.device]).toEqual([c, d]);
        const s = parseStatusTopic('acme/ota', topics.status('acme/ota', d));
        expect(s.ok && s.device).toBe(d);
      }),
    );
    for (const t of [
      'fwseal/campaign/c1/req',
      'fwseal/campaign/c1/req/d1/x',
      'other/campaign/c1/req/d1',
      'fwseal/campaign/+/req/d1',
      'fwseal/device/d1/reply',
    ]) {
      expect(parseRequestTopic('fwseal', t).code, t).toBe(CODES.BAD_VALUE);
    }
    expect(parseStatusTopic('fwseal', 'fwseal/device/d1/reply').code).toBe(CODES.BAD_VALUE);
  });
});

describe('online status and staged rollout', () => {
  it('an online event carries group, version and counter, and needs no campaign', () => {
    const bytes = encodeStatusEvent({ device: 'd1', state: 'online', group: 'g1', version: '1.2.3', counter: 7 });
    const r = parseStatusEvent(bytes);
    expect(r.ok && r.value).toEqual({ device: 'd1', state: 'online', group: 'g1', version: '1.2.3', counter: 7 });
  });

  it('group goes with online only; other states need a campaign', () => {
    const state = (s: string) => STATUS_STATES.indexOf(s as never);
    const enc = (entries: [number, Encodable][]) => encodeCbor(new Map(entries) as unknown as Encodable);
    expect(
      parseStatusEvent(
        enc([
          [0, MSG.statusEvent],
          [4, 'd1'],
          [5, state('online')],
        ]),
      ).code,
    ).toBe(CODES.MISSING_FIELD);
    expect(
      parseStatusEvent(
        enc([
          [0, MSG.statusEvent],
          [1, 'c1'],
          [4, 'd1'],
          [5, state('accepted')],
          [9, 'g1'],
        ]),
      ).code,
    ).toBe(CODES.BAD_VALUE);
    expect(
      parseStatusEvent(
        enc([
          [0, MSG.statusEvent],
          [4, 'd1'],
          [5, state('accepted')],
        ]),
      ).code,
    ).toBe(CODES.MISSING_FIELD);
    expect(
      parseStatusEvent(
        enc([
          [0, MSG.statusEvent],
          [1, 'c1'],
          [4, 'd1'],
          [5, state('confirmed')],
          [10, '1.0'],
        ]),
      ).code,
    ).toBe(CODES.BAD_VALUE);
    expect(
      parseStatusEvent(
        enc([
          [0, MSG.statusEvent],
          [4, 'd1'],
          [5, state('online')],
          [9, 'g/1'],
        ]),
      ).code,
    ).toBe(CODES.BAD_VALUE);
  });

  it('rollout buckets are 32-bit, stable, and differ per campaign', () => {
    const b1 = rolloutBucket(sha256, 'c1', 'dev-1');
    expect(b1).toBe(rolloutBucket(sha256, 'c1', 'dev-1'));
    const d = sha256(new TextEncoder().encode('c1/dev-1'));
    expect(b1).toBe(new DataView(d.buffer, d.byteOffset).getUint32(0));
    const inC1 = Array.from({ length: 200 }, (_, i) => rolloutBucket(sha256, 'c1', `dev-${i}`));
    const inC2 = Array.from({ length: 200 }, (_, i) => rolloutBucket(sha256, 'c2', `dev-${i}`));
    expect(inC1.every((b) => b >= 0 && b < ROLLOUT_ALL)).toBe(true);
    expect(inC1.filter((b, i) => b < inC2[i]!).length).toBeGreaterThan(50); // independent orders
    expect(inC1.filter((b, i) => b < inC2[i]!).length).toBeLessThan(150);
  });
});

describe('multicast flag and data topic', () => {
  it('a block request may carry multicast (key 7 = 1); other values are refused', () => {
    const r = parseBlockRequest(encodeBlockRequest({ campaign: 'c1', requestId: 4, ranges: [[0, 2]], multicast: true }));
    expect(r.ok && r.value.multicast).toBe(true);
    const plain = parseBlockRequest(encodeBlockRequest({ campaign: 'c1', requestId: 4, ranges: [[0, 2]] }));
    expect(plain.ok && plain.value.multicast).toBe(undefined);
    const enc = (v: Encodable) =>
      encodeCbor(
        new Map<CborKey, Encodable>([
          [0, MSG.blockRequest],
          [1, 'c1'],
          [2, 4],
          [4, [[0, 1]]],
          [7, v],
        ]) as unknown as Encodable,
      );
    expect(parseBlockRequest(enc(1)).ok).toBe(true);
    expect(parseBlockRequest(enc(0)).code).toBe(CODES.BAD_VALUE);
    expect(parseBlockRequest(enc(2)).code).toBe(CODES.BAD_VALUE);
    expect(parseBlockRequest(enc('yes')).code).toBe(CODES.WRONG_TYPE);
  });

  it('the data topic sits under the campaign and refuses bad ids', () => {
    expect(topics.data('fwseal', 'c-1')).toBe('fwseal/campaign/c-1/data');
    expect(() => topics.data('fwseal', 'c/1')).toThrow(RangeError);
  });
});
