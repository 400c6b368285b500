/**
 * The RFC 9162 tree of a transparency log, kept in memory so that proofs and checkpoints cost
 * O(log n) hashes at any log size (issue 19: a log of 1,000,000 entries). Every complete subtree (an
 * aligned power-of-two range of leaves) is hashed once, when its last leaf arrives, and kept in one
 * contiguous buffer per level: about 32 bytes per leaf in all, no object per node. A subtree that is
 * not complete (the right edge of a tree of some size) is folded from the complete ones below it, so
 * the tree answers for every size up to its own: the root and the proofs of any older checkpoint.
 * The proofs themselves are shared/merkle.ts's (§2.1.3.1 PATH, §2.1.4.1 PROOF), given this tree's
 * subtree roots: one construction for digest pages and the log.
 */

import { DIGEST_BYTES } from '../../shared/limits.js';
import { leafHash, nodeHash } from '../../shared/merkle.js';
import { consistencyPathFrom, inclusionPathFrom } from '../../shared/merkle-proofs.js';
import { nodeSha256 } from '../hash.js';

const EMPTY_ROOT = nodeSha256(new Uint8Array(0));

/** A growable array of 32-byte hashes in one buffer (doubling). */
class HashLevel {
  private buf = Buffer.allocUnsafe(DIGEST_BYTES * 64);
  length = 0;

  push(h: Uint8Array): void {
    if ((this.length + 1) * DIGEST_BYTES > this.buf.length) {
      const next = Buffer.allocUnsafe(this.buf.length * 2);
      this.buf.copy(next, 0, 0, this.length * DIGEST_BYTES);
      this.buf = next;
    }
    this.buf.set(h, this.length * DIGEST_BYTES);
    this.length++;
  }

  /** A view of hash i (valid until the next push: callers copy what they keep). */
  at(i: number): Uint8Array {
    return this.buf.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }
}

export class LogTree {
  /** levels[l] holds the roots of the complete subtrees of 2^l leaves, in order; levels[0] the leaf hashes. */
  private readonly levels: HashLevel[] = [new HashLevel()];

  /** A tree over the leaf hashes of an index file's entries (40 bytes each: offset, then leaf hash). */
  static fromIndex(index: Uint8Array, entryBytes: number, hashAt: number): LogTree {
    const tree = new LogTree();
    const n = Math.floor(index.length / entryBytes);
    for (let i = 0; i < n; i++) tree.push(index.subarray(i * entryBytes + hashAt, i * entryBytes + hashAt + DIGEST_BYTES));
    return tree;
  }

  get size(): number {
    return this.levels[0].length;
  }

  /** Add the next leaf hash and every complete subtree it closes (one node per trailing 1 bit of the old size). */
  push(leaf: Uint8Array): void {
    if (leaf.length !== DIGEST_BYTES) throw new RangeError('a leaf hash is 32 bytes');
    this.levels[0].push(leaf);
    for (let l = 0, n = this.levels[0].length; n % 2 === 0; l++, n /= 2) {
      if (!this.levels[l + 1]) this.levels.push(new HashLevel());
      const below = this.levels[l];
      this.levels[l + 1].push(nodeHash(nodeSha256, below.at(n - 2), below.at(n - 1)));
    }
  }

  /** Append an object's leaf (RFC 9162 §2.1.1: SHA-256(0x00 || object)). */
  pushObject(obj: Uint8Array): Uint8Array {
    const lh = leafHash(nodeSha256, obj);
    this.push(lh);
    return lh;
  }

  leaf(index: number): Uint8Array {
    this.checkSize(index + 1);
    return this.levels[0].at(index).slice();
  }

  /** MTH(D[start:end]) of a node of a tree of size <= this one's. */
  private subtree(start: number, end: number): Uint8Array {
    const span = end - start;
    let l = 0;
    while (2 ** l < span) l++;
    // A complete aligned subtree is kept; anything else splits at the largest power of two below it (§2.1.1).
    if (2 ** l === span && start % span === 0 && l < this.levels.length && start / span < this.levels[l].length) return this.levels[l].at(start / span).slice();
    const k = 2 ** (l - 1);
    return nodeHash(nodeSha256, this.subtree(start, start + k), this.subtree(start + k, end));
  }

  private checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.size) throw new RangeError(`size ${size} out of range for a tree of ${this.size}`);
  }

  /** RFC 9162 §2.1.1 MTH(D[size]); SHA-256 of the empty string for 0. */
  root(size = this.size): Uint8Array {
    this.checkSize(size);
    return size === 0 ? EMPTY_ROOT.slice() : this.subtree(0, size);
  }

  /** RFC 9162 §2.1.3.1 PATH(index, D[size]). */
  inclusion(index: number, size = this.size): Uint8Array[] {
    this.checkSize(size);
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) throw new RangeError(`index ${index} out of range for size ${size}`);
    return inclusionPathFrom((s, e) => this.subtree(s, e), size, index);
  }

  /** RFC 9162 §2.1.4.1 PROOF(oldSize, D[size]); empty for oldSize 0 or oldSize = size. */
  consistency(oldSize: number, size = this.size): Uint8Array[] {
    this.checkSize(size);
    if (!Number.isSafeInteger(oldSize) || oldSize < 0 || oldSize > size) throw new RangeError(`old size ${oldSize} out of range for size ${size}`);
    return oldSize === 0 ? [] : consistencyPathFrom((s, e) => this.subtree(s, e), size, oldSize);
  }
}
