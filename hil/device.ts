/**
 * A simulated fwseal device (issue 6): the real UpdateAgent and boot agent over a file flash in a
 * per-device directory, behind an SmpServer on a byte end (the device side of a serial port). A
 * process restart is a device reset that keeps flash. hil/device-main.ts runs one in its own process.
 *
 * Image upload (group 1) carries an update bundle (SPEC.md §13.5), taken by an UpdateBundleSink
 * (hil/bundle-sink.ts): the device verifies the manifest before writing anything (rejections answer
 * the fwseal code), proves each digest page, checks each chunk against it before writing, and
 * decides the resume offset from what its flash holds: after a reset it skips the pages and chunks
 * already written (UpdateAgent.missingChunks). Its directory is written by provisionDevice
 * (hil/provision.ts).
 *
 * Hostile requests (SPEC.md §13.7): upload offsets and lengths are checked by the UploadReceiver
 * (hil/upload.ts) before anything is sized by them; anything a handler throws is answered EUNKNOWN
 * by the SmpServer and logged. Only a power cut (below) ends the device.
 *
 * Faults (power cuts) come from the rig, not the wire: `armFault` cuts the power after K chunks, or
 * before / in the middle of the Nth flash operation of a write, a commit (finishDownload) or a
 * confirm (FaultFlash, hil/fault-flash.ts). A cut calls `powerCut` (in the device process: SIGKILL
 * to itself).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { UpdateAgent } from '../device/agent/agent.js';
import { type BootResult, boot } from '../device/agent/boot.js';
import { createLayout, type Layout } from '../device/agent/layout.js';
import { inactiveSlotOf, readManifestArea } from '../device/agent/slot.js';
import { loadState } from '../device/agent/state-store.js';
import { createVerifier, parseEnvelope, parseManifest, type Verifier } from '../device/index.js';
import { openFileFlash } from '../device/node/file-flash.js';
import { nodeSha256 } from '../host/hash.js';
import { bytesEqual } from '../shared/bytes.js';
import { type Result } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import {
  type DeviceStatus,
  type EnvelopeUploadRequest,
  echo,
  type ImageSlotState,
  type ImageStateResponse,
  type ImageStateWriteRequest,
  imageState,
  imageStateWrite,
  imageUpload,
  manifestUpload,
  params,
  reset,
  revocationUpdate,
  status,
  trustUpdate,
} from '../shared/smp/commands.js';
import { IMG_MGMT_ERR, imageGroupError, rejectionError } from '../shared/smp/error-map.js';
import { type SmpError } from '../shared/smp/errors.js';
import { type SmpHeader } from '../shared/smp/packet.js';
import { IMAGE_UPLOAD_BOUNDS } from '../shared/smp/upload.js';
import { type DeviceStateRecord } from '../shared/state.js';
import { type Rejection, UpdateBundleSink } from './bundle-sink.js';
import { FaultFlash } from './fault-flash.js';
import { DEVICE_CONFIG_FILE, type DeviceConfig, FLASH_FILE, TRUST_FILE } from './provision.js';
import { type ByteEnd, SmpServer } from './smp-endpoint.js';
import { EnvelopeReceiver, UploadReceiver } from './upload.js';

const LAST_CODE_FILE = 'last-code';

/** Where a power cut happens (the device process is killed there). */
export type PowerCutPoint =
  | { readonly at: 'chunk'; readonly after: number }
  | { readonly at: 'write' | 'commit' | 'confirm'; readonly op?: number; readonly torn?: boolean };

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
  readonly #bundle: UpdateBundleSink;
  readonly #bundleReceiver: UploadReceiver;
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
    this.#bundle = new UpdateBundleSink({
      agent: this.#agent,
      slotSize: this.config.slotSize,
      log: this.#log,
      setCode: (code) => this.#setCode(code),
      reject: (r, header, what) => this.#reject(r, header, what).error,
      commit: () => this.#commit(),
      chunkWritten: (index) => this.#chunkWritten(index),
    });
    this.#bundleReceiver = new UploadReceiver(this.#bundle, IMAGE_UPLOAD_BOUNDS);
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
      .handle(imageStateWrite, (req, header) => this.#stateWrite(req, header))
      .handle(imageUpload, (req, header) => this.#bundleReceiver.handle(req, header))
      .handle(
        manifestUpload,
        envelope('manifest', (b) => this.#agent.beginUpdate(b)),
      )
      .handle(
        trustUpdate,
        envelope('trust', (b) => this.#agent.updateTrust(b)),
      )
      .handle(
        revocationUpdate,
        envelope('revocation', (b) => this.#agent.updateRevocations(b)),
      );
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
    const log = this.#agent.logRequirement();
    return {
      slot: this.#boot.slot ?? 0xff,
      version: this.#boot.version ?? '',
      counter: rec?.securityCounter ?? 0,
      code: this.#lastCode,
      phase,
      ...(rec ? { trust: rec.trustVersion, revocation: rec.revocationVersion } : {}),
      // Under a log policy: the checkpoint size an update bundle's log proof must start from (issue 19 item 2).
      ...(log.ok && log.required ? { log: log.fromSize } : {}),
    };
  }

  #setCode(code: number): void {
    this.#lastCode = code;
    writeFileSync(join(this.#dir, LAST_CODE_FILE), String(code));
  }

  #reject(r: Rejection, header: SmpHeader | undefined, what: string): { error: SmpError } {
    this.#setCode(r.code);
    this.#log(`${what}: rejected ${r.error} (${r.code})${r.detail ? `: ${r.detail}` : ''}`);
    return { error: rejectionError(header, r.code) };
  }

  /**
   * Image state as Zephyr's img_mgmt_state_read reports it (SPEC.md §13.3): one entry per slot that
   * holds a whole image, in slot order, every flag present (false ones too) and "splitStatus": 0.
   * `hash` is the slot's manifest digest (SHA-256 of the manifest payload, SPEC.md §6.3), fwseal's
   * counterpart of MCUboot's image hash TLV. Flags follow Zephyr's swap types: nothing pending ->
   * the running slot is active + confirmed; uploaded (pending, NEXT_BOOT_TYPE_TEST) -> the other
   * slot is pending; on trial (NEXT_BOOT_TYPE_REVERT) -> the running slot is active and not
   * confirmed, the other one confirmed, nothing pending; after a revert the reverted image has no flag.
   */
  #imageState(): ImageStateResponse {
    const s = loadState(this.#flash, this.#layout);
    const rec = s.ok ? s.record : null;
    const running = this.#boot.slot;
    const trial = this.#boot.trial === true;
    const images: ImageSlotState[] = [];
    for (const slot of [0, 1] as const) {
      const info = this.#slotInfo(slot, rec);
      if (info === null) continue;
      const active = slot === running;
      const pending = !trial && !active && rec?.pending !== undefined && slot === inactiveSlotOf(rec);
      images.push({ slot, version: info.version, hash: info.hash, bootable: true, pending, confirmed: trial ? !active : active, active, permanent: false });
    }
    return { images, splitStatus: 0 };
  }

  /** The version and manifest digest of a slot's image; null when it holds none whole (a download in progress, nothing written). */
  #slotInfo(slot: 0 | 1, rec: DeviceStateRecord | null): { version: string; hash: Uint8Array } | null {
    const area = readManifestArea(this.#flash, this.#layout, slot);
    const env = area.ok ? parseEnvelope(area.envelope) : null;
    const m = env?.ok ? parseManifest(env.envelope.payload) : null;
    if (!env?.ok || !m?.ok) return null;
    const hash = nodeSha256(env.envelope.payload);
    if (rec?.downloading !== undefined && bytesEqual(rec.downloading, hash) && slot !== this.#boot.slot) return null;
    return { version: m.value.version, hash };
  }

  /**
   * Image state write (`image test HASH`, `image confirm [HASH]`) with Zephyr's answers
   * (img_mgmt_state_write, img_mgmt_set_next_boot_slot): test without a hash or a hash not 32 bytes
   * long INVALID_HASH; an unknown hash HASH_NOT_FOUND; test of the running image
   * IMAGE_SETTING_TEST_TO_ACTIVE_DENIED; a change while an image is pending IMAGE_ALREADY_PENDING;
   * test of the pending image and confirm of the next boot slot are no-ops. fwseal makes an image
   * pending only by a verified upload and confirms only an image that ran on trial (SPEC.md §11.3),
   * so testing or confirming any other slot is INVALID_SLOT.
   */
  #stateWrite(req: ImageStateWriteRequest, header: SmpHeader): { value: ImageStateResponse } | { error: SmpError } {
    const state = this.#imageState();
    const I = IMG_MGMT_ERR;
    const hash = req.hash !== undefined && req.hash.length > 0 ? req.hash : undefined;
    if (hash === undefined && !req.confirm) return { error: imageGroupError(I.INVALID_HASH) };
    if (hash !== undefined && hash.length !== 32) return { error: imageGroupError(I.INVALID_HASH) };
    const entry = hash === undefined ? state.images.find((e) => e.active) : state.images.find((e) => e.hash !== undefined && bytesEqual(e.hash, hash));
    if (entry === undefined) return { error: imageGroupError(hash === undefined ? I.NO_IMAGE : I.HASH_NOT_FOUND) };
    const trial = this.#boot.trial === true;
    const anyPending = state.images.some((e) => e.pending);
    if (!req.confirm) {
      if (entry.active) return { error: imageGroupError(I.IMAGE_SETTING_TEST_TO_ACTIVE_DENIED) };
      if (entry.pending) return { value: state };
      return { error: imageGroupError(trial || anyPending ? I.IMAGE_ALREADY_PENDING : I.INVALID_SLOT) };
    }
    if (anyPending) return { error: imageGroupError(I.IMAGE_ALREADY_PENDING) };
    if (!trial) return entry.active ? { value: state } : { error: imageGroupError(I.INVALID_SLOT) };
    if (!entry.active) return { value: state }; // confirming the slot a revert would boot: nothing to do
    this.#armPending('confirm');
    const c = this.#agent.confirm();
    this.#flash.disarm();
    if (!c.ok) return this.#reject(c, header, 'confirm');
    this.#boot = { ...this.#boot, trial: false, counter: c.counter };
    this.#setCode(0);
    this.#log(`confirmed: slot ${c.slot}, counter ${c.counter}`);
    return { value: this.#imageState() };
  }

  #armPending(at: 'commit' | 'confirm'): void {
    if (this.#pendingFault?.at === at) {
      this.#flash.arm(this.#pendingFault.op, this.#pendingFault.torn);
      this.#pendingFault = null;
    }
  }

  /** The bundle's download is complete: finishDownload, with a commit power cut armed if the rig asked for one. */
  #commit(): ReturnType<UpdateAgent['finishDownload']> {
    this.#armPending('commit');
    const f = this.#agent.finishDownload();
    this.#flash.disarm();
    return f;
  }

  /** A chunk of a bundle is on flash: the power cut armed after K chunks comes now when this is the Kth. */
  #chunkWritten(index: number): void {
    if (this.#chunkFault !== null && --this.#chunkFault <= 0) {
      this.#log(`power cut after chunk ${index}`);
      this.#powerCut();
    }
  }

  /** A group 64 envelope is complete: verify and apply it; its §9 code is the answer's `code`. */
  #applyEnvelope(kind: string, bytes: Uint8Array, apply: (bytes: Uint8Array) => Result<object>): number {
    const r = apply(bytes);
    if (r.ok) {
      if (kind === 'manifest') {
        // A new download began: a bundle upload in progress belongs to the previous one.
        this.#bundle.abandon();
        this.#bundleReceiver.abandon();
      }
      this.#setCode(0);
      this.#log(`${kind}: accepted`);
    } else {
      this.#setCode(r.code);
      this.#log(`${kind}: rejected ${r.error} (${r.code})${r.detail ? `: ${r.detail}` : ''}`);
    }
    return r.code;
  }
}
