/**
 * SMP (the Simple Management Protocol of mcumgr, Zephyr and MCUboot) wire forms (SPEC.md §13):
 * the 8-byte header, CBOR payload maps with text keys, the console (UART) framing of Zephyr's
 * mcumgr serial transport, and codecs for the commands fwseal speaks (OS echo/reset/params, image
 * state/upload, and fwseal's vendor group 64). Pure: no I/O, no timers, no module-level state.
 *
 * Parsers and the frame decoder never throw on bad bytes: they return a Failure with a stable code.
 * Encoders throw RangeError/TypeError on values outside the schema (a bug in the caller).
 * Payload maps are read with the tolerant reader of smp-cbor.ts (peers send non-canonical CBOR) and
 * are open: keys fwseal does not know are ignored, as Zephyr does. fwseal writes deterministic CBOR.
 */
import { type CborMap, type CborValue, type Encodable, encodeCbor } from './cbor.js';
import { type CodeName, type Failure, type Result, fail, ok } from './codes.js';
import { SchemaError, schemaFail } from './fields.js';
import { LIMITS } from './limits.js';
import { decodeSmpCbor } from './smp-cbor.js';
import { utf8Length } from './bytes.js';

// ---- Header (SPEC.md §13.1) ----

/** Operation codes: bits 0-2 of header byte 0. A response's op is its request's op + 1. */
export const SMP_OP = Object.freeze({ read: 0, readResponse: 1, write: 2, writeResponse: 3 });
/** Protocol version: bits 3-4 of header byte 0. v2 adds group error maps ({"err": {"group", "rc"}}). */
export const SMP_VERSION = Object.freeze({ v1: 0, v2: 1 });
/** Management groups. 64 is Zephyr's MGMT_GROUP_ID_PERUSER, the first group for applications. */
export const SMP_GROUP = Object.freeze({ os: 0, image: 1, fwseal: 64 });
export const OS_COMMAND = Object.freeze({ echo: 0, reset: 5, params: 6 });
export const IMAGE_COMMAND = Object.freeze({ state: 0, upload: 1 });
export const FWSEAL_COMMAND = Object.freeze({ manifest: 0, trust: 1, revocation: 2, status: 3 });

/** SMP-level result codes (Zephyr's enum mcumgr_err_t, carried as "rc"). */
export const MGMT_ERR = Object.freeze({
  EOK: 0,
  EUNKNOWN: 1,
  ENOMEM: 2,
  EINVAL: 3,
  ETIMEOUT: 4,
  ENOENT: 5,
  EBADSTATE: 6,
  EMSGSIZE: 7,
  ENOTSUP: 8,
  ECORRUPT: 9,
  EBUSY: 10,
  EACCESSDENIED: 11,
  UNSUPPORTED_TOO_OLD: 12,
  UNSUPPORTED_TOO_NEW: 13,
});

export const SMP_HEADER_BYTES = 8;

export type SmpHeader = {
  readonly op: number;
  readonly version: number;
  readonly flags: number;
  /** Payload length in bytes (the header excluded). */
  readonly length: number;
  readonly group: number;
  readonly seq: number;
  readonly command: number;
};

const isUint = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;

/** Header bytes: [res:3 | ver:2 | op:3][flags][length BE16][group BE16][seq][command]. */
export function encodeSmpHeader(h: SmpHeader): Uint8Array {
  if (!isUint(h.op, 3)) throw new RangeError('SMP op must be 0..3');
  if (!isUint(h.version, 1)) throw new RangeError('SMP version must be 0 (v1) or 1 (v2)');
  for (const [name, value, max] of [['flags', h.flags, 0xff], ['length', h.length, 0xffff], ['group', h.group, 0xffff], ['seq', h.seq, 0xff], ['command', h.command, 0xff]] as const) {
    if (!isUint(value, max)) throw new RangeError(`SMP ${name} must be 0..${max}`);
  }
  return Uint8Array.of((h.version << 3) | h.op, h.flags, h.length >> 8, h.length & 0xff, h.group >> 8, h.group & 0xff, h.seq, h.command);
}

