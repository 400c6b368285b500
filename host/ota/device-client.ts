/**
 * The OTA device client (SPEC.md §12.3): an UpdateAgent driven over MQTT. It learns campaigns from
 * the retained group announcement, fetches and verifies the manifest before asking for any image
 * data, pulls the blocks with the windowed pull driver (device/agent/pull.ts) over an MQTT transport,
 * installs, trial-boots and confirms, and reports every step as a status event.
 *
 * Never throws on bad input from the broker: undecodable or unexpected messages are counted
 * (`stats().malformed`) and dropped. Trust never depends on MQTT: every chunk is checked against its
 * proven digest page before it is written, so a rogue publisher can only cost a re-fetch.
 */
import { EventEmitter } from 'node:events';
import { type MqttClient, type IClientPublishOptions } from 'mqtt';
import { bytesEqual, toHex } from '../../shared/bytes.js';
import { CODES, type Result, ok } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { LIMITS } from '../../shared/limits.js';
import { parseManifest } from '../../shared/manifest.js';
import {
  type Announcement, type BlockRange, type StatusEvent, type StatusState, blockCount, encodeBlockRequest, encodeManifestRequest,
  encodePageRequest, encodeStatusEvent, messageType, parseAnnouncement, parseBlockResponse, parseErrorReply, parseManifestResponse,
  parsePageResponse, rolloutBucket, topics,
} from '../../shared/ota.js';
import { UpdateAgent, activeSlotOf } from '../../device/agent/agent.js';
import { boot } from '../../device/agent/boot.js';
import { type Flash } from '../../device/agent/flash.js';
import { type Layout } from '../../device/agent/layout.js';
import { readManifestArea } from '../../device/agent/slot.js';
import { type AsyncTransport, type PullOptions, type Timer, pullDownload } from '../../device/agent/pull.js';
import { createVerifier, type Verifier } from '../../device/verifier.js';
import { nodeSha256 } from '../hash.js';
import { type MqttSettings, connectMqtt } from './mqtt-options.js';

export type OtaPullOptions = Omit<PullOptions, 'chunksPerBlock' | 'chunkSize'> & {
  /** Wait before pulling again after a transport failure (full jitter): base and cap in ms. */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
};

export type OtaDeviceOptions = {
  readonly id: string;
  readonly group: string;
  readonly prefix?: string;
  /** Connection settings (connected with connectMqtt) or a client already connected. */
  readonly mqtt: MqttSettings | MqttClient;
  readonly flash: Flash;
  readonly layout: Layout;
  /** Factory trust bundle and revocation list (the ones stored on flash take precedence). */
  readonly trust: Uint8Array;
  readonly revocations?: Uint8Array;
  readonly verifier?: Verifier;
  readonly maxTrialBoots: number;
  readonly pull?: OtaPullOptions;
  /** Confirm a trial image as soon as it boots (default true). */
  readonly autoConfirm?: boolean;
  /** Listen on the campaign's data topic while downloading and flag block requests for multicast (default true; §12.11). */
  readonly multicast?: boolean;
  readonly log?: (line: string) => void;
  /** Called for every status event, from before the first announcement can arrive. */
  readonly onStatus?: (e: StatusEvent) => void;
};

export type OtaPhase = 'idle' | 'manifest' | 'downloading' | 'waiting' | 'installing' | 'trial' | 'stopped';

export type OtaStats = { requests: number; blocksReceived: number; rejected: number; timeouts: number; malformed: number };

export type OtaState = {
  readonly slot: 0 | 1 | null;
  readonly version?: string;
  readonly counter: number | null;
  readonly phase: OtaPhase;
  readonly lastStatus?: StatusEvent;
};

/** Thrown from the agent view to stop a pull at once (withdrawn, not eligible, superseded, final error). */
class PullAborted extends Error {}

type Waiter<T> = (value: T | null) => void;
type Pending =
  | { kind: 'manifest'; campaign: string; resolve: Waiter<Uint8Array> }
  | { kind: 'page'; campaign: string; page: number; resolve: Waiter<{ leaves: Uint8Array; proof: Uint8Array }> }
  | { kind: 'block'; campaign: string; blocks: Map<number, Waiter<Uint8Array>> };

