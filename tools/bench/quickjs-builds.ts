/**
 * The builds the "quickjs" section compares (tools/bench/quickjs.ts): our device bundle as found in
 * dist/ and rebuilt here (minified and not), the same bundle with device/crypto/ed25519.ts replaced by
 * @noble/ed25519, and a noble reference script (@noble/ed25519 verify, @noble/hashes sha256). Written
 * to the section's tmpDir only.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type BuildOptions, build, type Plugin } from 'esbuild';
import { type BenchContext, newerSources } from './common.js';

/** build-device.mjs's esbuild options for one IIFE file (that script runs on import, so they are repeated here). */
const IIFE: BuildOptions = {
  bundle: true,
  minify: true,
  target: 'es2020',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  conditions: ['import', 'default'],
  logLevel: 'error',
  legalComments: 'none',
  format: 'iife',
};

function deviceOptions(repoRoot: string): BuildOptions {
  return {
    ...IIFE,
    entryPoints: [join(repoRoot, 'device/bundle.ts')],
    globalName: 'fwsealVerifier',
    absWorkingDir: repoRoot,
    nodePaths: [join(repoRoot, 'node_modules')],
  };
}

/**
 * device/crypto/ed25519.ts's exports over @noble/ed25519's default (table-based) path, strict
 * branch. The SHA-512 hook the platform passes is what noble hashes with, as ours does.
 */
const nobleShim = (hashModule: string) => `import { Point, hashes, verify } from '@noble/ed25519';
import { sha512 as defaultSha512 } from ${JSON.stringify(hashModule)};
const isBytes = (b, n) => b instanceof Uint8Array && (n === undefined || b.length === n);
export function verifyEd25519(signature, message, publicKey, sha512 = defaultSha512) {
  if (!isBytes(signature, 64) || !isBytes(message) || !isBytes(publicKey, 32)) return false;
  hashes.sha512 = sha512;
  try { return verify(signature, message, publicKey, { zip215: false }); } catch { return false; }
}
function acceptable(publicKey) {
  try {
    if (!isBytes(publicKey, 32)) return null;
    const A = Point.fromBytes(publicKey, false);
    return A.isSmallOrder() ? null : A;
  } catch { return null; }
}
export function isAcceptablePublicKey(publicKey) { return acceptable(publicKey) !== null; }
export function isTrustableRoleKey(publicKey) {
  try { const A = acceptable(publicKey); return A !== null && A.isTorsionFree(); } catch { return false; }
}
`;

/** @noble/ed25519 (strict verify, SHA-512 from @noble/hashes) and @noble/hashes sha256 as the global `nobleRef`. */
const NOBLE_REF = `import * as ed from '@noble/ed25519';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
ed.hashes.sha512 = sha512;
export function verify(sig, msg, pub) { return ed.verify(sig, msg, pub, { zip215: false }); }
export { sha256 };
`;

export type Builds = {
  dist: string;
  distNote: string;
  /** Our bundle rebuilt minified here: equal to dist when dist is current. */
  freshMin: Uint8Array;
  unminified: Uint8Array;
  nobleBundle: string;
  nobleRef: string;
};

export async function makeBuilds(ctx: BenchContext): Promise<Builds> {
  const { repoRoot, tmpDir } = ctx;
  const dist = join(repoRoot, 'dist/device/fwseal-verifier.js');
  let distNote: string;
  if (!existsSync(dist)) {
    ctx.log('dist/device/fwseal-verifier.js missing: running node tools/build-device.mjs');
    const r = spawnSync(process.execPath, ['tools/build-device.mjs'], { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0 || !existsSync(dist)) throw new Error('node tools/build-device.mjs failed');
    distNote = 'bundle: dist/device/fwseal-verifier.js (built by this run)';
  } else {
    distNote = `bundle: dist/device/fwseal-verifier.js as found (built ${new Date(statSync(dist).mtimeMs).toISOString()})`;
  }
  const opts = deviceOptions(repoRoot);

  ctx.log('esbuild: our bundle minified and unminified, the noble-Ed25519 bundle, the noble reference');
  const out = async (o: BuildOptions, file: string): Promise<string> => {
    const path = join(tmpDir, file);
    await build({ ...o, outfile: path });
    return path;
  };
  const freshMin = readFileSync(await out(opts, 'fwseal-verifier.min.js'));
  const unminified = readFileSync(await out({ ...opts, minify: false }, 'fwseal-verifier.unmin.js'));

  const ed25519Ts = join(repoRoot, 'device/crypto/ed25519.ts');
  const shimPath = join(tmpDir, 'ed25519-noble-shim.js');
  writeFileSync(shimPath, nobleShim(join(repoRoot, 'device/crypto/hash.ts')));
  let redirected = 0;
  const swapEd25519: Plugin = {
    name: 'ed25519-to-noble',
    setup(b) {
      b.onResolve({ filter: /ed25519(\.[jt]s)?$/ }, (args) => {
        if (!args.path.startsWith('.')) return undefined;
        if (resolve(args.resolveDir, args.path).replace(/\.js$/, '.ts') !== ed25519Ts) return undefined;
        redirected++;
        return { path: shimPath };
      });
    },
  };
  const nobleBundle = await out({ ...opts, plugins: [swapEd25519] }, 'fwseal-verifier.noble-ed25519.js');
  if (redirected === 0) throw new Error('the noble-Ed25519 build did not replace device/crypto/ed25519.ts (import paths changed?)');

  const nobleRef = join(tmpDir, 'noble-ref.js');
  await build({
    ...IIFE,
    stdin: { contents: NOBLE_REF, resolveDir: repoRoot, loader: 'js', sourcefile: 'noble-ref.js' },
    globalName: 'nobleRef',
    outfile: nobleRef,
  });

  const distBytes = readFileSync(dist);
  if (!distBytes.equals(freshMin)) {
    const newer = newerSources(repoRoot, ['device', 'shared'], statSync(dist).mtimeMs);
    distNote += `; STALE: differs from a fresh build of the sources${newer.length ? ` (changed since: ${newer.slice(0, 3).join(', ')}${newer.length > 3 ? ', ...' : ''})` : ''}; run node tools/build-device.mjs`;
  } else {
    distNote += '; identical to a fresh build of the sources';
  }
  return { dist, distNote, freshMin, unminified, nobleBundle, nobleRef };
}
