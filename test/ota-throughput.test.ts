/**
 * The request path under overload (SPEC.md §12.9 "Requests"): a full queue holds the MQTT reader so
 * the broker keeps the next requests, instead of answering them SERVER_BUSY at once (each such reply a
 * device's backoff and retry); every request is answered once; the reader is let go at half, and a
 * queue that stays full past READER_HOLD_MS is shed with SERVER_BUSY again. And replies published
 * into a congested broker socket leave no `drain` listener per reply behind; wave steps brought forward
 * by status events keep a distance that grows with what a step costs.
 */
import { createServer, type Server, type Socket } from 'node:net';
import mqtt, { type MqttClient, type Packet } from 'mqtt';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type AssetCache } from '../host/ota/assets.js';
import { Metrics } from '../host/ota/metrics.js';
import { ReplyPublisher } from '../host/ota/reply-publisher.js';
import { READER_HOLD_MS, RequestQueue, STALE_REQUEST_MS } from '../host/ota/request-queue.js';
import { type Answer } from '../host/ota/requests.js';
import { StatusIngest, TICK_COST_FACTOR } from '../host/ota/status-ingest.js';
import { type CampaignGate, type OtaStore } from '../host/ota/store.js';
import { CODES } from '../shared/codes.js';
import { encodeManifestRequest, encodeManifestResponse, parseErrorReply } from '../shared/ota/messages.js';
import { ROLLOUT_ALL } from '../shared/ota/topics.js';
import { settle } from './support/ota-fakes.js';

const CAMPAIGN = 'c1';

/** A store whose campaign gate settles only when the test lets it: the slow database. */
function slowStore() {
  const waiting: (() => void)[] = [];
  const gate: CampaignGate = { id: CAMPAIGN, state: 'running', rollout: ROLLOUT_ALL, halt_code: null };
  const store = {
    gate: () => new Promise<CampaignGate>((resolve) => waiting.push(() => resolve(gate))),
    recordFetch: async () => undefined,
  } as unknown as OtaStore;
  const release = (n: number) => {
    for (const f of waiting.splice(0, n)) f();
  };
  /** The newest waiting gate first: a database that answers out of order. */
  const releaseNewest = () => waiting.pop()?.();
  return { store, waiting, release, releaseNewest };
}

/** What the queue published, per device: the manifest replies and the error codes. */
function recorder() {
  const manifests: string[] = [];
  const errors: number[] = [];
  const publisher = {
    send: (replies: Answer['replies'], _packet: Packet, device: string) => {
      for (const r of replies) {
        const e = parseErrorReply(r.payload);
        if (e.ok) errors.push(e.value.code);
        else manifests.push(device);
      }
    },
    turnCork: () => undefined, // no socket here
  } as unknown as ReplyPublisher;
  return { publisher, manifests, errors };
}

/** One answer prepared at a time unless `pipeline` says otherwise, so the queue's length is what the test counts. */
function queueOn(store: OtaStore, publisher: ReplyPublisher, maxQueued: number, pipeline = 1): RequestQueue {
  const envelope = new Uint8Array([0xa0]);
  const manifestResponse = (requestId: number) => encodeManifestResponse({ campaign: CAMPAIGN, requestId, manifest: envelope });
  const assets = { get: async () => ({ envelope, manifestResponse }) } as unknown as AssetCache;
  const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };
  return new RequestQueue({
    client: {} as MqttClient,
    store,
    assets,
    prefix: 'fwseal',
    metrics: new Metrics(),
    publisher,
    multicast: null,
    maxQueued,
    pipeline,
    log: { ...silent, child: () => ({ ...silent, child: () => silent }) } as never,
  });
}

