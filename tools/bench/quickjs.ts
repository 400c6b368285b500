/**
 * Section "quickjs": the device bundle inside QuickJS (quickjs-emscripten, bellard `quickjs` and
 * `quickjs-ng`), against noble in the same runtime.
 *
 * - Manifest verification, ms per call: `verifyManifestWithTrust` (trust loaded once) with 1, 2 and 3
 *   release signatures (release threshold 1, 2, 3, so every signature is verified), in our bundle
 *   and in the same bundle rebuilt with device/crypto/ed25519.ts replaced by a shim over
 *   @noble/ed25519 `verify(..., { zip215: false })` (noble's default path: its base-point tables).
 *   Everything else (CBOR, COSE, thresholds, SHA-512) is the same code, so the rows compare the
 *   Ed25519 implementations like for like. Also single verifyEd25519 calls, steady and first call
 *   in a fresh VM (noble builds its tables then), and loadTrust.
 * - SHA-256 MB/s in the VM: our bundle's `sha256` vs @noble/hashes `sha256` (a reference IIFE), on
 *   1 MiB made inside the VM, one-shot and as 256 inputs of 4097 bytes (the image verifier's
 *   per-chunk leaf hash: 0x00 || chunk); node:crypto in Node for reference.
 * - Memory: the 128 KB flow of test/quickjs.test.ts (trust, revocation list, a 3-signature manifest,
 *   a 1 MiB image in 4 KiB pieces) with QuickJS's own figures, and the smallest setMemoryLimit that
 *   runs it; the signature part alone also with the noble bundle.
 * - Bundle bytes: dist/device/fwseal-verifier.js raw (it is minified) and gzip -9, an unminified
 *   build with the same esbuild options, and the noble-Ed25519 build.
 *
 * Reference builds go to the section's tmpDir only. Verdicts (reported, never gating): SHA-256 >= 2x
 * noble-hashes; 2-signature manifest no slower than the noble build; bundle gzip within BUNDLE_GZIP_BUDGET.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { gzipSync } from 'node:zlib';
import { nodeSha256 } from '../../host/hash.js';
import { parseEnvelope, sigStructure } from '../../shared/cose.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeTrust } from '../../test/support/fixtures.js';
import { BUNDLE_GZIP_BUDGET, loadVerifierInQuickJS, QUICKJS_VARIANTS, type QuickJSVariantName, type VerifierVM } from '../../test/support/quickjs.js';
import { flowSource, flowWorld, loadFlowInputs } from '../../test/support/quickjs-flow.js';
import { xorshift32Bytes } from '../../test/support/quickjs-harness.js';
import { smallestMemoryLimit } from '../../test/support/quickjs-memory.js';
import {
  type BenchContext,
  MiB,
  msRow,
  type Row,
  row,
  type Samples,
  type Section,
  type SectionResult,
  timeSync,
  type Verdict,
  valueRow,
  yieldToSignals,
} from './common.js';
import { type Builds, makeBuilds } from './quickjs-builds.js';

const SHA_GOAL = 2;
const MANIFEST_GOAL = 1;
const GZIP_BUDGET = BUNDLE_GZIP_BUDGET;
/** The noble builds need room for their tables (33 x 128 base-point multiples). */
const BIG_LIMIT = 16 * MiB;
const FLOW_LIMIT = 128 * 1024;
const SHA_BYTES = MiB;
const LEAF_INPUT = 4097;
const LEAF_COUNT = 256;
const SHA_SEED = 0x0bad_5eed;

const empty = (): Samples => ({ seconds: [], rssKiB: [] });
const hexOf = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

// ---------- worlds ----------

const STATE = { deviceClass: 'acme-gw', counter: 7 };