/** The header at the start of `bytes`. Reserved bits (5-7 of byte 0) are ignored, as Zephyr does. */
export function parseSmpHeader(bytes: Uint8Array): Result<{ header: SmpHeader }> {
  if (!(bytes instanceof Uint8Array)) return fail('WRONG_TYPE', 'input is not bytes');
  if (bytes.length < SMP_HEADER_BYTES) return fail('TRUNCATED', `SMP header needs 8 bytes, got ${bytes.length}`);
  const op = bytes[0] & 7;
  const version = (bytes[0] >> 3) & 3;
  if (op > 3) return fail('BAD_VALUE', `SMP op ${op} is not defined`);
  if (version > 1) return fail('UNSUPPORTED_FORMAT', `SMP version bits ${version}`);
  return ok({
    header: Object.freeze({
      op,
      version,
      flags: bytes[1],
      length: (bytes[2] << 8) | bytes[3],
      group: (bytes[4] << 8) | bytes[5],
      seq: bytes[6],
      command: bytes[7],
    }),
  });
}

// ---- Packets ----

export type SmpPayload = ReadonlyMap<string, Encodable>;
export type SmpPacket = { readonly header: SmpHeader; readonly payload: CborMap };

/** Header plus deterministic CBOR payload; throws RangeError above maxSmpPacketBytes. */
export function encodeSmpPacket(header: Omit<SmpHeader, 'length'>, payload: SmpPayload): Uint8Array {
  const body = encodeCbor(payload);
  if (SMP_HEADER_BYTES + body.length > LIMITS.maxSmpPacketBytes) throw new RangeError(`SMP packet of ${SMP_HEADER_BYTES + body.length} bytes exceeds maxSmpPacketBytes`);
  const out = new Uint8Array(SMP_HEADER_BYTES + body.length);
  out.set(encodeSmpHeader({ ...header, length: body.length }));
  out.set(body, SMP_HEADER_BYTES);
  return out;
}

/**
 * One SMP packet: the header's length must equal the payload's (TRUNCATED / TRAILING_BYTES); the
 * payload is a CBOR map (WRONG_TYPE otherwise), read tolerantly; an empty payload reads as {}.
 */
export function parseSmpPacket(bytes: Uint8Array): Result<SmpPacket> {
  const h = parseSmpHeader(bytes);
  if (!h.ok) return h;
  if (bytes.length > LIMITS.maxSmpPacketBytes) return fail('TOO_LARGE', `SMP packet of ${bytes.length} bytes`);
  const available = bytes.length - SMP_HEADER_BYTES;
  if (h.header.length > available) return fail('TRUNCATED', `header says ${h.header.length} payload bytes, ${available} present`);
  if (h.header.length < available) return fail('TRAILING_BYTES', `${available - h.header.length} bytes after the payload`);
  if (available === 0) return ok({ header: h.header, payload: new Map() });
  const decoded = decodeSmpCbor(bytes.subarray(SMP_HEADER_BYTES));
  if (!decoded.ok) return decoded;
  if (!(decoded.value instanceof Map)) return fail('WRONG_TYPE', 'SMP payload is not a map');
  return ok({ header: h.header, payload: decoded.value });
}

// ---- Console framing (SPEC.md §13.2): Zephyr's mcumgr serial transport ----

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

/** Base64 characters per line: the most whole quads that fit with the 2-byte marker and '\n'. */
export function base64CharsPerLine(maxLineBytes: number = LIMITS.maxSmpLineBytes): number {
  return Math.floor((maxLineBytes - 3) / 4) * 4;
}

/**
 * The console frame of one SMP packet: base64 of [length BE16 = packet + 2][packet][CRC-16/XMODEM BE16
 * over the packet], cut into lines of at most `maxLineBytes` (default and maximum maxSmpLineBytes):
 * 06 09 <base64> '\n' for the first line, 04 14 <base64> '\n' for the others. Each line holds whole
 * base64 quads (124 characters = 93 bytes at 127), so every line also decodes on its own, as
 * Zephyr's receiver decodes it. Throws RangeError for an empty packet or one above maxSmpPacketBytes.
 */
