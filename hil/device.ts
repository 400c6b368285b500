/**
 * A simulated fwseal device (issue 6): the real UpdateAgent and boot agent over a file flash in a
 * per-device directory, behind an SmpServer on a byte end (the device side of a serial port). A
 * process restart is a device reset that keeps flash. hil/device-main.ts runs one in its own process.
 *
 * Image upload (group 1) carries an update bundle (SPEC.md §13.5): the device verifies the manifest
 * before writing anything (rejections answer the fwseal code), proves each digest page, checks each
 * chunk against it before writing, and decides the resume offset from what its flash holds: after a
 * reset it skips the pages and chunks already written (UpdateAgent.missingChunks).
 *
 * Hostile requests (SPEC.md §13.7): upload offsets and lengths are checked by the UploadReceiver
 * (hil/upload.ts) before anything is sized by them; anything a handler throws is answered EUNKNOWN
 * by the SmpServer and logged. Only a power cut (below) ends the device.
 *
 * Faults (power cuts) come from the rig, not the wire: `armFault` cuts the power after K chunks, or
 * before / in the middle of the Nth flash operation of a write, a commit (finishDownload) or a
 * confirm. A cut calls `powerCut` (in the device process: SIGKILL to itself).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CodeName, CODES, type Result, codeName, ok } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { type BundleLayout, type BundlePage, BUNDLE_HEADER_BYTES, bundleLayout, chunkLength, chunkOffset, parseBundleHeader } from '../shared/bundle.js';
import {
  type DeviceStatus, type EnvelopeUploadRequest, type ImageSlotState, type ImageStateResponse, type SmpError, type SmpHeader, IMAGE_UPLOAD_BOUNDS,
  MGMT_ERR, SMP_GROUP, SMP_VERSION, echo, imageState, imageStateWrite, imageUpload, manifestUpload, params, reset, revocationUpdate, status,
  trustUpdate,
} from '../shared/smp.js';
import { UpdateAgent, provision } from '../device/agent/agent.js';
import { type BootResult, boot } from '../device/agent/boot.js';
import { type Flash, type FlashGeometry } from '../device/agent/flash.js';
import { type Layout, createLayout, layoutBytes } from '../device/agent/layout.js';
import { loadState } from '../device/agent/state-store.js';
import { type Verifier, createVerifier, parseEnvelope, parseManifest } from '../device/index.js';
import { type DigestPage } from '../device/verify/image.js';
import { openFileFlash } from '../device/node/file-flash.js';
import { nodeSha256 } from '../host/hash.js';
import { type ByteEnd, SmpServer } from './smp-endpoint.js';
import { EnvelopeReceiver, UploadReceiver } from './upload.js';

export const DEVICE_CONFIG_FILE = 'device.json';
export const FLASH_FILE = 'flash.img';
export const TRUST_FILE = 'factory-trust.cbor';
const LAST_CODE_FILE = 'last-code';

export type DeviceConfig = {
  readonly deviceClass: string;
  readonly geometry: FlashGeometry;
  readonly slotSize: number;
  readonly maxTrialBoots: number;
};

/** Where a power cut happens (the device process is killed there). */
export type PowerCutPoint =
  | { readonly at: 'chunk'; readonly after: number }
  | { readonly at: 'write' | 'commit' | 'confirm'; readonly op?: number; readonly torn?: boolean };

