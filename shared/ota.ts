/**
 * OTA delivery over MQTT (SPEC.md §12): topic names and the CBOR messages devices and `fwseal serve`
 * exchange. Pure wire forms: no I/O, no timers. Every message is a closed map with integer keys whose
 * key 0 is the message type, so a message of one type is never read as another (WRONG_KIND).
 * Parsers never throw on bad bytes; encoders throw RangeError on values outside the schema (a bug in
 * the caller), after checking their output with the parser.
 */
import { utf8Encode } from './bytes.js';
import { type CborKey, type CborValue, type Encodable, decodeCbor, encodeCbor } from './cbor.js';
import { type Result, CODES, fail, ok } from './codes.js';
import { FieldReader, SchemaError, asArray, asBytes, asMap, asText, asUint, schemaFail } from './fields.js';
import { DIGEST_BYTES, LIMITS } from './limits.js';
import { isPowerOfTwo } from './manifest.js';

// ---- Ids and topics ----

/** Campaign, device, group and share-group ids: 1..64 bytes of [A-Za-z0-9_-] (no '/', no wildcards). */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** A topic prefix: one or more id segments joined by '/', e.g. "fwseal" or "acme/fleet-1". */
const PREFIX_PATTERN = /^[A-Za-z0-9_-]{1,64}(?:\/[A-Za-z0-9_-]{1,64})*$/;
/** Share group used by `fwseal serve` instances for MQTT 5 shared subscriptions. */
export const SHARE_GROUP = 'fwseal';

export function isValidId(id: unknown): id is string {
  return typeof id === 'string' && ID_PATTERN.test(id);
}

export function isValidPrefix(prefix: unknown): prefix is string {
  return typeof prefix === 'string' && prefix.length <= LIMITS.maxTopicBytes / 2 && PREFIX_PATTERN.test(prefix);
}

function checkId(id: string, what: string): string {
  if (!isValidId(id)) throw new RangeError(`${what} must be 1..${LIMITS.maxIdBytes} characters of [A-Za-z0-9_-]`);
  return id;
}

function checkPrefix(prefix: string): string {
  if (!isValidPrefix(prefix)) throw new RangeError('topic prefix must be id segments joined by "/"');
  return prefix;
}

/** Topic names (SPEC.md §12.1). Builders throw RangeError on an invalid prefix or id. */
export const topics = Object.freeze({
  /** Retained announcement of the current campaign for a device group (server -> devices). */
  announce: (prefix: string, group: string) => `${checkPrefix(prefix)}/group/${checkId(group, 'group')}/announce`,
  /** Requests of one device for one campaign (device -> servers). */
  request: (prefix: string, campaign: string, device: string) =>
    `${checkPrefix(prefix)}/campaign/${checkId(campaign, 'campaign id')}/req/${checkId(device, 'device id')}`,
  /** Replies to one device (servers -> device): the 3.1.1 reply topic and the MQTT 5 response topic. */
  reply: (prefix: string, device: string) => `${checkPrefix(prefix)}/device/${checkId(device, 'device id')}/reply`,
  /** Block responses a server sends once for every device of the campaign that asked (§12.11). */
  data: (prefix: string, campaign: string) => `${checkPrefix(prefix)}/campaign/${checkId(campaign, 'campaign id')}/data`,
  /** Status events of one device (device -> servers). */
  status: (prefix: string, device: string) => `${checkPrefix(prefix)}/device/${checkId(device, 'device id')}/status`,
  /** Filter a server subscribes to for every request. */
  requestFilter: (prefix: string) => `${checkPrefix(prefix)}/campaign/+/req/+`,
  /** Filter a server subscribes to for every status event. */
  statusFilter: (prefix: string) => `${checkPrefix(prefix)}/device/+/status`,
  /** MQTT 5 shared subscription (`$share/<group>/<filter>`): each message goes to one server of the group. */
  shared: (filter: string, group: string = SHARE_GROUP) => {
    if (filter.length === 0 || filter.startsWith('$') || filter.includes('\u0000')) throw new RangeError('invalid topic filter');
    return `$share/${checkId(group, 'share group')}/${filter}`;
  },
});

