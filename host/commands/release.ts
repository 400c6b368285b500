import { rmSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { toHex } from '../../shared/bytes.js';
import { LIMITS } from '../../shared/limits.js';
import { type Ceremony, ceremonyStatus, keyNames, renderCeremony } from '../ceremony.js';
import { FwsealError } from '../errors.js';
import { inspectBytes } from '../inspect.js';
import { readFileLimited, writeFileAtomic } from '../io.js';
import { pack } from '../pack.js';
import { type Command, int, json, list, onePositional, type Parsed, progress, readObjectFile, str } from './common.js';
import { digestTablePath } from './verify.js';

// `fwseal verify` lives in ./verify.ts (its own one-file build, tsup.config.ts); device.ts imports the path rule from here.
export { digestTablePath };

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
(anti-rollback), independent of --version. --created defaults to SOURCE_DATE_EPOCH or now.

Examples:
  fwseal pack firmware.bin --device-class acme-gw --version 1.4.2 --counter 7 --out M.cose
  fwseal pack firmware.bin --device-class acme-gw --version 1.4.2 --counter 7 --chunk-size 16384 --sbom sbom.json --out M.cose`,
  options: {
    'device-class': { type: 'string' },
    version: { type: 'string' },
    counter: { type: 'string' },
    out: { type: 'string' },
    'chunk-size': { type: 'string' },
    sbom: { type: 'string' },
    'sbom-uri': { type: 'string' },
    'pipeline-run': { type: 'string' },
    'source-rev': { type: 'string' },
    created: { type: 'string' },
    digests: { type: 'string' },
    json: { type: 'boolean' },
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
    if (p.values.json)
      json(io, {
        out,
        digests,
        manifestBytes: packed.envelope.length,
        imageSize: m.imageSize,
        chunkSize: m.chunkSize,
        chunks: Math.ceil(m.imageSize / m.chunkSize),
        merkleRoot: toHex(m.merkleRoot),
      });
    else
      io.stdout(
        `wrote ${out} (${packed.envelope.length} bytes, unsigned) and ${digests}\n  ${m.deviceClass} ${m.version} counter ${m.securityCounter}, ${m.imageSize} bytes in ${Math.ceil(m.imageSize / m.chunkSize)} chunks of ${m.chunkSize}\n  merkle root ${toHex(m.merkleRoot)}\n`,
      );
    return 0;
  },
};

/**
 * The ceremony flags of inspect (SPEC.md §15.7); none given: inspect shows the file only, as before.
 * --pub and --keys alone only name the keys the file lists (keyNamesFor).
 */
function ceremonyFor(p: Parsed, file: string, type: string, names: Map<string, string>): Ceremony | null {
  const given = ['trust', 'previous', 'revocations', 'pub', 'keys'].filter((o) => p.values[o] !== undefined);
  if (given.length === 0 || given.every((o) => o === 'pub' || o === 'keys')) return null;
  const trustPath = str(p, 'trust');
  const previousPath = str(p, 'previous');
  if (trustPath === undefined && previousPath === undefined)
    throw new FwsealError('USAGE', `--${given[0]} goes with --trust (or --previous for a trust bundle)`);
  if (type !== 'manifest' && type !== 'trust-bundle' && type !== 'revocation-list')
    throw new FwsealError('USAGE', `--trust shows the signing status of a manifest, trust bundle or revocation list; ${file} is ${type}`);
  const revocationsPath = str(p, 'revocations');
  return ceremonyStatus({
    envelope: readObjectFile(file, null),
    ...(trustPath !== undefined ? { trust: readObjectFile(trustPath, 'trust-bundle') } : {}),
    ...(previousPath !== undefined ? { previous: readObjectFile(previousPath, 'trust-bundle') } : {}),
    ...(revocationsPath !== undefined ? { revocations: readObjectFile(revocationsPath, 'revocation-list') } : {}),
    names,
  });
}

/**
 * The text of inspect with the name of every listed key that a --pub or --keys file names, next to
 * its key id (issue 17: `inspect trust.cbor` showed ids and hex keys only). The JSON stays as it is.
 */
function withNames(value: unknown, names: ReadonlyMap<string, string>): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => withNames(v, names));
  const obj = value as Record<string, unknown>;
  const name = typeof obj.keyId === 'string' && !('name' in obj) ? names.get(obj.keyId) : undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    // A revocation list lists bare key ids: the name goes after each.
    const ids = k === 'revokedKeyIds' && Array.isArray(v) ? v.map((id) => (names.has(String(id)) ? `${id} (${names.get(String(id))})` : id)) : v;
    out[k] = withNames(ids, names);
    if (k === 'keyId' && name !== undefined) out.name = name;
  }
  return out;
}

export const inspectCmd: Command = {
  name: 'inspect',
  summary: 'show what a manifest, trust bundle, revocation list, key or digest table says',
  usage: `fwseal inspect FILE [--pub X.pub ...] [--keys DIR] [--json]
fwseal inspect FILE --trust trust.cbor [--previous trust-v1.cbor] [--revocations RL.cbor]
    [--pub X.pub ...] [--keys DIR] [--json]

Decodes FILE with the device's strict parsers and prints its fields. Shows what a file claims; it
does not decide whether to trust it (that is 'fwseal verify').
With --trust, also the status of a signing ceremony for FILE (a manifest, trust bundle or
revocation list): for each threshold that decides it (a manifest: the release role of --trust; a
revocation list: the root role of --trust; a trust bundle: its own root role and, from version 2,
the root role of the bundle it replaces, given as --trust or --previous), each role key signed,
missing or revoked (by the stored list --revocations), the signatures that do not count (invalid,
outside-role, duplicate), how many are still needed, and whether devices accept FILE now. Key
names come from the .pub files given with --pub and every *.pub in --keys DIR; without --trust
they name the keys FILE lists (role keys, signatures, revoked keys) in the text output.

Examples:
  fwseal inspect trust.cbor --keys keys
  fwseal inspect M.cose --trust trust.cbor --keys keys`,
  options: {
    json: { type: 'boolean' },
    trust: { type: 'string' },
    previous: { type: 'string' },
    revocations: { type: 'string' },
    pub: { type: 'string', multiple: true },
    keys: { type: 'string' },
  },
  run(p, io) {
    const file = onePositional(p, 'FILE');
    const bytes = readFileLimited(file, 64 * 1024 * 1024, 'file');
    let info: Record<string, unknown>;
    try {
      info = inspectBytes(bytes);
    } catch (e) {
      // Every file the parsers accept or refuse gets a code; a throw from the display is not INTERNAL.
      if (e instanceof FwsealError) throw e;
      throw new FwsealError('MALFORMED', `${file} cannot be shown: ${(e as Error).message}`);
    }
    const names = keyNames(list(p, 'pub'), str(p, 'keys'));
    const ceremony = ceremonyFor(p, file, String(info.type), names);
    if (p.values.json) json(io, ceremony ? { ...info, ceremony } : info);
    else io.stdout(render(withNames(info, names), '') + (ceremony ? renderCeremony(ceremony) : ''));
    return 0;
  },
};

function render(value: unknown, indent: string): string {
  if (value === null || typeof value !== 'object') return `${String(value)}\n`;
  if (Array.isArray(value)) {
    if (value.length === 0) return '(none)\n';
    return `\n${value.map((v) => `${indent}  - ${render(v, `${indent}    `).trimStart()}`).join('')}`;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  return (indent ? '\n' : '') + entries.map(([k, v]) => `${indent}${k}: ${render(v, `${indent}  `)}`).join('');
}
