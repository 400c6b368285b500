/**
 * The power-cut sweep (SPEC.md §11.5), a pure function over SimFlash.
 *
 * A device is provisioned with an old confirmed image; a complete update to the new image (begin,
 * every chunk, finish, trial boot, confirm, boot) is run once to count its N flash operations. Then
 * for every k in 1..N (or every `step`-th) the update is replayed from the same starting flash with a
 * power cut before operation k, and again with operation k torn half-way. After each cut the device
 * is powered up: it must boot a verified image (byte for byte the old or the new one), its counter
 * must never regress (>= the old counter; the new counter only once the new image is confirmed),
 * and it must then be able to finish the update. Violations are collected with their k.
 *
 * Under a log policy (`log`, SPEC.md §16) the update carries its log proof, the device may start
 * with a stored checkpoint, and after every cut the stored checkpoint must be the old or the new one
 * whole (the new one whenever the state names the new manifest); after recovery the device must
 * still refuse a proof of an older checkpoint (LOG_ROLLBACK).
 */
import { bytesEqual, concatBytes } from '../../shared/bytes.js';
import { CODES } from '../../shared/codes.js';
import { parseLogProof } from '../../shared/log-proof.js';
import { inclusionProof, leafHash } from '../../shared/merkle.js';
import { type DeviceStateRecord } from '../../shared/state.js';
import { type FaultPlan, SimFlash } from '../sim/flash.js';
import { createVerifier, type Verifier } from '../verifier.js';
import { type VerifiedManifest } from '../verify/manifest.js';
import { UpdateAgent } from './agent.js';
import { boot } from './boot.js';
import { type FlashGeometry, PowerCut } from './flash.js';
import { createLayout, type Layout, layoutBytes } from './layout.js';
import { provision } from './provision.js';
import { loadState, saveState } from './state-store.js';

export type SweepRelease = { readonly envelope: Uint8Array; readonly image: Uint8Array };

export type SweepInput = {
  readonly trust: Uint8Array;
  readonly deviceClass: string;
  /** The factory image, confirmed at the start (e.g. counter 1). */
  readonly old: SweepRelease;
  /** The update (e.g. counter 2). */
  readonly next: SweepRelease;
  readonly eraseBlockSize?: number;
  readonly writeAlign?: number;
  readonly erasedValue?: number;
  /** Replay every step-th k (1 = all). */
  readonly step?: number;
  /** Also tear operation k half-way (default true). */
  readonly torn?: boolean;
  readonly maxTrialBoots?: number;
  readonly verifier?: Verifier;
  /** The trust bundle has a log policy: the update's proof, the checkpoint stored at the start, a proof of an older checkpoint. */
  readonly log?: SweepLog;
};

export type SweepLog = {
  readonly proof: Uint8Array;
  readonly stored?: { readonly size: number; readonly root: Uint8Array };
  readonly stale: SweepRelease & { readonly proof: Uint8Array };
};

export type SweepViolation = { readonly k: number; readonly mode: 'cut' | 'torn'; readonly message: string };

export type SweepReport = {
  /** Imaged size of the update in bytes. */
  readonly imageSize: number;
  /** Flash operations of one complete update. */
  readonly operations: number;
  /** Replays run (cut and torn). */
  readonly runs: number;
  /**
   * First boot after the cut: bootedOld + trialNew + bootedNew + bootFailed = runs.
   * Then: resumedDownload / restartedDownload (how the download went on), reverted (a pending image
   * was reverted), completed (ended with the new image confirmed) = runs when all is well.
   */
  readonly outcomes: Record<string, number>;
  readonly violations: readonly SweepViolation[];
};

class Violation extends Error {}

function check(cond: boolean, message: string): void {
  if (!cond) throw new Violation(message);
}

/** The verified releases, the flash layout and the provisioned starting flash of one sweep. */
class SweepWorld {
  readonly v: Verifier;
  readonly geometry: FlashGeometry;
  readonly layout: Layout;
  readonly maxTrialBoots: number;
  readonly oldVm: VerifiedManifest;
  readonly newVm: VerifiedManifest;
  readonly chunks: Uint8Array[] = [];
  readonly proofs: Uint8Array[];
  readonly start: Uint8Array;
  readonly outcomes: Record<string, number> = {};

