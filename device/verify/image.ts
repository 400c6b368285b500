/**
 * Image checks against a verified manifest (SPEC.md §Image verification, I1–I6).
 *
 * - `imageVerifier`: the image streamed in order, in pieces of any size; memory is one chunk buffer,
 *   the O(log n) Merkle stack and at most one digest page, whatever the image size. With digest pages
 *   added, a wrong chunk fails as soon as its last byte arrives (I3); without, the root check at
 *   `finish` still catches it (I5).
 * - `verifyChunk`: one chunk in any order, with its RFC 9162 inclusion proof.
 * - `verifyDigestPage` + `DigestPage.checkChunk`: a page of 128 leaf digests proven once against the
 *   root, then each of its chunks checked with a single hash (the ~1% overhead delivery path).
 */
import { bytesEqual } from '../../shared/bytes.js';
import { type Failure, fail, ok, type Result } from '../../shared/codes.js';
import { DIGEST_BYTES, WIRE_LIMITS as LIMITS } from '../../shared/limits.js';
import { isPowerOfTwo, type Manifest } from '../../shared/manifest.js';
import { chunkCount, leafHash, MerkleAccumulator, pageCount, pageLeafRange, rootFromInclusionProof } from '../../shared/merkle.js';
import { type DeviceCrypto } from '../crypto/platform.js';

/** What the image checks read of a manifest. */
export type ImageShape = Pick<Manifest, 'imageSize' | 'chunkSize' | 'merkleRoot'>;

/**
 * The manifest argument has the shape parseManifest gives (SPEC.md §6.6): a look-alike with a size,
 * chunk size or root out of range (or whose fields throw) is INVALID_ARGUMENT, never a throw or a
 * huge allocation. The checks then use this snapshot, not the caller's object.
 */
export function manifestShape(m: ImageShape): Failure | ImageShape {
  try {
    const { imageSize, chunkSize, merkleRoot } = m;
    if (
      Number.isSafeInteger(imageSize) &&
      imageSize >= 1 &&
      imageSize <= LIMITS.maxImageSize &&
      isPowerOfTwo(chunkSize) &&
      chunkSize >= LIMITS.minChunkSize &&
      chunkSize <= LIMITS.maxChunkSize &&
      merkleRoot instanceof Uint8Array &&
      merkleRoot.length === DIGEST_BYTES
    ) {
      return Object.freeze({ imageSize, chunkSize, merkleRoot });
    }
  } catch {
    // a getter or proxy that throws: the same answer as any other wrong shape
  }
  return fail('INVALID_ARGUMENT', 'manifest must come from verifyManifest');
}

/** Split a proof given as concatenated 32-byte nodes. */
function proofNodes(proof: Uint8Array): Uint8Array[] | null {
  if (!(proof instanceof Uint8Array) || proof.length % DIGEST_BYTES !== 0) return null;
  if (proof.length / DIGEST_BYTES > LIMITS.maxProofNodes) return null;
  const nodes: Uint8Array[] = [];
  for (let o = 0; o < proof.length; o += DIGEST_BYTES) nodes.push(proof.subarray(o, o + DIGEST_BYTES));
  return nodes;
}

/** The RFC 9162 root of concatenated 32-byte leaf hashes, with a streaming O(log n) stack. */
function streamingRoot(hash: (d: Uint8Array) => Uint8Array, leaves: Uint8Array): Uint8Array {
  const acc = new MerkleAccumulator(hash);
  for (let o = 0; o < leaves.length; o += DIGEST_BYTES) acc.push(leaves.subarray(o, o + DIGEST_BYTES));
  return acc.root();
}

function chunkLength(manifest: ImageShape, index: number): number {
  const start = index * manifest.chunkSize;
  return Math.min(manifest.chunkSize, manifest.imageSize - start);
}

