/**
 * `fwseal serve` (SPEC.md §12.9): answers device requests over MQTT, ingests status events into
 * SQLite, runs the wave engine and the HTTP API. Several instances may share one broker (MQTT 5
 * shared subscriptions) and one data folder (SQLite WAL); no per-device session is kept in memory.
 * This file holds the lifecycle, the subscriptions and the announcements; requests are answered in
 * request-queue.ts (multicast in multicast.ts), status events handled in status-ingest.ts.
 */
import { type MqttClient, type Packet } from 'mqtt';
import { createVerifier } from '../../device/index.js';
import { LIMITS } from '../../shared/limits.js';
import { encodeAnnouncement } from '../../shared/ota/messages.js';
import { isValidPrefix, parseRequestTopic, parseStatusTopic, topics } from '../../shared/ota/topics.js';
import { FwsealError } from '../errors.js';
import { nodeSha256 } from '../hash.js';
import { AssetCache } from './assets.js';
import { announcementOf, type CreateCampaign, createCampaign, transition } from './campaigns.js';
import { type HttpApi, startHttp } from './http.js';
import { Metrics } from './metrics.js';
import { connectMqtt, type MqttSettings } from './mqtt-options.js';
import { BlockMulticast } from './multicast.js';
import { ReplyPublisher } from './reply-publisher.js';
import { RequestQueue } from './request-queue.js';
import { StatusIngest } from './status-ingest.js';
import { type CampaignRow, Store } from './store.js';

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
const ANNOUNCE_WAIT_MS = 2000;

export class OtaServer {
  readonly metrics = new Metrics();
  private readonly assets: AssetCache;
  private readonly publisher: ReplyPublisher;
  private readonly multicast: BlockMulticast | null;
  private readonly requests: RequestQueue;
  private readonly ingest: StatusIngest;
  private closed = false;
  private http: HttpApi | null = null;

  private constructor(
    private readonly opts: OtaServerOptions,
    readonly store: Store,
    private readonly client: MqttClient,
    readonly prefix: string,
  ) {
    this.assets = new AssetCache(store);
    const log = (line: string) => this.log(line);
    this.publisher = new ReplyPublisher(client, prefix, opts.responseQos ?? RESPONSE_QOS, opts.mqtt.options.protocolVersion === 5, this.metrics);
    const coalesceMs = opts.coalesceMs ?? COALESCE_MS;
    this.multicast = coalesceMs > 0 ? new BlockMulticast(coalesceMs, this.publisher) : null;
    this.requests = new RequestQueue({
      client,
      store,
      assets: this.assets,
      prefix,
      metrics: this.metrics,
      publisher: this.publisher,
      multicast: this.multicast,
      maxQueued: opts.maxQueued ?? MAX_QUEUED_REQUESTS,
      log,
    });
    this.ingest = new StatusIngest({
      store,
      metrics: this.metrics,
      maxDevices: opts.maxDevices ?? LIMITS.maxKnownDevices,
      announce: (row) => this.announce(row),
      log,
    });
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
    server.ingest.start(opts.tickMs ?? 1000);
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
    this.client.on('close', () => {
      this.metrics.mqttConnected = false;
    });
    this.client.on('offline', () => {
      this.metrics.mqttConnected = false;
    });
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
    await this.client.subscribeAsync(Object.fromEntries(filters.map((topic) => [topic, { qos: 1 as const }])));
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
    if (req.ok) return this.requests.receive(topic, payload, packet, req.campaign, req.device);
    const st = parseStatusTopic(this.prefix, topic);
    if (st.ok) return this.ingest.receive(payload, st.device);
    this.metrics.malformedMessage('topic');
  }

  /** Advance every running campaign one step; republish what changed. */
  tick(): void {
    this.ingest.tick();
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
    if (action === 'resume') this.ingest.scheduleTick();
    return row;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.ingest.close();
    this.requests.close();
    this.multicast?.close();
    this.publisher.close();
    await this.http?.close();
    // Let in-flight publishes finish, but never hang on a broker that is gone.
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => this.client.end(true, {}, () => resolve()), 3000);
      this.client.end(false, {}, () => {
        clearTimeout(force);
        resolve();
      });
    });
    this.metrics.mqttConnected = false;
    this.assets.close();
    this.store.close();
  }
}