export function encodeConsoleFrame(packet: Uint8Array, maxLineBytes: number = LIMITS.maxSmpLineBytes): Uint8Array {
  if (packet.length === 0 || packet.length > LIMITS.maxSmpPacketBytes) throw new RangeError(`SMP packet must be 1..${LIMITS.maxSmpPacketBytes} bytes`);
  if (!Number.isInteger(maxLineBytes) || maxLineBytes < 7 || maxLineBytes > LIMITS.maxSmpLineBytes) throw new RangeError(`line length must be 7..${LIMITS.maxSmpLineBytes}`);
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
 *  - a line longer than maxSmpLineBytes               -> TOO_LARGE
 *  - a length field above maxSmpPacketBytes + 2       -> TOO_LARGE (before anything is allocated)
 *  - a length field below 3 (no packet)               -> BAD_VALUE
 *  - more data than the length field says             -> TRAILING_BYTES
 *  - a new frame (or a marker byte inside a line) before this one is complete -> TRUNCATED
 *  - a character outside base64, misplaced padding    -> MALFORMED
 * Memory is bounded: one line (124 characters) and one frame (maxSmpPacketBytes + 2).
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
        this.drop(events, b === FRAME_START[0] || b === FRAME_CONTINUE[0]
          ? fail('TRUNCATED', 'line cut short by a start marker')
          : fail('MALFORMED', `byte 0x${b.toString(16)} inside a line`));
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
    const v = (a << 18) | (b << 12) | ((c < 0 ? 0 : c) << 6) | (d < 0 ? 0 : d);
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

// ---- Commands (SPEC.md §13.3, §13.4) ----

/** A command's payload codec: `encode` builds the map fwseal sends, `parse` reads a peer's map. */
export type PayloadCodec<T> = {
  readonly encode: (value: T) => SmpPayload;
  readonly parse: (payload: CborMap) => Result<{ value: T }>;
};

export type SmpCommand<Req, Res> = {
  readonly name: string;
  readonly group: number;
  readonly id: number;
  /** SMP_OP.read or SMP_OP.write; the response carries op + 1. */
  readonly op: number;
  readonly request: PayloadCodec<Req>;
  readonly response: PayloadCodec<Res>;
};

/** Run a field-reading function at a single exit: SchemaError -> Failure. */
function parseWith<T>(read: () => T): Result<{ value: T }> {
  try {
    return ok({ value: Object.freeze(read()) });
  } catch (e) {
    if (e instanceof SchemaError) return fail(e.name, e.detail);
    return fail('MALFORMED', 'parser failure');
  }
}

function uintField(map: CborMap, key: string, max: number): number | undefined {
  const v = map.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) schemaFail('WRONG_TYPE', `"${key}" is not an integer`);
  if (v < 0 || v > max) schemaFail('BAD_VALUE', `"${key}" = ${v} is outside 0..${max}`);
  return v;
}

function intField(map: CborMap, key: string): number | undefined {
  const v = map.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) schemaFail('WRONG_TYPE', `"${key}" is not an integer`);
  return v;
}

function required<T>(value: T | undefined, key: string): T {
  if (value === undefined) schemaFail('MISSING_FIELD', `missing "${key}"`);
  return value;
}

function bytesField(map: CborMap, key: string, maxBytes: number): Uint8Array | undefined {
  const v = map.get(key);
  if (v === undefined) return undefined;
  if (!(v instanceof Uint8Array)) schemaFail('WRONG_TYPE', `"${key}" is not a byte string`);
  if (v.length > maxBytes) schemaFail('TOO_LARGE', `"${key}" is ${v.length} bytes, at most ${maxBytes}`);
  return v.slice(); // parsed values own their bytes
}

function textField(map: CborMap, key: string, maxBytes: number): string | undefined {
  const v = map.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') schemaFail('WRONG_TYPE', `"${key}" is not text`);
  if (utf8Length(v) > maxBytes) schemaFail('TOO_LARGE', `"${key}" is longer than ${maxBytes} bytes`);
  return v;
}

/** Booleans; Zephyr also sends 0/1 for some flags (e.g. "force"). */
function boolField(map: CborMap, key: string): boolean | undefined {
  const v = map.get(key);
  if (v === undefined) return undefined;
  if (typeof v === 'boolean') return v;
  if (v === 0 || v === 1) return v === 1;
  schemaFail('WRONG_TYPE', `"${key}" is not a boolean`);
}

function mapOf(entries: readonly (readonly [string, Encodable | undefined])[]): SmpPayload {
  const m = new Map<string, Encodable>();
  for (const [k, v] of entries) if (v !== undefined) m.set(k, v);
  return m;
}

const MAX_U32 = 0xffffffff;
/** fwseal codes are 0..999 (SPEC.md §9). */
const MAX_CODE = 999;
/** Image hashes and upload session ids: Zephyr's IMG_MGMT_HASH_LEN / IMG_MGMT_DATA_SHA_LEN is 32. */
const MAX_HASH_BYTES = 32;
const noPayload: PayloadCodec<{}> = Object.freeze({ encode: () => new Map(), parse: () => ok({ value: Object.freeze({}) }) });

// OS group (0)

