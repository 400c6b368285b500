/**
 * The log policy flow in the device bundle inside QuickJS and quickjs-ng under setMemoryLimit(131072)
 * (issue 19 item 3, SPEC.md §10, §16): loadTrust of a format-2 bundle, verifyManifest, and
 * verifyLogProof of a release in a real 1,001-entry log, cosigned by 2 of 3 witnesses, with a
 * consistency proof from the checkpoint the device stored; then a stale and a forked checkpoint,
 * refused with the same codes as in Node.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTrust, verifyLogProof } from '../device/index.js';
import { CODES } from '../shared/codes.js';
import { parseLogProof } from '../shared/log-proof.js';
import { detBytes } from './support/fixtures.js';
import { loadVerifierInQuickJS, QUICKJS_VARIANTS } from './support/quickjs.js';
import { logWorld, type OpenLog, openLog } from './support/tlog-device-world.js';

const MEMORY_LIMIT = 128 * 1024;
const L = logWorld('qjs');
const envelope = L.release(1, 4096, 1 << 20);
const stale = L.release(2);
let log: OpenLog;
let fork: OpenLog;
const w: { proof?: Uint8Array; staleProof?: Uint8Array; forkProof?: Uint8Array; stored?: { size: number; root: Uint8Array } } = {};

beforeAll(async () => {
  log = openLog(L.logKey);
  fork = openLog(L.logKey);
  const filler = Array.from({ length: 600 }, (_, i) => detBytes(64, `qjs filler ${i}`));
  log.append(stale, ...filler.slice(1));
  fork.append(...filler);
  for (const l of [log, fork]) {
    l.checkpoint();
    l.cosign(L.witnesses.slice(0, 2));
  }
  w.staleProof = await log.prove(stale);
  w.forkProof = await fork.prove(filler[0]);
  const first = parseLogProof(w.staleProof);
  if (!first.ok) throw new Error(first.error);
  w.stored = { size: first.value.size, root: first.value.root };
  log.append(...Array.from({ length: 400 }, (_, i) => detBytes(64, `qjs more ${i}`)), envelope);
  log.checkpoint();
  log.cosign(L.witnesses.slice(1));
  w.proof = await log.prove(envelope, w.stored.size);
}, 60_000);
afterAll(() => {
  log?.close();
  fork?.close();
});

const flow = (storedSize: number) => `(function () {
  var V = fwsealVerifier, S = fwsealHarness.slots, out = {}, stored = { size: ${storedSize}, root: S.storedRoot };
  var t = V.loadTrust(S.trust);
  out.loadTrust = t.code;
  if (!t.ok) return out;
  var m = V.verifyManifest(S.envelope, S.trust, { deviceClass: 'acme-gw', counter: 7, trustVersion: 1 });
  out.verifyManifest = m.code;
  if (!m.ok) return out;
  var l = V.verifyLogProof(S.envelope, S.proof, t.trust, stored);
  out.verifyLogProof = l.code;
  out.advanced = l.ok && l.advanced;
  out.size = l.ok ? l.checkpoint.size : -1;
  out.stale = V.verifyLogProof(S.stale, S.staleProof, t.trust, { size: out.size, root: l.checkpoint.root }).code;
  out.fork = V.verifyLogProof(S.fork, S.forkProof, t.trust, stored).code;
  out.otherEntry = V.verifyLogProof(S.stale, S.proof, t.trust, stored).code;
  return out;
})()`;

describe.each(QUICKJS_VARIANTS)('log policy in QuickJS (%s)', (variant) => {
  it('loadTrust (format 2), verifyManifest, verifyLogProof with 2 of 3 witnesses and consistency, under 128 KB; refusals as in Node', {
    timeout: 120_000,
  }, async () => {
    const vm = await loadVerifierInQuickJS({ variant, memoryLimit: MEMORY_LIMIT });
    try {
      for (const [name, bytes] of Object.entries({
        trust: L.trust,
        envelope,
        proof: w.proof!,
        stale,
        staleProof: w.staleProof!,
        fork: detBytes(64, 'qjs filler 0'),
        forkProof: w.forkProof!,
        storedRoot: w.stored!.root,
      }))
        vm.setBytes(name, bytes);
      const baseline = vm.memory();
      const run = vm.measurePeak(() => vm.evalJson(flow(w.stored!.size)), { interruptAboveUsedBytes: baseline.usedBytes + MEMORY_LIMIT });
      console.log(`${variant} log policy flow: peak +${run.peakUsedBytes - baseline.usedBytes} B over the loaded baseline, ${run.ms.toFixed(0)} ms`);
      const t = loadTrust(L.trust);
      if (!t.ok) throw new Error(t.error);
      const node = verifyLogProof(envelope, w.proof!, t.trust, w.stored);
      expect(node.ok).toBe(true);
      expect(run.interrupted).toBe(false);
      expect(run.result).toEqual({
        loadTrust: 0,
        verifyManifest: 0,
        verifyLogProof: 0,
        advanced: true,
        size: 1001,
        stale: CODES.LOG_ROLLBACK,
        fork: CODES.LOG_FORK,
        otherEntry: CODES.LOG_PROOF_MISMATCH,
      });
      expect(verifyLogProof(detBytes(64, 'qjs filler 0'), w.forkProof!, t.trust, w.stored).code).toBe(CODES.LOG_FORK);
    } finally {
      vm.dispose();
    }
  });
});
