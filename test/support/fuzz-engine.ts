/**
 * The fuzzer's engine (issue: "npm run fuzz"): mutated and random envelopes, trust bundles,
 * revocation lists, images, chunks and proofs are fed to the device verifier, and every call is held
 * to one oracle:
 *
 *   - it returns (never throws)                                   else a "crash"
 *   - within `hangMs` (1 s)                                       else a "hang"
 *   - a well-formed result: ok === false with a code the table knows and error === codeName(code)
 *     (or ok === true with code 0 and error 'OK')                 else a "bad result"
 *   - a rejection, unless the input is one the target legitimately accepts: one of its valid
 *     inputs (listed by construction, never by asking the verifier), or the same signed payload
 *     still carrying all of that input's signature entries unchanged            else "accepted"
 *
 * Every valid input carries exactly the signatures its thresholds need, for every target that
 * accepts it: no mutation can destroy a surplus signature and leave a still-valid object.
 *
 * Reproducible: case n of seed s draws from its own PRNG stream (sfc32 seeded from s and n), so a
 * failure is replayed from (seed, case) alone, whatever the number of runs or workers.
 * Pure functions over the fixtures; no Math.random, no clock except for measuring calls.
 */
import { bytesEqual, concatBytes, toHex } from '../../shared/bytes.js';
import { CborTag, type CborKey, type CborValue, type Encodable, decodeCbor, encodeCbor } from '../../shared/cbor.js';
import { codeName } from '../../shared/codes.js';
import { type CoseSignature, type Envelope, parseEnvelope } from '../../shared/cose.js';
import { DIGEST_BYTES, LIMITS } from '../../shared/limits.js';
import { type Manifest } from '../../shared/manifest.js';
import { inclusionProof, leafHash, pageProofs, pageRoots } from '../../shared/merkle.js';
import {
  type VerifiedTrust, imageVerifier, loadTrust, sha256, verifyChunk, verifyDigestPage, verifyManifest, verifyManifestWithTrust,
  verifyRevocations, verifyTrustUpdate,
} from '../../device/index.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust } from './fixtures.js';

// ---------------------------------------------------------------------------------------------
// PRNG: sfc32 (Doty-Humphrey's Small Fast Counter), seeded through splitmix32 from (seed, case).

function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** One independent stream per (seed, case). */
  constructor(seed: number, stream = 0) {
    const s = splitmix32(seed >>> 0);
    const t = splitmix32(s ^ (stream >>> 0));
    const u = splitmix32(t ^ Math.floor(stream / 0x100000000));
    this.a = s;
    this.b = t;
    this.c = u;
    this.d = 1;
    for (let i = 0; i < 15; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (n <= 1) return 0;
    return n <= 0x100000000 ? Math.floor((this.u32() / 0x100000000) * n) : Math.floor((this.u32() * 0x100000000 + this.u32()) / 2 ** 64 * n);
  }

  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  weighted<T>(items: readonly (readonly [T, number])[]): T {
    let total = 0;
    for (const [, w] of items) total += w;
    let r = (this.u32() / 0x100000000) * total;
    for (const [item, w] of items) {
      if (r < w) return item;
      r -= w;
    }
    return items[items.length - 1][0];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (v >>> (8 * j)) & 0xff;
    }
    return out;
  }

  /** Small lengths are the interesting ones: mostly 1..16, sometimes up to `max`. */
  length(max: number): number {
    return this.chance(0.7) ? this.range(1, Math.min(16, max)) : this.range(1, Math.max(1, max));
  }
}

// ---------------------------------------------------------------------------------------------
// CBOR helpers for the mutators.

const cat = concatBytes;

/**
 * Offsets of the CBOR item heads of `bytes`, read leniently (stops at the first thing it cannot
 * read), descending into byte strings that themselves hold CBOR (the payload, protected headers).
 * Mutating at an item boundary is what reaches the decoder's checks instead of string contents.
 */
export function itemOffsets(bytes: Uint8Array): number[] {
  const out: number[] = [];
  const walk = (base: number, end: number, depth: number): number => {
    let pos = base;
    const argument = (info: number): number => {
      if (info < 24) return info;
      const n = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : -1;
      if (n < 0 || pos + n > end) return -1;
      let v = 0;
      for (let i = 0; i < n; i++) v = v * 256 + bytes[pos + i];
      pos += n;
      return v;
    };
    const item = (d: number): boolean => {
      if (pos >= end || d > 12 || out.length > 2048) return false;
      out.push(pos);
      const head = bytes[pos++];
      const major = head >> 5;
      const info = head & 31;
      if (major === 7) return argument(info) >= 0 || info >= 20;
      const arg = argument(info);
      if (arg < 0) return false;
      if (major === 2 || major === 3) {
        if (pos + arg > end) return false;
        if (major === 2 && arg > 0 && depth < 3) {
          const mark = out.length;
          if (walk(pos, pos + arg, depth + 1) !== pos + arg) out.length = mark;
        }
        pos += arg;
        return true;
      }
      if (major === 4 || major === 5) {
        const n = major === 4 ? arg : 2 * arg;
        if (n > end - pos) return false;
        for (let i = 0; i < n; i++) if (!item(d + 1)) return false;
        return true;
      }
      if (major === 6) return item(d + 1);
      return true;
    };
    return item(0) ? pos : -1;
  };
  walk(0, bytes.length, 0);
  return out;
}

/** Decoding limits generous enough to restructure inputs that earlier mutations pushed past the device limits. */
const LOOSE = Object.freeze({ maxBytes: 1 << 20, maxDepth: 64, maxContainerEntries: 4096, maxTextBytes: 1 << 16 });

/** A mutable copy of a decoded item; byte strings that hold CBOR maps/arrays/tags are opened up. */
type Node = number | string | boolean | null | Uint8Array | Node[] | Map<CborKey, Node> | TagNode | InnerNode;
class TagNode {
  constructor(public tag: number, public value: Node) {}
}
class InnerNode {
  constructor(public value: Node) {}
}

function toNode(v: CborValue, depth: number): Node {
  if (v instanceof Uint8Array) {
    if (depth < 3 && v.length > 0) {
      const d = decodeCbor(v, LOOSE);
      if (d.ok && (d.value instanceof Map || Array.isArray(d.value) || d.value instanceof CborTag)) return new InnerNode(toNode(d.value, depth + 1));
    }
    return v.slice();
  }
  if (v instanceof CborTag) return new TagNode(v.tag, toNode(v.value, depth));
  if (v instanceof Map) {
    const m = new Map<CborKey, Node>();
    for (const [k, x] of v) m.set(k, toNode(x, depth));
    return m;
  }
  if (Array.isArray(v)) return v.map((x) => toNode(x, depth));
  return v as number | string | boolean | null;
}

function fromNode(n: Node): Encodable {
  if (n instanceof InnerNode) return encodeCbor(fromNode(n.value));
  if (n instanceof TagNode) return new CborTag(n.tag, fromNode(n.value) as CborValue);
  if (n instanceof Map) {
    const m = new Map<CborKey, Encodable>();
    for (const [k, x] of n) m.set(k, fromNode(x));
    return m;
  }
  if (Array.isArray(n)) return n.map(fromNode);
  return n;
}

type Slot = { get(): Node; set(n: Node): void };

function slots(root: { v: Node }): Slot[] {
  const out: Slot[] = [];
  const visit = (s: Slot): void => {
    out.push(s);
    const n = s.get();
    if (n instanceof InnerNode || n instanceof TagNode) visit({ get: () => n.value, set: (x) => (n.value = x) });
    else if (n instanceof Map) for (const k of n.keys()) visit({ get: () => n.get(k) as Node, set: (x) => n.set(k, x) });
    else if (Array.isArray(n)) for (let i = 0; i < n.length; i++) visit({ get: () => n[i], set: (x) => (n[i] = x) });
  };
  visit({ get: () => root.v, set: (x) => (root.v = x) });
  return out;
}

