/**
 * What the server publishes in answer to requests (SPEC.md §12.4, §12.11): replies on the reply topic
 * of the device the request topic names, and blocks on a campaign's data topic, with the response
 * QoS, the MQTT 5 Correlation Data and the served-block metrics.
 */
import { type IClientPublishOptions, type MqttClient, type Packet } from 'mqtt';
import { topics } from '../../shared/ota/topics.js';
import { errorFields, type ServerLog } from './log.js';
import { type Metrics } from './metrics.js';
import { type Answer, blockResponseBytes } from './requests.js';

/** How long a retained publish waits for its PUBACK before the caller goes on (mqtt.js resends it when the broker is back). */
const RETAINED_WAIT_MS = 2000;

/**
 * Publish a retained message with QoS 1 (announcements, the root announcement). Resolves once the
 * broker has it (PUBACK), or after RETAINED_WAIT_MS while the broker is away; a failure is logged.
 */
export function publishRetained(client: MqttClient, topic: string, payload: Uint8Array, log: ServerLog, what: string): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, RETAINED_WAIT_MS);
    client.publish(topic, Buffer.from(payload.buffer, payload.byteOffset, payload.length), { qos: 1, retain: true }, (e) => {
      clearTimeout(timer);
      if (e) log.error('mqtt.publish-failed', { topic, ...errorFields(e) }, `${what} not published`);
      resolve();
    });
  });
}

/** What the broker socket is to turnCork (a net.Socket for mqtt:// and mqtts://). */
type Corkable = { cork(): void; uncork(): void; readonly destroyed?: boolean };

export class ReplyPublisher {
  private closed = false;
  /** The socket corked by turnCork until the end of this turn of the event loop. */
  private corked: Corkable | null = null;

  constructor(
    private readonly client: MqttClient,
    private readonly prefix: string,
    private readonly qos: 0 | 1,
    private readonly v5: boolean,
    private readonly metrics: Metrics,
  ) {}

  /**
   * Hold the broker socket's writes until the end of this turn of the event loop, then send them in
   * one write. mqtt.js writes every packet on its own (it corks only until the next tick, and it handles
   * one incoming packet per tick), so each PUBACK and reply was a writev of its own (2,054 in one
   * delivery run of tools/bench ota, 242 with this; strace). The bytes and their order are unchanged;
   * they leave at most one turn later (setImmediate).
   */
  turnCork(): void {
    if (this.corked || this.closed) return;
    const stream = (this.client as unknown as { stream?: Partial<Corkable> }).stream;
    if (!stream || typeof stream.cork !== 'function' || typeof stream.uncork !== 'function' || stream.destroyed) return;
    const corked = stream as Corkable;
    corked.cork();
    this.corked = corked;
    setImmediate(() => {
      this.corked = null;
      corked.uncork();
    });
  }

  /**
   * Publish with QoS 0 and call `handed` once the message is on the broker socket; with QoS 1 once the
   * broker acknowledged it. A QoS 0 publish gets no callback: mqtt.js parks each callback of a write
   * made above the socket's high-water mark as a `drain` listener, and at thousands of 64 KiB replies
   * adding and removing those listeners took a fifth of the server's CPU (10,000 devices, profiled).
   */
  private publish(topic: string, payload: Uint8Array, options: IClientPublishOptions, handed: () => void): void {
    const bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
    this.turnCork();
    if (this.qos === 0) {
      this.client.publish(topic, bytes, options);
      // Not connected: mqtt.js drops a QoS 0 publish (queueQoSZero is off), so nothing was handed over.
      if (this.client.connected && !this.client.disconnecting) handed();
    } else this.client.publish(topic, bytes, options, (e) => !e && handed());
  }

  /** Replies go only to the reply topic of the device the request topic names (§12.4), never elsewhere. */
  send(replies: Answer['replies'], packet: Packet, device: string, received: bigint | null): void {
    if (this.closed) return;
    const topic = topics.reply(this.prefix, device);
    const correlationData = (packet as { properties?: { correlationData?: Buffer } }).properties?.correlationData;
    const options: IClientPublishOptions = { qos: this.qos, ...(correlationData && this.v5 ? { properties: { correlationData } } : {}) };
    let left = replies.length;
    for (const r of replies) {
      if (r.code !== undefined) this.metrics.errorReply(r.code);
      this.publish(topic, r.payload, options, () => {
        if (r.block !== undefined) {
          this.metrics.blocksServed++;
          this.metrics.blockBytesServed += r.bytes ?? 0;
        }
        if (--left === 0 && received !== null) this.metrics.observeBlockLatency(Number(process.hrtime.bigint() - received) / 1e9);
      });
    }
  }

  /**
   * One block response (request id 0) on the campaign's data topic for every device that asked;
   * `received` holds when each asker's request arrived, for the latency histogram.
   */
  multicast(campaign: string, block: number, data: Uint8Array, received: readonly bigint[]): void {
    // The data topic is built from the stored campaign id only: no request can steer it (§12.11).
    const payload = blockResponseBytes({ campaign, requestId: 0, block, data });
    this.publish(topics.data(this.prefix, campaign), payload, { qos: this.qos }, () => {
      this.metrics.blocksServed++;
      this.metrics.blockBytesServed += data.length;
      this.metrics.multicasts++;
      const now = process.hrtime.bigint();
      for (const t of received) this.metrics.observeBlockLatency(Number(now - t) / 1e9);
    });
  }

  close(): void {
    this.closed = true;
  }
}
