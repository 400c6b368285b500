/**
 * Slot helpers shared by the update agent and the boot agent (SPEC.md §11): the manifest area of a
 * slot, re-verification of a stored manifest with the one verifier, and the whole-slot image check
 * streamed from flash. PowerCut propagates; FlashError becomes a code.
 */
import { bytesEqual } from '../../shared/bytes.js';
import { fail, ok, type Result } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { type Manifest } from '../../shared/manifest.js';
import { type DeviceStateRecord } from '../../shared/state.js';
import { type Verifier } from '../verifier.js';
import { type DeviceState, type VerifiedManifest } from '../verify/manifest.js';
import { type VerifiedTrust } from '../verify/trust.js';
import { type Flash, isErased, readScratch } from './flash.js';
import { type Layout, MANIFEST_HEADER_BYTES, type Region } from './layout.js';
import { flashResult } from './state-store.js';

/** What the device keeps outside the state record: its trust bundle and stored revocation list. */
export type TrustStore = { readonly trust: Uint8Array; readonly revocations?: Uint8Array };

export function deviceStateOf(record: DeviceStateRecord, store: TrustStore): DeviceState {
  return {
    deviceClass: record.deviceClass,
    counter: record.securityCounter,
    trustVersion: record.trustVersion,
    revocationVersion: record.revocationVersion,
    ...(store.revocations !== undefined ? { revocations: store.revocations } : {}),
  };
}

export const activeSlotOf = (record: DeviceStateRecord): 0 | 1 => (record.activeSlot === 1 ? 1 : 0);
export const inactiveSlotOf = (record: DeviceStateRecord): 0 | 1 => (record.activeSlot === 1 ? 0 : 1);

/** [len u32 LE][envelope] padded to writeAlign with the erased value. */
export function encodeManifestArea(envelope: Uint8Array, flash: Pick<Flash, 'writeAlign' | 'erasedValue'>): Uint8Array {
  const length = Math.ceil((MANIFEST_HEADER_BYTES + envelope.length) / flash.writeAlign) * flash.writeAlign;
  const out = new Uint8Array(length).fill(flash.erasedValue);
  const n = envelope.length;
  out[0] = n & 0xff;
  out[1] = (n >>> 8) & 0xff;
  out[2] = (n >>> 16) & 0xff;
  out[3] = n >>> 24;
  out.set(envelope, MANIFEST_HEADER_BYTES);
  return out;
}

/** Erase a slot's manifest area and store an envelope in it (read back). */
export function writeManifestArea(flash: Flash, layout: Layout, slot: 0 | 1, envelope: Uint8Array): Result {
  return writeEnvelopeArea(flash, layout.manifests[slot], envelope, `manifest area ${slot}`);
}

/** The envelope stored in a slot's manifest area (not yet verified), or a failure. */
export function readManifestArea(flash: Flash, layout: Layout, slot: 0 | 1): Result<{ envelope: Uint8Array }> {
  return readEnvelopeArea(flash, layout.manifests[slot], `manifest area ${slot}`);
}

/** Erase an envelope area (manifest, trust or revocation area) and store an envelope in it (read back). */
export function writeEnvelopeArea(flash: Flash, region: Region, envelope: Uint8Array, name: string): Result {
  const bytes = encodeManifestArea(envelope, flash);
  if (bytes.length > region.size) return fail('TOO_LARGE', `envelope does not fit ${name}`);
  const r = flashResult(() => {
    flash.erase(region.offset, region.size);
    flash.write(region.offset, bytes);
    return { back: flash.read(region.offset, bytes.length) };
  });
  if (!r.ok) return r;
  return bytesEqual(r.back, bytes) ? ok({}) : fail('FLASH_READBACK_MISMATCH', name);
}

/** The envelope stored in an envelope area (not verified), or MALFORMED when empty or damaged. */
export function readEnvelopeArea(flash: Flash, region: Region, name: string): Result<{ envelope: Uint8Array }> {
  const head = flashResult(() => ({ bytes: flash.read(region.offset, MANIFEST_HEADER_BYTES) }));
  if (!head.ok) return head;
  const h = head.bytes;
  const n = (h[0] | (h[1] << 8) | (h[2] << 16) | (h[3] << 24)) >>> 0;
  if (n === 0 || n > LIMITS.maxEnvelopeBytes || MANIFEST_HEADER_BYTES + n > region.size) return fail('MALFORMED', `${name} is empty or damaged`);
  return flashResult(() => ({ envelope: flash.read(region.offset + MANIFEST_HEADER_BYTES, n) }));
}

/**
 * The trust bundle and revocation list the device uses now: the ones stored on flash when the state
 * record names them (their area must hold exactly the envelope whose SHA-256 the record carries, else
 * STATE_CORRUPT: fail closed, never fall back to an older or missing list), else the factory values
 * given in the configuration (`fallback`). Signatures and versions are checked by the verifier (V2,
 * V3) wherever the store is used.
 */
export function loadTrustStore(
  sha256: (data: Uint8Array) => Uint8Array,
  flash: Flash,
  layout: Layout,
  record: DeviceStateRecord,
  fallback: TrustStore,
): Result<{ store: TrustStore }> {
  let trust = fallback.trust;
  if (record.trustArea !== undefined || record.trustDigest !== undefined) {
    const t = readStored(sha256, flash, layout.trustAreas, record.trustArea, record.trustDigest, 'trust');
    if (!t.ok) return t;
    trust = t.envelope;
  }
  let revocations = fallback.revocations;
  if (record.revocationArea !== undefined || record.revocationDigest !== undefined) {
    const r = readStored(sha256, flash, layout.revocationAreas, record.revocationArea, record.revocationDigest, 'revocation');
    if (!r.ok) return r;
    revocations = r.envelope;
  }
  return ok({ store: { trust, ...(revocations !== undefined ? { revocations } : {}) } });
}

