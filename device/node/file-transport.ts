/**
 * A Transport over local files (the gateway agent's "local file transport"): the image file and the
 * digest table written by `fwseal pack` (magic "FWSDIG1\0" + 32-byte leaf hashes). Page proofs are
 * computed here from the table; the agent checks everything against the signed root anyway.
 */

import { hash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { LIMITS } from '../../shared/limits.js';
import { pageLeafRange, pageProofs } from '../../shared/merkle.js';
import { type Transport } from '../agent/driver.js';

const MAGIC = [0x46, 0x57, 0x53, 0x44, 0x49, 0x47, 0x31, 0x00];
const sha256 = (d: Uint8Array) => hash('sha256', d, 'buffer');

export type FileTransport = Transport & { close(): void; readonly chunkCount: number };

export function openFileTransport(imagePath: string, digestsPath: string, chunkSize: number): FileTransport {
  const table = new Uint8Array(readFileSync(digestsPath));
  if (table.length < 8 || MAGIC.some((b, i) => table[i] !== b) || (table.length - 8) % 32 !== 0)
    throw new RangeError(`${digestsPath} is not an fwseal digest table`);
  const leaves: Uint8Array[] = [];
  for (let o = 8; o < table.length; o += 32) leaves.push(table.subarray(o, o + 32));
  let proofs: Uint8Array[][] | null = null; // computed on first use, once
  const fd = openSync(imagePath, 'r');
  const size = fstatSync(fd).size;
  return {
    chunkCount: leaves.length,
    fetchDigestPage(page: number) {
      if (!Number.isSafeInteger(page) || page < 0 || page * LIMITS.pageLeaves >= leaves.length) return null;
      proofs ??= pageProofs(sha256, leaves);
      const { start, end } = pageLeafRange(page, leaves.length);
      const proof = new Uint8Array(proofs[page].length * 32);
      for (const [i, n] of proofs[page].entries()) proof.set(n, i * 32);
      return { leaves: table.subarray(8 + start * 32, 8 + end * 32), proof };
    },
    fetchChunk(index: number) {
      const offset = index * chunkSize;
      if (!Number.isSafeInteger(index) || index < 0 || offset >= size) return null;
      const buf = new Uint8Array(Math.min(chunkSize, size - offset));
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, offset + got);
        if (n === 0) return null;
        got += n;
      }
      return buf;
    },
    close: () => closeSync(fd),
  };
}
