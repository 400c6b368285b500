/**
 * `fwseal trust verify --previous v1 v2 [v3 ...]`: a rotation chain checked exactly as a device
 * checks it (SPEC.md §15.7): v1 loaded as at provisioning (loadTrust, §6.1 T1–T4), then each next
 * bundle as an update of the one before (verifyTrustUpdate, T5–T7), with the stored revocation list
 * when one is given. As the update agent does (§11.3), the stored list must still verify (R1–R4)
 * under each new bundle, or the device refuses the update.
 */
import { createVerifier, type VerifiedRevocations, type VerifiedTrust } from '../../device/index.js';
import { bytesEqual, toHex } from '../../shared/bytes.js';
import { type Failure, ok, type Result } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { parseTrustBundle } from '../../shared/trust.js';
import { FwsealError } from '../errors.js';
import { nodeSha256 } from '../hash.js';
import { type Command, type Io, json, type Parsed, readObjectFile, str } from './common.js';

const verifier = createVerifier({ sha256: nodeSha256 });

type RoleKids = { readonly root: readonly Uint8Array[]; readonly release: readonly Uint8Array[] };
type RoleChange = { readonly root: string[]; readonly release: string[] };

export type ChainStep = {
  readonly file: string;
  /** The version the file declares (null when its payload is not a trust bundle). */
  readonly version: number | null;
  readonly added: RoleChange;
  readonly removed: RoleChange;
  readonly ok: boolean;
  readonly code: number;
  readonly error: string;
  readonly detail?: string;
  /** Accepted as the very bundle the device holds already (T5: the same version only for the identical bundle): nothing changes. */
  readonly identical?: true;
};

/** The role key ids a bundle lists, read with the verifier's parsers (null when it does not parse). */
function roleKids(bytes: Uint8Array): (RoleKids & { version: number }) | null {
  const env = parseEnvelope(bytes);
  const t = env.ok ? parseTrustBundle(env.envelope.payload) : null;
  if (!t?.ok) return null;
  const kids = (keys: readonly Uint8Array[]) => keys.map((k) => verifier.keyId(k));
  return { version: t.value.version, root: kids(t.value.root.keys), release: kids(t.value.release.keys) };
}

function change(from: RoleKids | null, to: RoleKids | null): { added: RoleChange; removed: RoleChange } {
  const diff = (a: readonly Uint8Array[], b: readonly Uint8Array[]) => a.filter((k) => !b.some((x) => bytesEqual(x, k))).map(toHex);
  const none = { root: [], release: [] };
  if (to === null) return { added: none, removed: none };
  const before = from ?? { root: [], release: [] };
  return {
    added: { root: diff(to.root, before.root), release: diff(to.release, before.release) },
    removed: { root: diff(before.root, to.root), release: diff(before.release, to.release) },
  };
}

function step(file: string, bytes: Uint8Array, from: RoleKids | null, r: Result<object>): ChainStep {
  const to = roleKids(bytes);
  const base = { file, version: to?.version ?? null, ...change(from, to) };
  if (r.ok) return { ...base, ok: true, code: 0, error: 'OK' };
  const f = r as Failure;
  return { ...base, ok: false, code: f.code, error: f.error, ...(f.detail ? { detail: f.detail } : {}) };
}

/** One update as the agent runs it (§11.3): T1–T7, then the kept list re-verified under the new bundle. */
function update(
  candidate: Uint8Array,
  current: VerifiedTrust,
  stored: { bytes: Uint8Array; list: VerifiedRevocations } | undefined,
): Result<{ trust: VerifiedTrust; list?: VerifiedRevocations }> {
  const next = verifier.verifyTrustUpdate(candidate, current, stored?.list);
  if (!next.ok || stored === undefined) return next;
  const kept = verifier.verifyRevocations(stored.bytes, next.trust, stored.list.list.version);
  if (!kept.ok) return { ...kept, detail: `the stored revocation list does not verify under the new bundle (${kept.detail ?? kept.error})` };
  return ok({ trust: next.trust, list: kept.revocations });
}

