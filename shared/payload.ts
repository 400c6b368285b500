/**
 * What every signed payload starts with (SPEC.md §Payloads): key 0 `kind` says which object it is,
 * so a signature over one kind can never be read as another; key 1 `format` is the format version.
 */
import { type CborValue, decodeCbor, ENVELOPE_DECODE_LIMITS } from './cbor.js';
import { fail, ok, type Result } from './codes.js';
import { asMap, asUint, FieldReader, SchemaError, schemaFail } from './fields.js';
import { WIRE_LIMITS as LIMITS } from './limits.js';

export const KIND = Object.freeze({ manifest: 1, trust: 2, revocations: 3, state: 4, logProof: 5 });
export type Kind = keyof typeof KIND;
export const FORMAT_VERSION = 1;
export const KEY_KIND = 0;
export const KEY_FORMAT = 1;
/** A payload is decoded as its envelope was, within the smaller payload size. */
const PAYLOAD_LIMITS = Object.freeze({ ...ENVELOPE_DECODE_LIMITS, maxBytes: LIMITS.maxPayloadBytes });

/**
 * Decode a payload of the expected kind whose format is 1..`formats` (one format for most kinds; the
 * trust bundle has two, SPEC.md §4.2) and hand its fields and format to `read`, which must consume
 * every key it knows; unknown keys are rejected afterwards. The single exit turns schema errors into codes.
 */
export function parsePayload<T>(
  bytes: Uint8Array,
  kind: Kind,
  read: (fields: FieldReader, format: number) => T,
  formats = FORMAT_VERSION,
): Result<{ value: T }> {
  const decoded = decodeCbor(bytes, PAYLOAD_LIMITS);
  if (!decoded.ok) return decoded;
  try {
    const fields = new FieldReader(asMap(decoded.value, `${kind} payload`), `${kind} payload`);
    const k = fields.required(KEY_KIND, 'kind');
    if (typeof k !== 'number') schemaFail('WRONG_TYPE', 'kind is not an integer');
    if (k !== KIND[kind]) schemaFail('WRONG_KIND', `kind ${k} where ${KIND[kind]} (${kind}) was expected`);
    const format = asUint(fields.required(KEY_FORMAT, 'format'), 'format', 0, Number.MAX_SAFE_INTEGER);
    if (format < 1 || format > formats) schemaFail('UNSUPPORTED_FORMAT', `format ${format}`);
    const value = read(fields, format);
    fields.done();
    return ok({ value });
  } catch (e) {
    if (e instanceof SchemaError) return fail(e.name, e.detail);
    return fail('MALFORMED', `${kind} payload`);
  }
}

/** The header every payload map starts with, for the builders. */
export function payloadHeader(kind: Kind): [number, CborValue][] {
  return [
    [KEY_KIND, KIND[kind]],
    [KEY_FORMAT, FORMAT_VERSION],
  ];
}
