/**
 * `fwseal verify --image` and the digest table (SPEC.md §14 H14): a matching image is accepted in one
 * pass without reading the table; only a non-matching image reads it, to name the first wrong chunk
 * or a table that does not fit the manifest.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FwsealError } from '../host/errors.js';
import { pack } from '../host/pack.js';
import { signEnvelope } from '../host/sign.js';
import { verifyFiles } from '../host/verify.js';
import { CODES } from '../shared/codes.js';
import { detBytes, detKey, makeTrust } from './support/fixtures.js';

const CHUNK = 1024;
const IMAGE_SIZE = 300 * CHUNK + 77; // three digest pages, the last one partial
const WRONG_CHUNK = 200; // in the second page

let dir: string;
const p = (f: string) => join(dir, f);
let envelope: Uint8Array;
let trust: Uint8Array;
let table: Uint8Array;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fwseal-verify-digests-'));
  const [A, B, R1, R2] = ['A', 'B', 'R1', 'R2'].map(detKey);
  trust = makeTrust({ root: [A, B], rootThreshold: 2, release: [R1, R2], releaseThreshold: 1, signers: [A, B] });
  const image = detBytes(IMAGE_SIZE, 'verify-digests image');
  writeFileSync(p('image.bin'), image);
  const tampered = Buffer.from(image);
  tampered[WRONG_CHUNK * CHUNK + 5] ^= 1;
  writeFileSync(p('tampered.bin'), tampered);
  writeFileSync(p('short.bin'), image.subarray(0, IMAGE_SIZE - 1));
  const packed = pack({ imagePath: p('image.bin'), deviceClass: 'acme-gw', version: '1.0.0', securityCounter: 1, chunkSize: CHUNK, created: 1764000000 });
  envelope = signEnvelope(packed.envelope, R1).envelope;
  table = packed.digestTable;
  writeFileSync(p('m.digests'), table);
  // The same size as the real table, other leaves: it does not fit the manifest.
  const garbage = Buffer.from(table);
  for (let i = 8; i < garbage.length; i++) garbage[i] ^= 0x5a;
  writeFileSync(p('garbage.digests'), garbage);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (image: string, digests?: string, onProgress?: (done: number, total: number) => void) =>
  verifyFiles({
    envelope,
    trust,
    state: { deviceClass: 'acme-gw', counter: 0 },
    imagePath: p(image),
    ...(digests ? { digestsPath: p(digests) } : {}),
    ...(onProgress ? { onProgress } : {}),
  });

describe('verify --image with a digest table (SPEC.md §14 H14)', () => {
  it('a matching image is accepted in one pass and the table is not read', () => {
    const seen: number[] = [];
    const r = run('image.bin', 'm.digests', (done) => seen.push(done));
    expect(r.result.ok).toBe(true);
    expect(r.usedDigestTable).toBe(false);
    expect(seen.at(-1)).toBe(IMAGE_SIZE);
    expect(seen.filter((d) => d === IMAGE_SIZE)).toHaveLength(1);
    // A table that does not fit changes nothing for a matching image: it was not needed.
    const g = run('image.bin', 'garbage.digests');
    expect(g.result.ok).toBe(true);
    expect(g.usedDigestTable).toBe(false);
  });

  it('a wrong chunk: the table is read and names it (CHUNK_DIGEST_MISMATCH); without the table the root fails', () => {
    const r = run('tampered.bin', 'm.digests');
    expect(r.result.ok).toBe(false);
    expect(r.result.code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
    expect(r.usedDigestTable).toBe(true);
    const bare = run('tampered.bin');
    expect(bare.result.code).toBe(CODES.MERKLE_ROOT_MISMATCH);
    expect(bare.usedDigestTable).toBe(false);
  });

  it('a wrong chunk with a table that does not fit: DIGEST_PAGE_MISMATCH', () => {
    const r = run('tampered.bin', 'garbage.digests');
    expect(r.result.code).toBe(CODES.DIGEST_PAGE_MISMATCH);
    expect(r.usedDigestTable).toBe(true);
  });

  it('a truncated image is IMAGE_TOO_SHORT with or without the table; the table is not read for it', () => {
    for (const digests of ['m.digests', undefined]) {
      const r = run('short.bin', digests);
      expect(r.result.code).toBe(CODES.IMAGE_TOO_SHORT);
      expect(r.usedDigestTable).toBe(false);
    }
  });

  it('a --digests path that does not exist or is a folder is IO before the image is read', () => {
    for (const digests of ['missing.digests', '.']) {
      let error: unknown;
      try {
        run('image.bin', digests);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(FwsealError);
      expect((error as FwsealError).codeName).toBe('IO');
    }
  });
});
