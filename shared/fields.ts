/**
 * Typed field access over a decoded CBOR map, for the schema parsers. Parsers read every field they
 * know through one FieldReader and then call `done()`, which rejects keys the spec does not define
 * (SPEC.md: unknown keys are an error in every fwseal map). Violations throw SchemaError, which the
 * parsers turn into a Failure at their single exit.
 */

import { utf8Length } from './bytes.js';
import { type CborKey, type CborMap, type CborValue } from './cbor.js';
import { type CodeName } from './codes.js';

/** A coded violation, thrown by the readers below and by the CBOR decoder, caught at one exit each. */
export class SchemaError {
  constructor(
    readonly name: Exclude<CodeName, 'OK'>,
    readonly detail?: string,
  ) {}
}

export function schemaFail(name: Exclude<CodeName, 'OK'>, detail: string): never {
  throw new SchemaError(name, detail);
}

export function asMap(value: CborValue | undefined, what: string): CborMap {
  if (!(value instanceof Map)) schemaFail('WRONG_TYPE', `${what} is not a map`);
  return value;
}

export function asArray(value: CborValue | undefined, what: string, max: number): readonly CborValue[] {
  if (!Array.isArray(value)) schemaFail('WRONG_TYPE', `${what} is not an array`);
  if (value.length > max) schemaFail('TOO_LARGE', `${what} has ${value.length} entries, at most ${max}`);
  return value;
}

export function asUint(value: CborValue | undefined, what: string, min: number, max: number): number {
  if (typeof value !== 'number') schemaFail('WRONG_TYPE', `${what} is not an integer`);
  if (value < min || value > max) schemaFail('BAD_VALUE', `${what} = ${value} is outside ${min}..${max}`);
  return value;
}

export function asBytes(value: CborValue | undefined, what: string, length: number): Uint8Array {
  if (!(value instanceof Uint8Array)) schemaFail('WRONG_TYPE', `${what} is not a byte string`);
  if (value.length !== length) schemaFail('BAD_VALUE', `${what} is ${value.length} bytes, expected ${length}`);
  return value.slice(); // copy: parsed objects own their bytes
}

export function asText(value: CborValue | undefined, what: string, maxBytes: number, pattern?: RegExp): string {
  if (typeof value !== 'string') schemaFail('WRONG_TYPE', `${what} is not text`);
  if (value.length === 0) schemaFail('BAD_VALUE', `${what} is empty`);
  if (utf8Length(value) > maxBytes) schemaFail('TOO_LARGE', `${what} is longer than ${maxBytes} bytes`);
  if (pattern && !pattern.test(value)) schemaFail('BAD_VALUE', `${what} has an invalid form`);
  return value;
}

export class FieldReader {
  // Set in the constructor, not as a class field: see the Reader of ./cbor.ts.
  declare private readonly seen: Set<CborKey>;
  constructor(
    private readonly map: CborMap,
    private readonly what: string,
  ) {
    this.seen = new Set();
  }

  required(key: CborKey, name: string): CborValue {
    this.seen.add(key);
    const v = this.map.get(key);
    if (v === undefined) schemaFail('MISSING_FIELD', `${this.what}: missing ${name} (key ${String(key)})`);
    return v;
  }

  optional(key: CborKey): CborValue | undefined {
    this.seen.add(key);
    return this.map.get(key);
  }

  done(): void {
    for (const key of this.map.keys()) {
      if (!this.seen.has(key)) schemaFail('UNKNOWN_KEY', `${this.what}: unknown key ${String(key)}`);
    }
  }
}
