/**
 * Tests that act as devices with raw MQTT clients against `fwseal serve` (SPEC.md §12): publish
 * requests and status events by hand, collect what comes back on the reply topics, and pull a whole
 * campaign (manifest, pages, blocks) to check the bytes against the signed manifest.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { type Result } from '../../shared/codes.js';
import { type MessageType, messageType } from '../../shared/ota/codec.js';
import {
  type Announcement,
  type BlockRange,
  encodeBlockRequest,
  encodeManifestRequest,
  encodePageRequest,
  parseAnnouncement,
  parseBlockResponse,
  parseErrorReply,
  parseManifestResponse,
  parsePageResponse,
} from '../../shared/ota/messages.js';
import { encodeStatusEvent, type StatusEvent } from '../../shared/ota/status.js';
import { topics } from '../../shared/ota/topics.js';

export type Msg = { topic: string; payload: Uint8Array; type: MessageType | null; correlationData?: Buffer; retain: boolean };

/** Broker credentials, for a broker with the ACL file of SPEC.md §12.12 (username = device id). */
export type RawDeviceOptions = { prefix?: string; version?: 4 | 5; credentials?: { username: string; password: string } };

const WAIT_MS = 10_000;

export class RawDevice {
  readonly messages: Msg[] = [];
  private waiters: { pred: (m: Msg) => boolean; resolve: (m: Msg) => void }[] = [];
  readonly prefix: string;

