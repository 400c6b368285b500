/**
 * The status of a signing ceremony (SPEC.md §15.7): for each threshold that decides whether devices
 * accept a manifest, trust bundle or revocation list, which role keys have signed, which are
 * missing or revoked, which signatures in the file do not count, and how many are still needed.
 *
 * This explains, it never decides: the per-key table is computed with the verifier's own parsers and
 * Ed25519 (verifyEd25519 over the Sig_structure), and `acceptedByDevices` is the verdict of the device
 * verifier itself, called as `fwseal verify` calls it (host/verify.ts, host/commands/verify-trust.ts).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseRevocationList, parseTrustBundle, type VerifiedRevocations, type VerifiedTrust } from '../device/index.js';
import { bytesEqual, toHex } from '../shared/bytes.js';
import { type Failure, type Result } from '../shared/codes.js';
import { type CoseSignature, parseEnvelope, sigStructure } from '../shared/cose.js';
import { parseManifest } from '../shared/manifest.js';
import { FwsealError } from './errors.js';
import { hostVerifier } from './hash.js';
import { type ObjectKind, payloadKind } from './inspect.js';
import { loadPublicKey } from './keys.js';
import { verifyFiles } from './verify.js';

/** The host's one verifier (host/hash.ts): OpenSSL's Ed25519 where it decides as the policy does, and a memo. */
const verifier = hostVerifier;

export type KeyState = 'signed' | 'missing' | 'revoked';
export type RoleKeyStatus = { readonly keyId: string; readonly name?: string; readonly state: KeyState };
/** Whose role: the --trust bundle's, the inspected bundle's own, or the bundle it replaces. */
export type RoleOwner = 'trust' | 'self' | 'previous';
/** The verifier step that counts this threshold (SPEC.md §6). */
export type ThresholdStep = 'V6' | 'R3' | 'T4' | 'T6' | 'T7';

export type ThresholdStatus = {
  readonly role: 'root' | 'release';
  readonly of: RoleOwner;
  readonly bundleVersion: number;
  readonly step: ThresholdStep;
  readonly keys: readonly RoleKeyStatus[];
  readonly threshold: number;
  readonly valid: number;
  readonly stillNeeded: number;
};

export type NotCountedReason = 'invalid' | 'outside-role' | 'duplicate';
export type NotCounted = {
  readonly keyId: string;
  readonly name?: string;
  readonly reason: NotCountedReason;
  /** outside-role only: the role of the trust bundle(s) that lists the key, or null when none does. */
  readonly listedIn?: { readonly role: 'root' | 'release'; readonly of: RoleOwner; readonly bundleVersion: number } | null;
};

export type Verdict = { readonly ok: boolean; readonly code: number; readonly error: string; readonly detail?: string };

export type Ceremony = {
  readonly object: ObjectKind;
  readonly thresholds: readonly ThresholdStatus[];
  readonly notCounted: readonly NotCounted[];
  /** Every threshold above is met. */
  readonly complete: boolean;
  /** The device verifier's verdict on the file (signatures and every other check it runs). */
  readonly acceptedByDevices: Verdict;
};

export type CeremonyInput = {
  readonly envelope: Uint8Array;
  /** --trust: for a manifest or revocation list, the bundle devices hold; for a trust bundle, the one it replaces or itself. */
  readonly trust?: Uint8Array;
  /** --previous: for a trust bundle of version N > 1, the bundle of version N − 1. */
  readonly previous?: Uint8Array;
  /** --revocations: the list devices store (verified against the bundle they hold, §6.2). */
  readonly revocations?: Uint8Array;
  /** Hex key id -> name, from .pub files. */
  readonly names?: ReadonlyMap<string, string>;
};

type Role = {
  readonly role: 'root' | 'release';
  readonly of: RoleOwner;
  readonly bundleVersion: number;
  readonly threshold: number;
  readonly keys: readonly Uint8Array[];
  readonly kids: readonly Uint8Array[];
};
type Counting = { readonly role: Role; readonly step: ThresholdStep; readonly revoked: readonly Uint8Array[] };
type Plan = { readonly counting: readonly Counting[]; readonly others: readonly Role[]; readonly verdict: Result<object> };

const hasKid = (kids: readonly Uint8Array[], kid: Uint8Array) => kids.some((k) => bytesEqual(k, kid));

function roleOf(trust: VerifiedTrust, role: 'root' | 'release', of: RoleOwner): Role {
  const r = trust[role];
  return { role, of, bundleVersion: trust.bundle.version, threshold: r.threshold, keys: r.keys, kids: r.kids };
}