const BOUNDARY_INTS = [0, 1, 2, 3, 7, 8, 16, 17, 23, 24, 255, 256, 511, 512, 513, 4096, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -8, -7, -24, -25, -(2 ** 32), -(2 ** 53 - 1)];
const TEXTS = ['', ' ', 'x', 'acme-gw', 'acme gw', 'ACME-GW', '1.4.2', '1.4.3', '01.4.2', '1.4', '1.4.2-rc.1+build.5', '1.4.2-', 'é', '\u0000', 'a/b', 'https://x', '2', 'kid', 'x'.repeat(65), 'y'.repeat(257)];

function randomText(rng: Rng): string {
  if (rng.chance(0.6)) return rng.pick(TEXTS);
  const n = rng.length(80);
  let s = '';
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.chance(0.9) ? rng.range(0x20, 0x7e) : rng.range(0xa0, 0x2fff));
  return s;
}

function randomBytesValue(rng: Rng): Uint8Array {
  return rng.bytes(rng.pick([0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, rng.range(0, 300)]));
}

/** A random item of any type: the "valid CBOR, wrong structure" inputs. */
function randomValue(rng: Rng, depth = 0): Node {
  const kind = rng.int(depth > 2 ? 6 : 10);
  switch (kind) {
    case 0:
      return rng.pick(BOUNDARY_INTS);
    case 1:
      return rng.range(-100, 100);
    case 2:
      return randomText(rng);
    case 3:
      return randomBytesValue(rng);
    case 4:
      return rng.pick([true, false, null]);
    case 5:
      return rng.chance(0.5) ? rng.pick(BOUNDARY_INTS) : randomText(rng);
    case 6:
    case 7: {
      const n = rng.range(0, 4);
      const a: Node[] = [];
      for (let i = 0; i < n; i++) a.push(randomValue(rng, depth + 1));
      return a;
    }
    case 8: {
      const m = new Map<CborKey, Node>();
      const n = rng.range(0, 4);
      for (let i = 0; i < n; i++) m.set(rng.chance(0.5) ? rng.range(-3, 12) : randomText(rng), randomValue(rng, depth + 1));
      return m;
    }
    default:
      return new TagNode(rng.pick([98, 98, 18, 24, 0, 1, 55799, 2 ** 32]), randomValue(rng, depth + 1));
  }
}

function typeOf(n: Node): string {
  if (n instanceof InnerNode) return 'inner';
  if (n instanceof TagNode) return 'tag';
  if (n instanceof Map) return 'map';
  if (Array.isArray(n)) return 'array';
  if (n instanceof Uint8Array) return 'bytes';
  return n === null ? 'null' : typeof n;
}

function otherType(rng: Rng, n: Node): Node {
  for (let i = 0; i < 8; i++) {
    const v = randomValue(rng);
    if (typeOf(v) !== typeOf(n)) return v;
  }
  return typeOf(n) === 'number' ? 'x' : 0;
}

function nested(rng: Rng, inner: Node): Node {
  let v = inner;
  const depth = rng.pick([LIMITS.maxDepth, LIMITS.maxDepth + 1, 16, 100]);
  for (let i = 0; i < depth; i++) v = rng.chance(0.7) ? [v] : rng.chance(0.5) ? new Map<CborKey, Node>([[1, v]]) : new TagNode(98, v);
  return v;
}

/** One change to one node of the decoded structure: reaches the schema checks behind the decoder. */
function mutateNode(rng: Rng, n: Node): { node: Node; op: string } {
  const generic = rng.int(10);
  if (generic === 0) return { node: otherType(rng, n), op: 'retype' };
  if (generic === 1) return { node: nested(rng, n), op: 'nest' };
  if (generic === 2) return { node: rng.chance(0.5) ? [n] : new TagNode(rng.pick([98, 24, 0]), n), op: 'wrap' };
  if (typeof n === 'number') {
    const c = rng.int(3);
    const v = c === 0 ? rng.pick(BOUNDARY_INTS) : c === 1 ? n + 1 : n - 1;
    return { node: Number.isSafeInteger(v) ? v : 0, op: 'int' };
  }
  if (typeof n === 'string') {
    const c = rng.int(4);
    const v = c === 0 ? randomText(rng) : c === 1 ? n + rng.pick([' ', 'é', '.', '-', '+', '0', '\u0000']) : c === 2 ? n.slice(0, -1) : n.repeat(rng.range(2, 40));
    return { node: v, op: 'text' };
  }
  if (n instanceof Uint8Array) {
    const c = rng.int(4);
    if (c === 0 && n.length > 0) {
      const b = n.slice();
      b[rng.int(b.length)] ^= 1 << rng.int(8);
      return { node: b, op: 'bytes-flip' };
    }
    if (c === 1) return { node: n.subarray(0, Math.max(0, n.length - rng.length(n.length || 1))), op: 'bytes-short' };
    if (c === 2) return { node: cat(n, rng.bytes(rng.length(40))), op: 'bytes-long' };
    return { node: randomBytesValue(rng), op: 'bytes-random' };
  }
  if (Array.isArray(n)) {
    const a = n.slice();
    const c = rng.int(6);
    if (c === 0 && a.length > 0) a.splice(rng.int(a.length), 1);
    else if (c === 1) a.splice(rng.int(a.length + 1), 0, randomValue(rng));
    else if (c === 2 && a.length > 0) a.splice(rng.int(a.length + 1), 0, a[rng.int(a.length)]);
    else if (c === 3 && a.length > 1) a.reverse();
    else if (c === 4) return { node: [], op: 'array-empty' };
    else {
      const target = rng.pick([LIMITS.maxSignatures + 1, LIMITS.maxRoleKeys + 1, LIMITS.maxRevokedKeys + 1, LIMITS.maxContainerEntries + 1]);
      while (a.length < target) a.push(n.length > 0 && rng.chance(0.8) ? n[a.length % n.length] : rng.range(0, 23));
      return { node: a, op: 'array-grow' };
    }
    return { node: a, op: 'array' };
  }
  if (n instanceof Map) {
    const m = new Map(n);
    const keys = [...m.keys()];
    const c = rng.int(5);
    if (c === 0 && keys.length > 0) m.delete(rng.pick(keys));
    else if (c === 1) m.set(rng.chance(0.6) ? rng.pick([-1, 11, 12, 23, 24, 99, 256, 2 ** 32]) : randomText(rng), randomValue(rng));
    else if (c === 2 && keys.length > 0) {
      const k = rng.pick(keys);
      const v = m.get(k) as Node;
      m.delete(k);
      m.set(typeof k === 'number' ? (rng.chance(0.5) ? String(k) : k + rng.pick([1, -1, 24])) : rng.range(0, 12), v);
    } else if (c === 3) return { node: new Map(), op: 'map-empty' };
    else if (keys.length > 0) m.set(rng.pick(keys), randomValue(rng));
    return { node: m, op: 'map' };
  }
  if (n instanceof InnerNode) return { node: randomBytesValue(rng), op: 'inner-bytes' };
  if (n instanceof TagNode) return { node: new TagNode(rng.pick([0, 24, 96, 97, 99, 18, 2 ** 32]), n.value), op: 'tag' };
  return { node: otherType(rng, n), op: 'retype' };
}

