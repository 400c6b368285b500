/**
 * The hil commands of the fwseal binary (issue 18 items 2 and 4): `hil bundle` writes the update
 * bundle a stock `mcumgr image upload` carries; `hil device` runs one simulated device, provisioned
 * by `fwseal device provision`, on a pty for an external client, driven here from this process as
 * mcumgr would drive it (echo, image list, upload, reset, confirm); the built binary's `--help`
 * loads none of the hil machinery; `hil run` reports a line per case on stdout and JUnit XML that the
 * Jenkins JUnit schema (test/vectors/junit/junit-10.xsd, MIT) validates; errors print with their names.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type SerialPort } from 'serialport';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HIL_COMMANDS } from '../hil/cli.js';
import { caseLine, junitXml } from '../hil/report.js';
import { type CaseResult } from '../hil/runner.js';
import { type SmpClient } from '../hil/smp-endpoint.js';
import { uploadImage } from '../hil/upload.js';
import { nodeSha256 } from '../host/hash.js';
import { BUNDLE_MAGIC, bundleLayout } from '../shared/bundle.js';
import { CODES } from '../shared/codes.js';
import { echo, imageState, imageStateWrite, reset, status } from '../shared/smp/commands.js';
import { runCli } from './support/cli-run.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { childLines, smpSession } from './support/hil-pty.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'fwseal-hil-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, bytes: Uint8Array | string) => {
  writeFileSync(join(dir, name), bytes);
  return join(dir, name);
};

// socat and xmllint are test requirements (tools/setup.sh): missing, the suite fails here, not silently.
beforeAll(() => {
  execFileSync('socat', ['-V'], { stdio: 'ignore' });
  execFileSync('xmllint', ['--version'], { stdio: 'ignore' });
});

const hil = (args: string[]) => runCli(['hil', ...args], HIL_COMMANDS);

/** Trust (standard world), a factory release 1.0.0 and an update 2.0.0 for class acme-gw, as files. */
function releases() {
  const { trust, R1, R2 } = standardWorld();
  const release = (version: string, counter: number, size: number) => {
    const image = detBytes(size, `hil-cli ${version}`);
    const envelope = makeManifestEnvelope(makeManifest(image, { version, securityCounter: counter, chunkSize: 1024 }), [R1, R2]);
    return { image, envelope, manifest: file(`fw-${version}.cose`, envelope), imagePath: file(`fw-${version}.bin`, image) };
  };
  return { trust: file('trust.cbor', trust), v1: release('1.0.0', 1, 16_384), v2: release('2.0.0', 2, 20_000) };
}
const world = releases();

describe('fwseal hil bundle', () => {
  it('writes the update bundle: magic, manifest, and the length the layout gives', async () => {
    const out = join(dir, 'update.bin');
    const r = await hil(['bundle', world.v2.manifest, '--image', world.v2.imagePath, '--out', out, '--json']);
    expect(r.err).toBe('');
    expect(r.status).toBe(0);
    const bundle = new Uint8Array(readFileSync(out));
    expect([...bundle.subarray(0, 8)]).toEqual([...BUNDLE_MAGIC]);
    expect(new DataView(bundle.buffer, bundle.byteOffset).getUint32(8)).toBe(world.v2.envelope.length);
    expect(bundle.subarray(12, 12 + world.v2.envelope.length)).toEqual(world.v2.envelope);
    expect(bundle.length).toBe(bundleLayout(world.v2.envelope.length, 20_000, 1024).length);
    expect(JSON.parse(r.out)).toMatchObject({ ok: true, bytes: bundle.length, version: '2.0.0', chunks: 20 });
  });

  it('refuses an image that is not the one the manifest names, and a command line without --out', async () => {
    const other = file('other.bin', detBytes(20_000, 'not the image'));
    const short = file('short.bin', detBytes(19_999, 'hil-cli 2.0.0'));
    const out = join(dir, 'refused.bin');
    const cases: [string[], number][] = [
      [['bundle', world.v2.manifest, '--image', other, '--out', out], CODES.MERKLE_ROOT_MISMATCH],
      [['bundle', world.v2.manifest, '--image', short, '--out', out], CODES.IMAGE_TOO_SHORT],
      [['bundle', world.v2.manifest, '--image', world.v2.imagePath], CODES.USAGE],
      [['bundle', world.trust, '--image', world.v2.imagePath, '--out', out], CODES.WRONG_KIND],
    ];
    for (const [args, code] of cases) {
      const r = await hil(args);
      expect(r.err, args.join(' ')).toContain(`(code ${code})`);
      expect(r.status).toBe(code < 800 ? 1 : 2);
    }
    expect(existsSync(out)).toBe(false);
  });
});

