/**
 * Readers and writers of SMP payload map fields, the parts the command codecs (commands.ts) are
 * built from. Maps are open (unknown keys are ignored); a known key must have the right type
 * (WRONG_TYPE) and range (BAD_VALUE, TOO_LARGE); a required key that is missing is MISSING_FIELD
 * (SPEC.md §13.1). The readers throw SchemaError; `parseWith` turns that into a Failure at one exit.
 */

import { utf8Length } from '../bytes.js';
import { type CborMap, type Encodable } from '../cbor.js';
import { fail, ok, type Result } from '../codes.js';
import { SchemaError, schemaFail } from '../fields.js';
import { type SmpPayload } from './packet.js';

/** Run a field-reading function at a single exit: SchemaError -> Failure. */
export function parseWith<T>(read: () => T): Result<{ value: T }> {
  try {
    return ok({ value: Object.freeze(read()) });
  } catch (e) {
    if (e instanceof SchemaError) return fail(e.name, e.detail);
    return fail('MALFORMED', 'parser failure');
  }
}

export function uintField(map: CborMap, key: string, max: number): number | undefined {
  const v = map.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) schemaFail('WRONG_TYPE', `"${key}" is not an integer`);
  if (v < 0 || v > max) schemaFail('BAD_VALUE', `"${key}" = ${v} is outside 0..${max}`);
  return v;
}

export function intField(map: CborMap, key: string): number | undefined {
  const v = map.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) schemaFail('WRONG_TYPE', `"${key}" is not an integer`);
  return v;
}

export function required<T>(value: T | undefined, key: string): T {
  if (value === undefined) schemaFail('MISSING_FIELD', `missing "${key}"`);
  return value;
}

export function bytesField(map: CborMap, key: string, maxBytes: number): Uint8Array | undefined {
  const v = map.get(key);
  if (v === undefined) return undefined;
  if (!(v instanceof Uint8Array)) schemaFail('WRONG_TYPE', `"${key}" is not a byte string`);
  if (v.length > maxBytes) schemaFail('TOO_LARGE', `"${key}" is ${v.length} bytes, at most ${maxBytes}`);
  return v.slice(); // parsed values own their bytes
}

export function textField(map: CborMap, key: string, maxBytes: number): string | undefined {
  const v = map.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== 'string') schemaFail('WRONG_TYPE', `"${key}" is not text`);
  if (utf8Length(v) > maxBytes) schemaFail('TOO_LARGE', `"${key}" is longer than ${maxBytes} bytes`);
  return v;
}

/** Booleans; Zephyr also sends 0/1 for some flags (e.g. "force"). */
export function boolField(map: CborMap, key: string): boolean | undefined {
  const v = map.get(key);
  if (v === undefined) return undefined;
  if (typeof v === 'boolean') return v;
  if (v === 0 || v === 1) return v === 1;
  schemaFail('WRONG_TYPE', `"${key}" is not a boolean`);
}

export function mapOf(entries: readonly (readonly [string, Encodable | undefined])[]): SmpPayload {
  const m = new Map<string, Encodable>();
  for (const [k, v] of entries) if (v !== undefined) m.set(k, v);
  return m;
}

/** 2^32 - 1, the largest argument of a 5-byte CBOR head (RFC 8949 §3). */
export const MAX_U32 = 0xffffffff;
