/**
 * SMP (the Simple Management Protocol of mcumgr, Zephyr and MCUboot) packets (SPEC.md §13.1): the
 * 8-byte header, its group and command numbers, and the CBOR payload map with text keys. Pure: no
 * I/O, no timers, no module-level state, as every file of shared/smp/.
 *
 * Parsers never throw on bad bytes: they return a Failure with a stable code. Encoders throw
 * RangeError/TypeError on values outside the schema (a bug in the caller). Payload maps are read
 * with the tolerant reader of tolerant-cbor.ts (peers send non-canonical CBOR) and are open: keys
 * fwseal does not know are ignored, as Zephyr does. fwseal writes deterministic CBOR.
 */
import { type CborMap, type Encodable, encodeCbor } from '../cbor.js';
import { fail, ok, type Result } from '../codes.js';
import { LIMITS } from '../limits.js';
import { decodeSmpCbor } from './tolerant-cbor.js';

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
  for (const [name, value, max] of [
    ['flags', h.flags, 0xff],
    ['length', h.length, 0xffff],
    ['group', h.group, 0xffff],
    ['seq', h.seq, 0xff],
    ['command', h.command, 0xff],
  ] as const) {
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
  if (SMP_HEADER_BYTES + body.length > LIMITS.maxSmpPacketBytes)
    throw new RangeError(`SMP packet of ${SMP_HEADER_BYTES + body.length} bytes exceeds maxSmpPacketBytes`);
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
