/**
 * The Merkle layout shared by host and device (SPEC.md §Image digests).
 *
 * Tree shape and hashes are exactly RFC 9162 §2.1: leaves are hashed as SHA-256(0x00 || d), interior
 * nodes as SHA-256(0x01 || left || right), and a tree of n > 1 leaves splits at the largest power of
 * two k < n (§2.1.1). An image is cut into fixed-size chunks, one leaf per chunk.
 *
 * Digest pages: page p carries the leaf hashes of chunks [p*128, min(n, (p+1)*128)). Because every
 * full page is an aligned subtree of 2^7 leaves, the RFC 9162 tree over the n leaves equals the
 * RFC 9162 tree whose leaves are the ceil(n/128) page roots (used as they are, not re-hashed). A page
 * is therefore proven against the manifest root with an ordinary inclusion proof (§2.1.3) of its
 * page root among the page roots.
 *
 * Pure TypeScript: no Node or DOM APIs, no npm imports, no module-level mutable state. The hash
 * function is injected. Index and size arithmetic uses plain division (not 32-bit bitwise
 * operators), so it is exact for every safe integer.
 */
import { DIGEST_BYTES, WIRE_LIMITS as LIMITS } from './limits.js';
import { consistencyPathFrom, inclusionPathFrom, type SubtreeRoots } from './merkle-proofs.js';

export { consistencyPathFrom, inclusionPathFrom, type SubtreeRoots } from './merkle-proofs.js';

/** One-shot SHA-256: returns the 32-byte digest of `data`. */
export type Sha256 = (data: Uint8Array) => Uint8Array;

/** RFC 9162 §2.1.1: MTH({d}) = HASH(0x00 || d). */
export function leafHash(sha256: Sha256, data: Uint8Array): Uint8Array {
  const buf = new Uint8Array(1 + data.length);
  buf[0] = 0x00;
  buf.set(data, 1);
  return sha256(buf);
}

/** RFC 9162 §2.1.1: HASH(0x01 || MTH(left) || MTH(right)). */
export function nodeHash(sha256: Sha256, left: Uint8Array, right: Uint8Array): Uint8Array {
  const buf = new Uint8Array(1 + left.length + right.length);
  buf[0] = 0x01;
  buf.set(left, 1);
  buf.set(right, 1 + left.length);
  return sha256(buf);
}

/** Equal-length comparison without early exit. Lengths are not secret: unequal lengths -> false. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function isDigest(x: unknown): x is Uint8Array {
  return x instanceof Uint8Array && x.length === DIGEST_BYTES;
}

function checkLeaves(leafHashes: readonly Uint8Array[]): void {
  for (let i = 0; i < leafHashes.length; i++) {
    if (!isDigest(leafHashes[i])) throw new RangeError(`leaf hash ${i} is not ${DIGEST_BYTES} bytes`);
  }
}

const half = (x: number): number => Math.floor(x / 2);
const isOdd = (x: number): boolean => x % 2 === 1;

/**
 * Streaming root over leaf hashes pushed in order; O(log n) memory.
 * Keeps the roots of the perfect subtrees that make up the leaves so far, one per set bit of the
 * size, largest first; by RFC 9162 §2.1.1 the root folds them from the right.
 */
export class MerkleAccumulator {
  // Plain (TypeScript-private) fields set in the constructor: `#` fields and class fields cost the
  // ES2020 device bundle esbuild's WeakMap helpers, about 230 B gzip (SPEC.md §10).
  declare private readonly stack: Uint8Array[];
  declare private count: number;

  constructor(private readonly sha256: Sha256) {
    this.stack = [];
    this.count = 0;
  }

  push(leafHash: Uint8Array): void {
    if (!isDigest(leafHash)) throw new RangeError(`leaf hash is not ${DIGEST_BYTES} bytes`);
    let node: Uint8Array = leafHash.slice();
    // Each trailing 1 bit of the old size is a perfect subtree the new leaf completes.
    for (let n = this.count; isOdd(n); n = half(n)) {
      node = nodeHash(this.sha256, this.stack.pop()!, node);
    }
    this.stack.push(node);
    this.count++;
  }

