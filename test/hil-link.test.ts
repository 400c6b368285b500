/**
 * The serial link emulator (hil/link.ts) on a virtual clock: pacing, latency, faults within
 * statistical bounds for fixed seeds, cut cable. No assertion looks at the wall clock.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { seededRandom, VirtualClock } from '../hil/clock.js';
import { bridge, Link } from '../hil/link.js';
import { SmpClient, SmpServer } from '../hil/smp-endpoint.js';
import { UploadReceiver, uploadImage } from '../hil/upload.js';
import { LIMITS } from '../shared/limits.js';
import { echo, imageUpload, reset, status } from '../shared/smp/commands.js';
import { ConsoleDecoder, consoleFrameWireBytes, encodeConsoleFrame } from '../shared/smp/console.js';
import { MGMT_ERR } from '../shared/smp/errors.js';
import { encodeRequest } from '../shared/smp/messages.js';
import { chunkCapacity } from '../shared/smp/upload.js';

function setup(options: ConstructorParameters<typeof Link>[1]) {
  const clock = new VirtualClock();
  const link = new Link(clock, options);
  const atDevice: Uint8Array[] = [];
  const atHost: Uint8Array[] = [];
  link.device.onData((c) => atDevice.push(c));
  link.host.onData((c) => atHost.push(c));
  const count = (chunks: Uint8Array[]) => chunks.reduce((n, c) => n + c.length, 0);
  const bytes = (chunks: Uint8Array[]) => new Uint8Array(Buffer.concat(chunks));
  return { clock, link, atDevice, atHost, count, bytes };
}

const pattern = (n: number, seed = 0) => Uint8Array.from({ length: n }, (_, i) => (i * 13 + seed) & 0xff);

/** Binomial bounds: mean +- 5 standard deviations. */
function within5Sigma(observed: number, n: number, p: number) {
  const mean = n * p;
  const sd = Math.sqrt(n * p * (1 - p));
  expect(observed).toBeGreaterThanOrEqual(mean - 5 * sd);
  expect(observed).toBeLessThanOrEqual(mean + 5 * sd);
}

describe('virtual clock', () => {
  it('runs tasks in time order, ties in the order they were set, including tasks set by tasks', () => {
    const clock = new VirtualClock();
    const log: string[] = [];
    clock.setTimer(5, () => log.push(`b@${clock.now()}`));
    clock.setTimer(1, () => {
      log.push(`a@${clock.now()}`);
      clock.setTimer(1, () => log.push(`c@${clock.now()}`));
    });
    clock.setTimer(5, () => log.push(`d@${clock.now()}`));
    const cancel = clock.setTimer(3, () => log.push('never'));
    cancel();
    clock.advance(10);
    expect(log).toEqual(['a@1', 'c@2', 'b@5', 'd@5']);
    expect(clock.now()).toBe(10);
  });

  it('seeded random: same seed same sequence, uniform enough', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const xs = Array.from({ length: 10000 }, () => a());
    expect(xs.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b()));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
  });
});