/** Campaign and device named by a request topic (what a server learns before reading the payload). */
export function parseRequestTopic(prefix: string, topic: string): Result<{ campaign: string; device: string }> {
  if (!isValidPrefix(prefix)) return fail('BAD_VALUE', 'invalid topic prefix');
  if (typeof topic !== 'string' || !topic.startsWith(prefix + '/')) return fail('BAD_VALUE', 'topic outside the prefix');
  const parts = topic.slice(prefix.length + 1).split('/');
  if (parts.length !== 4 || parts[0] !== 'campaign' || parts[2] !== 'req') return fail('BAD_VALUE', 'not a request topic');
  if (!isValidId(parts[1]) || !isValidId(parts[3])) return fail('BAD_VALUE', 'invalid id in the request topic');
  return ok({ campaign: parts[1], device: parts[3] });
}

/** Device named by a status topic. */
export function parseStatusTopic(prefix: string, topic: string): Result<{ device: string }> {
  if (!isValidPrefix(prefix)) return fail('BAD_VALUE', 'invalid topic prefix');
  if (typeof topic !== 'string' || !topic.startsWith(prefix + '/')) return fail('BAD_VALUE', 'topic outside the prefix');
  const parts = topic.slice(prefix.length + 1).split('/');
  if (parts.length !== 3 || parts[0] !== 'device' || parts[2] !== 'status' || !isValidId(parts[1])) return fail('BAD_VALUE', 'not a status topic');
  return ok({ device: parts[1] });
}

/** A topic a device may name as its reply topic: publishable (no wildcards, no NUL), not a `$` topic. */
const REPLY_TOPIC_PATTERN = /^[^+#\u0000$][^+#\u0000]*$/;

// ---- Messages ----

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
});
export type MessageType = keyof typeof MSG;

/** Keys shared by the messages (SPEC.md §12.2); message-specific keys start at 4. */
export const KEY_TYPE = 0;
export const KEY_CAMPAIGN = 1;
export const KEY_REQUEST_ID = 2;
export const KEY_REPLY_TOPIC = 3;

export const ANNOUNCEMENT_KEY = Object.freeze({ manifestDigest: 4, manifestSize: 5, imageSize: 6, chunkSize: 7, blockSize: 8, pageCount: 9, rollout: 10 });
export const MANIFEST_RESPONSE_KEY = Object.freeze({ manifest: 4 });
export const PAGE_KEY = Object.freeze({ page: 4, leaves: 5, proof: 6 });
export const BLOCK_REQUEST_KEY = Object.freeze({ ranges: 4, bitmapBase: 5, bitmap: 6, multicast: 7 });
export const BLOCK_RESPONSE_KEY = Object.freeze({ block: 4, data: 5 });
export const ERROR_KEY = Object.freeze({ code: 4, index: 5 });
export const STATUS_KEY = Object.freeze({ device: 4, state: 5, done: 6, total: 7, code: 8, group: 9, version: 10, counter: 11 });

export const STATUS_STATES = Object.freeze(['accepted', 'downloading', 'verifying', 'installed', 'confirmed', 'rejected', 'failed', 'online'] as const);
export type StatusState = (typeof STATUS_STATES)[number];

const MAX_INDEX = LIMITS.maxImageSize; // block and page indices fit the device's 32-bit offsets
const MAX_CODE = 999;