/** Root A,B,C (2 of 3) signed by A+B; release R1..R3 with threshold n; a manifest signed by R1..Rn. */
function manifestWorld(n: number) {
  const [A, B, C, R1, R2, R3] = ['A', 'B', 'C', 'R1', 'R2', 'R3'].map((l) => detKey(`quickjs bench/${l}`));
  const release = [R1, R2, R3];
  const trust = makeTrust({ root: [A, B, C], rootThreshold: 2, release, releaseThreshold: n, signers: [A, B] });
  const manifest = makeManifest(detBytes(64 * 1024, 'quickjs bench image'), { deviceClass: STATE.deviceClass, securityCounter: STATE.counter });
  const envelope = makeManifestEnvelope(manifest, release.slice(0, n));
  return { trust, envelope, releaseKeys: release };
}

const FLOW_OK = JSON.stringify({ loadTrust: 0, verifyRevocations: 0, verifyManifest: 0, signers: 2, image: 0 });
const SIG_PART_OK = JSON.stringify({ loadTrust: 0, verifyRevocations: 0, verifyManifest: 0, signers: 2 });

/** What every measurement step shares: the builds, the VM loaders and the section's rows and verdicts. */
type QuickJsBench = {
  readonly ctx: BenchContext;
  readonly builds: Builds;
  readonly rows: Row[];
  readonly verdicts: Verdict[];
  /** A VM with our bundle / the noble-Ed25519 build. */
  readonly ours: (variant: QuickJSVariantName, memoryLimit?: number) => Promise<VerifierVM>;
  readonly noble: (variant: QuickJSVariantName, memoryLimit?: number) => Promise<VerifierVM>;
};

const best = (s: Samples) => Math.min(...s.seconds);
const timeEval = <T>(vm: VerifierVM, code: string): { seconds: number; value: T } => timeSync(() => vm.evalJson<T>(code));
const findRow = (b: QuickJsBench, name: string) => b.rows.find((r) => r.name === name);

// ---------- the section ----------

export const quickjsBench: Section = {
  name: 'quickjs',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const t0 = performance.now();
    const notes: string[] = [
      `load average at start ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    ];
    const builds = await makeBuilds(ctx);
    notes.push(builds.distNote);
    const b: QuickJsBench = {
      ctx,
      builds,
      rows: [],
      verdicts: [],
      ours: (variant, memoryLimit = BIG_LIMIT) => loadVerifierInQuickJS({ variant, memoryLimit, bundlePath: builds.dist }),
      noble: (variant, memoryLimit = BIG_LIMIT) => loadVerifierInQuickJS({ variant, memoryLimit, bundlePath: builds.nobleBundle }),
    };
    const msRuns = Math.max(10, ctx.runs);
    const ed = ed25519Inputs();
    for (const variant of QUICKJS_VARIANTS) await measureManifests(b, variant, ed, msRuns);
    const sha = shaInputs();
    const nobleRefSource = readFileSync(builds.nobleRef, 'utf8');
    for (const variant of QUICKJS_VARIANTS) await measureSha256InVm(b, variant, sha, nobleRefSource);
    await measureNodeSha256(b, sha);
    const flow = flowWorld();
    for (const variant of QUICKJS_VARIANTS) await measureFlowMemory(b, variant, flow);
    measureBundleBytes(b);

    notes.push(
      `ms rows: one call per run, timed from Node around evalJson (a few us of overhead), after 2 warm-up calls; best and median of ${msRuns}; ratio = noble best / ours best (>= 1: ours faster)`,
    );
    notes.push(
      `noble builds: our bundle with device/crypto/ed25519.ts swapped for @noble/ed25519 3 verify(zip215: false) (same SHA-512 hook), and @noble/hashes sha256 as a separate script; both under setMemoryLimit(${BIG_LIMIT}), ours too for the timings`,
    );
    notes.push('sha256 rows: inputs made inside the VM and checked against node:crypto; MB/s = 10^6 bytes/s of the best run; ratio = noble best / ours best');
    notes.push(
      "memory: QuickJS figures (test/support/quickjs-memory.ts explains them: setMemoryLimit counts 8 B per live block plus the requested size, used bytes are QuickJS's own estimate); smallest limits are bisections, set before the bundle is evaluated",
    );
    notes.push(
      'smallest limit: the limit is in force while the bundle is evaluated, so it includes the bundle source string and the blocks live after loading (the "bundle loaded" note); "signatures only" equal to the whole flow means the image part needs nothing more',
    );
    notes.push(
      `load average at end ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}; section took ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
    return { name: 'quickjs', title: 'the device bundle in QuickJS (quickjs, quickjs-ng) vs noble', rows: b.rows, verdicts: b.verdicts, notes };
  },
};

