/**
 * The boot agent (SPEC.md §11.4). Never boots an image it has not just verified: the manifest stored
 * for the slot is re-verified with the one verifier against the current trust bundle, revocation
 * list and state (device class, counter), it must be the manifest the state record names, and the
 * image is streamed from flash through imageVerifier.
 *
 * Pending image: trialBoots is incremented and persisted BEFORE the image is verified and run; past
 * `maxTrialBoots` (never confirmed) or when it fails verification it is reverted (pending cleared,
 * lastError = NOT_CONFIRMED / BOOT_IMAGE_INVALID) and the active slot boots instead.
 *
 * Trust: the trust bundle and revocation list stored on flash and named by the state record (written
 * by provision / UpdateAgent.updateTrust / updateRevocations); the `trust` and `revocations` given here
 * are the factory values, used only while the state names none stored. A stored one that is damaged
 * gives STATE_CORRUPT with slot null (fail closed).
 *
 * No fallback: if the active image fails verification and no pending image verifies, nothing boots
 * (BOOT_IMAGE_INVALID, slot null); unverified code is never run.
 *
 * Policy after a revocation (SPEC.md §11.4): the active, confirmed image whose manifest fails ONLY
 * because signers were revoked (REVOKED_KEY) still boots, with `revokedSigners: true`: its image is
 * checked byte for byte, its manifest digest against the stored list, its class and counter as
 * usual. A revoked manifest never boots; a pending image gets no such grace (it is reverted).
 *
 * Result codes: OK (booted the active image, or trial-booting the pending one); NOT_CONFIRMED or
 * BOOT_IMAGE_INVALID with `reverted: true` and a slot (reverted, booted the old image); with
 * `slot: null` nothing is bootable (STATE_CORRUPT, BOOT_IMAGE_INVALID, or a flash code).
 * PowerCut propagates.
 */
import { bytesEqual } from '../../shared/bytes.js';
import { CODES, type CodeName, fail, type Result } from '../../shared/codes.js';
import { type DeviceStateRecord } from '../../shared/state.js';
import { createVerifier, type Verifier } from '../verifier.js';
import { type VerifiedManifest } from '../verify/manifest.js';
import { type Flash } from './flash.js';
import { type Layout } from './layout.js';
import { activeSlotOf, inactiveSlotOf, loadTrustStore, type TrustStore, verifySlotImage, verifyStoredManifest } from './slot.js';
import { loadState, saveState } from './state-store.js';

export type BootOptions = {
  /** Trial boots a pending image gets before it is reverted (e.g. 1..3). */
  readonly maxTrialBoots: number;
  readonly revocations?: Uint8Array;
  readonly verifier?: Verifier;
};

export type BootResult = {
  /** The slot to run, or null when nothing verified. */
  readonly slot: 0 | 1 | null;
  readonly version?: string;
  /** The stored security counter after this boot (null when the state is unreadable). */
  readonly counter: number | null;
  /** True when this boot runs a pending image on trial. */
  readonly trial?: boolean;
  /** True when a pending image was reverted during this boot. */
  readonly reverted?: boolean;
  /** True when the active image boots although signers of its manifest were revoked since its install (§11.4). */
  readonly revokedSigners?: boolean;
  readonly code: number;
  readonly error: string;
  readonly detail?: string;
};

const DEFAULT_VERIFIER = createVerifier();

function result(code: CodeName, rest: Omit<BootResult, 'code' | 'error'>, detail?: string): BootResult {
  return Object.freeze({ ...rest, code: CODES[code], error: code, ...(detail !== undefined ? { detail } : {}) });
}

