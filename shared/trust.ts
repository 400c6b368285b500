/**
 * Trust bundle and revocation list payloads (SPEC.md §Trust bundle, §Revocation list).
 *
 *   trust = { 0: 2, 1: 1 / 2, 2: version (uint >= 1), 3: role (root), 4: role (release),
 *             ? 5: log-policy (format 2 only, and required there) }
 *   role  = { 1: threshold (uint >= 1), 2: [+ bstr .size 32] (Ed25519 public keys, distinct) }
 *   log-policy = { 1: origin (tstr), 2: log key (bstr .size 32),
 *                  ? 3: witness threshold (1..n), ? 4: [+ [name (tstr), key (bstr .size 32)]] (with 3) }
 *
 *   revocations = { 0: 3, 1: 1, 2: version (uint >= 1),
 *                   3: [* bstr .size 16] (revoked key ids, distinct),
 *                   ? 4: [* bstr .size 32] (revoked manifest digests: SHA-256 of the manifest payload) }
 */

import { bytesEqual } from './bytes.js';
import { type CborKey, type CborValue, type Encodable, encodeCbor } from './cbor.js';
import { type Result } from './codes.js';
import { asArray, asBytes, asMap, asText, asUint, FieldReader, schemaFail } from './fields.js';
import { DIGEST_BYTES, KEY_ID_BYTES, WIRE_LIMITS as LIMITS, PUBLIC_KEY_BYTES } from './limits.js';
import { KEY_FORMAT, KEY_KIND, KIND, parsePayload, payloadHeader } from './payload.js';

export const TRUST_KEY = Object.freeze({ version: 2, root: 3, release: 4, log: 5 });
export const ROLE_KEY = Object.freeze({ threshold: 1, keys: 2 });
export const LOG_POLICY_KEY = Object.freeze({ origin: 1, logKey: 2, witnessThreshold: 3, witnesses: 4 });
/**
 * The log origin and witness names: C2SP signed-note key names (no spaces, no '+') kept to printable
 * ASCII, so that a device builds the signed texts without a UTF-8 encoder (SPEC.md §4.2).
 */
export const LOG_NAME_PATTERN = /^[!-*,-~]+$/;
export const REVOCATION_KEY = Object.freeze({ version: 2, keyIds: 3, manifests: 4 });

export type Role = { readonly threshold: number; readonly keys: readonly Uint8Array[] };
export type Witness = { readonly name: string; readonly key: Uint8Array };
/**
 * Require a transparency log proof for every manifest (SPEC.md §16.8): checkpoints signed by
 * `logKey` under the note name `origin`, cosigned by `witnessThreshold` of `witnesses` (0: none).
 */
export type LogPolicy = { readonly origin: string; readonly logKey: Uint8Array; readonly witnessThreshold: number; readonly witnesses: readonly Witness[] };
/** Format 1 without `log`; format 2 (which old devices refuse, UNSUPPORTED_FORMAT) with it. */
export type TrustBundle = { readonly version: number; readonly root: Role; readonly release: Role; readonly log?: LogPolicy };
export type RevocationList = {
  readonly version: number;
  readonly keyIds: readonly Uint8Array[];
  readonly manifests: readonly Uint8Array[];
};

function distinctBytes(list: readonly CborValue[], what: string, length: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const v of list) {
    const b = asBytes(v, what, length);
    if (out.some((o) => bytesEqual(o, b))) schemaFail('DUPLICATE_KEY', `${what} listed twice`);
    out.push(b);
  }
  return out;
}

function readRole(value: CborValue, name: string): Role {
  const f = new FieldReader(asMap(value, `${name} role`), `${name} role`);
  const keyList = asArray(f.required(ROLE_KEY.keys, `${name} keys`), `${name} keys`, LIMITS.maxRoleKeys);
  const threshold = asUint(f.required(ROLE_KEY.threshold, `${name} threshold`), `${name} threshold`, 1, LIMITS.maxRoleKeys);
  f.done();
  const keys = distinctBytes(keyList, `${name} key`, PUBLIC_KEY_BYTES);
  if (threshold > keys.length) schemaFail('BAD_VALUE', `${name} threshold ${threshold} exceeds its ${keys.length} keys`);
  return Object.freeze({ threshold, keys: Object.freeze(keys) });
}

