/**
 * The log's in-memory tree (host/tlog/tree.ts) against the leaf-array functions of shared/merkle.ts
 * (themselves checked against the transparency-dev vectors in test/merkle.test.ts): same roots,
 * inclusion and consistency proofs for every size, index and old size up to 70 leaves, and proofs
 * for older sizes after the tree has grown.
 */
import { describe, expect, it } from 'vitest';
import { nodeSha256 } from '../host/hash.js';
import { LogTree } from '../host/tlog/tree.js';
import { consistencyProof, inclusionProof, leafHash, merkleRoot, rootFromInclusionProof, verifyConsistency } from '../shared/merkle.js';

const leaves = Array.from({ length: 70 }, (_, i) => leafHash(nodeSha256, Uint8Array.of(i, i >> 8, 0xaa)));
const hex = (list: Uint8Array[]) => list.map((b) => Buffer.from(b).toString('hex'));

describe('LogTree', () => {
  it('gives the roots and proofs of shared/merkle.ts at every size while it grows', () => {
    const tree = new LogTree();
    expect(Buffer.from(tree.root()).equals(Buffer.from(nodeSha256(new Uint8Array(0))))).toBe(true);
    for (let n = 1; n <= leaves.length; n++) {
      tree.push(leaves[n - 1]);
      const prefix = leaves.slice(0, n);
      expect(Buffer.from(tree.root()).toString('hex')).toBe(Buffer.from(merkleRoot(nodeSha256, prefix)).toString('hex'));
      for (let i = 0; i < n; i++) expect(hex(tree.inclusion(i))).toEqual(hex(inclusionProof(nodeSha256, prefix, i)));
      for (let m = 1; m <= n; m++) expect(hex(tree.consistency(m))).toEqual(hex(consistencyProof(nodeSha256, prefix, m)));
    }
  });

  it('answers for older sizes once it has grown (the proofs of an older checkpoint)', () => {
    const tree = new LogTree();
    for (const l of leaves) tree.push(l);
    for (const size of [1, 2, 3, 7, 8, 9, 31, 33, 64, 65, 69]) {
      const root = tree.root(size);
      expect(Buffer.from(root).equals(Buffer.from(merkleRoot(nodeSha256, leaves.slice(0, size))))).toBe(true);
      for (const i of [0, Math.floor(size / 2), size - 1]) {
        const got = rootFromInclusionProof(nodeSha256, i, size, leaves[i], tree.inclusion(i, size));
        expect(got && Buffer.from(got).equals(Buffer.from(root))).toBe(true);
      }
      for (const m of [1, Math.ceil(size / 3), size]) expect(verifyConsistency(nodeSha256, m, size, tree.root(m), root, tree.consistency(m, size))).toBe(true);
    }
  });

  it('is built from an index file as the log stores it', () => {
    const index = Buffer.alloc(40 * 9);
    for (const [i, l] of leaves.slice(0, 9).entries()) index.set(l, i * 40 + 8);
    const tree = LogTree.fromIndex(index, 40, 8);
    expect(tree.size).toBe(9);
    expect(Buffer.from(tree.root()).equals(Buffer.from(merkleRoot(nodeSha256, leaves.slice(0, 9))))).toBe(true);
  });

  it('refuses sizes and indices outside the tree', () => {
    const tree = new LogTree();
    for (const l of leaves.slice(0, 5)) tree.push(l);
    expect(() => tree.root(6)).toThrow(RangeError);
    expect(() => tree.inclusion(5)).toThrow(RangeError);
    expect(() => tree.inclusion(3, 3)).toThrow(RangeError);
    expect(() => tree.consistency(6)).toThrow(RangeError);
    expect(() => tree.push(new Uint8Array(31))).toThrow(RangeError);
  });
});
