import { basename } from 'node:path';
import { rmSync, statSync } from 'node:fs';
import { toHex } from '../../shared/bytes.js';
import { LIMITS } from '../../shared/limits.js';
import { FwsealError } from '../errors.js';
import { fileExists, readFileLimited, writeFileAtomic } from '../io.js';
import { loadSigningKey } from '../keys.js';
import { pack } from '../pack.js';
import { signEnvelope } from '../sign.js';
import { verifyFiles } from '../verify.js';
import { inspectBytes } from '../inspect.js';
import { type Command, int, json, onePositional, progress, str } from './common.js';

/** Where the digest table of a manifest lives: M.cose -> M.digests, anything else -> NAME.digests. */
export function digestTablePath(manifestPath: string): string {
  return manifestPath.endsWith('.cose') ? manifestPath.slice(0, -'.cose'.length) + '.digests' : manifestPath + '.digests';
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export const packCmd: Command = {
  name: 'pack',
  summary: 'turn a firmware image into an unsigned manifest (M.cose) and its digest table',
  usage: `fwseal pack IMAGE --device-class CLASS --version SEMVER --counter N --out M.cose
    [--chunk-size BYTES] [--sbom FILE [--sbom-uri URI]] [--pipeline-run ID] [--source-rev REV]
    [--created SECONDS] [--digests FILE] [--json]

Splits IMAGE into chunks (default 4096 bytes, a power of two from 512 to 1 MiB), hashes them into
an RFC 9162 Merkle tree and writes the manifest with no signature yet; add signatures with
'fwseal sign'. Also writes the chunk digest table (default: M.digests beside M.cose) that lets
verifiers and the OTA server check every chunk on its own. --counter is the security counter
(anti-rollback), independent of --version. --created defaults to SOURCE_DATE_EPOCH or now.`,
  options: {
    'device-class': { type: 'string' }, version: { type: 'string' }, counter: { type: 'string' }, out: { type: 'string' },
    'chunk-size': { type: 'string' }, sbom: { type: 'string' }, 'sbom-uri': { type: 'string' }, 'pipeline-run': { type: 'string' },
    'source-rev': { type: 'string' }, created: { type: 'string' }, digests: { type: 'string' }, json: { type: 'boolean' },
  },
  run(p, io) {
    const image = onePositional(p, 'IMAGE');
    const out = str(p, 'out', true);
    const sbomPath = str(p, 'sbom');
    const sbomUri = str(p, 'sbom-uri');
    if (sbomUri !== undefined && sbomPath === undefined) throw new FwsealError('USAGE', '--sbom-uri needs --sbom FILE');
    const run = str(p, 'pipeline-run');
    const rev = str(p, 'source-rev');
    const created = p.values.created === undefined ? undefined : int(p, 'created', 0, LIMITS.maxCounter);
    const packed = pack({
      imagePath: image,
      deviceClass: str(p, 'device-class', true),
      version: str(p, 'version', true),
      securityCounter: int(p, 'counter', 0, LIMITS.maxCounter),
      chunkSize: int(p, 'chunk-size', LIMITS.minChunkSize, LIMITS.maxChunkSize, 4096),
      ...(sbomPath ? { sbom: { path: sbomPath, uri: sbomUri ?? basename(sbomPath) } } : {}),
      ...(run || rev ? { provenance: { ...(run ? { pipelineRun: run } : {}), ...(rev ? { sourceRevision: rev } : {}) } } : {}),
      ...(created !== undefined ? { created } : {}),
      onProgress: progress(io, 'pack  ', fileSize(image)),
    });
    const digests = str(p, 'digests') ?? digestTablePath(out);
    writeFileAtomic(digests, packed.digestTable);
    try {
      writeFileAtomic(out, packed.envelope);
    } catch (e) {
      rmSync(digests, { force: true }); // no digest table without its manifest
      throw e;
    }
    const m = packed.manifest;
    if (p.values.json) json(io, { out, digests, manifestBytes: packed.envelope.length, imageSize: m.imageSize, chunkSize: m.chunkSize, chunks: Math.ceil(m.imageSize / m.chunkSize), merkleRoot: toHex(m.merkleRoot) });
    else io.stdout(`wrote ${out} (${packed.envelope.length} bytes, unsigned) and ${digests}\n  ${m.deviceClass} ${m.version} counter ${m.securityCounter}, ${m.imageSize} bytes in ${Math.ceil(m.imageSize / m.chunkSize)} chunks of ${m.chunkSize}\n  merkle root ${toHex(m.merkleRoot)}\n`);
    return 0;
  },
};

export const signCmd: Command = {
  name: 'sign',
  summary: 'add one signature to a manifest, trust bundle or revocation list (in place)',
  usage: `fwseal sign FILE --key KEY.key [--json]

Adds a COSE_Signature by KEY to FILE, in place (atomically). Signers may work on different
machines in any order: signatures are kept sorted by key id, and signing twice with one key
changes nothing.`,
  options: { key: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const file = onePositional(p, 'FILE');
    const keyPath = str(p, 'key', true);
    const envelope = readFileLimited(file, LIMITS.maxEnvelopeBytes, 'envelope');
    const key = loadSigningKey(keyPath);
    const r = signEnvelope(envelope, key);
    if (r.added) writeFileAtomic(file, r.envelope);
    if (p.values.json) json(io, { file, keyId: toHex(key.keyId), added: r.added, bytes: r.envelope.length });
    else io.stdout(r.added ? `signed ${file} with ${toHex(key.keyId)} (${r.envelope.length} bytes)\n` : `${file} already carries a signature by ${toHex(key.keyId)}; unchanged\n`);
    return 0;
  },
};

export const verifyCmd: Command = {
  name: 'verify',
  summary: 'check a manifest (and its image) exactly as a device would',
  usage: `fwseal verify M.cose --trust trust.cbor [--image IMAGE] [--revocations RL.cbor]
    [--device-class CLASS] [--counter STORED] [--digests FILE] [--json]

Runs the device verifier: signatures against the trust bundle's release threshold, revocations,
device class (default: accept the manifest's own), security counter >= STORED (default 0), then
the image streamed chunk by chunk against the signed Merkle root. When the digest table written by
pack is present (M.digests, or --digests), the first wrong chunk is named.
Exit status: 0 accepted, 1 rejected (the error name is printed), 2 usage or I/O error.`,
  options: {
    image: { type: 'string' }, trust: { type: 'string' }, revocations: { type: 'string' }, 'device-class': { type: 'string' },
    counter: { type: 'string' }, digests: { type: 'string' }, 'revocation-version': { type: 'string' }, json: { type: 'boolean' },
  },
  run(p, io) {
    const file = onePositional(p, 'M.cose');
    const envelope = readFileLimited(file, LIMITS.maxEnvelopeBytes, 'manifest');
    const trust = readFileLimited(str(p, 'trust', true), LIMITS.maxEnvelopeBytes, 'trust bundle');
    const rlPath = str(p, 'revocations');
    const revocations = rlPath ? readFileLimited(rlPath, LIMITS.maxEnvelopeBytes, 'revocation list') : undefined;
    const image = str(p, 'image');
    const explicitDigests = str(p, 'digests');
    const digestsPath = explicitDigests ?? (image && fileExists(digestTablePath(file)) ? digestTablePath(file) : undefined);
    const counter = int(p, 'counter', 0, LIMITS.maxCounter, 0);
    let deviceClass = str(p, 'device-class');
    if (deviceClass === undefined) {
      // No class given: check against the manifest's own (a laptop is not a device).
      const info = inspectSafe(envelope);
      deviceClass = typeof info?.deviceClass === 'string' ? info.deviceClass : '-';
    }
    const revocationVersion = p.values['revocation-version'] === undefined ? undefined : int(p, 'revocation-version', 0, LIMITS.maxCounter);
    const { result, usedDigestTable } = verifyFiles({
      envelope, trust,
      state: { deviceClass, counter, ...(revocations ? { revocations } : {}), ...(revocationVersion !== undefined ? { revocationVersion } : {}) },
      ...(image ? { imagePath: image } : {}),
      ...(digestsPath ? { digestsPath } : {}),
      onProgress: image ? progress(io, 'verify', fileSize(image)) : undefined,
    });
    if (p.values.json) {
      json(io, result.ok
        ? { ok: true, code: 0, error: 'OK', imageChecked: !!image, digestTable: usedDigestTable, manifest: inspectSafe(envelope), signers: result.signers.map(toHex), trustVersion: result.trustVersion, revocationVersion: result.revocationVersion }
        : { ok: false, code: result.code, error: result.error, ...(result.detail ? { detail: result.detail } : {}) });
    } else if (result.ok) {
      const m = result.manifest;
      io.stdout(`ACCEPTED ${m.deviceClass} ${m.version} counter ${m.securityCounter}: ${result.signers.length} release signature(s) by ${result.signers.map(toHex).join(', ')}${image ? '; image matches' : '; image not checked (no --image)'}\n`);
    } else {
      io.stdout(`REJECTED ${result.error} (code ${result.code})${result.detail ? ': ' + result.detail : ''}\n`);
    }
    return result.ok ? 0 : 1;
  },
};

function inspectSafe(envelope: Uint8Array): Record<string, unknown> | null {
  try {
    return inspectBytes(envelope);
  } catch {
    return null;
  }
}

export const inspectCmd: Command = {
  name: 'inspect',
  summary: 'show what a manifest, trust bundle, revocation list, key or digest table says',
  usage: `fwseal inspect FILE [--json]

Decodes FILE with the device's strict parsers and prints its fields. Shows what a file claims; it
does not decide whether to trust it (that is 'fwseal verify').`,
  options: { json: { type: 'boolean' } },
  run(p, io) {
    const file = onePositional(p, 'FILE');
    const info = inspectBytes(readFileLimited(file, 64 * 1024 * 1024, 'file'));
    if (p.values.json) json(io, info);
    else io.stdout(render(info, ''));
    return 0;
  },
};

function render(value: unknown, indent: string): string {
  if (value === null || typeof value !== 'object') return `${String(value)}\n`;
  if (Array.isArray(value)) {
    if (value.length === 0) return '(none)\n';
    return '\n' + value.map((v) => `${indent}  - ${render(v, indent + '    ').trimStart()}`).join('');
  }
  const entries = Object.entries(value as Record<string, unknown>);
  return (indent ? '\n' : '') + entries.map(([k, v]) => `${indent}${k}: ${render(v, indent + '  ')}`).join('');
}
