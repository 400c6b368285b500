/**
 * The fleet's root of trust on the server (SPEC.md §12.13, §12.9): which trust bundle and revocation
 * list the server holds, and whether a new one may replace them. The rules are the device's (SPEC.md
 * §6.1, §6.2, §11.3 `updateTrust` / `updateRevocations`), checked with the one verifier: a bundle
 * is the next version signed by the current and its own root keys, a list is never older, weaker or
 * differently signed than the stored one, and the list kept must verify under the bundle kept. So
 * nothing the server announces is refused by a device that followed it, and the server refuses, with
 * the verifier's code, what a device would refuse: at start-up and on publish, never silently.
 */
import { type VerifiedRevocations, type VerifiedTrust } from '../../device/index.js';
import { bytesEqual } from '../../shared/bytes.js';
import { type CodeName, type Empty, fail, ok, type Result } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { parseManifest } from '../../shared/manifest.js';
import { type RootAnnouncement } from '../../shared/ota/root.js';
import { FwsealError } from '../errors.js';
import { hostVerifier } from '../hash.js';
import { payloadKind } from '../inspect.js';
import { type NewestRoot, type RootStoreApi, type RootVersions, type TrustRow } from './root-store.js';

/** The host's one verifier (host/hash.ts): OpenSSL's Ed25519 where it decides as the policy does, and a memo. */
const verifier = hostVerifier;

/** The newest trust bundle and revocation list, verified (the verifier's own objects, SPEC.md §6.6). */
export type RootState = {
  readonly trust: { readonly envelope: Uint8Array; readonly verified: VerifiedTrust };
  readonly list?: { readonly envelope: Uint8Array; readonly verified: VerifiedRevocations };
};

/** What a publish did: the object's kind and version, and whether the root of trust changed. */
export type Published = { readonly kind: 'trust-bundle' | 'revocation-list'; readonly version: number; readonly changed: boolean };

type Change = { result: Published; trust?: VerifiedTrust & { envelope: Uint8Array }; list?: VerifiedRevocations & { envelope: Uint8Array } };

const versionOf = (s: RootState): RootVersions => ({ trust: s.trust.verified.bundle.version, list: s.list?.verified.list.version ?? 0 });

/**
 * A trust bundle in place of the newest (T1–T7 against it and the stored list), and the list kept
 * under it: `list` when given (verified under the new bundle against the stored one), else the stored
 * list, which must verify under the new bundle (a rotation never leaves a list nothing verifies).
 */
export function nextTrust(s: RootState, candidate: Uint8Array, list?: Uint8Array): Result<{ change: Change }> {
  const next = verifier.verifyTrustUpdate(candidate, s.trust.verified, s.list?.verified);
  if (!next.ok) return next;
  const version = next.trust.bundle.version;
  const changed = !bytesEqual(next.trust.digest, s.trust.verified.digest);
  const change: Change = { result: { kind: 'trust-bundle', version, changed }, ...(changed ? { trust: { ...next.trust, envelope: candidate } } : {}) };
  if (list !== undefined) {
    const r = verifier.verifyRevocations(list, next.trust, versionOf(s).list, s.list?.verified);
    if (!r.ok) return r;
    if (r.revocations.list.version !== versionOf(s).list) {
      change.list = { ...r.revocations, envelope: list };
      change.result = { ...change.result, changed: true };
    }
  } else if (s.list && changed) {
    const r = verifier.verifyRevocations(s.list.envelope, next.trust, versionOf(s).list);
    if (!r.ok) {
      const why = 'the stored revocation list does not verify under this trust bundle; publish a list signed by both bundles';
      return fail(r.error as Exclude<CodeName, 'OK'>, `${why}' root keys first (${r.detail ?? r.error})`);
    }
  }
  return ok({ change });
}

/** A revocation list in place of the stored one (R1–R5 under the newest bundle, the stored version the minimum). */
export function nextList(s: RootState, list: Uint8Array): Result<{ change: Change }> {
  const r = verifier.verifyRevocations(list, s.trust.verified, versionOf(s).list, s.list?.verified);
  if (!r.ok) return r;
  const version = r.revocations.list.version;
  const changed = version !== versionOf(s).list; // the same version passes only with the identical payload
  return ok({ change: { result: { kind: 'revocation-list', version, changed }, ...(changed ? { list: { ...r.revocations, envelope: list } } : {}) } });
}