export type EchoRequest = { readonly text: string };
export type EchoResponse = { readonly text: string };
export const echo: SmpCommand<EchoRequest, EchoResponse> = Object.freeze({
  name: 'os.echo', group: SMP_GROUP.os, id: OS_COMMAND.echo, op: SMP_OP.write,
  request: { encode: (v: EchoRequest) => mapOf([['d', v.text]]), parse: (m: CborMap) => parseWith(() => ({ text: required(textField(m, 'd', LIMITS.maxTextBytes), 'd') })) },
  response: { encode: (v: EchoResponse) => mapOf([['r', v.text]]), parse: (m: CborMap) => parseWith(() => ({ text: required(textField(m, 'r', LIMITS.maxTextBytes), 'r') })) },
});

export type ResetRequest = { readonly force?: boolean };
export const reset: SmpCommand<ResetRequest, {}> = Object.freeze({
  name: 'os.reset', group: SMP_GROUP.os, id: OS_COMMAND.reset, op: SMP_OP.write,
  request: {
    encode: (v: ResetRequest) => mapOf([['force', v.force]]),
    parse: (m: CborMap) => parseWith(() => { const force = boolField(m, 'force'); return force === undefined ? {} : { force }; }),
  },
  response: noPayload,
});

/** MCUmgr parameters: the device's SMP buffer size and count, so a client sizes its upload chunks. */
export type ParamsResponse = { readonly bufSize: number; readonly bufCount: number };
export const params: SmpCommand<{}, ParamsResponse> = Object.freeze({
  name: 'os.params', group: SMP_GROUP.os, id: OS_COMMAND.params, op: SMP_OP.read,
  request: noPayload,
  response: {
    encode: (v: ParamsResponse) => mapOf([['buf_size', v.bufSize], ['buf_count', v.bufCount]]),
    parse: (m: CborMap) => parseWith(() => ({ bufSize: required(uintField(m, 'buf_size', MAX_U32), 'buf_size'), bufCount: required(uintField(m, 'buf_count', MAX_U32), 'buf_count') })),
  },
});

// Image group (1)

export type ImageSlotState = {
  readonly image?: number;
  readonly slot: number;
  readonly version: string;
  readonly hash?: Uint8Array;
  readonly bootable: boolean;
  readonly pending: boolean;
  readonly confirmed: boolean;
  readonly active: boolean;
  readonly permanent: boolean;
};
export type ImageStateResponse = { readonly images: readonly ImageSlotState[]; readonly splitStatus?: number };
const SLOT_FLAGS = ['bootable', 'pending', 'confirmed', 'active', 'permanent'] as const;

const imageStateResponse: PayloadCodec<ImageStateResponse> = Object.freeze({
  encode: (v: ImageStateResponse) => mapOf([
    ['images', v.images.map((s) => mapOf([
      ['image', s.image], ['slot', s.slot], ['version', s.version], ['hash', s.hash],
      // Like Zephyr, flags are sent only when set.
      ...SLOT_FLAGS.map((f) => [f, s[f] ? true : undefined] as const),
    ]))],
    ['splitStatus', v.splitStatus],
  ]),
  parse: (m: CborMap) => parseWith(() => {
    const list = required(m.get('images'), 'images');
    if (!Array.isArray(list)) schemaFail('WRONG_TYPE', '"images" is not an array');
    const images = (list as readonly CborValue[]).map((entry) => {
      if (!(entry instanceof Map)) schemaFail('WRONG_TYPE', 'an image entry is not a map');
      const e = entry as CborMap;
      const image = uintField(e, 'image', 0xff);
      const hash = bytesField(e, 'hash', MAX_HASH_BYTES);
      const slot: ImageSlotState = {
        ...(image === undefined ? {} : { image }),
        slot: required(uintField(e, 'slot', 0xff), 'slot'),
        version: required(textField(e, 'version', LIMITS.maxVersionBytes), 'version'),
        ...(hash === undefined ? {} : { hash }),
        bootable: boolField(e, 'bootable') ?? false,
        pending: boolField(e, 'pending') ?? false,
        confirmed: boolField(e, 'confirmed') ?? false,
        active: boolField(e, 'active') ?? false,
        permanent: boolField(e, 'permanent') ?? false,
      };
      return Object.freeze(slot);
    });
    const splitStatus = intField(m, 'splitStatus');
    return splitStatus === undefined ? { images: Object.freeze(images) } : { images: Object.freeze(images), splitStatus };
  }),
});

