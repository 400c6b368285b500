/**
 * The device verifier unchanged in QuickJS (the issue "The verifier on constrained JavaScript
 * runtimes"): the one-file bundle dist/device/fwseal-verifier.js is evaluated in both
 * quickjs-emscripten builds (bellard `quickjs` and `quickjs-ng`) and must give Node's answers on
 * every vector, run the whole update flow under a 128 KB memory limit, and stay within its gzip
 * budget. Harness: test/support/quickjs.ts; how these builds count memory: test/support/quickjs-memory.ts.
 * FWSEAL_DEVICE_BUNDLE points the suite at another build of the bundle.
 */

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as bundleEntry from '../device/bundle.js';
import * as device from '../device/index.js';
import { CODES } from '../shared/codes.js';
import { detKey } from './support/fixtures.js';
import { generateVectors, stableJson } from './support/manifest-vectors.js';
import { BUNDLE_GZIP_BUDGET, DEFAULT_BUNDLE_PATH, loadVerifierInQuickJS, QUICKJS_VARIANTS, type VerifierVM } from './support/quickjs.js';
import { flowSource, loadFlowInputs, flowWorld as makeFlowWorld } from './support/quickjs-flow.js';
import { type CaseOutcome, runVectorCase, type VectorCase } from './support/quickjs-harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const readVector = (rel: string): string => readFileSync(join(here, 'vectors', rel), 'utf8');
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const bytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));

/** Time per part, printed at the end (the lead keeps the file under ~2 minutes on 2 cores). */
const timings: string[] = [];
function timed<T>(label: string, fn: () => T): T {
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    timings.push(`${label}: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
  }
}
afterAll(() => console.log(`quickjs.test.ts timings (bundle ${DEFAULT_BUNDLE_PATH}):\n  ${timings.join('\n  ')}`));

// ---- vectors, read once ----

type ManifestVectors = { images: Record<string, string>; cases: (VectorCase & { expected: CaseOutcome })[] };
const manifestVectorsText = readVector('fwseal/manifest-vectors.json');
const manifestVectors = JSON.parse(manifestVectorsText) as ManifestVectors;

type Ed25519Vector = { id: string; sig: string; msg: string; pk: string };

const wycheproof = (() => {
  const file = JSON.parse(readVector('wycheproof/ed25519_test.json')) as {
    testGroups: { publicKey: { pk: string }; tests: { tcId: number; msg: string; sig: string; result: string }[] }[];
  };
  return file.testGroups.flatMap((g) =>
    g.tests.map((t) => ({ id: `tcId ${t.tcId}`, sig: t.sig, msg: t.msg, pk: g.publicKey.pk, valid: t.result === 'valid' })),
  );
})();

const cctv = (JSON.parse(readVector('cctv/ed25519vectors.json')) as { number: number; key: string; sig: string; msg: string }[]).map((v) => ({
  id: `#${v.number}`,
  sig: v.sig,
  msg: hex(Buffer.from(v.msg, 'utf8')),
  pk: v.key,
}));

const cose = ['eddsa-01.json', 'eddsa-02.json', 'eddsa-sig-01.json', 'eddsa-sig-02.json'].flatMap((f) => {
  type CoseKey = { crv: string; x_hex: string };
  const ex = JSON.parse(readVector(`cose/${f}`)) as {
    input: { sign?: { signers: { key: CoseKey }[] }; sign0?: { key: CoseKey } };
    intermediates: { ToBeSign_hex?: string; signers?: { ToBeSign_hex: string }[] };
    output: { cbor: string };
  };
  const key = ex.input.sign0?.key ?? ex.input.sign?.signers[0].key;
  const tbs = ex.intermediates.ToBeSign_hex ?? ex.intermediates.signers?.[0].ToBeSign_hex;
  if (!key || !tbs) throw new Error(`unexpected COSE example shape: ${f}`);
  const sigLength = key.crv === 'Ed25519' ? 64 : 114;
  const sig = ex.output.cbor.slice(-2 * sigLength);
  const flipped = (parseInt(tbs.slice(0, 2), 16) ^ 1).toString(16).padStart(2, '0') + tbs.slice(2);
  return [
    { id: `${f} (${key.crv})`, sig, msg: tbs, pk: key.x_hex, crv: key.crv },
    { id: `${f} (${key.crv}), ToBeSigned with a bit flipped`, sig, msg: flipped, pk: key.x_hex, crv: key.crv },
  ];
});