function readStored(
  sha256: (data: Uint8Array) => Uint8Array,
  flash: Flash,
  areas: readonly [Region, Region],
  area: number | undefined,
  digest: Uint8Array | undefined,
  what: string,
): Result<{ envelope: Uint8Array }> {
  if ((area !== 0 && area !== 1) || digest === undefined) return fail('STATE_CORRUPT', `the state names no complete stored ${what} envelope`);
  const r = readEnvelopeArea(flash, areas[area], `${what} area ${area}`);
  if (!r.ok) return fail('STATE_CORRUPT', `stored ${what} envelope unreadable: ${r.error}${r.detail ? ` (${r.detail})` : ''}`);
  if (!bytesEqual(sha256(r.envelope), digest)) return fail('STATE_CORRUPT', `${what} area ${area} does not hold the envelope the state names`);
  return r;
}

/**
 * Re-verify the manifest stored for a slot with the one verifier against the current trust,
 * revocations and state, and check it is the manifest the state record names (`expected`).
 */
export function verifyStoredManifest(
  verifier: Verifier,
  flash: Flash,
  layout: Layout,
  slot: 0 | 1,
  record: DeviceStateRecord,
  store: TrustStore,
  expected: Uint8Array,
): Result<VerifiedManifest> {
  const area = readManifestArea(flash, layout, slot);
  if (!area.ok) return area;
  const vm = verifier.verifyManifest(area.envelope, store.trust, deviceStateOf(record, store));
  if (!vm.ok) return vm;
  if (!bytesEqual(vm.manifestDigest, expected)) return fail('BOOT_IMAGE_INVALID', `manifest area ${slot} holds another manifest`);
  return vm;
}

/** Stream the slot's image from flash through imageVerifier (one chunk of RAM at a time). */
export function verifySlotImage(verifier: Verifier, flash: Flash, layout: Layout, slot: 0 | 1, manifest: Manifest): Result {
  const region = layout.slots[slot];
  if (manifest.imageSize > region.size) return fail('SLOT_TOO_SMALL', `image of ${manifest.imageSize} bytes in a slot of ${region.size}`);
  const iv = verifier.imageVerifier(manifest);
  const scratch = new Uint8Array(manifest.chunkSize);
  for (let at = 0; at < manifest.imageSize; at += manifest.chunkSize) {
    const length = Math.min(manifest.chunkSize, manifest.imageSize - at);
    const piece = flashResult(() => ({ bytes: readScratch(flash, region.offset + at, length, scratch) }));
    if (!piece.ok) return piece;
    const u = iv.update(piece.bytes);
    if (!u.ok) return u;
  }
  return iv.finish();
}

/**
 * SPEC.md §16.8 on the device: under the trust bundle's log policy a new download needs a log proof
 * (LOG_PROOF_MISSING) that passes L1–L7 against the checkpoint the state record holds. The result
 * is the state fields to write with the download: the proven checkpoint when it advanced, else none.
 */
export function checkLogProof(
  verifier: Verifier,
  trust: VerifiedTrust,
  record: DeviceStateRecord,
  envelope: Uint8Array,
  proof: Uint8Array | undefined,
): Result<{ checkpoint: { logSize?: number; logRoot?: Uint8Array } }> {
  if (!trust.bundle.log) return ok({ checkpoint: {} });
  if (proof === undefined) return fail('LOG_PROOF_MISSING', 'the trust bundle requires a log proof');
  const stored = record.logSize !== undefined && record.logRoot ? { size: record.logSize, root: record.logRoot } : undefined;
  const r = verifier.verifyLogProof(envelope, proof, trust, stored);
  if (!r.ok) return r;
  return ok({ checkpoint: r.advanced ? { logSize: r.checkpoint.size, logRoot: r.checkpoint.root } : {} });
}

/**
 * Make [at, at + length) of a slot erased again: erase the blocks covering it, then write back the
 * marked chunks (`marks`) that share those blocks (chunks smaller than an erase block). A power cut
 * in between loses those chunks' bytes while their marks stay; finishDownload's whole-slot check
 * catches it.
 */
export function clearRegion(f: Flash, marks: readonly boolean[], m: Manifest, index: number, at: number, length: number, slotStart: number): Result {
  const E = f.eraseBlockSize;
  const W = f.writeAlign;
  const first = Math.floor(at / E) * E;
  const end = Math.ceil((at + length) / E) * E;
  const keep: { offset: number; bytes: Uint8Array }[] = [];
  return flashResult(() => {
    for (let j = 0; j < marks.length; j++) {
      if (j === index || !marks[j]) continue;
      const len = Math.ceil(Math.min(m.chunkSize, m.imageSize - j * m.chunkSize) / W) * W;
      const s = Math.max(first, slotStart + j * m.chunkSize);
      const e = Math.min(end, slotStart + j * m.chunkSize + len);
      if (s < e) keep.push({ offset: s, bytes: f.read(s, e - s) });
    }
    f.erase(first, end - first);
    for (const k of keep) if (!isErased(k.bytes, f.erasedValue)) f.write(k.offset, k.bytes);
    return {};
  });
}
