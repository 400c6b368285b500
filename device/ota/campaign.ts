/**
 * One campaign on one device (SPEC.md §12.3, §12.10): fetch the manifest and check it against the
 * announcement, verify it with the agent before any image data, pull the blocks (retrying after
 * transport failures while the campaign stands), verify the slot, trial-boot and confirm, reporting
 * each step as a status event. A chunk goes from the reply straight through the agent's checks to
 * flash: nothing here trusts the server.
 */
import { bytesEqual } from '../../shared/bytes.js';
import { CODES, type Result } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { parseManifest } from '../../shared/manifest.js';
import { type Announcement, blockCount } from '../../shared/ota/messages.js';
import { type RefusalStage, type StatusEvent } from '../../shared/ota/status.js';
import { type UpdateAgent } from '../agent/agent.js';
import { type AsyncTransport, type PullOptions, type PullTarget, pullDownload } from '../agent/pull.js';
import { type Verifier } from '../verifier.js';
import { type DigestPage } from '../verify/image.js';
import { type OtaClock } from './ports.js';
import { ABORT_BLOCK, type OtaStats, type Requests, type Run } from './requests.js';

export type OtaPullOptions = Omit<PullOptions, 'chunksPerBlock' | 'chunkSize'> & {
  /** Wait before pulling again after a transport failure (full jitter): base and cap in ms. */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  /** Log proof requests per campaign before it fails (default LOG_PROOF_ATTEMPTS), with the same backoff. */
  readonly logProofAttempts?: number;
};

/** Attempts at a log proof by default: with the default backoff (1 s base, 30 s cap) about a minute of waiting at most. */
export const LOG_PROOF_ATTEMPTS = 8;

export type OtaPhase = 'idle' | 'manifest' | 'downloading' | 'waiting' | 'installing' | 'trial' | 'stopped';

/** What the campaign flow uses of the device client (device/ota/client.ts). */
export interface CampaignHost {
  readonly id: string;
  readonly agent: UpdateAgent;
  readonly verifier: Verifier;
  readonly clock: OtaClock;
  readonly requests: Requests;
  readonly counters: OtaStats;
  readonly pull: OtaPullOptions;
  stopped(): boolean;
  phase: OtaPhase;
  status(e: StatusEvent): void;
  /** Every block written: done of total (the `progress` event). */
  progress(done: number, total: number): void;
  /** `report`: the measurements and the refusal stage the event carries (SPEC.md §12.2 keys 15–17). */
  terminal(a: Announcement, state: 'confirmed' | 'rejected' | 'failed', code?: number, report?: StatusReport): void;
  /** The verifier refused this announced manifest: never try it again. */
  refused(manifestDigest: Uint8Array, code: number): void;
  boot(): void;
  payloadInstalled(envelope: Uint8Array): boolean;
  /** Subscribe to (or leave) a campaign's data topic; false when multicast is off or failed. */
  listenData(campaign: string | null): Promise<boolean>;
  /** Resolves once no root-of-trust update is in progress (SPEC.md §12.13): no manifest is accepted during one. */
  rootIdle(): Promise<void>;
}

/** What a status event may carry besides its state: the verify times and where the device refused (keys 15–17). */
export type StatusReport = Pick<StatusEvent, 'manifestMs' | 'imageMs' | 'stage'>;

/** Whole milliseconds since `start` on the client's clock (keys 15 and 16). */
const msSince = (clock: OtaClock, start: number): number => Math.max(0, Math.round(clock.now() - start));

/** A failed download or install (key 17): 1xx–4xx refused the image, 5xx the install (flash, trial boot); 6xx refused nothing. */
function refusedAt(code: number, image: RefusalStage = 'image'): StatusReport {
  return code < 500 ? { stage: image } : code < 600 ? { stage: 'install' } : {};
}

/** `downloading` reports: one per 10 % of the blocks, at most one per PROGRESS_MIN_MS, and one at least every PROGRESS_MS. */
const PROGRESS_MS = 5000;
const PROGRESS_MIN_MS = 1000;

