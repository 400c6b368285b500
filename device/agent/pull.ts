/**
 * The asynchronous, windowed pull of one download (SPEC.md §12.3, §12.7), for transports whose
 * replies arrive later and may be lost (MQTT). Pure: no timers, no Node APIs; time and randomness
 * come from the injected Timer, so tests run on a virtual clock.
 *
 * At most `window` requests are in flight (one per worker). A request that does not answer within
 * `timeoutMs` counts as a timeout; a null reply as unavailable; a block that fails verification as a
 * rejection (a rogue publisher). Each is retried, up to `maxAttempts` per block or page, after an
 * exponential backoff with full jitter: random() * min(maxBackoffMs, baseBackoffMs * 2^attempt).
 * A flash error (5xx) stops everything at once. Writes to the (synchronous) agent happen in the
 * continuation of a reply, so they never interleave. Resume is free: missingChunks() is on flash.
 */
import { type Failure, fail, ok, type Result } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { type DigestPage } from '../verify/image.js';
import { PowerCut } from './flash.js';

/**
 * What the pull driver needs of the update agent. `UpdateAgent` is one; the OTA client wraps it to
 * count rejections, report progress and stop at once when a campaign is withdrawn.
 */
export interface PullTarget {
  missingChunks(): number[];
  verifyDigestPage(page: number, leaves: Uint8Array, proof: Uint8Array): Result<{ digestPage: DigestPage }>;
  writeChunk(index: number, bytes: Uint8Array, page: DigestPage): Result<{ written: boolean }>;
}

export interface AsyncTransport {
  /** Digest page `page`: its leaf digests and proof; null for an error reply or unavailable. */
  requestPage(page: number): Promise<{ readonly leaves: Uint8Array; readonly proof: Uint8Array } | null>;
  /**
   * Block `index`: chunks `index * chunksPerBlock ...` of the image, concatenated (the last block may
   * be shorter); null for an error reply.
   */
  requestBlock(index: number): Promise<Uint8Array | null>;
}

export interface Timer {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Resolves after `ms` milliseconds. */
  sleep(ms: number): Promise<void>;
  /** Uniform in [0, 1), for the backoff jitter. */
  random(): number;
}

export type PullOptions = {
  /** Requests in flight at most (default 8). */
  readonly window?: number;
  /** Per request (default 5000). */
  readonly timeoutMs?: number;
  /** Backoff base (default 1000) and cap (default 60000). */
  readonly baseBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Attempts per block or page (default 5). */
  readonly maxAttempts?: number;
  /** Give up (TRANSPORT_TIMEOUT) when the download takes longer than this many ms. */
  readonly budgetMs?: number;
  /**
   * Chunks per block (default 1): a power of two, at most one digest page (pageLeaves), so a block
   * never spans two pages. With more than one, `chunkSize` (the manifest's) is required.
   */
  readonly chunksPerBlock?: number;
  readonly chunkSize?: number;
};

export type PullReport = { readonly requests: number; readonly rejected: number; readonly timeouts: number };

type Reply<T> = { kind: 'reply'; value: T | null } | { kind: 'timeout' } | { kind: 'stopped' };

/** Stopping a pull: the first failure (or thrown error) wins; every wait races against `signal`. */
class Stop {
  failure: Failure | null = null;
  thrown: { error: unknown } | null = null;
  #fire: () => void = () => {};
  readonly signal = new Promise<'stopped'>((resolve) => {
    this.#fire = () => resolve('stopped');
  });
  with(r: Failure): void {
    if (this.failure === null && this.thrown === null) this.failure = r;
    this.#fire();
  }
  throw(error: unknown): void {
    if (this.thrown === null) this.thrown = { error };
    this.#fire();
  }
  get done(): boolean {
    return this.failure !== null || this.thrown !== null;
  }
}

/** Requests with time-outs, retries and full-jitter backoff (SPEC.md §12.3), and their counts. */
class Attempts {
  requests = 0;
  rejected = 0;
  timeouts = 0;
  readonly #start: number;

  constructor(
    private readonly timer: Timer,
    private readonly options: PullOptions,
    private readonly stop: Stop,
  ) {
    this.#start = timer.now();
  }