  private constructor(
    readonly id: string,
    readonly client: MqttClient,
    prefix: string,
  ) {
    this.prefix = prefix;
    client.on('message', (topic, payload, packet) => {
      const bytes = new Uint8Array(payload);
      const t = bytes.length > 0 ? messageType(bytes) : null;
      const m: Msg = {
        topic,
        payload: bytes,
        type: t?.ok ? t.type : null,
        retain: !!packet.retain,
        ...(packet.properties?.correlationData ? { correlationData: packet.properties.correlationData } : {}),
      };
      this.messages.push(m);
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred(m)) return true;
        w.resolve(m);
        return false;
      });
    });
  }

  static async connect(url: string, id: string, opts: RawDeviceOptions = {}): Promise<RawDevice> {
    const client = await mqtt.connectAsync(url, {
      clientId: `test-${id}-${Math.random().toString(36).slice(2, 8)}`,
      protocolVersion: opts.version ?? 4,
      reconnectPeriod: 0,
      clean: true,
      ...(opts.credentials ?? {}),
    });
    const prefix = opts.prefix ?? 'fwseal';
    await client.subscribeAsync(topics.reply(prefix, id), { qos: 1 });
    return new RawDevice(id, client, prefix);
  }

  /** Subscribe; the granted QoS or failure code of the SUBACK (128 / MQTT 5 reason 0x87 = refused). */
  async subscribe(topic: string): Promise<number> {
    const granted = await this.client.subscribeAsync(topic, { qos: 1 });
    return granted[0]?.qos ?? -1;
  }

  /** The first message (already received or still to come) matching pred. */
  next(pred: (m: Msg) => boolean, timeoutMs = WAIT_MS): Promise<Msg> {
    const have = this.messages.find(pred);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`device ${this.id}: no matching message within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (m: Msg) => {
        clearTimeout(t);
        resolve(m);
      };
      this.waiters.push({ pred, resolve: done });
    });
  }

  /** Messages on the reply topics carrying request id `rid` (in the payload). */
  replyTo(rid: number, type?: MessageType, timeoutMs?: number): Promise<Msg> {
    return this.next((m) => (type === undefined || m.type === type) && requestIdOf(m) === rid, timeoutMs);
  }

  async request(campaign: string, payload: Uint8Array, properties?: { responseTopic?: string; correlationData?: Buffer }): Promise<void> {
    await this.client.publishAsync(topics.request(this.prefix, campaign, this.id), Buffer.from(payload), { qos: 1, ...(properties ? { properties } : {}) });
  }

  /** Publish raw bytes on any topic (malformed input tests). */
  async raw(topic: string, payload: Uint8Array | string): Promise<void> {
    await this.client.publishAsync(topic, typeof payload === 'string' ? payload : Buffer.from(payload), { qos: 1 });
  }

  async manifest(campaign: string, requestId: number): Promise<Msg> {
    await this.request(campaign, encodeManifestRequest({ campaign, requestId }));
    return this.replyTo(requestId);
  }

  async page(campaign: string, requestId: number, page: number): Promise<Msg> {
    await this.request(campaign, encodePageRequest({ campaign, requestId, page }));
    return this.replyTo(requestId);
  }

  /** Ask for ranges of blocks; resolves with one reply per block, or the first error reply. */
  async blocks(campaign: string, requestId: number, ranges: BlockRange[]): Promise<Msg[]> {
    const want = ranges.reduce((n, r) => n + r[1], 0);
    await this.request(campaign, encodeBlockRequest({ campaign, requestId, ranges }));
    const out: Msg[] = [];
    return new Promise((resolve, reject) => {
      const seen = new Set<Msg>();
      const step = () => {
        this.next((m) => !seen.has(m) && requestIdOf(m) === requestId).then((m) => {
          seen.add(m);
          if (m.type === 'errorReply') return resolve([m]);
          out.push(m);
          if (out.length === want) resolve(out);
          else step();
        }, reject);
      };
      step();
    });
  }

  async online(group: string, version = '1.0.0', counter = 1): Promise<void> {
    await this.status({ device: this.id, state: 'online', group, version, counter });
  }

  async status(e: StatusEvent): Promise<void> {
    await this.client.publishAsync(topics.status(this.prefix, this.id), Buffer.from(encodeStatusEvent(e)), { qos: 1 });
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

function requestIdOf(m: Msg): number | undefined {
  const parsers: Partial<Record<MessageType, (b: Uint8Array) => Result<{ value: { requestId?: number } }>>> = {
    manifestResponse: parseManifestResponse,
    pageResponse: parsePageResponse,
    blockResponse: parseBlockResponse,
    errorReply: parseErrorReply,
  };
  const p = m.type ? parsers[m.type] : undefined;
  if (!p) return undefined;
  const r = p(m.payload);
  return r.ok ? r.value.requestId : undefined;
}

export function errorOf(m: Msg): { code: number; index?: number; campaign?: string; requestId?: number } {
  const r = parseErrorReply(m.payload);
  if (!r.ok) throw new Error(`not an error reply: ${m.type}`);
  return r.value;
}

/**
 * The retained announcement of a group as a fresh subscriber sees it, or null for none. No timing:
 * one SUBSCRIBE names the announce topic and then a retained sentinel topic, and the broker sends
 * retained messages in the order of the filters, so once the sentinel is in, the announcement is too.
 */
export async function retainedAnnouncement(url: string, group: string, prefix = 'fwseal'): Promise<Announcement | null> {
  const client = await mqtt.connectAsync(url, { clientId: `test-ann-${Math.random().toString(36).slice(2, 8)}`, reconnectPeriod: 0 });
  const sentinel = `fwseal-test/sentinel/${Math.random().toString(36).slice(2, 8)}`;
  try {
    await client.publishAsync(sentinel, 'x', { qos: 1, retain: true });
    let announcement: Announcement | null = null;
    const got = new Promise<Announcement | null>((resolve) => {
      client.on('message', (topic, payload, packet) => {
        if (topic === sentinel) return resolve(announcement);
        if (!packet.retain || payload.length === 0) return;
        const a = parseAnnouncement(new Uint8Array(payload));
        announcement = a.ok ? a.value : null;
      });
    });
    await client.subscribeAsync({ [topics.announce(prefix, group)]: { qos: 1 }, [sentinel]: { qos: 1 } });
    const result = await got;
    await client.publishAsync(sentinel, '', { qos: 1, retain: true });
    return result;
  } finally {
    await client.endAsync(true);
  }
}

/** Poll `check` until it returns a value (bounded). */
export async function eventually<T>(
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