/** Thrown from the agent view to stop a pull at once (withdrawn, not eligible, superseded, final error). */
class PullAborted extends Error {}

/** Full-jitter wait before attempt `attempt + 1` of a manifest fetch, a pull or a root request. */
export function retryDelay(clock: OtaClock, pull: OtaPullOptions, attempt: number): number {
  return clock.random() * Math.min(pull.retryMaxMs ?? 30_000, (pull.retryBaseMs ?? 1000) * 2 ** Math.min(attempt, 16));
}

/** Sleep that an abort of `run` (withdrawal, new announcement, stop, a revocation) cuts short. */
function pause(clock: OtaClock, run: Run, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const cancel = clock.after(ms, done);
    const prev = run.wake;
    run.wake = () => {
      prev();
      done();
    };
    function done() {
      cancel();
      resolve();
    }
  });
}

/** The manifest the announcement names (size and envelope digest match), or null when the run ended. */
async function fetchManifest(h: CampaignHost, run: Run, a: Announcement, live: () => boolean): Promise<Uint8Array | null> {
  const timeoutMs = h.pull.timeoutMs ?? 5000;
  for (let attempt = 0; live(); attempt++) {
    const got = await h.requests.manifest(a.campaign, timeoutMs);
    if (run.finalCode !== null || !live()) return null;
    if (got && got.length === a.manifestSize && bytesEqual(h.verifier.sha256(got), a.manifestDigest)) return got;
    if (got) h.counters.rejected++;
    await pause(h.clock, run, retryDelay(h.clock, h.pull, attempt));
  }
  return null;
}

export async function runCampaign(h: CampaignHost, run: Run, a: Announcement): Promise<void> {
  const live = () => !run.aborted && !h.stopped();
  const ended = () => {
    if (run.finalCode === null) return false;
    h.terminal(a, 'failed', run.finalCode);
    return true;
  };

  // 1. The manifest: the announced size and digest, then the verifier (before any image data).
  h.phase = 'manifest';
  const envelope = await fetchManifest(h, run, a, live);
  if (ended() || !envelope || !live()) return;
  const env = parseEnvelope(envelope);
  const m = env.ok ? parseManifest(env.envelope.payload) : null;
  if (m?.ok && (m.value.chunkSize !== a.chunkSize || m.value.imageSize !== a.imageSize)) {
    return h.terminal(a, 'failed', CODES.BAD_VALUE, { stage: 'manifest' }); // the announcement does not describe this manifest
  }
  if (h.payloadInstalled(envelope)) return h.terminal(a, 'confirmed');
  await h.rootIdle();
  if (!live()) return;
  // Issue 19 item 2: under a log policy (the bundle in force after any root update) the log proof first.
  const checked = await beginWithLogProof(h, run, envelope, live);
  if (ended() || checked === null || !live()) return;
  const { begun, manifestMs } = checked;
  if (!begun.ok) {
    if (begun.code < 500) {
      h.refused(a.manifestDigest, begun.code);
      return h.terminal(a, 'rejected', begun.code, { manifestMs, stage: 'manifest' });
    }
    return h.terminal(a, 'failed', begun.code, refusedAt(begun.code));
  }
  h.status({ campaign: a.campaign, device: h.id, state: 'accepted', manifestMs });

  // 2. The blocks: pull, and after a transport failure wait and pull again while the campaign stands.
  let imageMs = 0;
  for (let attempt = 0, finishes = 0; ; ) {
    if (!live()) return;
    h.phase = 'downloading';
    const r = await pull(h, run, a, attempt === 0 && finishes === 0);
    if (ended() || r === null || !live()) return;
    if (r.ok) {
      h.status({ campaign: a.campaign, device: h.id, state: 'verifying' });
      h.phase = 'installing';
      const checking = h.clock.now(); // M4: the whole-image check (SPEC.md §11.3)
      const done = h.agent.finishDownload();
      imageMs = msSince(h.clock, checking);
      if (done.ok) break;
      // A progress mark lied: the marks were cleared, fetch again (chunks already right stay).
      if (done.code >= 500 || ++finishes > 1) return h.terminal(a, 'failed', done.code, { imageMs, ...refusedAt(done.code) });
      continue;
    }
    if (r.code < 600 || r.code >= 700) return h.terminal(a, 'failed', r.code, refusedAt(r.code));
    h.phase = 'waiting';
    await pause(h.clock, run, retryDelay(h.clock, h.pull, attempt++));
  }
  if (!live()) return;

  // 3. Install: trial boot, then confirm.
  h.status({ campaign: a.campaign, device: h.id, state: 'installed', imageMs });
  h.boot();
  if ((h.phase as OtaPhase) === 'trial') return; // autoConfirm off: the application confirms
  if (h.payloadInstalled(envelope)) return h.terminal(a, 'confirmed');
  const s = h.agent.status();
  const code = s.ok && s.state.lastError ? s.state.lastError : CODES.BOOT_IMAGE_INVALID;
  h.terminal(a, 'failed', code, refusedAt(code, 'install')); // the trial boot refused the installed image
}

