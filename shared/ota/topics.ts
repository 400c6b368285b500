/**
 * OTA addressing (SPEC.md §12.1, §12.8): ids, topic names and their parsers, and rollout buckets (which
 * devices of a group an announcement admits). Pure: no I/O, no timers. Builders throw RangeError on
 * an invalid prefix or id (a bug in the caller); parsers return a Result.
 */
import { utf8Encode } from '../bytes.js';
import { fail, ok, type Result } from '../codes.js';
import { LIMITS } from '../limits.js';

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
  /** The fleet's root of trust (SPEC.md §12.13): retained, published by the server. */
  root: (prefix: string) => `${checkPrefix(prefix)}/root`,
  /** A device asks for one trust bundle version here (SPEC.md §12.13). */
  rootRequest: (prefix: string, device: string) => `${checkPrefix(prefix)}/root/req/${checkId(device, 'device id')}`,
  rootRequestFilter: (prefix: string) => `${checkPrefix(prefix)}/root/req/+`,
  /** MQTT 5 shared subscription (`$share/<group>/<filter>`): each message goes to one server of the group. */
  shared: (filter: string, group: string = SHARE_GROUP) => {
    if (filter.length === 0 || filter.startsWith('$') || filter.includes('\u0000')) throw new RangeError('invalid topic filter');
    return `$share/${checkId(group, 'share group')}/${filter}`;
  },
});

/** Campaign and device named by a request topic (what a server learns before reading the payload). */
export function parseRequestTopic(prefix: string, topic: string): Result<{ campaign: string; device: string }> {
  if (!isValidPrefix(prefix)) return fail('BAD_VALUE', 'invalid topic prefix');
  if (typeof topic !== 'string' || !topic.startsWith(`${prefix}/`)) return fail('BAD_VALUE', 'topic outside the prefix');
  const parts = topic.slice(prefix.length + 1).split('/');
  if (parts.length !== 4 || parts[0] !== 'campaign' || parts[2] !== 'req') return fail('BAD_VALUE', 'not a request topic');
  if (!isValidId(parts[1]) || !isValidId(parts[3])) return fail('BAD_VALUE', 'invalid id in the request topic');
  return ok({ campaign: parts[1], device: parts[3] });
}

/** Device named by a status topic. */
export function parseStatusTopic(prefix: string, topic: string): Result<{ device: string }> {
  if (!isValidPrefix(prefix)) return fail('BAD_VALUE', 'invalid topic prefix');
  if (typeof topic !== 'string' || !topic.startsWith(`${prefix}/`)) return fail('BAD_VALUE', 'topic outside the prefix');
  const parts = topic.slice(prefix.length + 1).split('/');
  if (parts.length !== 3 || parts[0] !== 'device' || parts[2] !== 'status' || !isValidId(parts[1])) return fail('BAD_VALUE', 'not a status topic');
  return ok({ device: parts[1] });
}

/** A topic a device may name as its reply topic: publishable (no wildcards, no NUL), not a `$` topic. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: MQTT forbids NUL in topic names (MQTT 5 §4.7.3); the pattern refuses it on purpose.
export const REPLY_TOPIC_PATTERN = /^[^+#\u0000$][^+#\u0000]*$/;

// ---- Rollout buckets (§12.8) ----

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

/** Device named by a root-of-trust request topic (SPEC.md §12.13). */
export function parseRootRequestTopic(prefix: string, topic: string): Result<{ device: string }> {
  if (!isValidPrefix(prefix)) return fail('BAD_VALUE', 'invalid topic prefix');
  if (typeof topic !== 'string' || !topic.startsWith(`${prefix}/`)) return fail('BAD_VALUE', 'topic outside the prefix');
  const parts = topic.slice(prefix.length + 1).split('/');
  if (parts.length !== 3 || parts[0] !== 'root' || parts[1] !== 'req' || !isValidId(parts[2])) return fail('BAD_VALUE', 'not a root request topic');
  return ok({ device: parts[2] });
}
