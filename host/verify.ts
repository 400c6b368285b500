/**
 * `fwseal verify`: the device verifier run over files. There is one verifier: this file only reads
 * files and feeds device/ — manifest checks, then the image streamed with its digest pages.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { type DeviceState, type VerifiedManifest } from '../device/index.js';
import { bytesEqual, toHex } from '../shared/bytes.js';
import { CODES, type CodeName, fail, ok, type Result } from '../shared/codes.js';
import { parseEnvelope, sigStructure } from '../shared/cose.js';
import { LIMITS } from '../shared/limits.js';
import { type Manifest } from '../shared/manifest.js';
import { parseRevocationList } from '../shared/trust.js';
import { type DigestPages, digestPages, maxDigestTableBytes } from './digests.js';
import { exitStatusFor, FwsealError } from './errors.js';
import { hostVerifier } from './hash.js';
import { readFileLimited } from './io.js';

export type VerifyFilesOptions = {
  readonly envelope: Uint8Array;
  readonly trust: Uint8Array;
  readonly state: DeviceState;
  readonly imagePath?: string;
  /** Digest table path; when given and the image does not match, the first wrong chunk is named. */
  readonly digestsPath?: string;
  readonly onProgress?: (done: number, total: number) => void;
};

export type VerifyFilesResult = { readonly result: Result<VerifiedManifest>; readonly usedDigestTable: boolean };

/**
 * Read buffer of the image stream. Small on purpose: each read is hashed while it is still in the
 * CPU cache, and a fresh 4 MiB buffer cost a 1 MiB verify ~3 ms of page faults (issue 17 cold start);
 * 128 KiB reads measured as fast as 4 MiB ones on a 256 MiB image.
 */
const READ_BUFFER = 128 * 1024;

/** The size of a digest table that exists and is a regular file; IO otherwise (checked before the image is read). */
function statDigestTable(path: string): number {
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new FwsealError('IO', `digest table ${path} is not a regular file`);
    return st.size;
  } catch (e) {
    if (e instanceof FwsealError) throw e;
    throw new FwsealError('IO', `cannot open digest table ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** A digest table that does not fit the manifest is a rejection (a code), not an I/O error. */
function loadDigestTable(path: string, manifest: Manifest): Result<{ pages: DigestPages }> {
  const size = statDigestTable(path);
  const expected = maxDigestTableBytes(manifest);
  if (size !== expected) return fail('DIGEST_PAGE_MISMATCH', `digest table is ${size} bytes; this manifest needs ${expected}`);
  try {
    return ok({ pages: digestPages(readFileLimited(path, expected, 'digest table'), manifest) });
  } catch (e) {
    if (e instanceof FwsealError && exitStatusFor(e.code) === 1) return fail(e.codeName as Exclude<CodeName, 'OK'>, e.message);
    throw e;
  }
}

/**
 * SPEC.md §14 H14: the image is streamed once against the signed root alone (leaf and node hashes,
 * no page proofs), which is all a matching image needs. Only when the root does not match is the
 * digest table read, and the image streamed again page by page to name the first wrong chunk (or a
 * table that does not fit the manifest). A good image never pays for the table (about 0.3 of a
 * 256 MiB verify: the table's page roots, then the device recomputing them, tools/bench pack-verify).
 */
export function verifyFiles(opts: VerifyFilesOptions): VerifyFilesResult {
  const checked = hostVerifier.verifyManifest(opts.envelope, opts.trust, opts.state);
  if (!checked.ok || opts.imagePath === undefined) return { result: checked, usedDigestTable: false };
  const manifest = checked.manifest;
  if (opts.digestsPath) statDigestTable(opts.digestsPath);
  const fast = streamImage(opts.imagePath, manifest, null, opts.onProgress);
  if (fast.ok || fast.code !== CODES.MERKLE_ROOT_MISMATCH || !opts.digestsPath) return { result: fast.ok ? checked : fast, usedDigestTable: false };
  const loaded = loadDigestTable(opts.digestsPath, manifest);
  if (!loaded.ok) return { result: loaded, usedDigestTable: true };
  const located = streamImage(opts.imagePath, manifest, loaded.pages);
  // The table fits the manifest and every chunk matched its page: only a changed file gets here.
  return { result: located.ok ? fast : located, usedDigestTable: true };
}

/** One pass of the image through the device's streaming verifier, with digest pages when given. */
function streamImage(path: string, manifest: Manifest, pages: DigestPages | null, onProgress?: (done: number, total: number) => void): Result {
  const verifier = hostVerifier.imageVerifier(manifest);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new FwsealError('IO', `cannot open image ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FwsealError('IO', `image ${path} is not a regular file`);
    const size = st.size;
    // Wrong length is known before any byte is read.
    if (size > manifest.imageSize) return fail('IMAGE_TOO_LONG', `image is ${size} bytes; the manifest says ${manifest.imageSize}`);
    const pageBytes = LIMITS.pageLeaves * manifest.chunkSize;
    const buf = Buffer.allocUnsafe(Math.min(READ_BUFFER, Math.max(manifest.chunkSize, size)));
    let offset = 0;
    let nextPage = 0;
    for (;;) {
      // Each read stops at a page boundary so the page's digests are in place before its chunks.
      if (pages && nextPage < pages.count && offset === nextPage * pageBytes) {
        const r = verifier.addDigestPage(nextPage, pages.leaves(nextPage), pages.proof(nextPage));
        if (!r.ok) return r;
        nextPage++;
      }
      const untilPage = pages ? pageBytes - (offset % pageBytes) : buf.length;
      const got = readSync(fd, buf, 0, Math.min(buf.length, untilPage), offset);
      if (got === 0) break;
      const r = verifier.update(buf.subarray(0, got));
      if (!r.ok) return r;
      offset += got;
      onProgress?.(offset, manifest.imageSize);
    }
    return verifier.finish();
  } finally {
    closeSync(fd);
  }
}

