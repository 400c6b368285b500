/**
 * Trust bundle and revocation list payloads (SPEC.md §Trust bundle, §Revocation list).
 *
 *   trust = { 0: 2, 1: 1, 2: version (uint >= 1), 3: role (root), 4: role (release) }
 *   role  = { 1: threshold (uint >= 1), 2: [+ bstr .size 32] (Ed25519 public keys, distinct) }
 *
 *   revocations = { 0: 3, 1: 1, 2: version (uint >= 1),
 *                   3: [* bstr .size 16] (revoked key ids, distinct),
 *                   ? 4: [* bstr .size 32] (revoked manifest digests: SHA-256 of the manifest payload) }
 */

import { bytesEqual } from './bytes.js';
import { type CborKey, type CborValue, type Encodable, encodeCbor } from './cbor.js';
import { type Result } from './codes.js';
import { asArray, asBytes, asMap, asUint, FieldReader, schemaFail } from './fields.js';
import { DIGEST_BYTES, KEY_ID_BYTES, LIMITS, PUBLIC_KEY_BYTES } from './limits.js';
import { parsePayload, payloadHeader } from './payload.js';

export const TRUST_KEY = Object.freeze({ version: 2, root: 3, release: 4 });
export const ROLE_KEY = Object.freeze({ threshold: 1, keys: 2 });
export const REVOCATION_KEY = Object.freeze({ version: 2, keyIds: 3, manifests: 4 });

export type Role = { readonly threshold: number; readonly keys: readonly Uint8Array[] };
export type TrustBundle = { readonly version: number; readonly root: Role; readonly release: Role };
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

export function parseTrustBundle(payload: Uint8Array): Result<{ value: TrustBundle }> {
  return parsePayload(payload, 'trust', (f) => {
    const version = asUint(f.required(TRUST_KEY.version, 'version'), 'version', 1, LIMITS.maxCounter);
    const root = readRole(f.required(TRUST_KEY.root, 'root role'), 'root');
    const release = readRole(f.required(TRUST_KEY.release, 'release role'), 'release');
    return Object.freeze({ version, root, release });
  });
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

export function encodeTrustBundle(t: TrustBundle): Uint8Array {
  const bytes = encodeCbor(
    new Map<CborKey, Encodable>([
      ...payloadHeader('trust'),
      [TRUST_KEY.version, t.version],
      [TRUST_KEY.root, roleMap(t.root)],
      [TRUST_KEY.release, roleMap(t.release)],
    ]),
  );
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
