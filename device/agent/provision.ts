/**
 * Factory provisioning of a blank flash (SPEC.md §11.3): the factory image and its signed manifest
 * in slot A, confirmed; the factory trust bundle (and revocation list) in area 0, named by the first
 * state record. Everything is verified first with the one verifier.
 */
import { fail, ok, type Result } from '../../shared/codes.js';
import { type DeviceStateRecord } from '../../shared/state.js';
import { createVerifier, type Verifier } from '../verifier.js';
import { type Flash } from './flash.js';
import { type Layout } from './layout.js';
import { type TrustStore, writeEnvelopeArea, writeManifestArea } from './slot.js';
import { flashResult, provisionState } from './state-store.js';

const DEFAULT_VERIFIER = createVerifier();

export type ProvisionInput = TrustStore & {
  readonly deviceClass: string;
  /** The factory image and its signed manifest, written to slot A and confirmed. */
  readonly envelope: Uint8Array;
  readonly image: Uint8Array;
  readonly verifier?: Verifier;
};

/**
 * Factory provisioning of a blank flash: verify the manifest and image, write them to slot A and its
 * manifest area, and write the first state record (counter = the manifest's counter).
 */
export function provision(flash: Flash, layout: Layout, input: ProvisionInput): Result<{ state: DeviceStateRecord }> {
  const v = input.verifier ?? DEFAULT_VERIFIER;
  const trustV = v.loadTrust(input.trust);
  if (!trustV.ok) return trustV;
  const vm = v.verifyManifest(input.envelope, input.trust, {
    deviceClass: input.deviceClass,
    counter: 0,
    ...(input.revocations ? { revocations: input.revocations } : {}),
  });
  if (!vm.ok) return vm;
  const iv = v.imageVerifier(vm.manifest);
  const u = iv.update(input.image);
  if (!u.ok) return u;
  const fin = iv.finish();
  if (!fin.ok) return fin;
  const region = layout.slots[0];
  const W = flash.writeAlign;
  const data = new Uint8Array(Math.ceil(input.image.length / W) * W).fill(flash.erasedValue);
  data.set(input.image);
  if (data.length > region.size) return fail('SLOT_TOO_SMALL', 'factory image does not fit slot A');
  const stored = writeManifestArea(flash, layout, 0, input.envelope);
  if (!stored.ok) return stored;
  // The factory trust bundle (and revocation list) go to area 0; the state record names them.
  const wt = writeEnvelopeArea(flash, layout.trustAreas[0], input.trust, 'trust area 0');
  if (!wt.ok) return wt;
  if (input.revocations !== undefined) {
    const wr = writeEnvelopeArea(flash, layout.revocationAreas[0], input.revocations, 'revocation area 0');
    if (!wr.ok) return wr;
  }
  const w = flashResult(() => {
    flash.erase(region.offset, region.size);
    flash.write(region.offset, data);
    flash.erase(layout.progress.offset, layout.progress.size);
    return {};
  });
  if (!w.ok) return w;
  const st = provisionState(flash, layout, {
    deviceClass: input.deviceClass,
    securityCounter: vm.manifest.securityCounter,
    trustVersion: vm.trustVersion,
    revocationVersion: vm.revocationVersion,
    installed: vm.manifestDigest,
    trialBoots: 0,
    activeSlot: 0,
    trustArea: 0,
    trustDigest: v.sha256(input.trust),
    ...(input.revocations !== undefined ? { revocationArea: 0, revocationDigest: v.sha256(input.revocations) } : {}),
  });
  if (!st.ok) return st;
  return ok({ state: st.record });
}