  constructor(readonly input: SweepInput) {
    this.v = input.verifier ?? createVerifier();
    const g0 = { eraseBlockSize: input.eraseBlockSize ?? 4096, writeAlign: input.writeAlign ?? 8, erasedValue: input.erasedValue ?? 0xff };
    const E = g0.eraseBlockSize;
    const slotSize = Math.ceil(Math.max(input.old.image.length, input.next.image.length) / E) * E;
    this.geometry = { ...g0, size: layoutBytes(E, g0.writeAlign, slotSize) };
    this.layout = createLayout(this.geometry, { slotSize });
    this.maxTrialBoots = input.maxTrialBoots ?? 2;
    const oldR = this.v.verifyManifest(input.old.envelope, input.trust, { deviceClass: input.deviceClass, counter: 0 });
    const newR = this.v.verifyManifest(input.next.envelope, input.trust, { deviceClass: input.deviceClass, counter: 0 });
    if (!oldR.ok || !newR.ok) throw new RangeError('sweep releases do not verify');
    this.oldVm = oldR;
    this.newVm = newR;
    const m = newR.manifest;
    for (let o = 0; o < m.imageSize; o += m.chunkSize) this.chunks.push(input.next.image.subarray(o, Math.min(m.imageSize, o + m.chunkSize)));
    const leaves = this.chunks.map((c) => leafHash(this.v.sha256, c));
    this.proofs = this.chunks.map((_, i) => concatBytes(...inclusionProof(this.v.sha256, leaves, i)));
    const base = new SimFlash(this.geometry);
    const prov = provision(base, this.layout, {
      deviceClass: input.deviceClass,
      trust: input.trust,
      envelope: input.old.envelope,
      image: input.old.image,
      verifier: this.v,
    });
    if (!prov.ok) throw new RangeError(`provisioning failed: ${prov.error}`);
    const stored = input.log?.stored;
    if (stored && !saveState(base, this.layout, { ...prov.state, logSize: stored.size, logRoot: stored.root }).ok)
      throw new RangeError('checkpoint not stored');
    this.start = base.snapshot();
  }

  /** The stored log checkpoint is the old or the new one, whole; the new one once the state names the new manifest. */
  checkLog(flash: SimFlash, where: string): void {
    const log = this.input.log;
    const s = loadState(flash, this.layout);
    if (!log || !s.ok) return;
    const p = parseLogProof(log.proof);
    if (!p.ok) throw new RangeError('sweep log proof does not parse');
    const r: DeviceStateRecord = s.record;
    const is = (c: { size: number; root: Uint8Array } | undefined) =>
      c === undefined ? r.logSize === undefined && r.logRoot === undefined : r.logSize === c.size && r.logRoot !== undefined && bytesEqual(r.logRoot, c.root);
    const isNew = is({ size: p.value.size, root: p.value.root });
    check(isNew || is(log.stored), `${where}: stored checkpoint (${String(r.logSize)}) is neither the old nor the new one`);
    const d = this.newVm.manifestDigest;
    const named = [r.downloading, r.pending, r.installed].some((x) => x !== undefined && bytesEqual(x, d));
    check(!named || isNew, `${where}: the state names the new manifest without its checkpoint`);
  }

  /** After recovery: a proof of an older checkpoint than the stored one is refused, and nothing starts. */
  checkStale(flash: SimFlash): void {
    const log = this.input.log;
    if (!log) return;
    const r = this.agentOn(flash).beginUpdate(log.stale.envelope, log.stale.proof);
    check(r.code === CODES.LOG_ROLLBACK, `a rolled-back checkpoint was not refused: ${r.error}`);
  }

  count(key: string): void {
    this.outcomes[key] = (this.outcomes[key] ?? 0) + 1;
  }

  agentOn(flash: SimFlash): UpdateAgent {
    return new UpdateAgent({ flash, layout: this.layout, trust: this.input.trust, verifier: this.v });
  }

  boot(flash: SimFlash) {
    return boot(flash, this.layout, this.input.trust, { maxTrialBoots: this.maxTrialBoots, verifier: this.v });
  }

  /** The booted slot holds, byte for byte, the old or the new image: which one. */
  bootedImage(flash: SimFlash, slot: 0 | 1, version: string | undefined): 'old' | 'new' {
    const region = this.layout.slots[slot];
    for (const [name, rel, vm] of [
      ['new', this.input.next, this.newVm],
      ['old', this.input.old, this.oldVm],
    ] as const) {
      if (bytesEqual(flash.read(region.offset, rel.image.length), rel.image) && version === vm.manifest.version) return name;
    }
    throw new Violation(`booted slot ${slot} (version ${String(version)}) holds neither signed image`);
  }

  /** The stored counter never regresses, and is raised only with the new image confirmed. */
  checkCounter(flash: SimFlash, where: string): void {
    const s = loadState(flash, this.layout);
    check(s.ok, `${where}: state unreadable (${s.ok ? '' : s.error})`);
    if (!s.ok) return;
    const c = s.record.securityCounter;
    const oldCounter = this.oldVm.manifest.securityCounter;
    check(c >= oldCounter, `${where}: counter ${c} regressed below ${oldCounter}`);
    if (c > oldCounter) {
      check(
        c === this.newVm.manifest.securityCounter && s.record.installed !== undefined && bytesEqual(s.record.installed, this.newVm.manifestDigest),
        `${where}: counter ${c} raised before the new image was confirmed`,
      );
    }
  }

