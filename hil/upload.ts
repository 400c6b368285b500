/**
 * Image upload over SMP (SPEC.md §13.3), both sides: the device's receiver, where the device decides
 * the resume offset, and a pipelined host uploader driven by the offsets the device answers.
 */
import { bytesEqual } from '../shared/bytes.js';
import { fail, ok, type Result } from '../shared/codes.js';
import { type EnvelopeUploadResponse, type ImageUploadRequest, type ImageUploadResponse, imageUpload } from '../shared/smp/commands.js';
import { IMG_MGMT_ERR, refusalError } from '../shared/smp/error-map.js';
import { type SmpError } from '../shared/smp/errors.js';
import { type SmpHeader } from '../shared/smp/packet.js';
import { chunkCapacity, ENVELOPE_UPLOAD_BOUNDS, IMAGE_UPLOAD_BOUNDS, type UploadBounds, type UploadChunk, uploadChunkFault } from '../shared/smp/upload.js';
import { type SmpClient, type SmpReply } from './smp-endpoint.js';

/** Where the received bytes go (a slot, an envelope buffer, the simulated device's update agent). */
export interface UploadSink {
  /**
   * A new upload of `len` bytes, `len` already inside the receiver's bounds (so a sink may allocate
   * it); an SMP error refuses it (e.g. ENOMEM: does not fit the slot). `header`: the request's, when
   * the receiver was given it (errors in the request's SMP version).
   */
  begin(len: number, sha: Uint8Array | undefined, header?: SmpHeader): SmpError | null;
  /**
   * Bytes at `off`: always the next expected ones, never past `len`. null: all taken; `{ next }`: the
   * offset the sink wants next (off..len, past what it took: it skips what it already holds); an SMP
   * error: refused, the upload is dropped (a client starts again at 0).
   */
  write(off: number, data: Uint8Array, header?: SmpHeader): SmpError | null | { readonly next: number };
}

/**
 * The device side of an upload (image upload, and the group 64 envelope uploads), as Zephyr's
 * img_mgmt (SPEC.md §13.3, §13.7): the device answers the offset it expects next.
 *  - a chunk breaking the rules of uploadChunkFault (types, ranges, a first chunk without `len`,
 *    data past `len`) -> refusalError (v1 EINVAL with the code name as "rsn", v2 a group error in
 *    the request's group, shared/smp/error-map.ts); the upload in progress is kept
 *  - a first chunk (off 0, len) with the sha of the upload in progress resumes it (answers the
 *    offset held); any other first chunk starts a new upload (sink.begin)
 *  - a chunk at another offset than the expected one, or with no upload in progress, is not taken
 *    and is answered the expected offset (0 with none: the client starts again)
 *  - data running past the upload's `len` -> refusalError BAD_VALUE (Zephyr's "data overrun")
 * Nothing is sized or indexed with a number that was not checked. Pure: no I/O but the sink.
 */
export class UploadReceiver {
  private len = -1;
  private sha: Uint8Array | undefined;
  private expected = 0;

  constructor(
    private readonly sink: UploadSink,
    private readonly bounds: UploadBounds = IMAGE_UPLOAD_BOUNDS,
  ) {}

  /** Bytes received so far of the upload in progress (0 when none). */
  get offset(): number {
    return this.len < 0 ? 0 : this.expected;
  }

  /** Forget the upload in progress (the next chunk must be a first chunk). */
  abandon(): void {
    this.len = -1;
    this.sha = undefined;
    this.expected = 0;
  }

