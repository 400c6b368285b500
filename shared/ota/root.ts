/**
 * The root-of-trust channel (SPEC.md §12.13): the server keeps the fleet's newest trust bundle and
 * revocation list on one retained topic, and answers requests for older trust bundle versions, so a
 * device that was offline walks the chain N -> N+1 -> ... one version at a time. Every object is a
 * signed envelope the device verifies itself (§6.1, §6.2): the messages only carry them.
 */
import { type Result } from '../codes.js';
import { asUint } from '../fields.js';
import { LIMITS } from '../limits.js';
import { asByteRange, encodeMessage, KEY_REPLY_TOPIC, KEY_REQUEST_ID, parseMessage, replyTopicOf, requestIdOf } from './codec.js';

export const ROOT_KEY = Object.freeze({ trustVersion: 4, trust: 5, revocations: 6 });

/** On `<prefix>/root`, retained: the newest trust bundle and, if any, the newest revocation list. */
export type RootAnnouncement = { readonly trustVersion: number; readonly trust: Uint8Array; readonly revocations?: Uint8Array };
/** A device asks for trust bundle `trustVersion` (the one after its own). */
export type RootRequest = { readonly requestId: number; readonly replyTopic?: string; readonly trustVersion: number };
/** That bundle, and the newest revocation list that verifies under it (if any). */
export type RootResponse = { readonly requestId: number; readonly trustVersion: number; readonly trust: Uint8Array; readonly revocations?: Uint8Array };

const envelopeOf = (v: Parameters<typeof asByteRange>[0], what: string) => asByteRange(v, what, 1, LIMITS.maxEnvelopeBytes);
const versionOf = (v: Parameters<typeof asUint>[0]) => asUint(v, 'trust version', 1, LIMITS.maxCounter);

export function parseRootAnnouncement(bytes: Uint8Array): Result<{ value: RootAnnouncement }> {
  return parseMessage(bytes, 'rootAnnouncement', (f) => {
    const trustVersion = versionOf(f.required(ROOT_KEY.trustVersion, 'trust version'));
    const trust = envelopeOf(f.required(ROOT_KEY.trust, 'trust bundle'), 'trust bundle');
    const rl = f.optional(ROOT_KEY.revocations);
    return { trustVersion, trust, ...(rl !== undefined ? { revocations: envelopeOf(rl, 'revocation list') } : {}) };
  });
}

export function encodeRootAnnouncement(m: RootAnnouncement): Uint8Array {
  const K = ROOT_KEY;
  return encodeMessage(
    'rootAnnouncement',
    [
      [K.trustVersion, m.trustVersion],
      [K.trust, m.trust],
      [K.revocations, m.revocations],
    ],
    parseRootAnnouncement,
  );
}

export function parseRootRequest(bytes: Uint8Array): Result<{ value: RootRequest }> {
  return parseMessage(bytes, 'rootRequest', (f) => ({
    requestId: requestIdOf(f),
    ...replyTopicOf(f),
    trustVersion: versionOf(f.required(ROOT_KEY.trustVersion, 'trust version')),
  }));
}

export function encodeRootRequest(m: RootRequest): Uint8Array {
  return encodeMessage(
    'rootRequest',
    [
      [KEY_REQUEST_ID, m.requestId],
      [KEY_REPLY_TOPIC, m.replyTopic],
      [ROOT_KEY.trustVersion, m.trustVersion],
    ],
    parseRootRequest,
  );
}

export function parseRootResponse(bytes: Uint8Array): Result<{ value: RootResponse }> {
  return parseMessage(bytes, 'rootResponse', (f) => {
    const requestId = requestIdOf(f);
    const trustVersion = versionOf(f.required(ROOT_KEY.trustVersion, 'trust version'));
    const trust = envelopeOf(f.required(ROOT_KEY.trust, 'trust bundle'), 'trust bundle');
    const rl = f.optional(ROOT_KEY.revocations);
    return { requestId, trustVersion, trust, ...(rl !== undefined ? { revocations: envelopeOf(rl, 'revocation list') } : {}) };
  });
}

export function encodeRootResponse(m: RootResponse): Uint8Array {
  const K = ROOT_KEY;
  return encodeMessage(
    'rootResponse',
    [
      [KEY_REQUEST_ID, m.requestId],
      [K.trustVersion, m.trustVersion],
      [K.trust, m.trust],
      [K.revocations, m.revocations],
    ],
    parseRootResponse,
  );
}
