/**
 * The SMP fuzzer's engine (issue 11: "SMP offset/length abuse"; run by tools/fuzz-smp.ts and
 * test/smp-fuzz.test.ts): random offset/length/type abuse of image upload and the group 64 envelope
 * uploads, mixed with valid chunks of a real update bundle (so the abuse reaches every upload
 * state: header, manifest, digest pages, chunks, complete), random commands with random payloads,
 * packets whose header lies, and random bytes as frames, all thrown at one in-process simulated
 * device (hil/device.ts). Every request is held to one oracle (SPEC.md §13.7):
 *
 *   - sending it never throws out of the device                       else "threw"
 *   - a packet with a request header gets exactly one answer, with its group, command and
 *     sequence number and op + 1                                      else "answers"
 *   - no handler fails (the server's EUNKNOWN safety net stays unused) else "handler failed"
 *   - no case grows the process's ArrayBuffer memory by more than MAX_CASE_ALLOCATION bytes
 *     (an allocation sized by an attacker's `len` would)             else "allocation"
 *   - after each case the device still answers echo                   else "no echo"
 *
 * Reproducible: case n of seed s draws from its own stream (Rng(s, n)); the device carries its
 * state from case to case, so a failure replays with the same seed and at least n + 1 runs.
 * The moves (what is sent) are smp-fuzz-moves.ts.
 */
import { existsSync } from 'node:fs';
import { type Verifier } from '../../device/index.js';
import { type CborMap } from '../../shared/cbor.js';
import { MGMT_ERR, smpErrorOf } from '../../shared/smp/errors.js';
import { parseSmpHeader, type SmpPacket } from '../../shared/smp/packet.js';
import { Rng } from './fuzz/rng.js';
import { DeviceUnderTest } from './smp-device.js';
import { move, type Progress, type World, world } from './smp-fuzz-moves.js';

export type SmpFuzzOptions = {
  readonly runs: number;
  readonly seed: number;
  /** The verifier the device runs (tests pass a broken one to show the oracle can fail). */
  readonly verifier?: Verifier;
};

export type SmpFuzzReport = {
  readonly cases: number;
  readonly failures: string[];
  /** Requests sent and answers seen by kind ("ok", "rc 3 BAD_VALUE", "bundle complete", ...): what the run reached. */
  readonly coverage: Readonly<Record<string, number>>;
};

/** No request may make the device hold this much more ArrayBuffer memory (the largest legitimate buffer is an envelope, 16 KiB). */
export const MAX_CASE_ALLOCATION = 2 * 1024 * 1024;
const MAX_FAILURES = 100;

export async function fuzzSmp(opts: SmpFuzzOptions): Promise<SmpFuzzReport> {
  if (!Number.isSafeInteger(opts.runs) || opts.runs < 0) throw new RangeError('runs must be a non-negative integer');
  if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff) throw new RangeError('seed must be 0..2^32-1');
  const w = world();
  // Flash writes fsync: on tmpfs they cost nothing, and the fuzzer makes thousands of them.
  const parent = existsSync('/dev/shm') ? '/dev/shm' : undefined;
  const dut = new DeviceUnderTest({ ...(opts.verifier ? { verifier: opts.verifier } : {}), ...(parent ? { parent } : {}) });
  const failures: string[] = [];
  const coverage: Record<string, number> = {};
  const progress: Progress = { imageOff: 0, envelopeCommand: 1, envelopeLen: 1, envelopeOff: 0, seq: 0, reset: false };
  try {
    for (let n = 0; n < opts.runs; n++) {
      for (const f of runCase(dut, w, new Rng(opts.seed, n), progress, coverage)) {
        if (failures.length < MAX_FAILURES) failures.push(`seed ${opts.seed} case ${n}: ${f}`);
      }
      if (progress.reset) {
        await new Promise((resolve) => setImmediate(resolve)); // the device's reset callback runs on the next turn
        if (dut.resetRequested) dut.restart();
        progress.reset = false;
        progress.imageOff = 0;
        progress.envelopeOff = 0;
      }
    }
  } finally {
    dut.close();
  }
  return { cases: opts.runs, failures, coverage: Object.freeze({ ...coverage }) };
}

function runCase(dut: DeviceUnderTest, w: World, rng: Rng, p: Progress, coverage: Record<string, number>): string[] {
  const problems: string[] = [];
  const before = process.memoryUsage().arrayBuffers;
  const moves = rng.range(1, 8);
  for (let i = 0; i < moves; i++) {
    const sent = move(rng, w, p);
    count(coverage, `sent ${sent.kind}`);
    const failedBefore = dut.device.server.stats().failed;
    let answers: SmpPacket[];
    try {
      answers = 'packet' in sent ? dut.sendPacket(sent.packet) : dut.send(sent.raw);
    } catch (e) {
      problems.push(`threw on ${sent.kind}: ${e instanceof Error ? e.stack : String(e)}`);
      continue;
    }
    if (dut.device.server.stats().failed !== failedBefore) problems.push(`handler failed on ${sent.kind}: ${dut.log[dut.log.length - 1] ?? ''}`);
    if ('raw' in sent) continue; // random bytes: any answer is fine, none is expected
    const h = parseSmpHeader(sent.packet);
    const isRequest = h.ok && (h.header.op & 1) === 0;
    if (!isRequest) {
      if (answers.length !== 0) problems.push(`${answers.length} answers to a packet that is not a request (${sent.kind})`);
      continue;
    }
    const r = h.header;
    const a = answers[0];
    if (answers.length !== 1 || a.header.seq !== r.seq || a.header.group !== r.group || a.header.command !== r.command || a.header.op !== r.op + 1) {
      problems.push(`${answers.length} answers (or a mismatched one) to ${sent.kind} seq ${r.seq}`);
      continue;
    }
    observe(a.payload, r, w, p, coverage);
  }
  const grown = process.memoryUsage().arrayBuffers - before;
  if (grown > MAX_CASE_ALLOCATION) problems.push(`allocation: ArrayBuffer memory grew by ${grown} bytes in one case`);
  if (!dut.echoes('fuzz', 255)) problems.push('no echo after the case');
  return problems;
}

/** Learn the device's offsets from an answer and count what was reached. */
function observe(payload: CborMap, req: { group: number; command: number }, w: World, p: Progress, coverage: Record<string, number>): void {
  const err = smpErrorOf(payload);
  if (err !== null) {
    count(coverage, `rc ${err.rc}${err.group !== undefined ? ` group ${err.group}` : ''}${err.rsn ? ` ${err.rsn}` : ''}`);
    if (err.rc === MGMT_ERR.EUNKNOWN && err.rsn === undefined) count(coverage, 'EUNKNOWN without a reason');
    return;
  }
  count(coverage, 'ok');
  const off = payload.get('off');
  if (typeof off !== 'number') return;
  if (req.group === 1 && req.command === 1) {
    p.imageOff = off;
    if (off === w.bundle.length) {
      count(coverage, 'bundle complete');
      p.imageOff = 0; // start again: the device answers len to the same sha (resume), or takes a new upload
    }
  } else if (req.group === 64) {
    p.envelopeOff = off;
    if (payload.get('code') !== undefined) count(coverage, `envelope code ${String(payload.get('code'))}`);
  }
}

function count(coverage: Record<string, number>, key: string): void {
  coverage[key] = (coverage[key] ?? 0) + 1;
}
