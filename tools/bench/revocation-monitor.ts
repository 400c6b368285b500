/**
 * The monitor of the "revocation" section (tools/bench/revocation.ts): one MQTT client in the bench
 * process, subscribed with QoS 0 (no in-flight window between it and the broker) to every device's
 * status topic, to the reference echoes and to mosquitto's byte counters. It records, per device,
 * when the first acknowledgement of a list (an `online` naming that list's version and payload
 * digest, SPEC.md §12.13 step 3) reached it, on the same clock as the POST /api/root that started
 * the round; and what the broker sent and received meanwhile ($SYS/broker/bytes/*, `sys_interval 1`).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { bytesEqual } from '../../shared/bytes.js';
import { parseStatusEvent } from '../../shared/ota/status.js';
import { sleep } from './ota-procs.js';

export const REF_TOPIC = 'bench/revocation/ref';
export const ECHO_PREFIX = 'bench/revocation/echo';
const SYS_SENT = '$SYS/broker/bytes/sent';
const SYS_RECEIVED = '$SYS/broker/bytes/received';

/** mosquitto's byte counters (since it started). */
export type BrokerBytes = { readonly sent: number; readonly received: number };

/** Wire size of a QoS 0 PUBLISH as the broker sends it to the monitor: fixed header, topic, payload. */
function publishBytes(topic: string, payload: Buffer): number {
  const remaining = 2 + Buffer.byteLength(topic) + payload.length;
  return 1 + (remaining < 128 ? 1 : remaining < 16384 ? 2 : 3) + remaining;
}

/** The nearest-rank percentile of ascending `sorted` (q in (0, 1]); Infinity when fewer than `n` samples reach it. */
export function percentile(sorted: readonly number[], q: number, n = sorted.length): number {
  const rank = Math.ceil(q * n);
  return rank <= sorted.length ? sorted[rank - 1]! : Number.POSITIVE_INFINITY;
}

export class Monitor {
  #sys: BrokerBytes = { sent: 0, received: 0 };
  #sysWaiters: (() => void)[] = [];
  #acks = new Map<string, number>();
  #ackWant: { prefix: string; version: number; digest: Uint8Array } | null = null;
  #echoes = new Map<string, number>();
  #copyBytes = 0;
  #wake: (() => void) | null = null;

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload) => this.#onMessage(topic, payload, performance.now()));
  }

  static async connect(url: string): Promise<Monitor> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: `bench-revocation-mon-${process.pid}`, reconnectPeriod: 0 });
    const m = new Monitor(client);
    await client.subscribeAsync([SYS_SENT, SYS_RECEIVED, `${ECHO_PREFIX}/+`], { qos: 0 });
    await m.nextBytes();
    return m;
  }

  /** Follow the status topics under `prefix` (one per phase). */
  async watch(prefix: string): Promise<void> {
    await this.client.subscribeAsync(`${prefix}/device/+/status`, { qos: 0 });
  }

  #onMessage(topic: string, payload: Buffer, at: number): void {
    if (topic === SYS_SENT || topic === SYS_RECEIVED) {
      const v = Number(payload.toString());
      this.#sys = topic === SYS_SENT ? { ...this.#sys, sent: v } : { ...this.#sys, received: v };
      if (topic === SYS_SENT) for (const w of this.#sysWaiters.splice(0)) w();
      return;
    }
    this.#copyBytes += publishBytes(topic, payload);
    if (topic.startsWith(`${ECHO_PREFIX}/`)) {
      const id = topic.slice(ECHO_PREFIX.length + 1);
      if (!this.#echoes.has(id)) this.#echoes.set(id, at);
    } else this.#onStatus(topic, payload, at);
    this.#wake?.();
  }

  #onStatus(topic: string, payload: Buffer, at: number): void {
    const want = this.#ackWant;
    if (!want || !topic.startsWith(`${want.prefix}/device/`)) return;
    const s = parseStatusEvent(payload);
    if (!s.ok || s.value.state !== 'online' || s.value.revocationVersion !== want.version) return;
    const d = s.value.revocationDigest;
    if (!d || !bytesEqual(d, want.digest) || this.#acks.has(s.value.device)) return;
    this.#acks.set(s.value.device, at);
  }

  /** The byte counters of mosquitto's next $SYS update (at most `sys_interval` away), or the last ones after 3 s. */
  async nextBytes(): Promise<BrokerBytes> {
    await Promise.race([new Promise<void>((r) => this.#sysWaiters.push(r)), sleep(3000)]);
    await sleep(50); // bytes/received follows bytes/sent in the same update
    return this.#sys;
  }

  /** Start a round: forget earlier acknowledgements and echoes, count the monitor's own copies from here. */
  expect(ack: { prefix: string; version: number; digest: Uint8Array } | null): void {
    this.#acks = new Map();
    this.#echoes = new Map();
    this.#ackWant = ack;
    this.#copyBytes = 0;
  }

  /** Bytes of the PUBLISH packets the broker sent the monitor since `expect` (its share of bytes/sent). */
  get copyBytes(): number {
    return this.#copyBytes;
  }

  /** Wait until `n` devices acknowledged (or echoed), or `ms` passed; the arrival times (performance.now()). */
  async waitFor(kind: 'acks' | 'echoes', n: number, ms: number): Promise<Map<string, number>> {
    const deadline = performance.now() + ms;
    const got = () => (kind === 'acks' ? this.#acks : this.#echoes);
    while (got().size < n && performance.now() < deadline) {
      await Promise.race([new Promise<void>((r) => (this.#wake = r)), sleep(100)]);
      this.#wake = null;
    }
    return new Map(got());
  }

  /** The reference: `payload` published retained with QoS 1 on REF_TOPIC; the time just before the publish. */
  async publishReference(payload: Uint8Array): Promise<number> {
    const t0 = performance.now();
    await this.client.publishAsync(REF_TOPIC, Buffer.from(payload), { qos: 1, retain: true });
    return t0;
  }

  async close(): Promise<void> {
    // Leave nothing retained behind on the broker (it is stopped after the section anyway).
    await this.client.publishAsync(REF_TOPIC, Buffer.alloc(0), { qos: 1, retain: true }).catch(() => {});
    await this.client.endAsync(true);
  }
}