const nodeEd25519 = (list: readonly Ed25519Vector[]): boolean[] => list.map((v) => device.verifyEd25519(bytes(v.sig), bytes(v.msg), bytes(v.pk)));

/** All vectors of a file in one call: hex in, booleans out. */
function vmEd25519(vm: VerifierVM, list: readonly Ed25519Vector[]): boolean[] {
  return vm.evalJson<boolean[]>(
    `(function () {
      var H = fwsealHarness, V = fwsealVerifier;
      return JSON.parse(H.input).map(function (v) { return V.verifyEd25519(H.hex(v.sig), H.hex(v.msg), H.hex(v.pk)); });
    })()`,
    JSON.stringify(list.map(({ sig, msg, pk }) => ({ sig, msg, pk }))),
  );
}

const differences = (list: readonly { id: string }[], a: readonly boolean[], b: readonly boolean[]): string[] =>
  list.flatMap((v, i) => (a[i] === b[i] ? [] : [`${v.id}: ${a[i]} vs ${b[i]}`]));

// ---- the 128 KB flow: a world whose 1 MiB image the VM makes itself ----

const MEMORY_LIMIT = 128 * 1024;
const flowWorld = makeFlowWorld();

// =====================================================================================

it('the committed manifest vectors are what tools/gen-vectors.ts generates', () => {
  expect(timed('regenerate the manifest vectors (Node)', () => stableJson(generateVectors())) === manifestVectorsText).toBe(true);
});

it(`the bundle's gzip size is within its budget`, () => {
  const gz = gzipSync(readFileSync(DEFAULT_BUNDLE_PATH), { level: 9 }).length;
  console.log(`device bundle ${DEFAULT_BUNDLE_PATH}: ${gz} bytes gzip (level 9), budget ${BUNDLE_GZIP_BUDGET}`);
  expect(gz).toBeLessThanOrEqual(BUNDLE_GZIP_BUDGET);
});