export type Announcement = {
  readonly campaign: string;
  /** SHA-256 of the manifest envelope the device will fetch. */
  readonly manifestDigest: Uint8Array;
  readonly manifestSize: number;
  readonly imageSize: number;
  readonly chunkSize: number;
  /** Bytes per block: a power of two, a multiple of chunkSize, at most maxBlockBytes. */
  readonly blockSize: number;
  readonly pageCount: number;
  /**
   * Staged rollout (waves): a device takes part iff rolloutBucket(campaign, device) < rollout.
   * 0 = nobody yet, ROLLOUT_ALL (2^32) = every device of the group.
   */
  readonly rollout: number;
};
export type ManifestRequest = { readonly campaign: string; readonly requestId: number; readonly replyTopic?: string };
export type ManifestResponse = { readonly campaign: string; readonly requestId: number; readonly manifest: Uint8Array };
export type PageRequest = { readonly campaign: string; readonly requestId: number; readonly replyTopic?: string; readonly page: number };
export type PageResponse = {
  readonly campaign: string;
  readonly requestId: number;
  readonly page: number;
  readonly leaves: Uint8Array;
  readonly proof: Uint8Array;
};
/** A run of `count` blocks starting at block `first`. */
export type BlockRange = readonly [first: number, count: number];
export type BlockRequest = {
  readonly campaign: string;
  readonly requestId: number;
  readonly replyTopic?: string;
  /** The device listens on the campaign's data topic: the server may answer there, once for many devices (§12.11). */
  readonly multicast?: boolean;
} & (
  | { readonly ranges: readonly BlockRange[]; readonly bitmapBase?: undefined; readonly bitmap?: undefined }
  | { readonly ranges?: undefined; readonly bitmapBase: number; readonly bitmap: Uint8Array }
);
export type BlockResponse = { readonly campaign: string; readonly requestId: number; readonly block: number; readonly data: Uint8Array };
export type ErrorReply = { readonly campaign?: string; readonly requestId?: number; readonly code: number; readonly index?: number };
export type StatusEvent = {
  /** Absent only in state `online`. */
  readonly campaign?: string;
  readonly device: string;
  readonly state: StatusState;
  readonly done?: number;
  readonly total?: number;
  readonly code?: number;
  /** State `online` only (required there): the device's group, installed version and security counter. */
  readonly group?: string;
  readonly version?: string;
  readonly counter?: number;
};

/** Every device of the group (announcement key 10). */
export const ROLLOUT_ALL = 2 ** 32;

/**
 * A device's place in the rollout order of a campaign: the first 4 bytes (big-endian) of
 * SHA-256(utf8(campaign + "/" + device)). Uniform and independent per campaign, so waves are a
 * different random sample each time, and a server fixes a wave's exact size by choosing `rollout`
 * just above the k-th smallest bucket among the devices it knows.
 */
export function rolloutBucket(sha256: (data: Uint8Array) => Uint8Array, campaign: string, device: string): number {
  const d = sha256(utf8Encode(`${campaign}/${device}`));
  return ((d[0]! << 24) >>> 0) + (d[1]! << 16) + (d[2]! << 8) + d[3]!;
}

function parseMessage<T>(bytes: Uint8Array, type: MessageType, read: (f: FieldReader) => T): Result<{ value: T }> {
  const decoded = decodeCbor(bytes, {
    maxBytes: LIMITS.maxOtaMessageBytes,
    maxDepth: 4,
    maxContainerEntries: Math.max(16, 2 * LIMITS.maxRangesPerRequest),
    maxTextBytes: LIMITS.maxTopicBytes,
  });
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
  const decoded = decodeCbor(bytes, {
    maxBytes: LIMITS.maxOtaMessageBytes,
    maxDepth: 4,
    maxContainerEntries: Math.max(16, 2 * LIMITS.maxRangesPerRequest),
    maxTextBytes: LIMITS.maxTopicBytes,
  });
  if (!decoded.ok) return decoded;
  if (!(decoded.value instanceof Map)) return fail('WRONG_TYPE', 'message is not a map');
  const t = decoded.value.get(KEY_TYPE);
  if (t === undefined) return fail('MISSING_FIELD', 'message type');
  if (typeof t !== 'number') return fail('WRONG_TYPE', 'message type is not an integer');
  for (const name of Object.keys(MSG) as MessageType[]) if (MSG[name] === t) return ok({ type: name });
  return fail('WRONG_KIND', `unknown message type ${t}`);
}

