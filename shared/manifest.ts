/**
 * The manifest payload (SPEC.md §Manifest). Integer keys; every field checked on the way in.
 *
 *   manifest = {
 *     0: 1,                 ; kind = manifest
 *     1: 1,                 ; format version
 *     2: tstr,              ; device class
 *     3: tstr,              ; firmware version (SemVer 2.0.0)
 *     4: uint,              ; security counter (anti-rollback; independent of the version)
 *     5: uint,              ; image size in bytes (>= 1)
 *     6: uint,              ; chunk size in bytes (power of two)
 *     7: bstr .size 32,     ; Merkle root over the chunks (RFC 9162 leaf/node hashing)
 *     ? 8: [bstr .size 32, tstr],            ; SBOM: SHA-256 digest, URI
 *     ? 9: { ? 1: tstr, ? 2: tstr },         ; provenance: pipeline run id, source revision
 *     10: uint,             ; created, seconds since the Unix epoch
 *   }
 */
import { type CborKey, type Encodable, encodeCbor } from './cbor.js';
import { type Result } from './codes.js';
import { asArray, asBytes, asMap, asText, asUint, FieldReader, schemaFail } from './fields.js';
import { DIGEST_BYTES, WIRE_LIMITS as LIMITS } from './limits.js';
import { parsePayload, payloadHeader } from './payload.js';

export const MANIFEST_KEY = Object.freeze({
  deviceClass: 2,
  version: 3,
  securityCounter: 4,
  imageSize: 5,
  chunkSize: 6,
  merkleRoot: 7,
  sbom: 8,
  provenance: 9,
  created: 10,
});
export const PROVENANCE_KEY = Object.freeze({ pipelineRun: 1, sourceRevision: 2 });

export type Manifest = {
  readonly deviceClass: string;
  readonly version: string;
  readonly securityCounter: number;
  readonly imageSize: number;
  readonly chunkSize: number;
  readonly merkleRoot: Uint8Array;
  readonly sbom?: { readonly digest: Uint8Array; readonly uri: string };
  readonly provenance?: { readonly pipelineRun?: string; readonly sourceRevision?: string };
  readonly created: number;
};

export const DEVICE_CLASS_PATTERN = /^[A-Za-z0-9._-]+$/;
/** SemVer 2.0.0 (semver.org, §2, §9, §10); input length is bounded before the match. */
export const SEMVER_PATTERN =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;
/** Printable ASCII without spaces, for ids and URIs. */
const TOKEN_PATTERN = /^[\x21-\x7e]+$/;

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && n <= 0x40000000 && (n & (n - 1)) === 0;
}

function readManifest(f: FieldReader): Manifest {
  const K = MANIFEST_KEY;
  // Failure details name each field as `Manifest` does: those names are in the device bundle anyway,
  // where prose labels would only add bytes (SPEC.md §10).
  const deviceClass = asText(f.required(K.deviceClass, 'deviceClass'), 'deviceClass', LIMITS.maxDeviceClassBytes, DEVICE_CLASS_PATTERN);
  const version = asText(f.required(K.version, 'version'), 'version', LIMITS.maxVersionBytes, SEMVER_PATTERN);
  const securityCounter = asUint(f.required(K.securityCounter, 'securityCounter'), 'securityCounter', 0, LIMITS.maxCounter);
  const imageSize = asUint(f.required(K.imageSize, 'imageSize'), 'imageSize', 1, LIMITS.maxImageSize);
  const chunkSize = asUint(f.required(K.chunkSize, 'chunkSize'), 'chunkSize', LIMITS.minChunkSize, LIMITS.maxChunkSize);
  if (!isPowerOfTwo(chunkSize)) schemaFail('BAD_VALUE', 'chunkSize is not a power of two');
  const merkleRoot = asBytes(f.required(K.merkleRoot, 'merkleRoot'), 'merkleRoot', DIGEST_BYTES);
  const created = asUint(f.required(K.created, 'created'), 'created', 0, LIMITS.maxCreated);
  let sbom: Manifest['sbom'];
  const sbomValue = f.optional(K.sbom);
  if (sbomValue !== undefined) {
    const s = asArray(sbomValue, 'sbom', 2);
    if (s.length !== 2) schemaFail('MALFORMED', 'sbom is not [digest, uri]');
    sbom = Object.freeze({ digest: asBytes(s[0], 'sbom.digest', DIGEST_BYTES), uri: asText(s[1], 'sbom.uri', LIMITS.maxUriBytes, TOKEN_PATTERN) });
  }
  let provenance: Manifest['provenance'];
  const provValue = f.optional(K.provenance);
  if (provValue !== undefined) {
    const p = new FieldReader(asMap(provValue, 'provenance'), 'provenance');
    const run = p.optional(PROVENANCE_KEY.pipelineRun);
    const rev = p.optional(PROVENANCE_KEY.sourceRevision);
    p.done();
    if (run === undefined && rev === undefined) schemaFail('BAD_VALUE', 'provenance is empty');
    provenance = Object.freeze({
      ...(run !== undefined ? { pipelineRun: asText(run, 'pipelineRun', LIMITS.maxUriBytes, TOKEN_PATTERN) } : {}),
      ...(rev !== undefined ? { sourceRevision: asText(rev, 'sourceRevision', LIMITS.maxUriBytes, TOKEN_PATTERN) } : {}),
    });
  }
  return Object.freeze({
    deviceClass,
    version,
    securityCounter,
    imageSize,
    chunkSize,
    merkleRoot,
    ...(sbom ? { sbom } : {}),
    ...(provenance ? { provenance } : {}),
    created,
  });
}

/** Parse a manifest payload (V5). Never throws. */
export function parseManifest(payload: Uint8Array): Result<{ value: Manifest }> {
  return parsePayload(payload, 'manifest', readManifest);
}

/** Build the deterministic payload bytes; the result is re-parsed so the host can never emit what a device rejects. */
export function encodeManifest(m: Manifest): Uint8Array {
  const entries: [CborKey, Encodable][] = [
    ...payloadHeader('manifest'),
    [MANIFEST_KEY.deviceClass, m.deviceClass],
    [MANIFEST_KEY.version, m.version],
    [MANIFEST_KEY.securityCounter, m.securityCounter],
    [MANIFEST_KEY.imageSize, m.imageSize],
    [MANIFEST_KEY.chunkSize, m.chunkSize],
    [MANIFEST_KEY.merkleRoot, m.merkleRoot],
    [MANIFEST_KEY.created, m.created],
  ];
  if (m.sbom) entries.push([MANIFEST_KEY.sbom, [m.sbom.digest, m.sbom.uri]]);
  if (m.provenance) {
    const p = new Map<CborKey, Encodable>();
    if (m.provenance.pipelineRun !== undefined) p.set(PROVENANCE_KEY.pipelineRun, m.provenance.pipelineRun);
    if (m.provenance.sourceRevision !== undefined) p.set(PROVENANCE_KEY.sourceRevision, m.provenance.sourceRevision);
    entries.push([MANIFEST_KEY.provenance, p]);
  }
  const bytes = encodeCbor(new Map(entries));
  const check = parseManifest(bytes);
  if (!check.ok) throw new RangeError(`manifest field rejected: ${check.error}${check.detail ? ` (${check.detail})` : ''}`);
  return bytes;
}
