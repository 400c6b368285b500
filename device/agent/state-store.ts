/**
 * Power-fail-safe storage of the device state record (SPEC.md §4.4, §11.2).
 *
 * Two copies, one erase block each. A copy is
 *   [len u16 LE][crc32 u32 LE of the record][record bytes (shared/state.ts)][erased padding]
 * A copy is valid when len is in range, the CRC matches and the record parses. `load` picks the valid
 * copy with the highest sequence number. `save` writes sequence + 1 into the copy that does NOT hold
 * the newest valid record (erase, then one write): a power cut at any point leaves the newest valid
 * copy untouched, so the device sees either the old or the new record, never a mix.
 * Both copies invalid -> STATE_CORRUPT (a factory-fresh flash needs `provisionState` first).
 *
 * PowerCut propagates (it models the CPU stopping); FlashError becomes a code.
 */
import { fail, ok, type Result } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { type DeviceStateRecord, encodeStateRecord, parseStateRecord } from '../../shared/state.js';
import { type Flash, FlashError } from './flash.js';
import { type Layout } from './layout.js';

export const STATE_HEADER_BYTES = 6;

const CRC_TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, reflected, as in zlib). */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Run flash operations; a FlashError becomes its code, PowerCut and bugs propagate. */
export function flashResult<T extends object>(fn: () => T): Result<T> {
  try {
    return ok(fn());
  } catch (e) {
    if (e instanceof FlashError) return fail(e.codeName, e.message);
    throw e;
  }
}

/** The bytes of one copy, padded with the erased value to writeAlign. */
export function encodeStateCopy(record: DeviceStateRecord, flash: Pick<Flash, 'writeAlign' | 'erasedValue' | 'eraseBlockSize'>): Uint8Array {
  const body = encodeStateRecord(record);
  const length = Math.ceil((STATE_HEADER_BYTES + body.length) / flash.writeAlign) * flash.writeAlign;
  if (length > flash.eraseBlockSize || body.length > 0xffff) throw new RangeError('state record does not fit one erase block');
  const out = new Uint8Array(length).fill(flash.erasedValue);
  const crc = crc32(body);
  out[0] = body.length & 0xff;
  out[1] = body.length >>> 8;
  out[2] = crc & 0xff;
  out[3] = (crc >>> 8) & 0xff;
  out[4] = (crc >>> 16) & 0xff;
  out[5] = crc >>> 24;
  out.set(body, STATE_HEADER_BYTES);
  return out;
}

/** Parse one copy's block; null when it is not a valid copy. */
export function decodeStateCopy(block: Uint8Array): DeviceStateRecord | null {
  if (block.length < STATE_HEADER_BYTES) return null;
  const len = block[0] | (block[1] << 8);
  if (len === 0 || STATE_HEADER_BYTES + len > block.length) return null;
  const crc = (block[2] | (block[3] << 8) | (block[4] << 16) | (block[5] << 24)) >>> 0;
  const body = block.subarray(STATE_HEADER_BYTES, STATE_HEADER_BYTES + len);
  if (crc32(body) !== crc) return null;
  const parsed = parseStateRecord(body);
  return parsed.ok ? parsed.value : null;
}

export type LoadedState = { readonly record: DeviceStateRecord; readonly copy: 0 | 1; readonly valid: readonly [boolean, boolean] };

/** The newest valid copy, or STATE_CORRUPT when neither copy is valid. */
export function loadState(flash: Flash, layout: Layout): Result<LoadedState> {
  const r = flashResult(() => ({ copies: layout.state.map((reg) => decodeStateCopy(flash.read(reg.offset, reg.size))) }));
  if (!r.ok) return r;
  const [a, b] = r.copies;
  const valid = [a !== null, b !== null] as const;
  if (a === null && b === null) return fail('STATE_CORRUPT', 'no valid state copy');
  if (b === null || (a !== null && a.sequence >= b.sequence)) return ok({ record: a!, copy: 0 as const, valid });
  return ok({ record: b, copy: 1 as const, valid });
}

export type StateUpdate = Omit<DeviceStateRecord, 'sequence'>;

/**
 * Write `next` (sequence = newest + 1) into the other copy. Monotonic fields (security counter, trust
 * and revocation versions) never go down: a lower value is refused with INVALID_STATE.
 * COUNTER_EXHAUSTED when the sequence number cannot be raised.
 */
export function saveState(flash: Flash, layout: Layout, next: StateUpdate): Result<{ record: DeviceStateRecord }> {
  const current = loadState(flash, layout);
  if (!current.ok) return current;
  const cur = current.record;
  if (cur.sequence >= LIMITS.maxCounter) return fail('COUNTER_EXHAUSTED', 'state sequence number exhausted');
  if (next.securityCounter < cur.securityCounter || next.trustVersion < cur.trustVersion || next.revocationVersion < cur.revocationVersion) {
    return fail('INVALID_STATE', 'a monotonic state field would decrease');
  }
  const record: DeviceStateRecord = { ...next, sequence: cur.sequence + 1 };
  return writeCopy(flash, layout, current.copy === 0 ? 1 : 0, record);
}

function writeCopy(flash: Flash, layout: Layout, copy: 0 | 1, record: DeviceStateRecord): Result<{ record: DeviceStateRecord }> {
  let bytes: Uint8Array;
  try {
    bytes = encodeStateCopy(record, flash);
  } catch (e) {
    return fail('INVALID_STATE', e instanceof Error ? e.message : 'state record rejected');
  }
  const region = layout.state[copy];
  const written = flashResult(() => {
    flash.erase(region.offset, region.size);
    flash.write(region.offset, bytes);
    return { back: flash.read(region.offset, bytes.length) };
  });
  if (!written.ok) return written;
  for (let i = 0; i < bytes.length; i++) if (written.back[i] !== bytes[i]) return fail('FLASH_READBACK_MISMATCH', `state copy ${copy}`);
  return ok({ record });
}

/** Factory provisioning: erase both copies and write the first record (sequence 1) into copy 0. */
export function provisionState(flash: Flash, layout: Layout, first: StateUpdate): Result<{ record: DeviceStateRecord }> {
  const erased = flashResult(() => {
    flash.erase(layout.state[1].offset, layout.state[1].size);
    return {};
  });
  if (!erased.ok) return erased;
  return writeCopy(flash, layout, 0, { ...first, sequence: 1 });
}