// ---------- manifest verification and Ed25519, ms per call ----------

const VERIFY1 = 'fwsealVerifier.verifyEd25519(fwsealHarness.slots.sig, fwsealHarness.slots.msg, fwsealHarness.slots.pub)';

type Ed25519Inputs = { readonly worlds: ReturnType<typeof manifestWorld>[]; readonly setEd: (vm: VerifierVM) => void };
type Pair = { ours: Samples; noble: Samples };
const pair = (): Pair => ({ ours: empty(), noble: empty() });

/** The 1-, 2- and 3-signature worlds and one signature of the first, for single verifyEd25519 calls. */
function ed25519Inputs(): Ed25519Inputs {
  const worlds = [1, 2, 3].map(manifestWorld);
  const env1 = parseEnvelope(worlds[0].envelope);
  if (!env1.ok) throw new Error('fixture envelope does not parse');
  const oneSig = { sig: env1.envelope.signatures[0].signature, msg: sigStructure(env1.envelope.payload), pub: worlds[0].releaseKeys[0].publicKey };
  const setEd = (vm: VerifierVM) => {
    vm.setBytes('sig', oneSig.sig);
    vm.setBytes('msg', oneSig.msg);
    vm.setBytes('pub', oneSig.pub);
  };
  return { worlds, setEd };
}

async function measureManifests(b: QuickJsBench, variant: QuickJSVariantName, ed: Ed25519Inputs, msRuns: number): Promise<void> {
  b.ctx.log(`${variant}: manifest verification, ours vs the noble-Ed25519 build (${msRuns} runs each)`);
  const first = await firstCalls(b, variant, ed);
  const vms = { ours: await b.ours(variant), noble: await b.noble(variant) };
  try {
    for (const vm of Object.values(vms)) loadManifestInputs(vm, variant, ed);
    const steady = await steadyCalls(variant, vms, msRuns);
    manifestRows(b, variant, { ...steady, first }, msRuns);
  } finally {
    vms.ours.dispose();
    vms.noble.dispose();
  }
}

/** First call in a fresh VM: noble builds its base-point tables, ours its 8 multiples of B. */
async function firstCalls(b: QuickJsBench, variant: QuickJSVariantName, ed: Ed25519Inputs): Promise<Pair> {
  const first = pair();
  for (let r = 0; r < b.ctx.runs; r++) {
    for (const [which, load] of [
      ['ours', b.ours],
      ['noble', b.noble],
    ] as const) {
      await yieldToSignals();
      const vm = await load(variant);
      try {
        ed.setEd(vm);
        const t = timeEval<boolean>(vm, VERIFY1);
        if (t.value !== true) throw new Error(`${variant} ${which}: verifyEd25519 rejected a valid signature`);
        first[which].seconds.push(t.seconds);
      } finally {
        vm.dispose();
      }
    }
  }
  return first;
}

/** The signature, the three trust bundles (loaded) and envelopes into a VM, then 2 warm-up calls of each manifest. */
function loadManifestInputs(vm: VerifierVM, variant: QuickJSVariantName, ed: Ed25519Inputs): void {
  ed.setEd(vm);
  ed.worlds.forEach((w, i) => {
    vm.setBytes(`trust${i + 1}`, w.trust);
    vm.setBytes(`env${i + 1}`, w.envelope);
  });
  const loaded = vm.evalJson<number[]>(`(function () { var S = fwsealHarness.slots, out = [];
    for (var n = 1; n <= 3; n++) { var t = fwsealVerifier.loadTrust(S['trust' + n]); out.push(t.code); S['t' + n] = t.trust; }
    return out; })()`);
  if (loaded.some((c) => c !== 0)) throw new Error(`${variant}: loadTrust rejected a fixture trust bundle: ${loaded.join(',')}`);
  for (let w = 0; w < 2; w++)
    for (let n = 1; n <= 3; n++)
      vm.evalJson(`fwsealVerifier.verifyManifestWithTrust(fwsealHarness.slots.env${n}, fwsealHarness.slots.t${n}, ${JSON.stringify(STATE)}).code`);
}