const campaignOf = (f: FieldReader) => asText(f.required(KEY_CAMPAIGN, 'campaign id'), 'campaign id', LIMITS.maxIdBytes, ID_PATTERN);
const requestIdOf = (f: FieldReader) => asUint(f.required(KEY_REQUEST_ID, 'request id'), 'request id', 0, LIMITS.maxRequestId);
function replyTopicOf(f: FieldReader): { replyTopic?: string } {
  const v = f.optional(KEY_REPLY_TOPIC);
  return v === undefined ? {} : { replyTopic: asText(v, 'reply topic', LIMITS.maxTopicBytes, REPLY_TOPIC_PATTERN) };
}

/** A byte string of 0..max bytes (or min..max), copied. */
function asByteRange(value: CborValue | undefined, what: string, min: number, max: number, multiple = 1): Uint8Array {
  if (!(value instanceof Uint8Array)) schemaFail('WRONG_TYPE', `${what} is not a byte string`);
  if (value.length > max) schemaFail('TOO_LARGE', `${what} is ${value.length} bytes, at most ${max}`);
  if (value.length < min || value.length % multiple !== 0) schemaFail('BAD_VALUE', `${what} is ${value.length} bytes`);
  return value.slice();
}

function encodeMessage<T>(type: MessageType, entries: [CborKey, Encodable | undefined][], parse: (b: Uint8Array) => Result<T>): Uint8Array {
  const present = entries.filter((e): e is [CborKey, Encodable] => e[1] !== undefined);
  const bytes = encodeCbor(new Map<CborKey, Encodable>([[KEY_TYPE, MSG[type]], ...present]));
  const check = parse(bytes);
  if (!check.ok) throw new RangeError(`${type} message rejected: ${check.error}${check.detail ? ' (' + check.detail + ')' : ''}`);
  return bytes;
}

// Announcement

export function parseAnnouncement(bytes: Uint8Array): Result<{ value: Announcement }> {
  return parseMessage(bytes, 'announcement', (f) => {
    const K = ANNOUNCEMENT_KEY;
    const campaign = campaignOf(f);
    const manifestDigest = asBytes(f.required(K.manifestDigest, 'manifest digest'), 'manifest digest', DIGEST_BYTES);
    const manifestSize = asUint(f.required(K.manifestSize, 'manifest size'), 'manifest size', 1, LIMITS.maxEnvelopeBytes);
    const imageSize = asUint(f.required(K.imageSize, 'image size'), 'image size', 1, LIMITS.maxImageSize);
    const chunkSize = asUint(f.required(K.chunkSize, 'chunk size'), 'chunk size', LIMITS.minChunkSize, LIMITS.maxChunkSize);
    const blockSize = asUint(f.required(K.blockSize, 'block size'), 'block size', LIMITS.minChunkSize, LIMITS.maxBlockBytes);
    const pageCount = asUint(f.required(K.pageCount, 'page count'), 'page count', 1, MAX_INDEX);
    const rollout = asUint(f.required(K.rollout, 'rollout'), 'rollout', 0, ROLLOUT_ALL);
    if (!isPowerOfTwo(chunkSize)) schemaFail('BAD_VALUE', 'chunk size is not a power of two');
    if (!isPowerOfTwo(blockSize) || blockSize < chunkSize) schemaFail('BAD_VALUE', 'block size is not a power-of-two multiple of the chunk size');
    const chunks = Math.ceil(imageSize / chunkSize);
    if (pageCount !== Math.ceil(chunks / LIMITS.pageLeaves)) schemaFail('BAD_VALUE', `page count ${pageCount} does not match the image`);
    return { campaign, manifestDigest, manifestSize, imageSize, chunkSize, blockSize, pageCount, rollout };
  });
}

