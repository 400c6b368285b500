/**
 * `fwseal serve` (SPEC.md §12.9): answers device requests over MQTT, ingests status events into
 * the store (store.ts; SQLite today), runs the wave engine and the HTTP API. Several instances may
 * share one broker (MQTT 5 shared subscriptions) and one store; no per-device session is kept in memory.
 * This file holds the lifecycle, the subscriptions and the announcements; requests are answered in
 * request-queue.ts (multicast in multicast.ts), status events handled in status-ingest.ts, the root
 * of trust kept in root-of-trust.ts and carried over MQTT by root-channel.ts (SPEC.md §12.13).
 */
import { type MqttClient, type Packet } from 'mqtt';
import { LIMITS } from '../../shared/limits.js';
import { encodeAnnouncement } from '../../shared/ota/messages.js';
import { isValidPrefix, parseRequestTopic, parseRootRequestTopic, parseStatusTopic, topics } from '../../shared/ota/topics.js';
import { FwsealError } from '../errors.js';
import { AssetCache } from './assets.js';
import { ServerAudit, serverActor } from './audit-routes.js';
import { ApiError, announcementOf, type CreateCampaign, createCampaign, transition } from './campaigns.js';
import { type HttpApi, startHttp } from './http.js';
import { Metrics } from './metrics.js';
import { connectMqtt, type MqttSettings } from './mqtt-options.js';
import { BlockMulticast } from './multicast.js';
import { publishRetained, ReplyPublisher } from './reply-publisher.js';
import { RequestQueue } from './request-queue.js';
import { RootChannel } from './root-channel.js';
import { type Published, RootOfTrust } from './root-of-trust.js';
import { groupHead, haltByRoot, recheckCampaigns } from './root-recheck.js';
import { StatusIngest } from './status-ingest.js';
import { type CampaignRow, type OtaStore, openStore } from './store.js';

