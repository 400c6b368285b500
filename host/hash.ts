/** Bulk hashing on the host: node:crypto's one-shot SHA-256 (hardware SHA extensions where present). */
import { hash } from 'node:crypto';
import { type Sha256 } from '../shared/merkle.js';
import { createVerifier } from '../device/verifier.js';

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

export const nodeSha512 = (data: Uint8Array): Uint8Array => hash('sha512', data, 'buffer');

/** A Map that forgets everything once it holds `max` entries (enough for a memo of a few releases). */
class BoundedMemo<V> extends Map<string, V> {
  constructor(private readonly max: number) {
    super();
  }
  override set(key: string, value: V): this {
    if (this.size >= this.max) this.clear();
    return super.set(key, value);
  }
}

/**
 * The verifier for many simulated devices in one process (fleet-sim, benchmarks): node:crypto
 * hashing and a memo of Ed25519 outcomes, so N devices checking one release cost one signature check
 * instead of N (real devices each do their own). Verification logic and policy are unchanged.
 */
export function fleetVerifier() {
  return createVerifier({ sha256: nodeSha256, sha512: nodeSha512, signatureCache: new BoundedMemo<boolean>(4096) });
}
