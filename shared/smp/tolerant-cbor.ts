/**
 * A tolerant CBOR reader for SMP payloads (SPEC.md §13.3), separate from the strict reader in
 * cbor.ts on purpose: SMP peers do not send deterministic CBOR (Zephyr's zcbor encodes maps with
 * indefinite length, keys come in any order, some clients use longer-than-needed integer heads), and
 * the manifest path must never learn to accept any of that. This reader accepts:
 *  - definite and indefinite lengths for arrays, maps, byte and text strings (RFC 8949 §3.2)
 *  - arguments not in their shortest form, map keys in any order
 *  - half/single/double floats (as numbers), undefined (as null), tags (kept as CborTag)
 * and still rejects, with the codes of cbor.ts:
 *  - equal map keys                                  -> DUPLICATE_KEY (ambiguous: which one counts?)
 *  - integers beyond ±(2^53 - 1)                     -> TOO_LARGE
 *  - input, strings, containers above the limits     -> TOO_LARGE (checked before allocating)
 *  - nesting deeper than the limit                   -> TOO_DEEP
 *  - lengths past the end, a missing break           -> TRUNCATED
 *  - reserved additional information, stray breaks, chunks of the wrong type, invalid UTF-8 -> MALFORMED
 *  - bytes after the top-level item                  -> TRAILING_BYTES
 * Never throws. Encoding is not here: fwseal sends deterministic CBOR (encodeCbor), which every peer reads.
 */
import { concatBytes, utf8Decode } from '../bytes.js';
import { type CborKey, CborTag, type CborValue } from '../cbor.js';
import { type CodeName, fail, ok, type Result } from '../codes.js';
import { LIMITS } from '../limits.js';

export type SmpCborLimits = {
  readonly maxBytes: number;
  readonly maxDepth: number;
  readonly maxContainerEntries: number;
  readonly maxTextBytes: number;
};

/** SMP payloads: one SMP packet at most, shallow, a few hundred entries (image state lists). */
export const SMP_CBOR_LIMITS: SmpCborLimits = Object.freeze({
  maxBytes: LIMITS.maxSmpPacketBytes,
  maxDepth: LIMITS.maxDepth,
  maxContainerEntries: LIMITS.maxContainerEntries,
  maxTextBytes: LIMITS.maxTextBytes,
});

class ReadError {
  constructor(
    readonly name: Exclude<CodeName, 'OK'>,
    readonly detail: string,
  ) {}
}

const BREAK = Symbol('break');

/** Decode one CBOR item spanning all of `bytes`, tolerantly (see the module comment). Never throws. */
export function decodeSmpCbor(bytes: Uint8Array, limits: SmpCborLimits = SMP_CBOR_LIMITS): Result<{ value: CborValue }> {
  if (!(bytes instanceof Uint8Array)) return fail('WRONG_TYPE', 'input is not bytes');
  if (bytes.length > limits.maxBytes) return fail('TOO_LARGE', `input of ${bytes.length} bytes exceeds ${limits.maxBytes}`);
  if (bytes.length === 0) return fail('TRUNCATED', 'empty input');
  try {
    const reader = new TolerantReader(bytes, limits);
    const value = reader.item(0);
    if (value === BREAK) return fail('MALFORMED', 'unexpected break');
    if (reader.pos !== bytes.length) return fail('TRAILING_BYTES', `${bytes.length - reader.pos} bytes after the item`);
    return ok({ value });
  } catch (e) {
    if (e instanceof ReadError) return fail(e.name, e.detail);
    return fail('MALFORMED', 'decoder failure');
  }
}

