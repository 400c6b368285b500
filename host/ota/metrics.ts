/**
 * GET /metrics (SPEC.md §12.9 "Metrics"), Prometheus text 0.0.4 through prom-client. Counters of this
 * instance (blocks served, error replies, malformed messages, latency, what devices reported in the
 * status events that counted, the server's own manifest checks, campaign creations and halts) live in
 * memory; device, campaign and root-of-trust figures are derived from the store at scrape time
 * (metrics-fleet.ts), so every instance reports the same fleet-wide values. Each instance has its own
 * registry; the process metrics (process_*, nodejs_*) are the process's (metrics-prom.ts).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { codeName } from '../../shared/codes.js';
import { type RefusalStage, type StatusEvent } from '../../shared/ota/status.js';
import { IGNORED_REASONS, type IgnoredReason } from './campaigns.js';
import { type FleetFigures, readFleet, registerFleetMetrics } from './metrics-fleet.js';
import { buildInfo, mirrorCounter, mirrorCounterMap, processRegistry, VERIFY_BUCKETS } from './metrics-prom.js';
import { TlogMetrics } from './metrics-tlog.js';
import { TrustAgeReader } from './metrics-trust.js';
import { type OtaStore } from './store.js';

export { ONLINE_WINDOW_MS } from './metrics-fleet.js';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export type MalformedKind = 'request' | 'status' | 'oversize' | 'topic';
/** Where a refused request named another reply topic (SPEC.md §12.4): the MQTT 5 property or key 3. */
export type RefusedVia = 'response_topic' | 'payload';
/** Why a campaign stopped (fwseal_campaign_halts_total): the failure-rate rule, the root of trust, an operator's pause or abort of a running one. */
export type HaltReason = 'failure_rate' | 'revoked' | 'operator';

/** What campaign creation, transitions and root re-checks record (campaigns.ts, root-recheck.ts, root-of-trust.ts). */
export interface CampaignMetrics {
  /** One manifest verification by the server (campaign create, root re-check, resume), in seconds (M4). */
  serverVerified(seconds: number): void;
  /** A campaign create that reached the artifact's verdict: accepted (no code), or refused with the verifier's code name (M1). */
  campaignCreated(refusedWith?: string): void;
  campaignHalted(reason: HaltReason): void;
}

/**
 * Where a counted `rejected` or `failed` refused (M8): the device says so (key 17); an older device
 * does not, and its code tells: a manifest for `rejected`, 1xx–4xx the image, 5xx the install. 6xx
 * codes (transport, final error replies) refused nothing.
 */
function refusalOf(e: StatusEvent): RefusalStage | null {
  if (e.code === undefined || e.code >= 600) return null;
  if (e.stage !== undefined) return e.stage;
  if (e.state === 'rejected') return 'manifest';
  return e.state === 'failed' ? (e.code < 500 ? 'image' : 'install') : null;
}

export class Metrics implements CampaignMetrics {
  blocksServed = 0;
  blockBytesServed = 0;
  pagesServed = 0;
  manifestsServed = 0;
  multicasts = 0;
  /** Status events that parsed, on this instance (each ingested, or counted as ignored, once). */
  statusEvents = 0;
  /** Requests taken in by this instance, by what they asked for (requests.ts Answer kind; `busy`: refused SERVER_BUSY at the queue). */
  readonly requests = new Map<string, number>();
  /** Status events received and not yet in the store (status-ingest.ts), read at scrape time. */
  statusBacklog: () => number = () => 0;
  /** Root responses (SPEC.md §12.13) handed to the broker by this instance. */
  rootResponses = 0;
  mqttConnected = false;
  readonly errorReplies = new Map<number, number>();
  readonly malformed = new Map<MalformedKind, number>();
  /** Every reason present from the start: a scrape shows 0, not a missing series, before the first one. */
  readonly statusIgnored = new Map<IgnoredReason, number>(IGNORED_REASONS.map((r) => [r, 0]));
  readonly replyTopicRefused = new Map<RefusedVia, number>([
    ['response_topic', 0],
    ['payload', 0],
  ]);
  /** What GET /metrics shows: this instance's metrics and the process's. */
  readonly registry: Registry;
  private readonly latency: Histogram;
  private readonly deviceVerify: Histogram<'stage'>;
  private readonly serverVerify: Histogram;
  private readonly refusals: Counter<'code' | 'stage'>;
  private readonly creates: Counter<'result' | 'code'>;
  private readonly halts: Counter<'reason'>;
  /** The store's figures of the scrape under way (render); scrapes run one at a time. */
  private figures: FleetFigures | null = null;
  private scrapes: Promise<unknown> = Promise.resolve();
  private readonly trustAges = new TrustAgeReader();
  /** The transparency log's M9 and size (metrics-tlog.ts; SPEC.md §16). */
  readonly tlog: TlogMetrics;

