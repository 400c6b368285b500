/**
 * The server's request path (SPEC.md §12.9 "Requests", §12.5): the checks made before a request is
 * queued (Response Topic, size, queue bound), then answers in arrival order while the broker socket
 * keeps up; each answer goes out as replies or, flagged multicast, is held for other askers (§12.11).
 * Answers are prepared a few at once (PIPELINE_DEPTH) and published in arrival order; a request older
 * than STALE_REQUEST_MS gets SERVER_BUSY without store work. `admit`, when the client's handleMessage
 * calls it, holds the MQTT reader while the queue is full (as status ingest does), so a burst waits in
 * the broker; SERVER_BUSY is then left for a queue that stays full past READER_HOLD_MS.
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
/**
 * Longest the reader stays held for a full queue. Held, the server reads nothing else from the broker
 * either (status events, root requests, PINGRESP); a queue that does not drain for this long (a stalled
 * store or broker socket) is shed with SERVER_BUSY instead, until it is down to half.
 */
export const READER_HOLD_MS = 1000;
/**
 * A request that waited this long in the queue is answered SERVER_BUSY without store work: its device
 * has asked again by now (a request unanswered within its time-out, 5 s by default, is sent again:
 * SPEC.md §12.3 step 4) and drops an answer to the older one, so under overload a FIFO of such work
 * would answer nobody in time. The busy reply costs no store call and makes the device back off.
 */
export const STALE_REQUEST_MS = 5000;
/**
 * Requests whose answers are being prepared at once (store reads: a campaign gate, a fetch record);
 * replies still leave in arrival order. With PostgreSQL a gate is a round trip: one at a time bounded
 * an instance to one request per round trip.
 */
export const PIPELINE_DEPTH = 8;

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

const STALE_NS = BigInt(STALE_REQUEST_MS) * 1_000_000n;

const busyAnswer = (q: { payload: Buffer }): Answer => ({ replies: [errorReply(CODES.SERVER_BUSY, readableIds(q.payload))], malformed: false, kind: 'error' });

type Queued = { topic: string; payload: Buffer; packet: Packet; campaign: string; device: string; received: bigint };
/** A request taken from the queue and its answer being prepared. */
type Preparing = { readonly q: Queued; readonly answer: Promise<Answer>; readonly stale: boolean };

export type RequestQueueParts = {
  readonly client: MqttClient;
  readonly store: OtaStore;
  readonly assets: AssetCache;
  readonly prefix: string;
  readonly metrics: Metrics;
  readonly publisher: ReplyPublisher;
  /** Null when multicast is off (a coalesce window of 0). */
  readonly multicast: BlockMulticast | null;
  /** Requests waiting to be answered: at this bound the reader is held, and past it (reader not held) new ones get SERVER_BUSY. */
  readonly maxQueued: number;
  /** Answers prepared at once (default PIPELINE_DEPTH). */
  readonly pipeline?: number;
  readonly log: ServerLog;
};