export const imageState: SmpCommand<{}, ImageStateResponse> = Object.freeze({
  name: 'image.state', group: SMP_GROUP.image, id: IMAGE_COMMAND.state, op: SMP_OP.read,
  request: noPayload,
  response: imageStateResponse,
});

/** Mark an image for a test boot (confirm false) or confirm it (confirm true; no hash = the running one). */
export type ImageStateWriteRequest = { readonly hash?: Uint8Array; readonly confirm: boolean };
export const imageStateWrite: SmpCommand<ImageStateWriteRequest, ImageStateResponse> = Object.freeze({
  name: 'image.state-write', group: SMP_GROUP.image, id: IMAGE_COMMAND.state, op: SMP_OP.write,
  request: {
    encode: (v: ImageStateWriteRequest) => mapOf([['hash', v.hash], ['confirm', v.confirm]]),
    parse: (m: CborMap) => parseWith(() => {
      const hash = bytesField(m, 'hash', MAX_HASH_BYTES);
      const confirm = boolField(m, 'confirm') ?? false;
      return hash === undefined ? { confirm } : { hash, confirm };
    }),
  },
  response: imageStateResponse,
});

// Upload chunks (image upload and the group 64 envelope uploads share these rules)

/** The fields of an upload chunk that its receiver reads (SPEC.md §13.3). */
export type UploadChunk = { readonly off: number; readonly data: Uint8Array; readonly len?: number; readonly sha?: Uint8Array };
/** Allowed upload lengths: `len` in minLen..maxLen; every byte of the upload lies below maxLen. */
export type UploadBounds = { readonly minLen: number; readonly maxLen: number };
export const IMAGE_UPLOAD_BOUNDS: UploadBounds = Object.freeze({ minLen: 0, maxLen: LIMITS.maxImageSize });
export const ENVELOPE_UPLOAD_BOUNDS: UploadBounds = Object.freeze({ minLen: 1, maxLen: LIMITS.maxEnvelopeBytes });

/**
 * The rules of SPEC.md §13.7 every upload chunk obeys on its own, before any upload state is
 * consulted: `off` and `len` are integers (WRONG_TYPE) in range (BAD_VALUE), `data` is bytes
 * (WRONG_TYPE), the first chunk (off 0) carries `len` (MISSING_FIELD), off + |data| <= len when
 * `len` is given (BAD_VALUE) and <= maxLen (TOO_LARGE). The first rule broken, or null. The codecs
 * apply it to what they parse and the receivers again to what they are handed (they may be called
 * without a codec), so no receiver ever sizes or indexes anything with an unchecked number.
 */
export function uploadChunkFault(chunk: { readonly off?: unknown; readonly data?: unknown; readonly len?: unknown }, bounds: UploadBounds): { readonly name: Exclude<CodeName, 'OK'>; readonly detail: string } | null {
  const { off, data, len } = chunk;
  const fault = (name: Exclude<CodeName, 'OK'>, detail: string) => ({ name, detail });
  if (typeof off !== 'number' || !Number.isSafeInteger(off)) return fault('WRONG_TYPE', '"off" is not an integer');
  if (off < 0 || off > bounds.maxLen) return fault('BAD_VALUE', `"off" = ${off} is outside 0..${bounds.maxLen}`);
  if (!(data instanceof Uint8Array)) return fault('WRONG_TYPE', '"data" is not a byte string');
  if (len !== undefined) {
    if (typeof len !== 'number' || !Number.isSafeInteger(len)) return fault('WRONG_TYPE', '"len" is not an integer');
    if (len < bounds.minLen || len > bounds.maxLen) return fault('BAD_VALUE', `"len" = ${len} is outside ${bounds.minLen}..${bounds.maxLen}`);
  }
  if (off === 0 && len === undefined) return fault('MISSING_FIELD', 'the first chunk has no "len"');
  if (len !== undefined && off + data.length > len) return fault('BAD_VALUE', `chunk at ${off} of ${data.length} bytes runs past len ${len}`);
  if (off + data.length > bounds.maxLen) return fault('TOO_LARGE', `chunk at ${off} of ${data.length} bytes runs past ${bounds.maxLen}`);
  return null;
}

function checkChunk(chunk: { readonly off: number; readonly data: Uint8Array; readonly len: number | undefined }, bounds: UploadBounds): void {
  const f = uploadChunkFault(chunk, bounds);
  if (f !== null) schemaFail(f.name, f.detail);
}

