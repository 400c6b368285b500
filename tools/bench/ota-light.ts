/**
 * Protocol-only clients for the OTA benchmark's "delivery" row: they speak fwseal's MQTT protocol
 * exactly as devices do (online status, announcement, digest pages, block requests with the
 * multicast flag, the data topic) and check every chunk against its leaf digest (node:crypto), but
 * keep nothing and simulate no flash, so the row measures server + broker, not device simulation.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { LeafHasher } from '../../host/hash.js';
import { messageType } from '../../shared/ota/codec.js';
import { encodeBlockRequest, encodePageRequest, parseAnnouncement, parseBlockResponse, parsePageResponse } from '../../shared/ota/messages.js';
import { encodeStatusEvent } from '../../shared/ota/status.js';
import { topics } from '../../shared/ota/topics.js';

const PREFIX = 'fwseal';

/** One protocol client: follows the announcement, fetches the digest pages, then requests blocks until each one checked. */
class LightClient {
  readonly done: Promise<void>;
  readonly #reply: string;
  #resolveDone: () => void = () => {};
  #campaign = '';
  #blocks = 0;
  /** Chunks per block. */
  #cpb = 0;
  #chunkSize = 0;
  #leaves: Buffer[] = [];
  #hasher = new LeafHasher(1);
  readonly #have = new Set<number>();
  #rid = 1;
  #timer: NodeJS.Timeout | null = null;

  constructor(
    readonly client: MqttClient,
    readonly id: string,
    readonly group: string,
    readonly timeoutMs: number,
  ) {
    this.#reply = topics.reply(PREFIX, id);
    this.done = new Promise<void>((r) => {
      this.#resolveDone = r;
    });
    client.on('message', (topic, payload) => {
      try {
        this.#onMessage(topic, payload);
      } catch {
        // a bad message is dropped; the timer asks again
      }
    });
  }

  /** Subscribe to the announcement and the reply topic, then report online. */
  async start(): Promise<void> {
    const { client, id, group } = this;
    await client.subscribeAsync([topics.announce(PREFIX, group), this.#reply], { qos: 1 });
    await client.publishAsync(topics.status(PREFIX, id), Buffer.from(encodeStatusEvent({ device: id, state: 'online', group, version: '1.0.0', counter: 1 })), {
      qos: 1,
    });
  }

  #onMessage(topic: string, payload: Buffer): void {
    if (topic === topics.announce(PREFIX, this.group)) return this.#onAnnouncement(payload);
    const t = messageType(payload);
    if (!t.ok) return;
    if (t.type === 'pageResponse') this.#onPage(payload);
    else if (t.type === 'blockResponse') this.#onBlock(payload);
  }

  /** The first announcement: its campaign's geometry, the data topic, and a request for every digest page. */
  #onAnnouncement(payload: Buffer): void {
    const a = parseAnnouncement(payload);
    if (!a.ok || this.#campaign) return;
    const campaign = a.value.campaign;
    this.#campaign = campaign;
    this.#chunkSize = a.value.chunkSize;
    this.#cpb = a.value.blockSize / this.#chunkSize;
    this.#hasher = new LeafHasher(this.#chunkSize);
    this.#blocks = Math.ceil(a.value.imageSize / a.value.blockSize);
    void this.client.subscribeAsync(topics.data(PREFIX, campaign), { qos: 0 }).then(() => {
      for (let p = 0; p < a.value.pageCount; p++) {
        void this.client.publishAsync(
          topics.request(PREFIX, campaign, this.id),
          Buffer.from(encodePageRequest({ campaign, requestId: this.#rid++, replyTopic: this.#reply, page: p })),
          { qos: 1 },
        );
      }
      this.#leaves = new Array(Math.ceil(a.value.imageSize / this.#chunkSize));
    });
  }

  /** A digest page: its leaves; once all are in, the block requests start. */
  #onPage(payload: Buffer): void {
    const m = parsePageResponse(payload);
    if (!m.ok) return;
    const leaves = this.#leaves;
    for (let k = 0; k < m.value.leaves.length / 32; k++) leaves[m.value.page * 128 + k] = Buffer.from(m.value.leaves.subarray(k * 32, k * 32 + 32));
    if (leaves.filter(Boolean).length === leaves.length) this.#ask();
  }

  /** Request up to 16 missing blocks (multicast), and again after timeoutMs. */
  #ask(): void {
    const missing = [...Array(this.#blocks).keys()].filter((b) => !this.#have.has(b)).slice(0, 16);
    if (missing.length === 0) return;
    const ranges: [number, number][] = [];
    for (const b of missing) {
      const last = ranges[ranges.length - 1];
      if (last && last[0] + last[1] === b) last[1]++;
      else ranges.push([b, 1]);
    }
    const campaign = this.#campaign;
    void this.client.publishAsync(
      topics.request(PREFIX, campaign, this.id),
      Buffer.from(encodeBlockRequest({ campaign, requestId: this.#rid++, replyTopic: this.#reply, ranges, multicast: true })),
      { qos: 1 },
    );
    this.#timer = setTimeout(() => this.#ask(), this.timeoutMs);
  }

  /** A block: every chunk checked against its leaf digest, or the whole block refused. */
  #onBlock(payload: Buffer): void {
    const m = parseBlockResponse(payload);
    if (!m.ok || m.value.campaign !== this.#campaign || this.#have.has(m.value.block)) return;
    const b = m.value.block;
    const cpb = this.#cpb;
    for (let j = 0; j < cpb; j++) {
      const i = b * cpb + j;
      if (i >= this.#leaves.length) break;
      const chunk = m.value.data.subarray(j * this.#chunkSize, (j + 1) * this.#chunkSize);
      if (!this.#hasher.leaf(chunk).equals(this.#leaves[i]!)) return; // refuse the block; the timer asks again
    }
    this.#have.add(b);
    if (this.#have.size === this.#blocks) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#resolveDone();
    }
  }
}

async function lightClient(url: string, id: string, group: string, timeoutMs: number): Promise<LightClient> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: id, reconnectPeriod: 0, keepalive: 60 });
  const light = new LightClient(client, id, group, timeoutMs);
  await light.start();
  return light;
}

/** N protocol clients of `group`; `done` resolves when every client has checked every block. */
export async function lightFleet(url: string, n: number, group: string, timeoutMs = 3000): Promise<{ done: Promise<void>; close(): Promise<void> }> {
  const all: LightClient[] = [];
  for (let i = 0; i < n; i += 50)
    all.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => lightClient(url, `${group}-l${i + j}`, group, timeoutMs)))));
  return {
    done: Promise.all(all.map((l) => l.done)).then(() => undefined),
    close: async () => {
      await Promise.all(all.map((l) => l.client.endAsync(true)));
    },
  };
}
