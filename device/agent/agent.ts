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
 *
 * Trust: the trust bundle and revocation list in force are the ones stored on flash and named by the
 * state record (provision stores the factory ones; updateTrust / updateRevocations replace them,
 * write-new-then-switch); the config's `trust` / `revocations` apply only while none is stored.
 */
import { bytesEqual } from '../../shared/bytes.js';
import { fail, ok, type Result } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { type Manifest } from '../../shared/manifest.js';
import { chunkCount } from '../../shared/merkle.js';
import { type DeviceStateRecord } from '../../shared/state.js';
import { createVerifier, type Verifier } from '../verifier.js';
import { type DigestPage } from '../verify/image.js';
import { type VerifiedManifest } from '../verify/manifest.js';
import { type Flash, isErased, readScratch, sameBytes } from './flash.js';
import { type Layout } from './layout.js';
import {
  activeSlotOf,
  checkLogProof,
  clearRegion,
  deviceStateOf,
  inactiveSlotOf,
  loadTrustStore,
  type TrustStore,
  verifySlotImage,
  verifyStoredManifest,
  writeManifestArea,
} from './slot.js';
import { flashResult, loadState, type StateUpdate, saveState } from './state-store.js';
import { type TrustContext, updateRevocations, updateTrust } from './trust-update.js';

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
  /** The factory trust bundle and revocation list, used while the state names none stored on flash. */
  readonly #factory: TrustStore;
  readonly #v: Verifier;
  /** The verified manifest of the download in progress (loaded lazily after a reset). */
  #current: { manifest: Manifest; digest: Uint8Array } | null = null;
  /**
   * The state record as this agent last read it, kept only between the calls of one download
   * (chunk writes never change it): every other entry point reads the state from flash again.
   */
  #record: DeviceStateRecord | null = null;
  /** Read buffer of writeChunk (flash read-back without a buffer per chunk). */
  #scratch = new Uint8Array(0);
  /** A chunk padded and aligned for writing (flash writes copy it). */
  #staging = new Uint8Array(0);
  /** Digest pages proven by this agent for the current download. */
  readonly #pages = new WeakSet<DigestPage>();

  constructor(config: AgentConfig) {
    this.#flash = config.flash;
    this.#layout = config.layout;
    this.#factory = { trust: config.trust, ...(config.revocations !== undefined ? { revocations: config.revocations } : {}) };
    this.#v = config.verifier ?? DEFAULT_VERIFIER;
  }

  /** The state record and the phase it implies. */
  status(): Result<{ state: DeviceStateRecord; phase: AgentPhase }> {
    this.#record = null;
    const s = loadState(this.#flash, this.#layout);
    if (!s.ok) return s;
    const r = s.record;
    return ok({ state: r, phase: r.pending ? ('pending' as const) : r.downloading ? ('downloading' as const) : ('idle' as const) });
  }

  /**
   * Verify a manifest (before anything is written) and start, or resume, downloading its image into
   * the inactive slot. Under a log policy (SPEC.md §16.8) a new download needs `logProof`; the
   * checkpoint it proves is stored by the same state write that starts the download. A resume of the
   * download in progress needs none: its manifest passed when the download began.
   */
  beginUpdate(envelope: Uint8Array, logProof?: Uint8Array): Result<{ resumed: boolean; chunks: number; missing: number }> {
    this.#record = null;
    const s = loadState(this.#flash, this.#layout);
    if (!s.ok) return s;
    const rec = s.record;
    if (rec.pending) return fail('AGENT_BUSY', 'an installed image awaits its trial boot and confirmation');
    const st = this.#store(rec);
    if (!st.ok) return st;
    const store = st.store;
    const t = this.#v.loadTrust(store.trust);
    if (!t.ok) return t;
    const vm = this.#v.verifyManifestWithTrust(envelope, t.trust, deviceStateOf(rec, store));
    if (!vm.ok) return vm;
    const m = vm.manifest;
    const slot = inactiveSlotOf(rec);
    const region = this.#layout.slots[slot];
    const n = chunkCount(m.imageSize, m.chunkSize);
    const padded = Math.ceil(m.imageSize / this.#flash.writeAlign) * this.#flash.writeAlign;
    if (padded > region.size || n > this.#layout.maxChunks)
      return fail('SLOT_TOO_SMALL', `image of ${m.imageSize} bytes (${n} chunks), slot of ${region.size} bytes (${this.#layout.maxChunks} chunks)`);
    if (m.chunkSize % this.#flash.writeAlign !== 0) return fail('SLOT_TOO_SMALL', `chunk size ${m.chunkSize} is not a multiple of the write alignment`);
    if (rec.installed && bytesEqual(rec.installed, vm.manifestDigest)) return fail('AGENT_BAD_STATE', 'this manifest is already installed');

    if (rec.downloading && bytesEqual(rec.downloading, vm.manifestDigest)) {
      const stored = verifyStoredManifest(this.#v, this.#flash, this.#layout, slot, rec, store, vm.manifestDigest);
      if (stored.ok) {
        this.#current = { manifest: m, digest: vm.manifestDigest };
        const missing = this.missingChunks().length;
        return ok({ resumed: true, chunks: n, missing });
      }
      // The stored copy is damaged: start over below.
    }
    const log = checkLogProof(this.#v, t.trust, rec, envelope, logProof); // SPEC.md §16.8, before any write
    if (!log.ok) return log;
    const span = Math.ceil(padded / this.#flash.eraseBlockSize) * this.#flash.eraseBlockSize;
    const started = this.#startDownload(rec, slot, span, envelope, { downloading: vm.manifestDigest, ...log.checkpoint });
    if (!started.ok) return started;
    this.#current = { manifest: m, digest: vm.manifestDigest };
    return ok({ resumed: false, chunks: n, missing: n });
  }

  /**
   * A new download: forget any other one first (a power cut below leaves "idle"), erase the
   * progress area, store the manifest, erase the slot, then one state save records the download
   * (and the log checkpoint its proof advanced to): old or new state, never a mix.
   */
  #startDownload(record: DeviceStateRecord, slot: 0 | 1, span: number, envelope: Uint8Array, fields: Partial<StateUpdate>): Result {
    this.#current = null;
    let rec = record;
    if (rec.downloading) {
      const { downloading: _, ...rest } = rec;
      const w = saveState(this.#flash, this.#layout, rest);
      if (!w.ok) return w;
      rec = w.record;
    }
    const prog = this.#layout.progress;
    const region = this.#layout.slots[slot];
    const erased = flashResult(() => {
      this.#flash.erase(prog.offset, prog.size);
      return {};
    });
    if (!erased.ok) return erased;
    const stored = writeManifestArea(this.#flash, this.#layout, slot, envelope);
    if (!stored.ok) return stored;
    const slotErased = flashResult(() => {
      this.#flash.erase(region.offset, span);
      return {};
    });
    if (!slotErased.ok) return slotErased;
    const { lastError: _e, ...base } = rec;
    return saveState(this.#flash, this.#layout, { ...base, ...fields });
  }

  /** Whether a new download needs a log proof, and from which stored checkpoint size (0: none) its consistency proof must start. */
  logRequirement(): Result<{ required: boolean; fromSize: number }> {
    this.#record = null;
    const s = loadState(this.#flash, this.#layout);
    if (!s.ok) return s;
    const st = this.#store(s.record);
    if (!st.ok) return st;
    const t = this.#v.loadTrust(st.store.trust);
    if (!t.ok) return t;
    return ok({ required: t.trust.bundle.log !== undefined, fromSize: s.record.logSize ?? 0 });
  }

  /** Indices of the chunks not yet verified and written (re-read from the progress area). */
  missingChunks(): number[] {
    const cur = this.#download();
    if (!cur.ok) return [];
    const marks = this.#marks(cur.manifest);
    if (marks === null) return [];
    const out: number[] = [];
    marks.forEach((m, i) => {
      if (!m) out.push(i);
    });
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
    let data = bytes;
    // Padded to the write alignment, and 4-byte aligned in memory so the comparisons below go a word
    // at a time (a chunk inside a received message usually starts at an odd offset): one copy.
    if (bytes.length % W !== 0 || (bytes.byteOffset & 3) !== 0) {
      const n = Math.ceil(bytes.length / W) * W;
      if (this.#staging.length < n) this.#staging = new Uint8Array(n);
      data = this.#staging.subarray(0, n);
      data.set(bytes);
      data.fill(f.erasedValue, bytes.length);
    }
    if (this.#scratch.length < data.length) this.#scratch = new Uint8Array(data.length);
    const scratch = this.#scratch; // holds `now`, then `back` (now is not looked at after the write)
    const now = flashResult(() => ({ bytes: readScratch(f, at, data.length, scratch) }));
    if (!now.ok) return now;
    if (!sameBytes(now.bytes, data)) {
      if (!isErased(now.bytes, f.erasedValue)) {
        const repaired = clearRegion(f, this.#marks(m) ?? [], m, index, at, data.length, this.#layout.slots[slot].offset);
        if (!repaired.ok) return repaired;
      }
      const w = flashResult(() => {
        f.write(at, data);
        return { back: readScratch(f, at, data.length, scratch) };
      });
      if (!w.ok) return w;
      if (!sameBytes(w.back, data)) return fail('FLASH_READBACK_MISMATCH', `chunk ${index}`);
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
    this.#record = null;
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
    this.#record = null;
    const s = loadState(this.#flash, this.#layout);
    if (!s.ok) return s;
    const rec = s.record;
    if (!rec.pending) return fail('AGENT_BAD_STATE', 'no image is pending');
    if (rec.trialBoots < 1) return fail('NOT_CONFIRMED', 'the pending image has not been trial-booted');
    const slot = inactiveSlotOf(rec);
    const st = this.#store(rec);
    if (!st.ok) return st;
    const vm = verifyStoredManifest(this.#v, this.#flash, this.#layout, slot, rec, st.store, rec.pending);
    if (!vm.ok) return vm;
    const counter = Math.max(rec.securityCounter, vm.manifest.securityCounter);
    if (counter > LIMITS.maxCounter || rec.sequence >= LIMITS.maxCounter)
      return fail('COUNTER_EXHAUSTED', 'the counter or the state sequence cannot be raised');
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

  /** Rotate the device's trust bundle (SPEC.md §11.3): see trust-update.ts. */
  updateTrust(candidate: Uint8Array, revocations?: Uint8Array): Result<{ version: number; changed: boolean }> {
    this.#record = null;
    const r = updateTrust(this.#trustContext(), candidate, revocations);
    if (r.ok && r.changed) this.#current = null;
    return r;
  }

  /** Store a new revocation list (SPEC.md §11.3): see trust-update.ts. */
  updateRevocations(list: Uint8Array): Result<{ version: number; changed: boolean }> {
    this.#record = null;
    const r = updateRevocations(this.#trustContext(), list);
    if (r.ok && r.changed) this.#current = null;
    return r;
  }

  /** Re-verify the download in progress under the trust and list in force now (SPEC.md §12.13 step 4). */
  checkDownload(): Result<{ downloading: boolean }> {
    this.#current = null;
    const s = this.status();
    if (!s.ok) return s;
    if (!s.state.downloading) return ok({ downloading: false });
    const d = this.#download();
    return d.ok ? ok({ downloading: true }) : d;
  }

  #trustContext(): TrustContext {
    return { flash: this.#flash, layout: this.#layout, verifier: this.#v, factory: this.#factory };
  }

  /** The trust bundle and revocation list in force: stored on flash, else the factory values. */
  #store(record: DeviceStateRecord): Result<{ store: TrustStore }> {
    return loadTrustStore(this.#v.sha256, this.#flash, this.#layout, record, this.#factory);
  }

  #slot(record: DeviceStateRecord): 0 | 1 {
    return inactiveSlotOf(record);
  }

  /** The download in progress with its verified manifest (re-verified from flash after a reset). */
  #download(): Result<{ manifest: Manifest; digest: Uint8Array; record: DeviceStateRecord }> {
    let rec = this.#record;
    if (rec === null) {
      const s = loadState(this.#flash, this.#layout);
      if (!s.ok) return s;
      rec = this.#record = s.record;
    }
    if (!rec.downloading) return fail('AGENT_BAD_STATE', 'no download in progress');
    if (this.#current && bytesEqual(this.#current.digest, rec.downloading)) return ok({ ...this.#current, record: rec });
    const st = this.#store(rec);
    if (!st.ok) return st;
    const vm: Result<VerifiedManifest> = verifyStoredManifest(this.#v, this.#flash, this.#layout, inactiveSlotOf(rec), rec, st.store, rec.downloading);
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
}

export { activeSlotOf, inactiveSlotOf };
