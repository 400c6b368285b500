/**
 * The fwseal update bundle (SPEC.md §13.5): what the HIL harness (or any mcumgr client) uploads with
 * SMP image upload, so a stock `mcumgr image upload` delivers an fwseal update and the device can
 * verify before it writes:
 *
 *   magic "FWSBND1\0" | manifest length u32be | manifest envelope
 *   | for each digest page p: [leaf digests of p (32 B each)][page proof of p (32 B nodes)][image bytes of p's chunks]
 *
 * or, carrying the log proof attachment a device with a log policy needs (issue 19 item 2; the
 * signed manifest bytes are the same, the attachment is opaque here):
 *
 *   magic "FWSBND2\0" | manifest length u32be | proof length u32be | manifest envelope | log proof | pages as above
 *
 * Every offset follows from the manifest (image size, chunk size) and the manifest length, so the
 * device knows where each page's digests and each chunk start, proves a page before taking its
 * chunks, and can answer a resume offset from what is on its flash. Pure layout: no hashing here.
 */
import { DIGEST_BYTES, WIRE_LIMITS as LIMITS } from './limits.js';
import { chunkCount, inclusionProofLength, pageCount, pageLeafRange } from './merkle.js';

export const BUNDLE_MAGIC = Object.freeze([0x46, 0x57, 0x53, 0x42, 0x4e, 0x44, 0x31, 0x00] as const);
/** "FWSBND2\0": the bundle that carries a log proof. */
export const BUNDLE_MAGIC_V2 = Object.freeze([0x46, 0x57, 0x53, 0x42, 0x4e, 0x44, 0x32, 0x00] as const);
/** Magic plus the manifest length (FWSBND1). */
export const BUNDLE_HEADER_BYTES = 12;
/** Magic plus the manifest and proof lengths (FWSBND2). */
export const BUNDLE_V2_HEADER_BYTES = 16;

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
  /** 12 (FWSBND1) or 16 (FWSBND2); the manifest starts here, the log proof (if any) right after it. */
  readonly headerBytes: number;
  readonly manifestBytes: number;
  /** Length of the log proof attachment; 0 in an FWSBND1 bundle. */
  readonly proofBytes: number;
  readonly imageSize: number;
  readonly chunkSize: number;
  readonly chunks: number;
  readonly pages: readonly BundlePage[];
  /** Total bundle length. */
  readonly length: number;
};

/**
 * The layout of a bundle for a manifest with these sizes: FWSBND1, or FWSBND2 when `proofBytes` is
 * given (1..maxLogProofBytes). Throws RangeError on sizes out of range.
 */
export function bundleLayout(manifestBytes: number, imageSize: number, chunkSize: number, proofBytes?: number): BundleLayout {
  if (!Number.isSafeInteger(manifestBytes) || manifestBytes < 1 || manifestBytes > LIMITS.maxEnvelopeBytes)
    throw new RangeError('manifest length out of range');
  if (proofBytes !== undefined && (!Number.isSafeInteger(proofBytes) || proofBytes < 1 || proofBytes > LIMITS.maxLogProofBytes))
    throw new RangeError('log proof length out of range');
  const headerBytes = proofBytes === undefined ? BUNDLE_HEADER_BYTES : BUNDLE_V2_HEADER_BYTES;
  const chunks = chunkCount(imageSize, chunkSize);
  const count = pageCount(chunks);
  const pages: BundlePage[] = [];
  let at = headerBytes + manifestBytes + (proofBytes ?? 0);
  for (let p = 0; p < count; p++) {
    const { start, end } = pageLeafRange(p, chunks);
    const leavesBytes = (end - start) * DIGEST_BYTES;
    const proofBytes = inclusionProofLength(p, count) * DIGEST_BYTES;
    const chunksAt = at + leavesBytes + proofBytes;
    const stop = chunksAt + Math.min(imageSize, end * chunkSize) - start * chunkSize;
    pages.push(Object.freeze({ page: p, digestsAt: at, leavesBytes, proofBytes, chunksAt, firstChunk: start, endChunk: end, end: stop }));
    at = stop;
  }
  return Object.freeze({ headerBytes, manifestBytes, proofBytes: proofBytes ?? 0, imageSize, chunkSize, chunks, pages: Object.freeze(pages), length: at });
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

const magicIs = (header: Uint8Array, magic: readonly number[]) => magic.every((b, i) => header[i] === b);
const u32At = (b: Uint8Array, at: number) => ((b[at] << 24) >>> 0) + (b[at + 1] << 16) + (b[at + 2] << 8) + b[at + 3];

/** The manifest length from the 12 header bytes of an FWSBND1 bundle, or null when the magic is wrong. */
export function parseBundleHeader(header: Uint8Array): number | null {
  if (header.length < BUNDLE_HEADER_BYTES || !magicIs(header, BUNDLE_MAGIC)) return null;
  return u32At(header, 8);
}

/** The header length the first 8 bytes announce (12 for FWSBND1, 16 for FWSBND2), or null for another magic. */
export function bundleHeaderBytes(magic: Uint8Array): number | null {
  if (magic.length < BUNDLE_MAGIC.length) return null;
  return magicIs(magic, BUNDLE_MAGIC) ? BUNDLE_HEADER_BYTES : magicIs(magic, BUNDLE_MAGIC_V2) ? BUNDLE_V2_HEADER_BYTES : null;
}

/** Manifest and log proof lengths from a whole header (proof 0 for FWSBND1), or null when the magic is wrong. Lengths are not range-checked here. */
export function parseBundleHeaderAny(header: Uint8Array): { manifestBytes: number; proofBytes: number } | null {
  const n = bundleHeaderBytes(header);
  if (n === null || header.length < n) return null;
  return { manifestBytes: u32At(header, 8), proofBytes: n === BUNDLE_V2_HEADER_BYTES ? u32At(header, 12) : 0 };
}

/** The header of a bundle with this layout (the bytes before the manifest). */
export function encodeBundleHeader(layout: Pick<BundleLayout, 'manifestBytes' | 'proofBytes'>): Uint8Array {
  const v2 = layout.proofBytes > 0;
  const out = new Uint8Array(v2 ? BUNDLE_V2_HEADER_BYTES : BUNDLE_HEADER_BYTES);
  out.set(v2 ? BUNDLE_MAGIC_V2 : BUNDLE_MAGIC);
  const view = new DataView(out.buffer);
  view.setUint32(8, layout.manifestBytes);
  if (v2) view.setUint32(12, layout.proofBytes);
  return out;
}
