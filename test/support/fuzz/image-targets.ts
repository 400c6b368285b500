/**
 * Targets over an image: the streaming verifier (imageVerifier, SPEC.md I1: a failure is sticky)
 * fed the image in random pieces, and the random-access checks (verifyChunk, verifyDigestPage and
 * checkChunk) fed chunks, inclusion proofs, digest pages and indices, one of them mutated.
 */

import { imageVerifier, sha256, verifyChunk, verifyDigestPage } from '../../../device/index.js';
import { bytesEqual, concatBytes } from '../../../shared/bytes.js';
import { LIMITS } from '../../../shared/limits.js';
import { type Manifest } from '../../../shared/manifest.js';
import { inclusionProof, leafHash, pageProofs, pageRoots } from '../../../shared/merkle.js';
import { detBytes, makeManifest } from '../fixtures.js';
import { mutate } from './mutators.js';
import { type FuzzTarget, WEIRD_INDEX } from './target.js';

const cat = concatBytes;

/** imageVerifier: the image in random pieces, with or without a digest page; one input mutated. */
export function streamTarget(manifest: Manifest, image: Uint8Array, weight: number): FuzzTarget {
  const leaves: Uint8Array[] = [];
  for (let o = 0; o < image.length; o += manifest.chunkSize) leaves.push(leafHash(sha256, image.subarray(o, o + manifest.chunkSize)));
  const page = cat(...leaves);
  const proof = new Uint8Array(0); // one page: the page root is the root
  return {
    name: 'imageVerifier',
    weight,
    make(rng, corpus) {
      const which = rng.weighted([
        ['image', 6],
        ['page-leaves', 2],
        ['page-proof', 1],
        ['page-index', 1],
      ] as const);
      const withPage = which !== 'image' || rng.chance(0.5);
      const m =
        which === 'page-index'
          ? { bytes: page, ops: [] }
          : mutate(rng, which === 'image' ? image : which === 'page-leaves' ? page : proof, corpus.concat([image, page]));
      const img = which === 'image' ? m.bytes : image;
      const lv = which === 'page-leaves' ? m.bytes : page;
      const pf = which === 'page-proof' ? m.bytes : proof;
      const pageIndex = which === 'page-index' ? rng.pick([1, -1, 0.5, NaN, 2 ** 53, 2 ** 32]) : 0;
      const pieces: Uint8Array[] = [];
      for (let o = 0; o < img.length; ) {
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
export function chunkTarget(weight: number): FuzzTarget {
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
        const which = rng.weighted([
          ['chunk', 4],
          ['proof', 4],
          ['index', 1],
        ] as const);
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
      const which = rng.weighted([
        ['leaves', 3],
        ['proof', 3],
        ['chunk', 3],
        ['index', 1],
      ] as const);
      const m =
        which === 'leaves' ? mutate(rng, pages[p], pool) : which === 'proof' ? mutate(rng, pageProofBytes[p], pool) : { bytes: pages[p], ops: [] as string[] };
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