/** Steady state, one VM each: verifyManifestWithTrust with 1..3 signatures, verifyEd25519 and loadTrust per run. */
async function steadyCalls(
  variant: QuickJSVariantName,
  vms: { ours: VerifierVM; noble: VerifierVM },
  msRuns: number,
): Promise<{ steady: Pair; load: Pair; man: Pair[] }> {
  const steady = pair();
  const load = pair();
  const man = [1, 2, 3].map(pair);
  for (let r = 0; r < msRuns; r++) {
    await yieldToSignals();
    for (const which of ['ours', 'noble'] as const) {
      const vm = vms[which];
      for (let n = 1; n <= 3; n++) {
        const t = timeEval<{ code: number; signers: number }>(
          vm,
          `(function () { var m = fwsealVerifier.verifyManifestWithTrust(fwsealHarness.slots.env${n}, fwsealHarness.slots.t${n}, ${JSON.stringify(STATE)});
          return { code: m.code, signers: m.ok ? m.signers.length : 0 }; })()`,
        );
        if (t.value.code !== 0 || t.value.signers !== n)
          throw new Error(`${variant} ${which}: ${n}-signature manifest rejected (code ${t.value.code}, ${t.value.signers} signers)`);
        man[n - 1][which].seconds.push(t.seconds);
      }
      const v = timeEval<boolean>(vm, VERIFY1);
      if (v.value !== true) throw new Error(`${variant} ${which}: verifyEd25519 rejected a valid signature`);
      steady[which].seconds.push(v.seconds);
      const l = timeEval<number>(vm, 'fwsealVerifier.loadTrust(fwsealHarness.slots.trust2).code');
      if (l.value !== 0) throw new Error(`${variant} ${which}: loadTrust rejected`);
      load[which].seconds.push(l.seconds);
    }
  }
  return { steady, load, man };
}

function manifestRows(b: QuickJsBench, variant: QuickJSVariantName, t: { first: Pair; steady: Pair; load: Pair; man: Pair[] }, msRuns: number): void {
  const { rows } = b;
  const { first, steady, load, man } = t;
  for (let n = 1; n <= 3; n++) {
    const m = man[n - 1];
    rows.push(msRow(`${variant} manifest ${n} sig, noble default`, m.noble, null, `verifyManifestWithTrust, threshold ${n}, noble-Ed25519 build`));
    rows.push(msRow(`${variant} manifest ${n} sig, ours`, m.ours, best(m.noble), `verifyManifestWithTrust, threshold ${n}, low-memory Ed25519`));
  }
  rows.push(msRow(`${variant} verifyEd25519, noble default`, steady.noble, null));
  rows.push(msRow(`${variant} verifyEd25519, ours`, steady.ours, best(steady.noble)));
  rows.push(msRow(`${variant} verifyEd25519 1st call, noble`, first.noble, null, 'fresh VM: includes building the base-point tables'));
  rows.push(msRow(`${variant} verifyEd25519 1st call, ours`, first.ours, best(first.noble), 'fresh VM: includes the 8 odd multiples of B'));
  rows.push(msRow(`${variant} loadTrust 6 keys 2 sigs, noble`, load.noble, null, 'root+release key checks (torsion) and 2 root signatures'));
  rows.push(msRow(`${variant} loadTrust 6 keys 2 sigs, ours`, load.ours, best(load.noble)));
  const two = findRow(b, `${variant} manifest 2 sig, ours`);
  const value = two?.ratio ?? null;
  b.verdicts.push({
    name: `manifest 2 sig (${variant})`,
    goal: MANIFEST_GOAL,
    value,
    pass: value !== null && value >= MANIFEST_GOAL,
    basis: `noble-Ed25519 build best / ours best, verifyManifestWithTrust, ${msRuns} runs each`,
  });
}

