/**
 * Runs scenarios on the rig: for each device slot, each scenario on a freshly provisioned device
 * directory (a new device process), steps over SMP through the link emulator, power cuts armed in
 * the device process, and the end state asked from the device over the link. Slots run in parallel.
 */

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { nodeSha256 } from '../host/hash.js';
import { codeName } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import {
  type DeviceStatus,
  type EnvelopeUploadRequest,
  type EnvelopeUploadResponse,
  imageStateWrite,
  manifestUpload,
  reset,
  revocationUpdate,
  status,
  trustUpdate,
} from '../shared/smp/commands.js';
import { consoleFrameWireBytes } from '../shared/smp/console.js';
import { type SmpCommand } from '../shared/smp/messages.js';
import { provisionDevice } from './provision.js';
import { type DeviceSlot, type Rig } from './rig.js';
import { codeOf, type ExpectedState, type ReleaseStep, type Scenario, type Step } from './scenario.js';
import { uploadImage } from './upload.js';
import { makeBundle, makeRelease, makeRevocations, makeTrust } from './world.js';

export type CaseResult = {
  readonly scenario: string;
  readonly device: number;
  readonly passed: boolean;
  readonly skipped?: string;
  /** What did not match: "expected X, got Y" lines. */
  readonly failures: readonly string[];
  readonly expected: ExpectedState;
  readonly actual: DeviceStatus | null;
  readonly seconds: number;
  readonly restarts: number;
  /** Bundle bytes the harness wrote per upload attempt (resume evidence). */
  readonly uploads: readonly {
    attempt: number;
    ok: boolean;
    seconds: number;
    resumedAt: number;
    skipped: number;
    dataBytes: number;
    wireBytes: number;
    bundleBytes: number;
  }[];
};

