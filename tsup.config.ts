import { defineConfig } from 'tsup';

// The host CLI. The device bundle is built by tools/build-device.mjs (esbuild with a layering check).
export default defineConfig({
  entry: { 'host/cli': 'host/cli.ts' },
  outDir: 'dist',
  format: ['esm'],
  platform: 'node',
  target: 'node20',
  sourcemap: true,
  clean: false,
  shims: false,
});
