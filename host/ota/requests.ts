/**
 * Answering one device request (SPEC.md §12.2, §12.5): manifest, digest page or blocks, or one error
 * reply. Pure over the store and the assets (it reads, never writes): the server sends the replies,
 * always on the reply topic of the device the request topic names (§12.4).
 */

import { type CborKey, head as cborHead, decodeCbor, type Encodable, encodeCbor } from '../../shared/cbor.js';
import { CODES } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { KEY_CAMPAIGN, KEY_REQUEST_ID, KEY_TYPE, type MessageType, MSG, messageType } from '../../shared/ota/codec.js';
import { parseLogProofRequest } from '../../shared/ota/log-proof.js';
import {
  BLOCK_RESPONSE_KEY,
  type BlockResponse,
  encodeErrorReply,
  parseBlockRequest,
  parseManifestRequest,
  parsePageRequest,
  requestedBlocks,
} from '../../shared/ota/messages.js';
import { ID_PATTERN } from '../../shared/ota/topics.js';
import { type AssetCache } from './assets.js';
import { inWave } from './campaigns.js';
import { answerLogProof } from './log-proof-requests.js';
import { type OtaStore } from './store.js';

export type Reply = { readonly payload: Uint8Array; readonly block?: number; readonly bytes?: number; readonly data?: Uint8Array; readonly code?: number };
export type Answer = {
  readonly replies: Reply[];
  /** The request named a reply topic (key 3) other than its device's own: refused (REPLY_TOPIC_REFUSED). */
  readonly refused?: true;
  readonly malformed: boolean;
  readonly kind: 'manifest' | 'page' | 'block' | 'log-proof' | 'error';
  /** Block answers the server may coalesce onto the campaign's data topic (the device listens there). */
  readonly multicast?: { readonly campaign: string };
};

/** Campaign and request id of a request that did not parse, when they can be read (for BAD_REQUEST). */
export function readableIds(payload: Uint8Array): { campaign?: string; requestId?: number } {
  if (payload.length > LIMITS.maxOtaMessageBytes) return {};
  const d = decodeCbor(payload, { maxBytes: LIMITS.maxOtaMessageBytes, maxDepth: 4, maxContainerEntries: 64, maxTextBytes: LIMITS.maxTopicBytes });
  if (!d.ok || !(d.value instanceof Map)) return {};
  const c = d.value.get(KEY_CAMPAIGN);
  const r = d.value.get(KEY_REQUEST_ID);
  return {
    ...(typeof c === 'string' && ID_PATTERN.test(c) ? { campaign: c } : {}),
    ...(typeof r === 'number' && Number.isSafeInteger(r) && r >= 0 && r <= LIMITS.maxRequestId ? { requestId: r } : {}),
  };
}

/**
 * The bytes of encodeBlockResponse without its self-check (a full parse and copy of the block): the
 * hot path, a third of the server's CPU per block otherwise. test/ota-server.test.ts checks the bytes are equal.
 */
export function blockResponseBytes(m: BlockResponse): Uint8Array {
  // The data (key 5) is the last entry in canonical key order: encode the map around an empty byte
  // string, then put the real byte string head and the data in its place (one buffer, one copy).
  const map = encodeCbor(
    new Map<CborKey, Encodable>([
      [KEY_TYPE, MSG.blockResponse],
      [KEY_CAMPAIGN, m.campaign],
      [KEY_REQUEST_ID, m.requestId],
      [BLOCK_RESPONSE_KEY.block, m.block],
      [BLOCK_RESPONSE_KEY.data, new Uint8Array(0)],
    ]),
  );
  const bstr = cborHead(2, m.data.length);
  const at = map.length - 1;
  // Every byte is written below: no zero fill first (a 64 KiB block per reply; allocUnsafe also reuses pooled memory).
  const out = Buffer.allocUnsafe(at + bstr.length + m.data.length);
  out.set(map.subarray(0, at));
  out.set(bstr, at);
  out.set(m.data, at + bstr.length);
  return out;
}

export function errorReply(code: number, ids: { campaign?: string; requestId?: number }, index?: number): Reply {
  return { payload: encodeErrorReply({ ...ids, code, ...(index !== undefined ? { index } : {}) }), code };
}

/** Message types by their key-0 value. */
const TYPE_NAMES = new Map<number, MessageType>(Object.entries(MSG).map(([name, value]) => [value, name as MessageType]));

