/**
 * `fwseal serve` (SPEC.md §12.8): answers device requests over MQTT, ingests status events into
 * SQLite, runs the wave engine and the HTTP API. Several instances may share one broker (MQTT 5
 * shared subscriptions) and one data folder (SQLite WAL); no per-device session is kept in memory.
 */
import { type MqttClient, type IClientPublishOptions, type Packet } from 'mqtt';
import { CODES } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import {
  encodeAnnouncement, isValidPrefix, parseRequestTopic, parseStatusEvent, parseStatusTopic, topics,
} from '../../shared/ota.js';
import { createVerifier } from '../../device/index.js';
import { FwsealError } from '../errors.js';
import { nodeSha256 } from '../hash.js';
import { type MqttSettings, connectMqtt } from './mqtt-options.js';
import { AssetCache } from './assets.js';
import { type CampaignRow, Store } from './store.js';
import { type Answer, type Reply, answer, blockResponseBytes, errorReply, readableIds } from './requests.js';
import { advance, announcementOf, createCampaign, ingestStatus, transition, type CreateCampaign } from './campaigns.js';
import { Metrics } from './metrics.js';
import { type HttpApi, startHttp } from './http.js';

export type OtaServerOptions = {
  readonly mqtt: MqttSettings;
  readonly dataDir: string;
  readonly prefix?: string;
  readonly trust: Uint8Array;
  readonly revocations?: Uint8Array;
  /** HTTP API listener; port 0 picks a free port (see address()). None when absent. */
  readonly http?: { readonly host: string; readonly port: number };
  /** Bearer token every /api request must carry. */
  readonly token?: string;
  /** Wave engine period (default 1000 ms). */
  readonly tickMs?: number;
  readonly log?: (line: string) => void;
  /**
   * How long a block asked for with the multicast flag waits for other devices asking for the same
   * block (default COALESCE_MS; 0 = never multicast). Two or more askers: one response on the
   * campaign's data topic; one: a normal reply.
   */
  readonly coalesceMs?: number;
  /** QoS of responses and error replies (default RESPONSE_QOS). */
  readonly responseQos?: 0 | 1;
  /** Requests waiting to be answered before new ones get SERVER_BUSY (default MAX_QUEUED_REQUESTS). */
  readonly maxQueued?: number;
  /** Devices known from `online` events before a new one is ignored (default LIMITS.maxKnownDevices). */
  readonly maxDevices?: number;
};

/** QoS 0 responses: measured ~2x the block throughput of QoS 1 (see the report); a lost response is a device retry. */
export const RESPONSE_QOS: 0 | 1 = 0;
export const MAX_QUEUED_REQUESTS = LIMITS.maxQueuedRequests;
export const COALESCE_MS = 20;
/** After a block went out on a data topic, askers within this many coalesce windows get plain replies. */
const MULTICAST_QUIET_FACTOR = 50;
/** A block answer gathers askers for at most this many coalesce windows (and at most LIMITS.maxMulticastHoldMs). */
const MULTICAST_HOLD_FACTOR = 25;

type Asker = { reply: Reply; packet: Packet; device: string; received: bigint };
type Gathering = { campaign: string; block: number; data: Uint8Array; askers: Asker[]; first: number; last: number };
/** Stop taking requests from the queue while this much is buffered on the broker socket. */
const SOCKET_HIGH_WATER = LIMITS.maxBrokerBacklogBytes;
const ANNOUNCE_WAIT_MS = 2000;
/** Wave steps triggered by status events are at least this far apart (the periodic tick runs regardless). */
const MIN_TICK_GAP_MS = 100;

type Queued = { topic: string; payload: Buffer; packet: Packet; campaign: string; device: string; received: bigint };

export class OtaServer {
  readonly metrics = new Metrics();
  private readonly assets: AssetCache;
  private readonly queue: Queued[] = [];
  /** Block answers waiting COALESCE_MS for more devices that want the same block. */
  private readonly gathering = new Map<string, Gathering>();
  /** When each block last went out on a data topic: later askers of it get plain replies for a while. */
  private readonly multicastAt = new Map<string, number>();
  private draining = false;
  private tickTimer: NodeJS.Timeout | null = null;
  private tickPending = false;
  private lastTick = 0;
  private closed = false;
  private http: HttpApi | null = null;

  private constructor(
    private readonly opts: OtaServerOptions,
    readonly store: Store,
    private readonly client: MqttClient,
    readonly prefix: string,
  ) {
    this.assets = new AssetCache(store);
  }

