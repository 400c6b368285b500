import { loadTrust, sha256 } from '../../device/index.js';
import { toHex } from '../../shared/bytes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { LIMITS } from '../../shared/limits.js';
import { LOG_NAME_PATTERN, type LogPolicy } from '../../shared/trust.js';
import { FwsealError } from '../errors.js';
import { writeFileAtomic } from '../io.js';
import { loadPublicKeyFile, type SigningKey } from '../keys.js';
import { openSigners, parseKeyRefs } from '../signers/index.js';
import { buildRevocationList, buildTrustBundle } from '../trust.js';
import { type Command, type Io, int, json, list, noPositionals, type Parsed, readObjectFile, str } from './common.js';
import { formatPublished, publishRoot, SERVER_FLAGS, SERVER_USAGE, target } from './ota.js';

const ROLE_FLAGS = {
  root: { type: 'string', multiple: true },
  'root-threshold': { type: 'string' },
  release: { type: 'string', multiple: true },
  'release-threshold': { type: 'string' },
  sign: { type: 'string', multiple: true },
  'sign-pub': { type: 'string', multiple: true },
  out: { type: 'string' },
  version: { type: 'string' },
  json: { type: 'boolean' },
  'log-key': { type: 'string' },
  'log-origin': { type: 'string' },
  witness: { type: 'string', multiple: true },
  'witness-threshold': { type: 'string' },
} as const;

const LOG_USAGE = `--log-key LOG.pub --log-origin ORIGIN makes devices require a transparency log proof for every
manifest (SPEC.md §16; a format-2 bundle, which devices older than this release refuse): the
checkpoint signed by the log key under the log's origin and, with --witness W.pub (repeatable; the
witness's note name is its key name), cosigned by --witness-threshold K of them (default: all).`;

/**
 * The log policy the flags give; for a rotation without --log-key the previous bundle's policy is
 * carried forward (a policy leaves a bundle only with --drop-log-policy).
 */
function logPolicyArgs(p: Parsed, previous?: LogPolicy): LogPolicy | undefined {
  const witnessFiles = list(p, 'witness');
  if (p.values['log-key'] === undefined) {
    if (p.values['log-origin'] !== undefined || witnessFiles.length > 0 || p.values['witness-threshold'] !== undefined)
      throw new FwsealError('USAGE', '--log-origin, --witness and --witness-threshold go with --log-key');
    return p.values['drop-log-policy'] ? undefined : previous;
  }
  if (p.values['drop-log-policy']) throw new FwsealError('USAGE', '--drop-log-policy and --log-key exclude each other');
  const origin = str(p, 'log-origin', true);
  if (!LOG_NAME_PATTERN.test(origin)) throw new FwsealError('USAGE', '--log-origin is a note name of printable ASCII: no spaces, no "+"');
  if (witnessFiles.length > LIMITS.maxRoleKeys) throw new FwsealError('USAGE', `at most ${LIMITS.maxRoleKeys} --witness keys`);
  const witnesses = witnessFiles.map((f) => {
    const k = loadPublicKeyFile(f);
    if (!LOG_NAME_PATTERN.test(k.name)) throw new FwsealError('USAGE', `witness key name ${JSON.stringify(k.name)} is not a note name of printable ASCII`);
    return { name: k.name, key: k.publicKey };
  });
  const witnessThreshold = int(p, 'witness-threshold', witnesses.length > 0 ? 1 : 0, witnesses.length, witnesses.length);
  return { origin, logKey: loadPublicKeyFile(str(p, 'log-key', true)).publicKey, witnessThreshold, witnesses };
}

function report(io: Io, p: Parsed, out: string, version: number, complete: boolean, missing: string[]): number {
  if (p.values.json) json(io, { out, version, complete, missing });
  else io.stdout(`wrote ${out} (trust bundle version ${version})\n`);
  if (!complete) io.stderr(`note: not yet accepted by devices; still missing: ${missing.join('; ')}. Add signatures with: fwseal sign ${out} --key ROOT.key\n`);
  return 0;
}

/** Root signers from repeated --sign (key files, pkcs11: URIs, exec: signers with --sign-pub in order; SPEC.md §15.1). */
function rootSigners(p: Parsed): ReturnType<typeof parseKeyRefs> {
  const refs = parseKeyRefs(list(p, 'sign'), list(p, 'sign-pub'), '--sign-pub');
  if (refs.length === 0) throw new FwsealError('USAGE', 'at least one --sign ROOT.key is needed');
  return refs;
}