/** Factory provisioning of a device directory: flash file, config, factory trust; slot A confirmed. */
export function provisionDevice(dir: string, input: {
  readonly deviceClass: string; readonly trust: Uint8Array; readonly revocations?: Uint8Array;
  readonly envelope: Uint8Array; readonly image: Uint8Array; readonly slotSize?: number; readonly maxTrialBoots?: number;
}): Result<{ config: DeviceConfig }> {
  mkdirSync(dir, { recursive: true });
  const E = 4096;
  const slotSize = input.slotSize ?? Math.max(64 * 1024, Math.ceil((input.image.length * 2) / E) * E);
  const geometry: FlashGeometry = { size: layoutBytes(E, 8, slotSize), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
  const config: DeviceConfig = { deviceClass: input.deviceClass, geometry, slotSize, maxTrialBoots: input.maxTrialBoots ?? 2 };
  writeFileSync(join(dir, DEVICE_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
  writeFileSync(join(dir, TRUST_FILE), input.trust);
  const flash = openFileFlash(join(dir, FLASH_FILE), geometry, { create: true });
  try {
    const r = provision(flash, createLayout(geometry, { slotSize }), {
      deviceClass: input.deviceClass, trust: input.trust, envelope: input.envelope, image: input.image,
      verifier: createVerifier({ sha256: nodeSha256 }), ...(input.revocations ? { revocations: input.revocations } : {}),
    });
    if (!r.ok) return r;
  } finally {
    flash.close();
  }
  return ok({ config });
}

/** A Flash that cuts the power at an armed operation (before it, or half-way through it). */
class FaultFlash implements Flash {
  readonly size: number;
  readonly eraseBlockSize: number;
  readonly writeAlign: number;
  readonly erasedValue: number;
  #countdown = 0;
  #torn = false;

  constructor(private readonly inner: Flash, private readonly cut: () => never) {
    ({ size: this.size, eraseBlockSize: this.eraseBlockSize, writeAlign: this.writeAlign, erasedValue: this.erasedValue } = inner);
  }

  /** Cut at the `op`-th erase/write from now (1 = the next one). */
  arm(op: number, torn: boolean): void {
    this.#countdown = op;
    this.#torn = torn;
  }

  disarm(): void {
    this.#countdown = 0;
  }

  read(offset: number, length: number): Uint8Array {
    return this.inner.read(offset, length);
  }

  erase(offset: number, length: number): void {
    if (this.#due()) {
      const E = this.eraseBlockSize;
      const half = Math.floor(length / 2 / E) * E;
      if (this.#torn && half > 0) this.inner.erase(offset, half);
      this.cut();
    }
    this.inner.erase(offset, length);
  }

  write(offset: number, data: Uint8Array): void {
    if (this.#due()) {
      const W = this.writeAlign;
      const half = Math.floor(data.length / 2 / W) * W;
      if (this.#torn && half > 0) this.inner.write(offset, data.subarray(0, half));
      this.cut();
    }
    this.inner.write(offset, data);
  }

  #due(): boolean {
    if (this.#countdown <= 0) return false;
    return --this.#countdown === 0;
  }
}

export type SimDeviceOptions = {
  readonly dir: string;
  readonly end: ByteEnd;
  /** Called after the response to OS reset went out: the process restarts. */
  readonly onReset: () => void;
  /** The power goes away now (never returns). */
  readonly powerCut: () => never;
  /** Log of requests and state transitions (one line each). */
  readonly log?: (line: string) => void;
  readonly verifier?: Verifier;
};

/** The bundle upload in progress; offsets, `len` and resume are the UploadReceiver's. */
type Upload = {
  readonly len: number;
  header: Uint8Array;
  /** From the bundle header (-1 until it is complete). */
  manifestLength: number;
  manifest: Uint8Array | null;
  layout: BundleLayout | null;
  missing: Set<number>;
  /** Digests + proof of the page being received. */
  pageBuf: Uint8Array | null;
  page: DigestPage | null;
  pageIndex: number;
  chunkBuf: Uint8Array | null;
};

/** SMP v1 rc for an fwseal rejection (v2 requests get the fwseal code itself as a group-64 error). */
function mgmtRc(code: number): number {
  if (code === CODES.AGENT_BUSY) return MGMT_ERR.EBUSY;
  if (code === CODES.SLOT_TOO_SMALL) return MGMT_ERR.ENOMEM;
  if (code < 200) return MGMT_ERR.EINVAL;
  if (code < 400) return MGMT_ERR.EACCESSDENIED;
  if (code < 500) return MGMT_ERR.ECORRUPT;
  if (code === CODES.AGENT_BAD_STATE || code === CODES.NOT_CONFIRMED) return MGMT_ERR.EBADSTATE;
  return MGMT_ERR.EUNKNOWN;
}

export class SimDevice {
  readonly config: DeviceConfig;
  readonly server: SmpServer;
  readonly #dir: string;
  readonly #flash: FaultFlash;
  readonly #close: () => void;
  readonly #layout: Layout;
  readonly #trust: Uint8Array;
  readonly #agent: UpdateAgent;
  readonly #log: (line: string) => void;
  readonly #opts: SimDeviceOptions;
  #boot: BootResult;
  #lastCode: number;
  #upload: Upload | null = null;
  readonly #bundleReceiver: UploadReceiver;
  /** The longest bundle whose image could fit the slot (largest manifest, smallest chunks): `len` above it is refused before anything is kept. */
  readonly #maxBundleBytes: number;
  #chunkFault: number | null = null;
  #pendingFault: { at: 'commit' | 'confirm'; op: number; torn: boolean } | null = null;
  /** Set when the power goes: the exception that follows is not a handler failure and is not answered. */
  #poweredOff = false;

  constructor(opts: SimDeviceOptions) {
    this.#opts = opts;
    this.#dir = opts.dir;
    this.#log = opts.log ?? (() => {});
    this.config = JSON.parse(readFileSync(join(opts.dir, DEVICE_CONFIG_FILE), 'utf8')) as DeviceConfig;
    this.#trust = new Uint8Array(readFileSync(join(opts.dir, TRUST_FILE)));
    const file = openFileFlash(join(opts.dir, FLASH_FILE), this.config.geometry);
    this.#close = () => file.close();
    this.#flash = new FaultFlash(file, () => this.#powerCut());
    this.#layout = createLayout(this.config.geometry, { slotSize: this.config.slotSize });
    const verifier = opts.verifier ?? createVerifier({ sha256: nodeSha256 });
    this.#lastCode = existsSync(join(opts.dir, LAST_CODE_FILE)) ? Number(readFileSync(join(opts.dir, LAST_CODE_FILE), 'utf8')) || 0 : 0;
    this.#boot = boot(this.#flash, this.#layout, this.#trust, { maxTrialBoots: this.config.maxTrialBoots, verifier });
    if (this.#boot.reverted || this.#boot.slot === null) this.#setCode(this.#boot.code);
    this.#log(`boot: slot ${this.#boot.slot} ${this.#boot.version ?? '-'}${this.#boot.trial ? ' on trial' : ''} (${this.#boot.error})`);
    this.#agent = new UpdateAgent({ flash: this.#flash, layout: this.#layout, trust: this.#trust, verifier });
    this.#maxBundleBytes = bundleLayout(LIMITS.maxEnvelopeBytes, this.config.slotSize, LIMITS.minChunkSize).length;
    this.#bundleReceiver = new UploadReceiver({
      begin: (len, _sha, header) => this.#beginBundle(len, header),
      write: (off, data, header) => this.#writeBundle(off, data, header),
    }, IMAGE_UPLOAD_BOUNDS);
    const envelope = (kind: string, apply: (bytes: Uint8Array) => Result<object>) => {
      const receiver = new EnvelopeReceiver((bytes) => this.#applyEnvelope(kind, bytes, apply));
      return (req: EnvelopeUploadRequest, header: SmpHeader) => receiver.handle(req, header);
    };
    // SPEC.md §13.7: whatever a handler throws is answered EUNKNOWN and logged; only a power cut ends the device.
    this.server = new SmpServer(opts.end, { log: this.#log, fatal: () => this.#poweredOff })
      .handle(echo, (req) => ({ value: { text: req.text } }))
      .handle(params, () => ({ value: { bufSize: LIMITS.maxSmpPacketBytes, bufCount: 1 } }))
      .handle(reset, () => {
        this.#log('reset requested');
        setImmediate(opts.onReset);
        return { value: {} };
      })
      .handle(status, () => ({ value: this.status() }))
      .handle(imageState, () => ({ value: this.#imageState() }))
      .handle(imageStateWrite, (req, header) => this.#stateWrite(req.confirm, header))
      .handle(imageUpload, (req, header) => this.#bundleReceiver.handle(req, header))
      .handle(manifestUpload, envelope('manifest', (b) => this.#agent.beginUpdate(b)))
      .handle(trustUpdate, envelope('trust', (b) => this.#agent.updateTrust(b)))
      .handle(revocationUpdate, envelope('revocation', (b) => this.#agent.updateRevocations(b)));
  }

  #powerCut(): never {
    this.#poweredOff = true;
    return this.#opts.powerCut();
  }

  close(): void {
    this.server.close();
    this.#close();
  }

  /** Arm a power cut (from the rig's side channel). */
  armFault(point: PowerCutPoint): void {
    this.#log(`fault armed: ${JSON.stringify(point)}`);
    if (point.at === 'chunk') this.#chunkFault = point.after;
    else if (point.at === 'write') this.#flash.arm(point.op ?? 1, point.torn ?? false);
    else this.#pendingFault = { at: point.at, op: point.op ?? 1, torn: point.torn ?? false };
  }

  status(): DeviceStatus {
    const s = this.#agent.status();
    const rec = s.ok ? s.state : null;
    const phase = this.#boot.slot === null ? 'bricked' : this.#boot.trial ? 'trial' : s.ok ? s.phase : 'corrupt';
    return {
      slot: this.#boot.slot ?? 0xff, version: this.#boot.version ?? '', counter: rec?.securityCounter ?? 0, code: this.#lastCode, phase,
      ...(rec ? { trust: rec.trustVersion, revocation: rec.revocationVersion } : {}),
    };
  }

  #setCode(code: number): void {
    this.#lastCode = code;
    writeFileSync(join(this.#dir, LAST_CODE_FILE), String(code));
  }

  #reject(r: { code: number; error: string; detail?: string }, header: SmpHeader | undefined, what: string): { error: SmpError } {
    this.#setCode(r.code);
    this.#log(`${what}: rejected ${r.error} (${r.code})${r.detail ? ': ' + r.detail : ''}`);
    return { error: header?.version === SMP_VERSION.v2 ? { rc: r.code, group: SMP_GROUP.fwseal } : { rc: mgmtRc(r.code), rsn: codeName(r.code) } };
  }

  #imageState(): ImageStateResponse {
    const images: ImageSlotState[] = [];
    if (this.#boot.slot !== null) images.push({ slot: this.#boot.slot, version: this.#boot.version ?? '', bootable: true, active: true, confirmed: !this.#boot.trial, pending: false, permanent: false });
    const s = loadState(this.#flash, this.#layout);
    if (s.ok && s.record.pending) images.push({ slot: this.#boot.slot === 0 ? 1 : 0, version: '', bootable: true, pending: true, active: false, confirmed: false, permanent: false });
    return { images };
  }

  #stateWrite(confirm: boolean, header: SmpHeader): { value: ImageStateResponse } | { error: SmpError } {
    if (confirm && this.#boot.trial) {
      this.#armPending('confirm');
      const c = this.#agent.confirm();
      this.#flash.disarm();
      if (!c.ok) return this.#reject(c, header, 'confirm');
      this.#boot = { ...this.#boot, trial: false, counter: c.counter };
      this.#setCode(0);
      this.#log(`confirmed: slot ${c.slot}, counter ${c.counter}`);
    }
    return { value: this.#imageState() };
  }

  #armPending(at: 'commit' | 'confirm'): void {
    if (this.#pendingFault?.at === at) {
      this.#flash.arm(this.#pendingFault.op, this.#pendingFault.torn);
      this.#pendingFault = null;
    }
  }

  /** A group 64 envelope is complete: verify and apply it; its §9 code is the answer's `code`. */
  #applyEnvelope(kind: string, bytes: Uint8Array, apply: (bytes: Uint8Array) => Result<object>): number {
    const r = apply(bytes);
    if (r.ok) {
      if (kind === 'manifest') {
        // A new download began: a bundle upload in progress belongs to the previous one.
        this.#upload = null;
        this.#bundleReceiver.abandon();
      }
      this.#setCode(0);
      this.#log(`${kind}: accepted`);
    } else {
      this.#setCode(r.code);
      this.#log(`${kind}: rejected ${r.error} (${r.code})${r.detail ? ': ' + r.detail : ''}`);
    }
    return r.code;
  }

  /**
   * A new bundle upload (SPEC.md §13.5, §13.7): `len` must leave room for the bundle header and a
   * manifest, and not exceed the longest bundle whose image fits the slot (SLOT_TOO_SMALL, before
   * anything is kept). Offsets, resume and `len` itself are then the UploadReceiver's.
   */
  #beginBundle(len: number, header: SmpHeader | undefined): SmpError | null {
    const refuse = (name: 'BAD_VALUE' | 'SLOT_TOO_SMALL', detail: string) => this.#reject({ code: CODES[name], error: name, detail }, header, 'upload').error;
    if (len <= BUNDLE_HEADER_BYTES) return refuse('BAD_VALUE', `upload len ${len} holds no bundle`);
    if (len > this.#maxBundleBytes) return refuse('SLOT_TOO_SMALL', `upload len ${len}, at most ${this.#maxBundleBytes} for this slot`);
    this.#upload = { len, header: new Uint8Array(0), manifestLength: -1, manifest: null, layout: null, missing: new Set(), pageBuf: null, page: null, pageIndex: -1, chunkBuf: null };
    this.#log(`upload: new bundle of ${len} bytes`);
    return null;
  }

  /** Bundle bytes at `off` (the expected offset): the offset the device wants next, or a rejection (the upload is dropped). */
  #writeBundle(off: number, data: Uint8Array, header: SmpHeader | undefined): SmpError | { next: number } {
    const u = this.#upload;
    if (u === null) return { rc: MGMT_ERR.EBADSTATE, rsn: 'AGENT_BAD_STATE' }; // the receiver begins before it writes
    let pos = off;
    const end = off + data.length;
    while (pos < end) {
      const step = this.#consume(u, data.subarray(pos - off), pos);
      if ('error' in step) {
        this.#upload = null;
        return this.#reject(step.error, header, 'upload').error;
      }
      pos = step.next;
      if (step.jumped) break; // the bytes after a jump are not the ones the device wants
    }
    if (pos === u.len && u.layout !== null && u.missing.size === 0 && u.manifest !== null) {
      const done = this.#finish(u);
      if (done !== null) return this.#reject(done, header, 'commit').error;
    }
    return { next: pos };
  }

  #finish(u: Upload): Result<object> | null {
    this.#armPending('commit');
    const f = this.#agent.finishDownload();
    this.#flash.disarm();
    if (!f.ok) {
      this.#upload = null;
      return f;
    }
    this.#setCode(0);
    this.#log(`download complete: slot ${f.slot} verified and pending`);
    // Kept (complete): a client whose last answer was lost is answered `len` again, not refused.
    u.manifest = null;
    return null;
  }

  /**
   * Take bytes at bundle offset `at` (the expected one). Returns the next offset wanted and whether
   * it is a jump (the rest of `data` is not used).
   */
  #consume(u: Upload, data: Uint8Array, at: number): { next: number; jumped: boolean } | { error: { code: number; error: string; detail?: string } } {
    const bad = (name: CodeName, detail: string) => ({ error: { code: CODES[name], error: name, detail } });
    if (at < BUNDLE_HEADER_BYTES) {
      const n = Math.min(data.length, BUNDLE_HEADER_BYTES - at);
      u.header = concat(u.header, data.subarray(0, n));
      if (u.header.length === BUNDLE_HEADER_BYTES) {
        const len = parseBundleHeader(u.header);
        if (len === null) return bad('MALFORMED', 'not an fwseal update bundle');
        if (len < 1 || len > LIMITS.maxEnvelopeBytes) return bad('TOO_LARGE', `manifest of ${len} bytes`);
        if (BUNDLE_HEADER_BYTES + len > u.len) return bad('BAD_VALUE', `upload len ${u.len} is shorter than its manifest of ${len} bytes`);
        u.manifestLength = len;
        u.manifest = new Uint8Array(0);
      }
      return { next: at + n, jumped: false };
    }
    if (u.layout === null) {
      // The manifest: verified (and the download begun or resumed) before anything is written.
      const want = u.manifestLength;
      const n = Math.min(data.length, want - (at - BUNDLE_HEADER_BYTES));
      u.manifest = concat(u.manifest ?? new Uint8Array(0), data.subarray(0, n));
      if (u.manifest.length < want) return { next: at + n, jumped: false };
      const env = parseEnvelope(u.manifest);
      const m = env.ok ? parseManifest(env.envelope.payload) : null;
      if (!env.ok) return { error: env };
      if (m === null || !m.ok) return m === null ? bad('MALFORMED', 'manifest') : { error: m };
      // The layout is built only for an image that fits this upload (and so the slot): unsigned input sizes nothing.
      if (m.value.imageSize > u.len) return bad('BAD_VALUE', `upload len ${u.len}, the manifest's image is ${m.value.imageSize} bytes`);
      const layout = bundleLayout(want, m.value.imageSize, m.value.chunkSize);
      if (layout.length !== u.len) return bad('BAD_VALUE', `upload len ${u.len}, the bundle of this manifest is ${layout.length} bytes`);
      const begun = this.#agent.beginUpdate(u.manifest);
      if (!begun.ok) return { error: begun };
      this.#setCode(0);
      u.layout = layout;
      u.missing = new Set(this.#agent.missingChunks());
      this.#log(`manifest ${m.value.version} (counter ${m.value.securityCounter}) accepted; ${begun.missing} of ${begun.chunks} chunks to fetch${begun.resumed ? ' (resumed from flash)' : ''}`);
      const next = this.#nextWanted(u, at + n);
      return { next, jumped: next !== at + n };
    }
    const layout = u.layout;
    const page = layout.pages.find((p) => at >= p.digestsAt && at < p.end) as BundlePage;
    if (at < page.chunksAt) {
      // Digest page: leaves then proof, proven against the signed root before its chunks are taken.
      const size = page.leavesBytes + page.proofBytes;
      if (u.pageIndex !== page.page || u.pageBuf === null) {
        u.pageIndex = page.page;
        u.pageBuf = new Uint8Array(0);
        u.page = null;
      }
      const n = Math.min(data.length, size - (at - page.digestsAt));
      u.pageBuf = concat(u.pageBuf, data.subarray(0, n));
      if (u.pageBuf.length < size) return { next: at + n, jumped: false };
      const r = this.#agent.verifyDigestPage(page.page, u.pageBuf.subarray(0, page.leavesBytes), u.pageBuf.subarray(page.leavesBytes));
      if (!r.ok) return { error: r };
      u.page = r.digestPage;
      u.pageBuf = null;
      const next = this.#nextWanted(u, at + n);
      return { next, jumped: next !== at + n };
    }
    // A chunk: collected whole, checked against its proven digest, then written.
    const index = page.firstChunk + Math.floor((at - page.chunksAt) / layout.chunkSize);
    const start = chunkOffset(layout, index);
    const len = chunkLength(layout, index);
    if (at === start) u.chunkBuf = new Uint8Array(0);
    const n = Math.min(data.length, start + len - at);
    u.chunkBuf = concat(u.chunkBuf ?? new Uint8Array(0), data.subarray(0, n));
    if (u.chunkBuf.length < len) return { next: at + n, jumped: false };
    if (u.page === null || u.pageIndex !== page.page) return bad('DIGEST_PAGE_MISMATCH', `chunk ${index} before its digest page`);
    const w = this.#agent.writeChunk(index, u.chunkBuf, u.page);
    u.chunkBuf = null;
    if (!w.ok) return { error: w };
    u.missing.delete(index);
    if (this.#chunkFault !== null && --this.#chunkFault <= 0) {
      this.#log(`power cut after chunk ${index}`);
      this.#powerCut();
    }
    const next = this.#nextWanted(u, at + n);
    return { next, jumped: next !== at + n };
  }

  /**
   * The next bundle offset worth receiving from `at` (a section boundary): pages whose chunks are
   * all written are skipped, and so are written chunks; a page's digests are needed (again, after a
   * reset) before any of its missing chunks.
   */
  #nextWanted(u: Upload, at: number): number {
    const layout = u.layout as BundleLayout;
    for (const p of layout.pages) {
      if (at >= p.end) continue;
      let firstMissing = -1;
      for (let i = Math.max(p.firstChunk, at >= p.chunksAt ? p.firstChunk + Math.floor((at - p.chunksAt) / layout.chunkSize) : p.firstChunk); i < p.endChunk; i++) {
        if (u.missing.has(i)) { firstMissing = i; break; }
      }
      if (firstMissing < 0) { at = p.end; continue; }
      if (u.page === null || u.pageIndex !== p.page) return Math.max(at, p.digestsAt);
      return Math.max(at, chunkOffset(layout, firstMissing));
    }
    return layout.length;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
