/**
 * The simulated device's side of an update bundle upload (SPEC.md §13.5): the sink of its image
 * upload receiver. It verifies the manifest when its last byte arrives (`beginUpdate`: nothing is
 * written before it passes), proves each digest page when its proof is complete, checks each chunk
 * against its proven leaf with one hash when the chunk is complete, and writes only then. RAM: one
 * page (at most 4 KiB + proof) and one chunk.
 *
 * The device decides where to resume: after the manifest it answers the offset of the next byte it
 * needs, skipping pages and chunks its flash already holds (UpdateAgent.missingChunks). Offsets,
 * `len` and the sha of a restarted upload are the UploadReceiver's (hil/upload.ts).
 */

import { type UpdateAgent } from '../device/agent/agent.js';
import { parseEnvelope, parseManifest } from '../device/index.js';
import { type DigestPage } from '../device/verify/image.js';
import {
  BUNDLE_HEADER_BYTES,
  BUNDLE_V2_HEADER_BYTES,
  type BundleLayout,
  type BundlePage,
  bundleHeaderBytes,
  bundleLayout,
  chunkLength,
  chunkOffset,
  parseBundleHeaderAny,
} from '../shared/bundle.js';
import { CODES, type CodeName, type Result } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { MGMT_ERR, type SmpError } from '../shared/smp/errors.js';
import { type SmpHeader } from '../shared/smp/packet.js';
import { type UploadSink } from './upload.js';

/** A refused operation: its §9 code, code name and detail. */
export type Rejection = { readonly code: number; readonly error: string; readonly detail?: string };

/** What the sink needs from the device around it. */
export type BundleSinkDevice = {
  readonly agent: UpdateAgent;
  readonly slotSize: number;
  readonly log: (line: string) => void;
  /** Keep `code` as the device's last code (status `code`; 0 when an operation is accepted). */
  readonly setCode: (code: number) => void;
  /** Keep the rejection's code and answer it in the request's SMP version (SPEC.md §13.6). */
  readonly reject: (r: Rejection, header: SmpHeader | undefined, what: string) => SmpError;
  /** The agent's finishDownload, with the rig's commit power cut armed around it. */
  readonly commit: () => ReturnType<UpdateAgent['finishDownload']>;
  /** Chunk `index` is on flash (the rig's power cut after K chunks may follow). */
  readonly chunkWritten: (index: number) => void;
};

/** The bundle upload in progress; offsets, `len` and resume are the UploadReceiver's. */
type Upload = {
  readonly len: number;
  header: Uint8Array;
  /** 12 (FWSBND1) or 16 (FWSBND2) once the magic is in, else -1. */
  headerBytes: number;
  /** From the bundle header (-1 until it is complete). */
  manifestLength: number;
  /** Log proof attachment length from an FWSBND2 header; 0 for FWSBND1. */
  proofLength: number;
  /** The manifest envelope followed by the log proof (FWSBND2), as received. */
  manifest: Uint8Array | null;
  layout: BundleLayout | null;
  missing: Set<number>;
  /** Digests + proof of the page being received. */
  pageBuf: Uint8Array | null;
  page: DigestPage | null;
  pageIndex: number;
  chunkBuf: Uint8Array | null;
};

/** What taking bytes at an offset led to: the next offset wanted (`jumped`: past the bytes given), or a refusal. */
type Step = { next: number; jumped: boolean } | { error: Rejection };

export class UpdateBundleSink implements UploadSink {
  #upload: Upload | null = null;
  /** The longest bundle whose image could fit the slot (largest manifest, smallest chunks): `len` above it is refused before anything is kept. */
  readonly #maxBundleBytes: number;

  constructor(private readonly device: BundleSinkDevice) {
    this.#maxBundleBytes = bundleLayout(LIMITS.maxEnvelopeBytes, device.slotSize, LIMITS.minChunkSize, LIMITS.maxLogProofBytes).length;
  }

  /** Forget the upload in progress (a new download began: the bundle belongs to the previous one). */
  abandon(): void {
    this.#upload = null;
  }

  /**
   * A new bundle upload (SPEC.md §13.5, §13.7): `len` must leave room for the bundle header and a
   * manifest, and not exceed the longest bundle whose image fits the slot (SLOT_TOO_SMALL, before
   * anything is kept). Offsets, resume and `len` itself are then the UploadReceiver's.
   */
  begin(len: number, _sha: Uint8Array | undefined, header?: SmpHeader): SmpError | null {
    const refuse = (name: 'BAD_VALUE' | 'SLOT_TOO_SMALL', detail: string) => this.device.reject({ code: CODES[name], error: name, detail }, header, 'upload');
    if (len <= BUNDLE_HEADER_BYTES) return refuse('BAD_VALUE', `upload len ${len} holds no bundle`);
    if (len > this.#maxBundleBytes) return refuse('SLOT_TOO_SMALL', `upload len ${len}, at most ${this.#maxBundleBytes} for this slot`);
    this.#upload = {
      len,
      header: new Uint8Array(0),
      headerBytes: -1,
      manifestLength: -1,
      proofLength: 0,
      manifest: null,
      layout: null,
      missing: new Set(),
      pageBuf: null,
      page: null,
      pageIndex: -1,
      chunkBuf: null,
    };
    this.device.log(`upload: new bundle of ${len} bytes`);
    return null;
  }