export function encodeAnnouncement(a: Announcement): Uint8Array {
  const K = ANNOUNCEMENT_KEY;
  return encodeMessage('announcement', [
    [KEY_CAMPAIGN, a.campaign], [K.manifestDigest, a.manifestDigest], [K.manifestSize, a.manifestSize], [K.imageSize, a.imageSize],
    [K.chunkSize, a.chunkSize], [K.blockSize, a.blockSize], [K.pageCount, a.pageCount], [K.rollout, a.rollout],
  ], parseAnnouncement);
}

/** Number of blocks of an announced image. */
export function blockCount(a: Pick<Announcement, 'imageSize' | 'blockSize'>): number {
  return Math.ceil(a.imageSize / a.blockSize);
}

// Manifest request / response

export function parseManifestRequest(bytes: Uint8Array): Result<{ value: ManifestRequest }> {
  return parseMessage(bytes, 'manifestRequest', (f) => ({ campaign: campaignOf(f), requestId: requestIdOf(f), ...replyTopicOf(f) }));
}

export function encodeManifestRequest(m: ManifestRequest): Uint8Array {
  return encodeMessage('manifestRequest', [[KEY_CAMPAIGN, m.campaign], [KEY_REQUEST_ID, m.requestId], [KEY_REPLY_TOPIC, m.replyTopic]], parseManifestRequest);
}

export function parseManifestResponse(bytes: Uint8Array): Result<{ value: ManifestResponse }> {
  return parseMessage(bytes, 'manifestResponse', (f) => ({
    campaign: campaignOf(f),
    requestId: requestIdOf(f),
    manifest: asByteRange(f.required(MANIFEST_RESPONSE_KEY.manifest, 'manifest'), 'manifest', 1, LIMITS.maxEnvelopeBytes),
  }));
}

export function encodeManifestResponse(m: ManifestResponse): Uint8Array {
  return encodeMessage('manifestResponse', [
    [KEY_CAMPAIGN, m.campaign], [KEY_REQUEST_ID, m.requestId], [MANIFEST_RESPONSE_KEY.manifest, m.manifest],
  ], parseManifestResponse);
}

// Digest page request / response (SPEC.md §5.3)

export function parsePageRequest(bytes: Uint8Array): Result<{ value: PageRequest }> {
  return parseMessage(bytes, 'pageRequest', (f) => ({
    campaign: campaignOf(f),
    requestId: requestIdOf(f),
    ...replyTopicOf(f),
    page: asUint(f.required(PAGE_KEY.page, 'page index'), 'page index', 0, MAX_INDEX),
  }));
}

export function encodePageRequest(m: PageRequest): Uint8Array {
  return encodeMessage('pageRequest', [
    [KEY_CAMPAIGN, m.campaign], [KEY_REQUEST_ID, m.requestId], [KEY_REPLY_TOPIC, m.replyTopic], [PAGE_KEY.page, m.page],
  ], parsePageRequest);
}

export function parsePageResponse(bytes: Uint8Array): Result<{ value: PageResponse }> {
  return parseMessage(bytes, 'pageResponse', (f) => ({
    campaign: campaignOf(f),
    requestId: requestIdOf(f),
    page: asUint(f.required(PAGE_KEY.page, 'page index'), 'page index', 0, MAX_INDEX),
    leaves: asByteRange(f.required(PAGE_KEY.leaves, 'leaves'), 'leaves', DIGEST_BYTES, LIMITS.pageLeaves * DIGEST_BYTES, DIGEST_BYTES),
    proof: asByteRange(f.required(PAGE_KEY.proof, 'proof'), 'proof', 0, LIMITS.maxProofNodes * DIGEST_BYTES, DIGEST_BYTES),
  }));
}