  static async start(opts: OtaServerOptions): Promise<OtaServer> {
    const prefix = opts.prefix ?? 'fwseal';
    if (!isValidPrefix(prefix)) throw new FwsealError('USAGE', '--prefix must be ids of [A-Za-z0-9_-] joined by "/"');
    const trust = createVerifier({ sha256: nodeSha256 }).loadTrust(opts.trust);
    if (!trust.ok) throw FwsealError.from(trust, 'trust bundle');
    if (opts.revocations) {
      const rl = createVerifier({ sha256: nodeSha256 }).verifyRevocations(opts.revocations, trust.trust);
      if (!rl.ok) throw FwsealError.from(rl, 'revocation list');
    }
    const store = new Store(opts.dataDir);
    let client: MqttClient;
    try {
      client = await connectMqtt({ url: opts.mqtt.url, options: { ...opts.mqtt.options, queueQoSZero: false } });
    } catch (e) {
      store.close();
      throw e;
    }
    const server = new OtaServer(opts, store, client, prefix);
    try {
      server.attach();
      await server.onConnect();
      if (opts.http) server.http = await startHttp(server, opts.http, opts.token);
    } catch (e) {
      await server.close();
      throw e;
    }
    const tickMs = opts.tickMs ?? 1000;
    server.tickTimer = setInterval(() => server.tick(), tickMs);
    server.tickTimer.unref();
    return server;
  }

  /** The HTTP API's bound address, or null without one. */
  address(): { host: string; port: number; url: string } | null {
    return this.http ? this.http.address() : null;
  }

  private log(line: string): void {
    this.opts.log?.(line);
  }

  private get v5(): boolean {
    return this.opts.mqtt.options.protocolVersion === 5;
  }

  private attach(): void {
    this.metrics.mqttConnected = this.client.connected;
    this.client.on('connect', () => {
      if (this.closed) return;
      this.onConnect().catch((e) => this.log(`resubscribe failed: ${(e as Error).message}`));
    });
    this.client.on('close', () => { this.metrics.mqttConnected = false; });
    this.client.on('offline', () => { this.metrics.mqttConnected = false; });
    this.client.on('message', (topic, payload, packet) => {
      try {
        this.onMessage(topic, payload, packet);
      } catch (e) {
        // Never crash on a message: a bug here is logged and the message dropped.
        this.log(`message on ${topic} dropped: ${(e as Error).message}`);
      }
    });
  }

  /** (Re)connected: subscribe, then republish every live announcement (a broker restarted without persistence has none). */
  private async onConnect(): Promise<void> {
    this.metrics.mqttConnected = true;
    const filters = [topics.requestFilter(this.prefix), topics.statusFilter(this.prefix)].map((f) => (this.v5 ? topics.shared(f) : f));
    await this.client.subscribeAsync(filters.map((topic) => ({ topic, qos: 1 as const })).reduce((o, s) => ({ ...o, [s.topic]: { qos: s.qos } }), {}));
    const newest = new Map<string, CampaignRow>();
    for (const row of this.store.campaigns()) if (row.state !== 'aborted') newest.set(row.grp, row); // ordered by creation
    await Promise.all([...newest.values()].map((row) => this.announce(row)));
    this.log(`subscribed to ${filters.join(', ')}; ${newest.size} announcement(s) republished`);
  }

