import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LIMITS } from '../shared/limits.js';
import {
  chunkCount,
  consistencyProof,
  constantTimeEqual,
  inclusionProof,
  inclusionProofLength,
  leafHash,
  MerkleAccumulator,
  merkleRoot,
  nodeHash,
  pageCount,
  pageLeafRange,
  pageOfChunk,
  pageProof,
  pageProofs,
  pageRoot,
  pageRoots,
  rootFromInclusionProof,
  type Sha256,
  verifyConsistency,
} from '../shared/merkle.js';

const sha: Sha256 = (data) => new Uint8Array(createHash('sha256').update(data).digest());
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const b64 = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'base64'));
const u8 = (...bytes: number[]): Uint8Array => new Uint8Array(bytes);

/** Deterministic distinct leaf hashes for tests. */
function leaves(n: number, seed = 0): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const d = new Uint8Array(8);
    new DataView(d.buffer).setUint32(0, seed);
    new DataView(d.buffer).setUint32(4, i);
    out.push(leafHash(sha, d));
  }
  return out;
}

function flipBit(b: Uint8Array, bit: number): Uint8Array {
  const c = b.slice();
  c[bit >> 3] ^= 1 << (bit & 7);
  return c;
}

// ---- naive RFC 9162 §2.1 reference, written from the RFC text --------------------------------

function largestPow2Below(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** §2.1.1 MTH over leaf hashes, recursive. */
function naiveMth(d: readonly Uint8Array[]): Uint8Array {
  if (d.length === 0) return sha(new Uint8Array(0));
  if (d.length === 1) return d[0];
  const k = largestPow2Below(d.length);
  return nodeHash(sha, naiveMth(d.slice(0, k)), naiveMth(d.slice(k)));
}

/** §2.1.3.1 PATH(m, D[n]). */
function naivePath(m: number, d: readonly Uint8Array[]): Uint8Array[] {
  if (d.length === 1) return [];
  const k = largestPow2Below(d.length);
  return m < k ? [...naivePath(m, d.slice(0, k)), naiveMth(d.slice(k))] : [...naivePath(m - k, d.slice(k)), naiveMth(d.slice(0, k))];
}

/** §2.1.4.1 SUBPROOF(m, D[n], b). */
function naiveSubproof(m: number, d: readonly Uint8Array[], b: boolean): Uint8Array[] {
  if (m === d.length) return b ? [] : [naiveMth(d)];
  const k = largestPow2Below(d.length);
  return m <= k ? [...naiveSubproof(m, d.slice(0, k), b), naiveMth(d.slice(k))] : [...naiveSubproof(m - k, d.slice(k), false), naiveMth(d.slice(0, k))];
}

// ---- transparency-dev/merkle vectors ----------------------------------------------------------

const VECTORS = fileURLToPath(new URL('./vectors/merkle/testdata/', import.meta.url));

function readVectors<T>(sub: string): { file: string; v: T }[] {
  const dir = join(VECTORS, sub);
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => ({ file, v: JSON.parse(readFileSync(join(dir, file), 'utf8')) as T }));
}

interface InclusionVector {
  leafIdx: number;
  treeSize: number;
  root: string;
  leafHash: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}
interface ConsistencyVector {
  size1: number;
  size2: number;
  root1: string;
  root2: string;
  proof: string[] | null;
  desc: string;
  wantErr: boolean;
}

const inclusionVectors = readVectors<InclusionVector>('inclusion');
const consistencyVectors = readVectors<ConsistencyVector>('consistency');

/**
 * The leaves of the certificate-transparency reference tree that the transparency-dev happy-path
 * vectors are built from (roots checked below against the known RFC 6962 test roots).
 */
const CT_LEAVES = [
  u8(),
  u8(0x00),
  u8(0x10),
  u8(0x20, 0x21),
  u8(0x30, 0x31),
  u8(0x40, 0x41, 0x42, 0x43),
  u8(0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57),
  u8(0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f),
].map((d) => leafHash(sha, d));
const CT_ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

