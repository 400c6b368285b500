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
 * The steps live in quickjs-manifest.ts, quickjs-sha256.ts and quickjs-memory.ts (bundle bytes here);
 * reference builds go to the section's tmpDir only. Verdicts (reported, never gating): SHA-256 >= 2x
 * noble-hashes; 2-signature manifest no slower than the noble build; bundle gzip within BUNDLE_GZIP_BUDGET.
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { gzipSync } from 'node:zlib';
import { BUNDLE_GZIP_BUDGET, loadVerifierInQuickJS, QUICKJS_VARIANTS } from '../../test/support/quickjs.js';
import { flowWorld } from '../../test/support/quickjs-flow.js';
import { type BenchContext, type Section, type SectionResult, valueRow } from './common.js';
import { makeBuilds } from './quickjs-builds.js';
import { BIG_LIMIT, type QuickJsBench } from './quickjs-context.js';
import { ed25519Inputs, measureManifests } from './quickjs-manifest.js';
import { measureFlowMemory } from './quickjs-memory.js';
import { measureNodeSha256, measureSha256InVm, shaInputs } from './quickjs-sha256.js';

const GZIP_BUDGET = BUNDLE_GZIP_BUDGET;

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