/**
 * The agent's manifest check (beginUpdate), with the log proof of the campaign's manifest when the
 * trust bundle in force has a log policy (issue 19 item 2; SPEC.md §12.2, §12.10); null when the run
 * ended. No policy: no request at all. A failed request (LOG_PROOF_UNAVAILABLE: the entry is not yet
 * in a signed checkpoint, which the server signs within its interval; a time-out; another error
 * reply), and a proof refused LOG_WITNESSES_NOT_MET (a checkpoint the witnesses have not cosigned
 * yet: the agent writes nothing for a refused proof), are tried again after a full-jitter backoff,
 * up to `logProofAttempts` requests; then the manifest goes to the agent without a proof, which
 * refuses it (LOG_PROOF_MISSING) unless it resumes a download that already passed its proof.
 * `manifestMs` (M4, SPEC.md §12.9 "Metrics") is the agent's last check alone, not the waiting.
 */
async function beginWithLogProof(
  h: CampaignHost,
  run: Run,
  envelope: Uint8Array,
  live: () => boolean,
): Promise<{ begun: ReturnType<UpdateAgent['beginUpdate']>; manifestMs: number } | null> {
  const need = h.agent.logRequirement();
  const fromSize = need.ok ? need.fromSize : 0;
  const attempts = need.ok && need.required ? (h.pull.logProofAttempts ?? LOG_PROOF_ATTEMPTS) : 0;
  for (let attempt = 0; ; attempt++) {
    let proof: Uint8Array | undefined;
    if (attempt < attempts) {
      if (attempt > 0) await pause(h.clock, run, retryDelay(h.clock, h.pull, attempt - 1));
      if (!live() || run.finalCode !== null) return null;
      const got = await h.requests.logProof(run.campaign, fromSize, h.pull.timeoutMs ?? 5000);
      if (!live() || run.finalCode !== null) return null;
      if (typeof got === 'number') continue;
      proof = got;
      await h.rootIdle(); // a root update during the request is judged first (SPEC.md §12.13 Order)
      if (!live()) return null;
    }
    const started = h.clock.now();
    const begun = h.agent.beginUpdate(envelope, proof);
    const manifestMs = msSince(h.clock, started);
    if (!begun.ok && begun.code === CODES.LOG_WITNESSES_NOT_MET && attempt + 1 < attempts) continue;
    return { begun, manifestMs };
  }
}

