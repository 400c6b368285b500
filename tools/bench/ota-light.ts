/**
 * Protocol-only devices for the OTA benchmark's delivery rows (tools/bench/ota-delivery.ts,
 * ota-scale.ts): each speaks fwseal's MQTT protocol as a device does (SPEC.md §12.2, §12.11):
 * `online`, the announcement, the manifest (its SHA-256 checked against the announcement), digest
 * pages, block requests with the multicast flag on the campaign's data topic, and the status events a
 * device sends (accepted, downloading, verifying, installed, confirmed), so the campaign completes on
 * the server. Every chunk is checked against its leaf digest (node:crypto); nothing is kept and no
 * flash is simulated, so the rows measure server + broker, not device simulation.
 *
 * Also the raw fan-out subscriber of the reference (fanout.ts): it counts the bytes of one topic.
 * Both run in forked children (ota-fleet-child.ts); times are wall-clock ms (timeOrigin + now) so the
 * bench process can compare them with its own.
 */
import { type MqttClient } from 'mqtt';
import { LeafHasher, nodeSha256 } from '../../host/hash.js';
import { bytesEqual } from '../../shared/bytes.js';
import { LIMITS } from '../../shared/limits.js';
import { messageType } from '../../shared/ota/codec.js';
import {
  type Announcement,
  encodeBlockRequest,
  encodeManifestRequest,
  encodePageRequest,
  parseAnnouncement,
  parseBlockResponse,
  parseErrorReply,
  parseManifestResponse,
  parsePageResponse,
} from '../../shared/ota/messages.js';
import { encodeStatusEvent, type StatusEvent } from '../../shared/ota/status.js';
import { topics } from '../../shared/ota/topics.js';

/** Wall-clock milliseconds, comparable between processes on one machine. */
export const wallMs = (): number => performance.timeOrigin + performance.now();

/** This process's CPU so far (user + system), in ms. */
const cpuMs = (u = process.cpuUsage()): number => (u.user + u.system) / 1000;
/** Per round's counters: this process's CPU at the first announcement it saw (for `deliveryCpuMs`). */
const cpuAtAnnouncement = new WeakMap<LightStats, number>();

/** What one child's clients did; summed over children by ota-fleet.ts. Times are wallMs, 0 = never. */
export type LightStats = {
  clients: number;
  finished: number;
  firstAnnouncedAt: number;
  lastAnnouncedAt: number;
  firstDoneAt: number;
  lastDoneAt: number;
  /** The last device to send its first block request, and the first block to arrive anywhere. */
  lastBlocksAskedAt: number;
  firstBlockAt: number;
  manifestRequests: number;
  pageRequests: number;
  blockRequests: number;
  statusEvents: number;
  /** Blocks whose every chunk matched its leaf digest (once per client and block). */
  blocksChecked: number;
  /** Block copies that arrived again (a multicast or a retry for a block the client had). */
  duplicateBlocks: number;
  /** Blocks refused: a chunk did not match its leaf digest. */
  badBlocks: number;
  errorReplies: number;
  /** Failed attempts (no answer within the time-out, or an error reply), each followed by a backoff and a new request. */
  retries: number;
  /** Payload bytes received on all topics. */
  rxBytes: number;
  /** CPU ms (user + system) of the busiest client process from its first announcement to its last device done: its devices' own work. Folded as the maximum. */
  deliveryCpuMs: number;
};

export function emptyStats(): LightStats {
  return {
    clients: 0,
    finished: 0,
    firstAnnouncedAt: 0,
    lastAnnouncedAt: 0,
    firstDoneAt: 0,
    lastDoneAt: 0,
    lastBlocksAskedAt: 0,
    firstBlockAt: 0,
    manifestRequests: 0,
    pageRequests: 0,
    blockRequests: 0,
    statusEvents: 0,
    blocksChecked: 0,
    duplicateBlocks: 0,
    badBlocks: 0,
    errorReplies: 0,
    retries: 0,
    rxBytes: 0,
    deliveryCpuMs: 0,
  };
}

