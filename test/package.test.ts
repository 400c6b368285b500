/**
 * The published package (issue 17 items 1, 2, 6): `npm pack` of the built tree, installed into an
 * empty folder with `--omit=optional` and no C compiler (CC=/bin/false), then used as a new team
 * would: the README's keys → trust → pack → sign → verify → revoke flow and a device update through
 * the installed `fwseal` binary, the library entry points type-checked and run by a small consumer
 * project, and the Node version the package declares. One pack and one install serve every case.
 * Needs `npm run build` first (npm test's pretest does it); npm reads packages from its cache.
 */
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const work = mkdtempSync(join(tmpdir(), 'fwseal-pkg-'));
const app = join(work, 'app');
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The lowest Node the package supports: crypto.hash (20.12) and require() of ES modules for CommonJS callers (20.19). */
const LOWEST_NODE = '20.19';

type Packed = { filename: string; size: number; entryCount: number; files: { path: string }[] };
let packed: Packed;

function run(cmd: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 120_000 });
}

function ok(r: SpawnSyncReturns<string>, what: string): SpawnSyncReturns<string> {
  if (r.status !== 0) throw new Error(`${what}: exit ${r.status}\n${r.stderr}\n${r.stdout}`);
  return r;
}

beforeAll(() => {
  for (const f of ['dist/index.js', 'dist/hil/bin.cjs', 'dist/host/verify-main.cjs', 'dist/device/index.js', 'dist/device/fwseal-verifier.mjs']) {
    if (!existsSync(join(root, f))) throw new Error(`${f} is missing: run npm run build first`);
  }
  // --ignore-scripts: pack what is built, as it is (no lifecycle script may rebuild mid-suite).
  const r = ok(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], root), 'npm pack');
  packed = JSON.parse(r.stdout)[0] as Packed;
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'fwseal-consumer', private: true, type: 'module' }));
  // No compiler: anything that would build a native module fails the install.
  ok(
    run('npm', ['install', join(work, packed.filename), '--omit=optional', '--no-audit', '--no-fund', '--prefer-offline'], app, {
      CC: '/bin/false',
      CXX: '/bin/false',
    }),
    'npm install of the tarball',
  );
}, 180_000);

describe('the tarball', () => {
  it('ships the built files only: no sources, tests, tools or source maps', () => {
    const paths = packed.files.map((f) => f.path);
    const allowed = /^(package\.json|README\.md|LICENSE|dist\/.+\.(js|cjs|mjs|d\.ts|d\.mts)|hil\/scenarios\/[^/]+\.json|hil\/scenario-schema\.json)$/;
    expect(paths.filter((p) => !allowed.test(p))).toEqual([]);
    expect(paths.some((p) => p.endsWith('.map'))).toBe(false);
    expect(packed.entryCount).toBeLessThan(150);
  });

  it('holds every file package.json points at (bin, exports with types)', () => {
    const pkg = JSON.parse(readFileSync(join(app, 'node_modules/fwseal/package.json'), 'utf8'));
    const targets: string[] = [...Object.values(pkg.bin as Record<string, string>)];
    const walk = (v: unknown): void => {
      if (typeof v === 'string') targets.push(v);
      else if (v && typeof v === 'object') for (const x of Object.values(v)) walk(x);
    };
    walk(pkg.exports);
    expect(Object.keys(pkg.exports)).toEqual(expect.arrayContaining(['.', './device', './device-bundle']));
    for (const k of ['.', './device', './device-bundle']) expect(pkg.exports[k].types).toMatch(/\.d\.m?ts$/);
    for (const t of targets) expect(existsSync(join(app, 'node_modules/fwseal', t)), t).toBe(true);
  });

  it('installs with no optional package and no native module', () => {
    const modules = join(app, 'node_modules');
    for (const p of ['better-sqlite3', 'serialport', 'mqtt', 'aedes', 'pkcs11js', 'quickjs-emscripten-core', '@jitl']) {
      expect(existsSync(join(modules, p)), p).toBe(false);
    }
    const native: string[] = [];
    const scan = (dir: string, depth: number): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory() && depth < 8) scan(join(dir, e.name), depth + 1);
        else if (e.name.endsWith('.node') || e.name === 'binding.gyp') native.push(join(dir, e.name));
      }
    };
    scan(modules, 0);
    expect(native).toEqual([]);
  });
});