/** The payload kind of a signed object, or the code a device would give for it. */
function rootKind(envelope: Uint8Array): Result<{ kind: 'trust-bundle' | 'revocation-list' }> {
  const env = parseEnvelope(envelope);
  if (!env.ok) return env;
  const kind = payloadKind(env.envelope.payload);
  if (kind === 'trust-bundle' || kind === 'revocation-list') return ok({ kind });
  return fail('WRONG_KIND', 'neither a trust bundle nor a revocation list');
}

const rowOf = (c: NonNullable<Change['trust'] | Change['list']>) => ({
  envelope: Buffer.from(c.envelope),
  digest: Buffer.from(c.digest),
});

export class RootOfTrust {
  private cached: { trust: number; list: number; state: RootState } | null = null;
  /** Bundles verified once per version (stored rows never change). */
  private readonly bundles = new Map<number, VerifiedTrust>();
  private readonly responses = new Map<string, { trust: Uint8Array; revocations?: Uint8Array }>();

  /** `verified`: told how long each manifest check of checkManifest took, in seconds (fwseal_server_verify_seconds, M4). */
  constructor(
    private readonly store: RootStoreApi,
    private readonly verified?: (seconds: number) => void,
  ) {}

  /** The newest bundle and list as stored, verified again whenever another instance (or this one) changed them; null before the first start. */
  async state(): Promise<RootState | null> {
    const v = await this.store.versions();
    if (v.trust === 0) return null;
    if (this.cached && this.cached.trust === v.trust && this.cached.list === v.list) return this.cached.state;
    // Rows of a version never change: reading them after the versions reads one consistent state.
    const trustRow = await this.store.trust(v.trust);
    if (!trustRow) throw new FwsealError('STATE_CORRUPT', `trust bundle version ${v.trust} is not stored`);
    const listRow = v.list > 0 ? await this.store.list(v.list) : undefined;
    const state = this.stateOf({ trust: trustRow, ...(listRow ? { list: listRow } : {}) });
    this.cached = { ...v, state };
    return state;
  }

  /** The root of trust the newest rows hold, verified (synchronous: root changes decide inside the store's atomic step). */
  private stateOf(newest: NewestRoot): RootState {
    if (!newest.trust) throw new FwsealError('STATE_CORRUPT', 'no root of trust stored');
    const trust = this.bundle(newest.trust);
    let list: RootState['list'];
    if (newest.list) {
      // Fail closed: a stored list that no longer verifies stops the server rather than lapse (SPEC.md §6.7).
      const r = verifier.verifyRevocations(new Uint8Array(newest.list.envelope), trust);
      if (!r.ok) throw FwsealError.from(r, `stored revocation list version ${newest.list.version}`);
      list = { envelope: new Uint8Array(newest.list.envelope), verified: r.revocations };
    }
    return { trust: { envelope: new Uint8Array(newest.trust.envelope), verified: trust }, ...(list ? { list } : {}) };
  }

  private bundle(row: TrustRow): VerifiedTrust {
    const have = this.bundles.get(row.version);
    if (have) return have;
    const t = verifier.loadTrust(new Uint8Array(row.envelope));
    if (!t.ok) throw FwsealError.from(t, `stored trust bundle version ${row.version}`);
    this.bundles.set(row.version, t.trust);
    return t.trust;
  }

  private apply(decide: (s: RootState) => Result<{ change: Change }>): Promise<Published> {
    return this.store.change((newest) => {
      const s = this.stateOf(newest);
      const r = decide(s);
      if (!r.ok) throw FwsealError.from(r);
      const { result, trust, list } = r.change;
      const trustVersion = trust?.bundle.version ?? versionOf(s).trust;
      return {
        result,
        ...(trust ? { trust: { version: trust.bundle.version, ...rowOf(trust) } } : {}),
        ...(list ? { list: { version: list.list.version, trust_version: trustVersion, ...rowOf(list) } } : {}),
      };
    });
  }