/** Decode, change one node (possibly inside the payload), re-encode deterministically. */
function structural(rng: Rng, input: Uint8Array): { bytes: Uint8Array; op: string } | null {
  const d = decodeCbor(input, LOOSE);
  if (!d.ok) return null;
  const root = { v: toNode(d.value, 0) };
  const all = slots(root);
  // Prefer the deep nodes (payload fields) over the envelope's top levels.
  const s = all[rng.chance(0.7) ? Math.max(rng.int(all.length), rng.int(all.length)) : rng.int(all.length)];
  const { node, op } = mutateNode(rng, s.get());
  s.set(node);
  try {
    return { bytes: encodeCbor(fromNode(root.v)), op: 'struct-' + op };
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Byte-level mutators.

const INTERESTING = [
  0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f, 0x20, 0x37, 0x38, 0x3b, 0x40, 0x57, 0x58, 0x5b, 0x5f, 0x60, 0x78, 0x7b,
  0x7f, 0x80, 0x81, 0x98, 0x9b, 0x9f, 0xa0, 0xa1, 0xb8, 0xbb, 0xbf, 0xc0, 0xc6, 0xd8, 0xd9, 0xdb, 0xe0, 0xf4, 0xf5, 0xf6, 0xf7,
  0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xff,
];

/** CBOR heads with boundary and huge arguments (0x1b/0x5b/0x9b/0xbb ... with 2^64 - 1, 2^53, ...). */
function hugeHead(rng: Rng): Uint8Array {
  const major = rng.pick([0, 1, 2, 3, 4, 5, 6, 7, 2, 4, 5]);
  const info = rng.pick([24, 25, 26, 27, 27, 27, 28, 31]);
  const len = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0;
  const arg = new Uint8Array(len);
  const style = rng.int(5);
  for (let i = 0; i < len; i++) arg[i] = style === 0 ? 0xff : style === 1 ? (i === 0 ? 0 : rng.int(256)) : rng.int(256);
  if (style === 2 && len === 8) arg.set([0x00, 0x20, 0, 0, 0, 0, 0, 0]); // 2^53
  if (style === 3 && len === 8) arg.set([0x00, 0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]); // 2^53 - 1
  if (style === 4) arg.fill(0); // not the shortest form
  return cat(Uint8Array.of((major << 5) | info), arg);
}

const NEST_PREFIXES = [[0x81], [0x81], [0xa1, 0x00], [0xd8, 0x62], [0x9f], [0xbf, 0x00], [0xc6], [0x82, 0x00], [0x81, 0xd8, 0x62]].map((a) => Uint8Array.from(a));

function position(rng: Rng, b: Uint8Array, atItem: number): number {
  if (rng.chance(atItem)) {
    const offs = itemOffsets(b);
    if (offs.length > 0) return rng.pick(offs);
  }
  return rng.int(b.length + 1);
}

export type MutatorName =
  | 'flip1' | 'flipN' | 'byte' | 'head' | 'truncate' | 'extend' | 'splice' | 'duplicate' | 'delete' | 'nest' | 'wrongType'
  | 'structural' | 'random' | 'substitute';

const MUTATORS: readonly (readonly [MutatorName, number])[] = [
  ['flip1', 8], ['flipN', 4], ['byte', 8], ['head', 8], ['truncate', 6], ['extend', 4], ['splice', 5], ['duplicate', 3],
  ['delete', 4], ['nest', 4], ['wrongType', 4], ['structural', 24], ['random', 3], ['substitute', 2],
];

function applyMutator(rng: Rng, name: MutatorName, b: Uint8Array, corpus: readonly Uint8Array[]): { bytes: Uint8Array; op: string } {
  switch (name) {
    case 'flip1':
    case 'flipN': {
      if (b.length === 0) return { bytes: Uint8Array.of(rng.int(256)), op: name };
      const out = b.slice();
      const n = name === 'flip1' ? 1 : rng.range(2, 8);
      for (let i = 0; i < n; i++) out[rng.int(out.length)] ^= 1 << rng.int(8);
      return { bytes: out, op: name };
    }
    case 'byte': {
      if (b.length === 0) return { bytes: Uint8Array.of(rng.pick(INTERESTING)), op: name };
      const out = b.slice();
      out[Math.min(out.length - 1, position(rng, b, 0.5))] = rng.pick(INTERESTING);
      return { bytes: out, op: name };
    }
    case 'head': {
      const p = position(rng, b, 0.8);
      const h = hugeHead(rng);
      // Overwrite the item head (and what follows) or insert a new head in front of it.
      return rng.chance(0.5) ? { bytes: cat(b.subarray(0, p), h, b.subarray(Math.min(b.length, p + h.length))), op: 'head-set' } : { bytes: cat(b.subarray(0, p), h, b.subarray(p)), op: 'head-insert' };
    }
    case 'truncate':
      return { bytes: b.subarray(0, b.length === 0 ? 0 : rng.int(b.length)), op: name };
    case 'extend': {
      const c = rng.int(4);
      const tail = c === 0 ? rng.bytes(rng.length(64)) : c === 1 ? encodeCbor(fromNode(randomValue(rng))) : c === 2 ? new Uint8Array(LIMITS.maxEnvelopeBytes + 1 - Math.min(b.length, LIMITS.maxEnvelopeBytes)) : Uint8Array.of(rng.pick(INTERESTING));
      return { bytes: cat(b, tail), op: name };
    }
    case 'splice': {
      const other = rng.pick(corpus);
      const i = position(rng, b, 0.5);
      const j = position(rng, other, 0.5);
      if (rng.chance(0.5)) return { bytes: cat(b.subarray(0, i), other.subarray(j)), op: name };
      const k = Math.min(other.length, j + rng.length(other.length));
      return { bytes: cat(b.subarray(0, i), other.subarray(j, k), b.subarray(Math.min(b.length, i + (k - j)))), op: 'splice-mid' };
    }
    case 'duplicate': {
      const i = position(rng, b, 0.5);
      const len = rng.length(Math.max(1, b.length - i));
      const region = b.slice(i, i + len);
      const at = rng.chance(0.5) ? i + region.length : rng.int(b.length + 1);
      return { bytes: cat(b.subarray(0, at), region, b.subarray(at)), op: name };
    }
    case 'delete': {
      const i = position(rng, b, 0.5);
      const len = rng.length(Math.max(1, b.length - i));
      return { bytes: cat(b.subarray(0, i), b.subarray(i + len)), op: name };
    }
    case 'nest': {
      const prefix = rng.pick(NEST_PREFIXES);
      const count = rng.pick([LIMITS.maxDepth, LIMITS.maxDepth + 1, 100, 1000, 10_000]);
      const deep = new Uint8Array(prefix.length * count);
      for (let i = 0; i < count; i++) deep.set(prefix, i * prefix.length);
      if (rng.chance(0.25)) return { bytes: cat(deep, Uint8Array.of(0)), op: 'nest-whole' };
      const p = position(rng, b, 0.8);
      return { bytes: cat(b.subarray(0, p), deep, b.subarray(p)), op: name };
    }
    case 'wrongType': {
      const c = rng.int(4);
      let v: Node = randomValue(rng);
      if (c === 0) v = new TagNode(98, randomValue(rng));
      if (c === 1) v = new TagNode(98, [randomValue(rng), randomValue(rng), randomValue(rng), randomValue(rng)]);
      if (c === 2) v = new TagNode(98, [new Uint8Array(0), new Map(), new InnerNode(randomValue(rng)), rng.chance(0.5) ? [] : [randomValue(rng)]]);
      return { bytes: encodeCbor(fromNode(v)), op: name };
    }
    case 'structural': {
      const r = structural(rng, b);
      return r ?? applyMutator(rng, 'byte', b, corpus);
    }
    case 'random': {
      const n = rng.chance(0.05) ? rng.range(LIMITS.maxEnvelopeBytes, LIMITS.maxEnvelopeBytes + 4096) : rng.chance(0.1) ? 0 : rng.length(600);
      return { bytes: rng.bytes(n), op: name };
    }
    case 'substitute': {
      const others = corpus.filter((c) => !bytesEqual(c, b));
      return { bytes: others.length > 0 ? rng.pick(others) : rng.bytes(8), op: name };
    }
  }
}

/** One to four stacked mutations of `base`. */
export function mutate(rng: Rng, base: Uint8Array, corpus: readonly Uint8Array[]): { bytes: Uint8Array; ops: string[] } {
  if (corpus.length === 0) corpus = [base];
  const n = rng.chance(0.6) ? 1 : rng.range(2, 4);
  let b = base;
  const ops: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = applyMutator(rng, rng.weighted(MUTATORS), b, corpus);
    b = r.bytes;
    ops.push(r.op);
    // A re-encoded structural change is what reaches the schema checks: mostly leave it alone.
    if (r.op.startsWith('struct-') && rng.chance(0.7)) break;
  }
  return { bytes: b, ops };
}

// ---------------------------------------------------------------------------------------------
// Targets.

/** One prepared call: what was fed, how to call, and whether acceptance would be legitimate. */
export type FuzzCase = {
  /** The mutated input (for the report: printed as hex). */
  readonly input: Uint8Array;
  /** Which argument was mutated, and how. */
  readonly note: string;
  /** The mutators applied, in order. */
  readonly ops: readonly string[];
  run(): unknown;
  /** Called only when the call accepted: true when the input is one this target may accept. */
  legit(): boolean;
};

export type FuzzTarget = {
  readonly name: string;
  /** Relative share of the runs. */
  readonly weight: number;
  make(rng: Rng, corpus: readonly Uint8Array[]): FuzzCase;
  /** null when the target's valid inputs are accepted as they are (checked once per world). */
  selfCheck?(): string | null;
};

/**
 * The acceptance oracle for a byte-string argument: true when `input` is one of the valid inputs, or
 * carries the same signed payload as one of them together with every one of its signature entries,
 * unchanged (in any order, possibly repeated, possibly next to extra entries). The valid inputs'
 * signatures are exactly what their thresholds need, so those entries alone are a valid approval,
 * and extra entries cannot take it away ("unknown key ids are ignored", "a signature counts once
 * per distinct key id"); the fuzzer cannot forge a signature. Any other accepted input has lost or
 * altered a needed signature, or changed the payload: a finding.
 */
export function legitimateInputs(accept: readonly Uint8Array[]): (input: Uint8Array) => boolean {
  const parsed: Envelope[] = [];
  for (const a of accept) {
    const e = parseEnvelope(a);
    if (e.ok) parsed.push(e.envelope);
  }
  const same = (s: CoseSignature, t: CoseSignature): boolean => bytesEqual(t.kid, s.kid) && bytesEqual(t.signature, s.signature);
  return (input) => {
    if (accept.some((a) => bytesEqual(a, input))) return true;
    const e = parseEnvelope(input);
    if (!e.ok) return false;
    const mine = e.envelope.signatures;
    return parsed.some((v) => bytesEqual(v.payload, e.envelope.payload) && v.signatures.every((t) => mine.some((s) => same(s, t))));
  };
}

/**
 * A target whose one mutated argument is a byte string. `accept` lists, by construction (never by
 * asking the verifier), every input the call may accept; the first is the usual starting point.
 * `refuse` are validly signed inputs of the same kind that policy must refuse: used as they are or
 * as starting points now and then, they reach the policy codes that no mutation of a signed object
 * can (a mutation breaks the signature first).
 */
export function bytesTarget(
  name: string, weight: number, inputs: { accept: readonly Uint8Array[]; refuse?: readonly Uint8Array[] }, call: (input: Uint8Array) => unknown,
): FuzzTarget {
  const acceptable = inputs.accept;
  const refuse = inputs.refuse ?? [];
  const isLegit = legitimateInputs(acceptable);
  const pick = (rng: Rng, corpus: readonly Uint8Array[]): { bytes: Uint8Array; ops: string[] } => {
    const r = rng.u32() / 0x100000000;
    if (refuse.length > 0 && r < 0.04) return { bytes: rng.pick(refuse), ops: ['policy'] };
    const base = refuse.length > 0 && r < 0.1 ? rng.pick(refuse) : r < 0.15 ? rng.pick(acceptable) : acceptable[0];
    return mutate(rng, base, corpus);
  };
  return {
    name,
    weight,
    selfCheck() {
      for (const a of acceptable) {
        const r = call(a) as { ok?: unknown; error?: unknown };
        if (r.ok !== true) return `${name}: a valid input is rejected with ${String(r.error)}`;
      }
      return null;
    },
    make(rng, corpus) {
      const m = pick(rng, corpus);
      const input = m.bytes;
      return {
        input,
        note: m.ops.join('+'),
        ops: m.ops,
        run: () => call(input),
        legit: () => isLegit(input),
      };
    },
  };
}

/** Valid inputs from the deterministic fixtures; every signed object carries exactly its threshold of needed signatures. */
export type World = {
  readonly corpus: readonly Uint8Array[];
  readonly targets: readonly FuzzTarget[];
};

function must<T extends { ok: boolean }>(r: T, what: string): Extract<T, { ok: true }> {
  if (!r.ok) throw new Error(`fuzz fixture ${what} does not verify: ${JSON.stringify(r)}`);
  return r as Extract<T, { ok: true }>;
}

const WEIRD_BYTES: readonly (() => unknown)[] = [
  () => undefined, () => null, () => 0, () => NaN, () => 'a1', () => true, () => [0xd8, 0x62, 0x84], () => ({}), () => ({ length: 4, 0: 0xd8 }),
  () => new Uint16Array(4), () => new Int8Array(4), () => new ArrayBuffer(8), () => new DataView(new ArrayBuffer(8)), () => new Float64Array(2),
  () => 1n, () => new Map(), () => (() => 0),
];
const WEIRD_INDEX: readonly unknown[] = [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 53), 2 ** 32, '0', null, undefined, 1n, [], {}];
const WEIRD_STATES: readonly unknown[] = [
  null, undefined, 0, 'state', {}, { deviceClass: '', counter: 7 }, { deviceClass: 7, counter: 7 }, { deviceClass: 'acme-gw' },
  { deviceClass: 'acme-gw', counter: -1 }, { deviceClass: 'acme-gw', counter: 1.5 }, { deviceClass: 'acme-gw', counter: NaN },
  { deviceClass: 'acme-gw', counter: 2 ** 53 }, { deviceClass: 'acme-gw', counter: '7' }, { deviceClass: 'acme-gw', counter: 7n },
  { deviceClass: 'acme-gw', counter: 7, revocations: 'x' }, { deviceClass: 'acme-gw', counter: 7, revocations: [1, 2] },
  { deviceClass: 'acme-gw', counter: 7, revocationVersion: -1 }, { deviceClass: 'acme-gw', counter: 7, trustVersion: Infinity },
  { deviceClass: 'acme-gw', counter: 7, trustVersion: '1' },
];

