/**
 * What one OTA benchmark run cost (tools/bench/ota-delivery.ts, ota-scale.ts): CPU seconds of each
 * process group (utime + stime from /proc/<pid>/stat, read before and after) and the bytes mosquitto
 * sent meanwhile, from its own counter $SYS/broker/bytes/sent (the broker runs with `sys_interval 1`;
 * the counter is read at the first update after each end of the window, so it may include up to one
 * second of idle traffic: keep-alives and the $SYS messages themselves), and the messages it dropped
 * ($SYS/broker/publish/messages/dropped).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { cpuSeconds, sleep } from './ota-procs.js';

const SYS_SENT = '$SYS/broker/bytes/sent';
/** Messages mosquitto dropped (a client's queue full: max_queued_messages); not always in its log. */
const SYS_DROPPED = '$SYS/broker/publish/messages/dropped';

export type BrokerCounters = { readonly sent: number; readonly dropped: number };

/** mosquitto's bytes-sent and dropped-messages counters, as its $SYS updates report them. */
export class BrokerBytes {
  #sent = 0;
  #dropped = 0;
  #waiters: (() => void)[] = [];

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload) => {
      if (topic === SYS_DROPPED) this.#dropped = Number(payload.toString());
      if (topic !== SYS_SENT) return;
      this.#sent = Number(payload.toString());
      for (const w of this.#waiters.splice(0)) w();
    });
  }

  static async connect(url: string): Promise<BrokerBytes> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: `bench-ota-sys-${process.pid}-${Date.now()}`, reconnectPeriod: 0 });
    const b = new BrokerBytes(client);
    await client.subscribeAsync([SYS_DROPPED, SYS_SENT], { qos: 0 });
    await b.next();
    return b;
  }

  /** The counters at the broker's next $SYS update (at most `sys_interval` away), or the last ones after 3 s. */
  async next(): Promise<BrokerCounters> {
    await Promise.race([new Promise<void>((r) => this.#waiters.push(r)), sleep(3000)]);
    await sleep(20); // the dropped count is published next to bytes/sent in the same update
    return { sent: this.#sent, dropped: this.#dropped };
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

/**
 * Process groups to meter: label -> pids, or a function listing them at each end of the window (a
 * process that started meanwhile counts from 0; one that ended meanwhile is not counted). A group's
 * CPU is the sum; null when a listed pid is gone.
 */
export type PidGroups = Record<string, readonly (number | undefined)[] | (() => number[])>;

export type MeterResult = { readonly cpu: Record<string, number | null>; readonly bytesSent: number; readonly dropped: number; readonly benchCpu: number };

type Snapshot = Record<string, { readonly dynamic: boolean; readonly perPid: Map<number, number> | null }>;

function snapshot(groups: PidGroups): Snapshot {
  const out: Snapshot = {};
  for (const [label, g] of Object.entries(groups)) {
    const dynamic = typeof g === 'function';
    const perPid = new Map<number, number>();
    let ok = true;
    for (const pid of dynamic ? g() : g) {
      const c = cpuSeconds(pid);
      if (c === null || pid === undefined) ok = dynamic;
      else perPid.set(pid, c);
    }
    out[label] = { dynamic, perPid: ok ? perPid : null };
  }
  return out;
}

/** A measurement window: `begin` waits for a fresh byte count, then reads CPU; `end` reads CPU at once, then the next byte count. */
export class Meter {
  private constructor(
    private readonly groups: PidGroups,
    private readonly bytes: BrokerBytes,
    private readonly cpu0: Snapshot,
    private readonly bytes0: BrokerCounters,
    private readonly bench0: NodeJS.CpuUsage,
  ) {}

  static async begin(groups: PidGroups, bytes: BrokerBytes): Promise<Meter> {
    const b0 = await bytes.next();
    return new Meter(groups, bytes, snapshot(groups), b0, process.cpuUsage());
  }

  async end(): Promise<MeterResult> {
    const cpu1 = snapshot(this.groups);
    const bench = process.cpuUsage(this.bench0);
    const bytes1 = await this.bytes.next();
    const cpu: Record<string, number | null> = {};
    for (const [k, z] of Object.entries(cpu1)) {
      const a = this.cpu0[k]?.perPid;
      if (!a || !z.perPid) {
        cpu[k] = null;
        continue;
      }
      let sum = 0;
      for (const [pid, c] of z.perPid) sum += c - (a.get(pid) ?? (z.dynamic ? 0 : c));
      cpu[k] = sum;
    }
    return { cpu, bytesSent: bytes1.sent - this.bytes0.sent, dropped: bytes1.dropped - this.bytes0.dropped, benchCpu: (bench.user + bench.system) / 1e6 };
  }
}
