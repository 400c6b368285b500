import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createVerifier, imageVerifier, verifyChunk, verifyDigestPage } from '../device/index.js';
import { nodeSha256 } from '../host/hash.js';
import { CODES } from '../shared/codes.js';
import { inclusionProof, pageCount, pageLeafRange, pageProofs } from '../shared/merkle.js';
import { detBytes, imageTree, makeManifest } from './support/fixtures.js';

const concat = (nodes: Uint8Array[]) => {
  const out = new Uint8Array(nodes.length * 32);
  for (const [i, n] of nodes.entries()) out.set(n, i * 32);
  return out;
};

// 391 chunks of 512 bytes: 4 digest pages, the last one partial.
const image = detBytes(200_000, 'image test');
const manifest = makeManifest(image, { chunkSize: 512 });
const { leaves } = imageTree(image, 512);
const proofs = pageProofs(nodeSha256, leaves);
const pageLeaves = (p: number) => {
  const { start, end } = pageLeafRange(p, leaves.length);
  return concat(leaves.slice(start, end));
};

function feed(bytes: Uint8Array, cuts: number[], withPages: boolean, pageFilter: (p: number) => boolean = () => true) {
  const v = imageVerifier(manifest);
  const pageBytes = 128 * 512;
  let nextPage = 0;
  const points = [...new Set([0, ...cuts.map((c) => c % bytes.length), bytes.length])].sort((a, b) => a - b);
  for (let i = 1; i < points.length; i++) {
    let from = points[i - 1];
    const to = points[i];
    while (from < to) {
      if (withPages && from === nextPage * pageBytes && nextPage < pageCount(leaves.length)) {
        if (pageFilter(nextPage)) expect(v.addDigestPage(nextPage, pageLeaves(nextPage), concat(proofs[nextPage])).ok).toBe(true);
        nextPage++;
      }
      const stop = withPages ? Math.min(to, nextPage * pageBytes) : to;
      const r = v.update(bytes.subarray(from, stop));
      if (!r.ok) return { failedAt: stop, result: r };
      from = stop;
    }
  }
  return { failedAt: -1, result: v.finish() };
}

