/**
 * The OTA message codec (SPEC.md §12.2): every message is a closed map of deterministic CBOR with
 * integer keys whose key 0 is the message type, so a message of one type is never read as another
 * (WRONG_KIND). Parsers never throw on bad bytes; encoders throw RangeError on values outside the
 * schema (a bug in the caller), after checking their output with the parser. The message schemas
 * are in messages.ts and status.ts.
 */
import { type CborKey, type CborValue, decodeCbor, type Encodable, encodeCbor } from '../cbor.js';
import { fail, ok, type Result } from '../codes.js';
import { asMap, asText, asUint, FieldReader, SchemaError, schemaFail } from '../fields.js';
import { LIMITS } from '../limits.js';
import { ID_PATTERN, REPLY_TOPIC_PATTERN } from './topics.js';

export const MSG = Object.freeze({
  announcement: 1,
  manifestRequest: 2,
  manifestResponse: 3,
  pageRequest: 4,
  pageResponse: 5,
  blockRequest: 6,
  blockResponse: 7,
  errorReply: 8,
  statusEvent: 9,
  rootAnnouncement: 10,
  rootRequest: 11,
  rootResponse: 12,
  logProofRequest: 13,
  logProofResponse: 14,
});
export type MessageType = keyof typeof MSG;

/** Keys shared by the messages (SPEC.md §12.2); message-specific keys start at 4. */
export const KEY_TYPE = 0;
export const KEY_CAMPAIGN = 1;
export const KEY_REQUEST_ID = 2;
export const KEY_REPLY_TOPIC = 3;

export const MAX_INDEX = LIMITS.maxImageSize; // block and page indices fit the device's 32-bit offsets
export const MAX_CODE = 999;

/** Decoder limits of every OTA message: small maps, at most one list of ranges, topic-sized strings. */
const DECODE_LIMITS = {
  maxBytes: LIMITS.maxOtaMessageBytes,
  maxDepth: 4,
  maxContainerEntries: Math.max(16, 2 * LIMITS.maxRangesPerRequest),
  maxTextBytes: LIMITS.maxTopicBytes,
};

/** Parse a message of one type: decode, check key 0, read the fields, refuse any key left over. */
export function parseMessage<T>(bytes: Uint8Array, type: MessageType, read: (f: FieldReader) => T): Result<{ value: T }> {
  const decoded = decodeCbor(bytes, DECODE_LIMITS);
  if (!decoded.ok) return decoded;
  try {
    const what = `${type} message`;
    const fields = new FieldReader(asMap(decoded.value, what), what);
    const t = fields.required(KEY_TYPE, 'message type');
    if (typeof t !== 'number') schemaFail('WRONG_TYPE', 'message type is not an integer');
    if (t !== MSG[type]) schemaFail('WRONG_KIND', `message type ${t} where ${MSG[type]} (${type}) was expected`);
    const value = read(fields);
    fields.done();
    return ok({ value: Object.freeze(value) });
  } catch (e) {
    if (e instanceof SchemaError) return fail(e.name, e.detail);
    return fail('MALFORMED', `${type} message`);
  }
}

/** The type of an OTA message (key 0), to dispatch before parsing it; WRONG_KIND for an unknown type. */
export function messageType(bytes: Uint8Array): Result<{ type: MessageType }> {
  const decoded = decodeCbor(bytes, DECODE_LIMITS);
  if (!decoded.ok) return decoded;
  if (!(decoded.value instanceof Map)) return fail('WRONG_TYPE', 'message is not a map');
  const t = decoded.value.get(KEY_TYPE);
  if (t === undefined) return fail('MISSING_FIELD', 'message type');
  if (typeof t !== 'number') return fail('WRONG_TYPE', 'message type is not an integer');
  for (const name of Object.keys(MSG) as MessageType[]) if (MSG[name] === t) return ok({ type: name });
  return fail('WRONG_KIND', `unknown message type ${t}`);
}

// ---- Fields the requests share ----

export const campaignOf = (f: FieldReader) => asText(f.required(KEY_CAMPAIGN, 'campaign id'), 'campaign id', LIMITS.maxIdBytes, ID_PATTERN);
export const requestIdOf = (f: FieldReader) => asUint(f.required(KEY_REQUEST_ID, 'request id'), 'request id', 0, LIMITS.maxRequestId);
export function replyTopicOf(f: FieldReader): { replyTopic?: string } {
  const v = f.optional(KEY_REPLY_TOPIC);
  return v === undefined ? {} : { replyTopic: asText(v, 'reply topic', LIMITS.maxTopicBytes, REPLY_TOPIC_PATTERN) };
}

/** A byte string of 0..max bytes (or min..max), copied. */
export function asByteRange(value: CborValue | undefined, what: string, min: number, max: number, multiple = 1): Uint8Array {
  if (!(value instanceof Uint8Array)) schemaFail('WRONG_TYPE', `${what} is not a byte string`);
  if (value.length > max) schemaFail('TOO_LARGE', `${what} is ${value.length} bytes, at most ${max}`);
  if (value.length < min || value.length % multiple !== 0) schemaFail('BAD_VALUE', `${what} is ${value.length} bytes`);
  return value.slice();
}

/** Encode a message of one type (absent optional fields left out) and check it with its parser. */
export function encodeMessage<T>(type: MessageType, entries: [CborKey, Encodable | undefined][], parse: (b: Uint8Array) => Result<T>): Uint8Array {
  const present = entries.filter((e): e is [CborKey, Encodable] => e[1] !== undefined);
  const bytes = encodeCbor(new Map<CborKey, Encodable>([[KEY_TYPE, MSG[type]], ...present]));
  const check = parse(bytes);
  if (!check.ok) throw new RangeError(`${type} message rejected: ${check.error}${check.detail ? ` (${check.detail})` : ''}`);
  return bytes;
}