/** One audit line per signer of a written object (§15.6). */
function auditSigned(io: Io, action: string, envelope: Uint8Array, kind: string, signers: readonly SigningKey[], file: string, complete: boolean): void {
  const env = parseEnvelope(envelope);
  const digest = env.ok ? toHex(sha256(env.envelope.payload)) : undefined;
  for (const k of signers) io.audit?.({ action, keyId: toHex(k.keyId), kind, ...(digest ? { digest } : {}), file, result: complete ? 'ok' : 'incomplete' });
}

function runTrust(p: Parsed, io: Io, rotate: boolean): number {
  noPositionals(p);
  const out = str(p, 'out', true);
  const previous = rotate ? loadTrust(readObjectFile(str(p, 'previous', true), 'trust-bundle')) : undefined;
  if (previous && !previous.ok) throw FwsealError.from(previous, '--previous trust bundle');
  const root = list(p, 'root').map(loadPublicKeyFile);
  const release = list(p, 'release').map(loadPublicKeyFile);
  const rootThreshold = int(p, 'root-threshold', 1, LIMITS.maxRoleKeys);
  const releaseThreshold = int(p, 'release-threshold', 1, LIMITS.maxRoleKeys);
  const refs = rootSigners(p);
  // All flags are checked before any passphrase is asked for.
  const version = p.values.version === undefined ? undefined : int(p, 'version', 1, LIMITS.maxCounter);
  const log = logPolicyArgs(p, previous?.ok ? previous.trust.bundle.log : undefined);
  const signers = openSigners(refs);
  const r = buildTrustBundle({
    root,
    rootThreshold,
    release,
    releaseThreshold,
    signers,
    ...(previous?.ok ? { previous: previous.trust } : {}),
    ...(version !== undefined ? { version } : {}),
    ...(log ? { log } : {}),
  });
  writeFileAtomic(out, r.envelope);
  auditSigned(io, rotate ? 'trust rotate' : 'trust init', r.envelope, 'trust-bundle', signers, out, r.complete);
  return report(io, p, out, r.version, r.complete, r.missing);
}

export const trustInit: Command = {
  name: 'trust init',
  summary: 'create the root of trust (trust bundle) put into devices',
  usage: `fwseal trust init --root A.pub [--root B.pub ...] --root-threshold K \\
    --release R1.pub [--release R2.pub ...] --release-threshold K \\
    --sign A.key [--sign B.key ...] --out trust.cbor [--version N] [--json]
    [--log-key LOG.pub --log-origin ORIGIN [--witness W.pub ...] [--witness-threshold K]]

Root keys sign trust bundles and revocation lists; release keys sign manifests; each role needs
its threshold of distinct keys. --sign keys must be root keys. With fewer --sign keys than the
root threshold the bundle is written but flagged incomplete: other holders add theirs with
'fwseal sign trust.cbor --key X.key' (or sign detached and 'fwseal attach').
${LOG_USAGE}
--sign takes a key file, a "pkcs11:..." URI or an "exec:CMD" signer (SPEC.md §15.1); each exec:
signer takes the next --sign-pub KEY.pub, in order.

Examples:
  fwseal trust init --root A.pub --root B.pub --root C.pub --root-threshold 2 --release R1.pub --release R2.pub \\
    --release-threshold 1 --sign A.key --sign B.key --out trust.cbor
  fwseal trust init --root A.pub --root-threshold 1 --release R1.pub --release-threshold 1 --sign A.key \\
    --log-key log-key.pub --log-origin example.com/acme-firmware --witness w1.pub --out trust.cbor`,
  options: { ...ROLE_FLAGS },
  run: (p, io) => runTrust(p, io, false),
};