describe('streaming image verifier (I1–I5)', () => {
  it('accepts the image in any split, with and without digest pages', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(image.length), { maxLength: 40 }), fc.boolean(), (cuts, pages) => {
        expect(feed(image, cuts, pages).result.code).toBe(CODES.OK);
      }),
      { numRuns: 60 },
    );
  });

  it('accepts the image when only some pages come with digests', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(image.length), { maxLength: 10 }), fc.array(fc.boolean(), { minLength: 4, maxLength: 4 }), (cuts, mask) => {
        expect(feed(image, cuts, true, (p) => mask[p]).result.code).toBe(CODES.OK);
        const bad = image.slice();
        bad[150_000] ^= 4; // page 2
        expect(feed(bad, cuts, true, (p) => mask[p]).result.code).toBe(mask[2] ? CODES.CHUNK_DIGEST_MISMATCH : CODES.MERKLE_ROOT_MISMATCH);
      }),
      { numRuns: 30 },
    );
  });

  it('with digest pages, fails as soon as the wrong chunk completes', () => {
    const bad = image.slice();
    bad[70_000] ^= 0x40; // chunk 136, page 1
    const chunkEnd = (Math.floor(70_000 / 512) + 1) * 512;
    const v = imageVerifier(manifest);
    let failedAt = -1;
    let page = 0;
    for (let off = 0; off < bad.length && failedAt < 0; off += 100) {
      if (off >= page * 128 * 512 && page < 4) {
        expect(v.addDigestPage(page, pageLeaves(page), concat(proofs[page])).ok).toBe(true);
        page++;
      }
      const end = Math.min(bad.length, off + 100, page * 128 * 512);
      const r = v.update(bad.subarray(off, end));
      if (!r.ok) {
        expect(r.code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
        failedAt = end;
      }
      off = end - 100;
    }
    // The failure comes with the piece holding the chunk's last byte, not later.
    expect(failedAt).toBeGreaterThanOrEqual(chunkEnd);
    expect(failedAt).toBeLessThan(chunkEnd + 100);
    // And it sticks.
    expect(v.update(new Uint8Array(1)).code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
    expect(v.finish().code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
  });

  it('without digest pages, catches the wrong chunk at the root check', () => {
    const bad = image.slice();
    bad[199_999] ^= 1;
    expect(feed(bad, [1000, 5000], false).result.code).toBe(CODES.MERKLE_ROOT_MISMATCH);
  });

  it('rejects a short image and a long one', () => {
    expect(feed(image.subarray(0, image.length - 1), [], false).result.code).toBe(CODES.IMAGE_TOO_SHORT);
    const v = imageVerifier(manifest);
    expect(v.update(image).ok).toBe(true);
    expect(v.update(new Uint8Array(1)).code).toBe(CODES.IMAGE_TOO_LONG);
  });

  it('refuses a digest page that does not match the root, and one of the wrong size', () => {
    const v = imageVerifier(manifest);
    const wrong = pageLeaves(1);
    wrong[5] ^= 1;
    expect(v.addDigestPage(1, wrong, concat(proofs[1])).code).toBe(CODES.DIGEST_PAGE_MISMATCH);
    expect(imageVerifier(manifest).addDigestPage(1, pageLeaves(1).subarray(32), concat(proofs[1])).code).toBe(CODES.DIGEST_PAGE_MISMATCH);
    expect(imageVerifier(manifest).addDigestPage(9, pageLeaves(1), concat(proofs[1])).code).toBe(CODES.CHUNK_INDEX_OUT_OF_RANGE);
    expect(imageVerifier(manifest).addDigestPage(1, pageLeaves(1), concat(proofs[1]).subarray(1)).code).toBe(CODES.PROOF_INVALID);
  });

  it('is closed after finish', () => {
    const v = imageVerifier(manifest);
    v.update(image);
    expect(v.finish().ok).toBe(true);
    expect(v.update(new Uint8Array(0)).code).toBe(CODES.VERIFIER_CLOSED);
  });

  it('checks a platform hash output length', () => {
    const v = createVerifier({ sha256: () => new Uint8Array(31) }).imageVerifier(manifest);
    expect(() => v.update(image.subarray(0, 512))).toThrow(TypeError);
    expect(() => createVerifier({ sha256: 'fast' as never })).toThrow(TypeError);
    const native = createVerifier({ sha256: nodeSha256 }).imageVerifier(manifest);
    native.update(image);
    expect(native.finish().ok).toBe(true);
  });
});

describe('any-order chunk checks (I6) and digest pages (I2)', () => {
  it('verifies every chunk with its inclusion proof, in any order', () => {
    for (const i of [390, 0, 200, 127, 128, 389, 7]) {
      const chunk = image.subarray(i * 512, (i + 1) * 512);
      expect(verifyChunk(manifest, i, chunk, concat(inclusionProof(nodeSha256, leaves, i))).ok).toBe(true);
    }
  });

  it('rejects a chunk under another index, a flipped byte, a wrong proof', () => {
    const chunk = image.subarray(512, 1024);
    const proof = concat(inclusionProof(nodeSha256, leaves, 1));
    expect(verifyChunk(manifest, 2, chunk, proof).code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
    const flipped = chunk.slice();
    flipped[0] ^= 1;
    expect(verifyChunk(manifest, 1, flipped, proof).code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
    expect(verifyChunk(manifest, 1, chunk, proof.subarray(0, 32 * 3)).code).toBe(CODES.PROOF_INVALID);
    expect(verifyChunk(manifest, 1, chunk, proof.subarray(0, 33)).code).toBe(CODES.PROOF_INVALID);
    expect(verifyChunk(manifest, 391, chunk, proof).code).toBe(CODES.CHUNK_INDEX_OUT_OF_RANGE);
    expect(verifyChunk(manifest, -1, chunk, proof).code).toBe(CODES.CHUNK_INDEX_OUT_OF_RANGE);
    expect(verifyChunk(manifest, Symbol('i') as never, chunk, proof).code).toBe(CODES.CHUNK_INDEX_OUT_OF_RANGE);
    expect(verifyDigestPage(manifest, Symbol('p') as never, chunk, proof).code).toBe(CODES.CHUNK_INDEX_OUT_OF_RANGE);
    expect(verifyChunk(manifest, 1, chunk.subarray(1), proof).code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
  });

  it('checks chunks one hash each after their page is proven', () => {
    const r = verifyDigestPage(manifest, 3, pageLeaves(3), concat(proofs[3]));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const last = 390;
    expect(r.digestPage.checkChunk(last, image.subarray(last * 512)).ok).toBe(true);
    expect(r.digestPage.checkChunk(384, image.subarray(384 * 512, 385 * 512)).ok).toBe(true);
    expect(r.digestPage.checkChunk(383, image.subarray(383 * 512, 384 * 512)).code).toBe(CODES.CHUNK_INDEX_OUT_OF_RANGE);
    expect(r.digestPage.checkChunk(385, image.subarray(384 * 512, 385 * 512)).code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
  });

  it('costs under 1% of a 256 MiB image on the wire: every digest page plus its proof', () => {
    const chunkSize = 4096;
    const n = (256 << 20) / chunkSize;
    const fakeLeaves = Array.from({ length: n }, (_, i) => nodeSha256(Uint8Array.of(i & 255, (i >> 8) & 255, i >> 16)));
    const allProofs = pageProofs(nodeSha256, fakeLeaves);
    let wire = 0;
    for (let p = 0; p < allProofs.length; p++) {
      const { start, end } = pageLeafRange(p, n);
      wire += (end - start) * 32 + allProofs[p].length * 32;
    }
    expect(wire / (256 << 20)).toBeLessThan(0.01);
  });
});
