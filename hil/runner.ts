/**
 * Runs scenarios on the rig: for each device slot, each scenario on a freshly provisioned device
 * directory (a new device process), steps over SMP through the link emulator, power cuts armed in
 * the device process, and the end state asked from the device over the link. Slots run in parallel.
 */

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { nodeSha256 } from '../host/hash.js';
import { logProofFor } from '../host/tlog/attachment.js';
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
import {
  codeOf,
  type ExpectedState,
  scenarioRelease as release,
  type Scenario,
  type Step,
  scenarioFile,
  scenarioRevocations,
  scenarioTrust,
} from './scenario.js';
import { uploadImage } from './upload.js';
import { makeBundle, trustBundleVersion } from './world.js';

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

/** How a step names a trust bundle or revocation list in logs and failures. */
const named = (v: { version?: number } | string, word: string) => (typeof v === 'string' ? `${word} ${v}` : `${word} v${v.version ?? 1}`);

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
  // Issue 19: with a log, the proof from the checkpoint size the device reports (status `log`, SPEC.md §13.3).
  const logProof = step.log === undefined ? undefined : await logProofFor(step.log, rel.envelope, (await deviceStatus(slot))?.log ?? 0);
  const bundle = makeBundle(rel, {
    ...(step.upload.tamperChunk !== undefined ? { tamperChunk: step.upload.tamperChunk } : {}),
    ...(logProof ? { logProof } : {}),
  });
  const name = `upload ${rel.manifest.version}`;
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
    await uploadAttempts(ctx, step, bundle, name);
  } finally {
    for (const t of timers) clearTimeout(t);
    if (slot.link.isCut) slot.link.reconnect();
  }
}

async function uploadAttempts(ctx: Ctx, step: Extract<Step, { upload: unknown }>, bundle: Uint8Array, name: string): Promise<void> {
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
      `${name} attempt ${attempt}: ${r.ok ? `done, ${r.requests} requests, ${r.resent} resent, ${r.dataBytes} data bytes, ${r.skipped} skipped (already on the device)` : `${r.error} ${r.detail ?? ''}`}`,
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
  expectCode(ctx, name, step.expect?.code ?? 0, outcome);
  if (step.expect?.resumed) {
    // Resumed: after the reset the device skipped what its flash already held, so less than a
    // restart from offset 0 was sent again.
    const last = ctx.uploads[ctx.uploads.length - 1];
    if (!(slot.restarts > 0 && last.ok && last.skipped > 0)) {
      ctx.failures.push(`${name}: expected a reset and a resumed upload (bytes skipped > 0), got ${slot.restarts} restarts, ${JSON.stringify(ctx.uploads)}`);
    }
  }
}