/** The whole chain; stops at the first refusal. */
export function verifyChain(
  first: { file: string; bytes: Uint8Array },
  next: readonly { file: string; bytes: Uint8Array }[],
  revocations?: Uint8Array,
): ChainStep[] {
  const loaded = verifier.loadTrust(first.bytes); // T1–T4: the provisioning check
  const steps = [step(first.file, first.bytes, null, loaded)];
  if (!loaded.ok) return steps;
  let current = loaded.trust;
  let stored: { bytes: Uint8Array; list: VerifiedRevocations } | undefined;
  if (revocations !== undefined) {
    const r = verifier.verifyRevocations(revocations, current); // R1–R5 against the bundle held at provisioning
    if (!r.ok) return [step(first.file, first.bytes, null, { ...r, detail: `--revocations: ${r.detail ?? r.error}` })];
    stored = { bytes: revocations, list: r.revocations };
  }
  for (const n of next) {
    const r = update(n.bytes, current, stored);
    const s = step(n.file, n.bytes, kidsOf(current), r);
    if (!r.ok) {
      steps.push(s);
      break;
    }
    steps.push(bytesEqual(r.trust.digest, current.digest) ? { ...s, identical: true } : s);
    current = r.trust;
    if (stored && r.list) stored = { bytes: stored.bytes, list: r.list };
  }
  return steps;
}

function kidsOf(t: VerifiedTrust): RoleKids {
  return { root: t.root.kids, release: t.release.kids };
}

function roleText(c: RoleChange, sign: string): string[] {
  return (['root', 'release'] as const).flatMap((role) => c[role].map((kid) => `${sign}${role} ${kid}`));
}

function stepLine(s: ChainStep, index: number): string {
  const what = index === 0 ? 'provisioning (T1-T4)' : 'update (T5-T7)';
  const changes = index === 0 ? [] : [...roleText(s.added, '+'), ...roleText(s.removed, '-')];
  const same = s.identical ? ' (the bundle the device holds already: nothing changes)' : '';
  const verdict = s.ok ? `ACCEPTED${same}` : `REJECTED ${s.error} (code ${s.code})${s.detail ? `: ${s.detail}` : ''}`;
  const keys = index === 0 ? '' : changes.length === 0 ? '; keys unchanged' : `; ${changes.join(', ')}`;
  return `${s.file}: version ${s.version ?? '?'}, ${what}${keys}: ${verdict}\n`;
}

export const trustVerify: Command = {
  name: 'trust verify',
  summary: 'check a chain of trust bundle rotations exactly as a device would',
  usage: `fwseal trust verify --previous trust-v1.cbor trust-v2.cbor [trust-v3.cbor ...] [--revocations RL.cbor] [--json]

Loads --previous as a device does at provisioning (SPEC.md §6.1 T1-T4), then checks each next bundle
as a device checks an update of the one before (T5-T7: version N+1, signed by a threshold of the
current root keys and of its own). --revocations is the list the device stores (verified against
--previous): root keys it revokes count for no threshold, and, as on a device, it must still verify
under each new bundle. Prints one line per bundle: version, key ids added (+) and removed (-) per
role, verdict. Stops at the first refusal with the verifier's code.
Exit status: 0 the whole chain is accepted, 1 a bundle is refused, 2 usage or I/O error.

Examples:
  fwseal trust verify --previous trust.cbor trust2.cbor
  fwseal trust verify --previous trust.cbor trust2.cbor trust3.cbor --revocations RL.cbor --json`,
  options: { previous: { type: 'string' }, revocations: { type: 'string' }, json: { type: 'boolean' } },
  run(p: Parsed, io: Io) {
    const firstPath = str(p, 'previous', true);
    if (p.positionals.length === 0) throw new FwsealError('USAGE', 'expected the bundles that follow --previous, in order (trust-v2.cbor ...)');
    // Every file is read (and recognised) before any verdict is printed.
    const first = { file: firstPath, bytes: readObjectFile(firstPath, 'trust-bundle') };
    const next = p.positionals.map((file) => ({ file, bytes: readObjectFile(file, 'trust-bundle') }));
    const rlPath = str(p, 'revocations');
    const steps = verifyChain(first, next, rlPath === undefined ? undefined : readObjectFile(rlPath, 'revocation-list'));
    const last = steps.at(-1)!;
    const accepted = last.ok && steps.length === next.length + 1;
    if (p.values.json) {
      const verdict = accepted
        ? { ok: true, code: 0, error: 'OK' }
        : { ok: false, code: last.code, error: last.error, ...(last.detail ? { detail: last.detail } : {}) };
      json(io, { ...verdict, ...(accepted ? { trustVersion: last.version } : { refused: last.file }), steps });
    } else {
      io.stdout(steps.map(stepLine).join(''));
      io.stdout(
        accepted
          ? `ACCEPTED chain of ${steps.length} bundles, version ${steps[0].version} to ${last.version}\n`
          : `REJECTED at ${last.file}: ${last.error} (code ${last.code})\n`,
      );
    }
    return accepted ? 0 : 1;
  },
};
