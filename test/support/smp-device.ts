/**
 * A simulated device (hil/device.ts) in this process on a synchronous byte end: bytes in, the
 * packets it answered out; no link, no clock. For the SMP abuse tests and the SMP fuzzer
 * (tools/fuzz-smp.ts), which send what no codec would encode: negative, fractional and huge
 * numbers, wrong types, duplicate keys, packets whose header lies about their length (rawCbor).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Verifier } from '../../device/index.js';
import { SimDevice } from '../../hil/device.js';
import { EMULATED_TRUST } from '../../hil/emulated.js';
import { provisionDevice } from '../../hil/provision.js';
import { makeRelease, makeTrust } from '../../hil/world.js';
import { utf8Encode } from '../../shared/bytes.js';
import { head } from '../../shared/cbor.js';
import { ConsoleDecoder, encodeConsoleFrame } from '../../shared/smp/console.js';
import { encodeSmpHeader, parseSmpPacket, SMP_HEADER_BYTES, type SmpPacket } from '../../shared/smp/packet.js';

/** A CBOR float64, whatever its value (1.0 included, which a JS number would encode as an integer). */
export class RawFloat {
  constructor(readonly value: number) {}
}

/** A map written entry by entry, in this order, duplicates included. */
export class RawMap {
  constructor(readonly entries: readonly (readonly [RawCbor, RawCbor])[]) {}
}

/** Values written as given: safe integers as integers, other numbers as float64, bigints as 64-bit integers. */
export type RawCbor = number | bigint | string | boolean | null | Uint8Array | RawFloat | RawMap | readonly RawCbor[] | ReadonlyMap<string | number, RawCbor>;

const U64 = (1n << 64n) - 1n;

