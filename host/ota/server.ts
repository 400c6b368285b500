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
import { ServedLog, type ServedLogOptions } from '../tlog/served.js';
import { AssetCache } from './assets.js';
import { ServerAudit } from './audit-routes.js';
import { ApiError, announcementOf, type CreateCampaign, createCampaign, transition } from './campaigns.js';
import { type HttpApi, startHttp } from './http.js';
import { type TlsFiles } from './listen.js';
import { asServerLog, campaignStates, errorFields, type LogTarget, logRootHalts, logTransition, type ServerLog } from './log.js';
import { serveLogProofs } from './log-proof-requests.js';
import { Metrics } from './metrics.js';
import { connectMqtt, type MqttSettings } from './mqtt-options.js';
import { BlockMulticast } from './multicast.js';
import { publishRetained, ReplyPublisher } from './reply-publisher.js';
import { RequestQueue } from './request-queue.js';
import { RootChannel } from './root-channel.js';
import { type Published, RootOfTrust } from './root-of-trust.js';
import { groupHead, haltByRoot, recheckCampaigns } from './root-recheck.js';
import { StatusIngest } from './status-ingest.js';
import { type CampaignRow, type OtaStore, openStore, type StoreOptions } from './store.js';
import { ApiAccess } from './tokens.js';
import { approveNextWave, excludeFromCampaign } from './waves.js';

export type OtaServerOptions = {
  readonly mqtt: MqttSettings;
  readonly dataDir: string;
  /** Where the state is: SQLite in dataDir by default; PostgreSQL (`fwseal serve --db`) keeps dataDir as the asset cache (SPEC.md §12.9). */
  readonly store?: StoreOptions;
  readonly prefix?: string;
  /**
   * The fleet's trust bundle and revocation list (SPEC.md §12.13). Stored on the first start; later
   * starts need none, and take one only as the stored newest or its successor (RootOfTrust.startUp).
   */
  readonly trust?: Uint8Array;
  readonly revocations?: Uint8Array;
  /** HTTP API listener; port 0 picks a free port (see address()). None when absent. */
  readonly http?: { readonly host: string; readonly port: number };
  /** Who may call the HTTP API (tokens.ts; `fwseal serve` builds it with listen.ts). Default: `token`, else open. */
  readonly access?: ApiAccess;
  /** Serve the HTTP API over HTTPS with this certificate and key (listen.ts readTlsFiles). */
  readonly tls?: TlsFiles;
  /** Without `access`: one bearer token every /api request must carry, with every right (FWSEAL_SERVER_TOKEN). */
  readonly token?: string;
  /** That token's name, the actor of its calls in the audit log (SPEC.md §15.6); 'api-token' when unnamed. */
  readonly tokenName?: string;
  /** Wave engine period (default 1000 ms). */
  readonly tickMs?: number;
  /** Structured events (log.ts, SPEC.md §12.9 "Logs"); a line function gets them as text lines. Silent when absent. */
  readonly log?: LogTarget;
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
  /** Status events not yet in the store before the server stops reading from the broker (default LIMITS.maxStatusBacklog). */
  readonly maxStatusBacklog?: number;
  /** Host the transparency log in this folder (`--log`, SPEC.md §16): campaign manifests are appended; with a key, checkpoints signed. */
  readonly tlog?: Pick<ServedLogOptions, 'dir' | 'key' | 'checkpointIntervalMs'>;
};

/** QoS 0 responses: measured ~2x the block throughput of QoS 1 (see the report); a lost response is a device retry. */
export const RESPONSE_QOS: 0 | 1 = 0;
export const MAX_QUEUED_REQUESTS = LIMITS.maxQueuedRequests;
export const COALESCE_MS = 20;
/** A root of trust stored between a resume's manifest check and the resume: checked again, at most this many times in all. */
const RESUME_ATTEMPTS = 3;