describe('Node versions (item 6)', () => {
  it(`declares Node >= ${LOWEST_NODE}, which this Node satisfies`, () => {
    const pkg = JSON.parse(readFileSync(join(app, 'node_modules/fwseal/package.json'), 'utf8'));
    expect(pkg.engines).toEqual({ node: `>=${LOWEST_NODE}` });
    const [major, minor] = process.versions.node.split('.').map(Number);
    const [lowMajor, lowMinor] = LOWEST_NODE.split('.').map(Number);
    expect(major > lowMajor || (major === lowMajor && minor >= lowMinor)).toBe(true);
  });

  it('a CommonJS caller can require() the library (require of ES modules, unflagged from Node 20.19)', () => {
    const r = ok(
      run(
        process.execPath,
        ['-e', "const f = require('fwseal'); const d = require('fwseal/device'); console.log(typeof f.pack, typeof d.verifyManifest)"],
        app,
      ),
      'require',
    );
    expect(r.stdout.trim()).toBe('function function');
  });

  it(`calls no API newer than Node ${LOWEST_NODE} (the compiler checks the sources against @types/node 20; this checks the shipped code)`, () => {
    // Each: added in a later Node (22+, 21 for groupBy) or an unflagged-only-later module.
    const newer: Record<string, RegExp> = {
      'Promise.withResolvers': /\bPromise\.withResolvers\b/,
      'Object.groupBy/Map.groupBy': /\b(Object|Map)\.groupBy\b/,
      'Array.fromAsync': /\bArray\.fromAsync\b/,
      'Set methods': /\.(union|intersection|symmetricDifference|isSubsetOf|isSupersetOf|isDisjointFrom)\(/,
      'URL.parse': /\bURL\.parse\(/,
      'Promise.try': /\bPromise\.try\(/,
      'RegExp.escape': /\bRegExp\.escape\b/,
      'Iterator.from': /\bIterator\.from\(/,
      'Uint8Array base64/hex': /\bUint8Array\.from(Base64|Hex)\b|\.to(Base64|Hex)\(\)/,
      'Error.isError': /\bError\.isError\b/,
      'node:sqlite': /from\s*"(node:)?sqlite"/,
      'fs glob': /\bimport\s*\{[^}]*\bglob(Sync)?\b[^}]*\}\s*from\s*"(node:)?fs(\/promises)?"/,
      'process.getBuiltinModule': /\bprocess\.getBuiltinModule\b/,
    };
    const dist = join(app, 'node_modules/fwseal/dist');
    const found: string[] = [];
    const scan = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) scan(p);
        else if (/\.m?js$/.test(e.name)) {
          const src = readFileSync(p, 'utf8');
          for (const [name, re] of Object.entries(newer)) if (re.test(src)) found.push(`${name} in ${p.slice(dist.length + 1)}`);
          // Node >= 22.1: only behind a feature test (`enableCompileCache?.(` or a typeof check).
          if (/\benableCompileCache\(/.test(src) && !/typeof\s+[\w.]*enableCompileCache\b/.test(src)) found.push(`module.enableCompileCache in ${e.name}`);
        }
      }
    };
    scan(dist);
    expect(found).toEqual([]);
  });
});