describe('transparency-dev inclusion vectors', () => {
  it('reads all of them', () => {
    expect(inclusionVectors.length).toBe(98);
    expect(inclusionVectors.filter(({ v }) => !v.wantErr).length).toBe(6);
    expect(inclusionVectors.filter(({ v }) => v.wantErr).length).toBe(92);
  });

  it.each(inclusionVectors.map(({ file, v }) => [file, v] as const))('%s', (_file, v) => {
    const proof = (v.proof ?? []).map(b64);
    const got = rootFromInclusionProof(sha, v.leafIdx, v.treeSize, b64(v.leafHash), proof);
    const root = b64(v.root);
    if (v.wantErr) {
      expect(got === null || !constantTimeEqual(got, root)).toBe(true);
    } else {
      expect(got).not.toBeNull();
      expect(hex(got!)).toBe(hex(root));
    }
  });

  it('our generator reproduces every happy-path proof over the CT reference leaves', () => {
    const happy = inclusionVectors.filter(({ file }) => file.endsWith('happy-path.json'));
    expect(happy.length).toBe(5);
    for (const { v } of happy) {
      const tree = CT_LEAVES.slice(0, v.treeSize);
      expect(hex(merkleRoot(sha, tree))).toBe(hex(b64(v.root)));
      expect(hex(tree[v.leafIdx])).toBe(hex(b64(v.leafHash)));
      expect(inclusionProof(sha, tree, v.leafIdx).map(hex)).toEqual((v.proof ?? []).map((p) => hex(b64(p))));
    }
  });
});

describe('transparency-dev consistency vectors', () => {
  it('reads all of them', () => {
    expect(consistencyVectors.length).toBe(98);
    expect(consistencyVectors.filter(({ v }) => !v.wantErr).length).toBe(6);
    expect(consistencyVectors.filter(({ v }) => v.wantErr).length).toBe(92);
  });

  it.each(consistencyVectors.map(({ file, v }) => [file, v] as const))('%s', (_file, v) => {
    const proof = (v.proof ?? []).map(b64);
    const ok = verifyConsistency(sha, v.size1, v.size2, b64(v.root1), b64(v.root2), proof);
    expect(ok).toBe(!v.wantErr);
  });

  it('our generator reproduces every happy-path proof over the CT reference leaves', () => {
    const happy = consistencyVectors.filter(({ file }) => file.endsWith('happy-path.json'));
    expect(happy.length).toBe(5);
    for (const { v } of happy) {
      const tree = CT_LEAVES.slice(0, v.size2);
      expect(hex(merkleRoot(sha, tree.slice(0, v.size1)))).toBe(hex(b64(v.root1)));
      expect(hex(merkleRoot(sha, tree))).toBe(hex(b64(v.root2)));
      expect(consistencyProof(sha, tree, v.size1).map(hex)).toEqual((v.proof ?? []).map((p) => hex(b64(p))));
    }
  });
});

// ---- RFC 9162 reference ----------------------------------------------------------------------