export function encodePageResponse(m: PageResponse): Uint8Array {
  return encodeMessage('pageResponse', [
    [KEY_CAMPAIGN, m.campaign], [KEY_REQUEST_ID, m.requestId], [PAGE_KEY.page, m.page], [PAGE_KEY.leaves, m.leaves], [PAGE_KEY.proof, m.proof],
  ], parsePageResponse);
}

// Block request / response

function readRanges(value: CborValue | undefined): BlockRange[] {
  const list = asArray(value, 'ranges', LIMITS.maxRangesPerRequest);
  if (list.length === 0) schemaFail('BAD_VALUE', 'ranges is empty');
  const out: BlockRange[] = [];
  let next = 0; // ranges ascend and do not touch: one encoding per set of blocks
  let total = 0;
  for (let i = 0; i < list.length; i++) {
    const pair = asArray(list[i], `range ${i}`, 2);
    if (pair.length !== 2) schemaFail('BAD_VALUE', `range ${i} is not [first, count]`);
    const first = asUint(pair[0], `range ${i} first block`, 0, MAX_INDEX);
    const count = asUint(pair[1], `range ${i} count`, 1, LIMITS.maxBlocksPerRequest);
    if (i > 0 && first <= next) schemaFail('BAD_VALUE', `range ${i} overlaps or touches the previous one`);
    if (first + count - 1 > MAX_INDEX) schemaFail('BAD_VALUE', `range ${i} runs past the last block index`);
    total += count;
    if (total > LIMITS.maxBlocksPerRequest) schemaFail('TOO_LARGE', `more than ${LIMITS.maxBlocksPerRequest} blocks requested`);
    next = first + count;
    out.push(Object.freeze([first, count] as const));
  }
  return out;
}

function readBitmap(base: CborValue | undefined, bitmap: CborValue | undefined): { bitmapBase: number; bitmap: Uint8Array } {
  const bitmapBase = asUint(base, 'bitmap base', 0, MAX_INDEX);
  const bits = asByteRange(bitmap, 'bitmap', 1, LIMITS.maxBitmapBytes);
  if (bits[bits.length - 1] === 0) schemaFail('BAD_VALUE', 'bitmap ends with a zero byte');
  let set = 0;
  for (const b of bits) for (let x = b; x !== 0; x &= x - 1) set++;
  if (set > LIMITS.maxBlocksPerRequest) schemaFail('TOO_LARGE', `more than ${LIMITS.maxBlocksPerRequest} blocks requested`);
  if (bitmapBase + bits.length * 8 - 1 > MAX_INDEX) schemaFail('BAD_VALUE', 'bitmap runs past the last block index');
  return { bitmapBase, bitmap: bits };
}

export function parseBlockRequest(bytes: Uint8Array): Result<{ value: BlockRequest }> {
  return parseMessage(bytes, 'blockRequest', (f): BlockRequest => {
    const K = BLOCK_REQUEST_KEY;
    const campaign = campaignOf(f);
    const requestId = requestIdOf(f);
    const reply = replyTopicOf(f);
    const ranges = f.optional(K.ranges);
    const base = f.optional(K.bitmapBase);
    const bitmap = f.optional(K.bitmap);
    const mc = f.optional(K.multicast);
    if (mc !== undefined) asUint(mc, 'multicast', 1, 1);
    const multicast = mc !== undefined ? { multicast: true } : {};
    if (ranges !== undefined) {
      if (base !== undefined || bitmap !== undefined) schemaFail('BAD_VALUE', 'both ranges and a bitmap');
      return { campaign, requestId, ...reply, ...multicast, ranges: Object.freeze(readRanges(ranges)) };
    }
    if (base === undefined && bitmap === undefined) schemaFail('MISSING_FIELD', 'blockRequest message: neither ranges nor a bitmap');
    if (base === undefined) schemaFail('MISSING_FIELD', 'blockRequest message: missing bitmap base');
    if (bitmap === undefined) schemaFail('MISSING_FIELD', 'blockRequest message: missing bitmap');
    return { campaign, requestId, ...reply, ...multicast, ...readBitmap(base, bitmap) };
  });
}