/** What mqtt.js does for a request (QoS 1): the message event (`receive`), then handleMessage (`admit`) reads the next packet. */
function burst(queue: RequestQueue, n: number): { readonly read: () => number } {
  let read = 0;
  const readNext = () => {
    if (read >= n) return;
    const i = read++;
    const payload = Buffer.from(encodeManifestRequest({ campaign: CAMPAIGN, requestId: i }));
    queue.receive(`fwseal/campaign/${CAMPAIGN}/req/d-${i}`, payload, { cmd: 'publish' } as Packet, CAMPAIGN, `d-${i}`);
    queue.admit(readNext);
  };
  readNext();
  return { read: () => read };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('request queue under a burst', () => {
  it('holds the reader at the bound instead of answering SERVER_BUSY, and answers every request once', async () => {
    const slow = slowStore();
    const out = recorder();
    const queue = queueOn(slow.store, out.publisher, 4);
    const b = burst(queue, 20);
    await settle();
    // One request being answered (its gate waiting) and four queued: the reader is held, the broker keeps the rest.
    expect(b.read()).toBe(5);
    expect(queue.pending).toBe(4);
    expect(queue.holding).toBe(1);
    expect(out.errors).toEqual([]);
    for (let i = 0; i < 30 && out.manifests.length < 20; i++) {
      slow.release(1);
      await settle();
    }
    expect(b.read()).toBe(20);
    expect(out.errors).toEqual([]); // before the hold: 15 of these 20 were SERVER_BUSY
    expect(out.manifests.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `d-${i}`).sort());
    expect(queue.holding).toBe(0);
    expect(queue.pending).toBe(0);
  });

  it('lets the reader go only once the queue is down to half', async () => {
    const slow = slowStore();
    const out = recorder();
    const queue = queueOn(slow.store, out.publisher, 4);
    const b = burst(queue, 20);
    await settle();
    slow.release(1); // 3 queued: above half
    await settle();
    expect(b.read()).toBe(5);
    expect(queue.holding).toBe(1);
    slow.release(1); // 2 queued: half
    await settle();
    expect(queue.holding).toBe(1); // read again up to the bound, and held there again
    expect(b.read()).toBe(7);
    expect(queue.pending).toBe(4);
  });

  it('sheds with SERVER_BUSY when the queue stays full past READER_HOLD_MS, and holds again once down to half', async () => {
    vi.useFakeTimers();
    const slow = slowStore();
    const out = recorder();
    const queue = queueOn(slow.store, out.publisher, 4);
    const b = burst(queue, 12);
    await settle();
    expect(b.read()).toBe(5);
    vi.advanceTimersByTime(READER_HOLD_MS);
    await settle();
    // The stalled queue no longer holds the reader: the other 7 are answered SERVER_BUSY at once (the devices back off).
    expect(b.read()).toBe(12);
    expect(out.errors).toEqual(Array(7).fill(CODES.SERVER_BUSY));
    expect(queue.holding).toBe(0);
    for (let i = 0; i < 10; i++) {
      slow.release(1);
      await settle();
    }
    expect(out.manifests).toHaveLength(5);
    // Down to half: a new burst is held again, not shed.
    const again = burst(queue, 8);
    await settle();
    expect(again.read()).toBe(5);
    expect(queue.holding).toBe(1);
    expect(out.errors).toHaveLength(7);
  });

  it('close lets a held reader go (the client is ending) and leaves no timer', async () => {
    vi.useFakeTimers();
    const slow = slowStore();
    const queue = queueOn(slow.store, recorder().publisher, 1);
    burst(queue, 5);
    await settle();
    expect(queue.holding).toBe(1);
    expect(vi.getTimerCount()).toBe(1);
    queue.close();
    expect(queue.holding).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
    slow.release(10);
    await queue.settled();
  });

  it('prepares several answers at once (store round trips overlap) and still replies in arrival order', async () => {
    const slow = slowStore();
    const out = recorder();
    const queue = queueOn(slow.store, out.publisher, 100, 4);
    burst(queue, 6);
    await settle();
    expect(slow.waiting).toHaveLength(4); // four gates asked at once; the other two wait in the queue
    expect(queue.pending).toBe(2);
    for (let i = 0; i < 3; i++) slow.releaseNewest(); // d-3, d-2, d-1 answered by the store before d-0
    await settle();
    expect(out.manifests).toEqual([]);
    slow.release(1);
    await settle();
    expect(out.manifests).toEqual(['d-0', 'd-1', 'd-2', 'd-3']);
    slow.release(2);
    await settle();
    expect(out.manifests).toEqual(['d-0', 'd-1', 'd-2', 'd-3', 'd-4', 'd-5']);
  });

  it('answers a request that waited past STALE_REQUEST_MS SERVER_BUSY, with no store work (its device has asked again)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'hrtime'] });
    const slow = slowStore();
    const out = recorder();
    const queue = queueOn(slow.store, out.publisher, 100);
    burst(queue, 3);
    await settle();
    expect(slow.waiting).toHaveLength(1); // d-0's gate; d-1 and d-2 queued behind it
    vi.advanceTimersByTime(STALE_REQUEST_MS + 1);
    slow.release(1);
    await settle();
    expect(out.manifests).toEqual(['d-0']);
    expect(out.errors).toEqual([CODES.SERVER_BUSY, CODES.SERVER_BUSY]);
    expect(slow.waiting).toHaveLength(0); // no gate read for the stale two
  });

  it('keeps answering SERVER_BUSY at once with a bound of 0 (never holds)', async () => {
    const slow = slowStore();
    const out = recorder();
    const queue = queueOn(slow.store, out.publisher, 0);
    const b = burst(queue, 3);
    await settle();
    expect(b.read()).toBe(3);
    expect(out.errors).toEqual(Array(3).fill(CODES.SERVER_BUSY));
    expect(queue.holding).toBe(0);
  });
});