  /** Bundle bytes at `off` (the expected offset): the offset the device wants next, or a rejection (the upload is dropped). */
  write(off: number, data: Uint8Array, header?: SmpHeader): SmpError | { next: number } {
    const u = this.#upload;
    if (u === null) return { rc: MGMT_ERR.EBADSTATE, rsn: 'AGENT_BAD_STATE' }; // the receiver begins before it writes
    let pos = off;
    const end = off + data.length;
    while (pos < end) {
      const step = this.#consume(u, data.subarray(pos - off), pos);
      if ('error' in step) {
        this.#upload = null;
        return this.device.reject(step.error, header, 'upload');
      }
      pos = step.next;
      if (step.jumped) break; // the bytes after a jump are not the ones the device wants
    }
    if (pos === u.len && u.layout !== null && u.missing.size === 0 && u.manifest !== null) {
      const done = this.#finish(u);
      if (done !== null) return this.device.reject(done, header, 'commit');
    }
    return { next: pos };
  }

  #finish(u: Upload): Result<object> | null {
    const f = this.device.commit();
    if (!f.ok) {
      this.#upload = null;
      return f;
    }
    this.device.setCode(0);
    this.device.log(`download complete: slot ${f.slot} verified and pending`);
    // Kept (complete): a client whose last answer was lost is answered `len` again, not refused.
    u.manifest = null;
    return null;
  }

  /**
   * Take bytes at bundle offset `at` (the expected one), in the section of the bundle they belong
   * to. Returns the next offset wanted and whether it is a jump (the rest of `data` is not used).
   */
  #consume(u: Upload, data: Uint8Array, at: number): Step {
    if (u.manifestLength < 0) return takeHeader(u, data, at);
    if (u.layout === null) return this.#takeManifest(u, data, at);
    const page = u.layout.pages.find((p) => at >= p.digestsAt && at < p.end) as BundlePage;
    if (at < page.chunksAt) return this.#takeDigestPage(u, page, data, at);
    return this.#takeChunk(u, page, data, at);
  }

  /**
   * The manifest (and in an FWSBND2 bundle the log proof after it): verified, and the download begun
   * or resumed, before anything is written. The proof goes to the agent unread (issue 19 item 2).
   */
  #takeManifest(u: Upload, data: Uint8Array, at: number): Step {
    const want = u.manifestLength;
    const n = Math.min(data.length, want + u.proofLength - (at - u.headerBytes));
    u.manifest = concat(u.manifest ?? new Uint8Array(0), data.subarray(0, n));
    if (u.manifest.length < want + u.proofLength) return { next: at + n, jumped: false };
    const envelope = u.manifest.subarray(0, want);
    const proof = u.proofLength > 0 ? u.manifest.subarray(want) : undefined;
    const env = parseEnvelope(envelope);
    const m = env.ok ? parseManifest(env.envelope.payload) : null;
    if (!env.ok) return { error: env };
    if (m === null || !m.ok) return m === null ? refusal('MALFORMED', 'manifest') : { error: m };
    // The layout is built only for an image that fits this upload (and so the slot): unsigned input sizes nothing.
    if (m.value.imageSize > u.len) return refusal('BAD_VALUE', `upload len ${u.len}, the manifest's image is ${m.value.imageSize} bytes`);
    const layout = bundleLayout(want, m.value.imageSize, m.value.chunkSize, proof?.length);
    if (layout.length !== u.len) return refusal('BAD_VALUE', `upload len ${u.len}, the bundle of this manifest is ${layout.length} bytes`);
    const begun = this.device.agent.beginUpdate(envelope, proof);
    if (!begun.ok) return { error: begun };
    this.device.setCode(0);
    u.layout = layout;
    u.missing = new Set(this.device.agent.missingChunks());
    this.device.log(
      `manifest ${m.value.version} (counter ${m.value.securityCounter}) accepted; ${begun.missing} of ${begun.chunks} chunks to fetch${begun.resumed ? ' (resumed from flash)' : ''}`,
    );
    return this.#jumpFrom(u, at + n);
  }

  /** Digest page: leaves then proof, proven against the signed root before its chunks are taken. */
  #takeDigestPage(u: Upload, page: BundlePage, data: Uint8Array, at: number): Step {
    const size = page.leavesBytes + page.proofBytes;
    if (u.pageIndex !== page.page || u.pageBuf === null) {
      u.pageIndex = page.page;
      u.pageBuf = new Uint8Array(0);
      u.page = null;
    }
    const n = Math.min(data.length, size - (at - page.digestsAt));
    u.pageBuf = concat(u.pageBuf, data.subarray(0, n));
    if (u.pageBuf.length < size) return { next: at + n, jumped: false };
    const r = this.device.agent.verifyDigestPage(page.page, u.pageBuf.subarray(0, page.leavesBytes), u.pageBuf.subarray(page.leavesBytes));
    if (!r.ok) return { error: r };
    u.page = r.digestPage;
    u.pageBuf = null;
    return this.#jumpFrom(u, at + n);
  }

  /** A chunk: collected whole, checked against its proven digest, then written. */
  #takeChunk(u: Upload, page: BundlePage, data: Uint8Array, at: number): Step {
    const layout = u.layout as BundleLayout;
    const index = page.firstChunk + Math.floor((at - page.chunksAt) / layout.chunkSize);
    const start = chunkOffset(layout, index);
    const len = chunkLength(layout, index);
    if (at === start) u.chunkBuf = new Uint8Array(0);
    const n = Math.min(data.length, start + len - at);
    u.chunkBuf = concat(u.chunkBuf ?? new Uint8Array(0), data.subarray(0, n));
    if (u.chunkBuf.length < len) return { next: at + n, jumped: false };
    if (u.page === null || u.pageIndex !== page.page) return refusal('DIGEST_PAGE_MISMATCH', `chunk ${index} before its digest page`);
    const w = this.device.agent.writeChunk(index, u.chunkBuf, u.page);
    u.chunkBuf = null;
    if (!w.ok) return { error: w };
    u.missing.delete(index);
    this.device.chunkWritten(index);
    return this.#jumpFrom(u, at + n);
  }

  /** After a complete section: the next offset wanted from `at`, a jump when it is not `at`. */
  #jumpFrom(u: Upload, at: number): Step {
    const next = this.#nextWanted(u, at);
    return { next, jumped: next !== at };
  }

  /**
   * The next bundle offset worth receiving from `at` (a section boundary): pages whose chunks are
   * all written are skipped, and so are written chunks; a page's digests are needed (again, after a
   * reset) before any of its missing chunks.
   */
  #nextWanted(u: Upload, at: number): number {
    const layout = u.layout as BundleLayout;
    for (const p of layout.pages) {
      if (at >= p.end) continue;
      let firstMissing = -1;
      for (
        let i = Math.max(p.firstChunk, at >= p.chunksAt ? p.firstChunk + Math.floor((at - p.chunksAt) / layout.chunkSize) : p.firstChunk);
        i < p.endChunk;
        i++
      ) {
        if (u.missing.has(i)) {
          firstMissing = i;
          break;
        }
      }
      if (firstMissing < 0) {
        at = p.end;
        continue;
      }
      if (u.page === null || u.pageIndex !== p.page) return Math.max(at, p.digestsAt);
      return Math.max(at, chunkOffset(layout, firstMissing));
    }
    return layout.length;
  }
}