/**
 * A request's type (key 0) read from its first bytes when they are the usual form: a map of at most
 * 23 entries whose first key is 0 with a one-byte value (deterministic CBOR puts key 0 first). Else
 * messageType decodes it all. The type only picks the parser, which decodes and checks the whole
 * message (key 0 included), so a message read here is answered as messageType would have it answered;
 * it saves a full decode per request (tools/bench ota, profiled).
 */
function requestType(payload: Uint8Array): MessageType | null {
  const first = payload[0] ?? 0;
  const name = first >= 0xa1 && first <= 0xb7 && payload[1] === 0 ? TYPE_NAMES.get(payload[2] ?? 0xff) : undefined;
  if (name) return name;
  const decoded = messageType(payload);
  return decoded.ok ? decoded.type : null;
}

/**
 * The answer to one request that arrived on `<prefix>/campaign/<topicCampaign>/req/<device>`;
 * `ownReplyTopic` is that device's reply topic, the only one a request may name (§12.4).
 */
export async function answer(
  store: OtaStore,
  assets: AssetCache,
  topicCampaign: string,
  device: string,
  ownReplyTopic: string,
  payload: Uint8Array,
): Promise<Answer> {
  const bad = (): Answer => ({ replies: [errorReply(CODES.BAD_REQUEST, readableIds(payload))], malformed: true, kind: 'error' });
  const t = requestType(payload);
  if (t === null) return bad();
  const parsed =
    t === 'manifestRequest'
      ? parseManifestRequest(payload)
      : t === 'pageRequest'
        ? parsePageRequest(payload)
        : t === 'blockRequest'
          ? parseBlockRequest(payload)
          : t === 'logProofRequest'
            ? parseLogProofRequest(payload)
            : null;
  if (!parsed?.ok) return bad();
  const req = parsed.value;
  const ids = { campaign: req.campaign, requestId: req.requestId };
  const fail = (code: number, index?: number): Answer => ({ replies: [errorReply(code, ids, index)], malformed: false, kind: 'error' });
  // Before anything else: a request that wants its answer elsewhere gets nothing but the refusal.
  if (req.replyTopic !== undefined && req.replyTopic !== ownReplyTopic) return { ...fail(CODES.REPLY_TOPIC_REFUSED), refused: true };
  if (req.campaign !== topicCampaign) return { ...fail(CODES.BAD_REQUEST), malformed: true };

  const row = await store.gate(req.campaign, device); // an excluded device reads rollout 0 (§12.9)
  if (!row || row.state === 'aborted') return fail(CODES.UNKNOWN_CAMPAIGN);
  // A campaign the root of trust halted (§12.13) is served no more, whatever its state.
  if (row.state === 'paused' || row.state === 'halted' || row.halt_code !== null) return fail(CODES.CAMPAIGN_INACTIVE);
  if (!inWave(row.id, device, row.rollout)) return fail(CODES.CAMPAIGN_INACTIVE);
  const a = await assets.get(row.id);

  if (t === 'manifestRequest') {
    // a.id is req.campaign (the gate read that row): the template's campaign is the one asked for.
    return { replies: [{ payload: a.manifestResponse(req.requestId) }], malformed: false, kind: 'manifest' };
  }
  if (t === 'logProofRequest') {
    // Issue 19 item 2: the log's proof of the manifest this campaign serves (log-proof-requests.ts).
    const got = await answerLogProof(store, ids, a.envelope, (req as unknown as { fromSize: number }).fromSize);
    return 'code' in got ? fail(got.code) : { replies: [{ payload: got.payload }], malformed: false, kind: 'log-proof' };
  }
  if (t === 'pageRequest') {
    const page = (req as unknown as { page: number }).page;
    if (page >= a.pages.count) return fail(CODES.UNKNOWN_BLOCK, page);
    return { replies: [{ payload: a.pageResponse(page, req.requestId) }], malformed: false, kind: 'page' };
  }
  const blocks = requestedBlocks(req as Parameters<typeof requestedBlocks>[0]);
  const beyond = blocks.find((b) => b >= a.blockCount);
  if (beyond !== undefined) return fail(CODES.UNKNOWN_BLOCK, beyond);
  const replies = blocks.map((block): Reply => {
    const data = a.block(block);
    // Encoded when sent: a block that goes out on the data topic never needs this device's copy.
    let payload: Uint8Array | undefined;
    return {
      get payload() {
        payload ??= blockResponseBytes({ ...ids, block, data });
        return payload;
      },
      block,
      bytes: data.length,
      data,
    };
  });
  const multicast = (req as { multicast?: boolean }).multicast ? { multicast: { campaign: row.id } } : {};
  return { replies, malformed: false, kind: 'block', ...multicast };
}