function mustLoad(bytes: Uint8Array, what: string): VerifiedTrust {
  const t = verifier.loadTrust(bytes); // T1–T4: a bundle a device holds carries its own root threshold
  if (!t.ok) throw FwsealError.from(t, what);
  return t.trust;
}

/** The stored list, verified (R1–R4) against the bundle devices hold, as `fwseal verify` does; fail closed. */
function storedList(revocations: Uint8Array | undefined, trust: VerifiedTrust): VerifiedRevocations | undefined {
  if (revocations === undefined) return undefined;
  const r = verifier.verifyRevocations(revocations, trust);
  if (!r.ok) throw FwsealError.from(r, '--revocations');
  return r.revocations;
}

function manifestPlan(input: CeremonyInput, payload: Uint8Array): Plan {
  if (input.trust === undefined) throw new FwsealError('USAGE', 'a manifest needs --trust (the bundle whose release role signs it)');
  if (input.previous !== undefined) throw new FwsealError('USAGE', '--previous applies to trust bundles');
  const trust = mustLoad(input.trust, '--trust');
  const stored = storedList(input.revocations, trust);
  const m = parseManifest(payload);
  // Checked as `fwseal verify` checks without --device-class/--counter: the manifest's own class, counter 0.
  const state = { deviceClass: m.ok ? m.value.deviceClass : '-', counter: 0, ...(input.revocations ? { revocations: input.revocations } : {}) };
  return {
    counting: [{ role: roleOf(trust, 'release', 'trust'), step: 'V6', revoked: stored?.list.keyIds ?? [] }],
    others: [roleOf(trust, 'root', 'trust')],
    verdict: verifyFiles({ envelope: input.envelope, trust: input.trust, state }).result,
  };
}

function revocationPlan(input: CeremonyInput, payload: Uint8Array): Plan {
  if (input.trust === undefined) throw new FwsealError('USAGE', 'a revocation list needs --trust (the bundle whose root role signs it)');
  if (input.previous !== undefined) throw new FwsealError('USAGE', '--previous applies to trust bundles');
  const trust = mustLoad(input.trust, '--trust');
  const stored = storedList(input.revocations, trust);
  const list = parseRevocationList(payload);
  // R3: root keys revoked by this list or by the stored one do not count.
  const revoked = [...(list.ok ? list.value.keyIds : []), ...(stored?.list.keyIds ?? [])];
  return {
    counting: [{ role: roleOf(trust, 'root', 'trust'), step: 'R3', revoked }],
    others: [roleOf(trust, 'release', 'trust')],
    verdict: verifier.verifyRevocations(input.envelope, trust, 0, stored),
  };
}

/** The bundle a trust bundle of `version` replaces, from --previous or --trust (SPEC.md §14 H3); null for version 1. */
function replacedBundle(input: CeremonyInput, payload: Uint8Array, version: number): VerifiedTrust | null {
  const isSelf = (bytes: Uint8Array) => {
    const env = parseEnvelope(bytes);
    return env.ok && bytesEqual(env.envelope.payload, payload);
  };
  const given = [
    ...(input.previous !== undefined ? [{ flag: '--previous', bytes: input.previous }] : []),
    ...(input.trust !== undefined && !isSelf(input.trust) ? [{ flag: '--trust', bytes: input.trust }] : []),
  ];
  if (version === 1) {
    if (given.length > 0)
      throw new FwsealError('USAGE', `a version-1 trust bundle replaces nothing: ${given[0].flag} must be left out (or be the bundle itself)`);
    return null;
  }
  if (given.length === 0)
    throw new FwsealError(
      'USAGE',
      `trust bundle version ${version} is a rotation: give the bundle it replaces (version ${version - 1}) as --trust or --previous`,
    );
  const loaded = given.map((g) => ({ ...g, trust: mustLoad(g.bytes, g.flag) }));
  for (const g of loaded) {
    if (g.trust.bundle.version !== version - 1)
      throw new FwsealError('USAGE', `${g.flag} is trust bundle version ${g.trust.bundle.version}; version ${version} replaces version ${version - 1}`);
  }
  if (loaded.length === 2 && !bytesEqual(loaded[0].trust.digest, loaded[1].trust.digest))
    throw new FwsealError('USAGE', '--trust and --previous name two different bundles of the version this one replaces');
  return loaded[0].trust;
}