/**
 * One chunk of an image upload. The first chunk (off 0) carries `len` and, optionally, `sha` (the
 * SHA-256 of the whole image, which identifies the upload: a device that already holds part of an
 * upload with the same sha answers the offset it has, and the client resumes there), `image` and
 * `upgrade`. The device answers the offset it expects next: the device decides where to resume.
 */
export type ImageUploadRequest = {
  readonly off: number;
  readonly data: Uint8Array;
  readonly len?: number;
  readonly sha?: Uint8Array;
  readonly image?: number;
  readonly upgrade?: boolean;
};
export type ImageUploadResponse = { readonly off: number; readonly match?: boolean };

export const imageUpload: SmpCommand<ImageUploadRequest, ImageUploadResponse> = Object.freeze({
  name: 'image.upload', group: SMP_GROUP.image, id: IMAGE_COMMAND.upload, op: SMP_OP.write,
  request: {
    encode: (v: ImageUploadRequest) => {
      if (v.off === 0 && v.len === undefined) throw new RangeError('the first upload chunk carries len');
      return mapOf([['image', v.image], ['len', v.len], ['off', v.off], ['sha', v.sha], ['data', v.data], ['upgrade', v.upgrade]]);
    },
    parse: (m: CborMap) => parseWith(() => {
      const off = required(uintField(m, 'off', LIMITS.maxImageSize), 'off');
      const data = required(bytesField(m, 'data', LIMITS.maxSmpPacketBytes), 'data');
      const len = uintField(m, 'len', LIMITS.maxImageSize);
      checkChunk({ off, data, len }, IMAGE_UPLOAD_BOUNDS);
      const sha = bytesField(m, 'sha', MAX_HASH_BYTES);
      const image = uintField(m, 'image', 0xff);
      const upgrade = boolField(m, 'upgrade');
      return {
        off, data,
        ...(len === undefined ? {} : { len }),
        ...(sha === undefined ? {} : { sha }),
        ...(image === undefined ? {} : { image }),
        ...(upgrade === undefined ? {} : { upgrade }),
      };
    }),
  },
  response: {
    encode: (v: ImageUploadResponse) => mapOf([['off', v.off], ['match', v.match]]),
    parse: (m: CborMap) => parseWith(() => {
      const off = required(uintField(m, 'off', LIMITS.maxImageSize), 'off');
      const match = boolField(m, 'match');
      return match === undefined ? { off } : { off, match };
    }),
  },
});

// fwseal vendor group (64)

/**
 * A chunk of a signed envelope (manifest, trust bundle or revocation list), uploaded like an image:
 * the first chunk (off 0) carries `len` (1..maxEnvelopeBytes); the device answers the offset it
 * expects next and, once it holds all `len` bytes and has verified them, `code`: 0 accepted, or the
 * fwseal code of the rejection (SPEC.md §9).
 */
export type EnvelopeUploadRequest = { readonly off: number; readonly data: Uint8Array; readonly len?: number };
export type EnvelopeUploadResponse = { readonly off: number; readonly code?: number };

const envelopeUpload: Pick<SmpCommand<EnvelopeUploadRequest, EnvelopeUploadResponse>, 'request' | 'response'> = Object.freeze({
  request: {
    encode: (v: EnvelopeUploadRequest) => {
      if (v.off === 0 && v.len === undefined) throw new RangeError('the first envelope chunk carries len');
      return mapOf([['len', v.len], ['off', v.off], ['data', v.data]]);
    },
    parse: (m: CborMap) => parseWith(() => {
      const off = required(uintField(m, 'off', LIMITS.maxEnvelopeBytes), 'off');
      const data = required(bytesField(m, 'data', LIMITS.maxEnvelopeBytes), 'data');
      const len = uintField(m, 'len', LIMITS.maxEnvelopeBytes);
      checkChunk({ off, data, len }, ENVELOPE_UPLOAD_BOUNDS);
      return len === undefined ? { off, data } : { off, data, len };
    }),
  },
  response: {
    encode: (v: EnvelopeUploadResponse) => mapOf([['off', v.off], ['code', v.code]]),
    parse: (m: CborMap) => parseWith(() => {
      const off = required(uintField(m, 'off', LIMITS.maxEnvelopeBytes), 'off');
      const code = uintField(m, 'code', MAX_CODE);
      return code === undefined ? { off } : { off, code };
    }),
  },
});