/**
 * World U, the root-revocation chain of SPEC.md §6.7: root A,B,C,D 2-of-4; the device stores list v1
 * (signed by C+D) revoking A and B. Accepted: the next list that keeps A and B revoked, the stored
 * list itself, a rotation by C+D to a root without A and B. Refused: A+B's list that revokes nothing,
 * A+C's, a list that drops B, another list with version 1, A+B's rotation, and C+D's rotation whose
 * own threshold rests on A+B again.
 */
function rootRevocationWorld() {
  const [A, B, C, D, E] = ['A', 'B', 'C', 'D', 'E'].map((l) => detKey(`fuzz U/${l}`));
  const [R1, R2] = ['R1', 'R2'].map((l) => detKey(`fuzz U/${l}`));
  const rot = (root: typeof A[], signers: typeof A[]) => makeTrust({ version: 2, root, rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers });
  const trustU = makeTrust({ root: [A, B, C, D], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [C, D] });
  const revAB = makeRevocations({ version: 1, keyIds: [A.keyId, B.keyId], signers: [C, D] });
  const trust = must(loadTrust(trustU), 'trust U').trust;
  const stored = must(verifyRevocations(revAB, trust), 'stored list U').revocations;
  return {
    trust, stored,
    accept: {
      lists: [makeRevocations({ version: 2, keyIds: [A.keyId, B.keyId, R2.keyId], signers: [C, D] }), revAB],
      rotations: [rot([C, D, E], [C, D])],
    },
    refuse: {
      lists: [
        makeRevocations({ version: 2, keyIds: [], signers: [A, B] }), makeRevocations({ version: 2, keyIds: [A.keyId, B.keyId], signers: [A, C] }),
        makeRevocations({ version: 2, keyIds: [A.keyId], signers: [C, D] }), makeRevocations({ version: 1, keyIds: [A.keyId, B.keyId, R1.keyId], signers: [C, D] }),
      ],
      rotations: [rot([A, B, C, D], [A, B]), rot([A, B, E], [A, B, C, D])],
    },
  };
}