  handle(req: UploadChunk, header?: SmpHeader): { readonly value: { readonly off: number } } | { readonly error: SmpError } {
    const fault = uploadChunkFault(req, this.bounds);
    if (fault !== null) return { error: refusalError(header, fault.name) };
    const sha = req.sha instanceof Uint8Array ? req.sha : undefined;
    if (req.off === 0 && req.len !== undefined) {
      const resume = this.len === req.len && this.sha !== undefined && sha !== undefined && bytesEqual(this.sha, sha);
      if (resume && this.expected > 0) return { value: { off: this.expected } };
      if (!resume) {
        this.abandon();
        const refused = this.sink.begin(req.len, sha, header);
        if (refused !== null) return { error: refused };
        this.len = req.len;
        this.sha = sha?.slice();
      }
    }
    if (this.len < 0 || req.off !== this.expected) return { value: { off: this.offset } };
    if (req.off + req.data.length > this.len) return { error: refusalError(header, 'BAD_VALUE', IMG_MGMT_ERR.INVALID_IMAGE_DATA_OVERRUN) };
    if (req.data.length > 0) {
      const written = this.sink.write(req.off, req.data, header);
      if (written !== null && 'rc' in written) {
        this.abandon();
        return { error: written };
      }
      const next = written === null ? req.off + req.data.length : written.next;
      if (!Number.isSafeInteger(next) || next <= req.off || next > this.len) {
        // A sink bug, not the peer's: answered EUNKNOWN by the server, and the upload starts over.
        this.abandon();
        throw new RangeError(`upload sink answered offset ${next} after a chunk at ${req.off}`);
      }
      this.expected = next;
    }
    return { value: { off: this.expected } };
  }
}

/**
 * A group 64 envelope upload (SPEC.md §13.3): an UploadReceiver into RAM, `len` inside
 * ENVELOPE_UPLOAD_BOUNDS (1..maxEnvelopeBytes) before the buffer is allocated; once all `len` bytes
 * are in, `complete` runs once and its §9 code (0 accepted) is carried by every later answer.
 */
export class EnvelopeReceiver {
  #buf = new Uint8Array(0);
  #code: number | undefined;
  readonly #receiver: UploadReceiver;

  constructor(complete: (bytes: Uint8Array) => number) {
    this.#receiver = new UploadReceiver(
      {
        begin: (len) => {
          this.#buf = new Uint8Array(len);
          this.#code = undefined;
          return null;
        },
        write: (off, data) => {
          this.#buf.set(data, off);
          if (off + data.length === this.#buf.length) this.#code = complete(this.#buf);
          return null;
        },
      },
      ENVELOPE_UPLOAD_BOUNDS,
    );
  }