describe('RFC 9162 §2.1 reference', () => {
  it('hashes: empty tree, leaf and node domain separation, CT reference roots', () => {
    expect(hex(merkleRoot(sha, []))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(hex(new MerkleAccumulator(sha).root())).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(hex(leafHash(sha, u8(1, 2)))).toBe(hex(sha(u8(0, 1, 2))));
    const a = leaves(2);
    expect(hex(nodeHash(sha, a[0], a[1]))).toBe(hex(sha(new Uint8Array([1, ...a[0], ...a[1]]))));
    for (let n = 1; n <= 8; n++) {
      expect(hex(merkleRoot(sha, CT_LEAVES.slice(0, n)))).toBe(CT_ROOTS[n - 1]);
    }
  });

  it('merkleRoot, inclusion proofs and wrong-index/size/leaf rejection for trees of 1..70 leaves', () => {
    for (let n = 1; n <= 70; n++) {
      const d = leaves(n, n);
      const root = merkleRoot(sha, d);
      expect(hex(root)).toBe(hex(naiveMth(d)));
      for (let i = 0; i < n; i++) {
        const proof = inclusionProof(sha, d, i);
        expect(proof.map(hex)).toEqual(naivePath(i, d).map(hex));
        expect(proof.length).toBe(inclusionProofLength(i, n));
        expect(proof.length).toBeLessThanOrEqual(LIMITS.maxProofNodes);
        const got = rootFromInclusionProof(sha, i, n, d[i], proof);
        expect(got && hex(got)).toBe(hex(root));

        const fails = (r: Uint8Array | null): boolean => r === null || !constantTimeEqual(r, root);
        for (const j of new Set([0, i - 1, i + 1, i ^ 1, i ^ 2, i ^ 4, n - 1 - i, n - 1, (i * 7 + 3) % n])) {
          if (j < 0 || j >= n || j === i) continue;
          expect(fails(rootFromInclusionProof(sha, j, n, d[i], proof))).toBe(true);
          expect(fails(rootFromInclusionProof(sha, i, n, d[j], proof))).toBe(true);
        }
        // A wrong size fails whenever it changes the path's shape; a size with the same shape implies
        // the same root by construction (RFC 9162 binds the size through the signed tree head).
        for (const m of [n - 1, n + 1, 2 * n, n + 64]) {
          if (m > i && inclusionProofLength(i, m) !== proof.length) {
            expect(rootFromInclusionProof(sha, i, m, d[i], proof)).toBeNull();
          }
          if (m <= i) expect(rootFromInclusionProof(sha, i, m, d[i], proof)).toBeNull();
        }
        expect(fails(rootFromInclusionProof(sha, i, n, leaves(1, 9999)[0], proof))).toBe(true);
        if (proof.length > 0) {
          expect(rootFromInclusionProof(sha, i, n, d[i], proof.slice(1))).toBeNull();
          expect(rootFromInclusionProof(sha, i, n, d[i], [...proof, proof[0]])).toBeNull();
          expect(fails(rootFromInclusionProof(sha, i, n, d[i], [...proof].reverse()))).toBe(proof.length > 1);
        }
      }
    }
  });

  it('consistencyProof(m, n) verifies for every 1 <= m <= n <= 70, and nothing else does', () => {
    const d = leaves(70, 7);
    const roots = [sha(new Uint8Array(0))];
    for (let n = 1; n <= 70; n++) roots.push(merkleRoot(sha, d.slice(0, n)));
    for (let n = 1; n <= 70; n++) {
      const tree = d.slice(0, n);
      for (let m = 1; m <= n; m++) {
        const proof = consistencyProof(sha, tree, m);
        expect(proof.map(hex)).toEqual(naiveSubproof(m, tree, true).map(hex));
        expect(verifyConsistency(sha, m, n, roots[m], roots[n], proof)).toBe(true);
        // Wrong roots, wrong sizes, wrong proof lengths.
        if (m < n) {
          expect(verifyConsistency(sha, m, n, roots[m - 1], roots[n], proof)).toBe(false);
          expect(verifyConsistency(sha, m, n, roots[m], roots[n - 1], proof)).toBe(false);
          expect(verifyConsistency(sha, m, n, roots[n], roots[m], proof)).toBe(false);
          expect(verifyConsistency(sha, m, n, roots[m], roots[n], proof.slice(1))).toBe(false);
          expect(verifyConsistency(sha, m, n, roots[m], roots[n], [...proof, proof[0]])).toBe(false);
          if (m + 1 < n) expect(verifyConsistency(sha, m + 1, n, roots[m], roots[n], proof)).toBe(false);
          // A bigger new size is caught when it changes the proof's shape (as for inclusion proofs).
          if (consistencyProof(sha, d.slice(0, n + 1), m).length !== proof.length) {
            expect(verifyConsistency(sha, m, n + 1, roots[m], roots[n], proof)).toBe(false);
          }
          expect(verifyConsistency(sha, n, m, roots[n], roots[m], proof)).toBe(false);
        } else {
          expect(verifyConsistency(sha, m, n, roots[m], roots[m - 1], proof)).toBe(false);
          expect(verifyConsistency(sha, m, n, roots[m], roots[m], [roots[m]])).toBe(false);
        }
      }
    }
  });

  it('generators reject bad arguments with RangeError', () => {
    const d = leaves(5);
    for (const i of [-1, 5, 1.5, Number.NaN, Infinity]) {
      expect(() => inclusionProof(sha, d, i)).toThrow(RangeError);
    }
    for (const m of [0, -1, 6, 2.5, Number.NaN]) expect(() => consistencyProof(sha, d, m)).toThrow(RangeError);
    expect(() => inclusionProof(sha, [...d, new Uint8Array(31)], 0)).toThrow(RangeError);
    expect(() => merkleRoot(sha, [new Uint8Array(33)])).toThrow(RangeError);
    expect(() => inclusionProofLength(3, 3)).toThrow(RangeError);
    expect(() => inclusionProofLength(-1, 3)).toThrow(RangeError);
    expect(inclusionProofLength(0, 1)).toBe(0);
    expect(inclusionProofLength(0, 2 ** 32)).toBe(32);
    expect(inclusionProofLength(2 ** 32 - 1, 2 ** 32)).toBe(32);
    expect(inclusionProofLength(2 ** 53 - 2, 2 ** 53 - 1)).toBe(52);
  });
});

// ---- streaming accumulator -------------------------------------------------------------------

describe('MerkleAccumulator', () => {
  it('equals merkleRoot after every push (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 600 }), fc.integer(), (n, seed) => {
        const d = leaves(n, seed);
        const acc = new MerkleAccumulator(sha);
        expect(hex(acc.root())).toBe(hex(merkleRoot(sha, [])));
        for (let i = 0; i < n; i++) {
          acc.push(d[i]);
          expect(acc.size).toBe(i + 1);
          if (i % 37 === 0 || i === n - 1) expect(hex(acc.root())).toBe(hex(merkleRoot(sha, d.slice(0, i + 1))));
        }
      }),
      { numRuns: 60 },
    );
  });

  it('equals merkleRoot at powers of two and their neighbours, and rejects bad leaves', () => {
    const d = leaves(1100, 3);
    const acc = new MerkleAccumulator(sha);
    const check = new Set([1, 2, 3, 127, 128, 129, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 1100]);
    d.forEach((h, i) => {
      acc.push(h);
      if (check.has(i + 1)) expect(hex(acc.root())).toBe(hex(merkleRoot(sha, d.slice(0, i + 1))));
    });
    expect(() => acc.push(new Uint8Array(31))).toThrow(RangeError);
    expect(acc.size).toBe(1100);
  });

  it('does not alias caller buffers', () => {
    const d = leaves(3);
    const acc = new MerkleAccumulator(sha);
    const first = d[0].slice();
    acc.push(first);
    first.fill(0);
    expect(hex(acc.root())).toBe(hex(d[0]));
    acc.root().fill(0);
    expect(hex(acc.root())).toBe(hex(d[0]));
  });
});

