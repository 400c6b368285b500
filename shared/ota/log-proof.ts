/**
 * Log proofs over MQTT (SPEC.md §12.2, issue 19 item 2): a device whose trust bundle requires
 * transparency-log proof asks the server for the attachment that proves the campaign's manifest is
 * in the log (inclusion in a signed checkpoint, and consistency from the checkpoint the device
 * stored). The attachment is opaque here: the device's verifier parses and checks it; these messages
 * only carry it, so the signed manifest bytes never change and a rogue publisher can only be refused.
 */
import { type Result } from '../codes.js';
import { asUint } from '../fields.js';
import { LIMITS } from '../limits.js';
import { asByteRange, campaignOf, encodeMessage, KEY_CAMPAIGN, KEY_REPLY_TOPIC, KEY_REQUEST_ID, parseMessage, replyTopicOf, requestIdOf } from './codec.js';

export const LOG_PROOF_KEY = Object.freeze({ fromSize: 4, proof: 4 });

/** The proof for the campaign's manifest, with consistency from the device's stored checkpoint size (0: none stored). */
export type LogProofRequest = { readonly campaign: string; readonly requestId: number; readonly replyTopic?: string; readonly fromSize: number };
/** The log proof attachment (shared/log-proof.ts format), as the server built it. */
export type LogProofResponse = { readonly campaign: string; readonly requestId: number; readonly proof: Uint8Array };

export function parseLogProofRequest(bytes: Uint8Array): Result<{ value: LogProofRequest }> {
  return parseMessage(bytes, 'logProofRequest', (f) => ({
    campaign: campaignOf(f),
    requestId: requestIdOf(f),
    ...replyTopicOf(f),
    fromSize: asUint(f.required(LOG_PROOF_KEY.fromSize, 'from size'), 'from size', 0, LIMITS.maxCounter),
  }));
}

export function encodeLogProofRequest(m: LogProofRequest): Uint8Array {
  return encodeMessage(
    'logProofRequest',
    [
      [KEY_CAMPAIGN, m.campaign],
      [KEY_REQUEST_ID, m.requestId],
      [KEY_REPLY_TOPIC, m.replyTopic],
      [LOG_PROOF_KEY.fromSize, m.fromSize],
    ],
    parseLogProofRequest,
  );
}

export function parseLogProofResponse(bytes: Uint8Array): Result<{ value: LogProofResponse }> {
  return parseMessage(bytes, 'logProofResponse', (f) => ({
    campaign: campaignOf(f),
    requestId: requestIdOf(f),
    proof: asByteRange(f.required(LOG_PROOF_KEY.proof, 'log proof'), 'log proof', 1, LIMITS.maxLogProofBytes),
  }));
}

export function encodeLogProofResponse(m: LogProofResponse): Uint8Array {
  return encodeMessage(
    'logProofResponse',
    [
      [KEY_CAMPAIGN, m.campaign],
      [KEY_REQUEST_ID, m.requestId],
      [LOG_PROOF_KEY.proof, m.proof],
    ],
    parseLogProofResponse,
  );
}
