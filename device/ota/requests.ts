/**
 * The device's requests to the OTA server and their replies (SPEC.md §12.2–§12.5, §12.11): request
 * ids, where replies go (payload key 3 on MQTT 3.1.1, Response Topic and Correlation Data on 5),
 * time-outs, the multicast data topic, and the transport the pull driver uses. Replies are matched
 * to what is outstanding; anything else is stale (dropped) or malformed (counted). Nothing here
 * trusts a reply: the agent verifies every manifest, page and chunk.
 */
import { CODES } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { messageType } from '../../shared/ota/codec.js';
import { encodeLogProofRequest, parseLogProofResponse } from '../../shared/ota/log-proof.js';
import {
  type Announcement,
  type BlockRange,
  encodeBlockRequest,
  encodeManifestRequest,
  encodePageRequest,
  parseBlockResponse,
  parseErrorReply,
  parseManifestResponse,
  parsePageResponse,
} from '../../shared/ota/messages.js';
import { encodeRootRequest, parseRootResponse, type RootResponse } from '../../shared/ota/root.js';
import { topics } from '../../shared/ota/topics.js';
import { type AsyncTransport } from '../agent/pull.js';
import { type OtaClock, type OtaLink } from './ports.js';

export type OtaStats = {
  requests: number;
  blocksReceived: number;
  rejected: number;
  timeouts: number;
  malformed: number;
  /** Trust bundles and revocation lists of the root channel the agent refused (SPEC.md §12.13). */
  rootRefused: number;
};

/** The campaign a device is working on; `aborted` stops its pull at the next reply. */
export type Run = {
  readonly campaign: string;
  readonly announcement: Announcement;
  aborted: boolean;
  /** A final error reply (UNKNOWN_CAMPAIGN, UNKNOWN_BLOCK) ended the campaign for this device. */
  finalCode: number | null;
  wake: () => void;
};

type Waiter<T> = (value: T | null) => void;
type Pending =
  | { kind: 'manifest'; campaign: string; resolve: Waiter<Uint8Array> }
  | { kind: 'page'; campaign: string; page: number; resolve: Waiter<{ leaves: Uint8Array; proof: Uint8Array }> }
  | { kind: 'block'; campaign: string; blocks: Map<number, Waiter<Uint8Array>> }
  | { kind: 'root'; version: number; resolve: (reply: RootResponse | number) => void }
  | { kind: 'logProof'; campaign: string; resolve: (reply: Uint8Array | number) => void };

/** Handed to waiters when a run is aborted: the caller checks `run.aborted` before looking at it. */
export const ABORT_BLOCK = new Uint8Array(0);
export const ABORT_PAGE = Object.freeze({ leaves: new Uint8Array(0), proof: new Uint8Array(0) });

/** Error replies after which retrying the campaign is pointless (SPEC.md §12.5). */
const FINAL_CODES: ReadonlySet<number> = new Set([CODES.UNKNOWN_CAMPAIGN, CODES.UNKNOWN_BLOCK]);

/** End a request without an answer: `code` is what a root request learns (an error reply's, else a time-out). */
function settle(p: Pending, code: number = CODES.TRANSPORT_TIMEOUT): void {
  if (p.kind === 'block') for (const w of p.blocks.values()) w(null);
  else if (p.kind === 'root' || p.kind === 'logProof') p.resolve(code);
  else p.resolve(null);
}

export class Requests {
  readonly #pending = new Map<number, Pending>();
  #nextId: number;
  /** The campaign's data topic while subscribed for multicast (SPEC.md §12.11), else null. */
  dataTopic: string | null = null;

  constructor(
    private readonly link: OtaLink,
    private readonly clock: OtaClock,
    private readonly where: { readonly prefix: string; readonly device: string; readonly replyTopic: string },
    private readonly stats: OtaStats,
    private readonly stopped: () => boolean,
  ) {
    this.#nextId = Math.floor(clock.random() * 0x7fffffff);
  }