describe('pacing', () => {
  it('115200 baud moves 11520 bytes per second (10 bits per byte)', () => {
    const { clock, link, atDevice, count } = setup({ baud: 115200, deliveryIntervalMs: 0 });
    link.host.write(pattern(20000));
    clock.advance(500.05);
    expect(count(atDevice)).toBe(5760);
    clock.advance(500);
    expect(count(atDevice)).toBe(11520);
    clock.runUntilIdle();
    expect(count(atDevice)).toBe(20000);
    expect(clock.now()).toBeCloseTo((20000 * 10 * 1000) / 115200, 6);
  });

  it('921600 baud moves 1 MiB in 11.38 s of line time, not 25 ms', () => {
    const { clock, link, atDevice, count, bytes } = setup({ baud: 921600 });
    const data = pattern(1 << 20);
    link.host.write(data);
    clock.advance(25);
    expect(count(atDevice)).toBeLessThan(2400);
    clock.runUntilIdle();
    // The last byte's stop bit at 1 MiB x 10 bits / 921600 baud; its hand-over within one delivery interval.
    expect(clock.now()).toBeGreaterThanOrEqual(((1 << 20) * 10_000) / 921600);
    expect(clock.now()).toBeLessThanOrEqual(((1 << 20) * 10_000) / 921600 + 1);
    expect(Buffer.from(bytes(atDevice)).equals(data)).toBe(true); // (toEqual walks 1 MiB element by element)
  });

  it('hands bytes over in batches of at most deliveryIntervalMs, the first at once', () => {
    const { clock, link, atDevice } = setup({ baud: 115200, deliveryIntervalMs: 2 });
    link.host.write(pattern(1000));
    clock.runUntilIdle();
    expect(atDevice[0].length).toBe(1);
    for (const c of atDevice.slice(1, -1)) expect(c.length).toBeGreaterThanOrEqual(23); // 2 ms = 23.04 byte times
  });

  it('adds latency after the stop bit', () => {
    const { clock, link, atDevice, count } = setup({ baud: 115200, latencyMs: 5, deliveryIntervalMs: 0 });
    link.host.write(Uint8Array.of(1));
    clock.advance(5 + 10_000 / 115200 - 0.001);
    expect(count(atDevice)).toBe(0);
    clock.advance(0.002);
    expect(count(atDevice)).toBe(1);
  });

  it('queues writes behind each other and reports what is still waiting', () => {
    const { clock, link } = setup({ baud: 115200 });
    link.host.write(pattern(1152));
    link.host.write(pattern(1152));
    expect(link.host.pendingBytes()).toBe(2304);
    clock.advance(100);
    expect(link.host.pendingBytes()).toBe(1152);
    clock.advance(100);
    expect(link.host.pendingBytes()).toBe(0);
  });

  it('is full duplex: both directions at full rate at once', () => {
    const { clock, link, atDevice, atHost, count } = setup({ baud: 115200 });
    link.host.write(pattern(11520));
    link.device.write(pattern(11520, 1));
    clock.advance(1001); // + one delivery interval
    expect(count(atDevice)).toBe(11520);
    expect(count(atHost)).toBe(11520);
  });

  it('an SMP upload frame of the largest chunk takes its computed wire time (the framing ceiling)', () => {
    const { clock, link, atDevice } = setup({ baud: 115200, deliveryIntervalMs: 0 });
    const data = chunkCapacity(imageUpload, { off: 2 ** 20, data: new Uint8Array(0) });
    const packet = encodeRequest(imageUpload, { off: 2 ** 20, data: new Uint8Array(data) }, 0);
    expect(packet.length).toBe(LIMITS.maxSmpPacketBytes);
    const frame = encodeConsoleFrame(packet);
    expect(frame.length).toBe(consoleFrameWireBytes(packet.length));
    const decoder = new ConsoleDecoder();
    let doneAt = -1;
    link.device.onData((c) => {
      if (decoder.push(c).some((e) => e.ok)) doneAt = clock.now();
    });
    link.host.write(frame);
    clock.runUntilIdle();
    expect(atDevice.length).toBeGreaterThan(0);
    expect(doneAt).toBeCloseTo((frame.length * 10_000) / 115200, 6);
    const goodput = data / (doneAt / 1000);
    expect(goodput).toBeGreaterThan(8300);
    expect(goodput).toBeLessThan((11520 * 93) / 127);
  });
});