describe('fwseal hil device (a device provisioned by fwseal device provision, driven over its pty)', () => {
  it('answers echo, image list, an update bundle upload, reset into trial, confirm; SIGTERM stops it, exit 0', async () => {
    const state = join(dir, 'dev1');
    const p = await runCli([
      'device',
      'provision',
      '--state',
      state,
      '--trust',
      world.trust,
      '--device-class',
      'acme-gw',
      '--manifest',
      world.v1.manifest,
      '--image',
      world.v1.imagePath,
    ]);
    expect(p.status).toBe(0);
    const bundlePath = join(dir, 'dev1-update.bin');
    expect((await hil(['bundle', world.v2.manifest, '--image', world.v2.imagePath, '--out', bundlePath])).status).toBe(0);
    const link = join(dir, 'dev1.pty');
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const child = spawn(
      process.execPath,
      ['--import', tsx, join(ROOT, 'hil', 'cli.ts'), 'hil', 'device', '--state', state, '--pty', link, '--runtime', 'node'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const out = childLines(child);
    let stderr = '';
    child.stderr?.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const open: SerialPort[] = [];
    /** One client session on the pty, opened and closed around `fn`, as mcumgr does for every command. */
    const session = <T>(pts: string, fn: (client: SmpClient) => Promise<T>) => smpSession(pts, fn, open);
    try {
      const pts = (await out.waitFor(/hil device on (\/dev\/pts\/\d+) \(link /))[1];
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      await session(pts, async (client) => {
        const e = await client.request(echo, { text: 'hello' });
        expect(e.ok && e.value?.text).toBe('hello');
        const before = await client.request(imageState, {});
        expect(before.ok && before.value?.images.find((i) => i.active)).toMatchObject({ version: '1.0.0', confirmed: true });
      });
      await session(pts, async (client) => {
        const bundle = new Uint8Array(readFileSync(bundlePath));
        const up = await uploadImage(client, bundle, { sha: nodeSha256(bundle), timeoutMs: 5000 });
        expect(up.ok, JSON.stringify(up)).toBe(true);
        const st = await client.request(status, {});
        expect(st.ok && st.value?.phase).toBe('pending');
      });
      await session(pts, async (client) => expect((await client.request(reset, {})).ok).toBe(true));
      await out.waitFor(/reset: booting again/);
      await session(pts, async (client) => {
        const trial = await client.request(imageState, {});
        expect(trial.ok && trial.value?.images.find((i) => i.active)).toMatchObject({ version: '2.0.0', confirmed: false });
        const confirmed = await client.request(imageStateWrite, { confirm: true });
        expect(confirmed.ok && confirmed.value?.images.find((i) => i.active)).toMatchObject({ version: '2.0.0', confirmed: true });
        const end = await client.request(status, {});
        expect(end.ok && end.value).toMatchObject({ version: '2.0.0', counter: 2, code: 0, phase: 'idle' });
      });
    } finally {
      await Promise.all(open.map((sp) => new Promise<void>((r) => (sp.isOpen ? sp.close(() => r()) : r()))));
      child.kill('SIGTERM');
    }
    expect(await exited, stderr).toBe(0);
    expect(out.text()).toMatch(/SIGTERM: stopped/);
    expect(existsSync(link)).toBe(false);
    // The directory stays a host device too: fwseal device run boots it (the confirmed 2.0.0).
    const run = await runCli([
      'device',
      'run',
      '--state',
      state,
      '--trust',
      world.trust,
      '--update',
      world.v2.manifest,
      '--image',
      world.v2.imagePath,
      '--json',
    ]);
    expect(run.out).toContain('2.0.0');
  });

  it('refuses a directory without a device (IO) and a missing or doubled line (USAGE), by name', async () => {
    const cases: [string[], string, number][] = [
      [['device', '--state', join(dir, 'nothing'), '--pty', join(dir, 'x.pty'), '--runtime', 'node'], 'IO', CODES.IO],
      [['device', '--state', join(dir, 'dev1')], 'USAGE', CODES.USAGE],
      [['device', '--state', join(dir, 'dev1'), '--pty', 'a', '--port', 'b'], 'USAGE', CODES.USAGE],
    ];
    for (const [args, name, code] of cases) {
      const r = await hil(args);
      expect(r.status).toBe(2);
      expect(r.err).toContain(`${name} (code ${code})`);
    }
  });
});

const XSD = join(ROOT, 'test/vectors/junit/junit-10.xsd');
/** xmllint's verdict on `xml` against the Jenkins JUnit schema: 0 valid. */
function validate(xml: string): { status: number | null; stderr: string } {
  const path = file(`junit-${Math.random().toString(36).slice(2)}.xml`, xml);
  const r = spawnSync('xmllint', ['--noout', '--schema', XSD, path], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

describe('hil reports', () => {
  const base = { expected: { version: '2.0.0' }, actual: null, restarts: 0, uploads: [] };
  const results: CaseResult[] = [
    { ...base, scenario: 'good', device: 0, passed: true, failures: [], seconds: 3.25 },
    { ...base, scenario: 'bad', device: 1, passed: false, failures: ['version: expected "2.0.0", got "1.0.0"'], seconds: 2 },
    { ...base, scenario: 'broken', device: 0, passed: false, failures: ['harness: device does not answer echo'], seconds: 15 },
    { ...base, scenario: 'cut', device: 1, passed: true, skipped: 'power cuts need a simulated device', failures: [], seconds: 0 },
  ];
  const logs = new Map([
    ['good [dev 0]', 'scenario good: start\n> echo seq 1 d=<\u0001&"]]>\ud800'],
    ['bad [dev 1]', 'scenario bad: start'],
  ]);
  const suite = { started: new Date(Date.UTC(2026, 11, 5, 12, 0, 0)), hostname: 'ci-runner-7', seconds: 15.5, logs, properties: { baud: '115200' } };

  it('JUnit: Ant/Jenkins attributes, failures vs errors, wall time, per-case log excerpt; valid against the schema', () => {
    const xml = junitXml(results, suite);
    expect(validate(xml)).toMatchObject({ status: 0 });
    expect(xml).toMatch(
      /<testsuite name="fwseal-hil" tests="4" failures="1" errors="1" skipped="1" time="15.500" timestamp="2026-12-05T12:00:00" hostname="ci-runner-7"/,
    );
    expect(xml).toMatch(/name="broken \[dev 0\]"[^>]*>\s*<error message="harness: device does not answer echo" type="harness">/);
    expect(xml).toMatch(/name="bad \[dev 1\]"[^>]*>\s*<failure message="version: expected &quot;2.0.0&quot;, got &quot;1.0.0&quot;" type="mismatch">/);
    // The excerpt is escaped, and characters XML 1.0 cannot hold are dropped.
    expect(xml).toContain('<system-out>end state: null\nrestarts: 0\n--- log ---\nscenario good: start\n&gt; echo seq 1 d=&lt;&amp;&quot;]]&gt;</system-out>');
  });

  it('the schema check can fail: the old report (skipped on testsuites, no errors) is refused', () => {
    const old = junitXml(results, suite).replace(/<testsuites ([^>]*)>/, '<testsuites $1 skipped="1">');
    expect(validate(old).status).not.toBe(0);
    expect(validate(junitXml(results, suite).replace(/ errors="1" skipped/, ' skipped')).status).not.toBe(0);
  });

  it('a line per finished case, with its verdict and why', () => {
    expect(results.map(caseLine)).toEqual([
      'PASS  good [dev 0] 3.3 s\n',
      'FAIL  bad [dev 1] 2.0 s: version: expected "2.0.0", got "1.0.0"\n',
      'ERROR broken [dev 0] 15.0 s: harness: device does not answer echo\n',
      'SKIP  cut [dev 1] 0.0 s: power cuts need a simulated device\n',
    ]);
  });
});

describe('the built fwseal binary (dist/hil/cli.js)', () => {
  it('--help loads no hil machinery, serial, QuickJS or broker module; errors print USAGE and IO, not INTERNAL', () => {
    const log = join(dir, 'resolved.txt');
    const hook = file(
      'hook.mjs',
      `import { appendFileSync } from 'node:fs';\nexport async function resolve(s, c, next) { const r = await next(s, c); appendFileSync(${JSON.stringify(log)}, r.url + '\\n'); return r; }\n`,
    );
    const register = file('register.mjs', `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hook).href)});\n`);
    const bin = join(ROOT, 'dist/hil/cli.js');
    const help = spawnSync(process.execPath, ['--import', pathToFileURL(register).href, bin, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('hil device');
    const urls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
    expect(urls.some((u) => u.endsWith('/dist/hil/cli.js'))).toBe(true);
    expect(urls.filter((u) => /node_modules\/(serialport|@serialport|quickjs|@jitl|mqtt|pino|pg)\//.test(u))).toEqual([]);
    // The rig, runner, scenario loader and simulated device are in chunks of their own, loaded by `hil run` / `hil device` only.
    const loaded = urls.filter((u) => u.includes('/dist/')).map((u) => readFileSync(fileURLToPath(u), 'utf8'));
    expect(loaded.length).toBeGreaterThan(1);
    for (const marker of ['class DeviceSlot', 'function runMatrix', 'function loadScenarios', 'class SimDevice', 'function runStandaloneDevice'])
      expect(
        loaded.some((src) => src.includes(marker)),
        marker,
      ).toBe(false);
    // One build: the error class the hil commands throw is the one host/cli.ts prints (a second copy would print INTERNAL).
    for (const [args, name] of [
      [['hil', 'run', '--runtime', 'wasm'], 'USAGE'],
      [['hil', 'bundle', join(dir, 'no-such.cose'), '--image', join(dir, 'no-such.bin'), '--out', join(dir, 'never.bin')], 'IO'],
    ] as const) {
      const bad = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
      expect(bad.status, args.join(' ')).toBe(2);
      expect(bad.stderr).toContain(`${name} (code ${CODES[name]})`);
      expect(bad.stderr).not.toContain('INTERNAL');
    }
  });

  it('hil run: the built rig finds the built device process; a case line on stdout (not a terminal) before the table', () => {
    const junit = join(dir, 'built.xml');
    const bin = join(ROOT, 'dist/hil/cli.js');
    const args = ['hil', 'run', '--devices', '1', '--scenarios', 'wrong-device-class', '--runtime', 'node', '--baud', '921600', '--junit', junit];
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^PASS {2}wrong-device-class \[dev 0\] \d+\.\d s\nscenario {2}/m);
    expect(r.stderr).toBe('');
    expect(validate(readFileSync(junit, 'utf8')).status).toBe(0);
  });
});
