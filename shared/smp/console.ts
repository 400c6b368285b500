/**
 * Console framing of SMP packets (SPEC.md §13.2): Zephyr's mcumgr serial transport ("SMP over
 * console"), base64 lines with a length and a CRC-16/XMODEM, and the incremental decoder that finds
 * frames among console text on a shared UART. The decoder never throws on bad bytes.
 */
import { type Failure, fail, ok, type Result } from '../codes.js';
import { LIMITS } from '../limits.js';

/** Start of the first line of a frame (ASCII ACK, TAB) and of each continuation line (EOT, DC4). */
export const FRAME_START = Object.freeze([0x06, 0x09] as const);
export const FRAME_CONTINUE = Object.freeze([0x04, 0x14] as const);

/** CRC-16/XMODEM (poly 0x1021, init 0, no reflection, no xorout); CRC-16/XMODEM("123456789") = 0x31c3. */
export function crc16Xmodem(bytes: Uint8Array, crc = 0): number {
  for (let i = 0; i < bytes.length; i++) {
    crc ^= bytes[i] << 8;
    for (let k = 0; k < 8; k++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_CODES = Object.freeze(Array.from(B64, (c) => c.charCodeAt(0)));
const PAD = 0x3d; // '='
const NEWLINE = 0x0a;
const CR = 0x0d;

/** Standard base64 (RFC 4648 §4) with padding, as ASCII bytes. */
function base64Encode(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 * Math.ceil(bytes.length / 3));
  let o = 0;
  for (let i = 0; i < bytes.length; i += 3) {
    const n = bytes.length - i;
    const v = (bytes[i] << 16) | ((n > 1 ? bytes[i + 1] : 0) << 8) | (n > 2 ? bytes[i + 2] : 0);
    out[o++] = B64_CODES[v >> 18];
    out[o++] = B64_CODES[(v >> 12) & 63];
    out[o++] = n > 1 ? B64_CODES[(v >> 6) & 63] : PAD;
    out[o++] = n > 2 ? B64_CODES[v & 63] : PAD;
  }
  return out;
}

/** Value of a base64 character, -1 for '=', -2 for anything else. */
function base64Value(c: number): number {
  if (c >= 65 && c <= 90) return c - 65;
  if (c >= 97 && c <= 122) return c - 71;
  if (c >= 48 && c <= 57) return c + 4;
  if (c === 43) return 62;
  if (c === 47) return 63;
  if (c === PAD) return -1;
  return -2;
}

/**
 * Base64 characters per line: the most whole quads that fit with the 2-byte marker and '\n'. At the
 * default (128) that is 124, so every line sent is at most 127 bytes, Zephyr's MCUMGR_SERIAL_MAX_FRAME
 * (include/zephyr/mgmt/mcumgr/transport/serial.h), which its shell transport (SMP_SHELL_RX_BUF_SIZE
 * 127) and every stock client (smpclient, newtmgr: 124 characters) also use.
 */
export function base64CharsPerLine(maxLineBytes: number = LIMITS.maxSmpLineBytes): number {
  return Math.floor((maxLineBytes - 3) / 4) * 4;
}

/**
 * The console frame of one SMP packet: base64 of [length BE16 = packet + 2][packet][CRC-16/XMODEM BE16
 * over the packet], cut into lines of at most `maxLineBytes` (default and maximum maxSmpLineBytes):
 * 06 09 <base64> '\n' for the first line, 04 14 <base64> '\n' for the others. Each line holds whole
 * base64 quads (124 characters = 93 bytes, 127-byte lines, by default), so every line also decodes on its own, as
 * Zephyr's receiver decodes it. Throws RangeError for an empty packet or one above maxSmpPacketBytes.
 */
export function encodeConsoleFrame(packet: Uint8Array, maxLineBytes: number = LIMITS.maxSmpLineBytes): Uint8Array {
  if (packet.length === 0 || packet.length > LIMITS.maxSmpPacketBytes) throw new RangeError(`SMP packet must be 1..${LIMITS.maxSmpPacketBytes} bytes`);
  if (!Number.isInteger(maxLineBytes) || maxLineBytes < 7 || maxLineBytes > LIMITS.maxSmpLineBytes)
    throw new RangeError(`line length must be 7..${LIMITS.maxSmpLineBytes}`);
  const frame = new Uint8Array(packet.length + 4);
  const length = packet.length + 2;
  frame[0] = length >> 8;
  frame[1] = length & 0xff;
  frame.set(packet, 2);
  const crc = crc16Xmodem(packet);
  frame[frame.length - 2] = crc >> 8;
  frame[frame.length - 1] = crc & 0xff;
  const text = base64Encode(frame);
  const perLine = base64CharsPerLine(maxLineBytes);
  const lines = Math.ceil(text.length / perLine);
  const out = new Uint8Array(text.length + 3 * lines);
  let o = 0;
  for (let i = 0; i < text.length; i += perLine) {
    const marker = i === 0 ? FRAME_START : FRAME_CONTINUE;
    out[o++] = marker[0];
    out[o++] = marker[1];
    const part = text.subarray(i, Math.min(text.length, i + perLine));
    out.set(part, o);
    o += part.length;
    out[o++] = NEWLINE;
  }
  return out;
}

/** Wire bytes of the console frame of a packet of `packetBytes` bytes (for budgets and the bench). */
export function consoleFrameWireBytes(packetBytes: number, maxLineBytes: number = LIMITS.maxSmpLineBytes): number {
  const chars = 4 * Math.ceil((packetBytes + 4) / 3);
  return chars + 3 * Math.ceil(chars / base64CharsPerLine(maxLineBytes));
}

export type ConsoleDecoderStats = {
  /** Frames delivered (CRC and length good). */
  readonly packets: number;
  /** Frames dropped, in total and by code name. */
  readonly dropped: number;
  readonly droppedByCode: Readonly<Record<string, number>>;
  /** Bytes outside any line (console text, noise), start markers excluded. */
  readonly noiseBytes: number;
  /** Continuation lines that belong to no frame (its first line was lost, or it was already dropped). */
  readonly orphanLines: number;
};

const HUNT = 0;
const FIRST_LINE = 1;
const CONTINUATION_LINE = 2;
const ORPHAN_LINE = 3;

/**
 * Incremental decoder of console frames from arbitrary byte chunks. Bytes outside lines are noise
 * (the shell shares the UART); a frame that goes wrong is dropped and counted, and the decoder
 * resynchronises on the next start marker:
 *  - bad CRC                                          -> FRAME_CRC_MISMATCH
 *  - a line longer than maxSmpLineBytes (128, Zephyr's CONFIG_UART_MCUMGR_RX_BUF_SIZE) -> TOO_LARGE
 *  - a length field above maxSmpPacketBytes + 2       -> TOO_LARGE (before anything is allocated)
 *  - a length field below 3 (no packet)               -> BAD_VALUE
 *  - more data than the length field says             -> TRAILING_BYTES
 *  - a new frame (or a marker byte inside a line) before this one is complete -> TRUNCATED
 *  - a character outside base64, misplaced padding    -> MALFORMED
 * Memory is bounded: one line (125 bytes after the marker) and one frame (maxSmpPacketBytes + 2).
 * Base64 is decoded as a stream across the lines of a frame, so lines that do not end on a quad
 * boundary and padding at the end of any line (per-line encoders) are both read.
 */
export class ConsoleDecoder {
  private state = HUNT;
  private prev = -1;
  private readonly line: Uint8Array;
  private lineLength = 0; // bytes after the marker, '\r' included
  private readonly maxContent: number;
  /** Packet + CRC bytes of the frame in progress; null before the length is known. */
  private frame: Uint8Array | null = null;
  private inFrame = false;
  private written = 0;
  private lengthHigh = -1;
  private lengthBytes = 0;
  private readonly quad = [0, 0, 0, 0];
  private quadLength = 0;

  private packets = 0;
  private dropped = 0;
  private readonly droppedByCode: Record<string, number> = {};
  private noiseBytes = 0;
  private orphanLines = 0;

  /** `maxPacketBytes`: the largest packet accepted (a device passes its buf_size); at most 65533 (16-bit length). */
  constructor(private readonly maxPacketBytes: number = LIMITS.maxSmpPacketBytes) {
    if (!(Number.isInteger(maxPacketBytes) && maxPacketBytes >= 1 && maxPacketBytes <= 0xfffd)) throw new RangeError('maxPacketBytes must be 1..65533');
    this.maxContent = LIMITS.maxSmpLineBytes - 3;
    this.line = new Uint8Array(this.maxContent);
  }

  /** Feed bytes; returns the packets completed and the frames dropped by this chunk, in order. */
  push(chunk: Uint8Array): Result<{ packet: Uint8Array }>[] {
    const events: Result<{ packet: Uint8Array }>[] = [];
    for (let i = 0; i < chunk.length; i++) this.byte(chunk[i], events);
    return events;
  }

  /** Forget any partial frame (e.g. after a link timeout); not counted as a drop. */
  reset(): void {
    this.state = HUNT;
    this.prev = -1;
    this.abandonFrame();
  }

  stats(): ConsoleDecoderStats {
    return Object.freeze({
      packets: this.packets,
      dropped: this.dropped,
      droppedByCode: Object.freeze({ ...this.droppedByCode }),
      noiseBytes: this.noiseBytes,
      orphanLines: this.orphanLines,
    });
  }

  private byte(b: number, events: Result<{ packet: Uint8Array }>[]): void {
    if (this.state === HUNT) {
      if (this.prev === FRAME_START[0] && b === FRAME_START[1]) {
        this.noiseBytes--; // the 0x06 was counted as noise
        if (this.inFrame) this.drop(events, fail('TRUNCATED', 'a new frame started before this one was complete'));
        this.startLine(FIRST_LINE);
      } else if (this.prev === FRAME_CONTINUE[0] && b === FRAME_CONTINUE[1]) {
        this.noiseBytes--;
        this.startLine(this.inFrame ? CONTINUATION_LINE : ORPHAN_LINE);
      } else {
        this.noiseBytes++;
        this.prev = b;
      }
      return;
    }
    if (b === NEWLINE) {
      const state = this.state;
      this.state = HUNT;
      this.prev = -1;
      if (state === ORPHAN_LINE) this.orphanLines++;
      else this.endLine(events);
      return;
    }
    if (this.lineLength >= this.maxContent) {
      if (this.state === ORPHAN_LINE) this.orphanLines++;
      else this.drop(events, fail('TOO_LARGE', `line longer than ${LIMITS.maxSmpLineBytes} bytes`));
      this.hunt(b);
      return;
    }
    if (b !== CR && base64Value(b) === -2) {
      if (this.state === ORPHAN_LINE) this.orphanLines++;
      else {
        this.drop(
          events,
          b === FRAME_START[0] || b === FRAME_CONTINUE[0]
            ? fail('TRUNCATED', 'line cut short by a start marker')
            : fail('MALFORMED', `byte 0x${b.toString(16)} inside a line`),
        );
      }
      this.hunt(b);
      return;
    }
    this.line[this.lineLength++] = b;
  }

  /** Back to hunting, with `b` as a possible first marker byte. */
  private hunt(b: number): void {
    this.state = HUNT;
    this.prev = -1;
    this.byte(b, []);
  }

  private startLine(kind: number): void {
    this.state = kind;
    this.lineLength = 0;
    this.prev = -1;
    if (kind === FIRST_LINE) {
      this.inFrame = true;
      this.frame = null;
      this.written = 0;
      this.lengthHigh = -1;
      this.lengthBytes = 0;
      this.quadLength = 0;
    }
  }

  /** A complete line: decode it into the frame; the frame ends (and is checked) only at a line end, as in Zephyr. */
  private endLine(events: Result<{ packet: Uint8Array }>[]): void {
    for (let i = 0; i < this.lineLength; i++) {
      const c = this.line[i];
      if (c === CR) continue;
      this.quad[this.quadLength++] = base64Value(c);
      if (this.quadLength < 4) continue;
      this.quadLength = 0;
      const failure = this.quadBytes();
      if (failure !== null) {
        this.drop(events, failure);
        return;
      }
    }
    if (this.frame === null || this.written < this.frame.length) return; // more lines to come
    if (this.quadLength !== 0) {
      this.drop(events, fail('TRAILING_BYTES', 'more data than the length field says'));
      return;
    }
    const frame = this.frame;
    // The CRC over packet and CRC is 0 exactly when the CRC matches (no reflection, no xorout).
    if (crc16Xmodem(frame) !== 0) {
      this.drop(events, fail('FRAME_CRC_MISMATCH', 'CRC-16 of the frame does not match'));
      return;
    }
    this.packets++;
    events.push(ok({ packet: frame.subarray(0, frame.length - 2) }));
    this.abandonFrame();
  }

  /** Decode one quad into the frame; a Failure when it is malformed or overruns the length field. */
  private quadBytes(): Failure | null {
    const [a, b, c, d] = this.quad;
    if (a < 0 || b < 0 || (c < 0 && d >= 0)) return fail('MALFORMED', 'misplaced base64 padding');
    const v = (a << 18) | (b << 12) | (Math.max(c, 0) << 6) | Math.max(d, 0);
    const n = c < 0 ? 1 : d < 0 ? 2 : 3;
    for (let k = 0; k < n; k++) {
      const failure = this.frameByte((v >> (16 - 8 * k)) & 0xff);
      if (failure !== null) return failure;
    }
    return null;
  }

  private frameByte(b: number): Failure | null {
    if (this.lengthBytes < 2) {
      this.lengthBytes++;
      if (this.lengthHigh < 0) {
        this.lengthHigh = b;
        return null;
      }
      const length = (this.lengthHigh << 8) | b;
      if (length > this.maxPacketBytes + 2) return fail('TOO_LARGE', `frame length ${length} above ${this.maxPacketBytes + 2}`);
      if (length < 3) return fail('BAD_VALUE', `frame length ${length} holds no packet`);
      this.frame = new Uint8Array(length);
      return null;
    }
    if (this.frame === null || this.written >= this.frame.length) return fail('TRAILING_BYTES', 'more data than the length field says');
    this.frame[this.written++] = b;
    return null;
  }

  private drop(events: Result<{ packet: Uint8Array }>[], failure: Failure): void {
    if (!this.inFrame) return;
    this.dropped++;
    this.droppedByCode[failure.error] = (this.droppedByCode[failure.error] ?? 0) + 1;
    events.push(failure);
    this.abandonFrame();
  }

  private abandonFrame(): void {
    this.inFrame = false;
    this.frame = null;
    this.written = 0;
    this.lengthHigh = -1;
    this.lengthBytes = 0;
    this.quadLength = 0;
  }
}
