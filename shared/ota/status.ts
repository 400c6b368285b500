/**
 * Status events (SPEC.md §12.2, §12.9): what a device reports on its status topic, from `online`
 * (group, installed version and counter) to the end of a campaign, and `offline`: the device's MQTT
 * last will, which the broker publishes when the device's connection ends without a DISCONNECT.
 * Keys 15–17 (issue 16) carry the device's own measurements: how long its manifest and image checks
 * took, and where it refused something (the servers' M4 and M8 metrics, SPEC.md §12.9 "Metrics").
 * Schema, encoder and parser over the codec (codec.ts).
 */
import { type Result } from '../codes.js';
import { asBytes, asText, asUint, type FieldReader, schemaFail } from '../fields.js';
import { DIGEST_BYTES, LIMITS } from '../limits.js';
import { encodeMessage, KEY_CAMPAIGN, MAX_CODE, MAX_INDEX, parseMessage } from './codec.js';
import { ID_PATTERN, topics } from './topics.js';

export const STATUS_KEY = Object.freeze({
  device: 4,
  state: 5,
  done: 6,
  total: 7,
  code: 8,
  group: 9,
  version: 10,
  counter: 11,
  trustVersion: 12,
  revocationVersion: 13,
  revocationDigest: 14,
  manifestMs: 15,
  imageMs: 16,
  stage: 17,
});

/**
 * Where a device refused something (key 17, with the code): a manifest (§6.3), the image (§6.4, the
 * whole-slot check), the install (flash, trial boot: 5xx), or a trust bundle or revocation list of
 * the root channel (§12.13; reported with `online`).
 */
export const REFUSAL_STAGES = Object.freeze(['manifest', 'image', 'install', 'trust', 'revocation'] as const);
export type RefusalStage = (typeof REFUSAL_STAGES)[number];
/** Keys 15 and 16 are whole milliseconds, at most a 32-bit device counter. */
export const MAX_REPORTED_MS = 0xffff_ffff;

export const STATUS_STATES = Object.freeze([
  'accepted',
  'downloading',
  'verifying',
  'installed',
  'confirmed',
  'rejected',
  'failed',
  'online',
  'offline',
] as const);
export type StatusState = (typeof STATUS_STATES)[number];

export type StatusEvent = {
  /** Absent only in states `online` and `offline`. */
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
  /**
   * State `online` only (optional there; SPEC.md §12.13): the root of trust the device enforces: its
   * trust bundle version, revocation list version (0: none) and the SHA-256 of that list's payload.
   */
  readonly trustVersion?: number;
  readonly revocationVersion?: number;
  readonly revocationDigest?: Uint8Array;
  /** `accepted` / `rejected` only (optional): how long verifying the manifest took (ms, the agent's beginUpdate). */
  readonly manifestMs?: number;
  /** `installed` / `failed` only (optional): how long the whole-image check took (ms, the agent's finishDownload). */
  readonly imageMs?: number;
  /**
   * With a code only (optional): where the device refused. `online` carries a code only with stage
   * `trust` or `revocation`: a root object the device refused (§12.13), and then it must name one.
   */
  readonly stage?: RefusalStage;
};

