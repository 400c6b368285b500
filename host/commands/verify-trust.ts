/**
 * `fwseal verify` of a revocation list or a trust bundle: the checks a device runs before it stores
 * one (SPEC.md §6.1 T1–T7, §6.2 R1–R5, §11.3), with the device's own verifier (`hostVerifier`:
 * node:crypto hashing, OpenSSL's Ed25519 where it decides as the policy does). `--trust` is the
 * device's current bundle, `--revocations` the list it stores (and `--revocation-version` the
 * highest it has seen): with them, the rules that make revocation monotonic apply exactly as on a
 * device.
 */

import { type VerifiedRevocations, type VerifiedTrust } from '../../device/index.js';
import { toHex } from '../../shared/bytes.js';
import { type Failure, type Result } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { FwsealError } from '../errors.js';
import { hostVerifier } from '../hash.js';
import { type Io, int, json, type Parsed, readObjectFile, str } from './common.js';

function must<T extends object>(r: Result<T>, what: string): T | Failure {
  return r.ok ? r : { ...r, detail: `${what}: ${r.detail ?? r.error}` };
}

/** The device's current bundle and stored list, verified as the device verifies them before use. */
function deviceSide(p: Parsed, trustPath: string): { trust: VerifiedTrust; stored?: VerifiedRevocations; minVersion: number } | Failure {
  const t = must(hostVerifier.loadTrust(readObjectFile(trustPath, 'trust-bundle')), `--trust ${trustPath}`);
  if (!('trust' in t)) return t;
  const minVersion = p.values['revocation-version'] === undefined ? 0 : int(p, 'revocation-version', 0, LIMITS.maxCounter);
  const rlPath = str(p, 'revocations');
  if (!rlPath) return { trust: t.trust, minVersion };
  const s = must(hostVerifier.verifyRevocations(readObjectFile(rlPath, 'revocation-list'), t.trust, minVersion), `the stored list --revocations ${rlPath}`);
  if (!('revocations' in s)) return s;
  return { trust: t.trust, stored: s.revocations, minVersion };
}

function report(io: Io, p: Parsed, r: Result<object>, accepted: () => { text: string; fields: Record<string, unknown> }): number {
  if (p.values.json) {
    json(
      io,
      r.ok ? { ok: true, code: 0, error: 'OK', ...accepted().fields } : { ok: false, code: r.code, error: r.error, ...(r.detail ? { detail: r.detail } : {}) },
    );
  } else {
    io.stdout(r.ok ? `ACCEPTED ${accepted().text}\n` : `REJECTED ${r.error} (code ${r.code})${r.detail ? `: ${r.detail}` : ''}\n`);
  }
  return r.ok ? 0 : 1;
}

export function verifyRevocationFile(p: Parsed, io: Io, list: Uint8Array): number {
  const side = deviceSide(p, str(p, 'trust', true)!);
  if ('ok' in side) return report(io, p, side, () => ({ text: '', fields: {} }));
  const r = hostVerifier.verifyRevocations(list, side.trust, side.minVersion, side.stored);
  return report(io, p, r, () => {
    const l = (r as { revocations: VerifiedRevocations }).revocations.list;
    return {
      text: `revocation list version ${l.version}: ${l.keyIds.length} key id(s), ${l.manifests.length} manifest(s) revoked${side.stored ? `; keeps every key the stored version ${side.stored.list.version} revokes` : ''}`,
      fields: { kind: 'revocation-list', version: l.version, keyIds: l.keyIds.map(toHex), manifests: l.manifests.map(toHex) },
    };
  });
}

export function verifyTrustFile(p: Parsed, io: Io, candidate: Uint8Array): number {
  const trustPath = str(p, 'trust');
  let r: Result<{ trust: VerifiedTrust }>;
  if (trustPath === undefined) {
    if (str(p, 'revocations') !== undefined) throw new FwsealError('USAGE', '--revocations needs --trust (the bundle the device holds now)');
    r = hostVerifier.loadTrust(candidate); // T1–T4: the provisioning check
  } else {
    const side = deviceSide(p, trustPath);
    r = 'ok' in side ? side : hostVerifier.verifyTrustUpdate(candidate, side.trust, side.stored); // T1–T7
  }
  return report(io, p, r, () => {
    const b = (r as { trust: VerifiedTrust }).trust.bundle;
    return {
      text: `trust bundle version ${b.version}: root ${b.root.threshold} of ${b.root.keys.length}, release ${b.release.threshold} of ${b.release.keys.length}${trustPath ? ' (a valid rotation of --trust)' : ' (its own root threshold; give --trust to check a rotation)'}`,
      fields: { kind: 'trust-bundle', version: b.version, rotation: trustPath !== undefined },
    };
  });
}