function trustPlan(input: CeremonyInput, payload: Uint8Array): Plan {
  const parsed = parseTrustBundle(payload);
  if (!parsed.ok) throw FwsealError.from(parsed, 'trust bundle payload');
  const own = parsed.value;
  const previous = replacedBundle(input, payload, own.version);
  const ownRole = (role: 'root' | 'release'): Role => ({
    role,
    of: 'self',
    bundleVersion: own.version,
    threshold: own[role].threshold,
    keys: own[role].keys,
    kids: own[role].keys.map((k) => verifier.keyId(k)),
  });
  if (previous === null) {
    // T4: the provisioning check; revocations never apply to it (SPEC.md §6.1).
    if (input.revocations !== undefined) throw new FwsealError('USAGE', '--revocations applies to rotations (version 2 and up): T4 ignores revocations');
    return { counting: [{ role: ownRole('root'), step: 'T4', revoked: [] }], others: [ownRole('release')], verdict: verifier.loadTrust(input.envelope) };
  }
  const stored = storedList(input.revocations, previous);
  const revoked = stored?.list.keyIds ?? [];
  return {
    counting: [
      { role: roleOf(previous, 'root', 'previous'), step: 'T6', revoked },
      // T7 is T4 without the keys the stored list revokes: with no list it is T4.
      { role: ownRole('root'), step: stored ? 'T7' : 'T4', revoked },
    ],
    others: [ownRole('release'), roleOf(previous, 'release', 'previous')],
    verdict: verifier.verifyTrustUpdate(input.envelope, previous, stored),
  };
}

/** The public key a kid names in the counting roles, or null when no counting role lists it. */
function countingKey(counting: readonly Counting[], kid: Uint8Array): Uint8Array | null {
  for (const c of counting) {
    const i = c.role.kids.findIndex((k) => bytesEqual(k, kid));
    if (i >= 0) return c.role.keys[i];
  }
  return null;
}

function withName(kid: Uint8Array, names: ReadonlyMap<string, string> | undefined): { keyId: string; name?: string } {
  const keyId = toHex(kid);
  const name = names?.get(keyId);
  return name === undefined ? { keyId } : { keyId, name };
}

/** Whether each signature verifies with the counting role key its kid names (null: no counting role lists it). */
function signatureValidity(signatures: readonly CoseSignature[], message: Uint8Array, counting: readonly Counting[]): (boolean | null)[] {
  return signatures.map((s) => {
    const key = countingKey(counting, s.kid);
    return key === null ? null : verifier.verifyEd25519(s.signature, message, key);
  });
}

function thresholdStatus(
  c: Counting,
  signatures: readonly CoseSignature[],
  valid: readonly (boolean | null)[],
  names?: ReadonlyMap<string, string>,
): ThresholdStatus {
  const keys = c.role.kids.map((kid): RoleKeyStatus => {
    const signed = signatures.some((s, j) => valid[j] === true && bytesEqual(s.kid, kid));
    return { ...withName(kid, names), state: hasKid(c.revoked, kid) ? 'revoked' : signed ? 'signed' : 'missing' };
  });
  const count = keys.filter((k) => k.state === 'signed').length;
  return {
    role: c.role.role,
    of: c.role.of,
    bundleVersion: c.role.bundleVersion,
    step: c.step,
    keys,
    threshold: c.role.threshold,
    valid: count,
    stillNeeded: Math.max(0, c.role.threshold - count),
  };
}

/** Signatures that count toward no threshold, in file order, with one reason each (as the device counts: the first valid one per kid). */
function notCounted(plan: Plan, signatures: readonly CoseSignature[], valid: readonly (boolean | null)[], names?: ReadonlyMap<string, string>): NotCounted[] {
  const out: NotCounted[] = [];
  const counted: Uint8Array[] = [];
  signatures.forEach((s, j) => {
    if (valid[j] === null) {
      const other = plan.others.find((r) => hasKid(r.kids, s.kid));
      const listedIn = other ? { role: other.role, of: other.of, bundleVersion: other.bundleVersion } : null;
      out.push({ ...withName(s.kid, names), reason: 'outside-role', listedIn });
    } else if (hasKid(counted, s.kid)) out.push({ ...withName(s.kid, names), reason: 'duplicate' });
    else if (valid[j] === false) out.push({ ...withName(s.kid, names), reason: 'invalid' });
    else counted.push(s.kid);
  });
  return out;
}