/** Keys 15–17 (SPEC.md §12.2): each only where the state has what it measures. */
function readReport(f: FieldReader, state: StatusState, hasCode: boolean, out: { -readonly [K in keyof StatusEvent]: StatusEvent[K] }): void {
  const K = STATUS_KEY;
  const [manifestV, imageV, stageV] = [f.optional(K.manifestMs), f.optional(K.imageMs), f.optional(K.stage)];
  if (manifestV !== undefined && state !== 'accepted' && state !== 'rejected')
    schemaFail('BAD_VALUE', 'statusEvent message: manifest time goes with accepted or rejected');
  if (imageV !== undefined && state !== 'installed' && state !== 'failed')
    schemaFail('BAD_VALUE', 'statusEvent message: image time goes with installed or failed');
  if (stageV !== undefined && !hasCode) schemaFail('BAD_VALUE', 'statusEvent message: a refusal stage without a code');
  if (manifestV !== undefined) out.manifestMs = asUint(manifestV, 'manifest time', 0, MAX_REPORTED_MS);
  if (imageV !== undefined) out.imageMs = asUint(imageV, 'image time', 0, MAX_REPORTED_MS);
  if (stageV !== undefined) out.stage = REFUSAL_STAGES[asUint(stageV, 'refusal stage', 0, REFUSAL_STAGES.length - 1)];
  if (state === 'online' && hasCode && out.stage !== 'trust' && out.stage !== 'revocation')
    schemaFail('BAD_VALUE', 'statusEvent message: online carries a code only for a refused trust bundle or list');
}

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
    const online = state === 'online';
    if (failed && codeV === undefined) schemaFail('MISSING_FIELD', `statusEvent message: ${state} without a code`);
    // A code goes with rejected and failed, and with online only for a refused root object (key 17, checked in readReport).
    if (!failed && codeV !== undefined && !(online && f.optional(K.stage) !== undefined)) schemaFail('BAD_VALUE', `statusEvent message: ${state} with a code`);
    const groupV = f.optional(K.group);
    const versionV = f.optional(K.version);
    const counterV = f.optional(K.counter);
    if (online !== (groupV !== undefined)) schemaFail(online ? 'MISSING_FIELD' : 'BAD_VALUE', 'statusEvent message: group goes with state online only');
    const rootV = [f.optional(K.trustVersion), f.optional(K.revocationVersion), f.optional(K.revocationDigest)] as const;
    if (!online && (versionV !== undefined || counterV !== undefined || rootV.some((v) => v !== undefined)))
      schemaFail('BAD_VALUE', 'statusEvent message: version, counter and root of trust go with state online only');
    // `offline` (the last will, fixed when the device connects) carries the device and nothing else.
    const offline = state === 'offline';
    if (offline && (campaignV !== undefined || doneV !== undefined)) schemaFail('BAD_VALUE', 'statusEvent message: offline carries the device only');
    if (!online && !offline && campaignV === undefined) schemaFail('MISSING_FIELD', 'statusEvent message: campaign id');
    if (online && doneV !== undefined) schemaFail('BAD_VALUE', 'statusEvent message: online with done/total');
    const out: { -readonly [K in keyof StatusEvent]: StatusEvent[K] } = { device, state };
    if (campaignV !== undefined) out.campaign = asText(campaignV, 'campaign id', LIMITS.maxIdBytes, ID_PATTERN);
    if (groupV !== undefined) out.group = asText(groupV, 'group', LIMITS.maxIdBytes, ID_PATTERN);
    if (versionV !== undefined) out.version = asText(versionV, 'version', LIMITS.maxVersionBytes);
    if (counterV !== undefined) out.counter = asUint(counterV, 'counter', 0, MAX_INDEX);
    if (rootV[0] !== undefined) out.trustVersion = asUint(rootV[0], 'trust version', 1, LIMITS.maxCounter);
    if (rootV[1] !== undefined) out.revocationVersion = asUint(rootV[1], 'revocation version', 0, LIMITS.maxCounter);
    if (rootV[2] !== undefined) out.revocationDigest = asBytes(rootV[2], 'revocation list digest', DIGEST_BYTES);
    if (doneV !== undefined) {
      out.total = asUint(totalV, 'total', 0, MAX_INDEX);
      out.done = asUint(doneV, 'done', 0, out.total);
    }
    if (codeV !== undefined) out.code = asUint(codeV, 'code', 1, MAX_CODE);
    readReport(f, state, codeV !== undefined, out);
    return out;
  });
}

export function encodeStatusEvent(m: StatusEvent): Uint8Array {
  const K = STATUS_KEY;
  const state = STATUS_STATES.indexOf(m.state);
  if (state < 0) throw new RangeError('unknown status state');
  return encodeMessage(
    'statusEvent',
    [
      [KEY_CAMPAIGN, m.campaign],
      [K.device, m.device],
      [K.state, state],
      [K.done, m.done],
      [K.total, m.total],
      [K.code, m.code],
      [K.group, m.group],
      [K.version, m.version],
      [K.counter, m.counter],
      [K.trustVersion, m.trustVersion],
      [K.revocationVersion, m.revocationVersion],
      [K.revocationDigest, m.revocationDigest],
      [K.manifestMs, m.manifestMs],
      [K.imageMs, m.imageMs],
      [K.stage, m.stage === undefined ? undefined : REFUSAL_STAGES.indexOf(m.stage)],
    ],
    parseStatusEvent,
  );
}

/**
 * The last will a device sets when it connects (SPEC.md §12.2): `offline` on its own status topic,
 * QoS 1, not retained (a retained `offline` would greet every server that subscribes later, long after
 * the device is back). The broker publishes it when the connection ends without a DISCONNECT.
 */
export function offlineWill(prefix: string, device: string): { topic: string; payload: Uint8Array; qos: 1; retain: false } {
  return { topic: topics.status(prefix, device), payload: encodeStatusEvent({ device, state: 'offline' }), qos: 1, retain: false };
}
