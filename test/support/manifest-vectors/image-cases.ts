/**
 * I1–I5: images. The manifest passes first; the image is streamed with its digest pages added
 * before their chunks. Returns the images the cases name (hex), for the file's `images`.
 */

import { nodeSha256 } from '../../../host/hash.js';
import { type SigningKey } from '../../../host/keys.js';
import { pageProof } from '../../../shared/merkle.js';
import { detBytes, imageTree, makeManifest, makeManifestEnvelope } from '../fixtures.js';
import { cat, flipBit, hex } from './raw-cbor.js';
import { SEED, type VectorWorld } from './world.js';

/** The small image (one digest page) and the two-page image, good and bent. */
export function imageCases(w: VectorWorld): Record<string, string> {
  const { R1, R3, CHUNK, small, manifest, add } = w;
  const images: Record<string, string> = {};
  const leavesOf = (image: Uint8Array) => imageTree(image, CHUNK).leaves;
  const pagesOf = (leaves: Uint8Array[]) =>
    Array.from({ length: Math.ceil(leaves.length / 128) }, (_, p) => ({
      page: p,
      leaves: hex(cat(...leaves.slice(128 * p, 128 * p + 128))),
      proof: hex(cat(new Uint8Array(0), ...pageProof(nodeSha256, leaves, p))),
    }));
  images.small = hex(small);
  images['small, chunk 2 tampered'] = hex(flipBit(small, 2 * CHUNK + 100, 0x04));
  images['small, last byte tampered'] = hex(flipBit(small, small.length - 1, 0x80));
  images['small, one byte short'] = hex(small.subarray(0, small.length - 1));
  images['small, one byte long'] = hex(cat(small, Uint8Array.of(0)));
  const smallPages = pagesOf(leavesOf(small));
  const img = (bytes: string, pieceSize: number, digestPages = smallPages) => ({ bytes, pieceSize, digestPages });
  add('image: good, digest page, 700-byte pieces', 'OK', { image: img('small', 700) });
  add('image: good, no digest page, one piece', 'OK', { image: img('small', 4096, []) });
  add('image: good, digest page, 97-byte pieces', 'OK', { image: img('small', 97) });
  add('image: chunk 2 tampered, digest page (I3: at once)', 'CHUNK_DIGEST_MISMATCH', { image: img('small, chunk 2 tampered', 700) });
  add('image: chunk 2 tampered, no digest page (I5: at finish)', 'MERKLE_ROOT_MISMATCH', { image: img('small, chunk 2 tampered', 700, []) });
  add('image: last byte of the short last chunk tampered', 'CHUNK_DIGEST_MISMATCH', { image: img('small, last byte tampered', 512) });
  add('image: one byte short (I5)', 'IMAGE_TOO_SHORT', { image: img('small, one byte short', 700) });
  add('image: one byte long (I4)', 'IMAGE_TOO_LONG', { image: img('small, one byte long', 700) });
  add('image: digest page with a wrong leaf', 'DIGEST_PAGE_MISMATCH', {
    image: img('small', 700, [{ ...smallPages[0], leaves: hex(flipBit(Buffer.from(smallPages[0].leaves, 'hex'), 40, 0x01)) }]),
  });
  add('image: digest page missing its last leaf', 'DIGEST_PAGE_MISMATCH', {
    image: img('small', 700, [{ ...smallPages[0], leaves: smallPages[0].leaves.slice(0, -64) }]),
  });
  add('image: digest page with a proof node too many', 'PROOF_INVALID', {
    image: img('small', 700, [{ ...smallPages[0], proof: hex(new Uint8Array(32)) }]),
  });
  add('image: digest page index 1 of 1', 'CHUNK_INDEX_OUT_OF_RANGE', { image: img('small', 700, [{ ...smallPages[0], page: 1 }]) });

  // Two digest pages: 130 chunks (128 + 2, the last one short). To keep the file small there is one
  // such image; "tampered" cases stream it against the manifest of a copy that differs in one chunk.
  const big = detBytes(129 * CHUNK + 300, `${SEED}/two-page image`);
  const twoPage = (image: Uint8Array, signers: SigningKey[]) => {
    const m = makeManifest(image, {
      chunkSize: CHUNK,
      deviceClass: manifest.deviceClass,
      version: manifest.version,
      securityCounter: manifest.securityCounter,
      created: manifest.created,
    });
    return { envelope: makeManifestEnvelope(m, signers), pages: pagesOf(leavesOf(image)) };
  };
  const bigSigned = twoPage(big, [R1, R3]);
  const otherAt129 = twoPage(flipBit(big, 129 * CHUNK + 7, 0x01), [R1, R3]);
  const otherAt3 = twoPage(flipBit(big, 3 * CHUNK, 0x01), [R1, R3]);
  images['two pages'] = hex(big);
  add('image: two digest pages, good', 'OK', { envelope: bigSigned.envelope, image: img('two pages', 4096, bigSigned.pages) });
  add('image: two digest pages, chunk 129 (page 1) differs from the manifest', 'CHUNK_DIGEST_MISMATCH', {
    envelope: otherAt129.envelope,
    image: img('two pages', 4096, otherAt129.pages),
  });
  add('image: two pages, chunk 129 differs, no digest pages', 'MERKLE_ROOT_MISMATCH', {
    envelope: otherAt129.envelope,
    image: img('two pages', 4096, []),
  });
  add('image: two digest pages, chunk 3 (page 0) differs, 1000-byte pieces', 'CHUNK_DIGEST_MISMATCH', {
    envelope: otherAt3.envelope,
    image: img('two pages', 1000, otherAt3.pages),
  });
  add("image: page 0's leaves with page 1's proof", 'DIGEST_PAGE_MISMATCH', {
    envelope: bigSigned.envelope,
    image: img('two pages', 4096, [{ ...bigSigned.pages[0], proof: bigSigned.pages[1].proof }, bigSigned.pages[1]]),
  });
  add('image: the small image against the two-page manifest', 'CHUNK_DIGEST_MISMATCH', {
    envelope: bigSigned.envelope,
    image: img('small', 700, bigSigned.pages),
  });
  return images;
}