// ---------- SHA-256 MB/s ----------

type ShaInputs = { readonly shaInput: Uint8Array; readonly leafInput: Uint8Array; readonly want: { one: string; last: string } };

/** 1 MiB and 256 inputs of 4097 bytes, with their node:crypto digests (the VMs make the same bytes themselves). */
function shaInputs(): ShaInputs {
  const shaInput = xorshift32Bytes(SHA_SEED, SHA_BYTES, SHA_BYTES);
  const leafInput = xorshift32Bytes(SHA_SEED + 1, LEAF_INPUT * LEAF_COUNT, LEAF_INPUT * LEAF_COUNT);
  const want = { one: hexOf(nodeSha256(shaInput)), last: hexOf(nodeSha256(leafInput.subarray((LEAF_COUNT - 1) * LEAF_INPUT))) };
  return { shaInput, leafInput, want };
}

async function measureSha256InVm(b: QuickJsBench, variant: QuickJSVariantName, sha: ShaInputs, nobleRefSource: string): Promise<void> {
  const { ctx, rows } = b;
  const { want } = sha;
  ctx.log(`${variant}: SHA-256 of 1 MiB in the VM, ours vs @noble/hashes (${ctx.runs} runs; slow)`);
  const vm = await b.ours(variant);
  try {
    vm.evalJson(`${nobleRefSource}\n;undefined`);
    vm.evalJson(`(function () { var H = fwsealHarness;
      H.slots.one = new Uint8Array(${SHA_BYTES}); H.xorshift32Fill(${SHA_SEED}, H.slots.one);
      H.slots.leaves = new Uint8Array(${LEAF_INPUT * LEAF_COUNT}); H.xorshift32Fill(${SHA_SEED + 1}, H.slots.leaves);
      fwsealVerifier.sha256(H.slots.leaves.subarray(0, ${LEAF_INPUT})); nobleRef.sha256(H.slots.leaves.subarray(0, ${LEAF_INPUT})); })()`);
    const fns = { ours: 'fwsealVerifier.sha256', noble: 'nobleRef.sha256' } as const;
    const s = { ours: { one: empty(), leaves: empty() }, noble: { one: empty(), leaves: empty() } };
    for (let r = 0; r < ctx.runs; r++) {
      for (const which of ['noble', 'ours'] as const) {
        await yieldToSignals();
        const one = timeEval<string>(vm, `fwsealHarness.toHex(${fns[which]}(fwsealHarness.slots.one))`);
        if (one.value !== want.one) throw new Error(`${variant} ${which} sha256 of 1 MiB differs from node:crypto`);
        s[which].one.seconds.push(one.seconds);
        await yieldToSignals();
        const leaves = timeEval<string>(
          vm,
          `(function () { var b = fwsealHarness.slots.leaves, h = ${fns[which]}, d;
          for (var i = 0; i < ${LEAF_COUNT}; i++) d = h(b.subarray(i * ${LEAF_INPUT}, (i + 1) * ${LEAF_INPUT}));
          return fwsealHarness.toHex(d); })()`,
        );
        if (leaves.value !== want.last) throw new Error(`${variant} ${which} sha256 of 4097-byte inputs differs from node:crypto`);
        s[which].leaves.seconds.push(leaves.seconds);
      }
    }
    const leafBytes = LEAF_INPUT * LEAF_COUNT;
    rows.push(row(`${variant} sha256 1 MiB, noble`, SHA_BYTES, s.noble.one, null, '@noble/hashes sha256, one call'));
    rows.push(row(`${variant} sha256 1 MiB, ours`, SHA_BYTES, s.ours.one, best(s.noble.one), 'fwsealVerifier.sha256, one call'));
    rows.push(row(`${variant} sha256 256x4097 B, noble`, leafBytes, s.noble.leaves, null, '256 calls of 4097 bytes'));
    rows.push(row(`${variant} sha256 256x4097 B, ours`, leafBytes, s.ours.leaves, best(s.noble.leaves), '256 calls of 4097 bytes'));
    for (const [label, name] of [
      ['1 MiB', `${variant} sha256 1 MiB, ours`],
      ['256x4097 B', `${variant} sha256 256x4097 B, ours`],
    ] as const) {
      const value = findRow(b, name)?.ratio ?? null;
      b.verdicts.push({
        name: `sha256 ${label} (${variant})`,
        goal: SHA_GOAL,
        value,
        pass: value !== null && value >= SHA_GOAL,
        basis: `noble best / ours best in the same VM, ${ctx.runs} runs each`,
      });
    }
  } finally {
    vm.dispose();
  }
}

