/**
 * The server's request path (SPEC.md §12.9 "Requests", §12.5): the checks made before a request is
 * queued (Response Topic, size, queue bound), then answers in arrival order while the broker socket
 * keeps up; each answer goes out as replies or, flagged multicast, is held for other askers (§12.11).
 */
import { type MqttClient, type Packet } from 'mqtt';
import { CODES } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { topics } from '../../shared/ota/topics.js';
import { type AssetCache } from './assets.js';
import { errorFields, type ServerLog } from './log.js';
import { type Metrics } from './metrics.js';
import { type BlockMulticast } from './multicast.js';
import { type ReplyPublisher } from './reply-publisher.js';
import { type Answer, answer, errorReply, readableIds } from './requests.js';
import { type OtaStore } from './store.js';

/** Stop taking requests from the queue while this much is buffered on the broker socket. */
const SOCKET_HIGH_WATER = LIMITS.maxBrokerBacklogBytes;
/** Requests answered per turn of the event loop, so status events and HTTP keep flowing. */
const REQUESTS_PER_TURN = 64;

type BrokerStream = { writableLength?: number; once(e: 'drain', f: () => void): void; off(e: 'drain', f: () => void): void };

/**
 * Settles on the socket's `drain` or after `ms`, whichever comes first; the listener goes either way
 * (one left per wait would pile up on a long-lived socket: Node warns past 10 and keeps them all).
 */
export function drainOrTimeout(stream: BrokerStream, ms: number): Promise<void> {
  return new Promise<void>((resume) => {
    const done = () => {
      clearTimeout(timer);
      stream.off('drain', done);
      resume();
    };
    const timer = setTimeout(done, ms);
    timer.unref();
    stream.once('drain', done);
  });
}

type Queued = { topic: string; payload: Buffer; packet: Packet; campaign: string; device: string; received: bigint };

export type RequestQueueParts = {
  readonly client: MqttClient;
  readonly store: OtaStore;
  readonly assets: AssetCache;
  readonly prefix: string;
  readonly metrics: Metrics;
  readonly publisher: ReplyPublisher;
  /** Null when multicast is off (a coalesce window of 0). */
  readonly multicast: BlockMulticast | null;
  /** Requests waiting to be answered before new ones get SERVER_BUSY. */
  readonly maxQueued: number;
  readonly log: ServerLog;
};

export class RequestQueue {
  private readonly queue: Queued[] = [];
  private draining = false;
  private closed = false;
  /** The drain loop while it runs: close waits for the request being answered. */
  private running: Promise<void> = Promise.resolve();

  constructor(private readonly parts: RequestQueueParts) {}

  /** A request that arrived on `<prefix>/campaign/<campaign>/req/<device>`. */
  receive(topic: string, payload: Buffer, packet: Packet, campaign: string, device: string): void {
    const { metrics, publisher } = this.parts;
    // §12.4, §12.5: a Response Topic other than the device's own reply topic is refused, before any work.
    const wanted = (packet as { properties?: { responseTopic?: string } }).properties?.responseTopic;
    if (wanted !== undefined && wanted !== topics.reply(this.parts.prefix, device)) {
      metrics.refusedReplyTopic('response_topic');
      publisher.send([errorReply(CODES.REPLY_TOPIC_REFUSED, readableIds(payload))], packet, device, null);
      return;
    }
    if (payload.length > LIMITS.maxOtaMessageBytes) {
      metrics.malformedMessage('oversize');
      publisher.send([errorReply(CODES.BAD_REQUEST, {})], packet, device, null);
      return;
    }
    if (this.queue.length >= this.parts.maxQueued) {
      metrics.request('busy');
      publisher.send([errorReply(CODES.SERVER_BUSY, readableIds(payload))], packet, device, null);
      return;
    }
    this.queue.push({ topic, payload, packet, campaign, device, received: process.hrtime.bigint() });
    this.drain();
  }

  /** Answer queued requests while the broker socket keeps up; the queue bound turns overload into SERVER_BUSY. */
  private drain(): void {
    if (this.draining || this.closed) return;
    this.draining = true;
    this.running = this.answerAll().catch((e) => {
      this.draining = false;
      this.parts.log.error('request.queue-failed', errorFields(e), 'the request queue stopped on an error');
    });
  }

  /**
   * One request after the other, in arrival order (each answer awaited before the next, so replies
   * leave in that order), REQUESTS_PER_TURN per turn of the event loop.
   */
  private async answerAll(): Promise<void> {
    for (;;) {
      let budget = REQUESTS_PER_TURN;
      while (this.queue.length > 0 && budget-- > 0 && !this.closed) {
        const stream = (this.parts.client as unknown as { stream?: BrokerStream }).stream;
        if (stream && (stream.writableLength ?? 0) > SOCKET_HIGH_WATER) {
          await drainOrTimeout(stream, 50);
          budget = REQUESTS_PER_TURN;
          continue;
        }
        await this.answerOne(this.queue.shift()!);
      }
      if (this.queue.length === 0 || this.closed) {
        this.draining = false;
        return;
      }
      await new Promise<void>((next) => setImmediate(next));
    }
  }

  private async answerOne(q: Queued): Promise<void> {
    const { store, assets, metrics, publisher, multicast } = this.parts;
    let a: Answer;
    try {
      a = await answer(store, assets, q.campaign, q.device, topics.reply(this.parts.prefix, q.device), q.payload);
      // Served a manifest: the device's status events for the campaign may now count (§12.9), recorded before the reply goes.
      if (a.kind === 'manifest') await store.recordFetch(q.campaign, q.device);
    } catch (e) {
      this.parts.log.error('request.failed', { topic: q.topic, ...errorFields(e) }, `request on ${q.topic} failed; answered SERVER_BUSY`);
      a = { replies: [errorReply(CODES.SERVER_BUSY, readableIds(q.payload))], malformed: false, kind: 'error' };
    }
    metrics.request(a.kind);
    // A device asking for pages is downloading and listens on the data topic: part of the multicast audience (SPEC.md §12.11).
    if (multicast && a.kind === 'page') multicast.saw(q.campaign, q.device);
    if (a.malformed) metrics.malformedMessage('request');
    if (a.refused) metrics.refusedReplyTopic('payload');
    if (a.multicast && multicast) multicast.gather(a, q);
    else publisher.send(a.replies, q.packet, q.device, a.kind === 'block' ? q.received : null);
  }

  close(): void {
    this.closed = true;
    this.queue.length = 0;
  }

  /** Settles when the request being answered is done (before the store closes). */
  settled(): Promise<void> {
    return this.running;
  }
}