export function rawCbor(v: RawCbor): Uint8Array {
  const parts: Uint8Array[] = [];
  const put = (x: RawCbor): void => {
    if (typeof x === 'number') {
      if (Number.isSafeInteger(x)) parts.push(x >= 0 ? head(0, x) : head(1, -1 - x));
      else put(new RawFloat(x));
    } else if (typeof x === 'bigint') {
      const [major, n] = x >= 0n ? [0x1b, x] : [0x3b, -1n - x];
      if (n > U64) throw new RangeError('bigint beyond 64 bits');
      const out = new Uint8Array(9);
      out[0] = major;
      new DataView(out.buffer).setBigUint64(1, n);
      parts.push(out);
    } else if (x instanceof RawFloat) {
      const out = new Uint8Array(9);
      out[0] = 0xfb;
      new DataView(out.buffer).setFloat64(1, x.value);
      parts.push(out);
    } else if (typeof x === 'string') {
      const b = utf8Encode(x);
      parts.push(head(3, b.length), b);
    } else if (typeof x === 'boolean') parts.push(Uint8Array.of(x ? 0xf5 : 0xf4));
    else if (x === null) parts.push(Uint8Array.of(0xf6));
    else if (x instanceof Uint8Array) parts.push(head(2, x.length), x);
    else if (x instanceof RawMap) {
      parts.push(head(5, x.entries.length));
      for (const [k, val] of x.entries) {
        put(k);
        put(val);
      }
    } else if (x instanceof Map) {
      parts.push(head(5, x.size));
      for (const [k, val] of x) {
        put(k);
        put(val);
      }
    } else {
      const list = x as readonly RawCbor[];
      parts.push(head(4, list.length));
      for (const item of list) put(item);
    }
  };
  put(v);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export type RawHeader = { readonly group: number; readonly command: number; readonly op: number; readonly seq?: number; readonly version?: number };

/** A packet with this header and payload; `lengthDelta` makes the header's length lie by that much. */
export function rawPacket(h: RawHeader, payload: RawCbor | Uint8Array, lengthDelta = 0): Uint8Array {
  const body = payload instanceof Uint8Array ? payload : rawCbor(payload);
  const out = new Uint8Array(SMP_HEADER_BYTES + body.length);
  out.set(
    encodeSmpHeader({ op: h.op, version: h.version ?? 0, flags: 0, length: body.length + lengthDelta, group: h.group, seq: h.seq ?? 0, command: h.command }),
  );
  out.set(body, SMP_HEADER_BYTES);
  return out;
}

export const FACTORY_IMAGE_BYTES = 16384;

/** Provision `dir` as the HIL tests' device: factory 1.0.0 of hil-board (counter 1), trust EMULATED_TRUST. */
export function provisionTestDevice(dir: string): void {
  const factory = makeRelease({
    version: '1.0.0',
    counter: 1,
    signers: ['R1', 'R2'],
    deviceClass: 'hil-board',
    imageSize: FACTORY_IMAGE_BYTES,
    chunkSize: 1024,
  });
  const p = provisionDevice(dir, {
    deviceClass: 'hil-board',
    trust: makeTrust(EMULATED_TRUST),
    envelope: factory.envelope,
    image: factory.image,
    slotSize: FACTORY_IMAGE_BYTES + 4096,
  });
  if (!p.ok) throw new Error(`provision: ${p.error}`);
}

/** The simulated device of the HIL tests (factory 1.0.0 of hil-board, trust EMULATED_TRUST), in a temporary directory. */
export class DeviceUnderTest {
  readonly dir: string;
  readonly log: string[] = [];
  device: SimDevice;
  /** Set when the device asked for a reset (OS reset); `restart()` honours it. */
  resetRequested = false;
  #listener: ((chunk: Uint8Array) => void) | null = null;
  readonly #decoder = new ConsoleDecoder();
  #answers: SmpPacket[] = [];
  readonly #verifier: Verifier | undefined;

  /** `parent`: where the device directory goes (default the OS temp directory; tmpfs makes flash fsyncs cheap). */
  constructor(options: { readonly verifier?: Verifier; readonly parent?: string } = {}) {
    this.#verifier = options.verifier;
    this.dir = mkdtempSync(join(options.parent ?? tmpdir(), 'fwseal-smp-dut-'));
    provisionTestDevice(this.dir);
    this.device = this.#make();
  }

  #make(): SimDevice {
    return new SimDevice({
      dir: this.dir,
      ...(this.#verifier ? { verifier: this.#verifier } : {}),
      log: (line) => {
        if (this.log.length < 10_000) this.log.push(line);
      },
      end: {
        write: (bytes) => {
          for (const e of this.#decoder.push(bytes)) {
            const p = e.ok ? parseSmpPacket(e.packet) : null;
            if (p?.ok) this.#answers.push(p);
          }
        },
        onData: (listener) => {
          this.#listener = listener;
          return () => {
            if (this.#listener === listener) this.#listener = null;
          };
        },
      },
      onReset: () => {
        this.resetRequested = true;
      },
      powerCut: () => {
        throw new Error('no power cut is armed in these tests');
      },
    });
  }

  /** Feed bytes to the device (they may throw out of it: that is what the tests look for); the packets it answered. */
  send(bytes: Uint8Array): SmpPacket[] {
    this.#answers = [];
    this.#listener?.(bytes);
    const out = this.#answers;
    this.#answers = [];
    return out;
  }

  /** One framed packet: the packets answered. */
  sendPacket(packet: Uint8Array): SmpPacket[] {
    return this.send(encodeConsoleFrame(packet));
  }

  request(h: RawHeader, payload: RawCbor | Uint8Array, lengthDelta = 0): SmpPacket[] {
    return this.sendPacket(rawPacket(h, payload, lengthDelta));
  }

  /** OS echo answered with the same text (the device still serves). */
  echoes(text = 'still here', seq = 77): boolean {
    const answers = this.request({ group: 0, command: 0, op: 2, seq }, new Map([['d', text]]));
    return answers.length === 1 && answers[0].header.seq === seq && answers[0].payload.get('r') === text;
  }

  /** A power cycle on the same flash (as the rig restarts the device process after a reset). */
  restart(): void {
    this.device.close();
    this.resetRequested = false;
    this.device = this.#make();
  }

  close(): void {
    this.device.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
