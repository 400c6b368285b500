/**
 * The log monitor (issue 19 item 4): from the last checkpoint it saw, prove the log consistent
 * (RFC 9162 §2.1.4), read every new entry (each checked against its leaf hash, the leaves against the
 * signed root), and list what each key signed. Findings are what the owner must look at: a signature
 * by a key the trust bundle does not list for that kind of object (KEY_NOT_IN_TRUST), by a revoked
 * key (REVOKED_KEY), a release for a device class not expected (WRONG_DEVICE_CLASS), an entry that
 * is no fwseal object (MALFORMED).
 */
import { bytesEqual, toHex } from '../../shared/bytes.js';
import { CODES } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { parseManifest } from '../../shared/manifest.js';
import { constantTimeEqual, merkleRoot } from '../../shared/merkle.js';
import { FwsealError } from '../errors.js';
import { hostVerifier, nodeSha256 } from '../hash.js';
import { payloadKind } from '../inspect.js';
import { newestCheckpoint, openCheckpoint, proveConsistency, verifyConsistencyBundle } from './log.js';
import { type NoteKey } from './note.js';
import { readConfig, readEntry, readIndex } from './store.js';

export type MonitorEntry = {
  readonly index: number;
  readonly kind: string;
  readonly signers: readonly string[];
  readonly deviceClass?: string;
  readonly version?: string;
};
export type FindingCode = 'KEY_NOT_IN_TRUST' | 'REVOKED_KEY' | 'WRONG_DEVICE_CLASS' | 'MALFORMED';
export type Finding = { readonly index: number; readonly error: FindingCode; readonly code: number; readonly keyId?: string; readonly deviceClass?: string };
export type MonitorReport = {
  readonly origin: string;
  readonly fromSize: number;
  readonly toSize: number;
  readonly checkpoint: string;
  readonly entries: readonly MonitorEntry[];
  readonly byKey: Readonly<Record<string, readonly number[]>>;
  readonly findings: readonly Finding[];
};
export type MonitorOptions = {
  readonly trust: Uint8Array;
  readonly revocations?: Uint8Array;
  /** The checkpoint note seen last; absent: from the first entry. */
  readonly since?: string;
  /** Device classes releases may be for; empty: any. */
  readonly deviceClasses: readonly string[];
  /** The log key as the owner pinned it; absent: the log's own log.json. */
  readonly logKey?: NoteKey;
};

/** The host's one verifier (host/hash.ts): OpenSSL's Ed25519 where it decides as the policy does, and a memo. */
const verifier = hostVerifier;

export type Policy = { release: readonly Uint8Array[]; root: readonly Uint8Array[]; revoked: readonly Uint8Array[]; deviceClasses: readonly string[] };

export function policyOf(opts: MonitorOptions): Policy {
  const loaded = verifier.loadTrust(opts.trust);
  if (!loaded.ok) throw FwsealError.from(loaded, 'trust bundle');
  let revoked: readonly Uint8Array[] = [];
  if (opts.revocations) {
    const rl = verifier.verifyRevocations(opts.revocations, loaded.trust);
    if (!rl.ok) throw FwsealError.from(rl, 'revocation list');
    revoked = rl.revocations.list.keyIds;
  }
  return { release: loaded.trust.release.kids, root: loaded.trust.root.kids, revoked, deviceClasses: opts.deviceClasses };
}

const finding = (index: number, error: FindingCode, extra: { keyId?: string; deviceClass?: string } = {}): Finding => ({
  index,
  error,
  code: CODES[error],
  ...extra,
});

/** One entry: what it is, who signed it, and what about it the owner did not expect. */
function examine(index: number, obj: Uint8Array, policy: Policy, findings: Finding[]): MonitorEntry {
  const env = parseEnvelope(obj);
  const kind = env.ok ? payloadKind(env.envelope.payload) : null;
  if (!env.ok || kind === null) {
    findings.push(finding(index, 'MALFORMED'));
    return { index, kind: 'unknown', signers: [] };
  }
  // Manifests count release keys; trust bundles and revocation lists root keys (SPEC.md §6.1–§6.3).
  const expected = kind === 'manifest' ? policy.release : policy.root;
  const signers = env.envelope.signatures.map((s) => toHex(s.kid));
  for (const s of env.envelope.signatures) {
    const keyId = toHex(s.kid);
    if (!expected.some((k) => bytesEqual(k, s.kid))) findings.push(finding(index, 'KEY_NOT_IN_TRUST', { keyId }));
    if (policy.revoked.some((k) => bytesEqual(k, s.kid))) findings.push(finding(index, 'REVOKED_KEY', { keyId }));
  }
  if (kind !== 'manifest') return { index, kind, signers };
  const m = parseManifest(env.envelope.payload);
  if (!m.ok) {
    findings.push(finding(index, 'MALFORMED'));
    return { index, kind, signers };
  }
  const { deviceClass, version } = m.value;
  if (policy.deviceClasses.length > 0 && !policy.deviceClasses.includes(deviceClass)) findings.push(finding(index, 'WRONG_DEVICE_CLASS', { deviceClass }));
  return { index, kind, signers, deviceClass, version };
}

/** Monitor the log in `dir` from `opts.since` to its newest signed checkpoint. */
export function monitorLog(dir: string, opts: MonitorOptions): MonitorReport {
  const cfg = readConfig(dir);
  const logKey = opts.logKey ?? cfg.logKey;
  const policy = policyOf(opts);
  const newest = newestCheckpoint(dir, { ...cfg, logKey });
  if (!newest) throw new FwsealError('NOT_FOUND', 'the log has no signed checkpoint yet');
  const to = newest.checkpoint;
  let fromSize = 0;
  if (opts.since !== undefined) {
    const old = openCheckpoint(opts.since, logKey).checkpoint;
    // Proven here, then checked as any client would: the log's word is not taken for it.
    verifyConsistencyBundle(JSON.parse(JSON.stringify(proveConsistency(dir, old))), old, logKey);
    fromSize = old.size;
  }
  const view = readIndex(dir);
  if (view.size < to.size || !constantTimeEqual(merkleRoot(nodeSha256, view.leaves.slice(0, to.size)), to.root))
    throw new FwsealError('LOG_INVALID', `the log's entries do not give the root of its checkpoint of size ${to.size}`);
  const examined = examineRange(fromSize, to.size, (i) => readEntry(dir, view, i), policy);
  return { origin: cfg.origin, fromSize, toSize: to.size, checkpoint: newest.note, ...examined };
}

/** Entries from..to-1 (from a folder or a served log, host/tlog/remote.ts): each examined, and listed per signing key. */
export function examineRange(
  from: number,
  to: number,
  objectAt: (i: number) => Uint8Array,
  policy: Policy,
): Pick<MonitorReport, 'entries' | 'byKey' | 'findings'> {
  const findings: Finding[] = [];
  const entries: MonitorEntry[] = [];
  const byKey = new Map<string, number[]>();
  for (let i = from; i < to; i++) {
    const e = examine(i, objectAt(i), policy, findings);
    entries.push(e);
    for (const k of new Set(e.signers)) {
      const list = byKey.get(k);
      if (list) list.push(i);
      else byKey.set(k, [i]);
    }
  }
  return { entries, byKey: Object.fromEntries(byKey), findings };
}