export type OtaServerOptions = {
  readonly mqtt: MqttSettings;
  readonly dataDir: string;
  readonly prefix?: string;
  /**
   * The fleet's trust bundle and revocation list (SPEC.md §12.13). Stored on the first start; later
   * starts need none, and take one only as the stored newest or its successor (RootOfTrust.startUp).
   */
  readonly trust?: Uint8Array;
  readonly revocations?: Uint8Array;
  /** HTTP API listener; port 0 picks a free port (see address()). None when absent. */
  readonly http?: { readonly host: string; readonly port: number };
  /** Bearer token every /api request must carry. */
  readonly token?: string;
  /** The token's name, the actor of API calls in the audit log (SPEC.md §15.6); 'api-token' when unnamed. */
  readonly tokenName?: string;
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
/** A root of trust stored between a resume's manifest check and the resume: checked again, at most this many times in all. */
const RESUME_ATTEMPTS = 3;

export class OtaServer {
  readonly metrics = new Metrics();
  private readonly assets: AssetCache;
  private readonly publisher: ReplyPublisher;
  private readonly multicast: BlockMulticast | null;
  private readonly requests: RequestQueue;
  private readonly ingest: StatusIngest;
  private readonly rootChannel: RootChannel;
  private closed = false;
  private http: HttpApi | null = null;
  /** Each group's announcement being published: the next one of the group waits for it. */
  private readonly announcing = new Map<string, Promise<void>>();

  private constructor(
    private readonly opts: OtaServerOptions,
    readonly store: OtaStore,
    readonly root: RootOfTrust,
    private readonly client: MqttClient,
    readonly prefix: string,
    /** DATA/audit.log: every state-changing API call (SPEC.md §15.6). */
    readonly audit: ServerAudit,
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
    this.rootChannel = new RootChannel({ client, prefix, root: this.root, publisher: this.publisher, metrics: this.metrics, log });
  }

  static async start(opts: OtaServerOptions): Promise<OtaServer> {
    const prefix = opts.prefix ?? 'fwseal';
    if (!isValidPrefix(prefix)) throw new FwsealError('USAGE', '--prefix must be ids of [A-Za-z0-9_-] joined by "/"');
    const store = await openStore({ kind: 'sqlite', dataDir: opts.dataDir });
    const root = new RootOfTrust(store.root);
    let client: MqttClient;
    let audit: ServerAudit;
    try {
      audit = new ServerAudit(opts.dataDir, serverActor(opts.token, opts.tokenName), (line) => opts.log?.(line));
      // Before anything is announced: an older or foreign root of trust is refused with its code (§12.13).
      await root.startUp(opts.trust, opts.revocations);
      // A list given at this start may revoke what campaigns were signed with: halted before they are announced again.
      for (const h of await recheckCampaigns(store, root)) opts.log?.(`campaign ${h.row.id} halted: its manifest fails ${h.error} under the root of trust`);
      client = await connectMqtt({ url: opts.mqtt.url, options: { ...opts.mqtt.options, queueQoSZero: false } });
    } catch (e) {
      await store.close();
      throw e;
    }
    const server = new OtaServer(opts, store, root, client, prefix, audit);
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
      // Never crash on a message: a bug here is logged and the message dropped.
      const dropped = (e: unknown) => this.log(`message on ${topic} dropped: ${(e as Error).message}`);
      try {
        this.onMessage(topic, payload, packet)?.catch(dropped);
      } catch (e) {
        dropped(e);
      }
    });
  }

  /** (Re)connected: subscribe, then republish every live announcement (a broker restarted without persistence has none). */
  private async onConnect(): Promise<void> {
    this.metrics.mqttConnected = true;
    const filters = [topics.requestFilter(this.prefix), topics.statusFilter(this.prefix), topics.rootRequestFilter(this.prefix)].map((f) =>
      this.v5 ? topics.shared(f) : f,
    );
    await this.client.subscribeAsync(Object.fromEntries(filters.map((topic) => [topic, { qos: 1 as const }])));
    const newest = new Map<string, CampaignRow>();
    for (const row of await this.store.campaigns()) if (row.state !== 'aborted') newest.set(row.grp, row); // ordered by creation
    await Promise.all([this.rootChannel.announce(), ...[...newest.values()].map((row) => this.announce(row))]);
    this.log(`subscribed to ${filters.join(', ')}; ${newest.size} announcement(s) republished`);
  }

  /**
   * Publish a campaign's retained announcement (an aborted campaign clears its topic). Resolves once
   * the broker has it (PUBACK), or after ANNOUNCE_WAIT_MS while the broker is away (mqtt.js resends it).
   * A group's announcements go out one after the other, each from the campaign's row as stored when
   * it goes: a change that reached the store first can never be announced last, whatever the awaits.
   */
  announce(row: CampaignRow): Promise<void> {
    if (this.closed) return Promise.resolve();
    const group = row.grp;
    const publish = async () => {
      if (this.closed) return;
      const now = (await this.store.campaign(row.id)) ?? row;
      const a = announcementOf(now);
      const payload = a ? encodeAnnouncement(a) : new Uint8Array(0);
      await publishRetained(this.client, topics.announce(this.prefix, group), payload, (line) => this.log(line), `announcement of ${row.id}`);
    };
    const next = (this.announcing.get(group) ?? Promise.resolve())
      .then(publish)
      .catch((e) => this.log(`announcement of ${row.id} not published: ${(e as Error).message}`));
    this.announcing.set(group, next);
    void next.then(() => {
      if (this.announcing.get(group) === next) this.announcing.delete(group);
    });
    return next;
  }

  private onMessage(topic: string, payload: Buffer, packet: Packet): Promise<void> | undefined {
    const req = parseRequestTopic(this.prefix, topic);
    if (req.ok) return void this.requests.receive(topic, payload, packet, req.campaign, req.device);
    const st = parseStatusTopic(this.prefix, topic);
    if (st.ok) return this.ingest.receive(payload, st.device);
    const root = parseRootRequestTopic(this.prefix, topic);
    if (root.ok) return this.rootChannel.receive(payload, packet, root.device);
    this.metrics.malformedMessage('topic');
  }

  /** Advance every running campaign one step; republish what changed. Settles when the step is done. */
  tick(): Promise<void> {
    return this.ingest.tick();
  }

  // ---- operations used by the HTTP API ----

  async createCampaign(req: CreateCampaign): Promise<CampaignRow> {
    const row = await createCampaign(this.store, () => this.root.forCampaigns(), req);
    await this.announce(row);
    this.log(`campaign ${row.id} created for group ${row.grp}`);
    return row;
  }

  async transition(id: string, action: 'pause' | 'resume' | 'abort'): Promise<CampaignRow> {
    const row = action === 'resume' ? await this.resume(id) : (await transition(this.store, id, action))!;
    if (action === 'abort') this.assets.drop(id);
    await this.announce(row);
    if (action === 'resume') this.ingest.scheduleTick();
    return row;
  }

  /**
   * Resumed only while the manifest verifies under the root of trust as it is now (§12.13), and only
   * if no other root was stored between that check and the resume (then it is checked again).
   */
  private async resume(id: string): Promise<CampaignRow> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.store.campaign(id);
      if (!current) return (await transition(this.store, id, 'resume'))!; // 404
      const { verdict, versions } = await this.root.checkManifest(new Uint8Array(current.manifest));
      if (!verdict.ok) {
        const halted = await haltByRoot(this.store, id, verdict.code);
        if (halted) await this.announceGroup(halted.grp);
        throw new ApiError(
          422,
          verdict.error as ConstructorParameters<typeof ApiError>[1],
          `the manifest no longer verifies: ${verdict.detail ?? verdict.error}`,
        );
      }
      const row = await transition(this.store, id, 'resume', versions);
      if (row) return row;
      if (attempt >= RESUME_ATTEMPTS) throw new ApiError(409, 'CONFLICT', 'the root of trust kept changing during the resume; try again');
    }
  }

  /**
   * `POST /api/root` (SPEC.md §12.13): store a trust bundle or revocation list (the verifier's code
   * when refused), then republish the root announcement and halt every campaign whose manifest no
   * longer verifies, withdrawing its announcement.
   */
  async publishRoot(envelope: Uint8Array): Promise<Published & { halted: { id: string; code: number }[] }> {
    const published = await this.root.publish(envelope);
    if (!published.changed) return { ...published, halted: [] };
    this.log(`root of trust: ${published.kind} version ${published.version} stored`);
    const halted = await recheckCampaigns(this.store, this.root);
    for (const h of halted) {
      this.assets.drop(h.row.id);
      this.log(`campaign ${h.row.id} halted: its manifest fails ${h.error} under the new root of trust`);
    }
    await Promise.all([this.rootChannel.announce(), ...[...new Set(halted.map((h) => h.row.grp))].map((g) => this.announceGroup(g))]);
    return { ...published, halted: halted.map((h) => ({ id: h.row.id, code: h.code })) };
  }

  /** Republish a group's announcement from its newest campaign not aborted (an older campaign never overwrites a newer one's). */
  private async announceGroup(group: string): Promise<void> {
    const head = await groupHead(this.store, group);
    if (head) await this.announce(head);
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
    // What was under way when the close began finishes (or fails) before the store goes.
    await Promise.all([this.ingest.settled(), this.requests.settled(), ...this.announcing.values()]);
    this.assets.close();
    await this.store.close();
  }
}