/** Fold `b` into `a`: sums, and the earliest / latest of the times (0 = never). */
export function addStats(a: LightStats, b: LightStats): LightStats {
  const first = (x: number, y: number) => (x && y ? Math.min(x, y) : x || y);
  const out = { ...a };
  for (const k of Object.keys(a) as (keyof LightStats)[]) out[k] = a[k] + b[k];
  out.firstAnnouncedAt = first(a.firstAnnouncedAt, b.firstAnnouncedAt);
  out.lastAnnouncedAt = Math.max(a.lastAnnouncedAt, b.lastAnnouncedAt);
  out.firstDoneAt = first(a.firstDoneAt, b.firstDoneAt);
  out.lastDoneAt = Math.max(a.lastDoneAt, b.lastDoneAt);
  out.lastBlocksAskedAt = Math.max(a.lastBlocksAskedAt, b.lastBlocksAskedAt);
  out.firstBlockAt = first(a.firstBlockAt, b.firstBlockAt);
  out.deliveryCpuMs = Math.max(a.deliveryCpuMs, b.deliveryCpuMs);
  return out;
}

export type LightOptions = {
  readonly prefix: string;
  readonly group: string;
  /** An answer later than this (ms) is a failed attempt (a device's default: 5000). */
  readonly timeoutMs: number;
  /** Blocks per request (LIMITS.maxBlocksPerRequest at most). */
  readonly window: number;
  /** Installed release, reported in `online` (the campaign's release is newer). */
  readonly version: string;
  readonly counter: number;
};

type Phase = 'idle' | 'manifest' | 'pages' | 'blocks' | 'done';

/** A device's retry backoff (device/ota/campaign.ts retryDelay defaults). */
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30_000;

/** One protocol device: manifest, digest pages, then blocks until every chunk checked; then the end-of-campaign events. */
export class LightClient {
  readonly done: Promise<void>;
  readonly #reply: string;
  #resolveDone: () => void = () => {};
  #phase: Phase = 'idle';
  #a: Announcement | null = null;
  #blocks = 0;
  /** Chunks per block. */
  #cpb = 0;
  #hasher = new LeafHasher(1);
  #leaves: (Buffer | undefined)[] = [];
  #leafCount = 0;
  readonly #have = new Set<number>();
  #asked: number[] = [];
  #rid = 1;
  #timer: NodeJS.Timeout | null = null;
  #ask: (() => void) | null = null;
  #attempt = 0;
  readonly #outstanding = new Set<number>();

  constructor(
    readonly client: MqttClient,
    readonly id: string,
    readonly o: LightOptions,
    readonly stats: LightStats,
  ) {
    this.#reply = topics.reply(o.prefix, id);
    this.done = new Promise<void>((r) => {
      this.#resolveDone = r;
    });
    client.on('message', (topic, payload) => {
      stats.rxBytes += payload.length;
      try {
        this.#onMessage(topic, payload);
      } catch {
        // a bad message is dropped; the time-out asks again
      }
    });
  }

  /** Subscribe to the group's announcement and the reply topic, then report `online` (SPEC.md §12.2). */
  async start(): Promise<void> {
    await this.client.subscribeAsync([topics.announce(this.o.prefix, this.o.group), this.#reply], { qos: 1 });
    await this.#status({ device: this.id, state: 'online', group: this.o.group, version: this.o.version, counter: this.o.counter });
  }

  /** A status event (QoS 1); its failure (the connection closing at the end of a round) is nobody's business. */
  #status(e: StatusEvent): Promise<unknown> {
    this.stats.statusEvents++;
    return this.client.publishAsync(topics.status(this.o.prefix, this.id), Buffer.from(encodeStatusEvent(e)), { qos: 1 }).catch(() => {});
  }

  /** Send a request of the current attempt (`rid` its request id: an error reply to an older one is ignored). */
  #request(rid: number, payload: Uint8Array): void {
    this.#outstanding.add(rid);
    void this.client.publishAsync(topics.request(this.o.prefix, this.#a!.campaign, this.id), Buffer.from(payload), { qos: 1 }).catch(() => {});
  }

  /**
   * Ask until the phase moves on, as a device does (device/ota/campaign.ts): an answer later than
   * timeoutMs, or an error reply (SERVER_BUSY), is a failed attempt, and the next one waits a full-jitter
   * backoff (retryDelay: random x min(30 s, 1 s x 2^attempt)).
   */
  #askUntilAnswered(ask: () => void): void {
    this.#ask = ask;
    this.#attempt = 0;
    this.#send();
  }

  #send(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#outstanding.clear();
    this.#ask?.();
    this.#timer = setTimeout(() => this.#failed(), this.o.timeoutMs);
  }

