import { defineConfig } from 'tsup';

const common = { outDir: 'dist', format: 'esm' as const, platform: 'node' as const, target: 'node20', sourcemap: true, clean: false, shims: false };

// The host CLI. The device bundle is built by tools/build-device.mjs (esbuild with a layering check).
// The HIL harness: hil/cli (the fwseal CLI with `hil run` added; host/cli.js stays a separate module,
// so its entry-point check does not fire inside the hil bundle) and the simulated device process.
export default defineConfig([
  { ...common, entry: { 'host/cli': 'host/cli.ts' } },
  {
    ...common,
    entry: { 'hil/cli': 'hil/cli.ts', 'hil/device-main': 'hil/device-main.ts' },
    external: [/\/host\/cli\.js$/, /^@jitl\//, /^quickjs-emscripten/],
    splitting: false,
  },
]);
