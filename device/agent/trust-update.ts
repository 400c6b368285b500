/**
 * Root-of-trust updates on the device (SPEC.md §11.3): a new trust bundle or revocation list is
 * verified against the device's stored ones with the one verifier (T1–T7, R1–R5: revoked keys stay
 * revoked), written into the area the state record does not name, read back, and then switched to by
 * one state save, so a power cut at any point leaves the old or the new envelope in force.
 */
import { bytesEqual } from '../../shared/bytes.js';
import { type CodeName, fail, ok, type Result } from '../../shared/codes.js';
import { type DeviceStateRecord } from '../../shared/state.js';
import { type Verifier } from '../verifier.js';
import { type VerifiedRevocations } from '../verify/trust.js';
import { type Flash } from './flash.js';
import { type Layout } from './layout.js';
import { loadTrustStore, type TrustStore, writeEnvelopeArea } from './slot.js';
import { loadState, type StateUpdate, saveState } from './state-store.js';

/** What the updates work on: the flash, its layout, the verifier and the factory trust (used while none is stored). */
export type TrustContext = { readonly flash: Flash; readonly layout: Layout; readonly verifier: Verifier; readonly factory: TrustStore };

/**
 * The state record, the device's stored trust and revocation list, the stored trust loaded, and
 * the stored list verified against it (`kept`; undefined when the device keeps none). A stored
 * list that no longer verifies fails closed: its revocations must never silently lapse.
 */
function storedTrust(c: TrustContext) {
  const s = loadState(c.flash, c.layout);
  if (!s.ok) return s;
  const rec = s.record;
  const st = loadTrustStore(c.verifier.sha256, c.flash, c.layout, rec, c.factory);
  if (!st.ok) return st;
  const cur = c.verifier.loadTrust(st.store.trust);
  if (!cur.ok) return cur;
  if (cur.trust.bundle.version < rec.trustVersion) return fail('TRUST_ROLLBACK', `stored trust version ${cur.trust.bundle.version} < ${rec.trustVersion}`);
  let kept: VerifiedRevocations | undefined;
  if (st.store.revocations !== undefined) {
    const r = c.verifier.verifyRevocations(st.store.revocations, cur.trust, rec.revocationVersion);
    if (!r.ok) return r;
    kept = r.revocations;
  }
  return ok({ rec, st, cur, kept });
}

/**
 * Rotate the device's trust bundle (SPEC.md §11.3): `candidate` must pass verifyTrustUpdate against
 * the current bundle and the stored revocation list (T5–T7: version N+1, a threshold of the current
 * root keys and of its own root keys, neither counting keys the stored list revokes). The revocation
 * list kept must verify under the new bundle: pass `revocations` (R1–R5 under the new bundle
 * against the stored list: it keeps every revoked key the new bundle still lists) when the new root
 * keys do not sign the stored list. The new bundle (and list) is written into the trust
 * (revocation) area the state does not name, read back, and then one state save switches to it and
 * raises the versions: a power cut at any point leaves the old or the new bundle, valid.
 * The identical current bundle is accepted without a write (`changed: false`).
 */