type Run = {
  readonly a: Announcement;
  aborted: boolean;
  /** A final error reply (UNKNOWN_CAMPAIGN, UNKNOWN_BLOCK) ended the campaign for this device. */
  finalCode: number | null;
  wake: () => void;
};

const FINAL_CODES: ReadonlySet<number> = new Set([CODES.UNKNOWN_CAMPAIGN, CODES.UNKNOWN_BLOCK]);
/** `downloading` reports: one per 10 % of the blocks, at most one per PROGRESS_MIN_MS, and one at least every PROGRESS_MS. */
const PROGRESS_MS = 5000;
const PROGRESS_MIN_MS = 1000;

const realTimer: Timer = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms).unref()),
  random: () => Math.random(),
};

export class OtaDevice extends EventEmitter {
  readonly id: string;
  readonly group: string;
  readonly prefix: string;
  readonly #o: OtaDeviceOptions;
  readonly #v: Verifier;
  readonly #agent: UpdateAgent;
  readonly #client: MqttClient;
  readonly #v5: boolean;
  readonly #announceTopic: string;
  readonly #replyTopic: string;
  readonly #stats: OtaStats = { requests: 0, blocksReceived: 0, rejected: 0, timeouts: 0, malformed: 0 };
  readonly #pending = new Map<number, Pending>();
  #nextId = Math.floor(Math.random() * 0x7fffffff);
  #slot: 0 | 1 | null = null;
  #version: string | undefined;
  #counter: number | null = null;
  #phase: OtaPhase = 'idle';
  #lastStatus: StatusEvent | undefined;
  #stopped = false;
  /** The standing announcement (null: none or withdrawn). */
  #latest: Announcement | null = null;
  #run: Run | null = null;
  #loop: Promise<void> | null = null;
  /** Campaigns this device reached a terminal state for (not attempted again). */
  readonly #done = new Map<string, StatusState>();
  /** Manifest digests the verifier refused, with the code. */
  readonly #refused = new Map<string, number>();

  private constructor(o: OtaDeviceOptions, client: MqttClient, verifier: Verifier) {
    super();
    this.#o = o;
    this.id = o.id;
    this.group = o.group;
    this.prefix = o.prefix ?? 'fwseal';
    this.#v = verifier;
    this.#client = client;
    this.#v5 = client.options.protocolVersion === 5;
    this.#announceTopic = topics.announce(this.prefix, o.group);
    this.#replyTopic = topics.reply(this.prefix, o.id);
    this.#agent = new UpdateAgent({ flash: o.flash, layout: o.layout, trust: o.trust, verifier, ...(o.revocations ? { revocations: o.revocations } : {}) });
  }