/**
 * The standard fuzz world. Every signed object carries exactly the signatures its threshold needs.
 *  - S: root A,B,C 2-of-3, release R1,R2,R3 2-of-3; trust signed by A+B; a manifest with SBOM and
 *    provenance signed by R1+R2; a revocation list v3 (R3's key id, the "revoked" manifest) signed
 *    by A+B; a rotation candidate v2 (root A,B,D,E 3-of-4, release R1,R4,R5) signed by A+B+D: A+B
 *    are exactly the old root threshold, A+B+D exactly the new one, so each is needed both for
 *    loadTrust and for verifyTrustUpdate.
 *  - T: one root key and one release key, 1-of-1: the same checks at half the Ed25519 cost.
 *  - validly signed objects that policy must refuse (another device class, a lower security
 *    counter, a revoked signer, a revoked manifest, an older revocation list, a trust bundle that
 *    skips a version, one the current root did not sign, a different bundle with the current
 *    version): mutations substitute and splice them, which reaches the policy codes.
 *  - images: a 3-chunk image (512-byte chunks, short last chunk) streamed; a 130-chunk image
 *    (2 digest pages) for single chunks, proofs and pages.
 */
export function buildWorld(): World {
  const [A, B, C, D, E, F] = ['A', 'B', 'C', 'D', 'E', 'F'].map(detKey);
  const [R1, R2, R3, R4, R5] = ['R1', 'R2', 'R3', 'R4', 'R5'].map(detKey);
  const [K, Q] = ['fuzz-root', 'fuzz-release'].map(detKey);

  const smallImage = detBytes(3 * 512 - 100, 'fuzz small image');
  const manifestS = makeManifest(smallImage, {
    chunkSize: 512,
    sbom: { digest: sha256(Uint8Array.of(1, 2, 3)), uri: 'https://example.com/fw/sbom.cdx.json' },
    provenance: { pipelineRun: 'ci-4711', sourceRevision: '3f2a9c1e' },
  });
  const trustS = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2, R3], releaseThreshold: 2, signers: [A, B] });
  const envS = makeManifestEnvelope(manifestS, [R1, R2]);
  const revokedManifest = makeManifest(smallImage, { chunkSize: 512, securityCounter: 8 });
  const envRevoked = makeManifestEnvelope(revokedManifest, [R1, R2]);
  const envRevokedDigest = must(parseEnvelope(envRevoked), 'revoked manifest envelope').envelope.payload;
  const revS = makeRevocations({ version: 3, keyIds: [R3.keyId], manifests: [sha256(envRevokedDigest)], signers: [A, B] });
  const trustV2 = makeTrust({ version: 2, root: [A, B, D, E], rootThreshold: 3, release: [R1, R4, R5], releaseThreshold: 2, signers: [A, B, D] });
  const stateS = { deviceClass: 'acme-gw', counter: 7, trustVersion: 1 };
  const stateSR = { ...stateS, revocations: revS, revocationVersion: 3 };

  const manifestT = makeManifest(smallImage, { chunkSize: 512, securityCounter: 9, version: '2.0.0-rc.1+b7' });
  const trustT = makeTrust({ root: [K], rootThreshold: 1, release: [Q], releaseThreshold: 1, signers: [K] });
  const envT = makeManifestEnvelope(manifestT, [Q]);
  const revT = makeRevocations({ version: 1, keyIds: [R1.keyId], signers: [K] });
  const stateT = { deviceClass: 'acme-gw', counter: 9 };
  const stateTR = { ...stateT, revocations: revT, revocationVersion: 1 };

  // Validly signed, refused by policy.
  const envOtherClass = makeManifestEnvelope({ ...manifestS, deviceClass: 'other-gw' }, [R1, R2]);
  const envRollback = makeManifestEnvelope({ ...manifestS, securityCounter: 6 }, [R1, R2]);
  const envRevokedSigner = makeManifestEnvelope(manifestS, [R1, R3]);
  const revOld = makeRevocations({ version: 2, keyIds: [], signers: [A, B] });
  const trustV3 = makeTrust({ version: 3, root: [A, B, C], rootThreshold: 2, release: [R4, R5], releaseThreshold: 2, signers: [A, B] });
  const trustV2Unauthorized = makeTrust({ version: 2, root: [D, E, F], rootThreshold: 2, release: [R4, R5], releaseThreshold: 2, signers: [D, E] });
  const trustV1Other = makeTrust({ version: 1, root: [A, B, C], rootThreshold: 2, release: [R4, R5], releaseThreshold: 1, signers: [A, C] });

  const u = rootRevocationWorld();

  const verifiedS: VerifiedTrust = must(loadTrust(trustS), 'trust S').trust;
  const verifiedT: VerifiedTrust = must(loadTrust(trustT), 'trust T').trust;
  const corpus = [
    envS, envT, trustS, trustT, trustV2, revS, revT,
    envRevoked, envOtherClass, envRollback, envRevokedSigner, revOld, trustV3, trustV2Unauthorized, trustV1Other,
    // (world U stays out of the shared corpus: its rotations carry signatures for two thresholds, so
    // for loadTrust some are extra, and a mutated extra signature would rightly still load)
  ];
  const allTrust = [trustS, trustT, trustV2, trustV3, trustV2Unauthorized, trustV1Other];

  const targets: FuzzTarget[] = [
    // verifyManifestWithTrust is verifyManifest after the trust bundle was loaded; the end-to-end
    // verifyManifest re-loads (and Ed25519-checks) the bundle on every call, so it costs 3-10x more
    // per case and gets fewer runs, mostly with a mutated bundle (rejected before any signature).
    bytesTarget('manifest/S', 8, { accept: [envS, envRevoked, envRevokedSigner], refuse: [envOtherClass, envRollback] }, (b) => verifyManifestWithTrust(b, verifiedS, stateS)),
    bytesTarget('manifest+revocations/S', 2, { accept: [envS], refuse: [envRevoked, envRevokedSigner, envOtherClass, envRollback] }, (b) => verifyManifestWithTrust(b, verifiedS, stateSR)),
    bytesTarget('manifest/T', 6, { accept: [envT], refuse: [envS] }, (b) => verifyManifestWithTrust(b, verifiedT, stateT)),
    bytesTarget('manifest.revocations/S', 6, { accept: [revS], refuse: [revOld, revT] }, (b) => verifyManifestWithTrust(envS, verifiedS, { ...stateS, revocations: b, revocationVersion: 3 })),
    bytesTarget('verifyManifest/T', 3, { accept: [envT], refuse: [envS] }, (b) => verifyManifest(b, trustT, stateTR)),
    bytesTarget('verifyManifest.trust/S', 7, { accept: [trustS], refuse: [trustV2, trustV3, trustV1Other] }, (b) => verifyManifest(envS, b, stateS)),
    bytesTarget('verifyManifest.trust/T', 5, { accept: [trustT], refuse: [trustS] }, (b) => verifyManifest(envT, b, stateT)),
    bytesTarget('loadTrust/S', 7, { accept: allTrust }, (b) => loadTrust(b)),
    bytesTarget('revocations/S', 10, { accept: [revS], refuse: [revOld, revT] }, (b) => verifyRevocations(b, verifiedS, 3)),
    bytesTarget('trustUpdate/S', 10, { accept: [trustV2, trustS], refuse: [trustV3, trustV2Unauthorized, trustV1Other, trustT] }, (b) => verifyTrustUpdate(b, verifiedS)),
    bytesTarget('revocations+stored/U', 6, { accept: u.accept.lists, refuse: u.refuse.lists }, (b) => verifyRevocations(b, u.trust, 1, u.stored)),
    bytesTarget('trustUpdate+stored/U', 6, { accept: u.accept.rotations, refuse: u.refuse.rotations }, (b) => verifyTrustUpdate(b, u.trust, u.stored)),
    streamTarget(manifestS, smallImage, 14),
    chunkTarget(16),
    apiTarget(envS, stateS, verifiedS, manifestS, 6),
  ];
  // The fixtures are what this comment says: every valid input is accepted where it should be.
  for (const t of targets) {
    const problem = t.selfCheck?.() ?? null;
    if (problem !== null) throw new Error(`fuzz fixture: ${problem}`);
  }
  return Object.freeze({ corpus: Object.freeze(corpus), targets: Object.freeze(targets) });
}

