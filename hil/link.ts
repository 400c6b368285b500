/**
 * A serial link emulator between a host end and a device end (issue 6, "Link emulator"): what a
 * pseudo-terminal pair does not give (socat moves 1 MiB in ~25 ms), a UART line at a baud rate with
 * the faults of a real one. Deterministic: time comes from an injected Scheduler (a VirtualClock in
 * tests and the bench), randomness from a seed, so a failing run replays exactly.
 *
 * Model, per direction:
 *  - Pacing: 8N1 framing, 10 bit times per byte; a byte written at t starts when the line is free
 *    and arrives `latencyMs` after its stop bit. Writes never block; bytes queue on the line.
 *  - The receiving UART hands bytes over in batches at most every `deliveryIntervalMs` (a FIFO
 *    timeout), the first byte after a quiet period at once.
 *  - Byte drops (`dropRate`, e.g. an RX overrun): the byte used its wire time but never arrives.
 *  - Bit errors (`bitErrorRate`, per data bit, independent): flipped bits; start/stop bits are not
 *    modelled (a framing error would show up as a corrupted byte anyway).
 *  - Noise bursts (`noiseBurstsPerSecond`, Poisson; each `noiseBurstBytes` byte times long): every
 *    byte slot in the burst carries garbage: data on the line is overwritten, an idle line receives
 *    random bytes (and data written during such a burst waits for its end).
 *  - Cut cable (`cut()`): both directions stop; bytes not yet fully sent and everything written
 *    while cut are lost; bytes already sent still arrive. `reconnect()` restores the line. No event
 *    tells either end, as with a real cable and a killed socat: ends find out by timeouts.
 */
import { type Scheduler, seededRandom } from './clock.js';

export type LinkFaults = {
  /** Probability that a byte is lost. */
  readonly dropRate?: number;
  /** Probability that a data bit is flipped. */
  readonly bitErrorRate?: number;
  /** Mean noise bursts per second (a Poisson process). */
  readonly noiseBurstsPerSecond?: number;
  /** Length of a burst in byte times, uniform in [min, max] (default [1, 16]). */
  readonly noiseBurstBytes?: readonly [min: number, max: number];
};

export type LinkOptions = {
  /** Bits per second, e.g. 115200 (11520 bytes/s at 10 bits per byte). */
  readonly baud: number;
  /** Added one-way latency (USB-serial adapters add ~1-16 ms). Default 0. */
  readonly latencyMs?: number;
  /** Batching of the receiving side, in ms. Default 1; 0 hands over every byte on its own. */
  readonly deliveryIntervalMs?: number;
  /** Seed of the fault pattern. Default 1. */
  readonly seed?: number;
  /** Faults of both directions, unless overridden per direction. */
  readonly faults?: LinkFaults;
  readonly hostToDevice?: LinkFaults;
  readonly deviceToHost?: LinkFaults;
};

export type Direction = 'hostToDevice' | 'deviceToHost';

export type DirectionCounters = {
  /** Bytes handed to write(). */
  readonly written: number;
  /** Bytes handed to the receiving end (data and noise). */
  readonly delivered: number;
  readonly dropped: number;
  readonly bitFlips: number;
  /** Data bytes with at least one flipped bit. */
  readonly corruptedBytes: number;
  /** Byte slots that carried noise (overwritten data and garbage on an idle line). */
  readonly noiseBytes: number;
  readonly noiseBursts: number;
  /** Bytes lost to a cut cable. */
  readonly lostToCut: number;
};

/** One end of the link, shaped like the data side of a serial port. */
export interface LinkEnd {
  /** Queue bytes on the line (copied); ignored after close(). */
  write(bytes: Uint8Array): void;
  /** Receive bytes; returns a function that removes the listener. */
  onData(listener: (chunk: Uint8Array) => void): () => void;
  /** Bytes written by this end that have not finished crossing the wire (for back-pressure). */
  pendingBytes(): number;
}

/** One direction: a paced line with faults into a receiver. */
class Line {
  private readonly byteMs: number;
  private lineFreeAt = 0;
  // Bytes on their way, in arrival order: arrival times and values (head index, compacted).
  private times: number[] = [];
  private values: number[] = [];
  private head = 0;
  private cancelDelivery: (() => void) | null = null;
  private lastDelivery = Number.NEGATIVE_INFINITY;
  private cancelNoise: (() => void) | null = null;
  private readonly random: () => number;
  private bitsToNextError = Number.POSITIVE_INFINITY;
  private faults: LinkFaults = {};
  readonly listeners = new Set<(chunk: Uint8Array) => void>();
  isCut = false;
  closed = false;

  written = 0;
  delivered = 0;
  dropped = 0;
  bitFlips = 0;
  corruptedBytes = 0;
  noiseBytes = 0;
  noiseBursts = 0;
  lostToCut = 0;

  constructor(
    private readonly clock: Scheduler,
    baud: number,
    private readonly latencyMs: number,
    private readonly intervalMs: number,
    seed: number,
    faults: LinkFaults,
  ) {
    this.byteMs = 10_000 / baud;
    this.random = seededRandom(seed);
    this.setFaults(faults);
  }

