/**
 * Prometheus text format 0.0.4 for GET /metrics. Counters of this instance (blocks served, error
 * replies, malformed messages, latency) live in memory; device, campaign and root-of-trust figures
 * (revocation propagation included) are derived from the store at scrape time, so every instance
 * reports the same fleet-wide values.
 */
import { codeName } from '../../shared/codes.js';
import { IGNORED_REASONS, type IgnoredReason } from './campaigns.js';
import { type Histogram, PROPAGATION_BUCKETS } from './root-store.js';
import { type OtaStore } from './store.js';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export type MalformedKind = 'request' | 'status' | 'oversize' | 'topic';
/** Where a refused request named another reply topic (SPEC.md §12.4): the MQTT 5 property or key 3. */
export type RefusedVia = 'response_topic' | 'payload';

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

/**
 * A device counts as online for fwseal_revocation_enforcing_ratio when it reported within this
 * window (24 h): MQTT tells the servers of no disconnects, and a device reports `online` at every
 * connect and after every change of its root of trust (SPEC.md §12.13).
 */
export const ONLINE_WINDOW_MS = 24 * 3600 * 1000;

type Emit = (name: string, type: string, help: string, samples: [string, number][]) => void;

function histogramLines(name: string, help: string, bounds: readonly number[], h: Histogram): string[] {
  return [
    `# HELP ${name} ${help}`,
    `# TYPE ${name} histogram`,
    ...bounds.map((b, i) => `${name}_bucket{le="${b}"} ${h.buckets[i]}`),
    `${name}_bucket{le="+Inf"} ${h.count}`,
    `${name}_sum ${h.sum}`,
    `${name}_count ${h.count}`,
  ];
}

/** The root of trust (SPEC.md §12.13): what the servers publish, what devices acknowledged, and how fast. */
async function rootMetrics(store: OtaStore, metric: Emit, now: number): Promise<string[]> {
  const published = await store.root.versions();
  const byVersion = (rows: { v: number | null; n: number }[]): [string, number][] => rows.map((r) => [`{version="${r.v === null ? 'unknown' : r.v}"}`, r.n]);
  metric('fwseal_root_trust_version', 'gauge', 'The newest trust bundle version the servers publish.', [['', published.trust]]);
  metric('fwseal_root_revocation_version', 'gauge', 'The newest revocation list version the servers publish (0: none).', [['', published.list]]);
  metric('fwseal_trust_version', 'gauge', 'Known devices by the trust bundle version they last reported.', byVersion(await store.root.trustVersionsSeen()));
  metric(
    'fwseal_revocation_version',
    'gauge',
    'Known devices by the revocation list version they last acknowledged.',
    byVersion(await store.root.revocationVersions()),
  );
  const e = await store.root.enforcing(published.list, now - ONLINE_WINDOW_MS);
  metric('fwseal_devices_online', 'gauge', 'Devices that reported within the online window (24 h).', [['', e.online]]);
  metric('fwseal_revocation_enforcing_ratio', 'gauge', 'Online devices that acknowledged the published revocation list, over online devices.', [
    ['', e.online === 0 ? Number.NaN : e.enforcing / e.online],
  ]);
  return histogramLines(
    'fwseal_revocation_propagation_seconds',
    "Revocation list published to each device's first acknowledgement of it, one observation per device and list.",
    PROPAGATION_BUCKETS,
    await store.root.propagation(),
  );
}