  /**
   * `fwseal serve --trust T [--revocations RL]` (SPEC.md §12.9): the first start stores T (T1–T4) and
   * RL (R1–R3 under T); a later start takes T only when it is the stored newest bundle or the next
   * one (T5–T7), and RL only when it is the stored list or a successor (R1–R5). Anything else throws
   * the verifier's code: an older list or bundle is never taken silently.
   */
  async startUp(trust: Uint8Array | undefined, revocations: Uint8Array | undefined): Promise<void> {
    if ((await this.state()) === null) {
      if (trust === undefined) throw new FwsealError('USAGE', 'the first start on a data folder needs --trust');
      const t = verifier.loadTrust(trust);
      if (!t.ok) throw FwsealError.from(t, 'trust bundle');
      const r = revocations === undefined ? undefined : verifier.verifyRevocations(revocations, t.trust);
      if (r && !r.ok) throw FwsealError.from(r, 'revocation list');
      // One atomic step: two instances starting at once on an empty store both get here; only the
      // first stores its root of trust, the other goes on as a later start would (below).
      const stored = await this.store.change((newest) =>
        newest.trust
          ? { result: false }
          : {
              result: true,
              trust: { version: t.trust.bundle.version, ...rowOf({ ...t.trust, envelope: trust }) },
              ...(r?.ok
                ? {
                    list: {
                      version: r.revocations.list.version,
                      trust_version: t.trust.bundle.version,
                      ...rowOf({ ...r.revocations, envelope: revocations! }),
                    },
                  }
                : {}),
            },
      );
      if (stored) return;
    }
    try {
      if (trust !== undefined) await this.apply((s) => nextTrust(s, trust, revocations));
      else if (revocations !== undefined) await this.apply((s) => nextList(s, revocations));
    } catch (e) {
      if (e instanceof FwsealError)
        throw new FwsealError(e.codeName as Exclude<CodeName, 'OK'>, `${trust ? '--trust/--revocations' : '--revocations'}: ${e.message}`);
      throw e;
    }
  }

  /** `POST /api/root`: a trust bundle or a revocation list, by its payload kind; throws the verifier's code. */
  async publish(envelope: Uint8Array): Promise<Published> {
    const kind = rootKind(envelope);
    if (!kind.ok) throw FwsealError.from(kind);
    return this.apply((s) => (kind.kind === 'trust-bundle' ? nextTrust(s, envelope) : nextList(s, envelope)));
  }

  /** The retained announcement (SPEC.md §12.13): the newest bundle and list. */
  async announcement(): Promise<RootAnnouncement | null> {
    const s = await this.state();
    if (!s) return null;
    return { trustVersion: s.trust.verified.bundle.version, trust: s.trust.envelope, ...(s.list ? { revocations: s.list.envelope } : {}) };
  }

  /**
   * A root response: bundle `version` and the newest list accepted while it (or an older bundle) was
   * the newest, if that list verifies under it (R1–R3). A later list may drop keys a later bundle
   * no longer lists, which a device still on `version` would refuse (R5); this one it takes.
   */
  async response(version: number): Promise<{ trust: Uint8Array; revocations?: Uint8Array } | null> {
    const row = await this.store.trust(version);
    if (!row) return null;
    const key = `${version}/${(await this.store.versions()).list}`;
    const have = this.responses.get(key);
    if (have) return have;
    const trust = this.bundle(row);
    const listRow = await this.store.listFor(version);
    const list = listRow ? new Uint8Array(listRow.envelope) : undefined;
    const fits = list !== undefined && verifier.verifyRevocations(list, trust).ok;
    const answer = { trust: new Uint8Array(row.envelope), ...(fits ? { revocations: list } : {}) };
    this.responses.set(key, answer);
    return answer;
  }

  /** The trust bundle and list a new campaign's manifest is verified against, and their versions (for OtaStore.insertCampaign). */
  async forCampaigns(): Promise<{ trust: Uint8Array; revocations?: Uint8Array; versions: RootVersions }> {
    const s = await this.state();
    if (!s) throw new FwsealError('STATE_CORRUPT', 'no root of trust stored');
    return { trust: s.trust.envelope, ...(s.list ? { revocations: s.list.envelope } : {}), versions: versionOf(s) };
  }

  /**
   * Whether a campaign's manifest still verifies (signatures, threshold, revocations; class and counter
   * are each device's), and the root of trust versions the verdict holds for.
   */
  async checkManifest(envelope: Uint8Array): Promise<{ verdict: Result<Empty>; versions: RootVersions }> {
    const s = await this.state();
    if (!s) return { verdict: fail('STATE_CORRUPT', 'no root of trust stored'), versions: { trust: 0, list: 0 } };
    const started = performance.now();
    const verdict = manifestVerdict(s, envelope);
    this.verified?.((performance.now() - started) / 1000);
    return { verdict, versions: versionOf(s) };
  }
}

function manifestVerdict(s: RootState, envelope: Uint8Array): Result<Empty> {
  const env = parseEnvelope(envelope);
  const m = env.ok ? parseManifest(env.envelope.payload) : env;
  if (!m.ok) return m;
  const r = verifier.verifyManifestWithTrust(envelope, s.trust.verified, {
    deviceClass: m.value.deviceClass,
    counter: 0,
    ...(s.list ? { revocations: s.list.envelope } : {}),
  });
  return r.ok ? ok({}) : r;
}