/** I6: a single chunk in any order with its full inclusion proof. */
export function verifyChunk(c: DeviceCrypto, arg: ImageShape, index: number, chunk: Uint8Array, proof: Uint8Array): Result {
  const manifest = manifestShape(arg);
  if ('ok' in manifest) return manifest;
  const n = chunkCount(manifest.imageSize, manifest.chunkSize);
  if (!Number.isSafeInteger(index) || index < 0 || index >= n) return fail('CHUNK_INDEX_OUT_OF_RANGE', `chunk ${String(index)} of ${n}`);
  if (!(chunk instanceof Uint8Array) || chunk.length !== chunkLength(manifest, index))
    return fail('CHUNK_DIGEST_MISMATCH', `chunk ${index} has the wrong length`);
  const nodes = proofNodes(proof);
  if (!nodes) return fail('PROOF_INVALID', 'proof is not a list of 32-byte nodes');
  const root = rootFromInclusionProof(c.sha256, index, n, leafHash(c.sha256, chunk), nodes);
  if (root === null) return fail('PROOF_INVALID', `proof of the wrong length for chunk ${index}`);
  if (!bytesEqual(root, manifest.merkleRoot)) return fail('CHUNK_DIGEST_MISMATCH', `chunk ${index}`);
  return ok({});
}

export type DigestPage = {
  readonly page: number;
  /** Check a chunk of this page against its proven leaf digest. */
  checkChunk(index: number, chunk: Uint8Array): Result;
  /** The proven leaf digest of a chunk of this page, or null when the index is outside the page. */
  leaf(index: number): Uint8Array | null;
  /** The proven root of this page's subtree. */
  readonly root: Uint8Array;
};

/** I2: prove a page of leaf digests (concatenated, 32 bytes each) against the manifest root. */
export function verifyDigestPage(c: DeviceCrypto, arg: ImageShape, page: number, leaves: Uint8Array, proof: Uint8Array): Result<{ digestPage: DigestPage }> {
  const manifest = manifestShape(arg);
  if ('ok' in manifest) return manifest;
  const n = chunkCount(manifest.imageSize, manifest.chunkSize);
  const pages = pageCount(n);
  if (!Number.isSafeInteger(page) || page < 0 || page >= pages) return fail('CHUNK_INDEX_OUT_OF_RANGE', `page ${String(page)} of ${pages}`);
  const { start, end } = pageLeafRange(page, n);
  if (!(leaves instanceof Uint8Array) || leaves.length !== (end - start) * DIGEST_BYTES)
    return fail('DIGEST_PAGE_MISMATCH', `page ${page} must hold ${end - start} digests`);
  const nodes = proofNodes(proof);
  if (!nodes) return fail('PROOF_INVALID', 'proof is not a list of 32-byte nodes');
  // One 4 KiB buffer for the page, and a streaming root (O(log n) stack): little working memory.
  const held = leaves.slice();
  const proven = streamingRoot(c.sha256, held);
  const root = rootFromInclusionProof(c.sha256, page, pages, proven, nodes);
  if (root === null) return fail('PROOF_INVALID', `proof of the wrong length for page ${page}`);
  if (!bytesEqual(root, manifest.merkleRoot)) return fail('DIGEST_PAGE_MISMATCH', `page ${page}`);
  const digestPage: DigestPage = Object.freeze({
    page,
    root: proven,
    leaf(index: number): Uint8Array | null {
      return Number.isSafeInteger(index) && index >= start && index < end
        ? held.subarray((index - start) * DIGEST_BYTES, (index - start + 1) * DIGEST_BYTES)
        : null;
    },
    checkChunk(index: number, chunk: Uint8Array): Result {
      const expected = this.leaf(index);
      if (expected === null) return fail('CHUNK_INDEX_OUT_OF_RANGE', `chunk ${String(index)} is not in page ${page}`);
      if (!(chunk instanceof Uint8Array) || chunk.length !== chunkLength(manifest, index))
        return fail('CHUNK_DIGEST_MISMATCH', `chunk ${index} has the wrong length`);
      return bytesEqual(leafHash(c.sha256, chunk), expected) ? ok({}) : fail('CHUNK_DIGEST_MISMATCH', `chunk ${index}`);
    },
  });
  return ok({ digestPage });
}

export type ImageVerifier = {
  /** I2: add the digest page for the chunks about to stream (optional; enables early failure). */
  addDigestPage(page: number, leaves: Uint8Array, proof: Uint8Array): Result;
  /** I3/I4: the next bytes of the image, in order. */
  update(bytes: Uint8Array): Result<{ offset: number }>;
  /** I5: all bytes seen; the Merkle root must equal the manifest's. */
  finish(): Result;
};

