import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
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

type OnResolve = {
  name: string;
  setup(b: { onResolve(o: { filter: RegExp }, f: (a: { path: string; importer: string }) => { path: string; external: true } | undefined): void }): void;
};

/**
 * `fwseal verify` is one file of its own, dist/host/commands/verify.js (second build below): the ESM
 * loader costs about 2 ms per module, and the command's code spread over the dozen chunks it shares
 * with other commands cost ~30 ms of its cold start (issue 17; one file: ~10 ms). The main build
 * therefore leaves the command index's `import('./commands/verify.js')` as it is.
 */
const verifyCommandStaysSeparate: OnResolve = {
  name: 'verify-command-stays-separate',
  setup(b) {
    b.onResolve({ filter: /^\.\/commands\/verify\.js$/ }, (a) =>
      /[\\/]host[\\/]cli-index\.ts$/.test(a.importer) ? { path: a.path, external: true } : undefined,
    );
  },
};

/**
 * In the one-file verify command, host/errors.ts stays an import of the main build's dist/host/errors.js:
 * the CLI tells a coded error from a crash by `instanceof FwsealError`, so there must be one class.
 */
const oneErrorClass: OnResolve = {
  name: 'one-error-class',
  setup(b) {
    b.onResolve({ filter: /\/errors\.js$/ }, (a) =>
      /[\\/]host$/.test(resolve(dirname(a.importer), dirname(a.path))) ? { path: '../errors.js', external: true } : undefined,
    );
  },
};

/** hil/bin.ts starts the whole CLI with `import('./cli.js')`: dist/hil/cli.js as it is, loaded only when used. */
const binLoadsCliOnUse: OnResolve = {
  name: 'bin-loads-cli-on-use',
  setup(b) {
    b.onResolve({ filter: /^\.\/cli\.js$/ }, (a) => (/[\\/]hil[\\/]bin\.ts$/.test(a.importer) ? { path: a.path, external: true } : undefined));
  },
};

// One build for the host CLI, the fwseal binary (hil/cli: the CLI with `hil run` added), the simulated
// device process and the library: they share chunks, so the host code ships once and there is one
// FwsealError class (a second copy would fail `instanceof` and print INTERNAL). Dynamic imports
// (commands, stores, the QuickJS verifier, optional packages) become chunks loaded on use.
// Declarations are emitted for the library entries only.
// host/errors is an entry point so that the one-file verify command can import the same class.
const common = { outDir: 'dist', format: 'esm', platform: 'node', target: 'node20', sourcemap: true, clean: false, shims: false, external: optional } as const;
export default defineConfig([
  {
    ...common,
    entry: { 'host/cli': 'host/cli.ts', 'hil/cli': 'hil/cli.ts', 'hil/device-main': 'hil/device-main.ts', 'host/errors': 'host/errors.ts', ...library },
    esbuildPlugins: [hostCliStaysSeparate, verifyCommandStaysSeparate],
    dts: { entry: library, compilerOptions: dtsOptions },
  },
  { ...common, entry: { 'host/commands/verify': 'host/commands/verify.ts' }, splitting: false, esbuildPlugins: [oneErrorClass] },
  // The package's bin and the one-command start of `fwseal verify` it hands plain verify command
  // lines to, as CommonJS (no ES module loader at start-up: issue 17, hil/bin.ts). verify-main.cjs
  // carries its own copy of the code it runs, FwsealError included: nothing else is loaded with it.
  {
    ...common,
    format: 'cjs',
    entry: { 'hil/bin': 'hil/bin.ts', 'host/verify-main': 'host/verify-main.ts' },
    splitting: false,
    sourcemap: false,
    outExtension: () => ({ js: '.cjs' }),
    esbuildPlugins: [binLoadsCliOnUse],
  },
]);
