/**
 * Strict deterministic CBOR (RFC 8949 §4.2.1) for fwseal's wire objects.
 *
 * The decoder accepts only the deterministic encoding and only the subset fwseal uses: unsigned and
 * negative integers within ±(2^53 - 1), byte and text strings, definite arrays and maps (int or text
 * keys), tags, and the simple values false/true/null. It rejects (SPEC.md §CBOR profile):
 *  - arguments not in their shortest form, indefinite lengths          -> NON_DETERMINISTIC
 *  - map keys out of bytewise order                                    -> NON_DETERMINISTIC
 *  - equal map keys                                                    -> DUPLICATE_KEY
 *  - floats, undefined, other simple values, reserved additional info  -> UNSUPPORTED_FORMAT / MALFORMED
 *  - lengths past the end of input                                     -> TRUNCATED (checked before allocating)
 *  - input, strings, containers above LIMITS                           -> TOO_LARGE (checked before allocating)
 *  - nesting deeper than LIMITS.maxDepth                               -> TOO_DEEP
 *  - bytes after the top-level item                                    -> TRAILING_BYTES
 * Byte strings are returned as views into the input (no copy); callers copy what they keep.
 */
import { compareBytes, concatBytes, utf8Decode, utf8Encode } from './bytes.js';
import { type CodeName, fail, ok, type Result } from './codes.js';
// Decoding errors are thrown as the schema readers' errors (one class in the bundle, SPEC.md §10).
// fields.ts takes only types from this file, and neither file uses the other while it loads.
import { SchemaError } from './fields.js';
import { WIRE_LIMITS as LIMITS } from './limits.js';

export class CborTag {
  constructor(
    readonly tag: number,
    readonly value: CborValue,
  ) {
    Object.freeze(this);
  }
}

export type CborKey = number | string;
export type CborValue = number | string | boolean | null | Uint8Array | readonly CborValue[] | CborMap | CborTag;
export type CborMap = ReadonlyMap<CborKey, CborValue>;

export type DecodeLimits = {
  readonly maxBytes: number;
  readonly maxDepth: number;
  readonly maxContainerEntries: number;
  readonly maxTextBytes: number;
  /** Most data items in the whole input (default LIMITS.maxDecodedItems): bounds the decoded tree. */
  readonly maxItems?: number;
};

/** Limits of a signed envelope (SPEC.md §8), the default. */
export const ENVELOPE_DECODE_LIMITS: DecodeLimits = Object.freeze({
  maxBytes: LIMITS.maxEnvelopeBytes,
  maxDepth: LIMITS.maxDepth,
  maxContainerEntries: LIMITS.maxContainerEntries,
  maxTextBytes: LIMITS.maxTextBytes,
  maxItems: LIMITS.maxDecodedItems,
});

/** Decode exactly one deterministic CBOR item that spans all of `bytes`. Never throws. */
export function decodeCbor(bytes: Uint8Array, limits: DecodeLimits = ENVELOPE_DECODE_LIMITS): Result<{ value: CborValue }> {
  if (!(bytes instanceof Uint8Array)) return fail('WRONG_TYPE', 'input is not bytes');
  if (bytes.length > limits.maxBytes) return fail('TOO_LARGE', `input of ${bytes.length} bytes exceeds ${limits.maxBytes}`);
  if (bytes.length === 0) return fail('TRUNCATED', 'empty input');
  try {
    const reader = new Reader(bytes, limits);
    const value = reader.item(0);
    if (reader.pos !== bytes.length) return fail('TRAILING_BYTES', `${bytes.length - reader.pos} bytes after the item`);
    return ok({ value });
  } catch (e) {
    if (e instanceof SchemaError) return fail(e.name, e.detail);
    // A RangeError from the engine (e.g. out of memory) must still not escape as a crash.
    return fail('MALFORMED', 'decoder failure');
  }
}