  #requestId(): number {
    this.#nextId = (this.#nextId + 1) % (LIMITS.maxRequestId + 1);
    return this.#nextId;
  }

  #send(campaign: string | null, requestId: number, encode: (replyTopic?: string) => Uint8Array): void {
    if (this.stopped()) return;
    this.stats.requests++;
    const { prefix, device } = this.where;
    const topic = campaign === null ? topics.rootRequest(prefix, device) : topics.request(prefix, campaign, device);
    if (this.link.v5) {
      const correlation = new Uint8Array(4);
      new DataView(correlation.buffer).setUint32(0, requestId);
      this.link.publish(topic, encode(), 1, { topic: this.where.replyTopic, correlation });
    } else {
      this.link.publish(topic, encode(this.where.replyTopic), 1);
    }
  }

  /** Forget a request after `ms` (a late reply is then stale); unanswered blocks count as timeouts. */
  #expire(id: number, ms: number): void {
    this.clock.after(ms, () => {
      const p = this.#pending.get(id);
      if (!p) return;
      this.#pending.delete(id);
      this.stats.timeouts += p.kind === 'block' ? p.blocks.size : 1;
      settle(p);
    });
  }

  manifest(campaign: string, timeoutMs: number): Promise<Uint8Array | null> {
    return new Promise((resolve) => {
      const id = this.#requestId();
      this.#pending.set(id, { kind: 'manifest', campaign, resolve });
      this.#send(campaign, id, (replyTopic) => encodeManifestRequest({ campaign, requestId: id, ...(replyTopic ? { replyTopic } : {}) }));
      this.#expire(id, timeoutMs);
    });
  }

  /**
   * Trust bundle `version` from the root channel (SPEC.md §12.13): the response, or a code (the error
   * reply's, e.g. UNKNOWN_TRUST_VERSION; TRANSPORT_TIMEOUT when nothing came within `timeoutMs`).
   * A campaign's abort does not end it.
   */
  root(version: number, timeoutMs: number): Promise<RootResponse | number> {
    return new Promise((resolve) => {
      const id = this.#requestId();
      this.#pending.set(id, { kind: 'root', version, resolve });
      this.#send(null, id, (replyTopic) => encodeRootRequest({ requestId: id, trustVersion: version, ...(replyTopic ? { replyTopic } : {}) }));
      this.#expire(id, timeoutMs);
    });
  }

  /**
   * The log proof of `campaign`'s manifest with consistency from `fromSize` (issue 19 item 2): the
   * attachment, or a code (the error reply's, e.g. LOG_PROOF_UNAVAILABLE; TRANSPORT_TIMEOUT when
   * nothing came within `timeoutMs`; TRANSPORT_UNAVAILABLE when the run was aborted).
   */
  logProof(campaign: string, fromSize: number, timeoutMs: number): Promise<Uint8Array | number> {
    return new Promise((resolve) => {
      const id = this.#requestId();
      this.#pending.set(id, { kind: 'logProof', campaign, resolve });
      this.#send(campaign, id, (replyTopic) => encodeLogProofRequest({ campaign, requestId: id, fromSize, ...(replyTopic ? { replyTopic } : {}) }));
      this.#expire(id, timeoutMs);
    });
  }

  /** The pull driver's transport: block requests made in the same burst go out as one request. */
  transport(run: Run, timeoutMs: number, multicast: boolean): AsyncTransport {
    const campaign = run.campaign;
    const gone = () => run.aborted || this.stopped();
    let batch: { block: number; resolve: Waiter<Uint8Array> }[] = [];
    const flush = () => {
      const all = batch.sort((x, y) => x.block - y.block);
      batch = [];
      if (gone()) {
        for (const b of all) b.resolve(ABORT_BLOCK);
        return;
      }
      for (let i = 0; i < all.length; i += LIMITS.maxBlocksPerRequest)
        this.#blockRequest(campaign, all.slice(i, i + LIMITS.maxBlocksPerRequest), timeoutMs, multicast);
    };
    return {
      requestPage: (page) =>
        new Promise((resolve) => {
          if (gone()) return resolve(ABORT_PAGE);
          const id = this.#requestId();
          this.#pending.set(id, { kind: 'page', campaign, page, resolve });
          this.#send(campaign, id, (replyTopic) => encodePageRequest({ campaign, requestId: id, page, ...(replyTopic ? { replyTopic } : {}) }));
          this.#expire(id, timeoutMs + 100);
        }),
      requestBlock: (block) =>
        new Promise((resolve) => {
          if (gone()) return resolve(ABORT_BLOCK);
          if (batch.length === 0) this.clock.defer(flush);
          batch.push({ block, resolve });
        }),
    };
  }

  /** One block request for up to maxBlocksPerRequest blocks, as ranges (SPEC.md §12.2). */
  #blockRequest(campaign: string, part: { block: number; resolve: Waiter<Uint8Array> }[], timeoutMs: number, multicast: boolean): void {
    const id = this.#requestId();
    const blocks = new Map<number, Waiter<Uint8Array>>();
    const ranges: [number, number][] = [];
    for (const { block, resolve } of part) {
      const prev = blocks.get(block);
      if (prev) {
        // asked twice in one burst: both get the reply
        blocks.set(block, (v) => {
          prev(v);
          resolve(v);
        });
        continue;
      }
      blocks.set(block, resolve);
      const last = ranges[ranges.length - 1];
      if (last && last[0] + last[1] === block) last[1]++;
      else ranges.push([block, 1]);
    }
    this.#pending.set(id, { kind: 'block', campaign, blocks });
    const rs: readonly BlockRange[] = ranges;
    const flagged = multicast && this.dataTopic !== null;
    this.#send(campaign, id, (replyTopic) =>
      encodeBlockRequest({ campaign, requestId: id, ranges: rs, ...(replyTopic ? { replyTopic } : {}), ...(flagged ? { multicast: true } : {}) }),
    );
    this.#expire(id, timeoutMs + 100);
  }

  #listening: Promise<unknown> = Promise.resolve();

  /**
   * Subscribe to the data topic `topic` (leaving the one before), or leave it (null); one change at a
   * time. False when multicast is off, the client stopped or the broker refused: plain replies still work.
   */
  listen(topic: string | null, enabled: boolean): Promise<boolean> {
    const next = this.#listening.then(() => this.#switchData(topic, enabled));
    this.#listening = next;
    return next;
  }

  async #switchData(want: string | null, enabled: boolean): Promise<boolean> {
    if (!enabled || this.stopped()) return false;
    if (want === this.dataTopic) return want !== null;
    const old = this.dataTopic;
    this.dataTopic = null;
    try {
      if (old !== null) await this.link.unsubscribe(old);
      if (want !== null) {
        await this.link.subscribe([want], 0);
        this.dataTopic = want;
      }
    } catch {
      return false;
    }
    return this.dataTopic !== null;
  }

  /** Wake every waiter of the campaign (a run was aborted): each gets the abort value and the pull stops. */
  abortAll(): void {
    for (const [id, p] of this.#pending) {
      if (p.kind === 'root') continue; // the root channel is not the campaign's
      this.#pending.delete(id);
      if (p.kind === 'block') for (const w of p.blocks.values()) w(ABORT_BLOCK);
      else if (p.kind === 'page') p.resolve(ABORT_PAGE);
      else if (p.kind === 'logProof') p.resolve(CODES.TRANSPORT_UNAVAILABLE);
      else p.resolve(null);
    }
  }

  /** A block the server sent once for several devices: it fills any outstanding request for that block. */
  onData(payload: Uint8Array): void {
    const m = parseBlockResponse(payload);
    if (!m.ok) return void this.stats.malformed++;
    for (const [id, p] of this.#pending) {
      if (p.kind !== 'block' || p.campaign !== m.value.campaign) continue;
      const w = p.blocks.get(m.value.block);
      if (!w) continue;
      p.blocks.delete(m.value.block);
      if (p.blocks.size === 0) this.#pending.delete(id);
      this.stats.blocksReceived++;
      w(m.value.data);
      return;
    }
  }

  /** A message on this device's reply topic. A final error reply for `run` ends it through `final`. */
  onReply(payload: Uint8Array, run: Run | null, final: (code: number) => void): void {
    const t = messageType(payload);
    if (!t.ok) return void this.stats.malformed++;
    switch (t.type) {
      case 'manifestResponse': {
        const m = parseManifestResponse(payload);
        if (!m.ok) return void this.stats.malformed++;
        const p = this.#pending.get(m.value.requestId);
        if (p?.kind !== 'manifest' || p.campaign !== m.value.campaign) return; // stale
        this.#pending.delete(m.value.requestId);
        return p.resolve(m.value.manifest);
      }
      case 'pageResponse': {
        const m = parsePageResponse(payload);
        if (!m.ok) return void this.stats.malformed++;
        const p = this.#pending.get(m.value.requestId);
        if (p?.kind !== 'page' || p.campaign !== m.value.campaign || p.page !== m.value.page) return;
        this.#pending.delete(m.value.requestId);
        return p.resolve({ leaves: m.value.leaves, proof: m.value.proof });
      }
      case 'blockResponse': {
        const m = parseBlockResponse(payload);
        if (!m.ok) return void this.stats.malformed++;
        const p = this.#pending.get(m.value.requestId);
        if (p?.kind !== 'block' || p.campaign !== m.value.campaign) return;
        const w = p.blocks.get(m.value.block);
        if (!w) return; // not outstanding (duplicate or stale)
        p.blocks.delete(m.value.block);
        if (p.blocks.size === 0) this.#pending.delete(m.value.requestId);
        this.stats.blocksReceived++;
        return w(m.value.data);
      }
      case 'rootResponse': {
        const m = parseRootResponse(payload);
        if (!m.ok) return void this.stats.malformed++;
        const p = this.#pending.get(m.value.requestId);
        if (p?.kind !== 'root' || p.version !== m.value.trustVersion) return; // stale
        this.#pending.delete(m.value.requestId);
        return p.resolve(m.value);
      }
      case 'logProofResponse': {
        const m = parseLogProofResponse(payload);
        if (!m.ok) return void this.stats.malformed++;
        const p = this.#pending.get(m.value.requestId);
        if (p?.kind !== 'logProof' || p.campaign !== m.value.campaign) return; // stale
        this.#pending.delete(m.value.requestId);
        return p.resolve(m.value.proof);
      }
      case 'errorReply':
        return this.#onError(payload, run, final);
      default:
        this.stats.malformed++; // a request or an announcement on the reply topic
    }
  }

  #onError(payload: Uint8Array, run: Run | null, final: (code: number) => void): void {
    const m = parseErrorReply(payload);
    if (!m.ok) return void this.stats.malformed++;
    const e = m.value;
    const root = e.requestId === undefined ? undefined : this.#pending.get(e.requestId);
    if (root?.kind === 'root') {
      if (e.campaign !== undefined) return; // an answer about a campaign: not to this request
      this.#pending.delete(e.requestId!);
      return settle(root, e.code);
    }
    if (
      run &&
      FINAL_CODES.has(e.code) &&
      (e.campaign === undefined || e.campaign === run.campaign) &&
      (e.requestId === undefined || this.#pending.has(e.requestId))
    ) {
      return final(e.code);
    }
    if (e.requestId === undefined) return;
    const p = this.#pending.get(e.requestId);
    if (!p || p.kind === 'root' || (e.campaign !== undefined && e.campaign !== p.campaign)) return;
    this.#pending.delete(e.requestId);
    settle(p, e.code); // a log proof request learns the code (LOG_PROOF_UNAVAILABLE: retried); the others only that it failed
  }
}
