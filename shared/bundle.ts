/**
 * The fwseal update bundle (SPEC.md §13.5): what the HIL harness (or any mcumgr client) uploads with
 * SMP image upload, so a stock `mcumgr image upload` delivers an fwseal update and the device can
 * verify before it writes:
 *
 *   magic "FWSBND1\0" | manifest length u32be | manifest envelope
 *   | for each digest page p: [leaf digests of p (32 B each)][page proof of p (32 B nodes)][image bytes of p's chunks]
 *
 * Every offset follows from the manifest (image size, chunk size) and the manifest length, so the
 * device knows where each page's digests and each chunk start, proves a page before taking its
 * chunks, and can answer a resume offset from what is on its flash. Pure layout: no hashing here.
 */
import { DIGEST_BYTES, LIMITS } from './limits.js';
import { chunkCount, inclusionProofLength, pageCount, pageLeafRange } from './merkle.js';

export const BUNDLE_MAGIC = Object.freeze([0x46, 0x57, 0x53, 0x42, 0x4e, 0x44, 0x31, 0x00] as const);
/** Magic plus the manifest length. */
export const BUNDLE_HEADER_BYTES = 12;

export type BundlePage = {
  readonly page: number;
  /** Offset of the page's leaf digests; the proof follows them. */
  readonly digestsAt: number;
  readonly leavesBytes: number;
  readonly proofBytes: number;
  /** Offset of the first chunk of the page. */
  readonly chunksAt: number;
  /** Chunks [firstChunk, endChunk). */
  readonly firstChunk: number;
  readonly endChunk: number;
  /** Offset just past the page's last chunk. */
  readonly end: number;
};

export type BundleLayout = {
  readonly manifestBytes: number;
  readonly imageSize: number;
  readonly chunkSize: number;
  readonly chunks: number;
  readonly pages: readonly BundlePage[];
  /** Total bundle length. */
  readonly length: number;
};

/** The layout of a bundle for a manifest with these sizes. Throws RangeError on sizes out of range. */
export function bundleLayout(manifestBytes: number, imageSize: number, chunkSize: number): BundleLayout {
  if (!Number.isSafeInteger(manifestBytes) || manifestBytes < 1 || manifestBytes > LIMITS.maxEnvelopeBytes)
    throw new RangeError('manifest length out of range');
  const chunks = chunkCount(imageSize, chunkSize);
  const count = pageCount(chunks);
  const pages: BundlePage[] = [];
  let at = BUNDLE_HEADER_BYTES + manifestBytes;
  for (let p = 0; p < count; p++) {
    const { start, end } = pageLeafRange(p, chunks);
    const leavesBytes = (end - start) * DIGEST_BYTES;
    const proofBytes = inclusionProofLength(p, count) * DIGEST_BYTES;
    const chunksAt = at + leavesBytes + proofBytes;
    const stop = chunksAt + Math.min(imageSize, end * chunkSize) - start * chunkSize;
    pages.push(Object.freeze({ page: p, digestsAt: at, leavesBytes, proofBytes, chunksAt, firstChunk: start, endChunk: end, end: stop }));
    at = stop;
  }
  return Object.freeze({ manifestBytes, imageSize, chunkSize, chunks, pages: Object.freeze(pages), length: at });
}

/** Offset of chunk `index` in the bundle. */
export function chunkOffset(layout: BundleLayout, index: number): number {
  const page = layout.pages[Math.floor(index / LIMITS.pageLeaves)];
  return page.chunksAt + (index - page.firstChunk) * layout.chunkSize;
}

/** Length of chunk `index` (the last one may be short). */
export function chunkLength(layout: BundleLayout, index: number): number {
  return Math.min(layout.chunkSize, layout.imageSize - index * layout.chunkSize);
}

/** The manifest length from the 12 header bytes, or null when the magic is wrong. */
export function parseBundleHeader(header: Uint8Array): number | null {
  if (header.length < BUNDLE_HEADER_BYTES) return null;
  for (let i = 0; i < BUNDLE_MAGIC.length; i++) if (header[i] !== BUNDLE_MAGIC[i]) return null;
  return ((header[8] << 24) >>> 0) + (header[9] << 16) + (header[10] << 8) + header[11];
}