/** The `downloading` status events of one pull: every 10 % (at most once a second) or every 5 s. */
function progressReporter(h: CampaignHost, a: Announcement, total: number, done: { n: number }, first: boolean): () => void {
  let lastPct = -1;
  let lastAt = h.clock.now();
  const report = (force: boolean) => {
    const pct = Math.floor((done.n / total) * 10);
    const now = h.clock.now();
    h.progress(done.n, total);
    if (!force && (pct === lastPct || now - lastAt < PROGRESS_MIN_MS) && now - lastAt < PROGRESS_MS) return;
    lastPct = pct;
    lastAt = now;
    h.status({ campaign: a.campaign, device: h.id, state: 'downloading', done: done.n, total });
  };
  if (first)
    report(true); // a pull again after a transport failure reports only on progress
  else lastPct = Math.floor((done.n / total) * 10);
  return () => report(false);
}

/** The agent as the pull driver sees it: stops at the next reply once aborted, counts rejections and progress. */
function pullTarget(h: CampaignHost, run: Run, cpb: number, onBlock: () => void): PullTarget {
  const agent = h.agent;
  const left = new Map<number, number>();
  for (const i of agent.missingChunks()) left.set(Math.floor(i / cpb), (left.get(Math.floor(i / cpb)) ?? 0) + 1);
  const check = () => {
    if (run.aborted || h.stopped()) throw new PullAborted();
  };
  return {
    missingChunks: () => agent.missingChunks(),
    verifyDigestPage: (page: number, leaves: Uint8Array, proof: Uint8Array) => {
      check();
      const r = agent.verifyDigestPage(page, leaves, proof);
      if (!r.ok && r.code < 500) h.counters.rejected++;
      return r;
    },
    writeChunk: (index: number, bytes: Uint8Array, page: DigestPage) => {
      check();
      const r = agent.writeChunk(index, bytes, page);
      if (!r.ok) {
        if (r.code < 500) h.counters.rejected++;
        return r;
      }
      const b = Math.floor(index / cpb);
      const n = (left.get(b) ?? 1) - 1;
      if (n === 0) {
        left.delete(b);
        onBlock();
      } else left.set(b, n);
      return r;
    },
  };
}

/** One pull of the missing blocks; null when aborted. */
async function pull(h: CampaignHost, run: Run, a: Announcement, first: boolean): Promise<Result | null> {
  const cpb = a.blockSize / a.chunkSize;
  const total = blockCount(a);
  const missingBlocks = new Set(h.agent.missingChunks().map((i) => Math.floor(i / cpb)));
  const done = { n: total - missingBlocks.size };
  const report = progressReporter(h, a, total, done, first);
  const target = pullTarget(h, run, cpb, () => {
    done.n++;
    report();
  });
  const timeoutMs = h.pull.timeoutMs ?? 5000;
  const multicast = await h.listenData(a.campaign);
  const transport = h.requests.transport(run, timeoutMs, multicast);
  const checked: AsyncTransport = {
    requestPage: (p) => transport.requestPage(p),
    requestBlock: async (block) => {
      const got = await transport.requestBlock(block);
      if (got === ABORT_BLOCK || got === null) return got;
      // A block shorter than its chunks: the pull driver would slice past the end; refuse it here.
      if (got.length !== Math.min(a.blockSize, a.imageSize - block * a.blockSize)) {
        h.counters.rejected++;
        return null;
      }
      return got;
    },
  };
  const po = h.pull;
  try {
    return await pullDownload(target, checked, h.clock, {
      window: po.window ?? 8,
      timeoutMs,
      ...(po.baseBackoffMs !== undefined ? { baseBackoffMs: po.baseBackoffMs } : {}),
      ...(po.maxBackoffMs !== undefined ? { maxBackoffMs: po.maxBackoffMs } : {}),
      ...(po.maxAttempts !== undefined ? { maxAttempts: po.maxAttempts } : {}),
      ...(po.budgetMs !== undefined ? { budgetMs: po.budgetMs } : {}),
      chunksPerBlock: cpb,
      chunkSize: a.chunkSize,
    });
  } catch (e) {
    if (e instanceof PullAborted) return null;
    throw e;
  } finally {
    if (multicast) void h.listenData(null);
  }
}