  handle(req: UploadChunk, header?: SmpHeader): { readonly value: EnvelopeUploadResponse } | { readonly error: SmpError } {
    const r = this.#receiver.handle(req, header);
    if ('error' in r) return r;
    return { value: this.#code === undefined ? { off: r.value.off } : { off: r.value.off, code: this.#code } };
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
  return new PipelinedUpload(client, image, options).run();
}

/** One run of uploadImage: its counters, where the device stands, and the chunks in flight. */
class PipelinedUpload {
  readonly #len: number;
  readonly #window: number;
  readonly #maxStalls: number;
  #requests = 0;
  #resent = 0;
  #dataBytes = 0;
  #skipped = 0;
  #stalls = 0;
  #highestSent = 0;
  /** The highest offset the device answered; -1 until it answered the first chunk. */
  #acked = -1;
  /** Bumped at each rewind: answers to chunks sent before it rewind nothing. */
  #epoch = 0;
  #sendOff = 0;
  readonly #inFlight = new Map<Promise<void>, Sent>();
  #failure: Result<UploadReport> | null = null;

  constructor(
    private readonly client: SmpClient,
    private readonly image: Uint8Array,
    private readonly options: UploadOptions,
  ) {
    this.#len = image.length;
    this.#window = Math.max(1, Math.floor(options.window ?? 2));
    this.#maxStalls = options.maxStalls ?? 8;
  }

  async run(): Promise<Result<UploadReport>> {
    const refused = await this.#firstChunk();
    if (refused !== null) return refused;
    const resumedAt = this.#acked === this.#chunkAt(0) ? 0 : this.#acked;
    this.#highestSent = Math.max(this.#acked, this.#chunkAt(0));
    this.#stalls = 0;
    this.#sendOff = this.#acked;
    while (this.#acked < this.#len && this.#failure === null) {
      while (this.#inFlight.size < this.#window && this.#sendOff < this.#len) this.#sendOff += this.#send(this.#sendOff);
      if (this.#inFlight.size === 0) {
        // Everything sent and answered, yet the device is short: send from where it is.
        this.#sendOff = this.#acked;
        continue;
      }
      await Promise.race(this.#inFlight.keys());
    }
    // Let the remaining answers land so no request outlives the upload.
    await Promise.all(this.#inFlight.keys());
    if (this.#failure !== null) return this.#failure;
    return ok({ requests: this.#requests, resent: this.#resent, resumedAt, dataBytes: this.#dataBytes, skipped: this.#skipped });
  }

  /** Data bytes of the chunk at `off`: as many as fit one packet, at most chunkBytes, none past the image. */
  #chunkAt(off: number): number {
    const len = this.#len;
    const fields = off === 0 ? { off, len, sha: this.options.sha, data: new Uint8Array(0) } : { off, data: new Uint8Array(0) };
    return Math.min(this.options.chunkBytes ?? Number.POSITIVE_INFINITY, chunkCapacity(imageUpload, fields), len - off);
  }

  #requestAt(off: number, n: number): ImageUploadRequest {
    const { image, options } = this;
    return off === 0
      ? { off, len: this.#len, ...(options.sha ? { sha: options.sha } : {}), data: image.subarray(0, n) }
      : { off, data: image.subarray(off, off + n) };
  }

  /** The first chunk learns where the device stands (a resume answers its offset, not ours); a failure, or null. */
  async #firstChunk(): Promise<Result<UploadReport> | null> {
    while (this.#acked < 0) {
      const n = this.#chunkAt(0);
      this.#requests++;
      this.#dataBytes += n;
      const r = await this.client.request(imageUpload, this.#requestAt(0, n), this.options.timeoutMs);
      if (r.ok && r.value !== undefined) {
        this.#acked = r.value.off;
        if (this.#acked > n) this.#skipped += this.#acked - n;
      } else if (r.ok) return fail('TRANSPORT_UNAVAILABLE', `device refused the upload: rc ${r.smpError.rc}${r.smpError.rsn ? ` ${r.smpError.rsn}` : ''}`);
      else if (++this.#stalls > this.#maxStalls) return fail('TRANSPORT_TIMEOUT', `no answer to the first chunk: ${r.error}`);
    }
    return null;
  }

  /** Send the chunk at `off` without waiting for its answer; its data bytes. */
  #send(off: number): number {
    const n = this.#chunkAt(off);
    const sent: Sent = { off, end: off + n, epoch: this.#epoch };
    if (off < this.#highestSent) this.#resent++;
    this.#highestSent = Math.max(this.#highestSent, off + n);
    this.#requests++;
    this.#dataBytes += n;
    const p: Promise<void> = this.client.request(imageUpload, this.#requestAt(off, n), this.options.timeoutMs).then((r) => {
      this.#inFlight.delete(p);
      this.#answered(sent, r);
    });
    this.#inFlight.set(p, sent);
    return n;
  }

  /** The answer to a chunk (or its timeout): progress, a rewind to where the device is, or a failure. */
  #answered(sent: Sent, r: Result<SmpReply<ImageUploadResponse>>): void {
    if (r.ok && r.value !== undefined) {
      const answered = r.value.off;
      if (answered > this.#acked) {
        this.#acked = answered;
        this.#stalls = 0;
      }
      if (answered !== sent.end && sent.epoch === this.#epoch) {
        if (answered > sent.end) this.#skipped += answered - sent.end;
        // This chunk was not taken: go back to where the device is.
        this.#epoch++;
        this.#sendOff = answered;
        this.#acked = answered;
        if (++this.#stalls > this.#maxStalls) this.#failure = fail('TRANSPORT_TIMEOUT', 'no progress');
      }
    } else if (r.ok) {
      this.#failure = fail('TRANSPORT_UNAVAILABLE', `device refused a chunk at ${sent.off}: rc ${r.smpError.rc}${r.smpError.rsn ? ` ${r.smpError.rsn}` : ''}`);
    } else if (this.#acked < sent.end && sent.epoch === this.#epoch) {
      this.#epoch++;
      this.#sendOff = this.#acked;
      if (++this.#stalls > this.#maxStalls) this.#failure = fail('TRANSPORT_TIMEOUT', `no answer for chunk at ${sent.off}`);
    }
  }
}
