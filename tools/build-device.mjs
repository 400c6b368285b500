// Builds the one-file device verifier with esbuild and enforces ARCHITECTURE.md's dependency direction
// while bundling: the bundle may reach shared/ and device/ (never device/node/) and npm packages
// under @noble/ only; no Node built-in. Then checks the output and prints its size.
// `deviceBuildOptions` is exported so that tools/bundle-size.mjs measures exactly this build; the
// build itself runs only when this file is the script node was started with.

import { readFileSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const root = resolve('.');
const inside = (path, dir) => path.startsWith(resolve(root, dir) + sep);

const layering = {
  name: 'device-layering',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) => {
      const p = args.path;
      if (args.kind === 'entry-point') return undefined;
      if (p.startsWith('node:') || builtinModules.includes(p.split('/')[0])) {
        return { errors: [{ text: `the device bundle must not import the Node built-in '${p}' (from ${args.importer})` }] };
      }
      if (!p.startsWith('.') && !p.startsWith('/')) {
        return p.startsWith('@noble/')
          ? undefined
          : { errors: [{ text: `the device bundle may import only @noble/* packages, not '${p}' (from ${args.importer})` }] };
      }
      if (inside(args.importer, 'node_modules')) return undefined;
      const target = resolve(args.resolveDir, p);
      if (!(inside(target, 'shared') || inside(target, 'device')) || inside(target, 'device/node')) {
        return { errors: [{ text: `the device bundle must not import '${p}': it resolves outside shared/ and device/ (from ${args.importer})` }] };
      }
      if (inside(args.importer, 'shared') && !inside(target, 'shared')) {
        return { errors: [{ text: `shared/ must not import '${p}' (from ${args.importer})` }] };
      }
      return undefined;
    });
  },
};