export const trustRotate: Command = {
  name: 'trust rotate',
  summary: 'replace the trust bundle (version N+1, signed by old and new root thresholds)',
  usage: `fwseal trust rotate --previous trust.cbor --root ... --root-threshold K --release ... \\
    --release-threshold K --sign KEY.key [...] --out trust2.cbor [--json]
    [--log-key LOG.pub --log-origin ORIGIN [--witness W.pub ...] [--witness-threshold K] | --drop-log-policy]

Devices accept version N+1 only when a threshold of version N's root keys and a threshold of
its own root keys signed it. --sign takes root keys of either bundle.
${LOG_USAGE}
Without --log-key the previous bundle's log policy is kept; --drop-log-policy removes it.
--sign takes a key file, a "pkcs11:..." URI or an "exec:CMD" signer (SPEC.md §15.1); each exec:
signer takes the next --sign-pub KEY.pub, in order.

Examples:
  fwseal trust rotate --previous trust.cbor --root A.pub --root B.pub --root D.pub --root-threshold 2 --release R1.pub \\
    --release-threshold 1 --sign A.key --sign B.key --sign D.key --out trust2.cbor`,
  options: { ...ROLE_FLAGS, previous: { type: 'string' }, 'drop-log-policy': { type: 'boolean' } },
  run: (p, io) => runTrust(p, io, true),
};

export const revoke: Command = {
  name: 'revoke',
  summary: 'create a signed revocation list (keys and/or manifests)',
  usage: `fwseal revoke --trust trust.cbor --version N --sign A.key [--sign B.key ...] --out RL.cbor
    [--key R2.pub ...] [--kid HEX ...] [--manifest M.cose ...] [--previous OLD.cbor] [--json]
    [--publish [--server URL]]

Revoked keys never count toward a threshold; revoked manifests are refused. Devices keep the
highest version they have seen and refuse older lists. --previous carries an older list's entries
forward (the new --version must be higher). --publish then uploads RL.cbor to an OTA server, as
'fwseal trust publish RL.cbor' does: the fleet gets it at once, campaigns it revokes are halted.
--sign takes a key file, a "pkcs11:..." URI or an "exec:CMD" signer (SPEC.md §15.1); each exec:
signer takes the next --sign-pub KEY.pub, in order.
${SERVER_USAGE}

Examples:
  fwseal revoke --trust trust.cbor --version 1 --key R2.pub --sign A.key --sign B.key --out RL.cbor
  fwseal revoke --trust trust.cbor --version 2 --previous RL.cbor --manifest M.cose --sign A.key --sign B.key --out RL2.cbor --publish`,
  options: {
    trust: { type: 'string' },
    version: { type: 'string' },
    sign: { type: 'string', multiple: true },
    'sign-pub': { type: 'string', multiple: true },
    out: { type: 'string' },
    key: { type: 'string', multiple: true },
    kid: { type: 'string', multiple: true },
    manifest: { type: 'string', multiple: true },
    previous: { type: 'string' },
    json: { type: 'boolean' },
    publish: { type: 'boolean' },
    ...SERVER_FLAGS,
  },
  async run(p, io) {
    noPositionals(p);
    const out = str(p, 'out', true);
    const version = int(p, 'version', 1, LIMITS.maxCounter);
    const trust = loadTrust(readObjectFile(str(p, 'trust', true), 'trust-bundle'));
    if (!trust.ok) throw FwsealError.from(trust, '--trust');
    const keys = list(p, 'key').map(loadPublicKeyFile);
    const manifests = list(p, 'manifest').map((m) => readObjectFile(m, 'manifest'));
    const previousPath = str(p, 'previous');
    const previous = previousPath ? readObjectFile(previousPath, 'revocation-list') : undefined;
    const refs = rootSigners(p);
    if (p.values.server !== undefined && !p.values.publish) throw new FwsealError('USAGE', '--server goes with --publish');
    const signers = openSigners(refs);
    const r = buildRevocationList({
      trust: trust.trust,
      version,
      keys,
      keyIdsHex: list(p, 'kid'),
      manifestEnvelopes: manifests,
      signers,
      ...(previous ? { previous } : {}),
    });
    writeFileAtomic(out, r.envelope);
    auditSigned(io, 'revoke', r.envelope, 'revocation-list', signers, out, r.complete);
    if (!r.complete) io.stderr(`note: not yet accepted by devices (${r.error}). Add root signatures with: fwseal sign ${out} --key ROOT.key\n`);
    if (!p.values.json) io.stdout(`wrote ${out} (revocation list version ${version})\n`);
    const published = p.values.publish ? await publishRoot(target(p), r.envelope) : undefined;
    if (published) io.audit?.({ action: 'trust publish', kind: 'revocation-list', file: out, result: published.changed ? 'ok' : 'unchanged' });
    if (p.values.json) json(io, { out, version, complete: r.complete, revokedKeyIds: keys.map((k) => toHex(k.keyId)), ...(published ? { published } : {}) });
    else if (published) io.stdout(formatPublished(published));
    return 0;
  },
};
