/**
 * The byte-level mutators and the weighted mix of all mutators (`mutate`): bit flips, interesting
 * bytes, CBOR heads with huge arguments, truncation, extension, splicing with other valid inputs,
 * deep nesting, wrongly typed items, random bytes. Positions favour item boundaries (itemOffsets),
 * which is what reaches the decoder's checks instead of string contents. The CBOR-structural
 * mutator lives in cbor-mutators.ts; it is one entry (the heaviest) of the mix here.
 */
import { bytesEqual, concatBytes } from '../../../shared/bytes.js';
import { encodeCbor } from '../../../shared/cbor.js';
import { LIMITS } from '../../../shared/limits.js';
import { fromNode, InnerNode, itemOffsets, type Node, randomValue, structural, TagNode } from './cbor-mutators.js';
import { type Rng } from './rng.js';

const cat = concatBytes;

const INTERESTING = [
  0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1f, 0x20, 0x37, 0x38, 0x3b, 0x40, 0x57, 0x58, 0x5b, 0x5f, 0x60, 0x78, 0x7b, 0x7f, 0x80, 0x81, 0x98, 0x9b,
  0x9f, 0xa0, 0xa1, 0xb8, 0xbb, 0xbf, 0xc0, 0xc6, 0xd8, 0xd9, 0xdb, 0xe0, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xff,
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

const NEST_PREFIXES = [[0x81], [0x81], [0xa1, 0x00], [0xd8, 0x62], [0x9f], [0xbf, 0x00], [0xc6], [0x82, 0x00], [0x81, 0xd8, 0x62]].map((a) =>
  Uint8Array.from(a),
);

function position(rng: Rng, b: Uint8Array, atItem: number): number {
  if (rng.chance(atItem)) {
    const offs = itemOffsets(b);
    if (offs.length > 0) return rng.pick(offs);
  }
  return rng.int(b.length + 1);
}

export type MutatorName =
  | 'flip1'
  | 'flipN'
  | 'byte'
  | 'head'
  | 'truncate'
  | 'extend'
  | 'splice'
  | 'duplicate'
  | 'delete'
  | 'nest'
  | 'wrongType'
  | 'structural'
  | 'random'
  | 'substitute';

const MUTATORS: readonly (readonly [MutatorName, number])[] = [
  ['flip1', 8],
  ['flipN', 4],
  ['byte', 8],
  ['head', 8],
  ['truncate', 6],
  ['extend', 4],
  ['splice', 5],
  ['duplicate', 3],
  ['delete', 4],
  ['nest', 4],
  ['wrongType', 4],
  ['structural', 24],
  ['random', 3],
  ['substitute', 2],
];

/** What 'extend' appends: random bytes, a random CBOR item, padding past the envelope limit, or one interesting byte. */
function extension(rng: Rng, b: Uint8Array): Uint8Array {
  const c = rng.int(4);
  return c === 0
    ? rng.bytes(rng.length(64))
    : c === 1
      ? encodeCbor(fromNode(randomValue(rng)))
      : c === 2
        ? new Uint8Array(LIMITS.maxEnvelopeBytes + 1 - Math.min(b.length, LIMITS.maxEnvelopeBytes))
        : Uint8Array.of(rng.pick(INTERESTING));
}

/** The tail of another valid input from position j, or a piece of it written over `b` at i. */
function splice(rng: Rng, b: Uint8Array, corpus: readonly Uint8Array[]): { bytes: Uint8Array; op: string } {
  const other = rng.pick(corpus);
  const i = position(rng, b, 0.5);
  const j = position(rng, other, 0.5);
  if (rng.chance(0.5)) return { bytes: cat(b.subarray(0, i), other.subarray(j)), op: 'splice' };
  const k = Math.min(other.length, j + rng.length(other.length));
  return { bytes: cat(b.subarray(0, i), other.subarray(j, k), b.subarray(Math.min(b.length, i + (k - j)))), op: 'splice-mid' };
}

/** Containers nested at, just past and far past the depth limit: inserted, or as the whole input. */
function nest(rng: Rng, b: Uint8Array): { bytes: Uint8Array; op: string } {
  const prefix = rng.pick(NEST_PREFIXES);
  const count = rng.pick([LIMITS.maxDepth, LIMITS.maxDepth + 1, 100, 1000, 10_000]);
  const deep = new Uint8Array(prefix.length * count);
  for (let i = 0; i < count; i++) deep.set(prefix, i * prefix.length);
  if (rng.chance(0.25)) return { bytes: cat(deep, Uint8Array.of(0)), op: 'nest-whole' };
  const p = position(rng, b, 0.8);
  return { bytes: cat(b.subarray(0, p), deep, b.subarray(p)), op: 'nest' };
}

/** Valid CBOR of the wrong shape: a random item, or tag 98 (COSE_Sign) around the wrong contents. */
function wrongTypeItem(rng: Rng): Node {
  const c = rng.int(4);
  let v: Node = randomValue(rng);
  if (c === 0) v = new TagNode(98, randomValue(rng));
  if (c === 1) v = new TagNode(98, [randomValue(rng), randomValue(rng), randomValue(rng), randomValue(rng)]);
  if (c === 2) v = new TagNode(98, [new Uint8Array(0), new Map(), new InnerNode(randomValue(rng)), rng.chance(0.5) ? [] : [randomValue(rng)]]);
  return v;
}

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
      return rng.chance(0.5)
        ? { bytes: cat(b.subarray(0, p), h, b.subarray(Math.min(b.length, p + h.length))), op: 'head-set' }
        : { bytes: cat(b.subarray(0, p), h, b.subarray(p)), op: 'head-insert' };
    }
    case 'truncate':
      return { bytes: b.subarray(0, b.length === 0 ? 0 : rng.int(b.length)), op: name };
    case 'extend':
      return { bytes: cat(b, extension(rng, b)), op: name };
    case 'splice':
      return splice(rng, b, corpus);
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
    case 'nest':
      return nest(rng, b);
    case 'wrongType':
      return { bytes: encodeCbor(fromNode(wrongTypeItem(rng))), op: name };
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
