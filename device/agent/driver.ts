/**
 * Drives one download through the update agent from a Transport (SPEC.md §11.6). Pure: the
 * transport and the clock are injected, so the same loop runs over local files (device/node), MQTT
 * (the OTA transport) or a serial link, and in tests with fake time.
 *
 * Delivery path: digest pages first (each proven against the signed root: §5.3), then every missing
 * chunk checked against its page with one hash before it is written. A page or chunk that fails
 * verification is fetched again (a corrupted block, a rogue publisher), up to `retries` times; when
 * every attempt was rejected, the last rejection's code is returned (e.g. CHUNK_DIGEST_MISMATCH).
 */
import { fail, ok, type Result } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { type DigestPage } from '../verify/image.js';
import { type UpdateAgent } from './agent.js';

export interface Transport {
  /** A digest page of the update being downloaded: its leaf digests (32 bytes each) and proof; null if unavailable. */
  fetchDigestPage(page: number): { readonly leaves: Uint8Array; readonly proof: Uint8Array } | null;
  /** Chunk `index` of the update; null if unavailable. */
  fetchChunk(index: number): Uint8Array | null;
}

export interface Clock {
  /** Milliseconds on a monotonic clock. */
  now(): number;
}

export type DriveOptions = {
  /** Attempts per page or chunk after the first one fails verification or delivery. */
  readonly retries?: number;
  /** Give up (TRANSPORT_TIMEOUT) when the download takes longer than this many ms. */
  readonly budgetMs?: number;
  readonly clock?: Clock;
};

export type DriveReport = { readonly fetchedChunks: number; readonly fetchedPages: number; readonly rejected: number };

/** Fetch and write every missing chunk of the download `agent` has begun. Never throws (but PowerCut). */
export function driveDownload(agent: UpdateAgent, transport: Transport, options: DriveOptions = {}): Result<DriveReport> {
  const retries = options.retries ?? 3;
  const clock = options.clock;
  const start = clock ? clock.now() : 0;
  const pages = new Map<number, DigestPage>();
  let fetchedChunks = 0;
  let fetchedPages = 0;
  let rejected = 0;
  const late = () => clock !== undefined && options.budgetMs !== undefined && clock.now() - start > options.budgetMs;

  function pageFor(index: number): Result<{ page: DigestPage }> {
    const p = Math.floor(index / LIMITS.pageLeaves);
    const known = pages.get(p);
    if (known) return ok({ page: known });
    let last: Result<{ page: DigestPage }> = fail('TRANSPORT_UNAVAILABLE', `digest page ${p}`);
    for (let attempt = 0; attempt <= retries; attempt++) {
      if (late()) return fail('TRANSPORT_TIMEOUT');
      const got = transport.fetchDigestPage(p);
      fetchedPages++;
      if (got === null) continue;
      const r = agent.verifyDigestPage(p, got.leaves, got.proof);
      if (r.ok) {
        pages.clear(); // one page held at a time: about 4 KiB
        pages.set(p, r.digestPage);
        return ok({ page: r.digestPage });
      }
      rejected++;
      last = r;
    }
    return last;
  }

  for (const index of agent.missingChunks()) {
    const page = pageFor(index);
    if (!page.ok) return page;
    let done = false;
    let last: Result = fail('TRANSPORT_UNAVAILABLE', `chunk ${index}`);
    for (let attempt = 0; attempt <= retries && !done; attempt++) {
      if (late()) return fail('TRANSPORT_TIMEOUT');
      const bytes = transport.fetchChunk(index);
      fetchedChunks++;
      if (bytes === null) continue;
      const w = agent.writeChunk(index, bytes, page.page);
      if (w.ok) done = true;
      else if (w.code >= 500)
        return w; // flash trouble: not the transport's to retry
      else {
        rejected++;
        last = w;
      }
    }
    if (!done) return last;
  }
  return ok({ fetchedChunks, fetchedPages, rejected });
}
