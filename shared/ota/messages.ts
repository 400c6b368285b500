/**
 * The messages of a pull (SPEC.md §12.2, §12.5): the announcement, manifest, digest page and block
 * requests and responses, and error replies. Schemas, encoders and parsers over the codec
 * (codec.ts); status events are in status.ts.
 */
import { type CborValue } from '../cbor.js';
import { CODES, type Result } from '../codes.js';
import { asArray, asBytes, asText, asUint, schemaFail } from '../fields.js';
import { DIGEST_BYTES, LIMITS } from '../limits.js';
import { isPowerOfTwo } from '../manifest.js';
import {
  asByteRange,
  campaignOf,
  encodeMessage,
  KEY_CAMPAIGN,
  KEY_REPLY_TOPIC,
  KEY_REQUEST_ID,
  MAX_CODE,
  MAX_INDEX,
  parseMessage,
  replyTopicOf,
  requestIdOf,
} from './codec.js';
import { ID_PATTERN, ROLLOUT_ALL } from './topics.js';

export const ANNOUNCEMENT_KEY = Object.freeze({ manifestDigest: 4, manifestSize: 5, imageSize: 6, chunkSize: 7, blockSize: 8, pageCount: 9, rollout: 10 });
export const MANIFEST_RESPONSE_KEY = Object.freeze({ manifest: 4 });
export const PAGE_KEY = Object.freeze({ page: 4, leaves: 5, proof: 6 });
export const BLOCK_REQUEST_KEY = Object.freeze({ ranges: 4, bitmapBase: 5, bitmap: 6, multicast: 7 });
export const BLOCK_RESPONSE_KEY = Object.freeze({ block: 4, data: 5 });
export const ERROR_KEY = Object.freeze({ code: 4, index: 5 });

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
  return encodeMessage(
    'announcement',
    [
      [KEY_CAMPAIGN, a.campaign],
      [K.manifestDigest, a.manifestDigest],
      [K.manifestSize, a.manifestSize],
      [K.imageSize, a.imageSize],
      [K.chunkSize, a.chunkSize],
      [K.blockSize, a.blockSize],
      [K.pageCount, a.pageCount],
      [K.rollout, a.rollout],
    ],
    parseAnnouncement,
  );
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
  return encodeMessage(
    'manifestRequest',
    [
      [KEY_CAMPAIGN, m.campaign],
      [KEY_REQUEST_ID, m.requestId],
      [KEY_REPLY_TOPIC, m.replyTopic],
    ],
    parseManifestRequest,
  );
}

export function parseManifestResponse(bytes: Uint8Array): Result<{ value: ManifestResponse }> {
  return parseMessage(bytes, 'manifestResponse', (f) => ({
    campaign: campaignOf(f),
    requestId: requestIdOf(f),
    manifest: asByteRange(f.required(MANIFEST_RESPONSE_KEY.manifest, 'manifest'), 'manifest', 1, LIMITS.maxEnvelopeBytes),
  }));
}

export function encodeManifestResponse(m: ManifestResponse): Uint8Array {
  return encodeMessage(
    'manifestResponse',
    [
      [KEY_CAMPAIGN, m.campaign],
      [KEY_REQUEST_ID, m.requestId],
      [MANIFEST_RESPONSE_KEY.manifest, m.manifest],
    ],
    parseManifestResponse,
  );
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
  return encodeMessage(
    'pageRequest',
    [
      [KEY_CAMPAIGN, m.campaign],
      [KEY_REQUEST_ID, m.requestId],
      [KEY_REPLY_TOPIC, m.replyTopic],
      [PAGE_KEY.page, m.page],
    ],
    parsePageRequest,
  );
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
  return encodeMessage(
    'pageResponse',
    [
      [KEY_CAMPAIGN, m.campaign],
      [KEY_REQUEST_ID, m.requestId],
      [PAGE_KEY.page, m.page],
      [PAGE_KEY.leaves, m.leaves],
      [PAGE_KEY.proof, m.proof],
    ],
    parsePageResponse,
  );
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
  return encodeMessage(
    'blockRequest',
    [
      [KEY_CAMPAIGN, m.campaign],
      [KEY_REQUEST_ID, m.requestId],
      [KEY_REPLY_TOPIC, m.replyTopic],
      [K.ranges, m.ranges === undefined ? undefined : m.ranges.map((r) => [r[0], r[1]])],
      [K.bitmapBase, m.bitmapBase],
      [K.bitmap, m.bitmap],
      [K.multicast, m.multicast ? 1 : undefined],
    ],
    parseBlockRequest,
  );
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
  return encodeMessage(
    'blockResponse',
    [
      [KEY_CAMPAIGN, m.campaign],
      [KEY_REQUEST_ID, m.requestId],
      [BLOCK_RESPONSE_KEY.block, m.block],
      [BLOCK_RESPONSE_KEY.data, m.data],
    ],
    parseBlockResponse,
  );
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
  return encodeMessage(
    'errorReply',
    [
      [KEY_CAMPAIGN, m.campaign],
      [KEY_REQUEST_ID, m.requestId],
      [ERROR_KEY.code, m.code],
      [ERROR_KEY.index, m.index],
    ],
    parseErrorReply,
  );
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

/** Codes a server puts in an error reply (SPEC.md §12.5; the log proof codes answer log proof requests only). */
export const ERROR_REPLY_CODES = Object.freeze([
  CODES.UNKNOWN_CAMPAIGN,
  CODES.UNKNOWN_BLOCK,
  CODES.BAD_REQUEST,
  CODES.SERVER_BUSY,
  CODES.CAMPAIGN_INACTIVE,
  CODES.LOG_PROOF_UNAVAILABLE,
  CODES.LOG_CHECKPOINT_BEHIND,
]);
