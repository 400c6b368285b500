/**
 * The package's bin (dist/hil/bin.cjs) starts a plain `fwseal verify` as one CommonJS file
 * (dist/host/verify-main.cjs) and everything else through the whole CLI (issue 17, hil/bin.ts). The
 * one-command start must be indistinguishable: same stdout, stderr and exit status as the whole CLI
 * (dist/host/cli.js) for accepted, rejected, --json, usage, I/O and --help command lines.
 */
import { type SpawnSyncReturns, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pack } from '../host/pack.js';
import { signEnvelope } from '../host/sign.js';
import { detBytes, detKey, makeTrust } from './support/fixtures.js';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, 'dist/hil/bin.cjs');
const CLI = join(ROOT, 'dist/host/cli.js');
const CHUNK = 1024;

let dir: string;

beforeAll(() => {
  for (const f of [BIN, CLI, join(ROOT, 'dist/host/verify-main.cjs')]) if (!existsSync(f)) throw new Error(`${f} is missing: run npm run build first`);
  dir = mkdtempSync(join(tmpdir(), 'fwseal-verify-main-'));
  const [A, B, R1, R2] = ['A', 'B', 'R1', 'R2'].map(detKey);
  writeFileSync(join(dir, 'trust.cbor'), makeTrust({ root: [A, B], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [A, B] }));
  const image = detBytes(20 * CHUNK + 3, 'verify-main image');
  writeFileSync(join(dir, 'image.bin'), image);
  const tampered = Buffer.from(image);
  tampered[5 * CHUNK] ^= 1;
  writeFileSync(join(dir, 'tampered.bin'), tampered);
  const packed = pack({
    imagePath: join(dir, 'image.bin'),
    deviceClass: 'acme-gw',
    version: '2.0.0',
    securityCounter: 3,
    chunkSize: CHUNK,
    created: 1764000000,
  });
  writeFileSync(join(dir, 'm.digests'), packed.digestTable);
  let env = packed.envelope;
  writeFileSync(join(dir, 'one.cose'), signEnvelope(env, R1).envelope);
  for (const k of [R1, R2]) env = signEnvelope(env, k).envelope;
  writeFileSync(join(dir, 'm.cose'), env);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (script: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> =>
  spawnSync(process.execPath, [script, ...args], { cwd: dir, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });

const CASES: [string, string[], number][] = [
  ['accepted, image and digest table', ['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'image.bin'], 0],
  ['accepted, --json', ['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'image.bin', '--json'], 0],
  ['rejected: a wrong chunk', ['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'tampered.bin'], 1],
  ['rejected: one signature of two, --json', ['verify', 'one.cose', '--trust', 'trust.cbor', '--json'], 1],
  ['a trust bundle', ['verify', 'trust.cbor'], 0],
  ['usage: a misspelt flag', ['verify', 'm.cose', '--trsut', 'trust.cbor'], 2],
  ['usage with --json', ['verify', 'm.cose', '--json'], 2],
  ['I/O: a missing image', ['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'missing.bin', '--json'], 2],
  ['--help', ['verify', '--help'], 0],
  ['help verify', ['help', 'verify'], 0],
  ['help verify with a flag', ['help', 'verify', '--json'], 0],
  ['--version (the whole CLI)', ['--version'], 0],
];

describe('the bin: `fwseal verify` on its own prints what the whole CLI prints', () => {
  it.each(CASES)('%s', (_name, args, status) => {
    const viaBin = run(BIN, args);
    const viaCli = run(CLI, args);
    expect(viaBin.status).toBe(status);
    expect({ status: viaBin.status, stdout: viaBin.stdout, stderr: viaBin.stderr }).toEqual({
      status: viaCli.status,
      stdout: viaCli.stdout,
      stderr: viaCli.stderr,
    });
  });

  it('a verify with an audit log goes through the whole CLI, which checks the audit options', () => {
    const args = ['verify', 'm.cose', '--trust', 'trust.cbor', '--audit'];
    const viaBin = run(BIN, args);
    expect(viaBin.status).toBe(2);
    expect(viaBin.stderr).toContain('USAGE (code 800)');
    expect(viaBin.stderr).toBe(run(CLI, args).stderr);
    const badActor = { FWSEAL_AUDIT_LOG: join(dir, 'audit.log'), FWSEAL_ACTOR: 'a\u0001b' };
    const viaEnv = run(BIN, ['verify', 'm.cose', '--trust', 'trust.cbor'], badActor);
    expect(viaEnv.status).toBe(2);
    expect(viaEnv.stderr).toBe(run(CLI, ['verify', 'm.cose', '--trust', 'trust.cbor'], badActor).stderr);
  });

  it('a plain verify loads neither the whole CLI nor the ES module loader', () => {
    // NODE_DEBUG=module reports each CommonJS load (MODULE lines), =esm the ES module loader's work (ESM lines).
    const r = run(BIN, ['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'image.bin'], { NODE_DEBUG: 'module,esm' });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('verify-main.cjs');
    expect(r.stderr).not.toMatch(/^ESM /m);
    // The control: the whole CLI is ES modules, and the same switch sees it load them.
    const help = run(BIN, ['help', 'verify'], { NODE_DEBUG: 'module,esm' });
    expect(help.stderr).toContain('verify-main.cjs');
    expect(help.stderr).not.toMatch(/^ESM /m);
    const full = run(BIN, ['--version'], { NODE_DEBUG: 'module,esm' });
    expect(full.stderr).toMatch(/^ESM .*dist\/hil\/cli\.js/m);
    expect(full.stderr).not.toContain('verify-main.cjs');
  });
});
