/**
 * Backpressure on the server's input (SPEC.md §12.9 "Status ingest"): status events the store has
 * not taken yet are bounded by `maxStatusBacklog`; past it the server stops reading from the broker
 * (the next MQTT packet is read only once the backlog is down to half) and no event is dropped. And
 * the request queue's wait for a congested broker socket leaves no listener behind.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../host/ota/metrics.js';
import { drainOrTimeout } from '../host/ota/request-queue.js';
import { StatusIngest } from '../host/ota/status-ingest.js';
import { type OtaStore } from '../host/ota/store.js';
import { encodeStatusEvent } from '../shared/ota/status.js';
import { settle } from './support/ota-fakes.js';

/** A store whose recordOnline settles only when the test lets it: the slow database. */
function slowStore() {
  const waiting: (() => void)[] = [];
  const stored: string[] = [];
  const store = {
    recordOnline: (id: string) =>
      new Promise<boolean>((resolve) =>
        waiting.push(() => {
          stored.push(id);
          resolve(true);
        }),
      ),
  } as unknown as OtaStore;
  const release = (n: number) => {
    for (const f of waiting.splice(0, n)) f();
  };
  return { store, stored, waiting, release };
}

/** A status ingest over `store` whose backlog bound is `maxBacklog`. */
const ingestOn = (store: OtaStore, maxBacklog: number) =>
  new StatusIngest({ store, metrics: new Metrics(), maxDevices: 100, announce: async () => undefined, log: () => undefined, maxBacklog });

const online = (device: string) => Buffer.from(encodeStatusEvent({ device, state: 'online', group: 'g', version: '1.0.0', counter: 1 }));

describe('status backlog', () => {
  it('holds the reader past the bound, lets it go at half, and ingests every event', async () => {
    const slow = slowStore();
    const ingest = ingestOn(slow.store, 4);
    let read = 0;
    // What mqtt.js does: one packet at a time, the next only once the previous one's handleMessage callback ran.
    const readNext = () => {
      if (read >= 10) return;
      const i = read++;
      void ingest.receive(online(`d-${i}`), `d-${i}`);
      ingest.admit(readNext);
    };
    readNext();
    await settle();
    expect(read).toBe(4); // four in the backlog and the reader held: the broker keeps the rest
    expect(ingest.pending).toBe(4);
    slow.release(1);
    await settle();
    expect(read).toBe(4); // 3 pending: above half of 4
    slow.release(1);
    await settle();
    expect(read).toBe(6); // down to 2 = half: reading again until the bound
    expect(ingest.pending).toBe(4);
    for (let i = 0; i < 5; i++) {
      slow.release(10);
      await settle();
    }
    expect(read).toBe(10);
    expect(slow.stored.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `d-${i}`).sort());
    expect(ingest.pending).toBe(0);
  });

  it('close lets a held reader go (the client is ending)', async () => {
    const slow = slowStore();
    const ingest = ingestOn(slow.store, 1);
    void ingest.receive(online('a'), 'a');
    let released = false;
    ingest.admit(() => {
      released = true;
    });
    expect(released).toBe(false);
    ingest.close();
    expect(released).toBe(true);
    slow.release(1);
    await ingest.settled();
  });
});

describe('request queue: waiting for a congested broker socket', () => {
  it('removes its drain listener when the timeout wins and when the drain comes', async () => {
    const socket = new EventEmitter();
    for (let i = 0; i < 20; i++) await drainOrTimeout(socket, 1);
    expect(socket.listenerCount('drain')).toBe(0);
    const waiting = drainOrTimeout(socket, 60_000);
    expect(socket.listenerCount('drain')).toBe(1);
    socket.emit('drain');
    await waiting;
    expect(socket.listenerCount('drain')).toBe(0);
  });
});