/** node:crypto, for scale: enough repetitions per run to time well. */
async function measureNodeSha256(b: QuickJsBench, sha: ShaInputs): Promise<void> {
  const { ctx, rows } = b;
  const { shaInput, leafInput } = sha;
  const reps = 64;
  const one = empty();
  const leaves = empty();
  for (let r = 0; r < ctx.runs; r++) {
    await yieldToSignals();
    one.seconds.push(
      timeSync(() => {
        for (let i = 0; i < reps; i++) createHash('sha256').update(shaInput).digest();
      }).seconds,
    );
    leaves.seconds.push(
      timeSync(() => {
        for (let i = 0; i < reps; i++)
          for (let j = 0; j < LEAF_COUNT; j++)
            createHash('sha256')
              .update(leafInput.subarray(j * LEAF_INPUT, (j + 1) * LEAF_INPUT))
              .digest();
      }).seconds,
    );
  }
  rows.push(row('node sha256 1 MiB, node:crypto', reps * SHA_BYTES, one, null, `in Node, ${reps} x 1 MiB per run, for scale`));
  rows.push(row('node sha256 256x4097 B, node:crypto', reps * LEAF_INPUT * LEAF_COUNT, leaves, null, `in Node, ${reps} x 256 x 4097 B per run, for scale`));
}

// ---------- memory: the 128 KB flow ----------

type Loader = (v: QuickJSVariantName, limit?: number) => Promise<VerifierVM>;

/** One run of the flow (or its signature part) under a memory limit: true when every step passed. */
async function runFlow(flow: ReturnType<typeof flowWorld>, load: Loader, variant: QuickJSVariantName, limit: number, withImage: boolean): Promise<boolean> {
  let vm: VerifierVM | undefined;
  try {
    vm = await load(variant, limit);
    loadFlowInputs(vm, flow);
    return JSON.stringify(vm.evalJson(flowSource({ withImage }))) === (withImage ? FLOW_OK : SIG_PART_OK);
  } catch {
    return false;
  } finally {
    vm?.dispose();
  }
}

/** The smallest memory limit `run` passes with, bisected between low and high (or up to BIG_LIMIT). */
async function smallest(label: string, run: (limit: number) => Promise<boolean>, low: number, high: number, step: number): Promise<string> {
  await yieldToSignals();
  if (await run(low)) return `<= ${low}`;
  if (!(await run(high))) {
    if (!(await run(BIG_LIMIT))) throw new Error(`${label}: fails even with setMemoryLimit(${BIG_LIMIT})`);
    return String(await smallestMemoryLimit(run, high, BIG_LIMIT, step));
  }
  return String(await smallestMemoryLimit(run, low, high, step));
}