export function encodeBlockRequest(m: BlockRequest): Uint8Array {
  const K = BLOCK_REQUEST_KEY;
  return encodeMessage('blockRequest', [
    [KEY_CAMPAIGN, m.campaign], [KEY_REQUEST_ID, m.requestId], [KEY_REPLY_TOPIC, m.replyTopic],
    [K.ranges, m.ranges === undefined ? undefined : m.ranges.map((r) => [r[0], r[1]])], [K.bitmapBase, m.bitmapBase], [K.bitmap, m.bitmap],
    [K.multicast, m.multicast ? 1 : undefined],
  ], parseBlockRequest);
}

/** The block indices a request asks for, ascending. Bit 7 of bitmap byte 0 is block `bitmapBase`. */
export function requestedBlocks(m: BlockRequest): number[] {
  const out: number[] = [];
  if (m.ranges !== undefined) {
    for (const [first, count] of m.ranges) for (let i = 0; i < count; i++) out.push(first + i);
  } else {
    for (let i = 0; i < m.bitmap.length * 8; i++) if (m.bitmap[i >> 3] & (0x80 >> (i & 7))) out.push(m.bitmapBase + i);
  }
  return out;
}

export function parseBlockResponse(bytes: Uint8Array): Result<{ value: BlockResponse }> {
  return parseMessage(bytes, 'blockResponse', (f) => ({
    campaign: campaignOf(f),
    requestId: requestIdOf(f),
    block: asUint(f.required(BLOCK_RESPONSE_KEY.block, 'block index'), 'block index', 0, MAX_INDEX),
    data: asByteRange(f.required(BLOCK_RESPONSE_KEY.data, 'block data'), 'block data', 1, LIMITS.maxBlockBytes),
  }));
}

export function encodeBlockResponse(m: BlockResponse): Uint8Array {
  return encodeMessage('blockResponse', [
    [KEY_CAMPAIGN, m.campaign], [KEY_REQUEST_ID, m.requestId], [BLOCK_RESPONSE_KEY.block, m.block], [BLOCK_RESPONSE_KEY.data, m.data],
  ], parseBlockResponse);
}

// Error reply

export function parseErrorReply(bytes: Uint8Array): Result<{ value: ErrorReply }> {
  return parseMessage(bytes, 'errorReply', (f) => {
    const campaign = f.optional(KEY_CAMPAIGN);
    const requestId = f.optional(KEY_REQUEST_ID);
    const index = f.optional(ERROR_KEY.index);
    return {
      ...(campaign !== undefined ? { campaign: asText(campaign, 'campaign id', LIMITS.maxIdBytes, ID_PATTERN) } : {}),
      ...(requestId !== undefined ? { requestId: asUint(requestId, 'request id', 0, LIMITS.maxRequestId) } : {}),
      code: asUint(f.required(ERROR_KEY.code, 'code'), 'code', 1, MAX_CODE),
      ...(index !== undefined ? { index: asUint(index, 'index', 0, MAX_INDEX) } : {}),
    };
  });
}

export function encodeErrorReply(m: ErrorReply): Uint8Array {
  return encodeMessage('errorReply', [
    [KEY_CAMPAIGN, m.campaign], [KEY_REQUEST_ID, m.requestId], [ERROR_KEY.code, m.code], [ERROR_KEY.index, m.index],
  ], parseErrorReply);
}

// Status event