/** imageVerifier: the image in random pieces, with or without a digest page; one input mutated. */
function streamTarget(manifest: Manifest, image: Uint8Array, weight: number): FuzzTarget {
  const leaves: Uint8Array[] = [];
  for (let o = 0; o < image.length; o += manifest.chunkSize) leaves.push(leafHash(sha256, image.subarray(o, o + manifest.chunkSize)));
  const page = cat(...leaves);
  const proof = new Uint8Array(0); // one page: the page root is the root
  return {
    name: 'imageVerifier',
    weight,
    make(rng, corpus) {
      const which = rng.weighted([['image', 6], ['page-leaves', 2], ['page-proof', 1], ['page-index', 1]] as const);
      const withPage = which !== 'image' || rng.chance(0.5);
      const m = which === 'page-index' ? { bytes: page, ops: [] } : mutate(rng, which === 'image' ? image : which === 'page-leaves' ? page : proof, corpus.concat([image, page]));
      const img = which === 'image' ? m.bytes : image;
      const lv = which === 'page-leaves' ? m.bytes : page;
      const pf = which === 'page-proof' ? m.bytes : proof;
      const pageIndex = which === 'page-index' ? rng.pick([1, -1, 0.5, NaN, 2 ** 53, 2 ** 32]) : 0;
      const pieces: Uint8Array[] = [];
      for (let o = 0; o < img.length;) {
        const n = rng.chance(0.3) ? img.length - o : rng.range(0, 700);
        pieces.push(img.subarray(o, o + n));
        o += n;
      }
      return {
        input: which === 'image' ? img : which === 'page-leaves' ? lv : pf,
        note: `${which}${withPage ? ' (with page)' : ''} ${which === 'page-index' ? String(pageIndex) : m.ops.join('+')} in ${pieces.length} pieces`,
        ops: m.ops,
        run() {
          const v = imageVerifier(manifest);
          const sticky = (r: { ok: boolean; code?: unknown }): unknown => {
            // I1: after a failure every later call returns that failure.
            const again = v.finish() as { code?: unknown };
            return again.code === r.code ? r : { ok: false, code: -1, error: 'STICKY_FAILURE_VIOLATED', detail: `then ${String(again.code)}` };
          };
          if (withPage) {
            const r = v.addDigestPage(pageIndex, lv, pf);
            if (!r.ok) return sticky(r);
          }
          for (const p of pieces) {
            const r = v.update(p);
            if (!r.ok) return sticky(r);
          }
          return v.finish();
        },
        legit: () => bytesEqual(img, image) && (!withPage || (bytesEqual(lv, page) && bytesEqual(pf, proof) && pageIndex === 0)),
      };
    },
  };
}

/** verifyChunk and verifyDigestPage (+ checkChunk) on a 130-chunk image: chunk, proof, leaves or index mutated. */
function chunkTarget(weight: number): FuzzTarget {
  const chunkSize = 512;
  const image = detBytes(130 * chunkSize - 37, 'fuzz chunked image');
  const manifest = makeManifest(image, { chunkSize });
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < image.length; o += chunkSize) chunks.push(image.slice(o, o + chunkSize));
  const leaves = chunks.map((c) => leafHash(sha256, c));
  const proofs = chunks.map((_, i) => cat(...inclusionProof(sha256, leaves, i)));
  const pages = pageRoots(sha256, leaves).map((_, p) => cat(...leaves.slice(p * LIMITS.pageLeaves, (p + 1) * LIMITS.pageLeaves)));
  const pageProofBytes = pageProofs(sha256, leaves).map((p) => cat(...p));
  return {
    name: 'chunk',
    weight,
    make(rng, corpus) {
      const pool = corpus.concat(chunks.slice(0, 4), proofs.slice(0, 4));
      if (rng.chance(0.6)) {
        const i = rng.int(chunks.length);
        const which = rng.weighted([['chunk', 4], ['proof', 4], ['index', 1]] as const);
        const m = which === 'chunk' ? mutate(rng, chunks[i], pool) : which === 'proof' ? mutate(rng, proofs[i], pool) : { bytes: chunks[i], ops: [] };
        const index: number = which === 'index' ? (rng.chance(0.5) ? rng.int(chunks.length) : rng.pick(WEIRD_INDEX as number[])) : i;
        const chunk = which === 'chunk' ? m.bytes : chunks[i];
        const proof = which === 'proof' ? m.bytes : proofs[i];
        return {
          input: which === 'proof' ? proof : chunk,
          note: `verifyChunk ${which} i=${i} index=${String(index)} ${m.ops.join('+')}`,
          ops: m.ops,
          run: () => verifyChunk(manifest, index, chunk, proof),
          legit: () => index === i && bytesEqual(chunk, chunks[i]) && bytesEqual(proof, proofs[i]),
        };
      }
      const p = rng.int(pages.length);
      const which = rng.weighted([['leaves', 3], ['proof', 3], ['chunk', 3], ['index', 1]] as const);
      const m = which === 'leaves' ? mutate(rng, pages[p], pool) : which === 'proof' ? mutate(rng, pageProofBytes[p], pool) : { bytes: pages[p], ops: [] as string[] };
      const pageIndex: number = which === 'index' ? (rng.chance(0.5) ? rng.int(pages.length) : rng.pick(WEIRD_INDEX as number[])) : p;
      const lv = which === 'leaves' ? m.bytes : pages[p];
      const pf = which === 'proof' ? m.bytes : pageProofBytes[p];
      const ci = p * LIMITS.pageLeaves + rng.int(Math.min(LIMITS.pageLeaves, chunks.length - p * LIMITS.pageLeaves));
      const cm = which === 'chunk' ? mutate(rng, chunks[ci], pool) : { bytes: chunks[ci], ops: [] as string[] };
      const chunkIndex: number = which === 'chunk' && rng.chance(0.2) ? rng.pick([...(WEIRD_INDEX as number[]), ci + LIMITS.pageLeaves, ci + 1]) : ci;
      return {
        input: which === 'leaves' ? lv : which === 'proof' ? pf : cm.bytes,
        note: `verifyDigestPage ${which} page=${p} index=${String(pageIndex)} chunk=${String(chunkIndex)} ${m.ops.concat(cm.ops).join('+')}`,
        ops: m.ops.concat(cm.ops),
        run() {
          const r = verifyDigestPage(manifest, pageIndex, lv, pf);
          if (!r.ok || which !== 'chunk') return r;
          return r.digestPage.checkChunk(chunkIndex, cm.bytes);
        },
        legit: () => pageIndex === p && bytesEqual(lv, pages[p]) && bytesEqual(pf, pageProofBytes[p]) && chunkIndex === ci && bytesEqual(cm.bytes, chunks[ci]),
      };
    },
  };
}

