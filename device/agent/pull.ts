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
import { type Result, fail, ok } from '../../shared/codes.js';
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

/** Fetch and write every missing chunk of the download `agent` has begun. Never throws (but PowerCut). */
export async function pullDownload(agent: PullTarget, transport: AsyncTransport, timer: Timer, options: PullOptions = {}): Promise<Result<PullReport>> {
  const window = Math.max(1, Math.floor(options.window ?? 8));
  const timeoutMs = options.timeoutMs ?? 5000;
  const base = options.baseBackoffMs ?? 1000;
  const cap = options.maxBackoffMs ?? 60_000;
  const maxAttempts = Math.max(1, Math.floor(options.maxAttempts ?? 5));
  const start = timer.now();
  const late = () => options.budgetMs !== undefined && timer.now() - start > options.budgetMs;

  let requests = 0;
  let rejected = 0;
  let timeouts = 0;

  // Stopping: the first failure (or thrown error) wins; every wait races against `stopSignal`.
  let failure: Result | null = null;
  let thrown: { error: unknown } | null = null;
  let signalStop: () => void = () => {};
  const stopSignal = new Promise<'stopped'>((resolve) => { signalStop = () => resolve('stopped'); });
  const stop = (r: Result) => {
    if (failure === null && thrown === null) failure = r;
    signalStop();
  };
  const stopped = () => failure !== null || thrown !== null;

  const P = LIMITS.pageLeaves;
  const cpb = Math.floor(options.chunksPerBlock ?? 1);
  if (!(cpb >= 1 && cpb <= P && (cpb & (cpb - 1)) === 0)) return fail('BAD_VALUE', `chunks per block ${options.chunksPerBlock} is not a power of two up to ${P}`);
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
  // Pages still needed: how many missing blocks each still has to write.
  const remaining = new Map<number, number>();
  for (const b of missing) remaining.set(pageOf(b), (remaining.get(pageOf(b)) ?? 0) + 1);
  // Pages held (at most 2): the proven page (or its pending fetch).
  const held = new Map<number, Promise<Result<{ page: DigestPage }>>>();
  let released: (() => void)[] = [];
  const release = () => {
    const r = released;
    released = [];
    for (const f of r) f();
  };

  async function ask<T>(request: () => Promise<T | null>): Promise<Reply<T>> {
    requests++;
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
    const timeout = timer.sleep(timeoutMs).then((): Reply<T> => ({ kind: 'timeout' }));
    return Promise.race([reply, timeout, stopSignal.then((): Reply<T> => ({ kind: 'stopped' }))]);
  }

  /** Full-jitter backoff before attempt `attempt + 1`; false when stopped meanwhile. */
  async function backoff(attempt: number): Promise<boolean> {
    const delay = timer.random() * Math.min(cap, base * 2 ** attempt);
    await Promise.race([timer.sleep(delay), stopSignal]);
    return !stopped();
  }

  /**
   * Up to maxAttempts requests; `accept` turns a reply into ok, a rejection (retried) or a final
   * failure. Returns null when stopped.
   */
  async function attempts<T, R extends object>(
    request: () => Promise<T | null>, accept: (value: T) => Result<R>, what: string,
  ): Promise<Result<R> | null> {
    let lastRejection: Result | null = null;
    let timedOut = false;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      if (attempt > 0 && !(await backoff(attempt - 1))) return null;
      if (stopped()) return null;
      if (late()) return fail('TRANSPORT_TIMEOUT', `budget of ${options.budgetMs} ms spent`);
      const reply = await ask(request);
      if (reply.kind === 'stopped' || stopped()) return null;
      if (reply.kind === 'timeout') {
        timeouts++;
        timedOut = true;
        continue;
      }
      if (reply.value === null) continue;
      const r = accept(reply.value);
      if (r.ok) return r;
      if (r.code >= 500) return r; // flash trouble: not the transport's to retry
      rejected++;
      lastRejection = r;
    }
    if (lastRejection !== null) return lastRejection as Result<R>;
    return timedOut ? fail('TRANSPORT_TIMEOUT', `${what}: ${maxAttempts} attempts timed out`) : fail('TRANSPORT_UNAVAILABLE', what);
  }

  function fetchPage(p: number): Promise<Result<{ page: DigestPage }>> {
    return attempts(() => transport.requestPage(p), (got) => {
      const r = agent.verifyDigestPage(p, got.leaves, got.proof);
      return r.ok ? ok({ page: r.digestPage }) : r;
    }, `digest page ${p}`).then((r) => r ?? fail('TRANSPORT_UNAVAILABLE', 'stopped'));
  }

  /** The proven page of block `index`, holding at most two pages. Null when stopped. */
  async function pageFor(p: number): Promise<DigestPage | null> {
    while (!held.has(p) && held.size >= 2) {
      await Promise.race([new Promise<void>((resolve) => released.push(resolve)), stopSignal]);
      if (stopped()) return null;
    }
    let got = held.get(p);
    if (got === undefined) {
      got = fetchPage(p);
      held.set(p, got);
    }
    const r = await got;
    if (stopped()) return null;
    if (!r.ok) {
      stop(r);
      return null;
    }
    return r.page;
  }

  let next = 0;
  async function worker(): Promise<void> {
    while (!stopped() && next < missing.length) {
      const index = missing[next++]!;
      const p = pageOf(index);
      const page = await pageFor(p);
      if (page === null) return;
      const chunks = chunksOf.get(index)!;
      const write = (bytes: Uint8Array): Result => {
        if (cpb === 1) return agent.writeChunk(index, bytes, page);
        // Every chunk of the block still missing is checked against its leaf before it is written.
        for (const i of chunks) {
          const at = (i - index * cpb) * chunkSize;
          const w = agent.writeChunk(i, bytes.subarray(at, at + chunkSize), page);
          if (!w.ok) return w;
        }
        return ok({});
      };
      const r = await attempts(() => transport.requestBlock(index), write, `block ${index}`);
      if (r === null) return;
      if (!r.ok) {
        stop(r);
        return;
      }
      const left = (remaining.get(p) ?? 1) - 1;
      remaining.set(p, left);
      if (left === 0) {
        held.delete(p);
        release();
      }
    }
  }

  const guarded = async () => {
    try {
      await worker();
    } catch (error) {
      if (thrown === null) thrown = { error };
      signalStop();
    }
  };
  await Promise.all(Array.from({ length: Math.min(window, missing.length) }, guarded));
  if (thrown !== null) throw (thrown as { error: unknown }).error;
  if (failure !== null) return failure;
  return ok({ requests, rejected, timeouts });
}
