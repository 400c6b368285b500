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
 */
import { bytesEqual, concatBytes } from '../../shared/bytes.js';
import { inclusionProof, leafHash } from '../../shared/merkle.js';
import { SimFlash, type FaultPlan } from '../sim/flash.js';
import { createVerifier, type Verifier } from '../verifier.js';
import { UpdateAgent, provision } from './agent.js';
import { boot } from './boot.js';
import { type FlashGeometry, PowerCut } from './flash.js';
import { type Layout, createLayout, layoutBytes } from './layout.js';
import { loadState } from './state-store.js';

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

export function powercutSweep(input: SweepInput): SweepReport {
  const v = input.verifier ?? createVerifier();
  const geometry0 = { eraseBlockSize: input.eraseBlockSize ?? 4096, writeAlign: input.writeAlign ?? 8, erasedValue: input.erasedValue ?? 0xff };
  const E = geometry0.eraseBlockSize;
  const slotSize = Math.ceil(Math.max(input.old.image.length, input.next.image.length) / E) * E;
  const geometry: FlashGeometry = { ...geometry0, size: layoutBytes(E, geometry0.writeAlign, slotSize) };
  const layout = createLayout(geometry, { slotSize });
  const maxTrialBoots = input.maxTrialBoots ?? 2;
  const store = { trust: input.trust };

  const oldR = v.verifyManifest(input.old.envelope, input.trust, { deviceClass: input.deviceClass, counter: 0 });
  const newR = v.verifyManifest(input.next.envelope, input.trust, { deviceClass: input.deviceClass, counter: 0 });
  if (!oldR.ok || !newR.ok) throw new RangeError('sweep releases do not verify');
  const oldVm = oldR;
  const newVm = newR;
  const oldCounter = oldVm.manifest.securityCounter;
  const newCounter = newVm.manifest.securityCounter;
  const m = newVm.manifest;
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < m.imageSize; o += m.chunkSize) chunks.push(input.next.image.subarray(o, Math.min(m.imageSize, o + m.chunkSize)));
  const leaves = chunks.map((c) => leafHash(v.sha256, c));
  const proofs = chunks.map((_, i) => concatBytes(...inclusionProof(v.sha256, leaves, i)));

  const base = new SimFlash(geometry);
  const prov = provision(base, layout, { deviceClass: input.deviceClass, trust: input.trust, envelope: input.old.envelope, image: input.old.image, verifier: v });
  if (!prov.ok) throw new RangeError(`provisioning failed: ${prov.error}`);
  const start = base.snapshot();

  const check = (cond: boolean, message: string): void => {
    if (!cond) throw new Violation(message);
  };
  const agentOn = (flash: SimFlash): UpdateAgent => new UpdateAgent({ flash, layout, ...store, verifier: v });
  const doBoot = (flash: SimFlash) => boot(flash, layout, input.trust, { maxTrialBoots, verifier: v });

  /** The booted slot holds, byte for byte, the old or the new image: which one. */
  function bootedImage(flash: SimFlash, slot: 0 | 1, version: string | undefined): 'old' | 'new' {
    const region = layout.slots[slot];
    for (const [name, rel, vm] of [['new', input.next, newVm], ['old', input.old, oldVm]] as const) {
      if (bytesEqual(flash.read(region.offset, rel.image.length), rel.image) && version === vm.manifest.version) return name;
    }
    throw new Violation(`booted slot ${slot} (version ${String(version)}) holds neither signed image`);
  }

  function checkCounter(flash: SimFlash, where: string): void {
    const s = loadState(flash, layout);
    check(s.ok, `${where}: state unreadable (${s.ok ? '' : s.error})`);
    if (!s.ok) return;
    const c = s.record.securityCounter;
    check(c >= oldCounter, `${where}: counter ${c} regressed below ${oldCounter}`);
    if (c > oldCounter) {
      check(c === newCounter && s.record.installed !== undefined && bytesEqual(s.record.installed, newVm.manifestDigest), `${where}: counter ${c} raised before the new image was confirmed`);
    }
  }

  /** Download and stage the new image (begin or resume); returns whether it resumed. */
  function download(flash: SimFlash): boolean {
    const agent = agentOn(flash);
    const b = agent.beginUpdate(input.next.envelope);
    check(b.ok, `beginUpdate: ${b.error}`);
    const resumed = b.ok && b.resumed;
    for (let attempt = 0; attempt < 3; attempt++) {
      for (const i of agent.missingChunks()) {
        const w = agent.writeChunk(i, chunks[i], proofs[i]);
        check(w.ok, `writeChunk ${i}: ${w.error}`);
      }
      const f = agent.finishDownload();
      if (f.ok) return resumed;
    }
    throw new Violation('finishDownload keeps failing');
  }

  /** The whole update from a device running the old image: the script whose operations are counted. */
  function update(flash: SimFlash): void {
    download(flash);
    const t = doBoot(flash);
    check(t.trial === true && t.code === 0, `trial boot: ${t.error}`);
    const c = agentOn(flash).confirm();
    check(c.ok, `confirm: ${c.error}`);
    const f = doBoot(flash);
    check(f.code === 0 && f.slot !== null && bootedImage(flash, f.slot, f.version) === 'new', `final boot: ${f.error}`);
  }

  const outcomes: Record<string, number> = {};
  const count = (key: string): void => {
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  };

  const measure = new SimFlash(geometry, {}, start);
  update(measure);
  const N = measure.operations;

  /** After a cut: boot, check, and finish the update. */
  function recover(flash: SimFlash): void {
    flash.setFaults({});
    checkCounter(flash, 'after the cut');
    const b = doBoot(flash);
    check(b.slot !== null, `no bootable image after the cut: ${b.error}`);
    if (b.slot === null) return;
    const which = bootedImage(flash, b.slot, b.version);
    checkCounter(flash, 'after the first boot');
    if (b.reverted) count('reverted');
    if (b.trial) {
      check(which === 'new', 'trial boot of something other than the new image');
      count('trialNew');
      const c = agentOn(flash).confirm();
      check(c.ok, `confirm after the cut: ${c.error}`);
    } else if (which === 'new') {
      count('bootedNew');
    } else {
      count('bootedOld');
      const resumed = download(flash);
      count(resumed ? 'resumedDownload' : 'restartedDownload');
      const t = doBoot(flash);
      check(t.trial === true && t.code === 0, `trial boot after recovery: ${t.error}`);
      checkCounter(flash, 'during the trial boot');
      const c = agentOn(flash).confirm();
      check(c.ok, `confirm after recovery: ${c.error}`);
    }
    const f = doBoot(flash);
    check(f.code === 0 && f.slot !== null && bootedImage(flash, f.slot, f.version) === 'new', `final boot after recovery: ${f.error}`);
    checkCounter(flash, 'at the end');
    const s = loadState(flash, layout);
    check(s.ok && s.record.securityCounter === newCounter, 'counter not raised after confirm');
    count('completed');
  }

  const violations: SweepViolation[] = [];
  let runs = 0;
  const step = Math.max(1, Math.floor(input.step ?? 1));
  const modes: ('cut' | 'torn')[] = input.torn === false ? ['cut'] : ['cut', 'torn'];
  for (let k = 1; k <= N; k += step) {
    for (const mode of modes) {
      runs++;
      const plan: FaultPlan = mode === 'cut' ? { powerCutBeforeOp: k } : { tornOp: { op: k, fraction: 0.5 } };
      const flash = new SimFlash(geometry, plan, start);
      try {
        try {
          update(flash);
          throw new Violation(`no power cut happened at operation ${k}`);
        } catch (e) {
          if (!(e instanceof PowerCut)) throw e;
        }
        recover(flash);
      } catch (e) {
        if (e instanceof Violation) violations.push({ k, mode, message: e.message });
        else if (e instanceof PowerCut) violations.push({ k, mode, message: `unexpected power cut during recovery: ${e.message}` });
        else throw e;
      }
    }
  }
  return { imageSize: m.imageSize, operations: N, runs, outcomes, violations };
}

/** Layout of the sweep's simulated flash (for reports). */
export function sweepLayout(imageSize: number, eraseBlockSize = 4096, writeAlign = 8): Layout {
  const slotSize = Math.ceil(imageSize / eraseBlockSize) * eraseBlockSize;
  return createLayout({ size: layoutBytes(eraseBlockSize, writeAlign, slotSize), eraseBlockSize, writeAlign, erasedValue: 0xff }, { slotSize });
}