  /** Boot, connect, subscribe to the group announcement and the reply topic, report `online`. */
  static async start(o: OtaDeviceOptions): Promise<OtaDevice> {
    // Validate ids and prefix before connecting (RangeError from the topic builders).
    topics.announce(o.prefix ?? 'fwseal', o.group);
    topics.reply(o.prefix ?? 'fwseal', o.id);
    const verifier = o.verifier ?? createVerifier({ sha256: nodeSha256 });
    const client = isClient(o.mqtt) ? o.mqtt : await connectMqtt(o.mqtt);
    const d = new OtaDevice(o, client, verifier);
    if (o.onStatus) d.on('status', o.onStatus);
    d.#boot();
    client.on('message', (topic, payload, packet) => d.#onMessage(topic, payload, packet.properties?.correlationData));
    client.on('connect', () => d.#online()); // reconnects; the first connect is already done
    await client.subscribeAsync([d.#announceTopic, d.#replyTopic], { qos: 1 });
    d.#online();
    return d;
  }

  stats(): OtaStats {
    return { ...this.#stats };
  }

  state(): OtaState {
    return { slot: this.#slot, ...(this.#version !== undefined ? { version: this.#version } : {}), counter: this.#counter, phase: this.#phase, ...(this.#lastStatus ? { lastStatus: this.#lastStatus } : {}) };
  }

  /** Resolves with the first status event (published from now on) that `match` accepts. */
  waitFor(match: (e: StatusEvent) => boolean): Promise<StatusEvent> {
    return new Promise((resolve) => {
      const on = (e: StatusEvent) => {
        if (!match(e)) return;
        this.off('status', on);
        resolve(e);
      };
      this.on('status', on);
    });
  }

  /** Graceful: stop any pull, wait for the campaign loop, close the MQTT connection. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#abortRun();
    const loop = this.#loop;
    if (loop) await Promise.race([loop, new Promise((r) => setTimeout(r, 2000).unref())]);
    this.#stopped = true;
    this.#phase = 'stopped';
    this.#abortRun();
    await this.#client.endAsync().catch(() => undefined);
  }

  /** Abrupt (a reset): drop the connection without a word and never touch the flash again. */
  crash(): void {
    this.#stopped = true;
    this.#phase = 'stopped';
    this.#abortRun();
    this.#client.end(true);
  }

  /** Confirm a trial image by hand (autoConfirm false). */
  confirm(): Result<{ counter: number }> {
    const c = this.#agent.confirm();
    if (!c.ok) return c;
    this.#boot();
    const campaign = this.#run?.a.campaign ?? this.#latest?.campaign;
    if (campaign) this.#status({ campaign, device: this.id, state: 'confirmed' });
    return ok({ counter: c.counter });
  }

  // ---- boot and state ----

  #boot(): void {
    const o = this.#o;
    const b = boot(o.flash, o.layout, o.trust, { maxTrialBoots: o.maxTrialBoots, verifier: this.#v, ...(o.revocations ? { revocations: o.revocations } : {}) });
    this.#slot = b.slot;
    this.#version = b.version;
    this.#counter = b.counter;
    this.#log(`boot: slot ${b.slot} ${b.version ?? ''}${b.trial ? ' on trial' : ''} (${b.error})`);
    if (b.trial) {
      this.#phase = 'trial';
      if (o.autoConfirm !== false) {
        const c = this.#agent.confirm();
        if (c.ok) {
          this.#counter = c.counter;
          this.#phase = 'idle';
        } else this.#log(`confirm: ${c.error}${c.detail ? ' (' + c.detail + ')' : ''}`);
      }
    }
  }

  /**
   * Whether the announced manifest is the installed one. The announcement names the SHA-256 of the
   * manifest ENVELOPE, the state record the manifest digest (of the payload): compare the envelope
   * stored for the active slot, and that it is the one the state names.
   */
  #isInstalled(announcedEnvelopeDigest: Uint8Array): boolean {
    const s = this.#agent.status();
    if (!s.ok || !s.state.installed) return false;
    const stored = readManifestArea(this.#o.flash, this.#o.layout, activeSlotOf(s.state));
    if (!stored.ok || !bytesEqual(this.#v.sha256(stored.envelope), announcedEnvelopeDigest)) return false;
    const env = parseEnvelope(stored.envelope);
    return env.ok && bytesEqual(this.#v.sha256(env.envelope.payload), s.state.installed);
  }

  /** Whether an envelope's manifest digest (payload) is the installed one (e.g. the same manifest re-signed). */
  #payloadInstalled(envelope: Uint8Array): boolean {
    const s = this.#agent.status();
    const env = parseEnvelope(envelope);
    return s.ok && !!s.state.installed && env.ok && bytesEqual(this.#v.sha256(env.envelope.payload), s.state.installed);
  }

  #online(): void {
    if (this.#stopped) return;
    this.#publishStatus({ device: this.id, state: 'online', group: this.group, ...(this.#version !== undefined ? { version: this.#version } : {}), ...(this.#counter !== null ? { counter: this.#counter } : {}) });
  }

  #status(e: StatusEvent): void {
    this.#lastStatus = e;
    this.#log(`${e.campaign ?? ''} ${e.state}${e.done !== undefined ? ` ${e.done}/${e.total}` : ''}${e.code !== undefined ? ` code ${e.code}` : ''}`);
    this.#publishStatus(e);
    this.emit('status', e);
  }

  #publishStatus(e: StatusEvent): void {
    if (this.#stopped) return;
    this.#client.publish(topics.status(this.prefix, this.id), Buffer.from(encodeStatusEvent(e)), { qos: 1 }, () => undefined);
  }

  #log(line: string): void {
    this.#o.log?.(`${this.id}: ${line}`);
  }

  // ---- incoming messages ----

  #onMessage(topic: string, payload: Buffer, _correlation?: Buffer): void {
    if (this.#stopped) return;
    try {
      if (topic === this.#announceTopic) this.#onAnnouncement(payload);
      else if (topic === this.#replyTopic) this.#onReply(payload);
      else if (this.#dataTopic !== null && topic === this.#dataTopic) this.#onData(payload);
      else if (topic.startsWith(`${this.prefix}/campaign/`) && topic.endsWith('/data')) return; // a data topic just left: late copies
      else this.#stats.malformed++;
    } catch (e) {
      // Never let a message take the device down; a bug shows up in the log and the counter.
      this.#stats.malformed++;
      this.#log(`message handler error: ${(e as Error).message}`);
    }
  }

  #onAnnouncement(payload: Buffer): void {
    if (payload.length === 0) {
      this.#latest = null; // withdrawn (campaign aborted)
      this.#abortRun();
      return;
    }
    const p = parseAnnouncement(payload);
    if (!p.ok) {
      this.#stats.malformed++;
      return;
    }
    const a = p.value;
    this.#latest = a;
    const run = this.#run;
    if (run && (run.a.campaign !== a.campaign || !bytesEqual(run.a.manifestDigest, a.manifestDigest) || !this.#eligible(a))) this.#abortRun();
    this.#kick();
  }

  /** The campaign's data topic while this device downloads with multicast, else null. */
  #dataTopic: string | null = null;

  /** A block the server sent once for several devices: it fills any outstanding request for that block. */
  #onData(payload: Buffer): void {
    const m = parseBlockResponse(payload);
    if (!m.ok) return void this.#stats.malformed++;
    for (const [id, p] of this.#pending) {
      if (p.kind !== 'block' || p.campaign !== m.value.campaign) continue;
      const w = p.blocks.get(m.value.block);
      if (!w) continue;
      p.blocks.delete(m.value.block);
      if (p.blocks.size === 0) this.#pending.delete(id);
      this.#stats.blocksReceived++;
      w(m.value.data);
      return;
    }
  }

  #listening: Promise<unknown> = Promise.resolve();

  /** Subscribe to (or leave) the data topic of `campaign`, one change at a time; false when off or failed. */
  #listenData(campaign: string | null): Promise<boolean> {
    const next = this.#listening.then(() => this.#switchData(campaign));
    this.#listening = next;
    return next;
  }

  async #switchData(campaign: string | null): Promise<boolean> {
    if (this.#o.multicast === false || this.#stopped) return false;
    const want = campaign === null ? null : topics.data(this.prefix, campaign);
    if (want === this.#dataTopic) return want !== null;
    const old = this.#dataTopic;
    this.#dataTopic = null;
    try {
      if (old !== null) await this.#client.unsubscribeAsync(old);
      if (want !== null) {
        await this.#client.subscribeAsync(want, { qos: 0 });
        this.#dataTopic = want;
      }
    } catch {
      return false; // not subscribed: plain replies still work
    }
    return this.#dataTopic !== null;
  }

  #onReply(payload: Buffer): void {
    const t = messageType(payload);
    if (!t.ok) {
      this.#stats.malformed++;
      return;
    }
    switch (t.type) {
      case 'manifestResponse': {
        const m = parseManifestResponse(payload);
        if (!m.ok) return void this.#stats.malformed++;
        const p = this.#pending.get(m.value.requestId);
        if (p?.kind !== 'manifest' || p.campaign !== m.value.campaign) return; // stale
        this.#pending.delete(m.value.requestId);
        p.resolve(m.value.manifest);
        return;
      }
      case 'pageResponse': {
        const m = parsePageResponse(payload);
        if (!m.ok) return void this.#stats.malformed++;
        const p = this.#pending.get(m.value.requestId);
        if (p?.kind !== 'page' || p.campaign !== m.value.campaign || p.page !== m.value.page) return;
        this.#pending.delete(m.value.requestId);
        p.resolve({ leaves: m.value.leaves, proof: m.value.proof });
        return;
      }
      case 'blockResponse': {
        const m = parseBlockResponse(payload);
        if (!m.ok) return void this.#stats.malformed++;
        const p = this.#pending.get(m.value.requestId);
        if (p?.kind !== 'block' || p.campaign !== m.value.campaign) return;
        const w = p.blocks.get(m.value.block);
        if (!w) return; // not outstanding (duplicate or stale)
        p.blocks.delete(m.value.block);
        if (p.blocks.size === 0) this.#pending.delete(m.value.requestId);
        this.#stats.blocksReceived++;
        w(m.value.data);
        return;
      }
      case 'errorReply': {
        const m = parseErrorReply(payload);
        if (!m.ok) return void this.#stats.malformed++;
        const e = m.value;
        const run = this.#run;
        if (run && FINAL_CODES.has(e.code) && (e.campaign === undefined || e.campaign === run.a.campaign)
          && (e.requestId === undefined || this.#pending.has(e.requestId))) {
          run.finalCode = e.code;
          this.#abortRun();
          return;
        }
        if (e.requestId === undefined) return;
        const p = this.#pending.get(e.requestId);
        if (!p || (e.campaign !== undefined && e.campaign !== p.campaign)) return;
        this.#pending.delete(e.requestId);
        settle(p);
        return;
      }
      default:
        this.#stats.malformed++; // a request or an announcement on the reply topic
    }
  }

  // ---- requests ----

  #requestId(): number {
    this.#nextId = (this.#nextId + 1) % (LIMITS.maxRequestId + 1);
    return this.#nextId;
  }

  #send(campaign: string, requestId: number, encode: (replyTopic?: string) => Uint8Array): void {
    if (this.#stopped) return;
    this.#stats.requests++;
    const opts: IClientPublishOptions = { qos: 1 };
    let payload: Uint8Array;
    if (this.#v5) {
      const corr = Buffer.alloc(4);
      corr.writeUInt32BE(requestId);
      opts.properties = { responseTopic: this.#replyTopic, correlationData: corr };
      payload = encode();
    } else {
      payload = encode(this.#replyTopic);
    }
    this.#client.publish(topics.request(this.prefix, campaign, this.id), Buffer.from(payload), opts, () => undefined);
  }

  /** Forget a request after `ms` (a late reply is then stale); unanswered blocks count as timeouts. */
  #expire(id: number, ms: number): void {
    setTimeout(() => {
      const p = this.#pending.get(id);
      if (!p) return;
      this.#pending.delete(id);
      this.#stats.timeouts += p.kind === 'block' ? p.blocks.size : 1;
      settle(p);
    }, ms).unref();
  }

  #requestManifest(campaign: string, timeoutMs: number): Promise<Uint8Array | null> {
    return new Promise((resolve) => {
      const id = this.#requestId();
      this.#pending.set(id, { kind: 'manifest', campaign, resolve });
      this.#send(campaign, id, (replyTopic) => encodeManifestRequest({ campaign, requestId: id, ...(replyTopic ? { replyTopic } : {}) }));
      this.#expire(id, timeoutMs);
    });
  }

  /** The pull driver's transport: block requests made in the same tick go out as one request. */
  #transport(run: Run, campaign: string, timeoutMs: number, multicast = false): AsyncTransport {
    const gone = () => run.aborted || this.#stopped;
    let batch: { block: number; resolve: Waiter<Uint8Array> }[] = [];
    const flush = () => {
      const all = batch.sort((x, y) => x.block - y.block);
      batch = [];
      if (gone()) return all.forEach((b) => b.resolve(ABORT_BLOCK));
      for (let i = 0; i < all.length; i += LIMITS.maxBlocksPerRequest) {
        const part = all.slice(i, i + LIMITS.maxBlocksPerRequest);
        const id = this.#requestId();
        const blocks = new Map<number, Waiter<Uint8Array>>();
        const ranges: [number, number][] = [];
        for (const { block, resolve } of part) {
          const prev = blocks.get(block);
          if (prev) { // asked twice in one tick: both get the reply
            blocks.set(block, (v) => { prev(v); resolve(v); });
            continue;
          }
          blocks.set(block, resolve);
          const last = ranges[ranges.length - 1];
          if (last && last[0] + last[1] === block) last[1]++;
          else ranges.push([block, 1]);
        }
        this.#pending.set(id, { kind: 'block', campaign, blocks });
        const rs: readonly BlockRange[] = ranges;
        this.#send(campaign, id, (replyTopic) => encodeBlockRequest({ campaign, requestId: id, ranges: rs, ...(replyTopic ? { replyTopic } : {}), ...(multicast && this.#dataTopic !== null ? { multicast: true } : {}) }));
        this.#expire(id, timeoutMs + 100);
      }
    };
    return {
      requestPage: (page) => new Promise((resolve) => {
        if (gone()) return resolve(ABORT_PAGE);
        const id = this.#requestId();
        this.#pending.set(id, { kind: 'page', campaign, page, resolve });
        this.#send(campaign, id, (replyTopic) => encodePageRequest({ campaign, requestId: id, page, ...(replyTopic ? { replyTopic } : {}) }));
        this.#expire(id, timeoutMs + 100);
      }),
      requestBlock: (block) => new Promise((resolve) => {
        if (gone()) return resolve(ABORT_BLOCK);
        if (batch.length === 0) setImmediate(flush);
        batch.push({ block, resolve });
      }),
    };
  }

  #abortRun(): void {
    const run = this.#run;
    if (!run || run.aborted) return;
    run.aborted = true;
    // Wake every waiter: the agent view then throws PullAborted in the pull's continuation.
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      if (p.kind === 'block') for (const w of p.blocks.values()) w(ABORT_BLOCK);
      else if (p.kind === 'page') p.resolve(ABORT_PAGE);
      else p.resolve(null);
    }
    run.wake();
  }

  // ---- campaigns ----

  #eligible(a: Announcement): boolean {
    return rolloutBucket(this.#v.sha256, a.campaign, this.id) < a.rollout;
  }

  #kick(): void {
    if (this.#loop || this.#stopped) return;
    this.#loop = (async () => {
      await null; // let the assignment happen before the finally below can clear it
      try {
        for (;;) {
          const a = this.#latest;
          if (!a || this.#stopped || !this.#actionable(a)) break;
          await this.#campaign(a);
          // Another announcement arrived meanwhile: look at it; else wait for the next one.
          if (this.#latest === a) break;
        }
      } catch (e) {
        this.#log(`campaign loop error: ${(e as Error).message}`);
      } finally {
        this.#loop = null;
        this.#run = null;
        if (this.#phase !== 'stopped' && this.#phase !== 'trial') this.#phase = 'idle';
      }
      if (this.#latest && !this.#stopped && this.#actionable(this.#latest)) this.#kick();
    })();
  }

  /** Whether an announcement asks something of this device (also reports `confirmed` / `rejected` once). */
  #actionable(a: Announcement): boolean {
    if (this.#done.has(a.campaign)) return false;
    if (this.#isInstalled(a.manifestDigest)) {
      this.#done.set(a.campaign, 'confirmed');
      this.#status({ campaign: a.campaign, device: this.id, state: 'confirmed' });
      return false;
    }
    const refused = this.#refused.get(toHex(a.manifestDigest));
    if (refused !== undefined) {
      this.#done.set(a.campaign, 'rejected');
      this.#status({ campaign: a.campaign, device: this.id, state: 'rejected', code: refused });
      return false;
    }
    if (!this.#eligible(a)) {
      this.#phase = 'waiting';
      return false;
    }
    return true;
  }

  #terminal(a: Announcement, state: 'confirmed' | 'rejected' | 'failed', code?: number): void {
    this.#done.set(a.campaign, state);
    this.#status({ campaign: a.campaign, device: this.id, state, ...(code !== undefined ? { code } : {}) });
  }

  /** Sleep that an abort (withdrawal, new announcement, stop) cuts short. */
  #pause(run: Run, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      t.unref();
      const prev = run.wake;
      run.wake = () => { prev(); done(); };
      function done() {
        clearTimeout(t);
        resolve();
      }
    });
  }

  async #campaign(a: Announcement): Promise<void> {
    const run: Run = { a, aborted: false, finalCode: null, wake: () => {} };
    this.#run = run;
    const po = this.#o.pull ?? {};
    const timeoutMs = po.timeoutMs ?? 5000;
    const retryBase = po.retryBaseMs ?? 1000;
    const retryMax = po.retryMaxMs ?? 30_000;
    const live = () => !run.aborted && !this.#stopped;
    const finalOrNull = () => (run.finalCode !== null ? (this.#terminal(a, 'failed', run.finalCode), true) : false);

    // 1. The manifest: the announced size and digest, then the verifier (before any image data).
    this.#phase = 'manifest';
    let envelope: Uint8Array | null = null;
    for (let attempt = 0; live(); attempt++) {
      const got = await this.#requestManifest(a.campaign, timeoutMs);
      if (finalOrNull() || !live()) return;
      if (got && got.length === a.manifestSize && bytesEqual(this.#v.sha256(got), a.manifestDigest)) {
        envelope = got;
        break;
      }
      if (got) this.#stats.rejected++;
      await this.#pause(run, Math.random() * Math.min(retryMax, retryBase * 2 ** Math.min(attempt, 16)));
    }
    if (!envelope || !live()) return;
    const env = parseEnvelope(envelope);
    const m = env.ok ? parseManifest(env.envelope.payload) : null;
    if (m?.ok && (m.value.chunkSize !== a.chunkSize || m.value.imageSize !== a.imageSize)) {
      return this.#terminal(a, 'failed', CODES.BAD_VALUE); // the announcement does not describe this manifest
    }
    if (this.#payloadInstalled(envelope)) return this.#terminal(a, 'confirmed');
    const begun = this.#agent.beginUpdate(envelope);
    if (!begun.ok) {
      if (begun.code < 500) {
        this.#refused.set(toHex(a.manifestDigest), begun.code);
        return this.#terminal(a, 'rejected', begun.code);
      }
      return this.#terminal(a, 'failed', begun.code);
    }
    this.#status({ campaign: a.campaign, device: this.id, state: 'accepted' });

    // 2. The blocks: pull, and after a transport failure wait and pull again while the campaign stands.
    const cpb = a.blockSize / a.chunkSize;
    const total = blockCount(a);
    for (let attempt = 0, finishes = 0; ;) {
      if (!live()) return;
      this.#phase = 'downloading';
      const r = await this.#pull(run, a, cpb, total, timeoutMs, attempt === 0 && finishes === 0);
      if (finalOrNull()) return;
      if (r === null || !live()) return;
      if (r.ok) {
        this.#status({ campaign: a.campaign, device: this.id, state: 'verifying' });
        this.#phase = 'installing';
        const done = this.#agent.finishDownload();
        if (done.ok) break;
        // A progress mark lied: the marks were cleared, fetch again (chunks already right stay).
        if (done.code >= 500 || ++finishes > 1) return this.#terminal(a, 'failed', done.code);
        continue;
      }
      if (r.code >= 600 && r.code < 700) {
        this.#log(`pull: ${r.error}${r.detail ? ' (' + r.detail + ')' : ''}; pulling again`);
        this.#phase = 'waiting';
        await this.#pause(run, Math.random() * Math.min(retryMax, retryBase * 2 ** Math.min(attempt++, 16)));
        continue;
      }
      return this.#terminal(a, 'failed', r.code);
    }
    if (!live()) return;

    // 3. Install: trial boot, then confirm.
    this.#status({ campaign: a.campaign, device: this.id, state: 'installed' });
    this.#boot();
    if ((this.#phase as OtaPhase) === 'trial') return; // autoConfirm off: the application confirms
    if (this.#payloadInstalled(envelope)) this.#terminal(a, 'confirmed');
    else {
      const s = this.#agent.status();
      this.#terminal(a, 'failed', s.ok && s.state.lastError ? s.state.lastError : CODES.BOOT_IMAGE_INVALID);
    }
  }

  /** One pull; null when aborted. Reports `downloading` every 10 % (at most once a second) or 5 s. */
  async #pull(run: Run, a: Announcement, cpb: number, total: number, timeoutMs: number, first: boolean): Promise<Result | null> {
    const agent = this.#agent;
    const left = new Map<number, number>();
    for (const i of agent.missingChunks()) {
      const b = Math.floor(i / cpb);
      left.set(b, (left.get(b) ?? 0) + 1);
    }
    let done = total - left.size;
    let lastPct = -1;
    let lastAt = Date.now();
    const progress = (force: boolean) => {
      const pct = Math.floor((done / total) * 10);
      const now = Date.now();
      this.emit('progress', done, total);
      if (!force && (pct === lastPct || now - lastAt < PROGRESS_MIN_MS) && now - lastAt < PROGRESS_MS) return;
      lastPct = pct;
      lastAt = now;
      this.#status({ campaign: a.campaign, device: this.id, state: 'downloading', done, total });
    };
    if (first) progress(true); // a pull again after a transport failure reports only on progress
    else lastPct = Math.floor((done / total) * 10);
    const check = () => {
      if (run.aborted || this.#stopped) throw new PullAborted();
    };
    // The agent as the pull driver sees it: aborts at the next reply, counts rejections and progress.
    const view = {
      missingChunks: () => agent.missingChunks(),
      verifyDigestPage: (page: number, leaves: Uint8Array, proof: Uint8Array) => {
        check();
        const r = agent.verifyDigestPage(page, leaves, proof);
        if (!r.ok && r.code < 500) this.#stats.rejected++;
        return r;
      },
      writeChunk: (index: number, bytes: Uint8Array, proof: Parameters<UpdateAgent['writeChunk']>[2]) => {
        check();
        const r = agent.writeChunk(index, bytes, proof);
        if (!r.ok) {
          if (r.code < 500) this.#stats.rejected++;
          return r;
        }
        const b = Math.floor(index / cpb);
        const n = (left.get(b) ?? 1) - 1;
        if (n === 0) {
          left.delete(b);
          done++;
          progress(false);
        } else left.set(b, n);
        return r;
      },
    } as unknown as UpdateAgent;
    const po = this.#o.pull ?? {};
    const truncated = (bytes: Uint8Array, block: number) => {
      // A block shorter than its chunks: the pull driver would slice past the end; refuse it here.
      const want = Math.min(a.blockSize, a.imageSize - block * a.blockSize);
      return bytes.length === want;
    };
    const multicast = await this.#listenData(a.campaign);
    const transport = this.#transport(run, a.campaign, timeoutMs, multicast);
    const checked: AsyncTransport = {
      requestPage: (p) => transport.requestPage(p),
      requestBlock: async (block) => {
        const got = await transport.requestBlock(block);
        if (got === ABORT_BLOCK || got === null) return got;
        if (!truncated(got, block)) {
          this.#stats.rejected++;
          return null;
        }
        return got;
      },
    };
    try {
      return await pullDownload(view, checked, realTimer, {
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
      if (multicast) void this.#listenData(null);
    }
  }
}

/** Handed to waiters when a run is aborted: the agent view throws before looking at it. */
const ABORT_BLOCK = new Uint8Array(0);
const ABORT_PAGE = Object.freeze({ leaves: new Uint8Array(0), proof: new Uint8Array(0) });

function settle(p: Pending): void {
  if (p.kind === 'block') for (const w of p.blocks.values()) w(null);
  else p.resolve(null);
}

function isClient(m: MqttSettings | MqttClient): m is MqttClient {
  return typeof (m as MqttClient).publish === 'function';
}