type Ctx = {
  readonly rig: Rig;
  readonly slot: DeviceSlot;
  readonly scenario: Scenario;
  readonly failures: string[];
  readonly uploads: CaseResult['uploads'][number][];
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function release(s: Scenario, r: ReleaseStep) {
  return makeRelease({
    version: r.version,
    counter: r.counter,
    signers: r.signers ?? s.setup.trust.release.slice(0, s.setup.trust.releaseThreshold),
    deviceClass: r.deviceClass ?? s.setup.deviceClass,
    imageSize: r.imageSize ?? s.setup.imageSize,
    chunkSize: r.chunkSize ?? s.setup.chunkSize,
  });
}

/** Request timeout: a full window of the largest packets on the wire, both ways, plus slack. */
function timeoutFor(baud: number, window: number, latencyMs: number): number {
  const packetMs = (consoleFrameWireBytes(LIMITS.maxSmpPacketBytes) * 10_000) / baud;
  return Math.round(2 * window * packetMs + 2 * latencyMs + 800);
}

async function deviceStatus(slot: DeviceSlot): Promise<DeviceStatus | null> {
  for (let i = 0; i < 4; i++) {
    const r = await slot.client.request(status, {});
    if (r.ok && r.value !== undefined) return r.value;
    await sleep(100);
  }
  return null;
}

/** Upload an envelope with fwseal group 64; the device's code, or null when the link failed. */
async function sendEnvelope(slot: DeviceSlot, cmd: SmpCommand<EnvelopeUploadRequest, EnvelopeUploadResponse>, bytes: Uint8Array): Promise<number | null> {
  const per = 2048;
  let off = 0;
  for (let tries = 0; tries < 8; ) {
    const data = bytes.subarray(off, off + per);
    const r = await slot.client.request(cmd, off === 0 ? { off, len: bytes.length, data } : { off, data });
    if (!r.ok || r.value === undefined) {
      tries++;
      continue;
    }
    if (r.value.code !== undefined) return r.value.code;
    off = r.value.off;
  }
  return null;
}

function expectCode(ctx: Ctx, stepName: string, want: number | string | undefined, got: number | null): void {
  if (want === undefined) return;
  const w = codeOf(want);
  if (got !== w) ctx.failures.push(`${stepName}: expected code ${w} (${codeName(w)}), got ${got === null ? 'no answer' : `${got} (${codeName(got)})`}`);
}

async function waitRestart(ctx: Ctx, before: number): Promise<void> {
  if (ctx.slot.simulated) {
    const end = Date.now() + 15_000;
    while (ctx.slot.restarts === before && Date.now() < end) await sleep(20);
  } else {
    await sleep(1000);
  }
  if (!(await ctx.slot.waitAlive())) throw new Error('device did not come back after a reset');
}

async function runUpload(ctx: Ctx, step: Extract<Step, { upload: unknown }>): Promise<void> {
  const { slot, scenario } = ctx;
  const rel = release(scenario, step.upload);
  const bundle = makeBundle(rel, step.upload.tamperChunk !== undefined ? { tamperChunk: step.upload.tamperChunk } : {});
  if (step.powerCut) await slot.armFault(step.powerCut);
  const cut = step.cableCut;
  const timers: NodeJS.Timeout[] = [];
  if (cut) {
    timers.push(
      setTimeout(() => {
        slot.log(`cable cut for ${cut.forMs} ms`);
        slot.link.cut();
      }, cut.afterMs),
    );
    timers.push(
      setTimeout(() => {
        slot.log('cable reconnected');
        slot.link.reconnect();
      }, cut.afterMs + cut.forMs),
    );
  }
  try {
    await uploadAttempts(ctx, step, bundle);
  } finally {
    for (const t of timers) clearTimeout(t);
    if (slot.link.isCut) slot.link.reconnect();
  }
}

async function uploadAttempts(ctx: Ctx, step: Extract<Step, { upload: unknown }>, bundle: Uint8Array): Promise<void> {
  const { slot, scenario } = ctx;
  const sha = nodeSha256(bundle);
  const window = scenario.link?.window ?? 2;
  let outcome: number | null = null;
  for (let attempt = 1; attempt <= 4; attempt++) {
    const restarts = slot.restarts;
    const sentBefore = slot.link.counters().hostToDevice.written;
    const t0 = Date.now();
    const r = await uploadImage(slot.client, bundle, {
      sha,
      window,
      maxStalls: 3,
      timeoutMs: timeoutFor(ctx.rig.options.baud, window, scenario.link?.latencyMs ?? 0),
      ...(scenario.link?.chunkBytes ? { chunkBytes: scenario.link.chunkBytes } : {}),
    });
    ctx.uploads.push({
      attempt,
      ok: r.ok,
      seconds: (Date.now() - t0) / 1000,
      resumedAt: r.ok ? r.resumedAt : -1,
      skipped: r.ok ? r.skipped : 0,
      dataBytes: r.ok ? r.dataBytes : -1,
      wireBytes: slot.link.counters().hostToDevice.written - sentBefore,
      bundleBytes: bundle.length,
    });
    slot.log(
      `upload ${step.upload.version} attempt ${attempt}: ${r.ok ? `done, ${r.requests} requests, ${r.resent} resent, ${r.dataBytes} data bytes, ${r.skipped} skipped (already on the device)` : `${r.error} ${r.detail ?? ''}`}`,
    );
    if (r.ok) {
      outcome = 0;
      break;
    }
    // A refusal (the device answered an error) is the device's verdict: read its code.
    if (/refused/.test(r.detail ?? '')) {
      outcome = (await deviceStatus(slot))?.code ?? null;
      break;
    }
    // No answers: the device may have lost power, or the cable is cut; wait for it (heartbeat) and
    // upload again: it resumes (from flash after a reset, from RAM otherwise).
    if (slot.simulated && slot.restarts === restarts) await sleep(300);
    if (!(await slot.waitAlive(30_000))) break;
  }
  expectCode(ctx, `upload ${step.upload.version}`, step.expect?.code ?? 0, outcome);
  if (step.expect?.resumed) {
    // Resumed: after the reset the device skipped what its flash already held, so less than a
    // restart from offset 0 was sent again.
    const last = ctx.uploads[ctx.uploads.length - 1];
    if (!(slot.restarts > 0 && last.ok && last.skipped > 0)) {
      ctx.failures.push(
        `upload ${step.upload.version}: expected a reset and a resumed upload (bytes skipped > 0), got ${slot.restarts} restarts, ${JSON.stringify(ctx.uploads)}`,
      );
    }
  }
}

async function runStep(ctx: Ctx, step: Step): Promise<void> {
  const { slot, scenario } = ctx;
  if ('upload' in step) return runUpload(ctx, step);
  if ('manifest' in step) {
    const code = await sendEnvelope(slot, manifestUpload, release(scenario, step.manifest).envelope);
    slot.log(`manifest ${step.manifest.version}: code ${code}`);
    return expectCode(ctx, `manifest ${step.manifest.version}`, step.expect?.code ?? 0, code);
  }
  if ('trust' in step) {
    const code = await sendEnvelope(slot, trustUpdate, makeTrust(step.trust));
    slot.log(`trust v${step.trust.version ?? 1}: code ${code}`);
    return expectCode(ctx, `trust update v${step.trust.version ?? 1}`, step.expect?.code ?? 0, code);
  }
  if ('revocations' in step) {
    const code = await sendEnvelope(slot, revocationUpdate, makeRevocations(step.revocations));
    slot.log(`revocations v${step.revocations.version}: code ${code}`);
    return expectCode(ctx, `revocation update v${step.revocations.version}`, step.expect?.code ?? 0, code);
  }
  if ('reset' in step) {
    const before = slot.restarts;
    const r = await slot.client.request(reset, {});
    slot.log(`reset: ${r.ok ? 'answered' : r.error}`);
    return waitRestart(ctx, before);
  }
  if ('confirm' in step) {
    if (step.powerCut) await slot.armFault(step.powerCut);
    let code: number | null = null;
    for (let attempt = 0; attempt < 3 && code === null; attempt++) {
      const r = await slot.client.request(imageStateWrite, { confirm: true });
      if (r.ok && r.value !== undefined) code = 0;
      else if (r.ok) code = (await deviceStatus(slot))?.code ?? null;
      else {
        // No answer (a power cut mid-confirm): the device boots again; confirm again if it is still on trial.
        if (!(await slot.waitAlive())) break;
        const st = await deviceStatus(slot);
        if (st && st.phase !== 'trial') code = 0;
      }
    }
    slot.log(`confirm: code ${code}`);
    return expectCode(ctx, 'confirm', step.expect?.code ?? 0, code);
  }
}

function compare(ctx: Ctx, expected: ExpectedState, actual: DeviceStatus | null): void {
  if (actual === null) {
    ctx.failures.push('status: no answer from the device');
    return;
  }
  for (const key of ['slot', 'version', 'counter', 'phase', 'trust', 'revocation'] as const) {
    const want = expected[key];
    if (want !== undefined && actual[key] !== want) ctx.failures.push(`${key}: expected ${JSON.stringify(want)}, got ${JSON.stringify(actual[key])}`);
  }
  if (expected.code !== undefined) {
    const w = codeOf(expected.code);
    if (actual.code !== w) ctx.failures.push(`code: expected ${w} (${codeName(w)}), got ${actual.code} (${codeName(actual.code)})`);
  }
}

/** One scenario on one device slot. Never throws: harness errors become failures. */
export async function runCase(rig: Rig, slot: DeviceSlot, scenario: Scenario): Promise<CaseResult> {
  const t0 = Date.now();
  const ctx: Ctx = { rig, slot, scenario, failures: [], uploads: [] };
  const base = { scenario: scenario.name, device: slot.index, expected: scenario.expect };
  const hasPowerCut = scenario.steps.some((s) => 'powerCut' in s && s.powerCut !== undefined);
  if (!slot.simulated && hasPowerCut) {
    return { ...base, passed: true, skipped: 'power cuts need a simulated device', failures: [], actual: null, seconds: 0, restarts: 0, uploads: [] };
  }
  let actual: DeviceStatus | null = null;
  try {
    const window = scenario.link?.window ?? 2;
    slot.setLink({ ...scenario.link, timeoutMs: timeoutFor(rig.options.baud, 1, scenario.link?.latencyMs ?? 0) });
    slot.log(`scenario ${scenario.name}: start (window ${window})`);
    if (slot.simulated) {
      const dir = join(rig.options.workDir, 'devices', `${scenario.name}-dev${slot.index}`);
      rmSync(dir, { recursive: true, force: true });
      const s = scenario.setup;
      const trust = makeTrust(s.trust);
      const factory = release(scenario, { version: s.factory.version, counter: s.factory.counter });
      const p = provisionDevice(dir, {
        deviceClass: s.deviceClass,
        trust,
        envelope: factory.envelope,
        image: factory.image,
        ...(s.revocations ? { revocations: makeRevocations(s.revocations) } : {}),
        ...(s.maxTrialBoots ? { maxTrialBoots: s.maxTrialBoots } : {}),
      });
      if (!p.ok) throw new Error(`provisioning failed: ${p.error} ${p.detail ?? ''}`);
      await slot.startDevice(dir);
    }
    if (!(await slot.waitAlive())) throw new Error('device does not answer echo');
    for (const step of scenario.steps) await runStep(ctx, step);
    actual = await deviceStatus(slot);
    slot.log(`status: ${JSON.stringify(actual)}`);
    compare(ctx, scenario.expect, actual);
  } catch (e) {
    ctx.failures.push(`harness: ${(e as Error).message}`);
  } finally {
    if (slot.simulated) await slot.stopDevice();
  }
  slot.log(`scenario ${scenario.name}: ${ctx.failures.length === 0 ? 'PASS' : `FAIL ${ctx.failures.join('; ')}`}`);
  return {
    ...base,
    passed: ctx.failures.length === 0,
    failures: ctx.failures,
    actual,
    seconds: (Date.now() - t0) / 1000,
    restarts: slot.restarts,
    uploads: ctx.uploads,
  };
}

/** Every scenario on every slot; slots in parallel, scenarios in order on each. */
export async function runMatrix(rig: Rig, scenarios: readonly Scenario[], onResult?: (r: CaseResult) => void): Promise<CaseResult[]> {
  const perSlot = await Promise.all(
    rig.slots.map(async (slot) => {
      const out: CaseResult[] = [];
      for (const s of scenarios) {
        const r = await runCase(rig, slot, s);
        onResult?.(r);
        out.push(r);
      }
      return out;
    }),
  );
  const results: CaseResult[] = [];
  for (let i = 0; i < scenarios.length; i++) for (const list of perSlot) results.push(list[i]);
  return results;
}