describe('faults', () => {
  const n = 100_000;

  it('drops bytes at the configured rate (fixed seed, within 5 sigma) and the same seed drops the same bytes', () => {
    const runs = [1, 1, 2].map((seed) => {
      const { clock, link, atDevice, count, bytes } = setup({ baud: 921600, seed, faults: { dropRate: 0.01 } });
      link.host.write(pattern(n));
      clock.runUntilIdle();
      const c = link.counters().hostToDevice;
      expect(c.dropped + count(atDevice)).toBe(n);
      within5Sigma(c.dropped, n, 0.01);
      return bytes(atDevice);
    });
    expect(Buffer.from(runs[0]).equals(runs[1])).toBe(true);
    expect(Buffer.from(runs[0]).equals(runs[2])).toBe(false);
  });

  it('flips bits at the configured rate per data bit', () => {
    const { clock, link, atDevice, bytes } = setup({ baud: 921600, seed: 3, faults: { bitErrorRate: 1e-3 } });
    const data = pattern(n);
    link.host.write(data);
    clock.runUntilIdle();
    const got = bytes(atDevice);
    let flips = 0;
    let corrupted = 0;
    for (let i = 0; i < n; i++) {
      let x = got[i] ^ data[i];
      if (x) corrupted++;
      while (x) {
        flips += x & 1;
        x >>= 1;
      }
    }
    const c = link.counters().hostToDevice;
    expect(c.bitFlips).toBe(flips);
    expect(c.corruptedBytes).toBe(corrupted);
    within5Sigma(flips, 8 * n, 1e-3);
  });

  it('faults apply per direction', () => {
    const { clock, link, atHost, count } = setup({ baud: 921600, hostToDevice: { dropRate: 0.5 } });
    link.device.write(pattern(10_000));
    clock.runUntilIdle();
    expect(count(atHost)).toBe(10_000);
    expect(link.counters().deviceToHost.dropped).toBe(0);
  });

  it('a noise burst overwrites data on the line and fills an idle line with garbage', () => {
    const { clock, link, atDevice, bytes } = setup({ baud: 115200, deliveryIntervalMs: 0 });
    link.host.write(new Uint8Array(100));
    clock.advance(10 * (10_000 / 115200)); // bytes 0..9 sent
    link.noiseBurst(5, 'hostToDevice');
    clock.runUntilIdle();
    const got = bytes(atDevice);
    expect(got.length).toBe(100);
    expect([...got.subarray(0, 10)].every((b) => b === 0)).toBe(true);
    expect([...got.subarray(15)].every((b) => b === 0)).toBe(true);
    expect(link.counters().hostToDevice.noiseBytes).toBe(5);
    link.noiseBurst(20, 'hostToDevice');
    clock.runUntilIdle();
    expect(bytes(atDevice).length).toBe(120);
  });

  it('noise bursts arrive as a Poisson process at the configured rate', () => {
    const { clock, link, atDevice, count } = setup({ baud: 115200, seed: 5, faults: { noiseBurstsPerSecond: 10, noiseBurstBytes: [4, 4] } });
    clock.advance(100_000); // 100 s: ~1000 bursts
    const c = link.counters().hostToDevice;
    expect(c.noiseBursts).toBeGreaterThan(1000 - 5 * Math.sqrt(1000));
    expect(c.noiseBursts).toBeLessThan(1000 + 5 * Math.sqrt(1000));
    // Overlapping bursts share slots: at most 4 bytes each reach the idle receiver.
    expect(count(atDevice)).toBeLessThanOrEqual(4 * c.noiseBursts);
    expect(count(atDevice)).toBeGreaterThan(0.9 * 4 * c.noiseBursts);
    link.close();
    expect(clock.pending).toBe(0);
  });

  it('SMP frames over a noisy, lossy link: the decoder drops and counts the damaged ones and reads the rest', () => {
    const { clock, link } = setup({ baud: 115200, seed: 9, faults: { dropRate: 1e-4, bitErrorRate: 1e-5, noiseBurstsPerSecond: 2 } });
    const decoder = new ConsoleDecoder();
    let good = 0;
    link.device.onData((c) => {
      for (const e of decoder.push(c))
        if (e.ok) {
          expect(e.packet).toEqual(encodeRequest(echo, { text: 'x'.repeat(200) }, e.packet[6]));
          good++;
        }
    });
    for (let i = 0; i < 500; i++) link.host.write(encodeConsoleFrame(encodeRequest(echo, { text: 'x'.repeat(200) }, i & 0xff)));
    clock.advance(60_000);
    const s = decoder.stats();
    expect(good).toBe(s.packets);
    expect(good).toBeGreaterThan(400);
    expect(good).toBeLessThan(500);
    link.close();
  });
});

describe('cut cable', () => {
  it('stops both directions: bytes not yet sent and bytes written while cut are lost; reconnect restores', () => {
    const { clock, link, atDevice, atHost, count } = setup({ baud: 115200, deliveryIntervalMs: 0 });
    link.host.write(pattern(11520));
    link.device.write(pattern(11520));
    clock.advance(500.05);
    link.cut();
    expect(link.isCut).toBe(true);
    link.host.write(pattern(100));
    clock.advance(2000);
    expect(count(atDevice)).toBe(5760);
    expect(count(atHost)).toBe(5760);
    expect(link.counters().hostToDevice.lostToCut).toBe(5760 + 100);
    link.reconnect();
    link.host.write(pattern(10));
    clock.runUntilIdle();
    expect(count(atDevice)).toBe(5770);
  });

  it('bytes already sent but still in the latency still arrive', () => {
    const { clock, link, atDevice, count } = setup({ baud: 115200, latencyMs: 50, deliveryIntervalMs: 0 });
    link.host.write(pattern(1152)); // 100 ms on the line
    clock.advance(100.01);
    link.cut();
    clock.runUntilIdle();
    expect(count(atDevice)).toBe(1152);
  });
});

describe('bridge', () => {
  it('joins a byte stream (serialport-shaped) to a link end, both ways, and comes apart', () => {
    const { clock, link, atHost, count } = setup({ baud: 115200 });
    const port = Object.assign(new EventEmitter(), {
      written: [] as Uint8Array[],
      write(c: Uint8Array) {
        this.written.push(c);
        return true;
      },
    });
    const undo = bridge(link.device, port);
    link.host.write(pattern(50));
    port.emit('data', pattern(30));
    clock.runUntilIdle();
    expect(port.written.reduce((s, c) => s + c.length, 0)).toBe(50);
    expect(count(atHost)).toBe(30);
    undo();
    port.emit('data', pattern(30));
    clock.runUntilIdle();
    expect(count(atHost)).toBe(30);
  });
});