export class RequestQueue {
  private readonly queue: Queued[] = [];
  private draining = false;
  private closed = false;
  /** The drain loop while it runs: close waits for the request being answered. */
  private running: Promise<void> = Promise.resolve();
  /** Requests taken from the queue whose answers are being prepared, in arrival order. */
  private readonly ahead: Preparing[] = [];
  /** Readers held by `admit` while the queue is full: released once it is down to half. */
  private held: (() => void)[] = [];
  private holdTimer: NodeJS.Timeout | null = null;
  /** The queue stayed full past READER_HOLD_MS: no reader is held (the overflow gets SERVER_BUSY) until it is down to half. */
  private shedding = false;

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
    if (this.draining) this.fill();
    else this.drain();
  }

  /** Requests waiting to be answered. */
  get pending(): number {
    return this.queue.length;
  }

  /** Readers held now (0 or 1 with mqtt.js, which reads one packet at a time). */
  get holding(): number {
    return this.held.length;
  }

  /**
   * Called for every MQTT message once it was handed over (mqtt.js handleMessage, after `receive`):
   * `next` reads the next packet and acknowledges this one. Held while the queue is full, so the broker
   * keeps the requests the server cannot answer yet instead of the devices getting SERVER_BUSY and
   * asking again (SPEC.md §12.9 "Requests"); every held reader goes on at half, or after READER_HOLD_MS.
   */
  admit(next: () => void): void {
    this.parts.publisher.turnCork(); // `next` writes this packet's PUBACK: with the turn's other writes (reply-publisher.ts)
    if (this.closed || this.shedding || this.queue.length < Math.max(1, this.parts.maxQueued)) return next();
    this.held.push(next);
    this.holdTimer ??= setTimeout(() => {
      this.shedding = true;
      this.parts.log.warn('request.shedding', { pending: this.queue.length }, 'request queue full for too long; shedding with SERVER_BUSY');
      this.releaseHeld();
    }, READER_HOLD_MS);
    this.holdTimer.unref();
  }

  /** Requests were taken from the queue: at half, held readers go on and shedding stops. */
  private dequeued(): void {
    if (this.queue.length > this.parts.maxQueued >> 1) return;
    this.shedding = false;
    if (this.held.length > 0) this.releaseHeld();
  }

  private releaseHeld(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const held = this.held;
    this.held = [];
    for (const next of held) next();
  }

  /** Answer queued requests while the broker socket keeps up; a full queue holds the reader (`admit`). */
  private drain(): void {
    if (this.draining || this.closed) return;
    this.draining = true;
    this.running = this.answerAll().catch((e) => {
      this.draining = false;
      this.parts.log.error('request.queue-failed', errorFields(e), 'the request queue stopped on an error');
    });
  }

  /**
   * Requests in arrival order, up to `pipeline` answers prepared at once and each published once the
   * ones before it were (so replies leave in that order), REQUESTS_PER_TURN per turn of the event loop.
   */
  private async answerAll(): Promise<void> {
    const ahead = this.ahead;
    for (;;) {
      let budget = REQUESTS_PER_TURN;
      while ((this.queue.length > 0 || ahead.length > 0) && budget-- > 0 && !this.closed) {
        const stream = (this.parts.client as unknown as { stream?: BrokerStream }).stream;
        if (stream && (stream.writableLength ?? 0) > SOCKET_HIGH_WATER) {
          await drainOrTimeout(stream, 50);
          budget = REQUESTS_PER_TURN;
          continue;
        }
        this.fill();
        // Left in `ahead` while awaited: it counts against the pipeline until its reply is out.
        const a = await ahead[0]!.answer;
        const p = ahead.shift()!;
        if (p.stale) this.parts.metrics.request('busy');
        this.reply(p.q, a, !p.stale);
      }
      if (this.closed) await Promise.all(ahead.splice(0).map((p) => p.answer)); // their store calls end before the store closes
      if ((this.queue.length === 0 && ahead.length === 0) || this.closed) {
        this.draining = false;
        return;
      }
      await new Promise<void>((next) => setImmediate(next));
    }
  }

  /** Start preparing answers from the queue until `pipeline` are under way (also as requests arrive, not only between replies). */
  private fill(): void {
    const depth = Math.max(1, this.parts.pipeline ?? PIPELINE_DEPTH);
    let took = false;
    while (this.ahead.length < depth && this.queue.length > 0 && !this.closed) {
      const q = this.queue.shift()!;
      const stale = process.hrtime.bigint() - q.received > STALE_NS;
      this.ahead.push({ q, stale, answer: stale ? Promise.resolve(busyAnswer(q)) : this.prepare(q) });
      took = true;
    }
    // After the loop: a released reader delivers the next request synchronously, and that receive fills too.
    if (took) this.dequeued();
  }

  /** The answer to one request, from the store and the assets; a failure is answered SERVER_BUSY (never rejects). */
  private async prepare(q: Queued): Promise<Answer> {
    const { store, assets } = this.parts;
    try {
      const a = await answer(store, assets, q.campaign, q.device, topics.reply(this.parts.prefix, q.device), q.payload);
      // Served a manifest: the device's status events for the campaign may now count (§12.9), recorded before the reply goes.
      if (a.kind === 'manifest') await store.recordFetch(q.campaign, q.device);
      return a;
    } catch (e) {
      this.parts.log.error('request.failed', { topic: q.topic, ...errorFields(e) }, `request on ${q.topic} failed; answered SERVER_BUSY`);
      return busyAnswer(q);
    }
  }

  /** `counted`: false for a stale request, already counted as busy. */
  private reply(q: Queued, a: Answer, counted = true): void {
    const { metrics, publisher, multicast } = this.parts;
    if (counted) metrics.request(a.kind);
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
    this.releaseHeld();
  }

  /** Settles when the request being answered is done (before the store closes). */
  settled(): Promise<void> {
    return this.running;
  }
}