class Reader {
  // `declare`d and set in the constructor: class fields would cost the ES2020 device bundle an
  // esbuild helper (SPEC.md §10 size budget).
  declare pos: number;
  /** Items left before the input is too large: every item costs memory in the decoded tree. */
  declare private budget: number;
  constructor(
    private readonly buf: Uint8Array,
    private readonly limits: DecodeLimits,
  ) {
    this.pos = 0;
    this.budget = limits.maxItems ?? LIMITS.maxDecodedItems;
  }

  // The device build drops `detail` (tools/build-device.mjs), and with it the offset: devices report codes.
  private err(name: Exclude<CodeName, 'OK'>, detail?: string): never {
    throw new SchemaError(name, detail && `${detail} at offset ${this.pos}`);
  }

  private byte(): number {
    if (this.pos >= this.buf.length) this.err('TRUNCATED', 'unexpected end of input');
    return this.buf[this.pos++];
  }

  /** Read the argument of a head (RFC 8949 §3), enforcing the shortest form (§4.2.1). */
  private argument(info: number): number {
    if (info < 24) return info;
    if (info === 31) this.err('NON_DETERMINISTIC', 'indefinite length');
    if (info > 27) this.err('MALFORMED', 'reserved additional information');
    const length = 1 << (info - 24); // 1, 2, 4 or 8 bytes, big-endian
    let value = 0;
    for (let i = 0; i < length; i++) value = value * 0x100 + this.byte();
    // Shortest form: 24..255 in one byte, then at least 2^8, 2^16, 2^32 in 2, 4, 8 bytes.
    if (value < (length === 1 ? 24 : 2 ** (4 * length))) this.err('NON_DETERMINISTIC', 'argument not in shortest form');
    // Exact up to 2^53 - 1; anything above rounds to at least 2^53, so the comparison still holds.
    if (value > Number.MAX_SAFE_INTEGER) this.err('TOO_LARGE', 'integer above 2^53 - 1');
    return value;
  }

  private remaining(): number {
    return this.buf.length - this.pos;
  }

  item(depth: number): CborValue {
    if (--this.budget < 0) this.err('TOO_LARGE', 'too many data items');
    const head = this.byte();
    const major = head >> 5;
    const info = head & 31;
    if (major === 7) return this.simple(info);
    const arg = this.argument(info);
    switch (major) {
      case 0:
        return arg;
      case 1:
        // -1 - (2^53 - 1) = -2^53 is outside ±(2^53 - 1) (SPEC.md §2).
        if (arg === Number.MAX_SAFE_INTEGER) this.err('TOO_LARGE', 'integer below -(2^53 - 1)');
        return -1 - arg;
      case 2:
        return this.bytes(arg);
      case 3: {
        if (arg > this.limits.maxTextBytes) this.err('TOO_LARGE', `text of ${arg} bytes`);
        const text = utf8Decode(this.bytes(arg));
        if (text === null) this.err('MALFORMED', 'invalid UTF-8');
        return text;
      }
      case 4: {
        this.container(arg, depth, 1);
        const items: CborValue[] = [];
        for (let i = 0; i < arg; i++) items.push(this.item(depth + 1));
        return Object.freeze(items);
      }
      case 5: {
        this.container(arg, depth, 2);
        const map = new Map<CborKey, CborValue>();
        let previousKey: Uint8Array | null = null;
        for (let i = 0; i < arg; i++) {
          const keyStart = this.pos;
          const key = this.item(depth + 1);
          if (typeof key !== 'number' && typeof key !== 'string') this.err('WRONG_TYPE', 'map key is not an integer or text');
          const keyBytes = this.buf.subarray(keyStart, this.pos);
          if (previousKey !== null) {
            const order = compareBytes(previousKey, keyBytes);
            if (order === 0) this.err('DUPLICATE_KEY', `duplicate map key ${String(key)}`);
            if (order > 0) this.err('NON_DETERMINISTIC', 'map keys out of order');
          }
          previousKey = keyBytes;
          map.set(key, this.item(depth + 1));
        }
        return map;
      }
      default: {
        // major 6: tag
        if (depth + 1 > this.limits.maxDepth) this.err('TOO_DEEP', 'nesting too deep');
        return new CborTag(arg, this.item(depth + 1));
      }
    }
  }