  /** Progress (a new block): the outstanding request is alive, its time-out starts again. */
  #alive(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#failed(), this.o.timeoutMs);
  }

  #failed(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#phase === 'idle' || this.#phase === 'done') return;
    this.stats.retries++;
    const wait = Math.random() * Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(this.#attempt++, 16));
    this.#timer = setTimeout(() => this.#send(), wait);
  }

  #onMessage(topic: string, payload: Buffer): void {
    if (topic === topics.announce(this.o.prefix, this.o.group)) return this.#onAnnouncement(payload);
    const t = messageType(payload);
    if (!t.ok) return;
    if (t.type === 'manifestResponse') this.#onManifest(payload);
    else if (t.type === 'pageResponse') this.#onPage(payload);
    else if (t.type === 'blockResponse') this.#onBlock(payload);
    else if (t.type === 'errorReply') {
      this.stats.errorReplies++;
      const e = parseErrorReply(payload);
      if (e.ok && e.value.requestId !== undefined && this.#outstanding.has(e.value.requestId)) this.#failed();
    }
  }

  /** The first announcement: its geometry, then the manifest request. */
  #onAnnouncement(payload: Buffer): void {
    if (payload.length === 0 || this.#phase !== 'idle') return;
    const a = parseAnnouncement(payload);
    if (!a.ok) return;
    const now = wallMs();
    const s = this.stats;
    if (!s.firstAnnouncedAt || now < s.firstAnnouncedAt) s.firstAnnouncedAt = now;
    if (!cpuAtAnnouncement.has(s)) cpuAtAnnouncement.set(s, cpuMs());
    s.lastAnnouncedAt = Math.max(s.lastAnnouncedAt, now);
    this.#a = a.value;
    this.#cpb = a.value.blockSize / a.value.chunkSize;
    this.#hasher = new LeafHasher(a.value.chunkSize);
    this.#blocks = Math.ceil(a.value.imageSize / a.value.blockSize);
    this.#leaves = new Array(Math.ceil(a.value.imageSize / a.value.chunkSize));
    this.#phase = 'manifest';
    const campaign = a.value.campaign;
    this.#askUntilAnswered(() => {
      this.stats.manifestRequests++;
      const rid = this.#rid++;
      this.#request(rid, encodeManifestRequest({ campaign, requestId: rid, replyTopic: this.#reply }));
    });
  }

  /** The manifest envelope, checked against the announced SHA-256; then `accepted`, the data topic and every digest page. */
  #onManifest(payload: Buffer): void {
    const m = parseManifestResponse(payload);
    const a = this.#a;
    if (!m.ok || !a || this.#phase !== 'manifest' || m.value.campaign !== a.campaign) return;
    if (!bytesEqual(nodeSha256(m.value.manifest), a.manifestDigest)) return; // not the announced manifest: asked again
    this.#phase = 'pages';
    void this.#status({ campaign: a.campaign, device: this.id, state: 'accepted' });
    const listening = this.client.subscribeAsync(topics.data(this.o.prefix, a.campaign), { qos: 0 }).catch(() => {});
    void listening.then(() => {
      this.#askUntilAnswered(() => {
        for (let p = 0; p < a.pageCount; p++) {
          if (this.#pageDone(p)) continue;
          this.stats.pageRequests++;
          const rid = this.#rid++;
          this.#request(rid, encodePageRequest({ campaign: a.campaign, requestId: rid, replyTopic: this.#reply, page: p }));
        }
      });
    });
  }

  #pageDone(p: number): boolean {
    return this.#leaves[p * LIMITS.pageLeaves] !== undefined;
  }

  /** A digest page: its leaves; once all are in, `downloading` and the block requests. */
  #onPage(payload: Buffer): void {
    const m = parsePageResponse(payload);
    const a = this.#a;
    if (!m.ok || !a || this.#phase !== 'pages' || this.#pageDone(m.value.page)) return;
    const leaves = this.#leaves;
    for (let k = 0; k < m.value.leaves.length / 32; k++) {
      leaves[m.value.page * LIMITS.pageLeaves + k] = Buffer.from(m.value.leaves.subarray(k * 32, k * 32 + 32));
      this.#leafCount++;
    }
    if (this.#leafCount < leaves.length) return;
    this.#phase = 'blocks';
    this.stats.lastBlocksAskedAt = Math.max(this.stats.lastBlocksAskedAt, wallMs());
    void this.#status({ campaign: a.campaign, device: this.id, state: 'downloading', done: 0, total: leaves.length });
    this.#nextWindow();
  }

  /** Request the next `window` missing blocks with the multicast flag (SPEC.md §12.11), asked again until they came. */
  #nextWindow(): void {
    const missing = [...Array(this.#blocks).keys()].filter((b) => !this.#have.has(b)).slice(0, this.o.window);
    this.#asked = missing;
    const campaign = this.#a!.campaign;
    this.#askUntilAnswered(() => {
      const ranges: [number, number][] = [];
      for (const b of this.#asked) {
        if (this.#have.has(b)) continue;
        const last = ranges[ranges.length - 1];
        if (last && last[0] + last[1] === b) last[1]++;
        else ranges.push([b, 1]);
      }
      this.stats.blockRequests++;
      const rid = this.#rid++;
      this.#request(rid, encodeBlockRequest({ campaign, requestId: rid, replyTopic: this.#reply, ranges, multicast: true }));
    });
  }

  /** A block (on the reply or the data topic): every chunk checked against its leaf digest, or the whole block refused. */
  #onBlock(payload: Buffer): void {
    const m = parseBlockResponse(payload);
    const a = this.#a;
    if (!m.ok || !a || m.value.campaign !== a.campaign) return;
    const b = m.value.block;
    if (!this.stats.firstBlockAt) this.stats.firstBlockAt = wallMs();
    if (this.#phase !== 'blocks' || this.#have.has(b)) return void this.stats.duplicateBlocks++;
    const cs = a.chunkSize;
    for (let j = 0; j < this.#cpb; j++) {
      const i = b * this.#cpb + j;
      if (i >= this.#leaves.length) break;
      if (!this.#hasher.leaf(m.value.data.subarray(j * cs, (j + 1) * cs)).equals(this.#leaves[i]!)) return void this.stats.badBlocks++; // the time-out asks again
    }
    this.#have.add(b);
    this.stats.blocksChecked++;
    if (this.#have.size === this.#blocks) return this.#finish();
    if (this.#asked.every((x) => this.#have.has(x))) this.#nextWindow();
    else this.#alive();
  }

  /** Every chunk checked: the events a device sends after its download (no flash, no boot here). */
  #finish(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#phase = 'done';
    const now = wallMs();
    const s = this.stats;
    s.finished++;
    if (!s.firstDoneAt || now < s.firstDoneAt) s.firstDoneAt = now;
    s.lastDoneAt = Math.max(s.lastDoneAt, now);
    s.deliveryCpuMs = cpuMs() - (cpuAtAnnouncement.get(s) ?? cpuMs());
    const campaign = this.#a!.campaign;
    // As a device does once its pull ended: off the data topic, so later multicasts of the campaign skip it.
    void this.client.unsubscribeAsync(topics.data(this.o.prefix, campaign)).catch(() => {});
    for (const state of ['verifying', 'installed', 'confirmed'] as const) void this.#status({ campaign, device: this.id, state });
    this.#resolveDone();
  }

  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
  }
}

/** The raw fan-out's subscriber (fanout.ts): done once `want` payload bytes arrived on `topic`. */
export class RawSubscriber {
  readonly done: Promise<void>;
  #got = 0;

  constructor(
    readonly client: MqttClient,
    readonly topic: string,
    readonly want: number,
    readonly stats: LightStats,
  ) {
    let resolve: () => void = () => {};
    this.done = new Promise<void>((r) => {
      resolve = r;
    });
    client.on('message', (_t, payload) => {
      this.#got += payload.length;
      stats.rxBytes += payload.length;
      if (this.#got >= want && this.#got - payload.length < want) {
        const now = wallMs();
        stats.finished++;
        if (!stats.firstDoneAt || now < stats.firstDoneAt) stats.firstDoneAt = now;
        stats.lastDoneAt = Math.max(stats.lastDoneAt, now);
        resolve();
      }
    });
  }

  async start(): Promise<void> {
    await this.client.subscribeAsync(this.topic, { qos: 1 });
  }

  stop(): void {}
}
