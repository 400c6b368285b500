/**
 * Image upload over SMP (SPEC.md §13.3), both sides: the device's receiver, where the device decides
 * the resume offset, and a pipelined host uploader driven by the offsets the device answers.
 */
import { bytesEqual } from '../shared/bytes.js';
import { type Result, fail, ok } from '../shared/codes.js';
import { type ImageUploadRequest, type ImageUploadResponse, type SmpError, MGMT_ERR, chunkCapacity, imageUpload } from '../shared/smp.js';
import { type SmpClient } from './smp-endpoint.js';

/** Where the received bytes go (the simulated device's slot, via its update agent). */
export interface UploadSink {
  /** A new upload of `len` bytes; an SMP error refuses it (e.g. ENOMEM: does not fit the slot). */
  begin(len: number, sha: Uint8Array | undefined): SmpError | null;
  /** Bytes at `off`, always the next expected ones. */
  write(off: number, data: Uint8Array): SmpError | null;
}

/**
 * The device side of image upload, as Zephyr's img_mgmt: the device answers the offset it expects
 * next. A chunk at another offset is not taken (the answer tells the client where to go back to);
 * a first chunk (off 0, len) with the sha of the upload in progress resumes it; any other first
 * chunk starts a new upload. Pure: no I/O but the sink.
 */
export class UploadReceiver {
  private len = -1;
  private sha: Uint8Array | undefined;
  private expected = 0;

  constructor(private readonly sink: UploadSink) {}

  /** Bytes received so far of the upload in progress (0 when none). */
  get offset(): number {
    return this.len < 0 ? 0 : this.expected;
  }

  handle(req: ImageUploadRequest): { readonly value: ImageUploadResponse } | { readonly error: SmpError } {
    if (req.off === 0 && req.len !== undefined) {
      const resume = this.len === req.len && this.sha !== undefined && req.sha !== undefined && bytesEqual(this.sha, req.sha);
      if (resume && this.expected > 0) return { value: { off: this.expected } };
      if (!resume) {
        const refused = this.sink.begin(req.len, req.sha);
        if (refused !== null) return { error: refused };
        this.len = req.len;
        this.sha = req.sha?.slice();
        this.expected = 0;
      }
    }
    if (this.len < 0 || req.off !== this.expected) return { value: { off: this.offset } };
    if (req.off + req.data.length > this.len) return { error: { rc: MGMT_ERR.EINVAL, rsn: 'chunk past len' } };
    if (req.data.length > 0) {
      const failed = this.sink.write(req.off, req.data);
      if (failed !== null) return { error: failed };
      this.expected += req.data.length;
    }
    return { value: { off: this.expected } };
  }
}

export type UploadOptions = {
  /** SHA-256 of the image: identifies the upload, so a restarted upload resumes. */
  readonly sha?: Uint8Array;
  /** Data bytes per chunk at most (default: as many as fit one SMP packet). */
  readonly chunkBytes?: number;
  /** Requests in flight (default 2: one on the wire while the device answers the other). */
  readonly window?: number;
  /** Per request (default 2000 ms). */
  readonly timeoutMs?: number;
  /** Timeouts and refusals in a row without progress before giving up (default 8). */
  readonly maxStalls?: number;
};

export type UploadReport = {
  /** Requests sent, resends included. */
  readonly requests: number;
  /** Chunks sent again (after a loss or a rewind). */
  readonly resent: number;
  /** Where the device said the upload stood at the start (> 0: resumed). */
  readonly resumedAt: number;
  /** Data bytes sent, resends included. */
  readonly dataBytes: number;
  /** Bytes the device told the uploader to skip (answered offsets past the chunk sent: it already holds them). */
  readonly skipped: number;
};

type Sent = { readonly off: number; readonly end: number; readonly epoch: number };

/**
 * Upload `image` with up to `window` chunks in flight. The device's answered offset is the truth:
 * an answer short of a chunk's end (that chunk or an earlier one was lost) rewinds the sender there
 * once per loss (an epoch counter ignores the answers to chunks sent before the rewind); a timeout
 * rewinds to the highest answered offset. Never throws.
 */
