/**
 * The chunk digest table (SPEC.md §Digest table): what `pack` writes beside the manifest so that a
 * verifier can fail on the first wrong chunk, and what the OTA server cuts into digest pages.
 * Host-side file: the magic "FWSDIG1\0" and then the 32-byte leaf hashes in chunk order.
 */
import { bytesEqual } from '../shared/bytes.js';
import { DIGEST_BYTES } from '../shared/limits.js';
import { type Manifest } from '../shared/manifest.js';
import { chunkCount, pageCount, pageLeafRange, pageRoot, pageTree } from '../shared/merkle.js';
import { FwsealError } from './errors.js';
import { nodeSha256 } from './hash.js';

export const DIGEST_TABLE_MAGIC = Uint8Array.from([0x46, 0x57, 0x53, 0x44, 0x49, 0x47, 0x31, 0x00]);

export function encodeDigestTable(leaves: Uint8Array): Uint8Array {
  const out = new Uint8Array(DIGEST_TABLE_MAGIC.length + leaves.length);
  out.set(DIGEST_TABLE_MAGIC, 0);
  out.set(leaves, DIGEST_TABLE_MAGIC.length);
  return out;
}

export function isDigestTable(bytes: Uint8Array): boolean {
  return bytes.length >= DIGEST_TABLE_MAGIC.length && bytesEqual(bytes.subarray(0, DIGEST_TABLE_MAGIC.length), DIGEST_TABLE_MAGIC);
}

/** Largest digest table accepted: one leaf per chunk of the largest image at the smallest chunk size. */
export function maxDigestTableBytes(manifest: Manifest): number {
  return DIGEST_TABLE_MAGIC.length + chunkCount(manifest.imageSize, manifest.chunkSize) * DIGEST_BYTES;
}

export type DigestPages = {
  readonly count: number;
  leaves(page: number): Uint8Array;
  proof(page: number): Uint8Array;
};

/** Split a digest table into pages with their proofs, after checking it against the manifest. */
export function digestPages(table: Uint8Array, manifest: Manifest): DigestPages {
  if (!isDigestTable(table)) throw new FwsealError('MALFORMED', 'not an fwseal digest table');
  const n = chunkCount(manifest.imageSize, manifest.chunkSize);
  const body = table.subarray(DIGEST_TABLE_MAGIC.length);
  if (body.length !== n * DIGEST_BYTES)
    throw new FwsealError('DIGEST_PAGE_MISMATCH', `digest table holds ${Math.floor(body.length / DIGEST_BYTES)} digests; the manifest has ${n} chunks`);
  const roots: Uint8Array[] = [];
  for (let p = 0, count = pageCount(n); p < count; p++) {
    const { start, end } = pageLeafRange(p, n);
    const list: Uint8Array[] = [];
    for (let i = start; i < end; i++) list.push(body.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES));
    roots.push(pageRoot(nodeSha256, list));
  }
  const { root, proofs } = pageTree(nodeSha256, roots);
  if (!bytesEqual(root, manifest.merkleRoot)) throw new FwsealError('DIGEST_PAGE_MISMATCH', 'digest table does not match the manifest root');
  return {
    count: pageCount(n),
    leaves(page: number) {
      const { start, end } = pageLeafRange(page, n);
      return body.subarray(start * DIGEST_BYTES, end * DIGEST_BYTES);
    },
    proof(page: number) {
      const nodes = proofs[page];
      const out = new Uint8Array(nodes.length * DIGEST_BYTES);
      for (const [i, node] of nodes.entries()) out.set(node, i * DIGEST_BYTES);
      return out;
    },
  };
}