/** Arguments of the wrong JavaScript type, where the API takes bytes, an index or a device state. */
function apiTarget(env: Uint8Array, state: object, verified: VerifiedTrust, manifest: Manifest, weight: number): FuzzTarget {
  const calls: readonly (readonly [string, (x: unknown) => unknown])[] = [
    ['verifyManifestWithTrust(envelope)', (x) => verifyManifestWithTrust(x as Uint8Array, verified, state as never)],
    // (revocations: undefined is the valid "no list" state, so it is left out here)
    ['verifyManifestWithTrust(revocations)', (x) => verifyManifestWithTrust(env, verified, { ...state, revocations: x ?? null } as never)],
    ['verifyManifest(trust)', (x) => verifyManifest(env, x as Uint8Array, state as never)],
    ['loadTrust', (x) => loadTrust(x as Uint8Array)],
    ['verifyRevocations', (x) => verifyRevocations(x as Uint8Array, verified, 3)],
    ['verifyTrustUpdate', (x) => verifyTrustUpdate(x as Uint8Array, verified)],
    // Objects the verifier did not produce, where it takes its own (SPEC.md §6.6).
    ['verifyManifestWithTrust(trust)', (x) => verifyManifestWithTrust(env, x as VerifiedTrust, state as never)],
    ['verifyTrustUpdate(current)', (x) => verifyTrustUpdate(env, x as VerifiedTrust)],
    ['verifyTrustUpdate(stored)', (x) => verifyTrustUpdate(env, verified, x as never)],
    ['verifyRevocations(trust)', (x) => verifyRevocations(env, x as VerifiedTrust, 3)],
    ['verifyRevocations(stored)', (x) => verifyRevocations(env, verified, 3, x as never)],
    ['imageVerifier(manifest)', (x) => imageVerifier(x as Manifest).update(new Uint8Array(4))],
    ['verifyChunk(manifest)', (x) => verifyChunk(x as Manifest, 0, new Uint8Array(512), new Uint8Array(64))],
    ['verifyChunk(chunk)', (x) => verifyChunk(manifest, 0, x as Uint8Array, new Uint8Array(64))],
    ['verifyChunk(proof)', (x) => verifyChunk(manifest, 0, new Uint8Array(512), x as Uint8Array)],
    ['verifyDigestPage(leaves)', (x) => verifyDigestPage(manifest, 0, x as Uint8Array, new Uint8Array(0))],
    ['verifyDigestPage(proof)', (x) => verifyDigestPage(manifest, 0, new Uint8Array(3 * DIGEST_BYTES), x as Uint8Array)],
    ['imageVerifier.update', (x) => imageVerifier(manifest).update(x as Uint8Array)],
    ['imageVerifier.addDigestPage', (x) => imageVerifier(manifest).addDigestPage(0, x as Uint8Array, new Uint8Array(0))],
  ];
  return {
    name: 'api-types',
    weight,
    make(rng) {
      const c = rng.int(4);
      if (c === 0) {
        const s = rng.pick(WEIRD_STATES);
        return { input: new Uint8Array(0), note: `verifyManifestWithTrust(state=${describe(s)})`, ops: ['api-state'], run: () => verifyManifestWithTrust(env, verified, s as never), legit: () => false };
      }
      if (c === 1) {
        const i = rng.pick(WEIRD_INDEX);
        const page = rng.chance(0.5);
        return {
          input: new Uint8Array(0),
          note: `${page ? 'verifyDigestPage' : 'verifyChunk'}(index=${describe(i)})`,
          ops: ['api-index'],
          run: () => (page ? verifyDigestPage(manifest, i as number, new Uint8Array(3 * DIGEST_BYTES), new Uint8Array(0)) : verifyChunk(manifest, i as number, new Uint8Array(512), new Uint8Array(64))),
          legit: () => false,
        };
      }
      const [name, call] = rng.pick(calls);
      const x = rng.pick(WEIRD_BYTES)();
      return { input: new Uint8Array(0), note: `${name}(${describe(x)})`, ops: ['api-bytes'], run: () => call(x), legit: () => false };
    },
  };
}

function describe(x: unknown): string {
  if (typeof x === 'bigint') return `${x}n`;
  if (typeof x === 'function') return 'function';
  if (x instanceof Map) return 'Map';
  if (ArrayBuffer.isView(x) || x instanceof ArrayBuffer) return (x as object).constructor.name;
  try {
    return JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)) ?? String(x);
  } catch {
    return String(x);
  }
}

// ---------------------------------------------------------------------------------------------
// The run loop and its oracle.

export type FindingKind = 'crash' | 'hang' | 'accepted' | 'bad-result';

export type Finding = {
  readonly kind: FindingKind;
  readonly seed: number;
  readonly case: number;
  readonly target: string;
  readonly note: string;
  readonly message: string;
  readonly ms: number;
  /** The mutated input, hex (the first 64 KiB of it). */
  readonly inputHex: string;
};

export type FuzzReport = {
  seed: number;
  runs: number;
  crashes: Finding[];
  hangs: Finding[];
  accepted: Finding[];
  badResults: Finding[];
  /** True totals (the finding lists keep the first `maxFindings` of each kind). */
  counts: { crashes: number; hangs: number; accepted: number; badResults: number; legitAccepted: number };
  slowestMs: number;
  slowest: { target: string; case: number; note: string } | null;
  byCode: Record<string, number>;
  byTarget: Record<string, { runs: number; ms: number; codes: Record<string, number> }>;
  byMutator: Record<string, number>;
  elapsedMs: number;
};

export type FuzzOptions = {
  runs: number;
  seed: number;
  /** Targets to use instead of the standard world's (e.g. a deliberately broken one). */
  targets?: readonly FuzzTarget[];
  corpus?: readonly Uint8Array[];
  /** Only targets whose name starts with one of these. */
  only?: readonly string[];
  /** A call slower than this counts as a hang (default 1000 ms). */
  hangMs?: number;
  /** Cases first, first + stride, ... below `runs` (for workers); defaults 0 and 1. */
  first?: number;
  stride?: number;
  /** Case numbers not to run (a CLI worker restarted after a case that never returned). */
  skip?: ReadonlySet<number>;
  maxFindings?: number;
  /** Called before and after every case (cheap: for progress and watchdogs). */
  onCaseStart?: (caseIndex: number) => void;
  onCase?: (caseIndex: number, done: number) => void;
};

let standardWorld: World | null = null;
/** The standard world, built once per process (signing and checking the fixtures takes a moment). */
export function defaultWorld(): World {
  return (standardWorld ??= buildWorld());
}

/** Pick the target and build case `index` of `seed`: the same (seed, index) always gives the same case. */
export function makeCase(seed: number, index: number, targets: readonly FuzzTarget[], corpus: readonly Uint8Array[]): { target: FuzzTarget; fuzzCase: FuzzCase } {
  const rng = new Rng(seed, index);
  const target = rng.weighted(targets.map((t) => [t, t.weight] as const));
  return { target, fuzzCase: target.make(rng, corpus) };
}

