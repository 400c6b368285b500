/**
 * The update agent (SPEC.md §11.3): a state machine over one Flash with explicit steps.
 *
 *   idle --beginUpdate--> downloading --writeChunk*--> --finishDownload--> pending
 *   pending --boot (trial)--> pending(trialBoots >= 1) --confirm--> idle (new image active, counter raised)
 *   pending --boot with trialBoots > max, or invalid--> idle (reverted, old image active)
 *
 * Every method returns a Result ({ ok, code, error }) and never throws, except PowerCut, which models
 * the CPU stopping and propagates. After a reset a new agent opens the same flash; the state record
 * says where the update was.
 *
 * Resume: the progress area holds one writeAlign word per chunk, written once, only after the chunk
 * was verified (verifyChunk or a proven digest page), written and read back. After a reset the agent
 * trusts these marks only as "no need to fetch again": finishDownload streams the whole slot through
 * imageVerifier before the image can become pending, so a wrongly marked chunk (torn write, bit flip)
 * is caught there; the progress is then cleared and the download continues (chunks whose bytes are
 * already right are not rewritten).
 */
import { bytesEqual } from '../../shared/bytes.js';
import { type Result, fail, ok } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { type Manifest } from '../../shared/manifest.js';
import { chunkCount } from '../../shared/merkle.js';
import { type DeviceStateRecord } from '../../shared/state.js';
import { createVerifier, type Verifier } from '../verifier.js';
import { type DigestPage } from '../verify/image.js';
import { type VerifiedManifest } from '../verify/manifest.js';
import { type Flash } from './flash.js';
import { type Layout } from './layout.js';
import {
  type TrustStore, activeSlotOf, deviceStateOf, inactiveSlotOf, verifySlotImage, verifyStoredManifest, writeManifestArea,
} from './slot.js';
import { type StateUpdate, flashResult, loadState, provisionState, saveState } from './state-store.js';

export type AgentConfig = TrustStore & {
  readonly flash: Flash;
  readonly layout: Layout;
  /** The one verifier, bound to this platform's primitives (default: pure JS). */
  readonly verifier?: Verifier;
};

export type AgentPhase = 'idle' | 'downloading' | 'pending';

const DEFAULT_VERIFIER = createVerifier();

export class UpdateAgent {
  readonly #flash: Flash;
  readonly #layout: Layout;
  readonly #store: TrustStore;
  readonly #v: Verifier;
  /** The verified manifest of the download in progress (loaded lazily after a reset). */
  #current: { manifest: Manifest; digest: Uint8Array } | null = null;
  /** Digest pages proven by this agent for the current download. */
  readonly #pages = new WeakSet<DigestPage>();

  constructor(config: AgentConfig) {
    this.#flash = config.flash;
    this.#layout = config.layout;
    this.#store = { trust: config.trust, ...(config.revocations !== undefined ? { revocations: config.revocations } : {}) };
    this.#v = config.verifier ?? DEFAULT_VERIFIER;
  }