  get size(): number {
    return this.count;
  }

  /** RFC 9162 §2.1.1 MTH of the leaves pushed so far; SHA-256 of empty input for none. */
  root(): Uint8Array {
    const s = this.stack;
    if (s.length === 0) return this.sha256(new Uint8Array(0));
    let r = s[s.length - 1];
    for (let i = s.length - 2; i >= 0; i--) r = nodeHash(this.sha256, s[i], r);
    return r.slice();
  }
}

/**
 * All levels of the RFC 9162 tree, bottom-up: levels[0] are the leaves, each next level pairs
 * neighbours and carries a lone last node up unchanged. This builds exactly the §2.1.1 tree (split at
 * the largest power of two), with n - 1 node hashes in all.
 */
function buildLevels(sha256: Sha256, leafHashes: readonly Uint8Array[]): (readonly Uint8Array[])[] {
  const levels: (readonly Uint8Array[])[] = [leafHashes];
  let level = leafHashes;
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(sha256, level[i], level[i + 1]));
    if (isOdd(level.length)) next.push(level[level.length - 1]);
    levels.push(next);
    level = next;
  }
  return levels;
}

/** RFC 9162 §2.1.1 MTH(D[n]); SHA-256 of empty input for n = 0. Throws RangeError on a bad leaf. */
export function merkleRoot(sha256: Sha256, leafHashes: readonly Uint8Array[]): Uint8Array {
  checkLeaves(leafHashes);
  if (leafHashes.length === 0) return sha256(new Uint8Array(0));
  const levels = buildLevels(sha256, leafHashes);
  return levels[levels.length - 1][0].slice();
}

/** Subtree roots read off buildLevels: node [start, end) is levels[l][start / 2^l] for 2^l >= end - start. */
function levelsRoots(levels: readonly (readonly Uint8Array[])[]): SubtreeRoots {
  return (start, end) => {
    let l = 0;
    for (let span = 1; span < end - start; span *= 2) l++;
    return levels[l][start / 2 ** l].slice();
  };
}

/** RFC 9162 §2.1.3.1 PATH(m, D[n]), from all leaf hashes (host side). Throws RangeError on bad index. */
export function inclusionProof(sha256: Sha256, leafHashes: readonly Uint8Array[], index: number): Uint8Array[] {
  if (!Number.isSafeInteger(index) || index < 0 || index >= leafHashes.length) {
    throw new RangeError(`index ${index} out of range for ${leafHashes.length} leaves`);
  }
  checkLeaves(leafHashes);
  return inclusionPathFrom(levelsRoots(buildLevels(sha256, leafHashes)), leafHashes.length, index);
}

/**
 * Length of PATH(index, D[size]), or -1 for invalid (index, size). The path has one node per level
 * where index and size - 1 differ in their higher bits ("inner"), plus one per set bit of the common
 * prefix ("border": the right-border subtrees). Same decomposition as transparency-dev/merkle.
 */
function proofLength(index: number, size: number): number {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) return -1;
  let a = index;
  let b = size - 1;
  let inner = 0;
  for (; a !== b; a = half(a), b = half(b)) inner++;
  let border = 0;
  for (; a > 0; a = half(a)) if (isOdd(a)) border++;
  return inner + border;
}

/** Number of nodes in PATH(index, D[size]). Throws RangeError unless 0 <= index < size (safe integers). */
export function inclusionProofLength(index: number, size: number): number {
  const n = proofLength(index, size);
  if (n < 0) throw new RangeError(`index ${index} out of range for size ${size}`);
  return n;
}

function validProof(proof: readonly Uint8Array[], want: number): boolean {
  if (!Array.isArray(proof) || proof.length !== want) return false;
  for (let i = 0; i < proof.length; i++) if (!isDigest(proof[i])) return false;
  return true;
}

