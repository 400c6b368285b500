/**
 * `fwseal inspect`: what a file is and what it says, without deciding whether to trust it.
 * Decoding goes through the same strict parsers as the device, so what inspect shows is what a
 * device would read.
 */

import { keyId, sha256 } from '../device/index.js';
import { toHex } from '../shared/bytes.js';
import { CborTag, decodeCbor } from '../shared/cbor.js';
import { parseEnvelope } from '../shared/cose.js';
import { DIGEST_BYTES, LIMITS } from '../shared/limits.js';
import { parseManifest } from '../shared/manifest.js';
import { KEY_KIND, KIND } from '../shared/payload.js';
import { type LogPolicy, parseRevocationList, parseTrustBundle } from '../shared/trust.js';
import { DETACHED_HEAD, decodeDetached } from './detached.js';
import { DIGEST_TABLE_MAGIC, isDigestTable } from './digests.js';
import { FwsealError } from './errors.js';

export type Inspection = Record<string, unknown> & { type: string };

function kindOf(payload: Uint8Array): number | undefined {
  const d = decodeCbor(payload, {
    maxBytes: LIMITS.maxPayloadBytes,
    maxDepth: LIMITS.maxDepth,
    maxContainerEntries: LIMITS.maxContainerEntries,
    maxTextBytes: LIMITS.maxTextBytes,
  });
  if (!d.ok || !(d.value instanceof Map)) return undefined;
  const k = d.value.get(KEY_KIND);
  return typeof k === 'number' ? k : undefined;
}

/** The three signed objects a file can hold (SPEC.md §1). */
export type ObjectKind = 'manifest' | 'trust-bundle' | 'revocation-list';

export const OBJECT_NAMES: Readonly<Record<ObjectKind, string>> = Object.freeze({
  manifest: 'manifest',
  'trust-bundle': 'trust bundle',
  'revocation-list': 'revocation list',
});

/** The object kind a payload declares (key 0), or null when it declares none of the three. */
export function payloadKind(payload: Uint8Array): ObjectKind | null {
  const k = kindOf(payload);
  return k === KIND.manifest ? 'manifest' : k === KIND.trust ? 'trust-bundle' : k === KIND.revocations ? 'revocation-list' : null;
}

/** The kind a well-formed envelope (E1–E4) declares; null for anything else (then the verifier decides). */
export function envelopeKind(bytes: Uint8Array): ObjectKind | null {
  const env = parseEnvelope(bytes);
  return env.ok ? payloadKind(env.envelope.payload) : null;
}

/**
 * SPEC.md §14 H8: what a file recognisably is when it is another kind of file (empty, a digest
 * table, JSON, PEM), or null: then the verifier decides, with the code a device would give.
 */
export function notAnFwsealObject(head: Uint8Array, size: number): string | null {
  // Only files that are recognisably something else (SPEC.md §14 H8): any other bytes go to the
  // verifier, so the CLI answers a hostile or damaged object with the same code as a device.
  if (size === 0) return 'an empty file';
  if (isDigestTable(head)) return 'an fwseal digest table';
  const text = Buffer.from(head).toString('latin1');
  if (text.startsWith('{')) return 'JSON (an fwseal key file?)';
  if (text.startsWith('-----BEGIN')) return 'a PEM file';
  if (startsWith(head, DETACHED_HEAD)) return 'an fwseal detached signature (add it with fwseal attach)';
  return null;
}

const startsWith = (bytes: Uint8Array, head: Uint8Array) => bytes.length >= head.length && head.every((b, i) => bytes[i] === b);

/** Seconds since the epoch as ISO 8601, or the plain number when no calendar date can show it. */
function createdText(seconds: number): string {
  const date = new Date(seconds * 1000);
  return Number.isNaN(date.getTime()) ? `${seconds} s after 1970-01-01 (beyond the calendar)` : date.toISOString();
}

function roleView(role: { threshold: number; keys: readonly Uint8Array[] }) {
  return { threshold: role.threshold, keys: role.keys.map((k) => ({ keyId: toHex(keyId(k)), publicKey: toHex(k) })) };
}

