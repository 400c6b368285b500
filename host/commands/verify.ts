/**
 * `fwseal verify` (SPEC.md §14): the device verifier over files, in a module of its own so the
 * command loads only what it runs (issue 17: no pack, keys or ceremony code on a deploy gate's cold
 * start); tsup builds it as one file (tsup.config.ts).
 */
import { statSync } from 'node:fs';
import { toHex } from '../../shared/bytes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { LIMITS } from '../../shared/limits.js';
import { parseManifest } from '../../shared/manifest.js';
import { FwsealError } from '../errors.js';
import { envelopeKind, inspectBytes } from '../inspect.js';
import { fileExists } from '../io.js';
import { explainManifestSignatures, IGNORED_TEXT, verifyFiles } from '../verify.js';
import { type Command, int, json, onePositional, progress, readObjectFile, str } from './common.js';
import { verifyRevocationFile, verifyTrustFile } from './verify-trust.js';

// The CLI parses this command's arguments with this module's own parser (host/cli-index.ts `parser`).
export { parse } from './common.js';

/** Where the digest table of a manifest lives: M.cose -> M.digests, anything else -> NAME.digests. */
export function digestTablePath(manifestPath: string): string {
  return manifestPath.endsWith('.cose') ? `${manifestPath.slice(0, -'.cose'.length)}.digests` : `${manifestPath}.digests`;
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export const verifyCmd: Command = {
  name: 'verify',
  summary: 'check a manifest (and its image), a revocation list or a trust bundle exactly as a device would',
  usage: `fwseal verify M.cose --trust trust.cbor [--image IMAGE] [--revocations RL.cbor]
    [--device-class CLASS] [--counter STORED] [--digests FILE] [--json]
fwseal verify RL2.cbor --trust trust.cbor [--revocations STORED-RL.cbor] [--revocation-version N] [--json]
fwseal verify trust2.cbor [--trust CURRENT-trust.cbor [--revocations STORED-RL.cbor]] [--json]

Runs the device verifier: signatures against the trust bundle's release threshold, revocations,
device class (default: accept the manifest's own), security counter >= STORED (default 0), then
the image streamed chunk by chunk against the signed Merkle root. When the digest table written by
pack is present (M.digests, or --digests), the first wrong chunk is named. Signatures that do not
count are named with the reason (unknown key, wrong role, revoked, repeated, invalid).
A revocation list or trust bundle is checked as a device checks it before storing it: --trust is the
bundle the device holds, --revocations the list it stores (its revoked keys stay revoked: SPEC.md
§6.2 R3-R5, §6.1 T6-T7); a trust bundle without --trust gets the provisioning check only (T1-T4).
Exit status: 0 accepted, 1 rejected (the error name is printed), 2 usage or I/O error (a file that
is recognisably not an fwseal object, such as a key file, is a usage error).

Examples:
  fwseal verify M.cose --trust trust.cbor --image firmware.bin --device-class acme-gw --counter 6
  fwseal verify RL.cbor --trust trust.cbor`,
  options: {
    image: { type: 'string' },
    trust: { type: 'string' },
    revocations: { type: 'string' },
    'device-class': { type: 'string' },
    counter: { type: 'string' },
    digests: { type: 'string' },
    'revocation-version': { type: 'string' },
    json: { type: 'boolean' },
  },
  run(p, io) {
    const file = onePositional(p, 'M.cose');
    const envelope = readObjectFile(file, null);
    const kind = envelopeKind(envelope);
    if (kind === 'revocation-list' || kind === 'trust-bundle') {
      const manifestOnly = ['image', 'digests', 'device-class', 'counter'].filter((o) => p.values[o] !== undefined);
      if (manifestOnly.length > 0) throw new FwsealError('USAGE', `--${manifestOnly[0]} applies to manifests; ${file} is an fwseal ${kind.replace('-', ' ')}`);
      return kind === 'revocation-list' ? verifyRevocationFile(p, io, envelope) : verifyTrustFile(p, io, envelope);
    }
    const trust = readObjectFile(str(p, 'trust', true), 'trust-bundle');
    const rlPath = str(p, 'revocations');
    const revocations = rlPath ? readObjectFile(rlPath, 'revocation-list') : undefined;
    const image = str(p, 'image');
    const explicitDigests = str(p, 'digests');
    const digestsPath = explicitDigests ?? (image && fileExists(digestTablePath(file)) ? digestTablePath(file) : undefined);
    const counter = int(p, 'counter', 0, LIMITS.maxCounter, 0);
    // No class given: check against the manifest's own (a laptop is not a device).
    const deviceClass = str(p, 'device-class') ?? ownDeviceClass(envelope);
    const revocationVersion = p.values['revocation-version'] === undefined ? undefined : int(p, 'revocation-version', 0, LIMITS.maxCounter);
    const { result, usedDigestTable } = verifyFiles({
      envelope,
      trust,
      state: { deviceClass, counter, ...(revocations ? { revocations } : {}), ...(revocationVersion !== undefined ? { revocationVersion } : {}) },
      ...(image ? { imagePath: image } : {}),
      ...(digestsPath ? { digestsPath } : {}),
      onProgress: image ? progress(io, 'verify', fileSize(image)) : undefined,
    });
    const ignored = explainManifestSignatures(envelope, trust, revocations);
    if (p.values.json) {
      json(
        io,
        result.ok
          ? {
              ok: true,
              code: 0,
              error: 'OK',
              imageChecked: !!image,
              digestTable: usedDigestTable,
              manifest: inspectSafe(envelope),
              signers: result.signers.map(toHex),
              ignoredSignatures: ignored,
              trustVersion: result.trustVersion,
              revocationVersion: result.revocationVersion,
            }
          : { ok: false, code: result.code, error: result.error, ...(result.detail ? { detail: result.detail } : {}), ignoredSignatures: ignored },
      );
    } else {
      if (result.ok) {
        const m = result.manifest;
        io.stdout(
          `ACCEPTED ${m.deviceClass} ${m.version} counter ${m.securityCounter}: ${result.signers.length} release signature(s) by ${result.signers.map(toHex).join(', ')}${image ? '; image matches' : '; image not checked (no --image)'}\n`,
        );
      } else {
        io.stdout(`REJECTED ${result.error} (code ${result.code})${result.detail ? `: ${result.detail}` : ''}\n`);
      }
      for (const g of ignored) io.stdout(`  not counted: signature by ${g.keyId}: ${IGNORED_TEXT[g.reason]} (${g.reason})\n`);
    }
    return result.ok ? 0 : 1;
  },
};

/** The device class a manifest names, read with the device's parsers; '-' when it has none. */
function ownDeviceClass(envelope: Uint8Array): string {
  const env = parseEnvelope(envelope);
  const m = env.ok ? parseManifest(env.envelope.payload) : null;
  return m?.ok ? m.value.deviceClass : '-';
}

function inspectSafe(envelope: Uint8Array): Record<string, unknown> | null {
  try {
    return inspectBytes(envelope);
  } catch {
    return null;
  }
}