  /** The state record and the phase it implies. */
  status(): Result<{ state: DeviceStateRecord; phase: AgentPhase }> {
    const s = loadState(this.#flash, this.#layout);
    if (!s.ok) return s;
    const r = s.record;
    return ok({ state: r, phase: r.pending ? 'pending' as const : r.downloading ? 'downloading' as const : 'idle' as const });
  }

  /**
   * Verify a manifest (before anything is written) and start, or resume, downloading its image into
   * the inactive slot.
   */
  beginUpdate(envelope: Uint8Array): Result<{ resumed: boolean; chunks: number; missing: number }> {
    const s = loadState(this.#flash, this.#layout);
    if (!s.ok) return s;
    let rec = s.record;
    if (rec.pending) return fail('AGENT_BUSY', 'an installed image awaits its trial boot and confirmation');
    const vm = this.#v.verifyManifest(envelope, this.#store.trust, deviceStateOf(rec, this.#store));
    if (!vm.ok) return vm;
    const m = vm.manifest;
    const slot = inactiveSlotOf(rec);
    const region = this.#layout.slots[slot];
    const n = chunkCount(m.imageSize, m.chunkSize);
    const padded = Math.ceil(m.imageSize / this.#flash.writeAlign) * this.#flash.writeAlign;
    if (padded > region.size || n > this.#layout.maxChunks) return fail('SLOT_TOO_SMALL', `image of ${m.imageSize} bytes (${n} chunks), slot of ${region.size} bytes (${this.#layout.maxChunks} chunks)`);
    if (m.chunkSize % this.#flash.writeAlign !== 0) return fail('SLOT_TOO_SMALL', `chunk size ${m.chunkSize} is not a multiple of the write alignment`);
    if (rec.installed && bytesEqual(rec.installed, vm.manifestDigest)) return fail('AGENT_BAD_STATE', 'this manifest is already installed');

    if (rec.downloading && bytesEqual(rec.downloading, vm.manifestDigest)) {
      const stored = verifyStoredManifest(this.#v, this.#flash, this.#layout, slot, rec, this.#store, vm.manifestDigest);
      if (stored.ok) {
        this.#current = { manifest: m, digest: vm.manifestDigest };
        const missing = this.missingChunks().length;
        return ok({ resumed: true, chunks: n, missing });
      }
      // The stored copy is damaged: start over below.
    }

    // A new download. First forget any other download, so that a power cut below leaves "idle".
    this.#current = null;
    if (rec.downloading) {
      const { downloading: _, ...rest } = rec;
      const w = saveState(this.#flash, this.#layout, rest);
      if (!w.ok) return w;
      rec = w.record;
    }
    const prog = this.#layout.progress;
    const erased = flashResult(() => {
      this.#flash.erase(prog.offset, prog.size);
      return {};
    });
    if (!erased.ok) return erased;
    const stored = writeManifestArea(this.#flash, this.#layout, slot, envelope);
    if (!stored.ok) return stored;
    const E = this.#flash.eraseBlockSize;
    const span = Math.ceil(padded / E) * E;
    const slotErased = flashResult(() => {
      this.#flash.erase(region.offset, span);
      return {};
    });
    if (!slotErased.ok) return slotErased;
    const { lastError: _e, ...base } = rec;
    const w = saveState(this.#flash, this.#layout, { ...base, downloading: vm.manifestDigest });
    if (!w.ok) return w;
    this.#current = { manifest: m, digest: vm.manifestDigest };
    return ok({ resumed: false, chunks: n, missing: n });
  }

  /** Indices of the chunks not yet verified and written (re-read from the progress area). */
  missingChunks(): number[] {
    const cur = this.#download();
    if (!cur.ok) return [];
    const marks = this.#marks(cur.manifest);
    if (marks === null) return [];
    const out: number[] = [];
    marks.forEach((m, i) => { if (!m) out.push(i); });
    return out;
  }

  /**
   * Prove a digest page against the current download's manifest; its chunks can then be written with
   * `writeChunk(index, bytes, page)` at one hash each.
   */
  verifyDigestPage(page: number, leaves: Uint8Array, proof: Uint8Array): Result<{ digestPage: DigestPage }> {
    const cur = this.#download();
    if (!cur.ok) return cur;
    const r = this.#v.verifyDigestPage(cur.manifest, page, leaves, proof);
    if (r.ok) this.#pages.add(r.digestPage);
    return r;
  }

  /**
   * Verify one chunk, then write it into the inactive slot, read it back and mark it in the progress
   * area. A chunk that fails verification touches no flash.
   */
  writeChunk(index: number, bytes: Uint8Array, proof: Uint8Array | DigestPage): Result<{ written: boolean }> {
    const cur = this.#download();
    if (!cur.ok) return cur;
    const m = cur.manifest;
    let checked: Result;
    if (proof instanceof Uint8Array) checked = this.#v.verifyChunk(m, index, bytes, proof);
    else if (this.#pages.has(proof)) checked = proof.checkChunk(index, bytes);
    else checked = fail('DIGEST_PAGE_MISMATCH', 'digest page not proven by this agent for this download');
    if (!checked.ok) return checked;

    const f = this.#flash;
    const W = f.writeAlign;
    const markAt = this.#layout.progress.offset + index * W;
    const mark = flashResult(() => ({ word: f.read(markAt, W) }));
    if (!mark.ok) return mark;
    if (!isErased(mark.word, f.erasedValue)) return ok({ written: false }); // already verified and written

    const slot = this.#slot(cur.record);
    const at = this.#layout.slots[slot].offset + index * m.chunkSize;
    const data = new Uint8Array(Math.ceil(bytes.length / W) * W).fill(f.erasedValue);
    data.set(bytes);
    const now = flashResult(() => ({ bytes: f.read(at, data.length) }));
    if (!now.ok) return now;
    if (!bytesEqual(now.bytes, data)) {
      if (!isErased(now.bytes, f.erasedValue)) {
        const repaired = this.#clearRegion(m, index, at, data.length, this.#layout.slots[slot].offset);
        if (!repaired.ok) return repaired;
      }
      const w = flashResult(() => {
        f.write(at, data);
        return { back: f.read(at, data.length) };
      });
      if (!w.ok) return w;
      if (!bytesEqual(w.back, data)) return fail('FLASH_READBACK_MISMATCH', `chunk ${index}`);
    }
    const markWord = new Uint8Array(W).fill(~f.erasedValue & 0xff);
    const marked = flashResult(() => {
      f.write(markAt, markWord);
      return {};
    });
    if (!marked.ok) return marked;
    return ok({ written: true });
  }

  /** All chunks written: verify the whole slot from flash, then record the image as pending. */
  finishDownload(): Result<{ slot: 0 | 1 }> {
    const cur = this.#download();
    if (!cur.ok) return cur;
    const missing = this.missingChunks();
    if (missing.length > 0) return fail('AGENT_BAD_STATE', `${missing.length} chunks missing`);
    const slot = this.#slot(cur.record);
    const check = verifySlotImage(this.#v, this.#flash, this.#layout, slot, cur.manifest);
    if (!check.ok) {
      // A mark lied (torn write, bit flip): fetch again; chunks already right are not rewritten.
      const prog = this.#layout.progress;
      const erased = flashResult(() => {
        this.#flash.erase(prog.offset, prog.size);
        return {};
      });
      if (!erased.ok) return erased;
      return check;
    }
    const { downloading: _d, lastError: _e, ...rest } = cur.record;
    const w = saveState(this.#flash, this.#layout, { ...rest, pending: cur.digest, trialBoots: 0 });
    if (!w.ok) return w;
    this.#current = null;
    return ok({ slot });
  }

  /**
   * The application confirms that the trial boot of the pending image works: only now is the
   * security counter raised to the new manifest's counter, and the new slot becomes active.
   */
  confirm(): Result<{ slot: 0 | 1; counter: number }> {
    const s = loadState(this.#flash, this.#layout);
    if (!s.ok) return s;
    const rec = s.record;
    if (!rec.pending) return fail('AGENT_BAD_STATE', 'no image is pending');
    if (rec.trialBoots < 1) return fail('NOT_CONFIRMED', 'the pending image has not been trial-booted');
    const slot = inactiveSlotOf(rec);
    const vm = verifyStoredManifest(this.#v, this.#flash, this.#layout, slot, rec, this.#store, rec.pending);
    if (!vm.ok) return vm;
    const counter = Math.max(rec.securityCounter, vm.manifest.securityCounter);
    if (counter > LIMITS.maxCounter || rec.sequence >= LIMITS.maxCounter) return fail('COUNTER_EXHAUSTED', 'the counter or the state sequence cannot be raised');
    const { pending, lastError: _e, downloading: _d, ...rest } = rec;
    const next: StateUpdate = {
      ...rest,
      securityCounter: counter,
      trustVersion: Math.max(rec.trustVersion, vm.trustVersion),
      revocationVersion: Math.max(rec.revocationVersion, vm.revocationVersion),
      activeSlot: slot,
      installed: pending,
      trialBoots: 0,
    };
    const w = saveState(this.#flash, this.#layout, next);
    if (!w.ok) return w;
    return ok({ slot, counter });
  }

  #slot(record: DeviceStateRecord): 0 | 1 {
    return inactiveSlotOf(record);
  }

  /** The download in progress with its verified manifest (re-verified from flash after a reset). */
  #download(): Result<{ manifest: Manifest; digest: Uint8Array; record: DeviceStateRecord }> {
    const s = loadState(this.#flash, this.#layout);
    if (!s.ok) return s;
    const rec = s.record;
    if (!rec.downloading) return fail('AGENT_BAD_STATE', 'no download in progress');
    if (this.#current && bytesEqual(this.#current.digest, rec.downloading)) return ok({ ...this.#current, record: rec });
    const vm: Result<VerifiedManifest> = verifyStoredManifest(this.#v, this.#flash, this.#layout, inactiveSlotOf(rec), rec, this.#store, rec.downloading);
    if (!vm.ok) return vm;
    this.#current = { manifest: vm.manifest, digest: vm.manifestDigest };
    return ok({ ...this.#current, record: rec });
  }

  /** Per chunk: true when its progress word is not erased (written after verify + write + read-back). */
  #marks(m: Manifest): boolean[] | null {
    const n = chunkCount(m.imageSize, m.chunkSize);
    const W = this.#flash.writeAlign;
    const r = flashResult(() => ({ words: this.#flash.read(this.#layout.progress.offset, n * W) }));
    if (!r.ok) return null;
    const out: boolean[] = [];
    for (let i = 0; i < n; i++) out.push(!isErased(r.words.subarray(i * W, (i + 1) * W), this.#flash.erasedValue));
    return out;
  }

  /**
   * Make [at, at + length) erased again: erase the blocks covering it, then write back the marked
   * chunks that share those blocks (chunks smaller than an erase block). A power cut in between
   * loses those chunks' bytes while their marks stay; finishDownload's whole-slot check catches it.
   */
  #clearRegion(m: Manifest, index: number, at: number, length: number, slotStart: number): Result {
    const f = this.#flash;
    const E = f.eraseBlockSize;
    const W = f.writeAlign;
    const first = Math.floor(at / E) * E;
    const end = Math.ceil((at + length) / E) * E;
    const marks = this.#marks(m) ?? [];
    const keep: { offset: number; bytes: Uint8Array }[] = [];
    const r = flashResult(() => {
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
    return r;
  }

}

function isErased(bytes: Uint8Array, erased: number): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== erased) return false;
  return true;
}

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
  const vm = v.verifyManifest(input.envelope, input.trust, { deviceClass: input.deviceClass, counter: 0, ...(input.revocations ? { revocations: input.revocations } : {}) });
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
  });
  if (!st.ok) return st;
  return ok({ state: st.record });
}

export { activeSlotOf, inactiveSlotOf };