/**
 * The bundle header (SPEC.md §13.5): magic and manifest length, and for FWSBND2 the log proof
 * length, checked before the manifest is taken. The first 12 bytes decide the version (FWSBND1 is
 * refused or taken there, as always); FWSBND2 reads 4 more.
 */
function takeHeader(u: Upload, data: Uint8Array, at: number): Step {
  const n = Math.min(data.length, (u.headerBytes < 0 ? BUNDLE_HEADER_BYTES : u.headerBytes) - at);
  u.header = concat(u.header, data.subarray(0, n));
  if (u.header.length === BUNDLE_HEADER_BYTES) {
    const size = bundleHeaderBytes(u.header);
    if (size === null) return refusal('MALFORMED', 'not an fwseal update bundle');
    u.headerBytes = size;
  }
  const h = u.header.length === u.headerBytes ? parseBundleHeaderAny(u.header) : null;
  if (h === null) return { next: at + n, jumped: false };
  const { manifestBytes: len, proofBytes } = h;
  if (len < 1 || len > LIMITS.maxEnvelopeBytes) return refusal('TOO_LARGE', `manifest of ${len} bytes`);
  if (u.headerBytes === BUNDLE_V2_HEADER_BYTES && (proofBytes < 1 || proofBytes > LIMITS.maxLogProofBytes))
    return refusal(proofBytes < 1 ? 'BAD_VALUE' : 'TOO_LARGE', `log proof of ${proofBytes} bytes`);
  if (u.headerBytes + len + proofBytes > u.len) return refusal('BAD_VALUE', `upload len ${u.len} is shorter than its manifest of ${len} bytes`);
  u.manifestLength = len;
  u.proofLength = proofBytes;
  u.manifest = new Uint8Array(0);
  return { next: at + n, jumped: false };
}

function refusal(name: CodeName, detail: string): { error: Rejection } {
  return { error: { code: CODES[name], error: name, detail } };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
