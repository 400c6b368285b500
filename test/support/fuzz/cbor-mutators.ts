/**
 * CBOR-structural mutation: an input is decoded into a mutable tree (byte strings that hold CBOR,
 * such as the payload and protected headers, opened up), one node is changed, and the tree is
 * re-encoded deterministically. This is what reaches the schema checks behind the decoder; the
 * byte-level mutators (mutators.ts) reach the decoder itself. Also: random items of any type, and
 * the offsets of item heads that the byte-level mutators aim at.
 */
import { concatBytes } from '../../../shared/bytes.js';
import { type CborKey, CborTag, type CborValue, decodeCbor, type Encodable, encodeCbor } from '../../../shared/cbor.js';
import { LIMITS } from '../../../shared/limits.js';
import { type Rng } from './rng.js';

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
export type Node = number | string | boolean | null | Uint8Array | Node[] | Map<CborKey, Node> | TagNode | InnerNode;
export class TagNode {
  constructor(
    public tag: number,
    public value: Node,
  ) {}
}
export class InnerNode {
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

export function fromNode(n: Node): Encodable {
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

const BOUNDARY_INTS = [
  0,
  1,
  2,
  3,
  7,
  8,
  16,
  17,
  23,
  24,
  255,
  256,
  511,
  512,
  513,
  4096,
  65535,
  65536,
  2 ** 31 - 1,
  2 ** 31,
  2 ** 32 - 1,
  2 ** 32,
  2 ** 53 - 1,
  -1,
  -8,
  -7,
  -24,
  -25,
  -(2 ** 32),
  -(2 ** 53 - 1),
];
const TEXTS = [
  '',
  ' ',
  'x',
  'acme-gw',
  'acme gw',
  'ACME-GW',
  '1.4.2',
  '1.4.3',
  '01.4.2',
  '1.4',
  '1.4.2-rc.1+build.5',
  '1.4.2-',
  'é',
  '\u0000',
  'a/b',
  'https://x',
  '2',
  'kid',
  'x'.repeat(65),
  'y'.repeat(257),
];

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
export function randomValue(rng: Rng, depth = 0): Node {
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
    const v =
      c === 0 ? randomText(rng) : c === 1 ? n + rng.pick([' ', 'é', '.', '-', '+', '0', '\u0000']) : c === 2 ? n.slice(0, -1) : n.repeat(rng.range(2, 40));
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
export function structural(rng: Rng, input: Uint8Array): { bytes: Uint8Array; op: string } | null {
  const d = decodeCbor(input, LOOSE);
  if (!d.ok) return null;
  const root = { v: toNode(d.value, 0) };
  const all = slots(root);
  // Prefer the deep nodes (payload fields) over the envelope's top levels.
  const s = all[rng.chance(0.7) ? Math.max(rng.int(all.length), rng.int(all.length)) : rng.int(all.length)];
  const { node, op } = mutateNode(rng, s.get());
  s.set(node);
  try {
    return { bytes: encodeCbor(fromNode(root.v)), op: `struct-${op}` };
  } catch {
    return null;
  }
}