function verdictOf(r: Result<object>): Verdict {
  if (r.ok) return { ok: true, code: 0, error: 'OK' };
  const f = r as Failure;
  return { ok: false, code: f.code, error: f.error, ...(f.detail ? { detail: f.detail } : {}) };
}

/** SPEC.md §15.7: the ceremony status of a manifest, trust bundle or revocation list. */
export function ceremonyStatus(input: CeremonyInput): Ceremony {
  const env = parseEnvelope(input.envelope);
  if (!env.ok) throw FwsealError.from(env, 'not a valid fwseal envelope');
  const { payload, signatures } = env.envelope;
  const object = payloadKind(payload);
  if (object === null) throw new FwsealError('WRONG_KIND', 'not an fwseal manifest, trust bundle or revocation list');
  const plan = object === 'manifest' ? manifestPlan(input, payload) : object === 'revocation-list' ? revocationPlan(input, payload) : trustPlan(input, payload);
  const valid = signatureValidity(signatures, sigStructure(payload), plan.counting);
  const thresholds = plan.counting.map((c) => thresholdStatus(c, signatures, valid, input.names));
  return {
    object,
    thresholds,
    notCounted: notCounted(plan, signatures, valid, input.names),
    complete: thresholds.every((t) => t.stillNeeded === 0),
    acceptedByDevices: verdictOf(plan.verdict),
  };
}

/** Key names by hex key id, from .pub files (`--pub`) and every *.pub in a folder (`--keys`); the first name given wins. */
export function keyNames(pubPaths: readonly string[], dir?: string): Map<string, string> {
  const paths = [...pubPaths];
  if (dir !== undefined) {
    let entries: string[];
    try {
      entries = readdirSync(dir);
    } catch (e) {
      throw new FwsealError('IO', `cannot list --keys ${dir}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    for (const f of entries.filter((n) => n.endsWith('.pub')).sort()) paths.push(join(dir, f));
  }
  const names = new Map<string, string>();
  for (const p of paths) {
    const k = loadPublicKey(p);
    const id = toHex(k.keyId);
    if (!names.has(id)) names.set(id, k.name);
  }
  return names;
}

const OWNER_TEXT: Readonly<Record<RoleOwner, string>> = Object.freeze({ trust: '--trust', self: 'this bundle', previous: 'the bundle it replaces' });
const REASON_TEXT: Readonly<Record<NotCountedReason, string>> = Object.freeze({
  invalid: 'does not verify with the role key of that id',
  'outside-role': 'in no role that counts here',
  duplicate: 'a second signature by a key already counted',
});

function keyLabel(k: { keyId: string; name?: string }, width: number): string {
  return `${(k.name ?? '-').padEnd(width)}  ${k.keyId}`;
}

/** The ceremony as a readable table (the same data as --json). */
export function renderCeremony(c: Ceremony): string {
  const width = Math.max(1, ...[...c.thresholds.flatMap((t) => t.keys), ...c.notCounted].map((k) => (k.name ?? '-').length));
  const lines = ['ceremony:'];
  for (const t of c.thresholds) {
    const need = t.stillNeeded === 0 ? 'met' : `${t.stillNeeded} still needed`;
    lines.push(`  ${t.role} role of ${OWNER_TEXT[t.of]} (trust bundle version ${t.bundleVersion}, ${t.step}): ${t.valid} of ${t.threshold} signed, ${need}`);
    for (const k of t.keys) lines.push(`    ${k.state.padEnd(8)} ${keyLabel(k, width)}`);
  }
  if (c.notCounted.length > 0) {
    lines.push('  signatures that do not count:');
    for (const n of c.notCounted) {
      const why =
        n.reason === 'outside-role'
          ? n.listedIn
            ? `a ${n.listedIn.role} key of ${OWNER_TEXT[n.listedIn.of]} (version ${n.listedIn.bundleVersion}), not a counting role`
            : 'a key in no role of the trust bundle(s)'
          : REASON_TEXT[n.reason];
      lines.push(`    ${n.reason.padEnd(12)} ${keyLabel(n, width)}: ${why}`);
    }
  }
  const missing = c.thresholds.reduce((sum, t) => sum + t.stillNeeded, 0);
  lines.push(`  complete: ${c.complete ? 'yes' : `no (${missing} signature(s) still needed)`}`);
  const v = c.acceptedByDevices;
  lines.push(`  accepted by devices: ${v.ok ? 'yes' : `no: ${v.error} (code ${v.code})${v.detail ? `: ${v.detail}` : ''}`}`);
  return `${lines.join('\n')}\n`;
}
