/**
 * The drill's revocation list (SPEC.md §12.13, §6.2): the version after the one the fleet's servers
 * publish, carrying every entry of it forward, built and checked by host/trust.ts. GET /api/root names
 * the published trust bundle and list by the SHA-256 of their payloads; the operator's files must be
 * exactly those, so the new list drops nothing the fleet enforces and is signed under the bundle the
 * devices hold (a server or device would refuse anything else, REVOCATION_ROLLBACK or worse).
 */
import { loadTrust, type VerifiedTrust, verifyRevocations } from '../../device/index.js';
import { bytesEqual, toHex } from '../../shared/bytes.js';
import { FwsealError } from '../errors.js';
import { type PublicKeyInfo, type SigningKey } from '../keys.js';
import { type ApiTarget, apiRequest } from '../ota/api-client.js';
import { buildRevocationList } from '../trust.js';

/** What GET /api/root answers (host/ota/http-root.ts): versions, payload digests, when the list was published (ms). */
export type ServerRoot = {
  readonly trustVersion: number;
  readonly trustSha256: string | null;
  readonly revocationVersion: number;
  readonly revocationSha256: string | null;
  readonly revocationPublished: number | null;
};

export function fetchServerRoot(t: ApiTarget): Promise<ServerRoot> {
  return apiRequest<ServerRoot>(t, 'GET', 'api/root');
}

/** The operator's root of trust files, verified: the trust bundle, the list in force (if any) and the keys it revokes. */
export type LocalRoot = {
  readonly trustBytes: Uint8Array;
  readonly trust: VerifiedTrust;
  readonly previous?: Uint8Array;
  readonly previousVersion: number;
  readonly previousSha256: string | null;
  readonly revokedKeyIds: readonly Uint8Array[];
};

/** --trust and --previous, verified as a device would (T1–T4, R1–R3); their codes when they do not verify (exit 1). */
export function loadLocalRoot(trustBytes: Uint8Array, previous: Uint8Array | undefined): LocalRoot {
  const t = loadTrust(trustBytes);
  if (!t.ok) throw FwsealError.from(t, '--trust');
  if (previous === undefined) return { trustBytes, trust: t.trust, previousVersion: 0, previousSha256: null, revokedKeyIds: [] };
  const r = verifyRevocations(previous, t.trust);
  if (!r.ok) throw FwsealError.from(r, '--previous revocation list');
  const list = r.revocations;
  return { trustBytes, trust: t.trust, previous, previousVersion: list.list.version, previousSha256: toHex(list.digest), revokedKeyIds: list.list.keyIds };
}

/**
 * --sign keys are root keys of --trust, checked with their public halves before any passphrase is
 * asked for or the server is asked anything (SPEC.md §14 H2): KEY_NOT_IN_TRUST, exit 2.
 */
export function checkRootSigners(local: LocalRoot, signers: readonly PublicKeyInfo[]): void {
  for (const s of signers) {
    if (!local.trust.root.kids.some((kid) => bytesEqual(kid, s.keyId)))
      throw new FwsealError('KEY_NOT_IN_TRUST', `--sign key ${s.name} (${toHex(s.keyId)}) is not a root key of the trust bundle`);
  }
}

/** The files are what the server publishes (same payload digests); else USAGE naming what the server has. */
export function checkAgainstServer(local: LocalRoot, server: ServerRoot): void {
  if (toHex(local.trust.digest) !== server.trustSha256) {
    throw new FwsealError(
      'USAGE',
      `--trust is trust bundle version ${local.trust.bundle.version}, not the one the server publishes (version ${server.trustVersion}, payload sha256 ${server.trustSha256}): give the server's newest bundle`,
    );
  }
  if (server.revocationVersion === 0 && local.previous !== undefined)
    throw new FwsealError('USAGE', 'the server publishes no revocation list yet: leave out --previous');
  if (server.revocationVersion > 0 && local.previousSha256 !== server.revocationSha256) {
    const given = local.previous ? `--previous is list version ${local.previousVersion}, not` : 'give with --previous';
    throw new FwsealError(
      'USAGE',
      `${given} the list the server publishes (version ${server.revocationVersion}, payload sha256 ${server.revocationSha256}), so that its entries are carried forward`,
    );
  }
}

/**
 * The next list: the server's version + 1, the previous entries plus `keys`, signed by `signers`.
 * An incomplete list (fewer root signatures than the threshold) is returned as such: the caller
 * writes it for the other root key holders and publishes nothing.
 */
export function buildNextList(
  local: LocalRoot,
  server: ServerRoot,
  keys: readonly PublicKeyInfo[],
  signers: readonly SigningKey[],
): { envelope: Uint8Array; version: number; complete: boolean; error?: string } {
  const version = server.revocationVersion + 1;
  const r = buildRevocationList({
    trust: local.trust,
    version,
    keys,
    keyIdsHex: [],
    manifestEnvelopes: [],
    signers,
    ...(local.previous ? { previous: local.previous } : {}),
  });
  return { ...r, version };
}
