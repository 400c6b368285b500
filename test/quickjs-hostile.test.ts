/**
 * Refusing hostile input stays inside the device's memory budget (SPEC.md §2 `maxDecodedItems`,
 * §10): the largest hostile shapes up to `maxEnvelopeBytes` (many small items, deep nesting, many
 * signatures, a payload full of items) run through the device bundle in QuickJS under
 * setMemoryLimit(131072), and QuickJS's own live-byte estimate, sampled while the refusals repeat,
 * stays within 128 KiB of what was live before. The honest extreme (a full revocation list) still
 * verifies there.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { head } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { detBytes, detKey, makeRevocations, makeTrust } from './support/fixtures.js';
import { loadVerifierInQuickJS, QUICKJS_VARIANTS, type VerifierVM } from './support/quickjs.js';

const MEMORY_LIMIT = 131072;
const cat = (...parts: (Uint8Array | number[])[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const bstr = (b: Uint8Array) => cat(head(2, b.length), b);
/** An array of `count` copies of `item`. */
const array = (count: number, item: Uint8Array) => cat(head(4, count), ...Array.from({ length: count }, () => item));
/** Tag 98 around [h'', {}, payload, signatures]: the envelope frame, whatever the signatures hold. */
const envelope = (payload: Uint8Array, signatures: Uint8Array) => cat([0xd8, 0x62, 0x84, 0x40, 0xa0], bstr(payload), signatures);
/** Fill the rest of an envelope with 255-entry arrays of a 1-byte item: as many items as the input allows. */
function filled(item: number, budget = LIMITS.maxEnvelopeBytes - 16): Uint8Array {
  const inner = array(255, Uint8Array.of(item));
  return array(Math.floor(budget / inner.length), inner);
}

const [A, B, C, R1, R2] = ['A', 'B', 'C', 'R1', 'R2'].map((l) => detKey(`hostile/${l}`));
const trust = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [A, B] });
const oneSignature = array(1, cat([0x83], bstr(Uint8Array.of(0xa1, 0x01, 0x27)), [0xa1, 0x04], bstr(R1.keyId), bstr(new Uint8Array(64))));
const cose = cat([0x83], bstr(Uint8Array.of(0xa1, 0x01, 0x27)), [0xa1, 0x04], bstr(R1.keyId), bstr(detBytes(64, 'sig')));
/** [[[[h'']]]]: with the tag, the envelope, the signature list and the 255-entry array, nesting `maxDepth` deep. */
const deepChain = cat(...Array.from({ length: LIMITS.maxDepth - 4 }, () => [0x81]), [0x40]);

const SHAPES: Record<string, Uint8Array> = {
  'empty byte strings': envelope(new Uint8Array(0), filled(0x40)),
  'empty arrays': envelope(new Uint8Array(0), filled(0x80)),
  'empty maps': envelope(new Uint8Array(0), filled(0xa0)),
  'small integers': envelope(new Uint8Array(0), filled(0x01)),
  'one-byte texts': envelope(new Uint8Array(0), array(Math.floor((LIMITS.maxEnvelopeBytes - 16) / 513), array(255, Uint8Array.of(0x61, 0x61)))),
  'deep nesting': envelope(new Uint8Array(0), array(Math.floor((LIMITS.maxEnvelopeBytes - 16) / 255 / deepChain.length), array(255, deepChain))),
  'many signatures': envelope(new Uint8Array(0), array(Math.floor((LIMITS.maxEnvelopeBytes - 16) / cose.length), cose)),
  'payload of items': envelope(filled(0x40, LIMITS.maxPayloadBytes - 8), oneSignature),
};

describe.each(QUICKJS_VARIANTS)('hostile envelopes in QuickJS (%s)', (variant) => {
  let vm: VerifierVM;
  beforeAll(async () => {
    vm = await loadVerifierInQuickJS({ variant, memoryLimit: MEMORY_LIMIT });
    vm.setBytes('trust', trust);
  });
  afterAll(() => vm?.dispose());

  it.each(Object.keys(SHAPES))('%s: refused with TOO_LARGE, live memory within 128 KiB', (shape) => {
    const bytes = SHAPES[shape];
    expect(bytes.length).toBeLessThanOrEqual(LIMITS.maxEnvelopeBytes);
    vm.setBytes('hostile', bytes);
    const baseline = vm.memory();
    // Repeated so that QuickJS's interrupt polls (every ~10,000 steps) sample inside the decoding.
    const run = vm.measurePeak(
      () =>
        vm.evalJson<number[]>(`(function () {
      var H = fwsealHarness, V = fwsealVerifier, codes = [];
      var t = V.loadTrust(H.slots.trust).trust;
      for (var i = 0; i < 40; i++) {
        codes.push(V.verifyManifestWithTrust(H.slots.hostile, t, { deviceClass: 'x', counter: 0 }).code);
        codes.push(V.verifyRevocations(H.slots.hostile, t).code);
        codes.push(V.loadTrust(H.slots.hostile).code);
      }
      return codes.filter(function (c, j) { return codes.indexOf(c) === j; });
    })()`),
      { interruptAboveUsedBytes: baseline.usedBytes + MEMORY_LIMIT },
    );
    console.log(`${variant} ${shape}: ${bytes.length} B refused; peak +${run.peakUsedBytes - baseline.usedBytes} B over the baseline, ${run.samples} samples`);
    expect(run.result).toEqual([CODES.TOO_LARGE]);
    expect(run.interrupted).toBe(false);
    expect(run.samples).toBeGreaterThan(0);
    expect(run.peakUsedBytes - baseline.usedBytes).toBeLessThanOrEqual(MEMORY_LIMIT);
  });

  it('the honest extreme, a full revocation list (128 key ids, 128 manifests), verifies under the same limit', () => {
    const full = makeRevocations({
      version: 1,
      keyIds: Array.from({ length: LIMITS.maxRevokedKeys }, (_, i) => detBytes(16, `kid ${i}`)),
      manifests: Array.from({ length: LIMITS.maxRevokedManifests }, (_, i) => detBytes(32, `m ${i}`)),
      signers: [A, B, C],
    });
    vm.setBytes('full', full);
    expect(
      vm.evalJson(`(function () {
      var V = fwsealVerifier, S = fwsealHarness.slots;
      return V.verifyRevocations(S.full, V.loadTrust(S.trust).trust).code;
    })()`),
    ).toBe(CODES.OK);
  });
});