  /** Limits on a container are checked before anything is allocated for it. */
  private container(count: number, depth: number, itemsPerEntry: number): void {
    if (depth + 1 > this.limits.maxDepth) this.err('TOO_DEEP', 'nesting too deep');
    if (count > this.limits.maxContainerEntries) this.err('TOO_LARGE', `container of ${count} entries`);
    // Every item takes at least one byte: a count beyond the remaining input cannot be honest.
    if (count * itemsPerEntry > this.remaining()) this.err('TRUNCATED', 'container longer than the input');
  }

  private bytes(length: number): Uint8Array {
    if (length > this.remaining()) this.err('TRUNCATED', `string of ${length} bytes past the end`);
    const out = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  private simple(info: number): CborValue {
    if (info === 20) return false;
    if (info === 21) return true;
    if (info === 22) return null;
    if (info === 31) this.err('MALFORMED', 'unexpected break');
    if (info >= 28 && info <= 30) this.err('MALFORMED', 'reserved additional information');
    this.err('UNSUPPORTED_FORMAT', 'floats and simple values other than false/true/null are not used');
  }
}

// ---- Deterministic encoder (host side and Sig_structure on the device) ----

export type Encodable = number | string | boolean | null | Uint8Array | readonly Encodable[] | ReadonlyMap<CborKey, Encodable> | CborTag;

/** The head of a data item: major type and argument (RFC 8949 §3), in the shortest form. */
export function head(major: number, value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError('CBOR argument out of range');
  const m = major << 5;
  if (value < 24) return Uint8Array.of(m | value);
  if (value < 0x100) return Uint8Array.of(m | 24, value);
  if (value < 0x10000) return Uint8Array.of(m | 25, value >> 8, value & 0xff);
  if (value < 0x100000000) return Uint8Array.of(m | 26, value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff);
  const hi = Math.floor(value / 0x100000000);
  const lo = value >>> 0;
  return Uint8Array.of(m | 27, hi >>> 24, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff, lo >>> 24, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff);
}

function encodeParts(value: Encodable, out: Uint8Array[]): void {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError('only safe integers are encoded');
    out.push(value >= 0 ? head(0, value) : head(1, -1 - value));
  } else if (typeof value === 'string') {
    const b = utf8Encode(value);
    out.push(head(3, b.length), b);
  } else if (typeof value === 'boolean') {
    out.push(Uint8Array.of(value ? 0xf5 : 0xf4));
  } else if (value === null) {
    out.push(Uint8Array.of(0xf6));
  } else if (value instanceof Uint8Array) {
    out.push(head(2, value.length), value);
  } else if (value instanceof CborTag) {
    out.push(head(6, value.tag));
    encodeParts(value.value as Encodable, out);
  } else if (value instanceof Map) {
    // RFC 8949 §4.2.1: keys sorted by the bytewise order of their deterministic encodings.
    const entries = [...value.entries()].map(([k, v]) => [encodeCbor(k), v] as const);
    entries.sort((a, b) => compareBytes(a[0], b[0]));
    for (let i = 1; i < entries.length; i++) {
      if (compareBytes(entries[i - 1][0], entries[i][0]) === 0) throw new RangeError('duplicate map key');
    }
    out.push(head(5, entries.length));
    for (const [k, v] of entries) {
      out.push(k);
      encodeParts(v, out);
    }
  } else if (Array.isArray(value)) {
    out.push(head(4, value.length));
    for (const v of value) encodeParts(v, out);
  } else {
    throw new TypeError('value cannot be encoded as fwseal CBOR');
  }
}

/** Deterministic encoding (RFC 8949 §4.2.1). Throws TypeError/RangeError on values outside the profile. */
export function encodeCbor(value: Encodable): Uint8Array {
  const parts: Uint8Array[] = [];
  encodeParts(value, parts);
  return parts.length === 1 ? parts[0] : concatBytes(...parts);
}
