import { decode as cborxDecode } from 'cbor-x';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex } from '../shared/bytes.js';
import { CborTag, decodeCbor, type Encodable, encodeCbor } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';

const hex = (h: string) => fromHex(h.replace(/\s+/g, '')) as Uint8Array;
const codeOf = (h: string | Uint8Array) => {
  const r = decodeCbor(typeof h === 'string' ? hex(h) : h);
  return r.code;
};

describe('deterministic CBOR decoding (RFC 8949 §4.2.1)', () => {
  it('decodes the RFC 8949 Appendix A examples fwseal uses', () => {
    const cases: [string, unknown][] = [
      ['00', 0],
      ['17', 23],
      ['1818', 24],
      ['1903e8', 1000],
      ['1a000f4240', 1000000],
      ['1b000000e8d4a51000', 1000000000000],
      ['20', -1],
      ['3863', -100],
      ['f4', false],
      ['f5', true],
      ['f6', null],
      ['6161', 'a'],
      ['62c3bc', '\u00fc'],
      ['63e6b0b4', '\u6c34'],
      ['64f0908591', '\ud800\udd51'],
      ['80', []],
      ['83010203', [1, 2, 3]],
    ];
    for (const [h, v] of cases) {
      const r = decodeCbor(hex(h));
      expect(r.ok, h).toBe(true);
      if (r.ok) expect(r.value).toEqual(v);
    }
  });

  it('rejects arguments that are not in their shortest form', () => {
    for (const h of ['1817', '190017', '19 00ff', '1a0000ffff', '1b00000000ffffffff', '5801 00', '7801 61', '9801 00', 'b801 0000']) {
      expect(codeOf(h), h).toBe(CODES.NON_DETERMINISTIC);
    }
  });

  it('rejects indefinite lengths', () => {
    for (const h of ['5f ff', '7f ff', '9f ff', 'bf ff']) expect(codeOf(h), h).toBe(CODES.NON_DETERMINISTIC);
  });

  it('rejects map keys out of bytewise order, and duplicate keys', () => {
    expect(codeOf('a2 02 00 01 00')).toBe(CODES.NON_DETERMINISTIC);
    expect(codeOf('a2 0a 00 18 64 00')).toBe(CODES.OK); // 10 < 100 in encoded order
    expect(codeOf('a2 01 00 01 00')).toBe(CODES.DUPLICATE_KEY);
    expect(codeOf('a2 6161 00 6161 00')).toBe(CODES.DUPLICATE_KEY);
    expect(codeOf('a2 6162 00 6161 00')).toBe(CODES.NON_DETERMINISTIC);
  });

  it('rejects floats, undefined and other simple values', () => {
    for (const h of ['f97c00', 'fa47c35000', 'fb3ff199999999999a', 'f7', 'f0', 'f818']) expect(codeOf(h), h).toBe(CODES.UNSUPPORTED_FORMAT);
  });

  it('rejects a stray break and reserved additional information', () => {
    expect(codeOf('ff')).toBe(CODES.MALFORMED);
    expect(codeOf('1c')).toBe(CODES.MALFORMED);
  });

  it('rejects trailing bytes after the item', () => {
    expect(codeOf('00 00')).toBe(CODES.TRAILING_BYTES);
  });

  it('rejects lengths that run past the input before allocating', () => {
    expect(codeOf('5b 0000000100000000')).toBe(CODES.TRUNCATED); // 4 GiB byte string claimed
    expect(codeOf('98ff 00')).toBe(CODES.TRUNCATED); // 255 items claimed, 1 byte left
    expect(codeOf('9b 001fffffffffffff')).toBe(CODES.TOO_LARGE); // above the container limit
    expect(codeOf('42 00')).toBe(CODES.TRUNCATED);
    expect(codeOf('')).toBe(CODES.TRUNCATED);
  });

  it('rejects integers above 2^53 - 1', () => {
    expect(codeOf('1b 0020000000000000')).toBe(CODES.TOO_LARGE);
    expect(codeOf('1b 001fffffffffffff')).toBe(CODES.OK);
  });

  it('rejects integers below -(2^53 - 1): -2^53 is major type 1 with argument 2^53 - 1', () => {
    expect(codeOf('3b 001fffffffffffff')).toBe(CODES.TOO_LARGE);
    expect(codeOf('3b 001ffffffffffffe')).toBe(CODES.OK);
    expect(decodeCbor(hex('3b 001ffffffffffffe'))).toMatchObject({ value: -Number.MAX_SAFE_INTEGER });
  });

  it('refuses more than maxDecodedItems data items in one input, counted as they are read', () => {
    // [[255 zeros], [k zeros]]: 1 + 1 + 255 + 1 + k items.
    const at = (total: number) => Uint8Array.from([0x82, 0x98, 0xff, ...new Uint8Array(255), 0x98, total - 258, ...new Uint8Array(total - 258)]);
    expect(codeOf(at(LIMITS.maxDecodedItems))).toBe(CODES.OK);
    expect(codeOf(at(LIMITS.maxDecodedItems + 1))).toBe(CODES.TOO_LARGE);
    expect(decodeCbor(at(LIMITS.maxDecodedItems + 1), { maxBytes: 1000, maxDepth: 8, maxContainerEntries: 256, maxTextBytes: 256, maxItems: 1000 }).code).toBe(
      CODES.OK,
    );
  });

  it('rejects invalid UTF-8 in text strings', () => {
    for (const h of ['62 c0 80', '63 ed a0 80', '64 f4 90 80 80', '61 80', '62 e6 b0']) expect(codeOf(h), h).toBe(CODES.MALFORMED);
  });

  it('stops at the nesting limit', () => {
    const deep = new Uint8Array(LIMITS.maxDepth + 1).fill(0x81);
    expect(codeOf(Uint8Array.from([...deep, 0x00]))).toBe(CODES.TOO_DEEP);
    const ok = new Uint8Array(LIMITS.maxDepth).fill(0x81);
    expect(codeOf(Uint8Array.from([...ok, 0x00]))).toBe(CODES.OK);
    const huge = new Uint8Array(100_000).fill(0x81);
    expect(decodeCbor(huge, { maxBytes: 200_000, maxDepth: LIMITS.maxDepth, maxContainerEntries: 256, maxTextBytes: 256 }).code).toBe(CODES.TOO_DEEP);
  });

  it('refuses input above the size limit before decoding it', () => {
    expect(codeOf(new Uint8Array(LIMITS.maxEnvelopeBytes + 1))).toBe(CODES.TOO_LARGE);
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const r = decodeCbor(bytes);
        expect(typeof r.code).toBe('number');
      }),
      { numRuns: 5000 },
    );
  });
});