export class Metrics {
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
  private readonly latency = new Array<number>(LATENCY_BUCKETS.length).fill(0);
  private latencyCount = 0;
  private latencySum = 0;

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
    this.latencyCount++;
    this.latencySum += seconds;
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]) this.latency[i]++;
  }

  /** This instance's own counters (the rest of a scrape comes from the store). */
  private counters(metric: Emit): void {
    metric(
      'fwseal_error_replies_total',
      'counter',
      'Error replies sent by this instance, by code.',
      [...this.errorReplies].map(([c, n]) => [`{code="${esc(codeName(c))}"}`, n]),
    );
    metric(
      'fwseal_malformed_messages_total',
      'counter',
      'Messages ignored or refused because they did not parse, by kind.',
      [...this.malformed].map(([k, n]) => [`{kind="${k}"}`, n]),
    );
    metric(
      'fwseal_status_ignored_total',
      'counter',
      'Status events that counted toward nothing (SPEC.md §12.9), by reason.',
      [...this.statusIgnored].map(([r, n]) => [`{reason="${r}"}`, n]),
    );
    metric(
      'fwseal_reply_topic_refused_total',
      'counter',
      "Requests refused for naming a reply topic other than their device's own, by where they named it.",
      [...this.replyTopicRefused].map(([v, n]) => [`{via="${v}"}`, n]),
    );
    metric(
      'fwseal_requests_total',
      'counter',
      'Device requests answered by this instance, by kind (busy: refused SERVER_BUSY before queueing).',
      [...this.requests].map(([k, n]) => [`{kind="${esc(k)}"}`, n]),
    );
    metric('fwseal_status_events_total', 'counter', 'Status events that parsed, received by this instance.', [['', this.statusEvents]]);
    metric('fwseal_status_backlog', 'gauge', 'Status events received by this instance and not yet in the store.', [['', this.statusBacklog()]]);
    const cpu = process.cpuUsage();
    metric('process_cpu_seconds_total', 'counter', 'User and system CPU time of this instance.', [['', (cpu.user + cpu.system) / 1e6]]);
    metric('fwseal_mqtt_connected', 'gauge', '1 while this instance is connected to the broker.', [['', this.mqttConnected ? 1 : 0]]);
  }

  /** The text of one scrape: the store's figures are read one after the other, in the order they are printed. */
  async render(store: OtaStore): Promise<string> {
    const out: string[] = [];
    const metric: Emit = (name, type, help, samples) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) out.push(`${name}${labels} ${v}`);
    };
    const counts = await store.stateCounts();
    let pass = 0;
    let reject = 0;
    for (const c of counts) {
      if (c.state === 'rejected') reject += c.n;
      // accepted and later: the manifest verified (failed may come before it; a timed-out or excluded device may never have checked it)
      else if (c.state !== 'failed' && c.state !== 'timed-out' && c.state !== 'excluded') pass += c.n;
    }
    metric('fwseal_manifest_verifications', 'gauge', 'Manifest verifications reported by devices, by result.', [
      ['{result="pass"}', pass],
      ['{result="reject"}', reject],
    ]);
    metric(
      'fwseal_rejections',
      'gauge',
      'Devices that rejected a campaign manifest, by code.',
      (await store.rejections()).map((r) => [`{code="${esc(codeName(r.code ?? 0))}"}`, r.n]),
    );
    metric(
      'fwseal_campaign_devices',
      'gauge',
      'Devices per campaign and state.',
      counts.map((c) => [`{campaign="${esc(c.campaign)}",state="${c.state}"}`, c.n]),
    );
    metric('fwseal_devices_seen', 'gauge', 'Devices that reported online.', [['', await store.deviceCount()]]);
    metric('fwseal_blocks_served_total', 'counter', 'Block responses handed to the broker by this instance.', [['', this.blocksServed]]);
    metric('fwseal_block_multicasts_total', 'counter', 'Block responses published once on a campaign data topic for several devices.', [['', this.multicasts]]);
    metric('fwseal_block_bytes_served_total', 'counter', 'Image bytes in block responses of this instance.', [['', this.blockBytesServed]]);
    out.push(
      ...histogramLines('fwseal_block_latency_seconds', 'Block request received to last response handed to the broker.', LATENCY_BUCKETS, {
        buckets: this.latency,
        count: this.latencyCount,
        sum: this.latencySum,
      }),
    );
    metric('fwseal_root_responses_total', 'counter', 'Root responses (trust bundle versions) handed to the broker by this instance.', [
      ['', this.rootResponses],
    ]);
    out.push(...(await rootMetrics(store, metric, Date.now())));
    this.counters(metric);
    return `${out.join('\n')}\n`;
  }
}