export function parseStatusEvent(bytes: Uint8Array): Result<{ value: StatusEvent }> {
  return parseMessage(bytes, 'statusEvent', (f) => {
    const K = STATUS_KEY;
    const campaignV = f.optional(KEY_CAMPAIGN);
    const device = asText(f.required(K.device, 'device id'), 'device id', LIMITS.maxIdBytes, ID_PATTERN);
    const state = STATUS_STATES[asUint(f.required(K.state, 'state'), 'state', 0, STATUS_STATES.length - 1)];
    const doneV = f.optional(K.done);
    const totalV = f.optional(K.total);
    const codeV = f.optional(K.code);
    if ((doneV === undefined) !== (totalV === undefined)) schemaFail('MISSING_FIELD', 'statusEvent message: done and total go together');
    if (state === 'downloading' && doneV === undefined) schemaFail('MISSING_FIELD', 'statusEvent message: downloading without done/total');
    const failed = state === 'rejected' || state === 'failed';
    if (failed && codeV === undefined) schemaFail('MISSING_FIELD', `statusEvent message: ${state} without a code`);
    if (!failed && codeV !== undefined) schemaFail('BAD_VALUE', `statusEvent message: ${state} with a code`);
    const online = state === 'online';
    const groupV = f.optional(K.group);
    const versionV = f.optional(K.version);
    const counterV = f.optional(K.counter);
    if (online !== (groupV !== undefined)) schemaFail(online ? 'MISSING_FIELD' : 'BAD_VALUE', 'statusEvent message: group goes with state online only');
    if (!online && (versionV !== undefined || counterV !== undefined)) schemaFail('BAD_VALUE', 'statusEvent message: version and counter go with state online only');
    if (!online && campaignV === undefined) schemaFail('MISSING_FIELD', 'statusEvent message: campaign id');
    if (online && doneV !== undefined) schemaFail('BAD_VALUE', 'statusEvent message: online with done/total');
    const out: { -readonly [K in keyof StatusEvent]: StatusEvent[K] } = { device, state };
    if (campaignV !== undefined) out.campaign = asText(campaignV, 'campaign id', LIMITS.maxIdBytes, ID_PATTERN);
    if (groupV !== undefined) out.group = asText(groupV, 'group', LIMITS.maxIdBytes, ID_PATTERN);
    if (versionV !== undefined) out.version = asText(versionV, 'version', LIMITS.maxVersionBytes);
    if (counterV !== undefined) out.counter = asUint(counterV, 'counter', 0, MAX_INDEX);
    if (doneV !== undefined) {
      out.total = asUint(totalV, 'total', 0, MAX_INDEX);
      out.done = asUint(doneV, 'done', 0, out.total);
    }
    if (codeV !== undefined) out.code = asUint(codeV, 'code', 1, MAX_CODE);
    return out;
  });
}

export function encodeStatusEvent(m: StatusEvent): Uint8Array {
  const K = STATUS_KEY;
  const state = STATUS_STATES.indexOf(m.state);
  if (state < 0) throw new RangeError('unknown status state');
  return encodeMessage('statusEvent', [
    [KEY_CAMPAIGN, m.campaign], [K.device, m.device], [K.state, state], [K.done, m.done], [K.total, m.total], [K.code, m.code],
    [K.group, m.group], [K.version, m.version], [K.counter, m.counter],
  ], parseStatusEvent);
}

/** Largest encoded block response (maxBlockBytes of data, longest campaign id, largest ids). */
export function maxBlockResponseBytes(): number {
  return encodeBlockResponse({
    campaign: 'c'.repeat(LIMITS.maxIdBytes),
    requestId: LIMITS.maxRequestId,
    block: MAX_INDEX,
    data: new Uint8Array(LIMITS.maxBlockBytes),
  }).length;
}

/** Codes a server puts in an error reply (SPEC.md §12.5). */
export const ERROR_REPLY_CODES = Object.freeze([CODES.UNKNOWN_CAMPAIGN, CODES.UNKNOWN_BLOCK, CODES.BAD_REQUEST, CODES.SERVER_BUSY, CODES.CAMPAIGN_INACTIVE]);