async function runStep(ctx: Ctx, step: Step): Promise<void> {
  const { slot, scenario } = ctx;
  if ('upload' in step) return runUpload(ctx, step);
  if ('manifest' in step) {
    const m = step.manifest;
    const envelope = typeof m === 'string' ? scenarioFile(scenario, m) : release(scenario, m).envelope;
    const what = `manifest ${typeof m === 'string' ? m : m.version}`;
    const code = await sendEnvelope(slot, manifestUpload, envelope);
    slot.log(`${what}: code ${code}`);
    return expectCode(ctx, what, step.expect?.code ?? 0, code);
  }
  if ('trust' in step) {
    const code = await sendEnvelope(slot, trustUpdate, scenarioTrust(scenario, step.trust));
    slot.log(`${named(step.trust, 'trust')}: code ${code}`);
    return expectCode(ctx, `${named(step.trust, 'trust update')}`, step.expect?.code ?? 0, code);
  }
  if ('revocations' in step) {
    const code = await sendEnvelope(slot, revocationUpdate, scenarioRevocations(scenario, step.revocations));
    slot.log(`${named(step.revocations, 'revocations')}: code ${code}`);
    return expectCode(ctx, `${named(step.revocations, 'revocation update')}`, step.expect?.code ?? 0, code);
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
  const hasPowerCut = scenario.steps.some((s) => 'powerCut' in s && s.powerCut !== undefined);
  if (!slot.simulated && hasPowerCut) {
    return {
      scenario: scenario.name,
      device: slot.index,
      expected: scenario.expect,
      passed: true,
      skipped: 'power cuts need a simulated device',
      failures: [],
      actual: null,
      seconds: 0,
      restarts: 0,
      uploads: [],
    };
  }
  let actual: DeviceStatus | null = null;
  try {
    const window = scenario.link?.window ?? 2;
    slot.setLink({ ...scenario.link, timeoutMs: timeoutFor(rig.options.baud, 1, scenario.link?.latencyMs ?? 0) });
    slot.log(`scenario ${scenario.name}: start (window ${window})`);
    if (slot.simulated) await provisionAndStart(ctx);
    if (!(await slot.waitAlive())) throw new Error('device does not answer echo');
    if (!slot.simulated && !(await boardHoldsTrust(ctx))) return result(ctx, t0, null);
    for (const step of scenario.steps) await runStep(ctx, step);
    actual = await deviceStatus(slot);
    slot.log(`status: ${JSON.stringify(actual)}`);
    compare(ctx, scenario.expect, actual);
  } catch (e) {
    ctx.failures.push(`harness: ${(e as Error).message}`);
  } finally {
    if (slot.simulated) await slot.stopDevice();
  }
  return result(ctx, t0, actual);
}

function result(ctx: Ctx, t0: number, actual: DeviceStatus | null): CaseResult {
  const { slot, scenario } = ctx;
  slot.log(`scenario ${scenario.name}: ${ctx.failures.length === 0 ? 'PASS' : `FAIL ${ctx.failures.join('; ')}`}`);
  return {
    scenario: scenario.name,
    device: slot.index,
    expected: scenario.expect,
    passed: ctx.failures.length === 0,
    failures: ctx.failures,
    actual,
    seconds: (Date.now() - t0) / 1000,
    restarts: slot.restarts,
    uploads: ctx.uploads,
  };
}

/** A fresh device directory provisioned from `setup` (trust, factory release in slot A), and its process started. */
async function provisionAndStart(ctx: Ctx): Promise<void> {
  const { rig, slot, scenario } = ctx;
  const dir = join(rig.options.workDir, 'devices', `${scenario.name}-dev${slot.index}`);
  rmSync(dir, { recursive: true, force: true });
  const s = scenario.setup;
  const factory = release(scenario, s.factory);
  const p = provisionDevice(dir, {
    deviceClass: s.deviceClass,
    trust: scenarioTrust(scenario, s.trust),
    envelope: factory.envelope,
    image: factory.image,
    ...(s.revocations ? { revocations: scenarioRevocations(scenario, s.revocations) } : {}),
    ...(s.maxTrialBoots ? { maxTrialBoots: s.maxTrialBoots } : {}),
  });
  if (!p.ok) throw new Error(`provisioning failed: ${p.error} ${p.detail ?? ''}`);
  await slot.startDevice(dir);
}

/**
 * A board on `--port` was provisioned outside the harness (its factory, or `fwseal device provision
 * --trust trust.cbor` for a simulated board): the harness never changes its root of trust behind the
 * scenario's back, so it checks that the board holds the version of `setup.trust` the scenario was
 * written for (fwseal status `trust`, SPEC.md §13.3) and runs nothing when it does not. A `trust`
 * step is how a scenario rotates a board's trust on purpose.
 */
async function boardHoldsTrust(ctx: Ctx): Promise<boolean> {
  const { slot, scenario } = ctx;
  const t = scenario.setup.trust;
  const want = typeof t === 'string' ? trustBundleVersion(scenarioFile(scenario, t)) : (t.version ?? 1);
  const st = await deviceStatus(slot);
  if (want === null || st === null || st.trust === undefined || st.trust === want) return true;
  ctx.failures.push(
    `setup.trust: the board holds trust bundle v${st.trust}, the scenario's ${typeof t === 'string' ? t : 'test-key bundle'} is v${want} (provision the board with it, or add a trust step)`,
  );
  return false;
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