describe.each(QUICKJS_VARIANTS)('QuickJS (%s)', (variant) => {
  let vm: VerifierVM;
  beforeAll(async () => {
    vm = await loadVerifierInQuickJS({ variant });
    timings.push(`${variant}: bundle evaluated in ${(vm.bundleMs / 1000).toFixed(2)} s`);
  });
  afterAll(() => vm?.dispose());

  it('evaluates the bundle, which defines fwsealVerifier and no other global', async () => {
    const bare = await loadVerifierInQuickJS({ variant, loadBundle: false });
    try {
      const globals = () => bare.evalJson<string[]>('Object.getOwnPropertyNames(globalThis).sort()');
      const before = globals();
      bare.evalJson(readFileSync(DEFAULT_BUNDLE_PATH, 'utf8')); // throws if the bundle does not evaluate
      const added = globals().filter((g) => !before.includes(g));
      expect(added).toEqual(['fwsealVerifier']);
      expect(bare.evalJson(`typeof fwsealVerifier.verifyManifest`)).toBe('function');
      // The same surface as device/bundle.ts in Node.
      expect(bare.evalJson<string[]>('Object.keys(fwsealVerifier).sort()')).toEqual(Object.keys(bundleEntry).sort());
    } finally {
      bare.dispose();
    }
  });

  it("the project's manifest vectors: every code equals the expected code and Node's", { timeout: 180_000 }, () => {
    const { images, cases } = manifestVectors;
    const inVm = timed(`${variant}: ${cases.length} manifest vectors`, () =>
      vm.evalJson<CaseOutcome[]>(
        `(function () { var f = JSON.parse(fwsealHarness.input); return f.cases.map(function (c) { return fwsealHarness.runCase(c, f.images); }); })()`,
        manifestVectorsText,
      ),
    );
    const inNode = cases.map((c) => runVectorCase(device, c, images));
    const wrong = cases.flatMap((c, i) => {
      const want = `${c.expected.stage} ${c.expected.error} ${c.expected.code}`;
      const node = `${inNode[i].stage} ${inNode[i].error} ${inNode[i].code}`;
      const vmGot = `${inVm[i].stage} ${inVm[i].error} ${inVm[i].code}`;
      return want === node && want === vmGot ? [] : [`${c.name}: expected ${want}, Node ${node}, ${variant} ${vmGot}`];
    });
    expect(wrong).toEqual([]);
    expect(inVm.length).toBe(cases.length);
  });

  it('Wycheproof (151): the same verdicts as Node, 88 valid accepted, 63 invalid rejected', { timeout: 120_000 }, () => {
    const got = timed(`${variant}: Wycheproof ${wycheproof.length}`, () => vmEd25519(vm, wycheproof));
    expect(differences(wycheproof, got, nodeEd25519(wycheproof))).toEqual([]);
    expect(
      differences(
        wycheproof,
        got,
        wycheproof.map((v) => v.valid),
      ),
    ).toEqual([]);
    expect(got.filter(Boolean).length).toBe(88);
  });

  it('CCTV (914): the same verdicts as Node, 212 accepted', { timeout: 180_000 }, () => {
    const got = timed(`${variant}: CCTV ${cctv.length}`, () => vmEd25519(vm, cctv));
    expect(got.length).toBe(914);
    expect(differences(cctv, got, nodeEd25519(cctv))).toEqual([]);
    expect(got.filter(Boolean).length).toBe(212);
  });

  it('COSE EdDSA examples: the Ed25519 ones verify over ToBeSigned, flipped or Ed448 ones do not, as in Node', () => {
    const got = timed(`${variant}: COSE examples`, () => vmEd25519(vm, cose));
    expect(differences(cose, got, nodeEd25519(cose))).toEqual([]);
    expect(got).toEqual(cose.map((v) => v.crv === 'Ed25519' && !v.id.includes('flipped')));
  });

  it('platform hooks: a JS sha256 wrapping the default and a host sha512 give the same results', { timeout: 120_000 }, () => {
    // sha512 is not exported by the bundle, so the hook is a host function (node:crypto) called
    // across the VM boundary, as a runtime with native hashing would provide it.
    const hostSha512 = vm.context.newFunction('hostSha512', (buf) => {
      const input = vm.context.getArrayBuffer(buf);
      try {
        return vm.context.newArrayBuffer(Uint8Array.from(createHash('sha512').update(input.value).digest()).buffer);
      } finally {
        input.dispose();
      }
    });
    vm.context.setProp(vm.context.global, 'hostSha512', hostSha512);
    hostSha512.dispose();
    try {
      const picked = manifestVectors.cases.filter((c) =>
        ['OK', 'THRESHOLD_NOT_MET', 'REVOKED_KEY', 'REVOKED_MANIFEST', 'TRUST_THRESHOLD_NOT_MET', 'CHUNK_DIGEST_MISMATCH', 'MERKLE_ROOT_MISMATCH'].includes(
          c.expected.error,
        ),
      );
      const result = timed(`${variant}: platform hooks, ${picked.length} manifest vectors + Wycheproof`, () =>
        vm.evalJson<{ codes: number[]; wycheproof: boolean[]; calls: { sha256: number; sha512: number } }>(
          `(function () {
          var H = fwsealHarness, V = fwsealVerifier, calls = { sha256: 0, sha512: 0 };
          var hooked = V.createVerifier({
            sha256: function (d) { calls.sha256++; return V.sha256(d); },
            sha512: function (d) { calls.sha512++; return new Uint8Array(hostSha512(d.slice().buffer)); },
          });
          var input = JSON.parse(H.input);
          var codes = input.cases.map(function (c) { return H.runCase(c, input.images, hooked).code; });
          var wycheproof = input.wycheproof.map(function (v) { return hooked.verifyEd25519(H.hex(v.sig), H.hex(v.msg), H.hex(v.pk)); });
          return { codes: codes, wycheproof: wycheproof, calls: calls };
        })()`,
          JSON.stringify({ cases: picked, images: manifestVectors.images, wycheproof }),
        ),
      );
      expect(result.codes).toEqual(picked.map((c) => c.expected.code));
      expect(result.wycheproof).toEqual(nodeEd25519(wycheproof));
      expect(result.calls.sha256).toBeGreaterThan(0);
      expect(result.calls.sha512).toBeGreaterThan(0);
    } finally {
      vm.evalJson('delete globalThis.hostSha512');
    }
  });

  it('platform hooks: a hook returning the wrong length is a programmer error (TypeError), as in Node', () => {
    const { trust, envelope, manifest } = flowWorld;
    const state = { deviceClass: 'acme-gw', counter: 7 };
    const key = detKey('quickjs flow/R1');
    const signature = key.sign(Uint8Array.of(1, 2, 3));
    type Outcome = { threw: string } | { code: number } | { value: unknown };
    const nodeOutcome = (f: () => unknown): Outcome => {
      try {
        const r = f() as { code?: unknown } | undefined;
        return r !== null && typeof r === 'object' && typeof r.code === 'number' ? { code: r.code } : { value: r instanceof Uint8Array ? hex(r) : r };
      } catch (e) {
        return { threw: (e as Error).constructor.name };
      }
    };
    const short256 = device.createVerifier({ sha256: () => new Uint8Array(31) });
    const short512 = device.createVerifier({ sha512: () => new Uint8Array(63) });
    const inNode = {
      sha256: nodeOutcome(() => short256.sha256(Uint8Array.of(1))),
      keyId: nodeOutcome(() => short256.keyId(key.publicKey)),
      loadTrust: nodeOutcome(() => short256.loadTrust(trust)),
      imageUpdate: nodeOutcome(() => short256.imageVerifier(manifest).update(new Uint8Array(4096))),
      verifyEd25519: nodeOutcome(() => short512.verifyEd25519(signature, Uint8Array.of(1, 2, 3), key.publicKey)),
      verifyManifest256: nodeOutcome(() => short256.verifyManifest(envelope, trust, state)),
      verifyManifest512: nodeOutcome(() => short512.verifyManifest(envelope, trust, state)),
    };
    const inVm = vm.evalJson<typeof inNode>(
      `(function () {
        var H = fwsealHarness, V = fwsealVerifier, i = JSON.parse(H.input);
        var short256 = V.createVerifier({ sha256: function () { return new Uint8Array(31); } });
        var short512 = V.createVerifier({ sha512: function () { return new Uint8Array(63); } });
        function outcome(f) {
          try {
            var r = f();
            return r !== null && typeof r === 'object' && typeof r.code === 'number' ? { code: r.code } : { value: r instanceof Uint8Array ? H.toHex(r) : r };
          } catch (e) {
            return { threw: e.constructor.name };
          }
        }
        var m = V.verifyManifest(H.hex(i.envelope), H.hex(i.trust), i.state).manifest;
        return {
          sha256: outcome(function () { return short256.sha256(Uint8Array.of(1)); }),
          keyId: outcome(function () { return short256.keyId(H.hex(i.publicKey)); }),
          loadTrust: outcome(function () { return short256.loadTrust(H.hex(i.trust)); }),
          imageUpdate: outcome(function () { return short256.imageVerifier(m).update(new Uint8Array(4096)); }),
          verifyEd25519: outcome(function () { return short512.verifyEd25519(H.hex(i.signature), Uint8Array.of(1, 2, 3), H.hex(i.publicKey)); }),
          verifyManifest256: outcome(function () { return short256.verifyManifest(H.hex(i.envelope), H.hex(i.trust), i.state); }),
          verifyManifest512: outcome(function () { return short512.verifyManifest(H.hex(i.envelope), H.hex(i.trust), i.state); }),
        };
      })()`,
      JSON.stringify({ envelope: hex(envelope), trust: hex(trust), state, publicKey: hex(key.publicKey), signature: hex(signature) }),
    );
    expect(inVm).toEqual(inNode);
    for (const call of ['sha256', 'keyId', 'loadTrust', 'imageUpdate', 'verifyEd25519'] as const) {
      expect(inVm[call], call).toEqual({ threw: 'TypeError' });
    }
  });

  it('128 KB: trust, revocation list, a 3-signature manifest and a 1 MiB image in 4 KiB pieces, under setMemoryLimit(131072)', {
    timeout: 180_000,
  }, async () => {
    // The limit is set before the bundle is evaluated and stays for the whole flow. These builds
    // count 8 bytes per live allocation against it (see test/support/quickjs-memory.ts), so the flow is
    // also held to 128 KiB of QuickJS's byte estimate above what was live once the bundle and the
    // inputs were loaded: the run is interrupted at the first sample above that.
    const flowVm = await loadVerifierInQuickJS({ variant, memoryLimit: MEMORY_LIMIT });
    try {
      loadFlowInputs(flowVm, flowWorld);
      const baseline = flowVm.memory();
      const good = timed(`${variant}: 128 KB flow, 1 MiB image`, () =>
        flowVm.measurePeak(() => flowVm.evalJson(flowSource()), { interruptAboveUsedBytes: baseline.usedBytes + MEMORY_LIMIT }),
      );
      const tampered = timed(`${variant}: 128 KB flow, tampered chunk 200`, () =>
        flowVm.measurePeak(() => flowVm.evalJson(flowSource({ tamperOffset: 200 * 4096 + 5 })), { interruptAboveUsedBytes: baseline.usedBytes + MEMORY_LIMIT }),
      );
      const report = (p: typeof good) =>
        `peak ${p.peakUsedBytes} B used (+${p.peakUsedBytes - baseline.usedBytes} over the loaded baseline ${baseline.usedBytes}), ` +
        `peak ${p.peakBlocks} blocks = ${8 * p.peakBlocks} B against the limit, ${p.samples} samples, ${(p.ms / 1000).toFixed(2)} s`;
      console.log(
        `${variant} 128 KB flow: bundle loaded ${flowVm.afterBundle.usedBytes} B used (${flowVm.afterBundle.blocks} blocks); ` +
          `good image: ${report(good)}; tampered: ${report(tampered)}`,
      );
      expect(good.result).toEqual({ loadTrust: 0, verifyRevocations: 0, verifyManifest: 0, signers: 2, image: CODES.OK });
      expect(good.interrupted).toBe(false);
      expect(good.peakUsedBytes - baseline.usedBytes).toBeLessThanOrEqual(MEMORY_LIMIT);
      const t = tampered.result as { image: number; at: number };
      expect([CODES.CHUNK_DIGEST_MISMATCH, CODES.MERKLE_ROOT_MISMATCH]).toContain(t.image);
      expect(t.image).toBe(CODES.CHUNK_DIGEST_MISMATCH); // digest pages are loaded: at once (I3)
      expect(t.at).toBe(200 * 4096);
      expect(tampered.interrupted).toBe(false);
    } finally {
      flowVm.dispose();
    }
  });
});