/** Why a manifest signature did not count (SPEC.md §14 H9). */
export type IgnoredReason = 'unknown-kid' | 'wrong-role' | 'revoked' | 'duplicate' | 'invalid';
export type IgnoredSignature = { readonly keyId: string; readonly reason: IgnoredReason };

export const IGNORED_TEXT: Readonly<Record<IgnoredReason, string>> = Object.freeze({
  'unknown-kid': 'a key in no role of the trust bundle',
  'wrong-role': 'a root key; manifests count release keys only',
  revoked: 'a release key the revocation list revokes',
  duplicate: 'a second signature by a key already counted',
  invalid: 'does not verify with the release key of that id',
});

/**
 * The manifest signatures that V6 does not count, and why. This explains a verdict, it never makes
 * one: the verdict is verifyFiles' (the device verifier's). It reads the same parsed objects and uses
 * the verifier's own Ed25519; when the trust bundle does not load there is nothing to explain.
 */
export function explainManifestSignatures(envelope: Uint8Array, trust: Uint8Array, revocations?: Uint8Array): IgnoredSignature[] {
  const env = parseEnvelope(envelope);
  const loaded = hostVerifier.loadTrust(trust);
  if (!env.ok || !loaded.ok) return [];
  const { release, root } = loaded.trust;
  let revoked: readonly Uint8Array[] = [];
  const rl = revocations ? parseEnvelope(revocations) : null;
  if (rl?.ok) {
    const list = parseRevocationList(rl.envelope.payload);
    if (list.ok) revoked = list.value.keyIds;
  }
  const has = (kids: readonly Uint8Array[], kid: Uint8Array) => kids.findIndex((k) => bytesEqual(k, kid));
  const message = sigStructure(env.envelope.payload);
  const counted: number[] = [];
  const ignored: IgnoredSignature[] = [];
  for (const sig of env.envelope.signatures) {
    const i = has(release.kids, sig.kid);
    let reason: IgnoredReason | null = null;
    if (i < 0) reason = has(root.kids, sig.kid) >= 0 ? 'wrong-role' : 'unknown-kid';
    else if (has(revoked, sig.kid) >= 0) reason = 'revoked';
    else if (counted.includes(i)) reason = 'duplicate';
    else if (!hostVerifier.verifyEd25519(sig.signature, message, release.keys[i])) reason = 'invalid';
    else counted.push(i);
    if (reason) ignored.push({ keyId: toHex(sig.kid), reason });
  }
  return ignored;
}