// ---- digest pages ----------------------------------------------------------------------------

function checkPages(n: number, seed: number): void {
  const d = leaves(n, seed);
  const root = merkleRoot(sha, d);
  const m = pageCount(n);
  expect(m).toBe(Math.ceil(n / 128));
  const roots: Uint8Array[] = [];
  for (let p = 0; p < m; p++) {
    const { start, end } = pageLeafRange(p, n);
    expect(start).toBe(p * 128);
    expect(end).toBe(Math.min(n, (p + 1) * 128));
    for (const i of [start, end - 1]) expect(pageOfChunk(i)).toBe(p);
    roots.push(pageRoot(sha, d.slice(start, end)));
  }
  expect(pageRoots(sha, d).map(hex)).toEqual(roots.map(hex));
  // The tree over page roots (used as leaf hashes, not re-hashed) is the tree over all leaves.
  expect(hex(merkleRoot(sha, roots))).toBe(hex(root));
  const all = pageProofs(sha, d);
  expect(all.length).toBe(m);
  for (let p = 0; p < m; p++) {
    const proof = pageProof(sha, d, p);
    expect(proof.map(hex)).toEqual(all[p].map(hex));
    const got = rootFromInclusionProof(sha, p, m, roots[p], proof);
    expect(got && hex(got)).toBe(hex(root));
  }
}