export function updateTrust(c: TrustContext, candidate: Uint8Array, revocations?: Uint8Array): Result<{ version: number; changed: boolean }> {
  const loaded = storedTrust(c);
  if (!loaded.ok) return loaded;
  const { rec, st, cur, kept } = loaded;
  const next = c.verifier.verifyTrustUpdate(candidate, cur.trust, kept);
  if (!next.ok) return next;
  const version = next.trust.bundle.version;
  let listVersion = rec.revocationVersion;
  if (revocations !== undefined) {
    const r = c.verifier.verifyRevocations(revocations, next.trust, rec.revocationVersion, kept);
    if (!r.ok) return r;
    listVersion = r.revocations.list.version;
    if (
      listVersion === rec.revocationVersion &&
      st.store.revocations !== undefined &&
      !bytesEqual(c.verifier.sha256(st.store.revocations), c.verifier.sha256(revocations))
    ) {
      return fail('REVOCATION_ROLLBACK', `a different list with the current version ${listVersion}`);
    }
  } else if (st.store.revocations !== undefined) {
    const r = c.verifier.verifyRevocations(st.store.revocations, next.trust, rec.revocationVersion);
    if (!r.ok)
      return fail(
        r.error as Exclude<CodeName, 'OK'>,
        `the stored revocation list does not verify under the new trust bundle; pass one signed by its root keys (${r.detail ?? r.error})`,
      );
  }
  const same = bytesEqual(next.trust.digest, cur.trust.digest);
  if (same && revocations === undefined && rec.trustArea !== undefined) return ok({ version, changed: false });

  const trustArea = rec.trustArea === 0 ? 1 : 0;
  const wt = writeEnvelopeArea(c.flash, c.layout.trustAreas[trustArea], candidate, `trust area ${trustArea}`);
  if (!wt.ok) return wt;
  let update: StateUpdate = { ...rec, trustVersion: Math.max(rec.trustVersion, version), trustArea, trustDigest: c.verifier.sha256(candidate) };
  // SPEC.md §11.3: a policy naming another log (key or origin) starts from no stored checkpoint, in
  // the same save that switches the bundle: the old log's checkpoint says nothing about the new one.
  const was = cur.trust.bundle.log;
  const now = next.trust.bundle.log;
  if (now && (!was || was.origin !== now.origin || !bytesEqual(was.logKey, now.logKey))) {
    const { logSize: _s, logRoot: _r, ...rest } = update;
    update = rest;
  }
  if (revocations !== undefined) {
    const area = rec.revocationArea === 0 ? 1 : 0;
    const wr = writeEnvelopeArea(c.flash, c.layout.revocationAreas[area], revocations, `revocation area ${area}`);
    if (!wr.ok) return wr;
    update = {
      ...update,
      revocationVersion: Math.max(rec.revocationVersion, listVersion),
      revocationArea: area,
      revocationDigest: c.verifier.sha256(revocations),
    };
  }
  const { sequence: _s, ...fields } = update as DeviceStateRecord;
  const w = saveState(c.flash, c.layout, fields);
  if (!w.ok) return w;
  return ok({ version, changed: true });
}

/**
 * Store a new revocation list (SPEC.md §11.3): it must pass verifyRevocations (R1–R5) against the
 * device's current trust bundle and stored list: root keys either list revokes do not count, the
 * version is at least the stored one (REVOCATION_ROLLBACK), and every key the stored list revokes
 * that the bundle still lists stays revoked (REVOCATION_ROLLBACK); the same version is accepted only
 * for the identical list (no write, `changed: false`). Written into the revocation area the state
 * does not name, read back, then switched to by one state save.
 */
export function updateRevocations(c: TrustContext, list: Uint8Array): Result<{ version: number; changed: boolean }> {
  const loaded = storedTrust(c);
  if (!loaded.ok) return loaded;
  const { rec, st, cur, kept } = loaded;
  const r = c.verifier.verifyRevocations(list, cur.trust, rec.revocationVersion, kept);
  if (!r.ok) return r;
  const version = r.revocations.list.version;
  const digest = c.verifier.sha256(list);
  if (version === rec.revocationVersion && st.store.revocations !== undefined) {
    if (!bytesEqual(c.verifier.sha256(st.store.revocations), digest))
      return fail('REVOCATION_ROLLBACK', `a different list with the current version ${version}`);
    if (rec.revocationArea !== undefined) return ok({ version, changed: false });
  }
  const area = rec.revocationArea === 0 ? 1 : 0;
  const wr = writeEnvelopeArea(c.flash, c.layout.revocationAreas[area], list, `revocation area ${area}`);
  if (!wr.ok) return wr;
  const { sequence: _s, ...fields } = rec;
  const w = saveState(c.flash, c.layout, {
    ...fields,
    revocationVersion: Math.max(rec.revocationVersion, version),
    revocationArea: area,
    revocationDigest: digest,
  });
  if (!w.ok) return w;
  return ok({ version, changed: true });
}