export class OtaServer {
  private readonly assets: AssetCache;
  private readonly publisher: ReplyPublisher;
  private readonly multicast: BlockMulticast | null;
  private readonly requests: RequestQueue;
  private readonly ingest: StatusIngest;
  private readonly rootChannel: RootChannel;
  private closed = false;
  private http: HttpApi | null = null;
  tlog: ServedLog | null = null; // --log (SPEC.md §16)
  /** Each group's announcement being published: the next one of the group waits for it. */
  private readonly announcing = new Map<string, Promise<void>>();
  /** The server's events (SPEC.md §12.9 "Logs"); each part logs through a child named after it. */
  private readonly log: ServerLog;
  private readonly mqttLog: ServerLog;
  private readonly campaignLog: ServerLog;

  private constructor(
    private readonly opts: OtaServerOptions,
    readonly store: OtaStore,
    readonly root: RootOfTrust,
    private readonly client: MqttClient,
    readonly prefix: string,
    /** DATA/audit.log: every state-changing API call (SPEC.md §15.6). */
    readonly audit: ServerAudit,
    /** GET /metrics (metrics.ts): made before the root of trust, so the start-up re-check is counted too. */
    readonly metrics: Metrics,
  ) {
    this.assets = new AssetCache(store);
    this.log = asServerLog(opts.log);
    this.mqttLog = this.log.child('mqtt');
    this.campaignLog = this.log.child('campaigns');
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
      log: this.log.child('requests'),
    });
    this.ingest = new StatusIngest({
      store,
      metrics: this.metrics,
      maxDevices: opts.maxDevices ?? LIMITS.maxKnownDevices,
      maxBacklog: opts.maxStatusBacklog,
      announce: (row) => this.announce(row),
      log: this.campaignLog,
    });
    this.metrics.statusBacklog = () => this.ingest.pending;
    const log = this.log.child('root');
    this.rootChannel = new RootChannel({ client, prefix, root: this.root, publisher: this.publisher, metrics: this.metrics, log });
  }

  static async start(opts: OtaServerOptions): Promise<OtaServer> {
    const prefix = opts.prefix ?? 'fwseal';
    if (!isValidPrefix(prefix)) throw new FwsealError('USAGE', '--prefix must be ids of [A-Za-z0-9_-] joined by "/"');
    const store = await openStore(opts.store ?? { kind: 'sqlite', dataDir: opts.dataDir });
    const metrics = new Metrics();
    const root = new RootOfTrust(store.root, (seconds) => metrics.serverVerified(seconds));
    let client: MqttClient;
    let audit: ServerAudit;
    let tlog: ServedLog | null = null;
    const log = asServerLog(opts.log);
    try {
      audit = new ServerAudit(opts.dataDir, (line) => log.child('audit').error('audit.unrecorded', {}, line));
      const onError = (e: unknown) => log.child('tlog').error('tlog.checkpoint-failed', errorFields(e), 'transparency log checkpoint not signed');
      if (opts.tlog) tlog = new ServedLog({ ...opts.tlog, observer: metrics.tlog, onError });
      // Before anything is announced: an older or foreign root of trust is refused with its code (§12.13).
      await root.startUp(opts.trust, opts.revocations);
      // A list given at this start may revoke what campaigns were signed with: halted before they are announced again.
      const before = await campaignStates(store);
      logRootHalts(log.child('campaigns'), await recheckCampaigns(store, root, metrics), before, 'startup');
      client = await connectMqtt({ url: opts.mqtt.url, options: { ...opts.mqtt.options, queueQoSZero: false } });
    } catch (e) {
      tlog?.close();
      await store.close();
      throw e;
    }
    const server = new OtaServer(opts, store, root, client, prefix, audit, metrics);
    server.tlog = tlog;
    serveLogProofs(store, tlog); // issue 19 item 2: log proofs answered from the served log (SPEC.md §16.7)
    try {
      // The HTTP port first: a port already taken fails the start before anything is subscribed or republished.
      const access = opts.access ?? (opts.token !== undefined ? ApiAccess.sharedToken(opts.token, opts.tokenName) : ApiAccess.open());
      if (opts.http) server.http = await startHttp(server, opts.http, access, opts.tls);
      server.attach();
      await server.onConnect();
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

  private get v5(): boolean {
    return this.opts.mqtt.options.protocolVersion === 5;
  }

  private attach(): void {
    this.metrics.mqttConnected = this.client.connected;
    this.client.on('connect', () => {
      if (this.closed) return;
      this.onConnect().catch((e) => this.mqttLog.error('mqtt.subscribe-failed', errorFields(e), 'subscribing again after a reconnect failed'));
    });
    const lost = () => {
      // Once per lost connection (mqtt.js reports every failed reconnect too).
      if (this.metrics.mqttConnected && !this.closed) this.mqttLog.warn('mqtt.disconnected', { broker: this.opts.mqtt.url }, 'lost the broker; reconnecting');
      this.metrics.mqttConnected = false;
    };
    this.client.on('close', lost);
    this.client.on('offline', lost);
    // Backpressure (SPEC.md §12.9 "Status ingest", "Requests"): read on once the status backlog and the request queue have room.
    this.client.handleMessage = (_packet, next) => this.ingest.admit(() => this.requests.admit(() => next()));
    this.client.on('message', (topic, payload, packet) => {
      // Never crash on a message: a bug here is logged and the message dropped.
      const dropped = (e: unknown) => this.mqttLog.error('mqtt.message-dropped', { topic, ...errorFields(e) }, `message on ${topic} dropped`);
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
    const republished = newest.size;
    this.mqttLog.info('mqtt.subscribed', { broker: this.opts.mqtt.url, filters, republished }, `subscribed; ${republished} announcement(s) republished`);
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
      await publishRetained(this.client, topics.announce(this.prefix, group), payload, this.mqttLog, `announcement of ${row.id}`);
    };
    const failed = (e: unknown) =>
      this.mqttLog.error('mqtt.announce-failed', { campaign: row.id, group, ...errorFields(e) }, `announcement of ${row.id} not published`);
    const next = (this.announcing.get(group) ?? Promise.resolve()).then(publish).catch(failed);
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

  /** `actor`: who asked (the API token's name, SPEC.md §15.6; `api` on an open API). */
  async createCampaign(req: CreateCampaign, actor = 'api'): Promise<CampaignRow> {
    // PostgreSQL: an image uploaded to another instance comes from the database into this one's cache first (SPEC.md §12.9).
    if (/^[0-9a-f]{64}$/.test(req.image)) await this.store.shared?.cacheImage(req.image);
    const row = await createCampaign(this.store, () => this.root.forCampaigns(), req, Date.now(), actor, this.metrics);
    this.recordInLog(row.id, req.manifest);
    await this.announce(row);
    const created = { campaign: row.id, group: row.grp, from: null, to: row.state, reason: 'operator', actor, action: 'create' } as const;
    logTransition(this.campaignLog, created, { version: row.version, waves: JSON.parse(row.waves) as number[] });
    return row;
  }

  async transition(id: string, action: 'pause' | 'resume' | 'abort', actor = 'api'): Promise<CampaignRow> {
    // The state before, for the log (SPEC.md §12.9 "Logs"); the transition itself re-reads the row.
    const from = (await this.store.campaign(id))?.state ?? null;
    const row = action === 'resume' ? await this.resume(id, actor) : (await transition(this.store, id, action, undefined, actor, this.metrics))!;
    if (action === 'abort') this.assets.drop(id);
    logTransition(this.campaignLog, { campaign: id, group: row.grp, from, to: row.state, reason: 'operator', actor, action });
    await this.announce(row);
    if (action === 'resume') this.ingest.scheduleTick();
    return row;
  }

  /** `campaign next` (SPEC.md §12.9, manual wave gate): let the next wave open; it opens in the engine step run here. */
  async nextWave(id: string, actor = 'api'): Promise<CampaignRow> {
    const approved = await approveNextWave(this.store, id, actor);
    this.campaignLog.info('campaign.next', { campaign: id, group: approved.grp, actor }, `campaign ${id}: next wave let open by ${actor}`);
    await this.ingest.tick();
    return (await this.store.campaign(id))!;
  }

  /** `campaign exclude` (SPEC.md §12.9): the device leaves the campaign; the open wave may be done now. */
  async exclude(id: string, device: string, actor = 'api'): Promise<CampaignRow> {
    const row = await excludeFromCampaign(this.store, id, device, actor);
    this.campaignLog.info('campaign.exclude', { campaign: id, group: row.grp, device, actor }, `campaign ${id}: device ${device} excluded by ${actor}`);
    await this.ingest.tick();
    return (await this.store.campaign(id))!;
  }

  /**
   * Resumed only while the manifest verifies under the root of trust as it is now (§12.13), and only
   * if no other root was stored between that check and the resume (then it is checked again).
   */
  private async resume(id: string, actor: string): Promise<CampaignRow> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.store.campaign(id);
      if (!current) return (await transition(this.store, id, 'resume'))!; // 404
      const { verdict, versions } = await this.root.checkManifest(new Uint8Array(current.manifest));
      if (!verdict.ok) {
        const halted = await haltByRoot(this.store, id, verdict.code, this.metrics);
        if (halted) logRootHalts(this.campaignLog, [{ row: halted, code: verdict.code, error: verdict.error }], new Map([[id, current.state]]), actor);
        if (halted) await this.announceGroup(halted.grp);
        throw new ApiError(
          422,
          verdict.error as ConstructorParameters<typeof ApiError>[1],
          `the manifest no longer verifies: ${verdict.detail ?? verdict.error}`,
        );
      }
      const row = await transition(this.store, id, 'resume', versions, actor);
      if (row) return row;
      if (attempt >= RESUME_ATTEMPTS) throw new ApiError(409, 'CONFLICT', 'the root of trust kept changing during the resume; try again');
    }
  }

  /**
   * `POST /api/root` (SPEC.md §12.13): store a trust bundle or revocation list (the verifier's code
   * when refused), then republish the root announcement and halt every campaign whose manifest no
   * longer verifies, withdrawing its announcement.
   */
  async publishRoot(envelope: Uint8Array, actor = 'api'): Promise<Published & { halted: { id: string; code: number }[] }> {
    const published = await this.root.publish(envelope);
    if (!published.changed) return { ...published, halted: [] };
    const stored = { kind: published.kind, version: published.version, actor };
    this.log.child('root').info('root.stored', stored, `${published.kind} version ${published.version} stored (published by ${actor})`);
    const before = await campaignStates(this.store);
    const halted = await recheckCampaigns(this.store, this.root, this.metrics);
    for (const h of halted) this.assets.drop(h.row.id);
    logRootHalts(this.campaignLog, halted, before, actor);
    await Promise.all([this.rootChannel.announce(), ...[...new Set(halted.map((h) => h.row.grp))].map((g) => this.announceGroup(g))]);
    return { ...published, halted: halted.map((h) => ({ id: h.row.id, code: h.code })) };
  }

  /** The manifest into the transparency log before the announcement (SPEC.md §16); a log failure is logged, the campaign stands. */
  private recordInLog(campaign: string, manifest: Uint8Array): void {
    try {
      if (this.tlog) this.log.child('tlog').info('tlog.appended', { campaign, entry: this.tlog.recordEntry(manifest) }, `manifest of ${campaign} logged`);
    } catch (e) {
      this.log.child('tlog').error('tlog.append-failed', { campaign, ...errorFields(e) }, `manifest of ${campaign} not appended to the log`);
    }
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
    this.tlog?.close();
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
