import { builtinModules } from 'node:module';
import { resolve, sep } from 'node:path';
import { defineConfig } from 'tsup';
import type { Plugin } from 'esbuild';

const root = resolve('.');
const inside = (path: string, dir: string) => path.startsWith(resolve(root, dir) + sep);

/**
 * DESIGN.md dependency direction, enforced while bundling the device verifier: it may reach
 * shared/ and device/ (never device/node/) and npm packages under @noble/ only; no Node built-in.
 */
const deviceLayering: Plugin = {
  name: 'device-layering',
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      const p = args.path;
      if (args.kind === 'entry-point') return undefined;
      if (p.startsWith('node:') || builtinModules.includes(p)) {
        return { errors: [{ text: `device bundle must not import the Node built-in '${p}' (from ${args.importer})` }] };
      }
      if (!p.startsWith('.') && !p.startsWith('/')) {
        if (p.startsWith('@noble/')) return undefined;
        return { errors: [{ text: `device bundle may import only @noble/* packages, not '${p}' (from ${args.importer})` }] };
      }
      if (!inside(args.importer, 'node_modules')) {
        const target = resolve(args.resolveDir, p);
        const ok = (inside(target, 'shared') || inside(target, 'device')) && !inside(target, 'device/node');
        if (!ok) return { errors: [{ text: `device bundle must not import '${p}' (resolves outside shared/ and device/; from ${args.importer})` }] };
        if (inside(args.importer, 'shared') && !inside(target, 'shared')) {
          return { errors: [{ text: `shared/ must not import '${p}' (from ${args.importer})` }] };
        }
      }
      return undefined;
    });
  },
};

export default defineConfig([
  {
    entry: { 'host/cli': 'host/cli.ts' },
    outDir: 'dist',
    format: ['esm'],
    platform: 'node',
    target: 'node20',
    sourcemap: true,
    clean: false,
    shims: false,
  },
  {
    entry: { 'fwseal-verifier': 'device/bundle.ts' },
    outDir: 'dist/device',
    format: ['iife', 'esm'],
    globalName: 'fwsealVerifier',
    platform: 'neutral',
    target: 'es2020',
    noExternal: [/^@noble\//],
    minify: true,
    treeshake: true,
    clean: false,
    outExtension: ({ format }) => ({ js: format === 'iife' ? '.js' : '.mjs' }),
    esbuildPlugins: [deviceLayering],
  },
]);