export function boot(flash: Flash, layout: Layout, trust: Uint8Array, options: BootOptions): BootResult {
  const v = options.verifier ?? DEFAULT_VERIFIER;
  const factory: TrustStore = { trust, ...(options.revocations !== undefined ? { revocations: options.revocations } : {}) };
  const s = loadState(flash, layout);
  if (!s.ok) return Object.freeze({ slot: null, counter: null, code: s.code, error: s.error, ...(s.detail ? { detail: s.detail } : {}) });
  let rec: DeviceStateRecord = s.record;
  // The trust bundle and revocation list stored on flash (else the factory values); damaged -> nothing boots.
  const loaded = loadTrustStore(v.sha256, flash, layout, rec, factory);
  if (!loaded.ok) return result(loaded.error as CodeName, { slot: null, counter: rec.securityCounter }, loaded.detail);
  const store = loaded.store;
  let reverted: CodeName | null = null;
  let revertDetail: string | undefined;

  if (rec.pending) {
    const pendingSlot = inactiveSlotOf(rec);
    if (rec.trialBoots + 1 > options.maxTrialBoots) {
      reverted = 'NOT_CONFIRMED';
      revertDetail = `not confirmed after ${rec.trialBoots} trial boots`;
    } else {
      // Count this trial before running it: a crash in the new image still uses up a trial.
      const counted = saveState(flash, layout, { ...rec, trialBoots: rec.trialBoots + 1 });
      if (!counted.ok) {
        reverted = 'NOT_CONFIRMED';
        revertDetail = `cannot record the trial boot: ${counted.error}`;
      } else {
        rec = counted.record;
        const vm = verifyStoredManifest(v, flash, layout, pendingSlot, rec, store, rec.pending!);
        const img = vm.ok ? verifySlotImage(v, flash, layout, pendingSlot, vm.manifest) : vm;
        if (vm.ok && img.ok) {
          return result('OK', { slot: pendingSlot, version: vm.manifest.version, counter: rec.securityCounter, trial: true });
        }
        reverted = 'BOOT_IMAGE_INVALID';
        revertDetail = `pending image: ${img.error}${img.ok ? '' : img.detail ? ` (${img.detail})` : ''}`;
      }
    }
    const { pending: _p, ...rest } = rec;
    const w = saveState(flash, layout, { ...rest, trialBoots: 0, lastError: CODES[reverted] });
    if (w.ok) rec = w.record;
    // If the revert cannot be written the pending image is still not run: the active slot boots.
  }

  const active = activeSlotOf(rec);
  const counter = rec.securityCounter;
  if (!rec.installed) return result('BOOT_IMAGE_INVALID', { slot: null, counter, ...(reverted ? { reverted: true } : {}) }, 'no installed image');
  let vm = verifyStoredManifest(v, flash, layout, active, rec, store, rec.installed);
  const revokedSigners = !vm.ok && vm.code === CODES.REVOKED_KEY;
  if (revokedSigners) vm = verifyDespiteRevokedSigners(v, flash, layout, active, rec, store, rec.installed);
  const img = vm.ok ? verifySlotImage(v, flash, layout, active, vm.manifest) : vm;
  if (!vm.ok || !img.ok) {
    const why = img.ok ? '' : `${img.error}${img.detail ? ` (${img.detail})` : ''}`;
    return result('BOOT_IMAGE_INVALID', { slot: null, counter, ...(reverted ? { reverted: true } : {}) }, `active slot ${active}: ${why}`);
  }
  const booted = { slot: active, version: vm.manifest.version, counter, ...(revokedSigners ? { revokedSigners: true } : {}) };
  if (reverted) return result(reverted, { ...booted, reverted: true }, revertDetail);
  return result('OK', booted);
}

/**
 * The installed manifest whose signers were revoked after its install (§11.4 "Policy after a
 * revocation"): verified again with the stored list's key revocations left out, so V6 counts the
 * signatures as they were when it was installed while V1–V5, V8 (class) and V9 (counter) apply as
 * usual; then V7 against the stored list (verified here, R1–R4: a list that fails is that failure),
 * so a manifest revoked by digest never boots.
 */
function verifyDespiteRevokedSigners(
  v: Verifier,
  flash: Flash,
  layout: Layout,
  slot: 0 | 1,
  rec: DeviceStateRecord,
  store: TrustStore,
  installed: Uint8Array,
): Result<VerifiedManifest> {
  if (store.revocations === undefined) return fail('REVOKED_KEY', 'no revocation list');
  const trust = v.loadTrust(store.trust);
  if (!trust.ok) return trust;
  const list = v.verifyRevocations(store.revocations, trust.trust, rec.revocationVersion);
  if (!list.ok) return list;
  const vm = verifyStoredManifest(v, flash, layout, slot, rec, { trust: store.trust }, installed);
  if (!vm.ok) return vm;
  if (list.revocations.list.manifests.some((d) => bytesEqual(d, vm.manifestDigest))) return fail('REVOKED_MANIFEST', 'the revocation list names this manifest');
  return vm;
}
