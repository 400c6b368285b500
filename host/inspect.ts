/**
 * `fwseal inspect`: what a file is and what it says, without deciding whether to trust it.
 * Decoding goes through the same strict parsers as the device, so what inspect shows is what a
 * device would read.
 */
import { toHex } from '../shared/bytes.js';
import { CborTag, decodeCbor } from '../shared/cbor.js';
import { parseEnvelope } from '../shared/cose.js';
import { DIGEST_BYTES, LIMITS } from '../shared/limits.js';
import { parseManifest } from '../shared/manifest.js';
import { KIND, KEY_KIND } from '../shared/payload.js';
import { parseRevocationList, parseTrustBundle } from '../shared/trust.js';
import { keyId, sha256 } from '../device/index.js';
import { FwsealError } from './errors.js';
import { DIGEST_TABLE_MAGIC, isDigestTable } from './digests.js';

export type Inspection = Record<string, unknown> & { type: string };

function kindOf(payload: Uint8Array): number | undefined {
  const d = decodeCbor(payload, { maxBytes: LIMITS.maxPayloadBytes, maxDepth: LIMITS.maxDepth, maxContainerEntries: LIMITS.maxContainerEntries, maxTextBytes: LIMITS.maxTextBytes });
  if (!d.ok || !(d.value instanceof Map)) return undefined;
  const k = d.value.get(KEY_KIND);
  return typeof k === 'number' ? k : undefined;
}

function roleView(role: { threshold: number; keys: readonly Uint8Array[] }) {
  return { threshold: role.threshold, keys: role.keys.map((k) => ({ keyId: toHex(keyId(k)), publicKey: toHex(k) })) };
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
        return { type: obj.type, name: obj.name, algorithm: obj.algorithm, keyId: obj.keyId, publicKey: obj.publicKey, ...(obj.type === 'fwseal-private-key' ? { encryption: 'scrypt + aes-256-gcm' } : {}) };
      }
    } catch {
      /* not JSON */
    }
  }
  const top = decodeCbor(bytes);
  if (!top.ok || !(top.value instanceof CborTag)) {
    throw new FwsealError(top.ok ? 'BAD_HEADER' : (top.error as 'MALFORMED'), `not an fwseal file${top.ok ? '' : ': ' + top.error + (top.detail ? ' (' + top.detail + ')' : '')}`);
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
      type: 'manifest', ...common,
      deviceClass: v.deviceClass, version: v.version, securityCounter: v.securityCounter, imageSize: v.imageSize, chunkSize: v.chunkSize,
      chunks: Math.ceil(v.imageSize / v.chunkSize), merkleRoot: toHex(v.merkleRoot),
      ...(v.sbom ? { sbom: { digest: toHex(v.sbom.digest), uri: v.sbom.uri } } : {}),
      ...(v.provenance ? { provenance: v.provenance } : {}),
      created: new Date(v.created * 1000).toISOString(),
    };
  }
  if (kind === KIND.trust) {
    const t = parseTrustBundle(payload);
    if (!t.ok) throw FwsealError.from(t, 'trust bundle payload');
    return { type: 'trust-bundle', ...common, version: t.value.version, root: roleView(t.value.root), release: roleView(t.value.release) };
  }
  if (kind === KIND.revocations) {
    const r = parseRevocationList(payload);
    if (!r.ok) throw FwsealError.from(r, 'revocation list payload');
    return { type: 'revocation-list', ...common, version: r.value.version, revokedKeyIds: r.value.keyIds.map(toHex), revokedManifests: r.value.manifests.map(toHex) };
  }
  throw new FwsealError('WRONG_KIND', `unknown payload kind ${String(kind)}`);
}