  constructor() {
    const own = new Registry();
    registerFleetMetrics(own, () => this.figures);
    const reg = [own];
    this.latency = new Histogram({
      name: 'fwseal_block_latency_seconds',
      help: 'Block request received to last response handed to the broker.',
      buckets: LATENCY_BUCKETS,
      registers: reg,
    });
    this.deviceVerify = new Histogram({
      name: 'fwseal_device_verify_seconds',
      help: 'Verify times devices reported in status events that counted (M4), by stage: manifest (accepted, rejected), image (installed, failed).',
      labelNames: ['stage'],
      buckets: [...VERIFY_BUCKETS],
      registers: reg,
    });
    for (const stage of ['manifest', 'image']) this.deviceVerify.zero({ stage });
    this.serverVerify = new Histogram({
      name: 'fwseal_server_verify_seconds',
      help: "This instance's own manifest verifications (M4): campaign create, root of trust re-checks and resumes.",
      buckets: [...VERIFY_BUCKETS],
      registers: reg,
    });
    this.refusals = new Counter({
      name: 'fwseal_refusals_total',
      help: 'Refusals devices reported in status events that counted (M8), by code and stage.',
      labelNames: ['code', 'stage'],
      registers: reg,
    });
    this.creates = new Counter({
      name: 'fwseal_campaign_creates_total',
      help: 'Campaign creations on this instance by verdict on the signed artifact (M1): accepted, or refused with the code (manifest or image does not verify).',
      labelNames: ['result', 'code'],
      registers: reg,
    });
    this.creates.inc({ result: 'accepted', code: '' }, 0);
    this.halts = new Counter({
      name: 'fwseal_campaign_halts_total',
      help: 'Campaigns this instance stopped, by reason.',
      labelNames: ['reason'],
      registers: reg,
    });
    for (const reason of ['failure_rate', 'revoked', 'operator']) this.halts.inc({ reason }, 0);
    this.instanceCounters(own);
    this.tlog = new TlogMetrics(own);
    buildInfo(own);
    this.registry = Registry.merge([own, processRegistry()]);
  }

  request(kind: string): void {
    this.requests.set(kind, (this.requests.get(kind) ?? 0) + 1);
  }

  errorReply(code: number): void {
    this.errorReplies.set(code, (this.errorReplies.get(code) ?? 0) + 1);
  }

  malformedMessage(kind: MalformedKind): void {
    this.malformed.set(kind, (this.malformed.get(kind) ?? 0) + 1);
  }

  ignoredStatus(reason: IgnoredReason): void {
    this.statusIgnored.set(reason, (this.statusIgnored.get(reason) ?? 0) + 1);
  }

  refusedReplyTopic(via: RefusedVia): void {
    this.replyTopicRefused.set(via, (this.replyTopicRefused.get(via) ?? 0) + 1);
  }

  observeBlockLatency(seconds: number): void {
    this.latency.observe(seconds);
  }

  /** A status event that counted (status-ingest.ts; never an ignored one): the device's verify times (M4) and its refusal (M8). */
  deviceReport(e: StatusEvent): void {
    if (e.manifestMs !== undefined) this.deviceVerify.observe({ stage: 'manifest' }, e.manifestMs / 1000);
    if (e.imageMs !== undefined) this.deviceVerify.observe({ stage: 'image' }, e.imageMs / 1000);
    const stage = refusalOf(e);
    if (stage !== null) this.refusals.inc({ code: codeName(e.code!), stage });
  }

  serverVerified(seconds: number): void {
    this.serverVerify.observe(seconds);
  }

  campaignCreated(refusedWith?: string): void {
    this.creates.inc(refusedWith === undefined ? { result: 'accepted', code: '' } : { result: 'refused', code: refusedWith });
  }

  campaignHalted(reason: HaltReason): void {
    this.halts.inc({ reason });
  }

  /** This instance's own counters, mirrored from the fields and maps the rest of the server updates. */
  private instanceCounters(r: Registry): void {
    mirrorCounter(r, 'fwseal_blocks_served_total', 'Block responses handed to the broker by this instance.', () => this.blocksServed);
    mirrorCounter(r, 'fwseal_block_multicasts_total', 'Block responses published once on a campaign data topic for several devices.', () => this.multicasts);
    mirrorCounter(r, 'fwseal_block_bytes_served_total', 'Image bytes in block responses of this instance.', () => this.blockBytesServed);
    mirrorCounter(r, 'fwseal_root_responses_total', 'Root responses (trust bundle versions) handed to the broker by this instance.', () => this.rootResponses);
    mirrorCounterMap(r, 'fwseal_error_replies_total', 'Error replies sent by this instance, by code.', 'code', this.errorReplies, codeName);
    mirrorCounterMap(r, 'fwseal_malformed_messages_total', 'Messages ignored or refused because they did not parse, by kind.', 'kind', this.malformed);
    mirrorCounterMap(r, 'fwseal_status_ignored_total', 'Status events that counted toward nothing (SPEC.md §12.9), by reason.', 'reason', this.statusIgnored);
    const refused = "Requests refused for naming a reply topic other than their device's own, by where they named it.";
    mirrorCounterMap(r, 'fwseal_reply_topic_refused_total', refused, 'via', this.replyTopicRefused);
    const requests = 'Device requests answered by this instance, by kind (busy: refused SERVER_BUSY before queueing).';
    mirrorCounterMap(r, 'fwseal_requests_total', requests, 'kind', this.requests);
    mirrorCounter(r, 'fwseal_status_events_total', 'Status events that parsed, received by this instance.', () => this.statusEvents);
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          this.set(read());
        },
      });
    gauge('fwseal_status_backlog', 'Status events received by this instance and not yet in the store.', () => this.statusBacklog());
    gauge('fwseal_mqtt_connected', '1 while this instance is connected to the broker.', () => (this.mqttConnected ? 1 : 0));
  }

  /**
   * The text of one scrape: the store's figures are read first, one after the other, then every
   * metric is rendered from them. Scrapes run one at a time, so one never shows another's figures.
   * prom-client separates metrics with blank lines; they are dropped, as the format allows, so the
   * text stays one sample or comment per line as before.
   */
  render(store: OtaStore): Promise<string> {
    const run = async () => {
      this.figures = await readFleet(store, Date.now(), this.trustAges);
      return (await this.registry.metrics()).replace(/\n{2,}/g, '\n');
    };
    const text = this.scrapes.then(run, run);
    this.scrapes = text.catch(() => undefined);
    return text;
  }
}