  /**
   * Publish a campaign's retained announcement (an aborted campaign clears its topic). Resolves once
   * the broker has it (PUBACK), or after ANNOUNCE_WAIT_MS while the broker is away (mqtt.js resends it).
   */
  announce(row: CampaignRow): Promise<void> {
    if (this.closed) return Promise.resolve();
    const a = announcementOf(row);
    const payload = a ? Buffer.from(encodeAnnouncement(a)) : Buffer.alloc(0);
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ANNOUNCE_WAIT_MS);
      this.client.publish(topics.announce(this.prefix, row.grp), payload, { qos: 1, retain: true }, (e) => {
        clearTimeout(timer);
        if (e) this.log(`announcement of ${row.id} not published: ${e.message}`);
        resolve();
      });
    });
  }

  private onMessage(topic: string, payload: Buffer, packet: Packet): void {
    const req = parseRequestTopic(this.prefix, topic);
    if (req.ok) return this.onRequest(topic, payload, packet, req.campaign, req.device);
    const st = parseStatusTopic(this.prefix, topic);
    if (st.ok) return this.onStatus(payload, st.device);
    this.metrics.malformedMessage('topic');
  }

  private onRequest(topic: string, payload: Buffer, packet: Packet, campaign: string, device: string): void {
    // §12.4, §12.5: a Response Topic other than the device's own reply topic is refused, before any work.
    const wanted = (packet as { properties?: { responseTopic?: string } }).properties?.responseTopic;
    if (wanted !== undefined && wanted !== topics.reply(this.prefix, device)) {
      this.metrics.refusedReplyTopic('response_topic');
      this.send([errorReply(CODES.REPLY_TOPIC_REFUSED, readableIds(payload))], packet, device, null);
      return;
    }
    if (payload.length > LIMITS.maxOtaMessageBytes) {
      this.metrics.malformedMessage('oversize');
      this.send([errorReply(CODES.BAD_REQUEST, {})], packet, device, null);
      return;
    }
    if (this.queue.length >= (this.opts.maxQueued ?? MAX_QUEUED_REQUESTS)) {
      this.send([errorReply(CODES.SERVER_BUSY, readableIds(payload))], packet, device, null);
      return;
    }
    this.queue.push({ topic, payload, packet, campaign, device, received: process.hrtime.bigint() });
    this.drain();
  }

  /** Answer queued requests while the broker socket keeps up; the queue bound turns overload into SERVER_BUSY. */
  private drain(): void {
    if (this.draining || this.closed) return;
    this.draining = true;
    const step = () => {
      let budget = 64; // requests per turn of the event loop, so status events and HTTP keep flowing
      while (this.queue.length > 0 && budget-- > 0) {
        const stream = (this.client as unknown as { stream?: { writableLength?: number; once(e: string, f: () => void): void } }).stream;
        if (stream && (stream.writableLength ?? 0) > SOCKET_HIGH_WATER) {
          let resumed = false;
          const resume = () => { if (!resumed) { resumed = true; step(); } };
          stream.once('drain', resume);
          setTimeout(resume, 50).unref();
          return;
        }
        const q = this.queue.shift()!;
        let a: Answer;
        try {
          a = answer(this.store, this.assets, q.campaign, q.device, topics.reply(this.prefix, q.device), q.payload);
          // Served a manifest: the device's status events for the campaign may now count (§12.9).
          if (a.kind === 'manifest') this.store.recordFetch(q.campaign, q.device);
        } catch (e) {
          this.log(`request on ${q.topic} failed: ${(e as Error).message}`);
          a = { replies: [errorReply(CODES.SERVER_BUSY, readableIds(q.payload))], malformed: false, kind: 'error' };
        }
        if (a.malformed) this.metrics.malformedMessage('request');
        if (a.refused) this.metrics.refusedReplyTopic('payload');
        if (a.multicast && (this.opts.coalesceMs ?? COALESCE_MS) > 0) this.gather(a, q);
        else this.send(a.replies, q.packet, q.device, a.kind === 'block' ? q.received : null);
      }
      if (this.queue.length > 0 && !this.closed) setImmediate(step);
      else this.draining = false;
    };
    step();
  }

  /**
   * Multicast (SPEC.md §12.11): hold each block answer until coalesceMs pass without another device
   * asking for it (at most MULTICAST_HOLD_FACTOR windows); two or more askers: publish it once on the
   * campaign's data topic (the broker fans it out), else reply as usual. A device that already has
   * the block drops the copy as not outstanding.
   */
  private gather(a: Answer, q: Queued): void {
    const campaign = a.multicast!.campaign;
    const window = this.opts.coalesceMs ?? COALESCE_MS;
    const now = Date.now();
    for (const reply of a.replies) {
      const key = `${campaign}/${reply.block}`;
      // Stragglers of a block just multicast: a copy to each of them, not another copy to everybody.
      if (now - (this.multicastAt.get(key) ?? -Infinity) < MULTICAST_QUIET_FACTOR * window) {
        this.send([reply], q.packet, q.device, q.received);
        continue;
      }
      let g = this.gathering.get(key);
      if (!g) {
        g = { campaign, block: reply.block!, data: reply.data!, askers: [], first: now, last: now };
        this.gathering.set(key, g);
        const started = g;
        // Released once no new asker came for one window (a herd keeps it open), at most MULTICAST_HOLD_FACTOR windows.
        const hold = Math.min(MULTICAST_HOLD_FACTOR * window, LIMITS.maxMulticastHoldMs);
        const check = () => {
          const t = Date.now();
          const until = Math.min(started.last + window, started.first + hold);
          if (t >= until) this.release(key, started);
          else setTimeout(check, until - t).unref();
        };
        setTimeout(check, window).unref();
      }
      g.last = now;
      g.askers.push({ reply, packet: q.packet, device: q.device, received: q.received });
    }
  }

  private release(key: string, g: Gathering): void {
    if (this.gathering.get(key) === g) this.gathering.delete(key);
    if (this.closed) return;
    if (g.askers.length === 1) {
      const one = g.askers[0]!;
      this.send([one.reply], one.packet, one.device, one.received);
      return;
    }
    if (this.multicastAt.size >= LIMITS.blockCacheEntries * 16) this.multicastAt.clear();
    this.multicastAt.set(key, Date.now());
    // The data topic is built from the stored campaign id only: no request can steer it (§12.11).
    const payload = blockResponseBytes({ campaign: g.campaign, requestId: 0, block: g.block, data: g.data });
    this.client.publish(topics.data(this.prefix, g.campaign), Buffer.from(payload.buffer, payload.byteOffset, payload.length), { qos: this.opts.responseQos ?? RESPONSE_QOS }, (e) => {
      if (e) return;
      this.metrics.blocksServed++;
      this.metrics.blockBytesServed += g.data.length;
      this.metrics.multicasts++;
      const now = process.hrtime.bigint();
      for (const x of g.askers) this.metrics.observeBlockLatency(Number(now - x.received) / 1e9);
    });
  }

  /** Replies go only to the reply topic of the device the request topic names (§12.4), never elsewhere. */
  private send(replies: Answer['replies'], packet: Packet, device: string, received: bigint | null): void {
    if (this.closed) return;
    const topic = topics.reply(this.prefix, device);
    const correlationData = (packet as { properties?: { correlationData?: Buffer } }).properties?.correlationData;
    const options: IClientPublishOptions = { qos: this.opts.responseQos ?? RESPONSE_QOS, ...(correlationData && this.v5 ? { properties: { correlationData } } : {}) };
    let left = replies.length;
    for (const r of replies) {
      if (r.code !== undefined) this.metrics.errorReply(r.code);
      this.client.publish(topic, Buffer.from(r.payload.buffer, r.payload.byteOffset, r.payload.length), options, (e) => {
        if (e) return;
        if (r.block !== undefined) {
          this.metrics.blocksServed++;
          this.metrics.blockBytesServed += r.bytes ?? 0;
        }
        if (--left === 0 && received !== null) this.metrics.observeBlockLatency(Number(process.hrtime.bigint() - received) / 1e9);
      });
    }
  }

  /** Status events: only those that count (§12.9, `ingestStatus`) reach the waves; the rest are counted by reason. */
  private onStatus(payload: Buffer, device: string): void {
    if (payload.length > LIMITS.maxOtaMessageBytes) return this.metrics.malformedMessage('oversize');
    const p = parseStatusEvent(payload);
    if (!p.ok || p.value.device !== device) return this.metrics.malformedMessage('status');
    const r = ingestStatus(this.store, p.value, this.opts.maxDevices ?? LIMITS.maxKnownDevices);
    if (!r.counted) return this.metrics.ignoredStatus(r.reason);
    if (p.value.state === 'online' || r.terminal) this.scheduleTick();
  }

  /**
   * A wave step soon after a device reached an end state, at most one per MIN_TICK_GAP_MS: a step
   * reads every status of the campaign, so one per confirmation would make a campaign O(devices^2).
   */
  private scheduleTick(): void {
    if (this.tickPending || this.closed) return;
    this.tickPending = true;
    const run = () => {
      this.tickPending = false;
      this.tick();
    };
    const wait = this.lastTick + MIN_TICK_GAP_MS - Date.now();
    if (wait <= 0) setImmediate(run);
    else setTimeout(run, wait).unref();
  }

  /** Advance every running campaign one step; republish what changed. */
  tick(): void {
    if (this.closed) return;
    this.lastTick = Date.now();
    try {
      for (const row of this.store.campaigns('running')) {
        const changed = advance(this.store, row.id);
        if (changed) {
          this.log(`campaign ${changed.id}: ${changed.state}, wave ${changed.wave + 1}`);
          void this.announce(changed);
        }
      }
    } catch (e) {
      this.log(`wave engine: ${(e as Error).message}`);
    }
  }

  // ---- operations used by the HTTP API ----

  async createCampaign(req: CreateCampaign): Promise<CampaignRow> {
    const row = createCampaign(this.store, { trust: this.opts.trust, ...(this.opts.revocations ? { revocations: this.opts.revocations } : {}) }, req);
    await this.announce(row);
    this.log(`campaign ${row.id} created for group ${row.grp}`);
    return row;
  }

  async transition(id: string, action: 'pause' | 'resume' | 'abort'): Promise<CampaignRow> {
    const row = transition(this.store, id, action);
    if (action === 'abort') this.assets.drop(id);
    await this.announce(row);
    if (action === 'resume') this.scheduleTick();
    return row;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.queue.length = 0;
    this.gathering.clear();
    this.multicastAt.clear();
    await this.http?.close();
    // Let in-flight publishes finish, but never hang on a broker that is gone.
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => this.client.end(true, {}, () => resolve()), 3000);
      this.client.end(false, {}, () => { clearTimeout(force); resolve(); });
    });
    this.metrics.mqttConnected = false;
    this.assets.close();
    this.store.close();
  }
}