// Devices report codes, never prose (SPEC.md §9): the device bundle drops the human-readable
// `detail` argument of every failure (the host build keeps it). Same checks, same codes; the
// QuickJS suite compares every code with Node's.
const DETAIL_ARG = /\b(fail|schemaFail|this\.err)\(\s*('[A-Z_]+')\s*,\s*(`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*')\s*\)/g;
const dropped = { details: 0 };
const noDetails = {
  name: 'no-details',
  setup(b) {
    b.onLoad({ filter: /[\\/](shared|device)[\\/].*\.ts$/ }, async (args) => {
      const source = readFileSync(args.path, 'utf8');
      const contents = source.replace(DETAIL_ARG, (_, fn, name) => {
        dropped.details++;
        return `${fn}(${name})`;
      });
      return { contents, loader: 'ts' };
    });
  },
};

// The bundle answers 0–5xx (the verifier's codes): its CODES table leaves out the 6xx transport and
// 8xx host codes (shared/codes-host.ts), about 400 B of the gzip budget (SPEC.md §10).
const deviceCodes = {
  name: 'device-codes',
  setup(b) {
    b.onLoad({ filter: /[\\/]shared[\\/]codes-host\.ts$/ }, () => ({ contents: 'export const HOST_CODES = Object.freeze({});', loader: 'ts' }));
  },
};

/** esbuild options shared by both output formats, for the bundle of `entry`. */
export const deviceBuildOptions = (entry = 'device/bundle.ts') => ({
  entryPoints: [entry],
  bundle: true,
  minify: true,
  target: 'es2020',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  conditions: ['import', 'default'],
  plugins: [layering, deviceCodes, noDetails],
  logLevel: 'error',
  legalComments: 'none',
});

/**
 * The IIFE file (SPEC.md §10: one script defining only the global `fwsealVerifier`) made from the
 * ESM build: its closing `export{a as B, ...}` becomes a frozen object returned from a function
 * around the module body. esbuild's own IIFE format reaches the same object through its CommonJS
 * interop helpers (a getter per export, `__esModule`), about 250 B of the gzip budget. The module
 * body is strict code, so the script says "use strict" too. The body starts on the second line, so
 * a source map of the ESM build stays valid with one line added (tools/bundle-size.mjs).
 */
export function iifeFromEsm(esm) {
  const tail = /export\s*\{([^}]*)\}\s*;?\s*$/.exec(esm);
  if (!tail) throw new Error('iifeFromEsm: the ESM build does not end with one export clause');
  const members = tail[1].split(',').map((e) => {
    const [local, exported = local] = e.trim().split(/\s+as\s+/);
    if (!/^[\w$]+$/.test(local) || !/^[\w$]+$/.test(exported)) throw new Error(`iifeFromEsm: cannot read the export '${e}'`);
    return `${exported}:${local}`;
  });
  return `"use strict";var fwsealVerifier=(()=>{\n${esm.slice(0, tail.index)}\nreturn Object.freeze({${members.join(',')}})})();\n`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();

async function main() {
  // `--entry FILE --outdir DIR` lets the test suite prove that a violation fails the build.
  const arg = (name, fallback) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : fallback);
  const entry = arg('--entry', 'device/bundle.ts');
  const outdir = arg('--outdir', 'dist/device');
  const common = deviceBuildOptions(entry);
  try {
    await build({ ...common, format: 'esm', outfile: `${outdir}/fwseal-verifier.mjs` });
    writeFileSync(`${outdir}/fwseal-verifier.js`, iifeFromEsm(readFileSync(`${outdir}/fwseal-verifier.mjs`, 'utf8')));
  } catch (e) {
    if (!e.errors) console.error(e.message); // esbuild printed its own errors
    process.exit(1);
  }
  const checked = [checkOutput(`${outdir}/fwseal-verifier.js`), checkOutput(`${outdir}/fwseal-verifier.mjs`)];
  writeTypes(entry, outdir);
  const js = readFileSync(`${outdir}/fwseal-verifier.js`);
  console.log(
    `device bundle: ${outdir}/fwseal-verifier.js ${js.length} bytes, ${gzipSync(js, { level: 9 }).length} bytes gzip (${dropped.details} failure details left to the host build)`,
  );
  process.exit(checked.every(Boolean) ? 0 : 1);
}

/** True when the file has no import, require() or host object; else says what it found. */
function checkOutput(f) {
  const src = readFileSync(f, 'utf8');
  const problems = [];
  if (/\brequire\s*\(/.test(src)) problems.push('require()');
  if (/(^|[;\n}])\s*import\s*[\s{*"'(]/.test(src)) problems.push('import');
  const hostObjects = {
    Buffer: /(?<![\w$.])Buffer\s*[.(]/,
    TextEncoder: /\bTextEncoder\b/,
    TextDecoder: /\bTextDecoder\b/,
    globalThis: /\bglobalThis\b/,
    process: /(?<![\w$.])process\s*\./,
    console: /(?<![\w$.])console\s*\./,
    timers: /(?<![\w$.])set(Timeout|Interval)\s*\(/,
  };
  for (const [name, re] of Object.entries(hostObjects)) if (re.test(src)) problems.push(name);
  if (problems.length) console.error(`${f}: forbidden in the device bundle: ${problems.join(', ')}`);
  return problems.length === 0;
}

// Types of the ESM bundle (package.json `exports` "./device-bundle"): the names device/bundle.ts
// re-exports, typed by the declarations tsup emits for fwseal/device (dist/device/index.d.ts).
function writeTypes(entry, outdir) {
  const bundleSource = readFileSync(entry, 'utf8');
  const reexported = /export\s*\{([^}]*)\}\s*from\s*'\.\/index\.js'/.exec(bundleSource);
  if (!reexported) return;
  const names = reexported[1]
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  const consts = [...bundleSource.matchAll(/export const (\w+) = '/g)].map((m) => `export declare const ${m[1]}: string;\n`);
  const dts = `// Generated by tools/build-device.mjs from ${entry}.\nexport { ${names.join(', ')} } from './index.js';\n${consts.join('')}`;
  writeFileSync(`${outdir}/fwseal-verifier.d.mts`, dts);
}
