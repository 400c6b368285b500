/** Bulk hashing on the host: node:crypto's one-shot SHA-256 (hardware SHA extensions where present). */
import { hash } from 'node:crypto';
import { type Sha256 } from '../shared/merkle.js';

export const nodeSha256: Sha256 = (data) => hash('sha256', data, 'buffer');

/**
 * Leaf hashes of every chunk in `buf` (RFC 9162 leaf: SHA-256(0x00 || chunk)), written into
 * `out` at `outOffset`. One scratch buffer holds the prefix and the chunk, so no per-chunk allocation.
 */
export class LeafHasher {
  private readonly scratch: Buffer;
  constructor(private readonly chunkSize: number) {
    this.scratch = Buffer.allocUnsafe(chunkSize + 1);
    this.scratch[0] = 0;
  }
  leaf(chunk: Uint8Array): Buffer {
    this.scratch.set(chunk, 1);
    return hash('sha256', this.scratch.subarray(0, chunk.length + 1), 'buffer');
  }
}