/**
 * RFC 9162 §2.1.3.2: the root implied by (index, size, leafHash, proof), or null if index >= size,
 * the leaf hash or a proof node is not 32 bytes, proof.length is not exactly what (index, size)
 * needs, or proof.length > LIMITS.maxProofNodes. Never throws. The caller compares the result to
 * the trusted root (constantTimeEqual).
 */
export function rootFromInclusionProof(sha256: Sha256, index: number, size: number, leafHash: Uint8Array, proof: readonly Uint8Array[]): Uint8Array | null {
  if (!Array.isArray(proof) || proof.length > LIMITS.maxProofNodes) return null;
  if (!isDigest(leafHash)) return null;
  const want = proofLength(index, size);
  if (want < 0 || !validProof(proof, want)) return null;
  // §2.1.3.2 steps 2-5.
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) return null;
    if (isOdd(fn) || fn === sn) {
      r = nodeHash(sha256, p, r);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = nodeHash(sha256, r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 ? r.slice() : null;
}

/**
 * RFC 9162 §2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), for 0 < oldSize <= n (empty when
 * oldSize = n). Throws RangeError otherwise.
 */
export function consistencyProof(sha256: Sha256, leafHashes: readonly Uint8Array[], oldSize: number): Uint8Array[] {
  const n = leafHashes.length;
  if (!Number.isSafeInteger(oldSize) || oldSize <= 0 || oldSize > n) {
    throw new RangeError(`old size ${oldSize} out of range for ${n} leaves`);
  }
  checkLeaves(leafHashes);
  return consistencyPathFrom(levelsRoots(buildLevels(sha256, leafHashes)), n, oldSize);
}

/**
 * RFC 9162 §2.1.4.2: is a tree of newSize leaves with root newRoot an append-only extension of the
 * tree of oldSize leaves with root oldRoot? Never throws.
 * - 0 < oldSize <= newSize (§2.1.4 defines proofs for a non-empty old tree only).
 * - oldSize = newSize: the proof must be empty and the roots equal (as transparency-dev/merkle).
 * - otherwise the proof must have exactly the length (oldSize, newSize) needs, all nodes 32 bytes.
 */
export function verifyConsistency(
  sha256: Sha256,
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!Number.isSafeInteger(oldSize) || !Number.isSafeInteger(newSize)) return false;
  if (oldSize <= 0 || oldSize > newSize || !Array.isArray(proof)) return false;
  if (!(oldRoot instanceof Uint8Array) || !(newRoot instanceof Uint8Array)) return false;
  if (oldSize === newSize) return proof.length === 0 && constantTimeEqual(oldRoot, newRoot);
  if (!isDigest(oldRoot) || !isDigest(newRoot)) return false;

  // Expected length: the part of PATH(oldSize - 1, D[newSize]) above the largest perfect subtree
  // ending at oldSize (2^shift leaves), plus that subtree's root unless it is the whole old tree.
  let shift = 0;
  for (let x = oldSize; !isOdd(x); x = half(x)) shift++;
  const oldIsPerfect = oldSize === 2 ** shift;
  const want = proofLength(oldSize - 1, newSize) - shift + (oldIsPerfect ? 0 : 1);
  if (proof.length > LIMITS.maxProofNodes + 1 || !validProof(proof, want)) return false;

  // §2.1.4.2 steps 1-7.
  const path = oldIsPerfect ? [oldRoot, ...proof] : proof;
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0];
  let sr = path[0];
  for (let i = 1; i < path.length; i++) {
    const c = path[i];
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      fr = nodeHash(sha256, c, fr);
      sr = nodeHash(sha256, c, sr);
      while (!isOdd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = nodeHash(sha256, sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  // Both comparisons always run (no short-circuit on the first mismatch).
  const okOld = constantTimeEqual(fr, oldRoot);
  const okNew = constantTimeEqual(sr, newRoot);
  return sn === 0 && okOld && okNew;
}

// ---------------------------------------------------------------------------------------------
// Digest pages: LIMITS.pageLeaves (= 2^LIMITS.pageHeight) leaf hashes each.

function checkCount(name: string, x: number, min: number): void {
  if (!Number.isSafeInteger(x) || x < min) throw new RangeError(`${name} ${x} is not an integer >= ${min}`);
}

/** Number of chunks of an image: ceil(imageSize / chunkSize). imageSize in 1..LIMITS.maxImageSize. */
export function chunkCount(imageSize: number, chunkSize: number): number {
  checkCount('image size', imageSize, 1);
  checkCount('chunk size', chunkSize, 1);
  if (imageSize > LIMITS.maxImageSize) throw new RangeError(`image size ${imageSize} exceeds the limit`);
  return Math.ceil(imageSize / chunkSize);
}

/** Number of digest pages for leafCount leaves: ceil(leafCount / LIMITS.pageLeaves). */
export function pageCount(leafCount: number): number {
  checkCount('leaf count', leafCount, 0);
  return Math.ceil(leafCount / LIMITS.pageLeaves);
}

/** The page holding chunk `index`. */
export function pageOfChunk(index: number): number {
  checkCount('chunk index', index, 0);
  return Math.floor(index / LIMITS.pageLeaves);
}

/** Leaves [start, end) of page `page` in a tree of leafCount leaves. Throws RangeError on a bad page. */
export function pageLeafRange(page: number, leafCount: number): { start: number; end: number } {
  const pages = pageCount(leafCount);
  if (!Number.isSafeInteger(page) || page < 0 || page >= pages) {
    throw new RangeError(`page ${page} out of range for ${pages} pages`);
  }
  const start = page * LIMITS.pageLeaves;
  return { start, end: Math.min(leafCount, start + LIMITS.pageLeaves) };
}

/** Root of one page: MTH of its 1..LIMITS.pageLeaves leaf hashes (RFC 9162 §2.1.1). */
export function pageRoot(sha256: Sha256, pageLeafHashes: readonly Uint8Array[]): Uint8Array {
  if (pageLeafHashes.length < 1 || pageLeafHashes.length > LIMITS.pageLeaves) {
    throw new RangeError(`a page holds 1..${LIMITS.pageLeaves} leaves, not ${pageLeafHashes.length}`);
  }
  return merkleRoot(sha256, pageLeafHashes);
}

/** The roots of all pages, in order (the leaves of the page tree). */
export function pageRoots(sha256: Sha256, leafHashes: readonly Uint8Array[]): Uint8Array[] {
  const roots: Uint8Array[] = [];
  for (let p = 0, n = pageCount(leafHashes.length); p < n; p++) {
    const { start, end } = pageLeafRange(p, leafHashes.length);
    roots.push(pageRoot(sha256, leafHashes.slice(start, end)));
  }
  return roots;
}

/**
 * Inclusion proof (RFC 9162 §2.1.3.1) of page `page`'s root among the page roots; verify with
 * rootFromInclusionProof(sha256, page, pageCount(n), pageRoot(...), proof). Hashes all n leaves: to
 * prove every page, use pageProofs.
 */
export function pageProof(sha256: Sha256, leafHashes: readonly Uint8Array[], page: number): Uint8Array[] {
  return inclusionProof(sha256, pageRoots(sha256, leafHashes), page);
}

/** pageProof for every page, hashing the tree once (host side). */
export function pageProofs(sha256: Sha256, leafHashes: readonly Uint8Array[]): Uint8Array[][] {
  const roots = pageRoots(sha256, leafHashes);
  const levels = levelsRoots(buildLevels(sha256, roots));
  return roots.map((_, p) => inclusionPathFrom(levels, roots.length, p));
}

/** root and every page proof from the page roots (hashes the leaves once). */
export function pageTree(sha256: Sha256, roots: readonly Uint8Array[]): { root: Uint8Array; proofs: Uint8Array[][] } {
  const levels = buildLevels(sha256, roots);
  const at = levelsRoots(levels);
  return { root: levels[levels.length - 1][0].slice(), proofs: roots.map((_, p) => inclusionPathFrom(at, roots.length, p)) };
}