function readLogPolicy(value: CborValue): LogPolicy {
  const K = LOG_POLICY_KEY;
  const f = new FieldReader(asMap(value, 'log policy'), 'log policy');
  const origin = asText(f.required(K.origin, 'log origin'), 'log origin', LIMITS.maxTextBytes, LOG_NAME_PATTERN);
  const logKey = asBytes(f.required(K.logKey, 'log key'), 'log key', PUBLIC_KEY_BYTES);
  const t = f.optional(K.witnessThreshold);
  const w = f.optional(K.witnesses);
  f.done();
  if ((t === undefined) !== (w === undefined)) schemaFail('MISSING_FIELD', 'witnesses and their threshold come together');
  const witnesses: Witness[] = [];
  for (const entry of w === undefined ? [] : asArray(w, 'witnesses', LIMITS.maxRoleKeys)) {
    const pair = asArray(entry, 'witness', 2);
    if (pair.length !== 2) schemaFail('BAD_VALUE', 'a witness is [name, key]');
    const key = asBytes(pair[1], 'witness key', PUBLIC_KEY_BYTES);
    if (witnesses.some((o) => bytesEqual(o.key, key))) schemaFail('DUPLICATE_KEY', 'witness key listed twice');
    witnesses.push(Object.freeze({ name: asText(pair[0], 'witness name', LIMITS.maxTextBytes, LOG_NAME_PATTERN), key }));
  }
  // 1..n: an empty witness list (n = 0) fails here too.
  const witnessThreshold = t === undefined ? 0 : asUint(t, 'witness threshold', 1, witnesses.length);
  return Object.freeze({ origin, logKey, witnessThreshold, witnesses: Object.freeze(witnesses) });
}

/** SPEC.md §4.2: format 1 as ever; format 2 carries the log policy (key 5), which format 1 may not. */
export function parseTrustBundle(payload: Uint8Array): Result<{ value: TrustBundle }> {
  return parsePayload(
    payload,
    'trust',
    (f, format) => {
      const version = asUint(f.required(TRUST_KEY.version, 'version'), 'version', 1, LIMITS.maxCounter);
      const root = readRole(f.required(TRUST_KEY.root, 'root role'), 'root');
      const release = readRole(f.required(TRUST_KEY.release, 'release role'), 'release');
      if (format === 1) return Object.freeze({ version, root, release });
      return Object.freeze({ version, root, release, log: readLogPolicy(f.required(TRUST_KEY.log, 'log policy')) });
    },
    2,
  );
}

export function parseRevocationList(payload: Uint8Array): Result<{ value: RevocationList }> {
  return parsePayload(payload, 'revocations', (f) => {
    const version = asUint(f.required(REVOCATION_KEY.version, 'version'), 'version', 1, LIMITS.maxCounter);
    const keyIds = distinctBytes(
      asArray(f.required(REVOCATION_KEY.keyIds, 'revoked key ids'), 'revoked key ids', LIMITS.maxRevokedKeys),
      'revoked key id',
      KEY_ID_BYTES,
    );
    const m = f.optional(REVOCATION_KEY.manifests);
    const manifests =
      m === undefined ? [] : distinctBytes(asArray(m, 'revoked manifests', LIMITS.maxRevokedManifests), 'revoked manifest digest', DIGEST_BYTES);
    return Object.freeze({ version, keyIds: Object.freeze(keyIds), manifests: Object.freeze(manifests) });
  });
}

function roleMap(role: Role): Map<CborKey, Encodable> {
  return new Map<CborKey, Encodable>([
    [ROLE_KEY.threshold, role.threshold],
    [ROLE_KEY.keys, [...role.keys]],
  ]);
}

function policyMap(p: LogPolicy): Map<CborKey, Encodable> {
  const m = new Map<CborKey, Encodable>([
    [LOG_POLICY_KEY.origin, p.origin],
    [LOG_POLICY_KEY.logKey, p.logKey],
  ]);
  if (p.witnesses.length > 0) {
    m.set(LOG_POLICY_KEY.witnessThreshold, p.witnessThreshold);
    m.set(
      LOG_POLICY_KEY.witnesses,
      p.witnesses.map((w) => [w.name, w.key]),
    );
  }
  return m;
}

/** Format 2 exactly when `t.log` is present (SPEC.md §4.2), so a bundle without a policy stays byte-identical. */
export function encodeTrustBundle(t: TrustBundle): Uint8Array {
  const entries: [CborKey, Encodable][] = [
    ...(t.log
      ? ([
          [KEY_KIND, KIND.trust],
          [KEY_FORMAT, 2],
        ] as [CborKey, Encodable][])
      : payloadHeader('trust')),
    [TRUST_KEY.version, t.version],
    [TRUST_KEY.root, roleMap(t.root)],
    [TRUST_KEY.release, roleMap(t.release)],
  ];
  if (t.log) entries.push([TRUST_KEY.log, policyMap(t.log)]);
  const bytes = encodeCbor(new Map<CborKey, Encodable>(entries));
  const check = parseTrustBundle(bytes);
  if (!check.ok) throw new RangeError(`trust bundle rejected: ${check.error}${check.detail ? ` (${check.detail})` : ''}`);
  return bytes;
}

export function encodeRevocationList(r: RevocationList): Uint8Array {
  const entries: [CborKey, Encodable][] = [...payloadHeader('revocations'), [REVOCATION_KEY.version, r.version], [REVOCATION_KEY.keyIds, [...r.keyIds]]];
  if (r.manifests.length > 0) entries.push([REVOCATION_KEY.manifests, [...r.manifests]]);
  const bytes = encodeCbor(new Map(entries));
  const check = parseRevocationList(bytes);
  if (!check.ok) throw new RangeError(`revocation list rejected: ${check.error}${check.detail ? ` (${check.detail})` : ''}`);
  return bytes;
}