describe('the installed fwseal binary (item 1)', () => {
  const bin = () => join(app, 'node_modules/.bin/fwseal');
  const env = { FWSEAL_PASSPHRASE: 'package test passphrase' };
  const fwseal = (...args: string[]) => run(bin(), args, app, env);

  it('runs the README flow: keys, trust, pack, sign, verify, revoke, inspect, a device update', () => {
    writeFileSync(
      join(app, 'firmware.bin'),
      new Uint8Array(300_000).map((_, i) => (i * 31) & 0xff),
    );
    writeFileSync(
      join(app, 'firmware2.bin'),
      new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff),
    );
    mkdirSync(join(app, 'keys'), { recursive: true });
    for (const k of ['A', 'B', 'R1', 'R2']) expect(fwseal('keygen', k, '--dir', 'keys').status, k).toBe(0);
    const trustInit = fwseal(
      ...['trust', 'init', '--root', 'keys/A.pub', '--root', 'keys/B.pub', '--root-threshold', '2'],
      ...['--release', 'keys/R1.pub', '--release', 'keys/R2.pub', '--release-threshold', '2'],
      ...['--sign', 'keys/A.key', '--sign', 'keys/B.key', '--out', 'trust.cbor'],
    );
    expect(trustInit.status, trustInit.stderr).toBe(0);
    for (const [image, out, version, counter] of [
      ['firmware.bin', 'M.cose', '1.4.2', '7'],
      ['firmware2.bin', 'M2.cose', '1.4.3', '8'],
    ]) {
      const r = fwseal('pack', image, '--device-class', 'acme-gw', '--version', version, '--counter', counter, '--out', out);
      expect(r.status, r.stderr).toBe(0);
      for (const k of ['R1', 'R2']) expect(fwseal('sign', out, '--key', `keys/${k}.key`, '--trust', 'trust.cbor').status).toBe(0);
    }
    const verified = fwseal('verify', 'M.cose', '--image', 'firmware.bin', '--trust', 'trust.cbor', '--json');
    expect(verified.status, verified.stderr).toBe(0);
    expect(fwseal('inspect', 'M.cose', '--json').status).toBe(0);
    expect(
      fwseal('revoke', '--trust', 'trust.cbor', '--key', 'keys/R2.pub', '--version', '1', '--sign', 'keys/A.key', '--sign', 'keys/B.key', '--out', 'RL.cbor')
        .status,
    ).toBe(0);
    const revoked = fwseal('verify', 'M.cose', '--image', 'firmware.bin', '--trust', 'trust.cbor', '--revocations', 'RL.cbor');
    expect(revoked.status).toBe(1);
    const provisioned = fwseal(
      'device',
      'provision',
      '--state',
      'dev',
      '--trust',
      'trust.cbor',
      '--device-class',
      'acme-gw',
      '--manifest',
      'M.cose',
      '--image',
      'firmware.bin',
    );
    expect(provisioned.status, provisioned.stderr).toBe(0);
    const updated = fwseal('device', 'run', '--state', 'dev', '--trust', 'trust.cbor', '--update', 'M2.cose', '--image', 'firmware2.bin', '--confirm');
    expect(updated.status, updated.stderr).toBe(0);
  });

  it('loads every install-anywhere command (--help) without the optional packages', () => {
    for (const cmd of [['keygen'], ['trust', 'init'], ['pack'], ['sign'], ['attach'], ['verify'], ['revoke'], ['inspect'], ['device', 'run']]) {
      const r = fwseal(...cmd, '--help');
      expect(r.status, `${cmd.join(' ')}: ${r.stderr}`).toBe(0);
    }
  });

  it('a command that needs a missing optional package fails with a code, naming the package', () => {
    const mqtt = fwseal(
      ...['device', 'run', '--broker', 'mqtt://127.0.0.1:9', '--id', 'gw-1', '--group', 'lab'],
      ...['--trust', 'trust.cbor', '--device-class', 'acme-gw', '--state', 'dev'],
    );
    expect(mqtt.status).toBe(2);
    expect(mqtt.stderr).toContain('(code 823)');
    expect(mqtt.stderr).toContain('mqtt');
    const hil = fwseal('hil', 'run', '--devices', '1', '--work', join(work, 'hil'));
    expect(hil.status).toBe(2);
    expect(hil.stderr).toContain('(code 823)');
    expect(hil.stderr).toContain('serialport');
    const serve = fwseal('serve', '--data', join(work, 'serve'), '--broker', 'mqtt://127.0.0.1:9', '--trust', 'trust.cbor');
    expect(serve.status).toBe(2);
    expect(serve.stderr).toContain('(code 823)');
    expect(serve.stderr).toContain('better-sqlite3');
  });
});

describe('the library entry points (item 2)', () => {
  const fixtures = join(root, 'test/fixtures/consumer');

  it("the README's Library examples are these runnable files, verbatim", () => {
    // README "## Library" shows test/fixtures/consumer/*.mts; each ```ts block must be (part of) one of them.
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const section = /^## Library\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1] ?? '';
    const blocks = [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
    const sources = readdirSync(fixtures).map((f) => readFileSync(join(fixtures, f), 'utf8'));
    for (const b of blocks)
      expect(
        sources.some((src) => src.includes(b)),
        b.slice(0, 80),
      ).toBe(true);
  });

  it('type-checks a consumer of fwseal, fwseal/device and fwseal/device-bundle, and runs it', () => {
    const src = join(app, 'src');
    cpSync(fixtures, src, { recursive: true });
    const tsconfig = {
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        outDir: 'out',
        typeRoots: [join(root, 'node_modules/@types')],
        types: ['node'],
        skipLibCheck: true,
      },
      include: ['src/*.mts'],
    };
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(tsconfig));
    ok(run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', app], app), 'tsc of the consumer');

    const host = JSON.parse(ok(run(process.execPath, ['out/host-api.mjs'], app), 'host-api example').stdout);
    expect(host).toEqual({ accepted: 'OK', refused: 'REVOKED_KEY', kind: 'manifest', thrown: 'IO' });

    const device = JSON.parse(ok(run(process.execPath, ['out/device-api.mjs'], app), 'device-api example').stdout);
    expect(device.device).toEqual(['ROLLBACK', 'OK']);
    expect(device.bundle).toEqual(device.device);
    expect(device.iife).toEqual(device.device);
    expect(device.rollbackCode).toBe(300);
  });
});