describe('digest pages', () => {
  it('LIMITS agree: a page is the subtree of height pageHeight', () => {
    expect(LIMITS.pageLeaves).toBe(2 ** LIMITS.pageHeight);
  });

  it.each([1, 2, 127, 128, 129, 255, 256, 257, 383, 384, 385, 1024, 1025])('page tree equals leaf tree, n=%i', (n) => {
    checkPages(n, n);
  });

  it('page tree equals leaf tree and every page proof verifies (property, n in 1..2000)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2000 }), fc.integer(), (n, seed) => checkPages(n, seed)),
      { numRuns: 40 },
    );
  });

  it('aligned subtrees of any height 2^h collapse the same way (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 700 }), fc.integer({ min: 0, max: 8 }), (n, h) => {
        const d = leaves(n, h);
        const w = 2 ** h;
        const sub: Uint8Array[] = [];
        for (let s = 0; s < n; s += w) sub.push(merkleRoot(sha, d.slice(s, Math.min(n, s + w))));
        expect(hex(merkleRoot(sha, sub))).toBe(hex(merkleRoot(sha, d)));
      }),
      { numRuns: 80 },
    );
  });

  it("a leaf's full proof is its in-page proof followed by the page proof", () => {
    for (const n of [129, 300, 1000]) {
      const d = leaves(n, 1);
      for (const i of [0, 5, 127, 128, 200, n - 1].filter((x) => x < n)) {
        const p = pageOfChunk(i);
        const { start, end } = pageLeafRange(p, n);
        const inPage = inclusionProof(sha, d.slice(start, end), i - start);
        expect(inclusionProof(sha, d, i).map(hex)).toEqual([...inPage, ...pageProof(sha, d, p)].map(hex));
      }
    }
  });

  it('chunkCount / pageCount / pageOfChunk / pageLeafRange / pageRoot arithmetic and errors', () => {
    expect(chunkCount(1, 4096)).toBe(1);
    expect(chunkCount(4096, 4096)).toBe(1);
    expect(chunkCount(4097, 4096)).toBe(2);
    expect(chunkCount(LIMITS.maxImageSize, LIMITS.minChunkSize)).toBe(2 ** 23);
    for (const [s, c] of [
      [0, 4096],
      [-1, 4096],
      [1.5, 4096],
      [LIMITS.maxImageSize + 1, 4096],
      [10, 0],
      [10, NaN],
    ]) {
      expect(() => chunkCount(s, c)).toThrow(RangeError);
    }
    expect(pageCount(0)).toBe(0);
    expect(pageCount(1)).toBe(1);
    expect(pageCount(128)).toBe(1);
    expect(pageCount(129)).toBe(2);
    expect(() => pageCount(-1)).toThrow(RangeError);
    expect(pageOfChunk(0)).toBe(0);
    expect(pageOfChunk(127)).toBe(0);
    expect(pageOfChunk(128)).toBe(1);
    expect(() => pageOfChunk(-1)).toThrow(RangeError);
    expect(pageLeafRange(2, 300)).toEqual({ start: 256, end: 300 });
    expect(() => pageLeafRange(3, 300)).toThrow(RangeError);
    expect(() => pageLeafRange(-1, 300)).toThrow(RangeError);
    expect(() => pageRoot(sha, [])).toThrow(RangeError);
    expect(() => pageRoot(sha, leaves(129))).toThrow(RangeError);
    expect(() => pageProof(sha, leaves(10), 1)).toThrow(RangeError);
    expect(pageProofs(sha, [])).toEqual([]);
  });
});