export const manifestUpload: SmpCommand<EnvelopeUploadRequest, EnvelopeUploadResponse> = Object.freeze({
  name: 'fwseal.manifest', group: SMP_GROUP.fwseal, id: FWSEAL_COMMAND.manifest, op: SMP_OP.write, ...envelopeUpload,
});
export const trustUpdate: SmpCommand<EnvelopeUploadRequest, EnvelopeUploadResponse> = Object.freeze({
  name: 'fwseal.trust', group: SMP_GROUP.fwseal, id: FWSEAL_COMMAND.trust, op: SMP_OP.write, ...envelopeUpload,
});
export const revocationUpdate: SmpCommand<EnvelopeUploadRequest, EnvelopeUploadResponse> = Object.freeze({
  name: 'fwseal.revocation', group: SMP_GROUP.fwseal, id: FWSEAL_COMMAND.revocation, op: SMP_OP.write, ...envelopeUpload,
});

/** Device phase names (open set: a newer device may report others): 1..32 bytes of [a-z-]. */
const PHASE_PATTERN = /^[a-z-]{1,32}$/;

/**
 * What a scenario asserts at its end: the active slot, the installed version and security counter,
 * the code of the last failed operation (0 none), the agent's phase (idle, downloading, pending,
 * trial, ...), and optionally the trust bundle and revocation list versions.
 */
export type DeviceStatus = {
  readonly slot: number;
  readonly version: string;
  readonly counter: number;
  readonly code: number;
  readonly phase: string;
  readonly trust?: number;
  readonly revocation?: number;
};

export const status: SmpCommand<{}, DeviceStatus> = Object.freeze({
  name: 'fwseal.status', group: SMP_GROUP.fwseal, id: FWSEAL_COMMAND.status, op: SMP_OP.read,
  request: noPayload,
  response: {
    encode: (v: DeviceStatus) => {
      if (!PHASE_PATTERN.test(v.phase)) throw new RangeError('phase must be 1..32 characters of [a-z-]');
      return mapOf([['slot', v.slot], ['version', v.version], ['counter', v.counter], ['code', v.code], ['phase', v.phase], ['trust', v.trust], ['revocation', v.revocation]]);
    },
    parse: (m: CborMap) => parseWith(() => {
      const phase = required(textField(m, 'phase', 32), 'phase');
      if (!PHASE_PATTERN.test(phase)) schemaFail('BAD_VALUE', '"phase" has an invalid form');
      const trust = uintField(m, 'trust', LIMITS.maxCounter);
      const revocation = uintField(m, 'revocation', LIMITS.maxCounter);
      return {
        slot: required(uintField(m, 'slot', 0xff), 'slot'),
        version: required(textField(m, 'version', LIMITS.maxVersionBytes), 'version'),
        counter: required(uintField(m, 'counter', LIMITS.maxCounter), 'counter'),
        code: required(uintField(m, 'code', MAX_CODE), 'code'),
        phase,
        ...(trust === undefined ? {} : { trust }),
        ...(revocation === undefined ? {} : { revocation }),
      };
    }),
  },
});

/** Every command fwseal defines a codec for, for dispatch by (group, id, op). */
export const SMP_COMMANDS: readonly SmpCommand<any, any>[] = Object.freeze([
  echo, reset, params, imageState, imageStateWrite, imageUpload, manifestUpload, trustUpdate, revocationUpdate, status,
]);

/** The command a request header names, or undefined (the device answers ENOTSUP). */
export function findCommand(header: SmpHeader): SmpCommand<any, any> | undefined {
  return SMP_COMMANDS.find((c) => c.group === header.group && c.id === header.command && c.op === header.op);
}

// ---- Requests, responses and errors ----

/** A request packet. `version` defaults to v1, which every SMP server reads. */
export function encodeRequest<Req, Res>(cmd: SmpCommand<Req, Res>, value: Req, seq: number, version: number = SMP_VERSION.v1): Uint8Array {
  return encodeSmpPacket({ op: cmd.op, version, flags: 0, group: cmd.group, seq, command: cmd.id }, cmd.request.encode(value));
}

/** The response to `request`: same group, command, sequence number and version; op + 1. */
export function encodeResponse<Req, Res>(cmd: SmpCommand<Req, Res>, request: SmpHeader, value: Res): Uint8Array {
  return encodeSmpPacket({ op: cmd.op + 1, version: request.version, flags: 0, group: cmd.group, seq: request.seq, command: cmd.id }, cmd.response.encode(value));
}