async function measureFlowMemory(b: QuickJsBench, variant: QuickJSVariantName, flow: ReturnType<typeof flowWorld>): Promise<void> {
  const { ctx, rows } = b;
  ctx.log(`${variant}: the 128 KB flow (peak heap, smallest memory limit)`);
  for (const [which, load, limit] of [
    ['ours', b.ours, FLOW_LIMIT],
    ['noble', b.noble, BIG_LIMIT],
  ] as const) {
    await yieldToSignals();
    const vm = await load(variant, limit);
    try {
      loadFlowInputs(vm, flow);
      const base = vm.memory();
      const p = vm.measurePeak(() => vm.evalJson(flowSource()));
      if (JSON.stringify(p.result) !== FLOW_OK) throw new Error(`${variant} ${which}: the 128 KB flow failed: ${JSON.stringify(p.result)}`);
      const tag = `${variant} flow, ${which === 'ours' ? 'ours' : 'noble-Ed25519 build'}`;
      const limitNote = `setMemoryLimit(${limit})`;
      rows.push(
        row(
          `${tag}`,
          MiB,
          { seconds: [p.ms / 1000], rssKiB: [] },
          null,
          `one run under ${limitNote}: trust, revocations, 3-sig manifest, 1 MiB in 4 KiB pieces`,
        ),
      );
      rows.push(
        valueRow(
          `${tag}: bundle loaded`,
          vm.afterBundle.usedBytes,
          'B',
          `QuickJS memory_used_size after evaluating the bundle; ${vm.afterBundle.blocks} live blocks = ${vm.afterBundle.accountedBytes} B accounted`,
        ),
      );
      rows.push(valueRow(`${tag}: peak used`, p.peakUsedBytes, 'B', `QuickJS memory_used_size, max over ${p.samples} interrupt samples`));
      rows.push(valueRow(`${tag}: peak over inputs`, p.peakUsedBytes - base.usedBytes, 'B', 'peak used minus used once bundle and inputs were loaded'));
      rows.push(valueRow(`${tag}: peak accounted`, 8 * p.peakBlocks, 'B', `${p.peakBlocks} live blocks x 8 B, what setMemoryLimit compares`));
    } finally {
      vm.dispose();
    }
  }
  const full = await smallest(`${variant} flow`, (l) => runFlow(flow, b.ours, variant, l, true), 16 * 1024, FLOW_LIMIT, 512);
  rows.push(
    valueRow(
      `${variant} flow, ours: smallest limit`,
      Number(full.replace('<= ', '')),
      'B',
      `smallest setMemoryLimit (512 B steps) for the whole flow${full.startsWith('<=') ? ' (or lower)' : ''}`,
    ),
  );
  for (const [which, load] of [
    ['ours', b.ours],
    ['noble', b.noble],
  ] as const) {
    const sig = await smallest(`${variant} ${which} signatures`, (l) => runFlow(flow, load, variant, l, false), 16 * 1024, FLOW_LIMIT, 512);
    rows.push(
      valueRow(
        `${variant} signatures only, ${which}: smallest limit`,
        Number(sig.replace('<= ', '')),
        'B',
        `trust + revocations + 3-sig manifest, no image${which === 'noble' ? ', noble-Ed25519 build' : ''}${sig.startsWith('<=') ? ' (or lower)' : ''}`,
      ),
    );
  }
}

// ---------- bundle bytes ----------

function measureBundleBytes(b: QuickJsBench): void {
  const { builds, rows } = b;
  const dist = readFileSync(builds.dist);
  const gz = (bytes: Uint8Array) => gzipSync(bytes, { level: 9 }).length;
  const distGz = gz(dist);
  const nobleMin = readFileSync(builds.nobleBundle);
  rows.push(valueRow('bundle raw (minified)', dist.length, 'B', 'dist/device/fwseal-verifier.js as built (esbuild minify)'));
  rows.push(valueRow('bundle gzip -9', distGz, 'B', `budget ${GZIP_BUDGET}`));
  rows.push(valueRow('bundle unminified', builds.unminified.length, 'B', 'same esbuild options, minify: false'));
  rows.push(valueRow('bundle unminified gzip -9', gz(builds.unminified), 'B'));
  rows.push(valueRow('noble-Ed25519 bundle minified', nobleMin.length, 'B', 'ed25519.ts replaced by @noble/ed25519'));
  rows.push(valueRow('noble-Ed25519 bundle gzip -9', gz(nobleMin), 'B'));
  b.verdicts.push({
    name: 'bundle gzip',
    goal: 1,
    value: GZIP_BUDGET / distGz,
    pass: distGz <= GZIP_BUDGET,
    basis: `${GZIP_BUDGET}-byte budget / ${distGz} bytes gzip -9 of dist/device/fwseal-verifier.js`,
  });
}
