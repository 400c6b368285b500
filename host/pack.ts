/**
 * The packager: image -> chunk leaf hashes -> Merkle root -> manifest payload -> unsigned envelope,
 * plus the chunk digest table. Streams the image through one reusable buffer; bulk hashing is
 * node:crypto, the tree layout is shared/merkle.ts (the same code the device runs).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { encodeEnvelope } from '../shared/cose.js';
import { DIGEST_BYTES, LIMITS } from '../shared/limits.js';
import { DEVICE_CLASS_PATTERN, encodeManifest, isPowerOfTwo, type Manifest, SEMVER_PATTERN } from '../shared/manifest.js';
import { chunkCount, MerkleAccumulator } from '../shared/merkle.js';
import { encodeDigestTable } from './digests.js';
import { FwsealError } from './errors.js';
import { LeafHasher, nodeSha256 } from './hash.js';
import { readFileLimited } from './io.js';

export const DEFAULT_CHUNK_SIZE = 4096;
/** Read buffer: a multiple of every chunk size up to 1 MiB. */
const READ_BUFFER = 4 * 1024 * 1024;
const SBOM_MAX_BYTES = 256 * 1024 * 1024;

export type PackOptions = {
  readonly imagePath: string;
  readonly deviceClass: string;
  readonly version: string;
  readonly securityCounter: number;
  readonly chunkSize?: number;
  readonly sbom?: { readonly path: string; readonly uri: string };
  readonly provenance?: { readonly pipelineRun?: string; readonly sourceRevision?: string };
  /** Seconds since the epoch; default SOURCE_DATE_EPOCH (reproducible builds) or now. */
  readonly created?: number;
  readonly onProgress?: (done: number, total: number) => void;
};

export type Packed = {
  readonly manifest: Manifest;
  /** The unsigned envelope (COSE_Sign with no signature yet). */
  readonly envelope: Uint8Array;
  /** The chunk digest table file contents. */
  readonly digestTable: Uint8Array;
};

/** Hash an image file into its chunk leaf hashes (concatenated), streaming. */
export function hashImage(
  path: string,
  chunkSize: number,
  onProgress?: (done: number, total: number) => void,
): { size: number; leaves: Uint8Array; root: Uint8Array } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new FwsealError('IO', `cannot open image ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FwsealError('IO', `image ${path} is not a regular file`);
    if (st.size === 0) throw new FwsealError('USAGE', `image ${path} is empty`);
    if (st.size > LIMITS.maxImageSize) throw new FwsealError('TOO_LARGE', `image of ${st.size} bytes exceeds ${LIMITS.maxImageSize}`);
    const n = chunkCount(st.size, chunkSize);
    const leaves = new Uint8Array(n * DIGEST_BYTES);
    const buf = Buffer.allocUnsafe(Math.max(READ_BUFFER, chunkSize));
    const hasher = new LeafHasher(chunkSize);
    const acc = new MerkleAccumulator(nodeSha256);
    let offset = 0;
    let index = 0;
    while (offset < st.size) {
      // Fill the buffer completely (or to the end of the file) so chunks never straddle reads.
      let filled = 0;
      while (filled < buf.length && offset + filled < st.size) {
        const got = readSync(fd, buf, filled, buf.length - filled, offset + filled);
        if (got === 0) break;
        filled += got;
      }
      if (filled === 0) throw new FwsealError('IO', `image ${path} shrank while it was read`);
      for (let o = 0; o < filled; o += chunkSize) {
        const leaf = hasher.leaf(buf.subarray(o, Math.min(filled, o + chunkSize)));
        leaves.set(leaf, index * DIGEST_BYTES);
        acc.push(leaf);
        index++;
      }
      offset += filled;
      onProgress?.(offset, st.size);
    }
    if (index !== n) throw new FwsealError('IO', `image ${path} changed while it was read`);
    return { size: st.size, leaves, root: new Uint8Array(acc.root()) };
  } finally {
    closeSync(fd);
  }
}

export function createdTime(explicit?: number): number {
  if (explicit !== undefined) return explicit;
  const epoch = process.env.SOURCE_DATE_EPOCH;
  if (epoch !== undefined) {
    // SPEC.md §4.1: created is 0 .. maxCreated (a date every tool can show).
    if (!/^\d{1,15}$/.test(epoch) || Number(epoch) > LIMITS.maxCreated)
      throw new FwsealError('USAGE', `SOURCE_DATE_EPOCH must be whole seconds, at most ${LIMITS.maxCreated}`);
    return Number(epoch);
  }
  return Math.floor(Date.now() / 1000);
}

export function pack(opts: PackOptions): Packed {
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  // Flags are checked before the image is read: a typo costs nothing.
  if (!isPowerOfTwo(chunkSize) || chunkSize < LIMITS.minChunkSize || chunkSize > LIMITS.maxChunkSize) {
    throw new FwsealError('USAGE', `--chunk-size must be a power of two from ${LIMITS.minChunkSize} to ${LIMITS.maxChunkSize}`);
  }
  if (opts.deviceClass.length > LIMITS.maxDeviceClassBytes || !DEVICE_CLASS_PATTERN.test(opts.deviceClass)) {
    throw new FwsealError('USAGE', `--device-class must be 1-${LIMITS.maxDeviceClassBytes} characters of [A-Za-z0-9._-]`);
  }
  if (opts.version.length > LIMITS.maxVersionBytes || !SEMVER_PATTERN.test(opts.version)) {
    throw new FwsealError('USAGE', `--version must be a SemVer 2.0.0 version such as 1.4.2 or 2.0.0-rc.1`);
  }
  if (!Number.isSafeInteger(opts.securityCounter) || opts.securityCounter < 0) {
    throw new FwsealError('USAGE', '--counter must be a whole number >= 0');
  }
  let sbom: Manifest['sbom'];
  if (opts.sbom) {
    const bytes = readFileLimited(opts.sbom.path, SBOM_MAX_BYTES, 'SBOM');
    sbom = { digest: new Uint8Array(nodeSha256(bytes)), uri: opts.sbom.uri };
  }
  const { size, leaves, root } = hashImage(opts.imagePath, chunkSize, opts.onProgress);
  const manifest: Manifest = {
    deviceClass: opts.deviceClass,
    version: opts.version,
    securityCounter: opts.securityCounter,
    imageSize: size,
    chunkSize,
    merkleRoot: root,
    ...(sbom ? { sbom } : {}),
    ...(opts.provenance && (opts.provenance.pipelineRun || opts.provenance.sourceRevision) ? { provenance: opts.provenance } : {}),
    created: createdTime(opts.created),
  };
  let payload: Uint8Array;
  try {
    payload = encodeManifest(manifest);
  } catch (e) {
    throw new FwsealError('USAGE', (e as Error).message);
  }
  return { manifest, envelope: encodeEnvelope({ payload, signatures: [] }), digestTable: encodeDigestTable(leaves) };
}