const encodable: fc.Arbitrary<Encodable> = fc.letrec<{ v: Encodable }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.integer({ min: -1e15, max: 1e15 }),
    fc.maxSafeNat(),
    fc.string({ maxLength: 20 }),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 40 }),
    fc.array(tie('v'), { maxLength: 4 }),
    fc
      .uniqueArray(fc.tuple(fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.string({ maxLength: 6 })), tie('v')), { maxLength: 4, selector: (e) => e[0] })
      .map((entries) => new Map(entries)),
  ),
})).v;

describe('deterministic CBOR encoding', () => {
  it('round-trips through the strict decoder, and re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(encodable, (v) => {
        const bytes = encodeCbor(v);
        const r = decodeCbor(bytes);
        expect(r.ok).toBe(true);
        if (r.ok) expect(encodeCbor(r.value as Encodable)).toEqual(bytes);
      }),
      { numRuns: 2000 },
    );
  });

  it('agrees with an independent decoder (cbor-x) on values', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.boolean()), { maxLength: 6 }), (v) => {
        expect(cborxDecode(encodeCbor(v))).toEqual(v);
      }),
      { numRuns: 500 },
    );
  });

  it('sorts map keys by their encoded bytes', () => {
    expect(
      encodeCbor(
        new Map<number | string, Encodable>([
          [100, 1],
          [10, 2],
          [-1, 3],
          ['a', 4],
        ]),
      ),
    ).toEqual(hex('a4 0a 02 1864 01 20 03 6161 04'));
  });

  it('encodes tags', () => {
    expect(encodeCbor(new CborTag(98, []))).toEqual(hex('d862 80'));
  });

  it('refuses values outside the profile', () => {
    expect(() => encodeCbor(1.5)).toThrow(RangeError);
    expect(() => encodeCbor(undefined as unknown as Encodable)).toThrow(TypeError);
  });
});

describe('device state record', async () => {
  const { encodeStateRecord, parseStateRecord } = await import('../shared/state.js');
  it('round-trips and rejects unknown keys and wrong kinds', () => {
    const rec = {
      sequence: 3,
      deviceClass: 'acme-gw',
      securityCounter: 7,
      trustVersion: 1,
      revocationVersion: 2,
      installed: new Uint8Array(32).fill(1),
      trialBoots: 0,
    };
    const bytes = encodeStateRecord(rec);
    const r = parseStateRecord(bytes);
    expect(r.ok && r.value).toEqual(rec);
    const withExtra = encodeCbor(
      new Map<number, Encodable>([
        [0, 4],
        [1, 1],
        [2, 3],
        [3, 'acme-gw'],
        [4, 7],
        [5, 1],
        [6, 2],
        [9, 0],
        [99, 1],
      ]),
    );
    expect(parseStateRecord(withExtra).code).toBe(CODES.UNKNOWN_KEY);
    const manifestKind = encodeCbor(
      new Map<number, Encodable>([
        [0, 1],
        [1, 1],
      ]),
    );
    expect(parseStateRecord(manifestKind).code).toBe(CODES.WRONG_KIND);
  });
});

describe('utf8Length', async () => {
  const { utf8Length, utf8Encode } = await import('../shared/bytes.js');
  it('equals the encoded length for any well-formed string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        expect(utf8Length(s)).toBe(utf8Encode(s).length);
      }),
      { numRuns: 2000 },
    );
  });
});