/** A trust bundle's log policy (SPEC.md §4.2 format 2): devices require a log proof for every manifest. */
function logView(log: LogPolicy) {
  return {
    origin: log.origin,
    logKey: toHex(log.logKey),
    witnessThreshold: log.witnessThreshold,
    witnesses: log.witnesses.map((w) => ({ name: w.name, publicKey: toHex(w.key) })),
  };
}

export function inspectBytes(bytes: Uint8Array): Inspection {
  if (isDigestTable(bytes)) {
    const body = bytes.length - DIGEST_TABLE_MAGIC.length;
    return { type: 'digest-table', chunks: Math.floor(body / DIGEST_BYTES), wellFormed: body % DIGEST_BYTES === 0 };
  }
  if (bytes[0] === 0x7b) {
    // JSON: an fwseal key file?
    try {
      const obj = JSON.parse(Buffer.from(bytes).toString('utf8')) as Record<string, unknown>;
      if (obj.type === 'fwseal-public-key' || obj.type === 'fwseal-private-key') {
        // Only public fields, ever: the encrypted seed is not shown.
        return {
          type: obj.type,
          name: obj.name,
          algorithm: obj.algorithm,
          keyId: obj.keyId,
          publicKey: obj.publicKey,
          ...(obj.type === 'fwseal-private-key' ? { encryption: 'scrypt + aes-256-gcm' } : {}),
        };
      }
    } catch {
      /* not JSON */
    }
  }
  if (startsWith(bytes, DETACHED_HEAD)) {
    const d = decodeDetached(bytes, 'detached signature');
    return { type: 'detached-signature', signs: d.kind, payloadDigest: toHex(d.payloadDigest), keyId: toHex(d.signature.kid) };
  }
  const top = decodeCbor(bytes);
  if (!top.ok || !(top.value instanceof CborTag)) {
    throw new FwsealError(
      top.ok ? 'BAD_HEADER' : (top.error as 'MALFORMED'),
      `not an fwseal file${top.ok ? '' : `: ${top.error}${top.detail ? ` (${top.detail})` : ''}`}`,
    );
  }
  const env = parseEnvelope(bytes);
  if (!env.ok) throw FwsealError.from(env, 'not a valid fwseal envelope');
  const signatures = env.envelope.signatures.map((s) => ({ keyId: toHex(s.kid) }));
  const payload = env.envelope.payload;
  const common = { bytes: bytes.length, payloadDigest: toHex(sha256(payload)), signatures };
  const kind = kindOf(payload);
  if (kind === KIND.manifest) {
    const m = parseManifest(payload);
    if (!m.ok) throw FwsealError.from(m, 'manifest payload');
    const v = m.value;
    return {
      type: 'manifest',
      ...common,
      deviceClass: v.deviceClass,
      version: v.version,
      securityCounter: v.securityCounter,
      imageSize: v.imageSize,
      chunkSize: v.chunkSize,
      chunks: Math.ceil(v.imageSize / v.chunkSize),
      merkleRoot: toHex(v.merkleRoot),
      ...(v.sbom ? { sbom: { digest: toHex(v.sbom.digest), uri: v.sbom.uri } } : {}),
      ...(v.provenance ? { provenance: v.provenance } : {}),
      created: createdText(v.created),
    };
  }
  if (kind === KIND.trust) {
    const t = parseTrustBundle(payload);
    if (!t.ok) throw FwsealError.from(t, 'trust bundle payload');
    const { version, root, release, log } = t.value;
    return { type: 'trust-bundle', ...common, version, root: roleView(root), release: roleView(release), ...(log ? { log: logView(log) } : {}) };
  }
  if (kind === KIND.revocations) {
    const r = parseRevocationList(payload);
    if (!r.ok) throw FwsealError.from(r, 'revocation list payload');
    return {
      type: 'revocation-list',
      ...common,
      version: r.value.version,
      revokedKeyIds: r.value.keyIds.map(toHex),
      revokedManifests: r.value.manifests.map(toHex),
    };
  }
  throw new FwsealError('WRONG_KIND', `unknown payload kind ${String(kind)}`);
}