export async function uploadImage(client: SmpClient, image: Uint8Array, options: UploadOptions = {}): Promise<Result<UploadReport>> {
  const len = image.length;
  const window = Math.max(1, Math.floor(options.window ?? 2));
  const maxStalls = options.maxStalls ?? 8;
  const chunkAt = (off: number) => {
    const fields = off === 0 ? { off, len, sha: options.sha, data: new Uint8Array(0) } : { off, data: new Uint8Array(0) };
    return Math.min(options.chunkBytes ?? Number.POSITIVE_INFINITY, chunkCapacity(imageUpload, fields), len - off);
  };
  const requestAt = (off: number, n: number): ImageUploadRequest =>
    off === 0 ? { off, len, ...(options.sha ? { sha: options.sha } : {}), data: image.subarray(0, n) } : { off, data: image.subarray(off, off + n) };

  let requests = 0;
  let resent = 0;
  let dataBytes = 0;
  let skipped = 0;
  let stalls = 0;
  let highestSent = 0;

  // The first chunk learns where the device stands (a resume answers its offset, not ours).
  let acked = -1;
  while (acked < 0) {
    const n = chunkAt(0);
    requests++;
    dataBytes += n;
    const r = await client.request(imageUpload, requestAt(0, n), options.timeoutMs);
    if (r.ok && r.value !== undefined) {
      acked = r.value.off;
      if (acked > n) skipped += acked - n;
    }
    else if (r.ok) return fail('TRANSPORT_UNAVAILABLE', `device refused the upload: rc ${r.smpError.rc}${r.smpError.rsn ? ' ' + r.smpError.rsn : ''}`);
    else if (++stalls > maxStalls) return fail('TRANSPORT_TIMEOUT', `no answer to the first chunk: ${r.error}`);
  }
  const resumedAt = acked === chunkAt(0) ? 0 : acked;
  highestSent = Math.max(acked, chunkAt(0));
  stalls = 0;

  let epoch = 0;
  let sendOff = acked;
  const inFlight = new Map<Promise<void>, Sent>();
  let failure: Result<UploadReport> | null = null;

  const send = (off: number) => {
    const n = chunkAt(off);
    const sent: Sent = { off, end: off + n, epoch };
    if (off < highestSent) resent++;
    highestSent = Math.max(highestSent, off + n);
    requests++;
    dataBytes += n;
    const p: Promise<void> = client.request(imageUpload, requestAt(off, n), options.timeoutMs).then((r) => {
      inFlight.delete(p);
      if (r.ok && r.value !== undefined) {
        const answered = r.value.off;
        if (answered > acked) { acked = answered; stalls = 0; }
        if (answered !== sent.end && sent.epoch === epoch) {
          if (answered > sent.end) skipped += answered - sent.end;
          // This chunk was not taken: go back to where the device is.
          epoch++;
          sendOff = answered;
          acked = answered;
          if (++stalls > maxStalls) failure = fail('TRANSPORT_TIMEOUT', 'no progress');
        }
      } else if (r.ok) {
        failure = fail('TRANSPORT_UNAVAILABLE', `device refused a chunk at ${sent.off}: rc ${r.smpError.rc}${r.smpError.rsn ? ' ' + r.smpError.rsn : ''}`);
      } else if (acked < sent.end && sent.epoch === epoch) {
        epoch++;
        sendOff = acked;
        if (++stalls > maxStalls) failure = fail('TRANSPORT_TIMEOUT', `no answer for chunk at ${sent.off}`);
      }
    });
    inFlight.set(p, sent);
    return n;
  };

  while (acked < len && failure === null) {
    while (inFlight.size < window && sendOff < len) sendOff += send(sendOff);
    if (inFlight.size === 0) {
      // Everything sent and answered, yet the device is short: send from where it is.
      sendOff = acked;
      continue;
    }
    await Promise.race(inFlight.keys());
  }
  // Let the remaining answers land so no request outlives the upload.
  await Promise.all(inFlight.keys());
  if (failure !== null) return failure;
  return ok({ requests, resent, resumedAt, dataBytes, skipped });
}
