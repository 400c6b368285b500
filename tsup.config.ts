import { readFileSync } from 'node:fs';
import { defineConfig } from 'tsup';

// tsup leaves `dependencies` unbundled but not `optionalDependencies`: those stay imports too, loaded
// on first use (host/optional.ts), so a package that is not installed is named, never bundled.
const optional = Object.keys(JSON.parse(readFileSync('package.json', 'utf8')).optionalDependencies ?? {});

// The declarations are compiled with the options every layer shares (host's lib and types). esbuild
// reads the root tsconfig.json: it has no verbatimModuleSyntax, so `import { type X } from 'mqtt'`
// leaves no `import 'mqtt'` behind.
const base = JSON.parse(readFileSync('tsconfig.base.json', 'utf8')).compilerOptions;
const dtsOptions = { ...base, composite: false, lib: ['ES2022'], types: ['node'] };

/**
 * The library entry points (package.json `exports`): `fwseal` is the host API, `fwseal/device` the
 * verifier from the same sources as the device bundle (which tools/build-device.mjs builds, with
 * its layering check, into dist/device/fwseal-verifier.{js,mjs}).
 */
const library = { index: 'host/index.ts', 'device/index': 'device/index.ts' };

/**
 * hil/cli.ts imports host/cli.js, which stays the separate module dist/host/cli.js: its entry-point
 * check (`node dist/host/cli.js`) compares its own import.meta.url, so it must not move into a chunk.
 */
const hostCliStaysSeparate = {
  name: 'host-cli-stays-separate',
  setup(b: { onResolve(o: { filter: RegExp }, f: (a: { path: string; importer: string }) => { path: string; external: true } | undefined): void }) {
    b.onResolve({ filter: /\/host\/cli\.js$/ }, (a) => (/[\\/]hil[\\/]cli\.ts$/.test(a.importer) ? { path: a.path, external: true } : undefined));
  },
};

// One build for the host CLI, the fwseal binary (hil/cli: the CLI with `hil run` added), the simulated
// device process and the library: they share chunks, so the host code ships once and there is one
// FwsealError class (a second copy would fail `instanceof` and print INTERNAL). Dynamic imports
// (commands, stores, the QuickJS verifier, optional packages) become chunks loaded on use.
// Declarations are emitted for the library entries only.
export default defineConfig({
  outDir: 'dist',
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  clean: false,
  shims: false,
  entry: { 'host/cli': 'host/cli.ts', 'hil/cli': 'hil/cli.ts', 'hil/device-main': 'hil/device-main.ts', ...library },
  external: optional,
  esbuildPlugins: [hostCliStaysSeparate],
  dts: { entry: library, compilerOptions: dtsOptions },
});