/**
 * I1: a streaming verifier for one image. Bytes are gathered into one chunk buffer (prefixed with
 * the RFC 9162 leaf byte 0x00) and hashed when the chunk completes: memory is one chunk plus the
 * current page's leaf digests (at most 4 KiB).
 * After any failure every later call returns that failure.
 */
export function imageVerifier(c: DeviceCrypto, arg: ImageShape): ImageVerifier {
  const shape = manifestShape(arg);
  if ('ok' in shape) return Object.freeze({ addDigestPage: () => shape, update: () => shape, finish: () => shape });
  const manifest: ImageShape = shape;
  const hash = c.sha256;
  const total = chunkCount(manifest.imageSize, manifest.chunkSize);
  // The accumulator runs over page roots (the same RFC 9162 tree, SPEC.md §5.3): a page whose
  // chunks all matched a proven digest page contributes that page's root without re-hashing.
  const acc = new MerkleAccumulator(hash);
  // Leaf digests of the current page, concatenated: one 4 KiB buffer rather than 128 small arrays.
  const pageLeaves = new Uint8Array(LIMITS.pageLeaves * DIGEST_BYTES);
  let pageAllChecked = true;
  const chunk = new Uint8Array(manifest.chunkSize + 1); // chunk[0] = 0x00, the leaf prefix
  let offset = 0;
  let chunkIndex = 0;
  let chunkFill = 0;
  let page: DigestPage | null = null;
  let failed: Failure | null = null;
  let finished = false;

  const stop = (f: Failure): Failure => (failed = f);

  function completeChunk(): Failure | null {
    const leaf = hash(chunk.subarray(0, chunkFill + 1));
    const expected = page ? page.leaf(chunkIndex) : null;
    if (expected !== null && !bytesEqual(leaf, expected))
      return stop(fail('CHUNK_DIGEST_MISMATCH', `chunk ${chunkIndex} at offset ${chunkIndex * manifest.chunkSize}`));
    if (expected === null) pageAllChecked = false;
    const inPage = chunkIndex % LIMITS.pageLeaves;
    pageLeaves.set(leaf, inPage * DIGEST_BYTES);
    if (chunkIndex + 1 === Math.min(total, chunkIndex - inPage + LIMITS.pageLeaves)) {
      acc.push(pageAllChecked && page ? page.root : streamingRoot(hash, pageLeaves.subarray(0, (inPage + 1) * DIGEST_BYTES)));
      pageAllChecked = true;
    }
    chunkIndex++;
    chunkFill = 0;
    return null;
  }

  return Object.freeze({
    addDigestPage(pageIndex: number, leaves: Uint8Array, proof: Uint8Array): Result {
      if (failed) return failed;
      if (finished) return fail('VERIFIER_CLOSED', 'finish() was called');
      const r = verifyDigestPage(c, manifest, pageIndex, leaves, proof);
      if (!r.ok) return stop(r);
      page = r.digestPage;
      return ok({});
    },
    update(bytes: Uint8Array): Result<{ offset: number }> {
      if (failed) return failed;
      if (finished) return fail('VERIFIER_CLOSED', 'finish() was called');
      if (!(bytes instanceof Uint8Array)) return fail('WRONG_TYPE', 'update() takes bytes');
      if (bytes.length > manifest.imageSize - offset) return stop(fail('IMAGE_TOO_LONG', `more than ${manifest.imageSize} bytes`));
      let pos = 0;
      while (pos < bytes.length) {
        const length = chunkLength(manifest, chunkIndex);
        const take = Math.min(length - chunkFill, bytes.length - pos);
        chunk.set(bytes.subarray(pos, pos + take), 1 + chunkFill);
        chunkFill += take;
        pos += take;
        offset += take;
        if (chunkFill === length) {
          const f = completeChunk();
          if (f) return f;
        }
      }
      return ok({ offset });
    },
    finish(): Result {
      if (failed) return failed;
      if (finished) return fail('VERIFIER_CLOSED', 'finish() was called');
      finished = true;
      if (offset < manifest.imageSize || chunkIndex !== total) return stop(fail('IMAGE_TOO_SHORT', `${offset} of ${manifest.imageSize} bytes`));
      if (!bytesEqual(acc.root(), manifest.merkleRoot)) return stop(fail('MERKLE_ROOT_MISMATCH', 'image root differs from the manifest'));
      return ok({});
    },
  });
}