class TolerantReader {
  pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly limits: SmpCborLimits,
  ) {}

  private err(name: Exclude<CodeName, 'OK'>, detail: string): never {
    throw new ReadError(name, `${detail} at offset ${this.pos}`);
  }

  private byte(): number {
    if (this.pos >= this.buf.length) this.err('TRUNCATED', 'unexpected end of input');
    return this.buf[this.pos++];
  }

  private remaining(): number {
    return this.buf.length - this.pos;
  }

  /** The argument of a head; -1 for indefinite length (info 31). Any width is accepted. */
  private argument(info: number): number {
    if (info < 24) return info;
    if (info === 24) return this.byte();
    if (info === 25) return this.byte() * 0x100 + this.byte();
    if (info === 26) return ((this.byte() * 0x100 + this.byte()) * 0x100 + this.byte()) * 0x100 + this.byte();
    if (info === 27) {
      const hi = ((this.byte() * 0x100 + this.byte()) * 0x100 + this.byte()) * 0x100 + this.byte();
      const lo = ((this.byte() * 0x100 + this.byte()) * 0x100 + this.byte()) * 0x100 + this.byte();
      if (hi > 0x1fffff) this.err('TOO_LARGE', 'integer above 2^53 - 1');
      return hi * 0x100000000 + lo;
    }
    if (info === 31) return -1;
    this.err('MALFORMED', 'reserved additional information');
  }

  item(depth: number): CborValue | typeof BREAK {
    const head = this.byte();
    const major = head >> 5;
    const info = head & 31;
    if (major === 7) return this.simple(info);
    const arg = this.argument(info);
    if (arg < 0 && (major === 0 || major === 1 || major === 6)) this.err('MALFORMED', 'indefinite length on an integer or tag');
    switch (major) {
      case 0:
        return arg;
      case 1:
        return -1 - arg;
      case 2:
        return arg < 0 ? this.chunks(2) : this.bytes(arg);
      case 3: {
        if (arg >= 0) this.textLength(arg);
        const raw = arg < 0 ? this.chunks(3) : this.bytes(arg);
        const text = utf8Decode(raw);
        if (text === null) this.err('MALFORMED', 'invalid UTF-8');
        return text;
      }
      case 4: {
        this.enter(depth);
        const items: CborValue[] = [];
        for (let i = 0; arg < 0 || i < arg; i++) {
          if (arg >= 0 && i === 0) this.count(arg, 1);
          if (i >= this.limits.maxContainerEntries && arg < 0 && this.peekBreak()) break;
          if (i >= this.limits.maxContainerEntries) this.err('TOO_LARGE', 'array with too many entries');
          const v = this.item(depth + 1);
          if (v === BREAK) {
            if (arg >= 0) this.err('MALFORMED', 'break inside a definite array');
            break;
          }
          items.push(v);
        }
        return Object.freeze(items);
      }
      case 5: {
        this.enter(depth);
        const map = new Map<CborKey, CborValue>();
        for (let i = 0; arg < 0 || i < arg; i++) {
          if (arg >= 0 && i === 0) this.count(arg, 2);
          if (i >= this.limits.maxContainerEntries && arg < 0 && this.peekBreak()) break;
          if (i >= this.limits.maxContainerEntries) this.err('TOO_LARGE', 'map with too many entries');
          const key = this.item(depth + 1);
          if (key === BREAK) {
            if (arg >= 0) this.err('MALFORMED', 'break inside a definite map');
            break;
          }
          if (typeof key !== 'number' && typeof key !== 'string') this.err('WRONG_TYPE', 'map key is not an integer or text');
          if (map.has(key)) this.err('DUPLICATE_KEY', `duplicate map key ${String(key)}`);
          const value = this.item(depth + 1);
          if (value === BREAK) this.err('MALFORMED', 'break where a map value was expected');
          map.set(key, value);
        }
        return map;
      }
      default: {
        if (depth + 1 > this.limits.maxDepth) this.err('TOO_DEEP', 'nesting too deep');
        const inner = this.item(depth + 1);
        if (inner === BREAK) this.err('MALFORMED', 'break as a tag content');
        return new CborTag(arg, inner);
      }
    }
  }

  private peekBreak(): boolean {
    if (this.pos < this.buf.length && this.buf[this.pos] === 0xff) {
      this.pos++;
      return true;
    }
    return false;
  }

  private enter(depth: number): void {
    if (depth + 1 > this.limits.maxDepth) this.err('TOO_DEEP', 'nesting too deep');
  }

  /** A definite container's count is checked before anything is allocated for it. */
  private count(count: number, itemsPerEntry: number): void {
    if (count > this.limits.maxContainerEntries) this.err('TOO_LARGE', `container of ${count} entries`);
    if (count * itemsPerEntry > this.remaining()) this.err('TRUNCATED', 'container longer than the input');
  }

  private textLength(length: number): void {
    if (length > this.limits.maxTextBytes) this.err('TOO_LARGE', `text of ${length} bytes`);
  }

  private bytes(length: number): Uint8Array {
    if (length > this.remaining()) this.err('TRUNCATED', `string of ${length} bytes past the end`);
    const out = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  /** An indefinite-length string: definite chunks of the same major type up to a break (§3.2.3). */
  private chunks(major: 2 | 3): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const head = this.byte();
      if (head === 0xff) break;
      if (head >> 5 !== major) this.err('MALFORMED', 'chunk of another type inside an indefinite string');
      const length = this.argument(head & 31);
      if (length < 0) this.err('MALFORMED', 'nested indefinite string');
      total += length;
      if (major === 3) this.textLength(total);
      parts.push(this.bytes(length));
      if (parts.length > this.limits.maxContainerEntries) this.err('TOO_LARGE', 'string of too many chunks');
    }
    return concatBytes(...parts);
  }

  private simple(info: number): CborValue | typeof BREAK {
    if (info === 20) return false;
    if (info === 21) return true;
    if (info === 22 || info === 23) return null; // null, undefined
    if (info === 31) return BREAK;
    if (info === 24) {
      this.byte(); // a one-byte simple value: no meaning in SMP
      return null;
    }
    if (info === 25) return halfToNumber(this.byte() * 0x100 + this.byte());
    if (info === 26 || info === 27) {
      const n = info === 26 ? 4 : 8;
      if (n > this.remaining()) this.err('TRUNCATED', 'float past the end');
      const view = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, n);
      this.pos += n;
      return n === 4 ? view.getFloat32(0) : view.getFloat64(0);
    }
    if (info >= 28) this.err('MALFORMED', 'reserved additional information');
    return null; // simple values 0..19: unassigned, no meaning in SMP
  }
}

/** IEEE 754 half precision (RFC 8949 Appendix D). */
function halfToNumber(half: number): number {
  const exp = (half >> 10) & 0x1f;
  const mant = half & 0x3ff;
  const value = exp === 0 ? mant * 2 ** -24 : exp !== 31 ? (mant + 1024) * 2 ** (exp - 25) : mant === 0 ? Infinity : NaN;
  return half & 0x8000 ? -value : value;
}