  setFaults(faults: LinkFaults): void {
    for (const [name, p] of [
      ['dropRate', faults.dropRate],
      ['bitErrorRate', faults.bitErrorRate],
    ] as const) {
      if (p !== undefined && !(p >= 0 && p <= 1)) throw new RangeError(`${name} must be in [0, 1]`);
    }
    if (faults.noiseBurstsPerSecond !== undefined && !(faults.noiseBurstsPerSecond >= 0)) throw new RangeError('noiseBurstsPerSecond must be >= 0');
    const [lo, hi] = faults.noiseBurstBytes ?? [1, 16];
    if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 1 && hi >= lo)) throw new RangeError('noiseBurstBytes must be integers 1 <= min <= max');
    this.faults = { ...faults };
    this.bitsToNextError = this.errorGap();
    this.cancelNoise?.();
    this.cancelNoise = null;
    this.scheduleNoise();
  }

  /** Correct bits before the next flipped one: geometric with p = bitErrorRate. */
  private errorGap(): number {
    const p = this.faults.bitErrorRate ?? 0;
    if (p <= 0) return Number.POSITIVE_INFINITY;
    if (p >= 1) return 0;
    return Math.floor(Math.log(1 - this.random()) / Math.log(1 - p));
  }

  pendingBytes(): number {
    return Math.max(0, Math.ceil((this.lineFreeAt - this.clock.now()) / this.byteMs - 1e-9));
  }

  write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.written += bytes.length;
    if (this.isCut) {
      this.lostToCut += bytes.length;
      return;
    }
    const start = Math.max(this.clock.now(), this.lineFreeAt);
    const dropRate = this.faults.dropRate ?? 0;
    for (let i = 0; i < bytes.length; i++) {
      let b = bytes[i];
      if (this.bitsToNextError < 8) {
        let pos = this.bitsToNextError;
        let flips = 0;
        while (pos < 8) {
          b ^= 1 << pos;
          flips++;
          pos += 1 + this.errorGap();
        }
        this.bitsToNextError = pos - 8;
        this.bitFlips += flips;
        this.corruptedBytes++;
      } else {
        this.bitsToNextError -= 8;
      }
      if (dropRate > 0 && this.random() < dropRate) {
        this.dropped++;
        continue;
      }
      this.times.push(start + (i + 1) * this.byteMs + this.latencyMs);
      this.values.push(b);
    }
    this.lineFreeAt = start + bytes.length * this.byteMs;
    this.scheduleDelivery();
  }

  /** A burst of `slots` byte times of noise starting now. */
  noiseBurst(slots: number): void {
    if (this.closed || this.isCut || slots <= 0) return;
    const now = this.clock.now();
    const end = now + slots * this.byteMs;
    this.noiseBursts++;
    // Data whose slot starts within the burst is overwritten.
    for (let k = this.times.length - 1; k >= this.head; k--) {
      const slotStart = this.times[k] - this.latencyMs - this.byteMs;
      if (slotStart < now - 1e-9) break;
      if (slotStart < end - 1e-9) {
        this.values[k] = Math.floor(this.random() * 256);
        this.noiseBytes++;
      }
    }
    // The idle rest of the burst arrives as garbage.
    let t = Math.max(now, this.lineFreeAt);
    while (t + this.byteMs <= end + 1e-9) {
      this.times.push(t + this.byteMs + this.latencyMs);
      this.values.push(Math.floor(this.random() * 256));
      this.noiseBytes++;
      t += this.byteMs;
    }
    this.lineFreeAt = Math.max(this.lineFreeAt, t);
    this.scheduleDelivery();
  }

  private scheduleNoise(): void {
    const rate = this.faults.noiseBurstsPerSecond ?? 0;
    if (rate <= 0 || this.closed) return;
    const delayMs = (-Math.log(1 - this.random()) / rate) * 1000;
    this.cancelNoise = this.clock.setTimer(delayMs, () => {
      this.cancelNoise = null;
      const [lo, hi] = this.faults.noiseBurstBytes ?? [1, 16];
      this.noiseBurst(lo + Math.floor(this.random() * (hi - lo + 1)));
      this.scheduleNoise();
    });
  }

  cut(): void {
    this.isCut = true;
    const now = this.clock.now();
    // Bytes whose stop bit had not gone out are lost; those already sent are in the receiver's hands.
    let keep = this.times.length;
    while (keep > this.head && this.times[keep - 1] - this.latencyMs > now + 1e-9) keep--;
    this.lostToCut += this.times.length - keep;
    this.times.length = keep;
    this.values.length = keep;
    this.lineFreeAt = Math.min(this.lineFreeAt, now);
  }

  reconnect(): void {
    this.isCut = false;
  }

  close(): void {
    this.closed = true;
    this.cancelDelivery?.();
    this.cancelNoise?.();
    this.cancelDelivery = this.cancelNoise = null;
    this.listeners.clear();
  }

  private scheduleDelivery(): void {
    if (this.cancelDelivery !== null || this.head >= this.times.length || this.closed) return;
    const at = Math.max(this.times[this.head], this.lastDelivery + this.intervalMs);
    this.cancelDelivery = this.clock.setTimer(at - this.clock.now(), () => this.deliver());
  }

  private deliver(): void {
    this.cancelDelivery = null;
    const now = this.clock.now();
    let end = this.head;
    while (end < this.times.length && this.times[end] <= now + 1e-9) end++;
    if (end > this.head) {
      const chunk = Uint8Array.from(this.values.slice(this.head, end));
      this.head = end;
      if (this.head > 4096 && this.head * 2 > this.times.length) {
        this.times = this.times.slice(this.head);
        this.values = this.values.slice(this.head);
        this.head = 0;
      }
      this.delivered += chunk.length;
      this.lastDelivery = now;
      for (const listener of [...this.listeners]) listener(chunk);
    }
    this.scheduleDelivery();
  }

  counters(): DirectionCounters {
    const { written, delivered, dropped, bitFlips, corruptedBytes, noiseBytes, noiseBursts, lostToCut } = this;
    return Object.freeze({ written, delivered, dropped, bitFlips, corruptedBytes, noiseBytes, noiseBursts, lostToCut });
  }
}