  #late(): boolean {
    return this.options.budgetMs !== undefined && this.timer.now() - this.#start > this.options.budgetMs;
  }

  async #ask<T>(request: () => Promise<T | null>): Promise<Reply<T>> {
    this.requests++;
    let p: Promise<T | null>;
    try {
      p = request();
    } catch (e) {
      if (e instanceof PowerCut) throw e;
      p = Promise.resolve(null);
    }
    const reply = p.then(
      (value): Reply<T> => ({ kind: 'reply', value }),
      (e: unknown): Reply<T> => {
        if (e instanceof PowerCut) throw e;
        return { kind: 'reply', value: null }; // a failed request is an attempt without an answer
      },
    );
    reply.catch(() => undefined); // a rejection after the race was decided is not unhandled
    const timeout = this.timer.sleep(this.options.timeoutMs ?? 5000).then((): Reply<T> => ({ kind: 'timeout' }));
    return Promise.race([reply, timeout, this.stop.signal.then((): Reply<T> => ({ kind: 'stopped' }))]);
  }

  /** Full-jitter backoff before attempt `attempt + 1`; false when stopped meanwhile. */
  async #backoff(attempt: number): Promise<boolean> {
    const base = this.options.baseBackoffMs ?? 1000;
    const cap = this.options.maxBackoffMs ?? 60_000;
    await Promise.race([this.timer.sleep(this.timer.random() * Math.min(cap, base * 2 ** attempt)), this.stop.signal]);
    return !this.stop.done;
  }

  /**
   * Up to maxAttempts requests; `accept` turns a reply into ok, a rejection (retried) or a final
   * failure. Returns null when stopped.
   */
  async run<T, R extends object>(request: () => Promise<T | null>, accept: (value: T) => Result<R>, what: string): Promise<Result<R> | null> {
    const maxAttempts = Math.max(1, Math.floor(this.options.maxAttempts ?? 5));
    let lastRejection: Result | null = null;
    let timedOut = false;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      if (attempt > 0 && !(await this.#backoff(attempt - 1))) return null;
      if (this.stop.done) return null;
      if (this.#late()) return fail('TRANSPORT_TIMEOUT', `budget of ${this.options.budgetMs} ms spent`);
      const reply = await this.#ask(request);
      if (reply.kind === 'stopped' || this.stop.done) return null;
      if (reply.kind === 'timeout') {
        this.timeouts++;
        timedOut = true;
        continue;
      }
      if (reply.value === null) continue;
      const r = accept(reply.value);
      if (r.ok) return r;
      if (r.code >= 500) return r; // flash trouble: not the transport's to retry
      this.rejected++;
      lastRejection = r;
    }
    if (lastRejection !== null) return lastRejection as Result<R>;
    return timedOut ? fail('TRANSPORT_TIMEOUT', `${what}: ${maxAttempts} attempts timed out`) : fail('TRANSPORT_UNAVAILABLE', what);
  }
}

/**
 * The proven digest pages of a pull, at most two held at a time (device RAM: SPEC.md §5.3): a page
 * is fetched once, shared by its blocks, and let go when its last missing block is written.
 */
class Pages {
  readonly #held = new Map<number, Promise<Result<{ page: DigestPage }>>>();
  #released: (() => void)[] = [];
  /** Pages still needed: how many missing blocks each still has to write. */
  readonly #remaining = new Map<number, number>();

  constructor(
    private readonly agent: PullTarget,
    private readonly transport: AsyncTransport,
    private readonly attempts: Attempts,
    private readonly stop: Stop,
    pagesOfMissingBlocks: readonly number[],
  ) {
    for (const p of pagesOfMissingBlocks) this.#remaining.set(p, (this.#remaining.get(p) ?? 0) + 1);
  }

  #fetch(p: number): Promise<Result<{ page: DigestPage }>> {
    return this.attempts
      .run(
        () => this.transport.requestPage(p),
        (got) => {
          const r = this.agent.verifyDigestPage(p, got.leaves, got.proof);
          return r.ok ? ok({ page: r.digestPage }) : r;
        },
        `digest page ${p}`,
      )
      .then((r) => r ?? fail('TRANSPORT_UNAVAILABLE', 'stopped'));
  }

  /** The proven page `p`, waiting while two others are held. Null when stopped. */
  async get(p: number): Promise<DigestPage | null> {
    while (!this.#held.has(p) && this.#held.size >= 2) {
      await Promise.race([new Promise<void>((resolve) => this.#released.push(resolve)), this.stop.signal]);
      if (this.stop.done) return null;
    }
    let got = this.#held.get(p);
    if (got === undefined) {
      got = this.#fetch(p);
      this.#held.set(p, got);
    }
    const r = await got;
    if (this.stop.done) return null;
    if (!r.ok) {
      this.stop.with(r);
      return null;
    }
    return r.page;
  }

  /** One block of page `p` is written: the page is let go after its last one. */
  blockDone(p: number): void {
    const left = (this.#remaining.get(p) ?? 1) - 1;
    this.#remaining.set(p, left);
    if (left > 0) return;
    this.#held.delete(p);
    const waiting = this.#released;
    this.#released = [];
    for (const f of waiting) f();
  }
}

/** Write block `index` (its chunks still missing), each chunk checked against its proven leaf first. */
function writeBlock(agent: PullTarget, page: DigestPage, index: number, chunks: readonly number[], cpb: number, chunkSize: number, bytes: Uint8Array): Result {
  if (cpb === 1) return agent.writeChunk(index, bytes, page);
  for (const i of chunks) {
    const at = (i - index * cpb) * chunkSize;
    const w = agent.writeChunk(i, bytes.subarray(at, at + chunkSize), page);
    if (!w.ok) return w;
  }
  return ok({});
}

/** Fetch and write every missing chunk of the download `agent` has begun. Never throws (but PowerCut). */
export async function pullDownload(agent: PullTarget, transport: AsyncTransport, timer: Timer, options: PullOptions = {}): Promise<Result<PullReport>> {
  const P = LIMITS.pageLeaves;
  const cpb = Math.floor(options.chunksPerBlock ?? 1);
  if (!(cpb >= 1 && cpb <= P && (cpb & (cpb - 1)) === 0))
    return fail('BAD_VALUE', `chunks per block ${options.chunksPerBlock} is not a power of two up to ${P}`);
  const chunkSize = options.chunkSize ?? 0;
  if (cpb > 1 && !(chunkSize > 0)) return fail('BAD_VALUE', 'chunkSize is required with more than one chunk per block');
  // Missing chunks grouped by block (ascending): the blocks to fetch.
  const chunksOf = new Map<number, number[]>();
  for (const i of agent.missingChunks()) {
    const b = Math.floor(i / cpb);
    const list = chunksOf.get(b);
    if (list) list.push(i);
    else chunksOf.set(b, [i]);
  }
  const missing = [...chunksOf.keys()];
  const pageOf = (block: number) => Math.floor((block * cpb) / P);
  const stop = new Stop();
  const attempts = new Attempts(timer, options, stop);
  const pages = new Pages(agent, transport, attempts, stop, missing.map(pageOf));

  let next = 0;
  async function worker(): Promise<void> {
    while (!stop.done && next < missing.length) {
      const index = missing[next++]!;
      const page = await pages.get(pageOf(index));
      if (page === null) return;
      const chunks = chunksOf.get(index)!;
      const r = await attempts.run(
        () => transport.requestBlock(index),
        (bytes) => writeBlock(agent, page, index, chunks, cpb, chunkSize, bytes),
        `block ${index}`,
      );
      if (r === null) return;
      if (!r.ok) return stop.with(r);
      pages.blockDone(pageOf(index));
    }
  }
  const guarded = async () => {
    try {
      await worker();
    } catch (error) {
      stop.throw(error);
    }
  };
  const window = Math.max(1, Math.floor(options.window ?? 8));
  await Promise.all(Array.from({ length: Math.min(window, missing.length) }, guarded));
  if (stop.thrown !== null) throw stop.thrown.error;
  if (stop.failure !== null) return stop.failure;
  return ok({ requests: attempts.requests, rejected: attempts.rejected, timeouts: attempts.timeouts });
}