export type SmpError = {
  /** Zephyr's MGMT_ERR (v1 "rc", or v2 "rc" outside "err"), or the group's own code (v2 "err"). */
  readonly rc: number;
  /** Present for v2 group errors: the group whose code `rc` is. */
  readonly group?: number;
  /** v1 reason text, when the peer sent one. */
  readonly rsn?: string;
};

/**
 * An error response: v1 {"rc": N, "rsn"?: text}; v2 group errors {"err": {"group": G, "rc": N}}.
 * A v2 request that fails at the SMP level still gets {"rc": N}, as in Zephyr.
 */
export function encodeErrorResponse(request: SmpHeader, error: SmpError): Uint8Array {
  const payload = error.group !== undefined && request.version === SMP_VERSION.v2
    ? mapOf([['err', mapOf([['group', error.group], ['rc', error.rc]])]])
    : mapOf([['rc', error.rc], ['rsn', error.rsn]]);
  return encodeSmpPacket({ op: request.op | 1, version: request.version, flags: 0, group: request.group, seq: request.seq, command: request.command }, payload);
}

/** The error a response carries, or null when it carries none ("rc" absent or 0). Malformed error fields count as MGMT_ERR.EUNKNOWN. */
export function smpErrorOf(payload: CborMap): SmpError | null {
  const err = payload.get('err');
  if (err instanceof Map) {
    const rc = err.get('rc');
    const group = err.get('group');
    if (rc === 0) return null;
    return typeof rc === 'number' && Number.isInteger(rc) && typeof group === 'number' && Number.isInteger(group)
      ? Object.freeze({ rc, group })
      : Object.freeze({ rc: MGMT_ERR.EUNKNOWN });
  }
  const rc = payload.get('rc');
  if (rc === undefined || rc === 0) return null;
  if (typeof rc !== 'number' || !Number.isInteger(rc)) return Object.freeze({ rc: MGMT_ERR.EUNKNOWN });
  const rsn = payload.get('rsn');
  return Object.freeze(typeof rsn === 'string' ? { rc, rsn } : { rc });
}

/** A request of `cmd`: header checks (op, group, id) and payload parse. */
export function parseRequest<Req, Res>(cmd: SmpCommand<Req, Res>, packet: SmpPacket): Result<{ value: Req }> {
  const h = packet.header;
  if (h.group !== cmd.group || h.command !== cmd.id || h.op !== cmd.op) return fail('WRONG_KIND', `packet is group ${h.group} command ${h.command} op ${h.op}, not ${cmd.name}`);
  return cmd.request.parse(packet.payload);
}

/**
 * The response of `cmd` to the request with sequence number `seq`: WRONG_KIND for another command
 * or sequence number. An error response is not a decode failure: it returns { smpError }.
 */
export function parseResponse<Req, Res>(cmd: SmpCommand<Req, Res>, packet: SmpPacket, seq: number): Result<{ value: Res; smpError?: undefined } | { value?: undefined; smpError: SmpError }> {
  const h = packet.header;
  if (h.group !== cmd.group || h.command !== cmd.id || h.op !== cmd.op + 1) return fail('WRONG_KIND', `packet is group ${h.group} command ${h.command} op ${h.op}, not a ${cmd.name} response`);
  if (h.seq !== seq) return fail('WRONG_KIND', `response to sequence number ${h.seq}, not ${seq}`);
  const smpError = smpErrorOf(packet.payload);
  if (smpError !== null) return ok({ smpError });
  const parsed = cmd.response.parse(packet.payload);
  if (!parsed.ok) return parsed;
  return ok({ value: parsed.value });
}

/**
 * The most data bytes one request of `cmd` can carry in one SMP packet (maxSmpPacketBytes) given its
 * other fields (data empty in `fields`): what an uploader puts in each chunk.
 */
export function chunkCapacity<Req extends { readonly data: Uint8Array }, Res>(cmd: SmpCommand<Req, Res>, fields: Req): number {
  const base = SMP_HEADER_BYTES + encodeCbor(cmd.request.encode({ ...fields, data: new Uint8Array(0) })).length - 1; // minus the empty bstr head
  const room = LIMITS.maxSmpPacketBytes - base;
  // A byte string head takes 1, 2, 3 or 5 bytes depending on the length (RFC 8949 §3).
  let best = 0;
  for (const [head, lo, hi] of [[1, 0, 23], [2, 24, 0xff], [3, 0x100, 0xffff], [5, 0x10000, MAX_U32]] as const) {
    const d = Math.min(hi, room - head);
    if (d >= lo) best = Math.max(best, d);
  }
  return best;
}