// ---- hostile input ---------------------------------------------------------------------------

describe('rootFromInclusionProof / verifyConsistency on garbage', () => {
  const d = leaves(37);
  const root = merkleRoot(sha, d);
  const proof = inclusionProof(sha, d, 10);

  it('returns null, never throws, for bad index/size/leaf/proof', () => {
    const bad: [number, number][] = [
      [-1, 37],
      [37, 37],
      [38, 37],
      [0, 0],
      [0, -1],
      [NaN, 37],
      [10, NaN],
      [Infinity, 37],
      [10, Infinity],
      [10.5, 37],
      [10, 37.5],
      [2 ** 53, 2 ** 53 + 2],
      [1.8446744073709552e19, 2],
      [10, -Infinity],
    ];
    for (const [i, n] of bad) expect(rootFromInclusionProof(sha, i, n, d[10], proof)).toBeNull();
    // Valid sizes with proofs longer than LIMITS.maxProofNodes.
    expect(rootFromInclusionProof(sha, 0, 2 ** 40, d[0], Array(40).fill(d[0]))).toBeNull();
    expect(rootFromInclusionProof(sha, 0, 2 ** 33, d[0], Array(33).fill(d[0]))).toBeNull();
    expect(rootFromInclusionProof(sha, 0, 2 ** 40, d[0], Array(32).fill(d[0]))).toBeNull();
    expect(rootFromInclusionProof(sha, 0, 2 ** 32, d[0], Array(32).fill(d[0]))).not.toBeNull();
    expect(rootFromInclusionProof(sha, 10, 37, d[10], Array(100_000).fill(d[0]))).toBeNull();
    // Wrong node lengths.
    for (const len of [0, 1, 31, 33, 64]) {
      const p = [...proof];
      p[1] = new Uint8Array(len);
      expect(rootFromInclusionProof(sha, 10, 37, d[10], p)).toBeNull();
      expect(rootFromInclusionProof(sha, 10, 37, new Uint8Array(len), proof)).toBeNull();
    }
    // Not even Uint8Arrays.
    const junk = [null, undefined, 'abc', 42, {}, [1, 2, 3]] as unknown as Uint8Array[];
    for (const j of junk) {
      expect(rootFromInclusionProof(sha, 10, 37, d[10], [j, ...proof.slice(1)])).toBeNull();
      expect(rootFromInclusionProof(sha, 10, 37, j, proof)).toBeNull();
    }
    expect(rootFromInclusionProof(sha, 10, 37, d[10], null as unknown as Uint8Array[])).toBeNull();
    expect(rootFromInclusionProof(sha, 10, 37, d[10], 'x' as unknown as Uint8Array[])).toBeNull();
    // And the honest input still works.
    expect(hex(rootFromInclusionProof(sha, 10, 37, d[10], proof)!)).toBe(hex(root));
  });

  it('never throws on arbitrary input (property)', () => {
    const num = fc.oneof(fc.integer({ min: -3, max: 200 }), fc.double(), fc.constantFrom(2 ** 32, 2 ** 53, 2 ** 64, -0, NaN, Infinity));
    const node = fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 40 }), fc.constantFrom(...d.slice(0, 4)));
    fc.assert(
      fc.property(num, num, node, node, fc.array(node, { maxLength: 40 }), (i, n, leaf, r, p) => {
        const got = rootFromInclusionProof(sha, i, n, leaf, p);
        expect(got === null || got.length === 32).toBe(true);
        expect(typeof verifyConsistency(sha, i, n, leaf, r, p)).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('verifyConsistency is false, never throws, on bad sizes, roots or nodes', () => {
    const old = merkleRoot(sha, d.slice(0, 20));
    const cp = consistencyProof(sha, d, 20);
    expect(verifyConsistency(sha, 20, 37, old, root, cp)).toBe(true);
    for (const [m, n] of [
      [0, 37],
      [-1, 37],
      [NaN, 37],
      [20, NaN],
      [20.5, 37],
      [38, 37],
      [20, Infinity],
      [2 ** 53, 2 ** 53 + 2],
    ]) {
      expect(verifyConsistency(sha, m, n, old, root, cp)).toBe(false);
    }
    expect(verifyConsistency(sha, 0, 0, sha(new Uint8Array(0)), sha(new Uint8Array(0)), [])).toBe(false);
    for (const len of [0, 31, 33]) {
      const p = [...cp];
      p[0] = new Uint8Array(len);
      expect(verifyConsistency(sha, 20, 37, old, root, p)).toBe(false);
      expect(verifyConsistency(sha, 20, 37, new Uint8Array(len), root, cp)).toBe(false);
      expect(verifyConsistency(sha, 20, 37, old, new Uint8Array(len), cp)).toBe(false);
    }
    expect(verifyConsistency(sha, 20, 37, old, root, null as unknown as Uint8Array[])).toBe(false);
    expect(verifyConsistency(sha, 20, 37, null as unknown as Uint8Array, root, cp)).toBe(false);
    expect(verifyConsistency(sha, 20, 37, old, root, [...cp, ...Array(100_000).fill(cp[0])])).toBe(false);
  });
});

describe('single-bit flips break verification', () => {
  it('in any inclusion-proof node, the leaf hash or the root', () => {
    for (const [n, i] of [
      [37, 10],
      [37, 36],
      [128, 64],
      [200, 199],
      [1025, 1024],
    ] as const) {
      const d = leaves(n, n + i);
      const root = merkleRoot(sha, d);
      const proof = inclusionProof(sha, d, i);
      expect(proof.length).toBeGreaterThan(0);
      const ok = (r: Uint8Array | null, want = root): boolean => r !== null && constantTimeEqual(r, want);
      expect(ok(rootFromInclusionProof(sha, i, n, d[i], proof))).toBe(true);
      for (let k = 0; k < proof.length; k++) {
        for (let bit = 0; bit < 256; bit++) {
          const p = [...proof];
          p[k] = flipBit(p[k], bit);
          expect(ok(rootFromInclusionProof(sha, i, n, d[i], p))).toBe(false);
        }
      }
      for (let bit = 0; bit < 256; bit++) {
        expect(ok(rootFromInclusionProof(sha, i, n, flipBit(d[i], bit), proof))).toBe(false);
        expect(ok(rootFromInclusionProof(sha, i, n, d[i], proof), flipBit(root, bit))).toBe(false);
      }
    }
  });

  it('in any consistency-proof node or either root', () => {
    const d = leaves(100, 5);
    for (const [m, n] of [
      [1, 100],
      [20, 37],
      [64, 100],
      [99, 100],
      [37, 64],
    ] as const) {
      const oldRoot = merkleRoot(sha, d.slice(0, m));
      const newRoot = merkleRoot(sha, d.slice(0, n));
      const proof = consistencyProof(sha, d.slice(0, n), m);
      expect(verifyConsistency(sha, m, n, oldRoot, newRoot, proof)).toBe(true);
      for (let bit = 0; bit < 256; bit++) {
        for (let k = 0; k < proof.length; k++) {
          const p = [...proof];
          p[k] = flipBit(p[k], bit);
          expect(verifyConsistency(sha, m, n, oldRoot, newRoot, p)).toBe(false);
        }
        expect(verifyConsistency(sha, m, n, flipBit(oldRoot, bit), newRoot, proof)).toBe(false);
        expect(verifyConsistency(sha, m, n, oldRoot, flipBit(newRoot, bit), proof)).toBe(false);
      }
    }
  });

  it('constantTimeEqual', () => {
    const a = leaves(1)[0];
    expect(constantTimeEqual(a, a.slice())).toBe(true);
    expect(constantTimeEqual(new Uint8Array(0), new Uint8Array(0))).toBe(true);
    expect(constantTimeEqual(a, a.subarray(0, 31))).toBe(false);
    for (let bit = 0; bit < 256; bit++) expect(constantTimeEqual(a, flipBit(a, bit))).toBe(false);
  });
});