/** A host end and a device end joined by two paced, faulty lines. */
export class Link {
  readonly host: LinkEnd;
  readonly device: LinkEnd;
  private readonly lines: Record<Direction, Line>;

  constructor(clock: Scheduler, options: LinkOptions) {
    if (!(Number.isFinite(options.baud) && options.baud > 0)) throw new RangeError('baud must be a positive number');
    const latency = options.latencyMs ?? 0;
    const interval = options.deliveryIntervalMs ?? 1;
    if (!(latency >= 0) || !(interval >= 0)) throw new RangeError('latencyMs and deliveryIntervalMs must be >= 0');
    const seed = options.seed ?? 1;
    this.lines = {
      // Different seeds per direction: the two fault patterns are independent.
      hostToDevice: new Line(clock, options.baud, latency, interval, seed * 2 + 1, options.hostToDevice ?? options.faults ?? {}),
      deviceToHost: new Line(clock, options.baud, latency, interval, seed * 2 + 2, options.deviceToHost ?? options.faults ?? {}),
    };
    this.host = this.end(this.lines.hostToDevice, this.lines.deviceToHost);
    this.device = this.end(this.lines.deviceToHost, this.lines.hostToDevice);
  }

  private end(out: Line, into: Line): LinkEnd {
    return Object.freeze({
      write: (bytes: Uint8Array) => out.write(bytes),
      onData: (listener: (chunk: Uint8Array) => void) => {
        into.listeners.add(listener);
        return () => {
          into.listeners.delete(listener);
        };
      },
      pendingBytes: () => out.pendingBytes(),
    });
  }

  /** Change the faults of one direction or both (from now on). */
  setFaults(faults: LinkFaults, direction?: Direction): void {
    for (const d of direction ? [direction] : (['hostToDevice', 'deviceToHost'] as const)) this.lines[d].setFaults(faults);
  }

  /** A noise burst of `byteTimes` byte slots, now, on one direction or both. */
  noiseBurst(byteTimes: number, direction?: Direction): void {
    for (const d of direction ? [direction] : (['hostToDevice', 'deviceToHost'] as const)) this.lines[d].noiseBurst(byteTimes);
  }

  /** Cut the cable: both directions stop carrying bytes until reconnect(). */
  cut(): void {
    this.lines.hostToDevice.cut();
    this.lines.deviceToHost.cut();
  }

  reconnect(): void {
    this.lines.hostToDevice.reconnect();
    this.lines.deviceToHost.reconnect();
  }

  get isCut(): boolean {
    return this.lines.hostToDevice.isCut;
  }

  counters(): Readonly<Record<Direction, DirectionCounters>> {
    return Object.freeze({ hostToDevice: this.lines.hostToDevice.counters(), deviceToHost: this.lines.deviceToHost.counters() });
  }

  /** Stop every timer and drop the listeners; the ends ignore writes from now on. */
  close(): void {
    this.lines.hostToDevice.close();
    this.lines.deviceToHost.close();
  }
}

/** The data side of a Node stream or a serialport: enough to bridge it to a link end. */
export interface ByteStream {
  on(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  off(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  write(chunk: Uint8Array): unknown;
}

/**
 * Join a real byte stream (a serialport on one side of a socat pty pair, a child's stdio) to a link
 * end: what the stream emits is written into the link, what the link delivers is written to the
 * stream. Returns a function that undoes the bridge.
 */
export function bridge(end: LinkEnd, stream: ByteStream): () => void {
  const fromStream = (chunk: Uint8Array) => end.write(chunk);
  stream.on('data', fromStream);
  const stop = end.onData((chunk) => {
    stream.write(chunk);
  });
  return () => {
    stream.off('data', fromStream);
    stop();
  };
}