/** A broker that accepts one MQTT 3.1.1 connection (CONNACK) and then reads nothing more: its socket backs up. */
async function stalledBroker(): Promise<{ server: Server; url: string; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.once('data', () => {
      socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]));
      socket.pause();
    });
  });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  return { server, url: `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`, sockets };
}

describe('replies into a congested broker socket', () => {
  it('QoS 0 replies add no drain listener per reply, and each is counted as handed over', async () => {
    const broker = await stalledBroker();
    const client = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
    try {
      const metrics = new Metrics();
      const publisher = new ReplyPublisher(client, 'fwseal', 0, false, metrics);
      const data = new Uint8Array(65536);
      const replies = Array.from({ length: 200 }, (_, block) => ({ payload: data, block, bytes: data.length }));
      publisher.send(replies, { cmd: 'publish' } as Packet, 'd1', process.hrtime.bigint());
      const stream = (client as unknown as { stream: Socket }).stream;
      expect(stream.writableLength).toBeGreaterThan(stream.writableHighWaterMark); // the socket is backed up
      // Before: one `drain` listener per reply (mqtt.js parks a publish callback there), 200 here, thousands under a herd.
      expect(stream.listenerCount('drain')).toBeLessThan(5);
      expect(metrics.blocksServed).toBe(200);
    } finally {
      client.end(true);
      for (const s of broker.sockets) s.destroy();
      broker.server.close();
    }
  });
});

describe('wave steps brought forward by status events', () => {
  it('wait TICK_COST_FACTOR times as long as the last step took, so a large campaign does not spend its CPU re-reading itself', async () => {
    vi.useFakeTimers();
    const STEP_MS = 50;
    let steps = 0;
    // A step that reads a large campaign: the clock moves STEP_MS while it runs.
    const store = {
      campaigns: async () => {
        steps++;
        vi.setSystemTime(Date.now() + STEP_MS);
        return [];
      },
    } as unknown as OtaStore;
    const ingest = new StatusIngest({ store, metrics: new Metrics(), maxDevices: 10, announce: async () => undefined, log: () => undefined });
    await ingest.tick();
    expect(steps).toBe(1);
    ingest.scheduleTick(); // a device confirmed
    await vi.advanceTimersByTimeAsync(TICK_COST_FACTOR * STEP_MS - STEP_MS - 1);
    expect(steps).toBe(1); // before: the next step 100 ms after the last one began
    await vi.advanceTimersByTimeAsync(1);
    expect(steps).toBe(2);
    ingest.close();
  });
});