/** A simulated device's SMP side with an in-memory slot: echo, status and image upload. */
function deviceOn(link: Link, slotBytes = 1 << 20) {
  let slot = new Uint8Array(0);
  const receiver = new UploadReceiver({
    begin: (len) => {
      if (len > slotBytes) return { rc: MGMT_ERR.ENOMEM };
      slot = new Uint8Array(len);
      return null;
    },
    write: (off, data) => {
      slot.set(data, off);
      return null;
    },
  });
  const server = new SmpServer(link.device)
    .handle(echo, (req) => ({ value: { text: req.text } }))
    .handle(status, () => ({ value: { slot: 0, version: '1.0.0', counter: 1, code: 0, phase: receiver.offset > 0 ? 'downloading' : 'idle' } }))
    .handle(imageUpload, (req) => receiver.handle(req));
  return { server, receiver, slot: () => slot };
}

const FRAMING_CEILING = (11520 * 93) / 127;

describe('SMP over the emulated link', () => {
  it('echo and status round trip; an unsupported command gets ENOTSUP; a dead link times out', async () => {
    const { clock, link } = setup({ baud: 115200, latencyMs: 2 });
    deviceOn(link);
    const client = new SmpClient(link.host, clock, { timeoutMs: 500 });
    const e = await clock.settle(client.request(echo, { text: 'hello' }));
    expect(e.ok && e.value).toEqual({ text: 'hello' });
    const s = await clock.settle(client.request(status, {}));
    expect(s.ok && s.value).toMatchObject({ version: '1.0.0', phase: 'idle' });
    const r = await clock.settle(client.request(reset, {}));
    expect(r.ok && r.smpError).toEqual({ rc: MGMT_ERR.ENOTSUP });
    link.cut();
    const t0 = clock.now();
    const dead = await clock.settle(client.request(echo, { text: 'anyone?' }));
    expect(dead.error).toBe('TRANSPORT_TIMEOUT');
    expect(clock.now() - t0).toBeCloseTo(500, 6);
    link.close();
  });

  it('uploads an image at >= 0.95 of the framing ceiling at 115200 baud (clean link, virtual clock)', async () => {
    const { clock, link } = setup({ baud: 115200, latencyMs: 1 });
    const device = deviceOn(link);
    const client = new SmpClient(link.host, clock);
    const image = pattern(128 * 1024, 5);
    const t0 = clock.now();
    const r = await clock.settle(uploadImage(client, image, { sha: new Uint8Array(32).fill(1) }));
    const seconds = (clock.now() - t0) / 1000;
    expect(r.ok && r.resent).toBe(0);
    expect(device.slot()).toEqual(image);
    const ratio = image.length / seconds / FRAMING_CEILING;
    expect(ratio).toBeGreaterThanOrEqual(0.95);
    expect(ratio).toBeLessThanOrEqual(0.992);
    link.close();
  });

  it('completes intact over a lossy link (1e-4 byte drops and bit errors, noise) with smaller chunks', async () => {
    const { clock, link } = setup({ baud: 115200, seed: 11, faults: { dropRate: 5e-5, bitErrorRate: 6e-6, noiseBurstsPerSecond: 0.5 } });
    const device = deviceOn(link);
    const client = new SmpClient(link.host, clock, { timeoutMs: 300 });
    const image = pattern(64 * 1024, 9);
    const t0 = clock.now();
    const r = await clock.settle(uploadImage(client, image, { chunkBytes: 435, window: 3, maxStalls: 50 }));
    expect(r.ok).toBe(true);
    expect(r.ok && r.resent).toBeGreaterThan(0);
    expect(device.slot()).toEqual(image);
    const ratio = image.length / ((clock.now() - t0) / 1000) / FRAMING_CEILING;
    expect(ratio).toBeGreaterThan(0.6);
    link.close();
  });

  it('resumes where the device stands after a cut cable', async () => {
    const { clock, link } = setup({ baud: 115200 });
    const device = deviceOn(link);
    const client = new SmpClient(link.host, clock, { timeoutMs: 1000 });
    const image = pattern(40 * 1024, 3);
    const sha = new Uint8Array(32).fill(3);
    clock.setTimer(2000, () => link.cut());
    const first = await clock.settle(uploadImage(client, image, { sha, maxStalls: 2 }));
    expect(first.error).toBe('TRANSPORT_TIMEOUT');
    const had = device.receiver.offset;
    expect(had).toBeGreaterThan(0);
    link.reconnect();
    const second = await clock.settle(uploadImage(client, image, { sha }));
    expect(second.ok && second.resumedAt).toBe(had);
    expect(device.slot()).toEqual(image);
    link.close();
  });
});
