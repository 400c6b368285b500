// Builds the one-file device verifier with esbuild and enforces ARCHITECTURE.md's dependency direction
// while bundling: the bundle may reach shared/ and device/ (never device/node/) and npm packages
// under @noble/ only; no Node built-in. Then checks the output and prints its size.

import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { resolve, sep } from 'node:path';
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

// `--entry FILE --outdir DIR` lets the test suite prove that a violation fails the build.
const arg = (name, fallback) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : fallback);
const entry = arg('--entry', 'device/bundle.ts');
const outdir = arg('--outdir', 'dist/device');

// Devices report codes, never prose (SPEC.md §9): the device bundle drops the human-readable
// `detail` argument of every failure (the host build keeps it). Same checks, same codes; the
// QuickJS suite compares every code with Node's.
const DETAIL_ARG = /\b(fail|schemaFail|this\.err)\(\s*('[A-Z_]+')\s*,\s*(`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*')\s*\)/g;
let detailsDropped = 0;
const noDetails = {
  name: 'no-details',
  setup(b) {
    b.onLoad({ filter: /[\\/](shared|device)[\\/].*\.ts$/ }, async (args) => {
      const source = readFileSync(args.path, 'utf8');
      const contents = source.replace(DETAIL_ARG, (_, fn, name) => {
        detailsDropped++;
        return `${fn}(${name})`;
      });
      return { contents, loader: 'ts' };
    });
  },
};

const common = {
  entryPoints: [entry],
  bundle: true,
  minify: true,
  target: 'es2020',
  platform: 'neutral',
  mainFields: ['module', 'main'],
  conditions: ['import', 'default'],
  plugins: [layering, noDetails],
  logLevel: 'error',
  legalComments: 'none',
};

try {
  await build({ ...common, format: 'iife', globalName: 'fwsealVerifier', outfile: `${outdir}/fwseal-verifier.js` });
  await build({ ...common, format: 'esm', outfile: `${outdir}/fwseal-verifier.mjs` });
} catch {
  process.exit(1); // esbuild printed the errors
}

let failed = false;
for (const f of [`${outdir}/fwseal-verifier.js`, `${outdir}/fwseal-verifier.mjs`]) {
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
  if (problems.length) {
    failed = true;
    console.error(`${f}: forbidden in the device bundle: ${problems.join(', ')}`);
  }
}
const js = readFileSync(`${outdir}/fwseal-verifier.js`);
console.log(
  `device bundle: ${outdir}/fwseal-verifier.js ${js.length} bytes, ${gzipSync(js, { level: 9 }).length} bytes gzip (${detailsDropped / 2} failure details left to the host build)`,
);
process.exit(failed ? 1 : 0);