  /** Download and stage the new image (begin or resume); returns whether it resumed. */
  download(flash: SimFlash): boolean {
    const agent = this.agentOn(flash);
    const b = agent.beginUpdate(this.input.next.envelope, this.input.log?.proof);
    check(b.ok, `beginUpdate: ${b.error}`);
    const resumed = b.ok && b.resumed;
    for (let attempt = 0; attempt < 3; attempt++) {
      for (const i of agent.missingChunks()) {
        const w = agent.writeChunk(i, this.chunks[i], this.proofs[i]);
        check(w.ok, `writeChunk ${i}: ${w.error}`);
      }
      if (agent.finishDownload().ok) return resumed;
    }
    throw new Violation('finishDownload keeps failing');
  }

  /** The device boots the new image, verified, as the last step. */
  finalBoot(flash: SimFlash, where: string): void {
    const f = this.boot(flash);
    check(f.code === 0 && f.slot !== null && this.bootedImage(flash, f.slot, f.version) === 'new', `final boot${where}: ${f.error}`);
  }

  /** The whole update from a device running the old image: the script whose operations are counted. */
  update(flash: SimFlash): void {
    this.download(flash);
    const t = this.boot(flash);
    check(t.trial === true && t.code === 0, `trial boot: ${t.error}`);
    const c = this.agentOn(flash).confirm();
    check(c.ok, `confirm: ${c.error}`);
    this.finalBoot(flash, '');
  }

  /** After a cut: boot, check, and finish the update. */
  recover(flash: SimFlash): void {
    flash.setFaults({});
    this.checkCounter(flash, 'after the cut');
    this.checkLog(flash, 'after the cut');
    const b = this.boot(flash);
    check(b.slot !== null, `no bootable image after the cut: ${b.error}`);
    if (b.slot === null) return;
    const which = this.bootedImage(flash, b.slot, b.version);
    this.checkCounter(flash, 'after the first boot');
    if (b.reverted) this.count('reverted');
    if (b.trial) {
      check(which === 'new', 'trial boot of something other than the new image');
      this.count('trialNew');
      const c = this.agentOn(flash).confirm();
      check(c.ok, `confirm after the cut: ${c.error}`);
    } else if (which === 'new') {
      this.count('bootedNew');
    } else {
      this.count('bootedOld');
      this.count(this.download(flash) ? 'resumedDownload' : 'restartedDownload');
      const t = this.boot(flash);
      check(t.trial === true && t.code === 0, `trial boot after recovery: ${t.error}`);
      this.checkCounter(flash, 'during the trial boot');
      const c = this.agentOn(flash).confirm();
      check(c.ok, `confirm after recovery: ${c.error}`);
    }
    this.finalBoot(flash, ' after recovery');
    this.checkCounter(flash, 'at the end');
    this.checkLog(flash, 'at the end');
    this.checkStale(flash);
    const s = loadState(flash, this.layout);
    check(s.ok && s.record.securityCounter === this.newVm.manifest.securityCounter, 'counter not raised after confirm');
    this.count('completed');
  }

  /** One replay with a cut (or tear) at operation k; the violation it showed, or null. */
  replay(k: number, mode: 'cut' | 'torn'): SweepViolation | null {
    const plan: FaultPlan = mode === 'cut' ? { powerCutBeforeOp: k } : { tornOp: { op: k, fraction: 0.5 } };
    const flash = new SimFlash(this.geometry, plan, this.start);
    try {
      try {
        this.update(flash);
        throw new Violation(`no power cut happened at operation ${k}`);
      } catch (e) {
        if (!(e instanceof PowerCut)) throw e;
      }
      this.recover(flash);
      return null;
    } catch (e) {
      if (e instanceof Violation) return { k, mode, message: e.message };
      if (e instanceof PowerCut) return { k, mode, message: `unexpected power cut during recovery: ${e.message}` };
      throw e;
    }
  }
}

export function powercutSweep(input: SweepInput): SweepReport {
  const world = new SweepWorld(input);
  const measure = new SimFlash(world.geometry, {}, world.start);
  world.update(measure);
  const N = measure.operations;
  const violations: SweepViolation[] = [];
  let runs = 0;
  const step = Math.max(1, Math.floor(input.step ?? 1));
  const modes: ('cut' | 'torn')[] = input.torn === false ? ['cut'] : ['cut', 'torn'];
  for (let k = 1; k <= N; k += step) {
    for (const mode of modes) {
      runs++;
      const v = world.replay(k, mode);
      if (v) violations.push(v);
    }
  }
  return { imageSize: world.newVm.manifest.imageSize, operations: N, runs, outcomes: world.outcomes, violations };
}

/** Layout of the sweep's simulated flash (for reports). */
export function sweepLayout(imageSize: number, eraseBlockSize = 4096, writeAlign = 8): Layout {
  const slotSize = Math.ceil(imageSize / eraseBlockSize) * eraseBlockSize;
  return createLayout({ size: layoutBytes(eraseBlockSize, writeAlign, slotSize), eraseBlockSize, writeAlign, erasedValue: 0xff }, { slotSize });
}