/** Judge one result: null if it is a well-formed rejection (or a legitimate acceptance). */
export function judge(result: unknown, legit: () => boolean): { kind: FindingKind; message: string } | { kind: 'ok'; code: string; legitAccepted: boolean } {
  if (result === null || typeof result !== 'object') return { kind: 'bad-result', message: `result is ${describe(result)}` };
  const r = result as { ok?: unknown; code?: unknown; error?: unknown; detail?: unknown };
  if (r.ok === true) {
    if (r.code !== 0 || r.error !== 'OK') return { kind: 'bad-result', message: `ok with code ${describe(r.code)} error ${describe(r.error)}` };
    return legit() ? { kind: 'ok', code: 'OK', legitAccepted: true } : { kind: 'accepted', message: 'a mutated input was accepted' };
  }
  if (r.ok !== false) return { kind: 'bad-result', message: `ok is ${describe(r.ok)}` };
  if (typeof r.code !== 'number') return { kind: 'bad-result', message: `code is ${describe(r.code)}` };
  const name = codeName(r.code);
  if (name === 'UNKNOWN_' + String(r.code) || r.code === 0) return { kind: 'bad-result', message: `code ${r.code} is not in the table` };
  if (r.error !== name) return { kind: 'bad-result', message: `error ${describe(r.error)} !== codeName(${r.code}) = ${name}` };
  if (r.detail !== undefined && typeof r.detail !== 'string') return { kind: 'bad-result', message: `detail is ${describe(r.detail)}` };
  return { kind: 'ok', code: name, legitAccepted: false };
}

const MAX_HEX_BYTES = 65536;

export function emptyReport(seed: number): FuzzReport {
  return {
    seed, runs: 0, crashes: [], hangs: [], accepted: [], badResults: [],
    counts: { crashes: 0, hangs: 0, accepted: 0, badResults: 0, legitAccepted: 0 },
    slowestMs: 0, slowest: null, byCode: {}, byTarget: {}, byMutator: {}, elapsedMs: 0,
  };
}

/** The targets whose name starts with one of `only` (all when `only` is empty). Case n depends on this selection. */
export function selectTargets(targets: readonly FuzzTarget[], only?: readonly string[]): readonly FuzzTarget[] {
  const chosen = only && only.length > 0 ? targets.filter((t) => only.some((p) => t.name.startsWith(p))) : targets;
  if (chosen.length === 0) throw new Error(`no fuzz target matches ${JSON.stringify(only)}`);
  return chosen;
}

/** Replay one case of the standard world (same seed, case number and `only` as the run that reported it). */
export function replayCase(seed: number, index: number, only?: readonly string[]): {
  target: string; note: string; input: Uint8Array; ms: number; result?: unknown; thrown?: unknown; verdict: string;
} {
  const world = defaultWorld();
  const { target, fuzzCase } = makeCase(seed >>> 0, index, selectTargets(world.targets, only), world.corpus);
  const t0 = performance.now();
  try {
    const result = fuzzCase.run();
    const ms = performance.now() - t0;
    const j = judge(result, () => fuzzCase.legit());
    const verdict = j.kind === 'ok' ? (j.legitAccepted ? 'accepted (legitimately: a valid input)' : `rejected with ${j.code}`) : `${j.kind}: ${j.message}`;
    return { target: target.name, note: fuzzCase.note, input: fuzzCase.input, ms, result, verdict };
  } catch (e) {
    return { target: target.name, note: fuzzCase.note, input: fuzzCase.input, ms: performance.now() - t0, thrown: e, verdict: 'crash' };
  }
}

/** Run the fuzzer in this thread. Never throws for a verifier failure: failures are in the report. */
export function runFuzz(options: FuzzOptions): FuzzReport {
  const world = options.targets ? null : defaultWorld();
  const targets = selectTargets(options.targets ?? (world as World).targets, options.only);
  const corpus = options.corpus ?? world?.corpus ?? [];
  const seed = options.seed >>> 0;
  const hangMs = options.hangMs ?? 1000;
  const maxFindings = options.maxFindings ?? 20;
  const first = options.first ?? 0;
  const stride = options.stride ?? 1;
  const report = emptyReport(seed);
  const lists: Record<FindingKind, Finding[]> = { crash: report.crashes, hang: report.hangs, accepted: report.accepted, 'bad-result': report.badResults };
  const countKey = { crash: 'crashes', hang: 'hangs', accepted: 'accepted', 'bad-result': 'badResults' } as const;
  const start = performance.now();

  for (let i = first; i < options.runs; i += stride) {
    if (options.skip?.has(i)) continue;
    options.onCaseStart?.(i);
    const { target, fuzzCase } = makeCase(seed, i, targets, corpus);
    for (const op of fuzzCase.ops) report.byMutator[op] = (report.byMutator[op] ?? 0) + 1;
    let result: unknown;
    let threw: unknown = undefined;
    let didThrow = false;
    const t0 = performance.now();
    try {
      result = fuzzCase.run();
    } catch (e) {
      didThrow = true;
      threw = e;
    }
    const ms = performance.now() - t0;
    const stats = (report.byTarget[target.name] ??= { runs: 0, ms: 0, codes: {} });
    stats.runs++;
    stats.ms += ms;
    report.runs++;
    if (ms > report.slowestMs) {
      report.slowestMs = ms;
      report.slowest = { target: target.name, case: i, note: fuzzCase.note };
    }
    const findings: { kind: FindingKind; message: string }[] = [];
    if (didThrow) findings.push({ kind: 'crash', message: threw instanceof Error ? `${threw.name}: ${threw.message}` : `threw ${describe(threw)}` });
    else {
      const j = judge(result, () => fuzzCase.legit());
      if (j.kind === 'ok') {
        report.byCode[j.code] = (report.byCode[j.code] ?? 0) + 1;
        stats.codes[j.code] = (stats.codes[j.code] ?? 0) + 1;
        if (j.legitAccepted) report.counts.legitAccepted++;
      } else findings.push(j);
    }
    if (ms > hangMs) findings.push({ kind: 'hang', message: `call took ${ms.toFixed(0)} ms (limit ${hangMs} ms)` });
    for (const f of findings) {
      report.counts[countKey[f.kind]]++;
      const list = lists[f.kind];
      if (list.length < maxFindings) {
        list.push({
          kind: f.kind, seed, case: i, target: target.name, note: fuzzCase.note, message: f.message, ms,
          inputHex: toHex(fuzzCase.input.subarray(0, MAX_HEX_BYTES)),
        });
      }
    }
    options.onCase?.(i, report.runs);
  }
  report.elapsedMs = performance.now() - start;
  return report;
}

/** Combine the reports of workers that ran disjoint cases of the same seed. */
export function mergeReports(reports: readonly FuzzReport[], maxFindings = 20): FuzzReport {
  const out = emptyReport(reports[0]?.seed ?? 0);
  for (const r of reports) {
    out.runs += r.runs;
    for (const k of ['crashes', 'hangs', 'accepted', 'badResults'] as const) {
      out.counts[k] += r.counts[k];
      out[k].push(...r[k]);
    }
    out.counts.legitAccepted += r.counts.legitAccepted;
    if (r.slowestMs > out.slowestMs) {
      out.slowestMs = r.slowestMs;
      out.slowest = r.slowest;
    }
    for (const [k, v] of Object.entries(r.byCode)) out.byCode[k] = (out.byCode[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.byMutator)) out.byMutator[k] = (out.byMutator[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.byTarget)) {
      const t = (out.byTarget[k] ??= { runs: 0, ms: 0, codes: {} });
      t.runs += v.runs;
      t.ms += v.ms;
      for (const [c, n] of Object.entries(v.codes)) t.codes[c] = (t.codes[c] ?? 0) + n;
    }
    out.elapsedMs = Math.max(out.elapsedMs, r.elapsedMs);
  }
  for (const k of ['crashes', 'hangs', 'accepted', 'badResults'] as const) {
    out[k].sort((a, b) => a.case - b.case);
    out[k].length = Math.min(out[k].length, maxFindings);
  }
  return out;
}
