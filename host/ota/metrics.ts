/**
 * Prometheus text format 0.0.4 for GET /metrics. Counters of this instance (blocks served, error
 * replies, malformed messages, latency) live in memory; device and campaign figures are derived from
 * SQLite at scrape time, so every instance reports the same fleet-wide values.
 */
import { codeName } from '../../shared/codes.js';
import { IGNORED_REASONS, type IgnoredReason } from './campaigns.js';
import { type Store } from './store.js';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export type MalformedKind = 'request' | 'status' | 'oversize' | 'topic';
/** Where a refused request named another reply topic (SPEC.md §12.4): the MQTT 5 property or key 3. */
export type RefusedVia = 'response_topic' | 'payload';

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export class Metrics {
  blocksServed = 0;
  blockBytesServed = 0;
  pagesServed = 0;
  manifestsServed = 0;
  multicasts = 0;
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

  render(store: Store): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) out.push(`${name}${labels} ${v}`);
    };
    const counts = store.stateCounts();
    let pass = 0;
    let reject = 0;
    for (const c of counts) {
      if (c.state === 'rejected') reject += c.n;
      else if (c.state !== 'failed') pass += c.n; // accepted and later: the manifest verified (failed may come before it)
    }
    metric('fwseal_manifest_verifications', 'gauge', 'Manifest verifications reported by devices, by result.', [
      ['{result="pass"}', pass],
      ['{result="reject"}', reject],
    ]);
    metric(
      'fwseal_rejections',
      'gauge',
      'Devices that rejected a campaign manifest, by code.',
      store.rejections().map((r) => [`{code="${esc(codeName(r.code ?? 0))}"}`, r.n]),
    );
    metric(
      'fwseal_campaign_devices',
      'gauge',
      'Devices per campaign and state.',
      counts.map((c) => [`{campaign="${esc(c.campaign)}",state="${c.state}"}`, c.n]),
    );
    metric('fwseal_devices_seen', 'gauge', 'Devices that reported online.', [['', store.deviceCount()]]);
    metric('fwseal_blocks_served_total', 'counter', 'Block responses handed to the broker by this instance.', [['', this.blocksServed]]);
    metric('fwseal_block_multicasts_total', 'counter', 'Block responses published once on a campaign data topic for several devices.', [['', this.multicasts]]);
    metric('fwseal_block_bytes_served_total', 'counter', 'Image bytes in block responses of this instance.', [['', this.blockBytesServed]]);
    out.push(
      '# HELP fwseal_block_latency_seconds Block request received to last response handed to the broker.',
      '# TYPE fwseal_block_latency_seconds histogram',
    );
    for (const [i, b] of LATENCY_BUCKETS.entries()) out.push(`fwseal_block_latency_seconds_bucket{le="${b}"} ${this.latency[i]}`);
    out.push(
      `fwseal_block_latency_seconds_bucket{le="+Inf"} ${this.latencyCount}`,
      `fwseal_block_latency_seconds_sum ${this.latencySum}`,
      `fwseal_block_latency_seconds_count ${this.latencyCount}`,
    );
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
    const cpu = process.cpuUsage();
    metric('process_cpu_seconds_total', 'counter', 'User and system CPU time of this instance.', [['', (cpu.user + cpu.system) / 1e6]]);
    metric('fwseal_mqtt_connected', 'gauge', '1 while this instance is connected to the broker.', [['', this.mqttConnected ? 1 : 0]]);
    return `${out.join('\n')}\n`;
  }
}
