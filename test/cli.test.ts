/**
 * End to end through the built binary (dist/host/cli.js, built by `npx tsup` / `npm test`'s pretest):
 * keys, trust bundles, manifests, signatures, verification, revocation, rotation and inspection,
 * exactly as an operator runs them. Exit status 0 accepted, 1 rejected (the error name is printed),
 * 2 usage or I/O error (one line on stderr). Codes and names are asserted, never message text.
 */
import { execFileSync, type SpawnSyncOptionsWithStringEncoding, spawnSync } from 'node:child_process';
import { createDecipheriv, scryptSync } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTrust, verifyTrustUpdate } from '../device/index.js';
import { toHex } from '../shared/bytes.js';
import { CODES, type CodeName } from '../shared/codes.js';
import { runCli } from './support/cli-run.js';
import { detBytes, imageTree } from './support/fixtures.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'host', 'cli.js');
const PASS = 'cli test passphrase';
const CREATED = '1764000000';
const IMAGE_SIZE = 300_000;
const CHUNK = 1024;
/** A 45-character SBOM URI and a 40-hex git revision: the realistic manifest of the size budget. */
const SBOM_URI = 'https://sboms.acme.example/gw/1.4.2/sbom.json';
const SOURCE_REV = '9fceb02d0ae598e95dc970b74767f19372d61af8';
const PIPELINE_RUN = 'ci-4711';

type Run = { status: number | null; stdout: string; stderr: string };

let dir: string;
/** Every stdout and stderr the binary produced in this file (checked for secrets at the end). */
const outputs: string[] = [];

type RunOptions = { env?: Record<string, string | undefined>; cwd?: string; process?: boolean };

/**
 * `fwseal ARGS` in this process (main() of host/cli.ts; the test file runs in its own fork, so cwd
 * and the environment can be set for the call). `process: true` spawns the built binary instead:
 * for what only a real process shows (exit codes, no controlling terminal).
 */
async function fwseal(args: string[], opts: RunOptions = {}): Promise<Run> {
  const r = opts.process ? spawned(args, opts) : await inProcess(args, opts);
  outputs.push(r.stdout, r.stderr);
  return r;
}

async function inProcess(args: string[], opts: RunOptions): Promise<Run> {
  // The same environment a spawned run gets: the passphrase and nothing else of fwseal's.
  const env: Record<string, string | undefined> = { FWSEAL_PASSPHRASE: PASS, ...opts.env };
  for (const k of Object.keys(process.env)) if ((k.startsWith('FWSEAL_') || k === 'SOURCE_DATE_EPOCH') && !(k in env)) env[k] = undefined;
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  const set = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  const home = process.cwd();
  set(env);
  process.chdir(opts.cwd ?? dir);
  try {
    const r = await runCli(args);
    return { status: r.status, stdout: r.out, stderr: r.err };
  } finally {
    process.chdir(home);
    set(saved);
  }
}

function spawned(args: string[], opts: RunOptions): Run {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', FWSEAL_PASSPHRASE: PASS };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  // detached: a new session with no controlling terminal, so a missing passphrase can never wait on a
  // prompt (libuv honours it for spawnSync too; @types/node does not list it there).
  const options: SpawnSyncOptionsWithStringEncoding & { detached: boolean } = {
    cwd: opts.cwd ?? dir,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    timeout: 60_000,
  };
  const r = spawnSync(process.execPath, [CLI, ...args], options);
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const p = (name: string) => join(dir, name);
const bytes = (name: string) => readFileSync(p(name));
const json = (r: Run) => JSON.parse(r.stdout) as Record<string, any>;

/** Exit 1, and the rejection names `code` on stdout (verify) or stderr (others). */
function expectRejected(r: Run, code: CodeName): void {
  expect(r.status, r.stdout + r.stderr).toBe(1);
  expect(r.stdout + r.stderr).toMatch(new RegExp(`\\b${code}\\b \\(code ${CODES[code]}\\)`));
}

/** Exit 2 with exactly one line on stderr naming `code`, nothing on stdout. */
function expectUsageOrIo(r: Run, code: CodeName): void {
  expect(r.status, r.stderr).toBe(2);
  expect(r.stdout).toBe('');
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.stderr.endsWith('\n')).toBe(true);
  expect(lines[0]).toMatch(new RegExp(`\\b${code}\\b`));
}

function expectOk(r: Run): void {
  expect(r.status, r.stdout + r.stderr).toBe(0);
}

/** verify with --json; returns the parsed result after checking the exit status agrees with it. */
async function verifyJson(args: string[]): Promise<Record<string, any>> {
  const r = await fwseal(['verify', ...args, '--json']);
  expect([0, 1], r.stderr).toContain(r.status);
  const out = json(r);
  expect(out.ok).toBe(r.status === 0);
  return out;
}

const kids: Record<string, string> = {};
const ROLE_ARGS = (root: string[], release: string[]) => [
  ...root.flatMap((k) => ['--root', `${k}.pub`]),
  '--root-threshold',
  '2',
  ...release.flatMap((k) => ['--release', `${k}.pub`]),
  '--release-threshold',
  '2',
];
const ABC_R123 = ROLE_ARGS(['A', 'B', 'C'], ['R1', 'R2', 'R3']);
const BASE_VERIFY = ['m.cose', '--trust', 'trust.cbor', '--image', 'image.bin'];

beforeAll(async () => {
  if (!existsSync(CLI)) execFileSync('npx', ['tsup'], { cwd: ROOT, stdio: 'ignore' });
  dir = mkdtempSync(join(tmpdir(), 'fwseal-cli-test-'));
  writeFileSync(p('image.bin'), detBytes(IMAGE_SIZE, 'cli test image'));
  writeFileSync(p('sbom.json'), JSON.stringify({ bomFormat: 'CycloneDX', specVersion: '1.5', components: [] }));
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the release flow', () => {
  it('keygen x6 prints each key id and writes NAME.key (0600) and NAME.pub', async () => {
    for (const name of ['A', 'B', 'C', 'R1', 'R2', 'R3']) {
      const r = await fwseal(['keygen', name, '--dir', dir]);
      expectOk(r);
      expect(r.stdout).toMatch(/^[0-9a-f]{32}\n$/);
      kids[name] = r.stdout.trim();
      expect(statSync(p(`${name}.key`)).mode & 0o777).toBe(0o600);
      const pub = JSON.parse(bytes(`${name}.pub`).toString('utf8'));
      expect(pub.keyId).toBe(kids[name]);
    }
    expect(new Set(Object.values(kids)).size).toBe(6);
  });

  it('keygen --json gives the public facts only', async () => {
    const r = await fwseal(['keygen', 'J', '--dir', dir, '--json']);
    expectOk(r);
    const out = json(r);
    expect(Object.keys(out).sort()).toEqual(['keyId', 'name', 'privateKeyFile', 'publicKey', 'publicKeyFile']);
    expect(out.name).toBe('J');
    expect(out.keyId).toMatch(/^[0-9a-f]{32}$/);
    expect(out.publicKey).toMatch(/^[0-9a-f]{64}$/);
  });

  it('trust init 2-of-3 root, 2-of-3 release, signed by A and B', async () => {
    const r = await fwseal(['trust', 'init', ...ABC_R123, '--sign', 'A.key', '--sign', 'B.key', '--out', 'trust.cbor', '--json']);
    expectOk(r);
    expect(json(r)).toEqual({ out: 'trust.cbor', version: 1, complete: true, missing: [] });
    const t = loadTrust(new Uint8Array(bytes('trust.cbor')));
    expect(t.ok).toBe(true);
  });

  it('pack with --sbom, --chunk-size and provenance writes an unsigned manifest and its digest table', async () => {
    const r = await fwseal([
      'pack',
      'image.bin',
      '--device-class',
      'acme-gw',
      '--version',
      '1.4.2',
      '--counter',
      '7',
      '--out',
      'm.cose',
      '--chunk-size',
      String(CHUNK),
      '--sbom',
      'sbom.json',
      '--sbom-uri',
      SBOM_URI,
      '--pipeline-run',
      PIPELINE_RUN,
      '--source-rev',
      SOURCE_REV,
      '--created',
      CREATED,
      '--json',
    ]);
    expectOk(r);
    const out = json(r);
    const { root } = imageTree(new Uint8Array(bytes('image.bin')), CHUNK);
    expect(out).toMatchObject({
      out: 'm.cose',
      digests: 'm.digests',
      imageSize: IMAGE_SIZE,
      chunkSize: CHUNK,
      chunks: Math.ceil(IMAGE_SIZE / CHUNK),
      merkleRoot: toHex(root),
    });
    expect(existsSync(p('m.digests'))).toBe(true);
    copyFileSync(p('m.cose'), p('unsigned.cose'));
    const info = json(await fwseal(['inspect', 'm.cose', '--json']));
    expect(info.signatures).toEqual([]);
  });

  it('one release signature (R1) is not enough: THRESHOLD_NOT_MET', async () => {
    const s = await fwseal(['sign', 'm.cose', '--key', 'R1.key']);
    expectOk(s);
    const r = await fwseal(['verify', ...BASE_VERIFY]);
    expectRejected(r, 'THRESHOLD_NOT_MET');
    expect(r.stdout).toMatch(/^REJECTED THRESHOLD_NOT_MET/);
    expect(await verifyJson(BASE_VERIFY)).toMatchObject({ ok: false, code: CODES.THRESHOLD_NOT_MET, error: 'THRESHOLD_NOT_MET' });
  });

  it('the built binary exits 0 accepted, 1 rejected (naming the code), 2 on a usage error', async () => {
    expectRejected(await fwseal(['verify', ...BASE_VERIFY], { process: true }), 'THRESHOLD_NOT_MET');
    expectUsageOrIo(await fwseal(['verify', 'm.cose', '--no-such-flag'], { process: true }), 'USAGE');
    expectOk(await fwseal(['inspect', 'm.cose'], { process: true }));
  });

  it('a second release signature (R2) makes it verify', async () => {
    expectOk(await fwseal(['sign', 'm.cose', '--key', 'R2.key']));
    const r = await fwseal(['verify', ...BASE_VERIFY]);
    expectOk(r);
    expect(r.stdout).toMatch(/^ACCEPTED /);
  });

  it('verify --json: ok, code 0, the signers, the image checked (a matching image does not read the digest table)', async () => {
    const out = await verifyJson(BASE_VERIFY);
    expect(out).toMatchObject({ ok: true, code: 0, error: 'OK', imageChecked: true, digestTable: false, trustVersion: 1, revocationVersion: 0 });
    expect([...out.signers].sort()).toEqual([kids.R1, kids.R2].sort());
    expect(out.manifest).toMatchObject({
      type: 'manifest',
      deviceClass: 'acme-gw',
      version: '1.4.2',
      securityCounter: 7,
      imageSize: IMAGE_SIZE,
      chunkSize: CHUNK,
    });
    // Without --image the manifest alone is checked.
    expect(await verifyJson(['m.cose', '--trust', 'trust.cbor'])).toMatchObject({ ok: true, code: 0, imageChecked: false });
  });

  it('the manifest with 2 signatures, SBOM and provenance fits in 400 bytes', async () => {
    expect(SBOM_URI).toHaveLength(45);
    expect(SOURCE_REV).toMatch(/^[0-9a-f]{40}$/);
    const info = json(await fwseal(['inspect', 'm.cose', '--json']));
    expect(info.signatures).toHaveLength(2);
    expect(info.sbom.uri).toBe(SBOM_URI);
    expect(info.provenance).toEqual({ pipelineRun: PIPELINE_RUN, sourceRevision: SOURCE_REV });
    expect(bytes('m.cose').length).toBeLessThanOrEqual(400);
    expect(info.bytes).toBe(bytes('m.cose').length);
  });

  it('signing again with a key already present leaves the file byte-identical', async () => {
    const before = bytes('m.cose');
    const r = await fwseal(['sign', 'm.cose', '--key', 'R1.key', '--json']);
    expectOk(r);
    expect(json(r)).toMatchObject({ added: false, keyId: kids.R1 });
    expect(bytes('m.cose').equals(before)).toBe(true);
    expectOk(await fwseal(['sign', 'm.cose', '--key', 'R2.key']));
    expect(bytes('m.cose').equals(before)).toBe(true);
  });

  it('two signers in either order give byte-identical envelopes', async () => {
    copyFileSync(p('unsigned.cose'), p('order-a.cose'));
    copyFileSync(p('unsigned.cose'), p('order-b.cose'));
    for (const k of ['R1', 'R3']) expectOk(await fwseal(['sign', 'order-a.cose', '--key', `${k}.key`]));
    for (const k of ['R3', 'R1']) expectOk(await fwseal(['sign', 'order-b.cose', '--key', `${k}.key`]));
    expect(bytes('order-a.cose').equals(bytes('order-b.cose'))).toBe(true);
    expect(bytes('order-a.cose').equals(bytes('m.cose'))).toBe(false);
    // And R2 then R1 reproduces m.cose (signed R1 then R2) exactly.
    copyFileSync(p('unsigned.cose'), p('order-c.cose'));
    for (const k of ['R2', 'R1']) expectOk(await fwseal(['sign', 'order-c.cose', '--key', `${k}.key`]));
    expect(bytes('order-c.cose').equals(bytes('m.cose'))).toBe(true);
  });
});

describe('verify rejects', () => {
  beforeAll(async () => {
    const image = bytes('image.bin');
    const tampered = Buffer.from(image);
    tampered[200_000] ^= 0x80;
    writeFileSync(p('tampered.bin'), tampered);
    writeFileSync(p('short.bin'), image.subarray(0, IMAGE_SIZE - 1));
    writeFileSync(p('long.bin'), Buffer.concat([image, Buffer.from([0])]));
  });

  it('a tampered image with the digest table: CHUNK_DIGEST_MISMATCH', async () => {
    const args = ['m.cose', '--trust', 'trust.cbor', '--image', 'tampered.bin'];
    expectRejected(await fwseal(['verify', ...args]), 'CHUNK_DIGEST_MISMATCH');
    expect(await verifyJson(args)).toMatchObject({ ok: false, code: CODES.CHUNK_DIGEST_MISMATCH, error: 'CHUNK_DIGEST_MISMATCH' });
  });

  it('a tampered image without the digest table: MERKLE_ROOT_MISMATCH; --digests names the chunk again', async () => {
    renameSync(p('m.digests'), p('moved.digests'));
    try {
      const args = ['m.cose', '--trust', 'trust.cbor', '--image', 'tampered.bin'];
      expectRejected(await fwseal(['verify', ...args]), 'MERKLE_ROOT_MISMATCH');
      expect(await verifyJson(args)).toMatchObject({ ok: false, code: CODES.MERKLE_ROOT_MISMATCH, error: 'MERKLE_ROOT_MISMATCH' });
      expectRejected(await fwseal(['verify', ...args, '--digests', 'moved.digests']), 'CHUNK_DIGEST_MISMATCH');
      // The good image still verifies without a table.
      expect(await verifyJson(BASE_VERIFY)).toMatchObject({ ok: true, digestTable: false });
    } finally {
      renameSync(p('moved.digests'), p('m.digests'));
    }
  });

  it('a truncated image: IMAGE_TOO_SHORT; a longer one: IMAGE_TOO_LONG (with and without the table)', async () => {
    expectRejected(await fwseal(['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'short.bin']), 'IMAGE_TOO_SHORT');
    expectRejected(await fwseal(['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'long.bin']), 'IMAGE_TOO_LONG');
    renameSync(p('m.digests'), p('moved.digests'));
    try {
      expectRejected(await fwseal(['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'short.bin']), 'IMAGE_TOO_SHORT');
      expectRejected(await fwseal(['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'long.bin']), 'IMAGE_TOO_LONG');
    } finally {
      renameSync(p('moved.digests'), p('m.digests'));
    }
  });

  it('--counter above the manifest: ROLLBACK; equal to it: accepted', async () => {
    expectRejected(await fwseal(['verify', ...BASE_VERIFY, '--counter', '8']), 'ROLLBACK');
    expectOk(await fwseal(['verify', ...BASE_VERIFY, '--counter', '7']));
  });

  it('--device-class other: WRONG_DEVICE_CLASS; the right class: accepted', async () => {
    expectRejected(await fwseal(['verify', ...BASE_VERIFY, '--device-class', 'other']), 'WRONG_DEVICE_CLASS');
    expectOk(await fwseal(['verify', ...BASE_VERIFY, '--device-class', 'acme-gw']));
  });

  it('a revocation list naming R2: REVOKED_KEY; one naming only R3 does not affect this manifest', async () => {
    const r = await fwseal([
      'revoke',
      '--trust',
      'trust.cbor',
      '--key',
      'R2.pub',
      '--version',
      '3',
      '--sign',
      'A.key',
      '--sign',
      'B.key',
      '--out',
      'rl.cbor',
      '--json',
    ]);
    expectOk(r);
    expect(json(r)).toMatchObject({ out: 'rl.cbor', version: 3, complete: true, revokedKeyIds: [kids.R2] });
    expectRejected(await fwseal(['verify', ...BASE_VERIFY, '--revocations', 'rl.cbor']), 'REVOKED_KEY');
    expect(await verifyJson([...BASE_VERIFY, '--revocations', 'rl.cbor'])).toMatchObject({ ok: false, code: CODES.REVOKED_KEY, error: 'REVOKED_KEY' });

    expectOk(
      await fwseal(['revoke', '--trust', 'trust.cbor', '--key', 'R3.pub', '--version', '1', '--sign', 'A.key', '--sign', 'C.key', '--out', 'rl-r3.cbor']),
    );
    expect(await verifyJson([...BASE_VERIFY, '--revocations', 'rl-r3.cbor'])).toMatchObject({ ok: true, revocationVersion: 1 });
  });

  it('a revocation list older than --revocation-version: REVOCATION_ROLLBACK', async () => {
    expectRejected(await fwseal(['verify', ...BASE_VERIFY, '--revocations', 'rl-r3.cbor', '--revocation-version', '2']), 'REVOCATION_ROLLBACK');
    expectRejected(await fwseal(['verify', ...BASE_VERIFY, '--revocations', 'rl.cbor', '--revocation-version', '4']), 'REVOCATION_ROLLBACK');
    // The same lists at or above the stored version are not rollbacks.
    expectOk(await fwseal(['verify', ...BASE_VERIFY, '--revocations', 'rl-r3.cbor', '--revocation-version', '1']));
    expectRejected(await fwseal(['verify', ...BASE_VERIFY, '--revocations', 'rl.cbor', '--revocation-version', '3']), 'REVOKED_KEY');
  });

  it('a revocation list signed by one root key only is not accepted', async () => {
    const r = await fwseal(['revoke', '--trust', 'trust.cbor', '--key', 'R2.pub', '--version', '5', '--sign', 'A.key', '--out', 'rl-one.cbor', '--json']);
    expectOk(r);
    expect(json(r).complete).toBe(false);
    expectRejected(await fwseal(['verify', ...BASE_VERIFY, '--revocations', 'rl-one.cbor']), 'REVOCATION_THRESHOLD_NOT_MET');
  });

  it('verify --json stays machine-readable when the digest table does not match the manifest', async () => {
    // Same length and chunk size, different bytes: a well-formed table for another image.
    writeFileSync(p('other.bin'), detBytes(IMAGE_SIZE, 'another image'));
    expectOk(
      await fwseal([
        'pack',
        'other.bin',
        '--device-class',
        'acme-gw',
        '--version',
        '1.4.2',
        '--counter',
        '7',
        '--chunk-size',
        String(CHUNK),
        '--out',
        'other.cose',
      ]),
    );
    // The table is read only when the image does not match (SPEC.md §14 H14): then it must fit.
    const r = await fwseal(['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'tampered.bin', '--digests', 'other.digests', '--json']);
    expect(r.status).toBe(1);
    expect(r.stdout.length, 'no JSON on stdout').toBeGreaterThan(0);
    expect(json(r)).toMatchObject({ ok: false, code: CODES.DIGEST_PAGE_MISMATCH, error: 'DIGEST_PAGE_MISMATCH' });
    expect(await verifyJson([...BASE_VERIFY, '--digests', 'other.digests'])).toMatchObject({ ok: true, digestTable: false });
  });
});

describe('trust bundles signed in several steps, and rotation', () => {
  it('trust init with one signer writes an incomplete bundle; sign with C completes it', async () => {
    const r = await fwseal(['trust', 'init', ...ABC_R123, '--sign', 'A.key', '--out', 't-partial.cbor', '--json']);
    expectOk(r);
    const out = json(r);
    expect(out).toMatchObject({ out: 't-partial.cbor', version: 1, complete: false });
    expect(out.missing.length).toBeGreaterThan(0);
    expect(existsSync(p('t-partial.cbor'))).toBe(true);
    expectRejected(await fwseal(['verify', 'm.cose', '--trust', 't-partial.cbor']), 'TRUST_THRESHOLD_NOT_MET');
    expect(await verifyJson(['m.cose', '--trust', 't-partial.cbor'])).toMatchObject({
      ok: false,
      code: CODES.TRUST_THRESHOLD_NOT_MET,
      error: 'TRUST_THRESHOLD_NOT_MET',
    });

    expectOk(await fwseal(['sign', 't-partial.cbor', '--key', 'C.key']));
    expectOk(await fwseal(['verify', 'm.cose', '--trust', 't-partial.cbor', '--image', 'image.bin']));
    expect(
      json(await fwseal(['inspect', 't-partial.cbor', '--json']))
        .signatures.map((s: { keyId: string }) => s.keyId)
        .sort(),
    ).toEqual([kids.A, kids.C].sort());
  });

  it('a release key cannot sign a trust bundle: KEY_NOT_IN_TRUST, exit 2, nothing written', async () => {
    const r = await fwseal(['trust', 'init', ...ABC_R123, '--sign', 'R1.key', '--out', 't-bad.cbor']);
    expectUsageOrIo(r, 'KEY_NOT_IN_TRUST');
    expect(existsSync(p('t-bad.cbor'))).toBe(false);
  });

  it('trust rotate: version 2 signed by old and new root thresholds verifies manifests and is accepted as an update', async () => {
    for (const name of ['D', 'E', 'G']) expectOk(await fwseal(['keygen', name, '--dir', dir]));
    const r = await fwseal([
      'trust',
      'rotate',
      '--previous',
      'trust.cbor',
      ...ROLE_ARGS(['D', 'E', 'G'], ['R1', 'R2', 'R3']),
      '--sign',
      'A.key',
      '--sign',
      'B.key',
      '--sign',
      'D.key',
      '--sign',
      'E.key',
      '--out',
      'trust2.cbor',
      '--json',
    ]);
    expectOk(r);
    expect(json(r)).toEqual({ out: 'trust2.cbor', version: 2, complete: true, missing: [] });
    expect(await verifyJson(['m.cose', '--trust', 'trust2.cbor', '--image', 'image.bin'])).toMatchObject({ ok: true, trustVersion: 2 });

    const current = loadTrust(new Uint8Array(bytes('trust.cbor')));
    if (!current.ok) throw new Error(current.error);
    const update = verifyTrustUpdate(new Uint8Array(bytes('trust2.cbor')), current.trust);
    expect(update.ok).toBe(true);
    if (update.ok) expect(update.trust.bundle.version).toBe(2);
  });

  it('a rotation signed only by the new root keys is not accepted by the device (ROTATION_NOT_AUTHORIZED) until old roots sign', async () => {
    const r = await fwseal([
      'trust',
      'rotate',
      '--previous',
      'trust.cbor',
      ...ROLE_ARGS(['D', 'E', 'G'], ['R1', 'R2', 'R3']),
      '--sign',
      'D.key',
      '--sign',
      'E.key',
      '--out',
      'trust2-new-only.cbor',
      '--json',
    ]);
    expectOk(r);
    expect(json(r)).toMatchObject({ version: 2, complete: false });
    const current = loadTrust(new Uint8Array(bytes('trust.cbor')));
    if (!current.ok) throw new Error(current.error);
    const candidate = new Uint8Array(bytes('trust2-new-only.cbor'));
    expect(loadTrust(candidate).ok).toBe(true); // its own threshold is met...
    const update = verifyTrustUpdate(candidate, current.trust);
    expect(update.ok).toBe(false);
    if (!update.ok) expect(update.error).toBe('ROTATION_NOT_AUTHORIZED'); // ...the old roots never agreed.

    // One old root is still not enough; a threshold of them is.
    expectOk(await fwseal(['sign', 'trust2-new-only.cbor', '--key', 'A.key']));
    const one = verifyTrustUpdate(new Uint8Array(bytes('trust2-new-only.cbor')), current.trust);
    expect(one.ok ? 'OK' : one.error).toBe('ROTATION_NOT_AUTHORIZED');
    expectOk(await fwseal(['sign', 'trust2-new-only.cbor', '--key', 'C.key']));
    expect(verifyTrustUpdate(new Uint8Array(bytes('trust2-new-only.cbor')), current.trust).ok).toBe(true);
  });

  it('a rotation signed only by the old root keys misses its own threshold', async () => {
    const r = await fwseal([
      'trust',
      'rotate',
      '--previous',
      'trust.cbor',
      ...ROLE_ARGS(['D', 'E', 'G'], ['R1', 'R2', 'R3']),
      '--sign',
      'A.key',
      '--sign',
      'B.key',
      '--out',
      'trust2-old-only.cbor',
      '--json',
    ]);
    expectOk(r);
    expect(json(r)).toMatchObject({ version: 2, complete: false });
    expectRejected(await fwseal(['verify', 'm.cose', '--trust', 'trust2-old-only.cbor']), 'TRUST_THRESHOLD_NOT_MET');
  });
});

describe('inspect', () => {
  it.each([
    ['m.cose', 'manifest'],
    ['unsigned.cose', 'manifest'],
    ['trust.cbor', 'trust-bundle'],
    ['rl.cbor', 'revocation-list'],
    ['A.key', 'fwseal-private-key'],
    ['A.pub', 'fwseal-public-key'],
    ['m.digests', 'digest-table'],
  ])('%s -> type %s (text and --json)', async (file, type) => {
    const r = await fwseal(['inspect', file, '--json']);
    expectOk(r);
    expect(json(r).type).toBe(type);
    const text = await fwseal(['inspect', file]);
    expectOk(text);
    expect(text.stdout).toContain(type);
  });

  it('shows the facts of each kind', async () => {
    const m = json(await fwseal(['inspect', 'm.cose', '--json']));
    expect(m.signatures.map((s: { keyId: string }) => s.keyId).sort()).toEqual([kids.R1, kids.R2].sort());
    expect(m).toMatchObject({
      deviceClass: 'acme-gw',
      version: '1.4.2',
      securityCounter: 7,
      chunks: Math.ceil(IMAGE_SIZE / CHUNK),
      created: new Date(Number(CREATED) * 1000).toISOString(),
    });
    const t = json(await fwseal(['inspect', 'trust.cbor', '--json']));
    expect(t).toMatchObject({ version: 1, root: { threshold: 2 }, release: { threshold: 2 } });
    expect(t.root.keys.map((k: { keyId: string }) => k.keyId).sort()).toEqual([kids.A, kids.B, kids.C].sort());
    expect(t.release.keys.map((k: { keyId: string }) => k.keyId).sort()).toEqual([kids.R1, kids.R2, kids.R3].sort());
    const rl = json(await fwseal(['inspect', 'rl.cbor', '--json']));
    expect(rl).toMatchObject({ version: 3, revokedKeyIds: [kids.R2], revokedManifests: [] });
    const d = json(await fwseal(['inspect', 'm.digests', '--json']));
    expect(d).toEqual({ type: 'digest-table', chunks: Math.ceil(IMAGE_SIZE / CHUNK), wellFormed: true });
    const k = json(await fwseal(['inspect', 'A.key', '--json']));
    expect(k).toMatchObject({ name: 'A', keyId: kids.A, algorithm: 'Ed25519' });
  });

  it('inspect of a private key shows no secret field', async () => {
    const r = await fwseal(['inspect', 'A.key', '--json']);
    expectOk(r);
    const out = json(r);
    for (const field of ['ciphertext', 'seed', 'cipher', 'kdf', 'salt', 'iv', 'tag', 'privateKey', 'd']) expect(out).not.toHaveProperty(field);
    const file = JSON.parse(bytes('A.key').toString('utf8'));
    expect(r.stdout).not.toContain(file.cipher.ciphertext);
    expect(r.stdout).not.toContain(file.cipher.tag);
  });

  it.each([
    ['text', Buffer.from('this is not an fwseal file\n')],
    ['random-looking bytes', Buffer.from(detBytes(200, 'garbage'))],
    ['a CBOR map', Buffer.from([0xa1, 0x01, 0x02])],
    ['an empty file', Buffer.alloc(0)],
    ['JSON that is not a key', Buffer.from('{"type":"something"}')],
  ])('garbage (%s) exits 1 naming a decode code', async (_label, content) => {
    writeFileSync(p('garbage.bin'), content);
    const r = await fwseal(['inspect', 'garbage.bin', '--json']);
    expect(r.status, r.stderr).toBe(1);
    const m = /\b([A-Z][A-Z_]+) \(code (\d+)\)/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const [, name, num] = m as RegExpExecArray;
    expect(CODES[name as CodeName]).toBe(Number(num));
    // --json: the error object on stdout, nothing else (SPEC.md §9).
    expect(JSON.parse(r.stdout)).toEqual({ ok: false, code: Number(num), error: name, detail: expect.any(String), exitStatus: 1 });
    expect(Number(num)).toBeGreaterThanOrEqual(100);
    expect(Number(num)).toBeLessThan(800);
  });
});

describe('help', () => {
  const commands = [
    'keygen',
    'key import',
    'key export-pub',
    'trust init',
    'trust rotate',
    'trust verify',
    'pack',
    'sign',
    'attach',
    'merge',
    'verify',
    'revoke',
    'inspect',
    'audit verify',
    'audit show',
  ];

  it.each(commands)('%s --help exits 0 and prints its usage', async (cmd) => {
    for (const flag of ['--help', '-h']) {
      const r = await fwseal([...cmd.split(' '), flag]);
      expectOk(r);
      expect(r.stdout.startsWith(`fwseal ${cmd} `)).toBe(true);
      expect(r.stderr).toBe('');
    }
  });

  it('fwseal --help lists every command; fwseal alone prints it on stderr and exits 2', async () => {
    const r = await fwseal(['--help']);
    expectOk(r);
    for (const c of commands) expect(r.stdout).toContain(`  ${c} `);
    const bare = await fwseal([], { process: true }); // the built binary, as a shell runs it
    expect(bare.status).toBe(2);
    expect(bare.stdout).toBe('');
    expect(bare.stderr).toContain('usage: fwseal COMMAND');
  });
});

describe('usage and I/O errors exit 2 with one line naming the code', () => {
  const PACK = ['pack', 'image.bin', '--device-class', 'acme-gw', '--version', '1.0.0', '--counter', '1', '--out', 'never.cose'];
  const packWith = (...replace: [string, string | null][]) => {
    const args = [...PACK];
    for (const [flag, value] of replace) {
      const i = args.indexOf(flag);
      if (value === null) args.splice(i, 2);
      else if (i >= 0) args[i + 1] = value;
      else args.push(flag, value);
    }
    return args;
  };

  const usage: [string, string[]][] = [
    ['unknown command', ['frobnicate']],
    ['trust without a subcommand', ['trust']],
    ['pack: unknown flag', [...PACK, '--bogus']],
    ['verify: unknown flag', ['verify', 'm.cose', '--trust', 'trust.cbor', '--frob']],
    ['keygen: unknown flag', ['keygen', 'X', '--dir', '.', '--nope']],
    ['sign: unknown flag', ['sign', 'm.cose', '--key', 'R1.key', '--force']],
    ['trust init: unknown flag', ['trust', 'init', ...ABC_R123, '--sign', 'A.key', '--out', 'never.cbor', '--rooot', 'A.pub']],
    ['revoke: unknown flag', ['revoke', '--trust', 'trust.cbor', '--key', 'R2.pub', '--version', '9', '--sign', 'A.key', '--out', 'never.cbor', '--bogus']],
    ['inspect: unknown flag', ['inspect', 'm.cose', '--verbose']],
    ['pack: --counter missing', packWith(['--counter', null])],
    ['pack: --out missing', packWith(['--out', null])],
    ['pack: --device-class missing', packWith(['--device-class', null])],
    ['pack: --version missing', packWith(['--version', null])],
    ['pack: IMAGE missing', PACK.filter((a) => a !== 'image.bin')],
    ['verify: --trust missing', ['verify', 'm.cose', '--image', 'image.bin']],
    ['verify: manifest missing', ['verify', '--trust', 'trust.cbor']],
    ['sign: --key missing', ['sign', 'm.cose']],
    ['keygen: NAME missing', ['keygen']],
    ['keygen: bad NAME', ['keygen', '../evil', '--dir', '.']],
    ['inspect: FILE missing', ['inspect']],
    ['trust init: --out missing', ['trust', 'init', ...ABC_R123, '--sign', 'A.key']],
    [
      'trust init: --root-threshold missing',
      ['trust', 'init', '--root', 'A.pub', '--release', 'R1.pub', '--release-threshold', '1', '--sign', 'A.key', '--out', 'never.cbor'],
    ],
    ['trust init: --sign missing', ['trust', 'init', ...ABC_R123, '--out', 'never.cbor']],
    ['trust rotate: --previous missing', ['trust', 'rotate', ...ABC_R123, '--sign', 'A.key', '--out', 'never.cbor']],
    ['revoke: --version missing', ['revoke', '--trust', 'trust.cbor', '--key', 'R2.pub', '--sign', 'A.key', '--out', 'never.cbor']],
    ['revoke: nothing to revoke', ['revoke', '--trust', 'trust.cbor', '--version', '9', '--sign', 'A.key', '--out', 'never.cbor']],
    ['pack: --counter -1', packWith(['--counter', '-1'])],
    ['pack: --counter=-1', [...packWith(['--counter', null]), '--counter=-1']],
    ['pack: --counter 1e3', packWith(['--counter', '1e3'])],
    ['pack: --counter 1.5', packWith(['--counter', '1.5'])],
    ['pack: --counter 0x10', packWith(['--counter', '0x10'])],
    ['pack: --counter 2^53', packWith(['--counter', '9007199254740992'])],
    ['pack: --counter empty', packWith(['--counter', ''])],
    ['pack: --chunk-size 1000', packWith(['--chunk-size', '1000'])],
    ['pack: --chunk-size 256', packWith(['--chunk-size', '256'])],
    ['pack: --chunk-size 2 MiB', packWith(['--chunk-size', '2097152'])],
    ['pack: --created 1e9', packWith(['--created', '1e9'])],
    ['pack: --version 1.0', packWith(['--version', '1.0'])],
    ['pack: --version 01.0.0', packWith(['--version', '01.0.0'])],
    ['pack: --version v1.0.0', packWith(['--version', 'v1.0.0'])],
    ['pack: --version 1.0.0-', packWith(['--version', '1.0.0-'])],
    ['pack: --version 1.0.0+', packWith(['--version', '1.0.0+'])],
    ['pack: --version 1.0.0-01', packWith(['--version', '1.0.0-01'])],
    ['pack: --device-class with a space', packWith(['--device-class', 'acme gw'])],
    ['pack: --sbom-uri without --sbom', packWith(['--sbom-uri', SBOM_URI])],
    ['pack: --sbom-uri with a space', [...PACK, '--sbom', 'sbom.json', '--sbom-uri', 'https://x y']],
    ['verify: --counter 1e3', ['verify', ...BASE_VERIFY, '--counter', '1e3']],
    ['verify: --counter -1', ['verify', ...BASE_VERIFY, '--counter', '-1']],
    ['verify: --revocation-version x', ['verify', ...BASE_VERIFY, '--revocation-version', 'x']],
    [
      'trust init: --root-threshold 0',
      ['trust', 'init', ...ABC_R123.map((a, i, all) => (all[i - 1] === '--root-threshold' ? '0' : a)), '--sign', 'A.key', '--out', 'never.cbor'],
    ],
    [
      'trust init: --root-threshold 4 of 3',
      ['trust', 'init', ...ABC_R123.map((a, i, all) => (all[i - 1] === '--root-threshold' ? '4' : a)), '--sign', 'A.key', '--out', 'never.cbor'],
    ],
    ['trust init: a root key twice', ['trust', 'init', ...ROLE_ARGS(['A', 'A', 'B'], ['R1', 'R2', 'R3']), '--sign', 'A.key', '--out', 'never.cbor']],
    ['revoke: --version 0', ['revoke', '--trust', 'trust.cbor', '--key', 'R2.pub', '--version', '0', '--sign', 'A.key', '--out', 'never.cbor']],
    ['revoke: --kid not hex', ['revoke', '--trust', 'trust.cbor', '--kid', 'xyz', '--version', '9', '--sign', 'A.key', '--out', 'never.cbor']],
  ];

  it.each(usage)('%s -> USAGE', async (_label, args) => {
    const r = await fwseal(args);
    expectUsageOrIo(r, 'USAGE');
    for (const f of ['never.cose', 'never.digests', 'never.cbor']) expect(existsSync(p(f)), f).toBe(false);
  });

  const io: [string, string[]][] = [
    ['pack: image missing', ['pack', 'missing.bin', '--device-class', 'acme-gw', '--version', '1.0.0', '--counter', '1', '--out', 'never.cose']],
    ['pack: SBOM missing', [...PACK, '--sbom', 'missing-sbom.json']],
    [
      'pack: --out folder missing',
      ['pack', 'image.bin', '--device-class', 'acme-gw', '--version', '1.0.0', '--counter', '1', '--out', 'no/such/dir/never.cose'],
    ],
    ['verify: manifest missing', ['verify', 'missing.cose', '--trust', 'trust.cbor']],
    ['verify: trust missing', ['verify', 'm.cose', '--trust', 'missing.cbor']],
    ['verify: image missing', ['verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'missing.bin']],
    ['verify: image is a folder', ['verify', 'm.cose', '--trust', 'trust.cbor', '--image', '.']],
    ['verify: revocations missing', ['verify', ...BASE_VERIFY, '--revocations', 'missing.cbor']],
    ['verify: --digests missing', ['verify', ...BASE_VERIFY, '--digests', 'missing.digests']],
    ['sign: file missing', ['sign', 'missing.cose', '--key', 'R1.key']],
    ['sign: key missing', ['sign', 'm.cose', '--key', 'missing.key']],
    ['inspect: file missing', ['inspect', 'missing.bin']],
    // A missing --dir is created (issue 17); one under a file cannot be.
    ['keygen: folder under a file', ['keygen', 'Q', '--dir', 'image.bin/keys']],
    ['keygen: key exists', ['keygen', 'A', '--dir', '.']],
    [
      'trust init: root key missing',
      [
        'trust',
        'init',
        '--root',
        'A.pub',
        '--root',
        'missing.pub',
        '--root-threshold',
        '1',
        '--release',
        'R1.pub',
        '--release-threshold',
        '1',
        '--sign',
        'A.key',
        '--out',
        'never.cbor',
      ],
    ],
    ['trust rotate: previous missing', ['trust', 'rotate', '--previous', 'missing.cbor', ...ABC_R123, '--sign', 'A.key', '--out', 'never.cbor']],
    ['revoke: trust missing', ['revoke', '--trust', 'missing.cbor', '--key', 'R2.pub', '--version', '9', '--sign', 'A.key', '--out', 'never.cbor']],
  ];

  it.each(io)('%s -> IO', async (_label, args) => {
    const before = existsSync(p('A.key')) ? bytes('A.key') : null;
    const r = await fwseal(args);
    expectUsageOrIo(r, 'IO');
    for (const f of ['never.cose', 'never.digests', 'never.cbor']) expect(existsSync(p(f)), f).toBe(false);
    if (before) expect(bytes('A.key').equals(before)).toBe(true);
  });

  it('a failed pack leaves no manifest behind', async () => {
    expectUsageOrIo(await fwseal(packWith(['--version', '1.0'])), 'USAGE');
    expect(existsSync(p('never.cose'))).toBe(false);
    expect(existsSync(p('never.digests'))).toBe(false);
  });

  it('key problems: wrong passphrase, loose permissions, no passphrase', async () => {
    const before = bytes('order-a.cose');
    expectUsageOrIo(await fwseal(['sign', 'order-a.cose', '--key', 'R2.key'], { env: { FWSEAL_PASSPHRASE: 'not the passphrase' } }), 'WRONG_PASSPHRASE');
    expectUsageOrIo(await fwseal(['sign', 'order-a.cose', '--key', 'R2.key'], { env: { FWSEAL_PASSPHRASE: '' } }), 'NO_PASSPHRASE');
    // No passphrase and no terminal (a process in a new session): refused at once, never a prompt.
    expectUsageOrIo(await fwseal(['sign', 'order-a.cose', '--key', 'R2.key'], { env: { FWSEAL_PASSPHRASE: undefined }, process: true }), 'NO_PASSPHRASE');
    mkdirSync(p('loose'));
    copyFileSync(p('R2.key'), p('loose/R2.key'));
    chmodSync(p('loose/R2.key'), 0o644);
    expectUsageOrIo(await fwseal(['sign', 'order-a.cose', '--key', 'loose/R2.key']), 'KEY_FILE_PERMISSIONS');
    expect(bytes('order-a.cose').equals(before)).toBe(true);
    // With the right passphrase and mode the same key signs.
    chmodSync(p('loose/R2.key'), 0o600);
    expectOk(await fwseal(['sign', 'order-a.cose', '--key', 'loose/R2.key']));
    expect(bytes('order-a.cose').equals(before)).toBe(false);
  });
});

describe('secrets', () => {
  /** The seed, decrypted here from the documented file format (never by the binary). */
  function seedOf(file: Record<string, any>): Buffer {
    const f = file;
    const aad = Buffer.from(JSON.stringify([f.type, f.version, f.algorithm, f.name, f.keyId, f.publicKey, f.kdf.name, f.kdf.N, f.kdf.r, f.kdf.p, f.kdf.salt]));
    const key = scryptSync(PASS.normalize('NFC'), Buffer.from(f.kdf.salt, 'base64'), 32, {
      N: f.kdf.N,
      r: f.kdf.r,
      p: f.kdf.p,
      maxmem: 256 * f.kdf.N * f.kdf.r + 1024 * 1024,
    });
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(f.cipher.iv, 'base64'), { authTagLength: 16 });
    d.setAAD(aad);
    d.setAuthTag(Buffer.from(f.cipher.tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(f.cipher.ciphertext, 'base64')), d.final()]);
  }

  it('no output of any command contains a private key, in any form', async () => {
    expect(outputs.length).toBeGreaterThan(100);
    const all = outputs.join('\n');
    for (const name of ['A', 'B', 'C', 'R1', 'R2', 'R3', 'D', 'E', 'G', 'J']) {
      const file = JSON.parse(bytes(`${name}.key`).toString('utf8'));
      expect(all.includes(file.cipher.ciphertext), `${name} ciphertext`).toBe(false);
      expect(all.includes(file.cipher.tag), `${name} tag`).toBe(false);
      const seed = seedOf(file);
      expect(seed).toHaveLength(32);
      for (const enc of [seed.toString('hex'), seed.toString('hex').toUpperCase(), seed.toString('base64').replace(/=+$/, ''), seed.toString('base64url')]) {
        expect(all.includes(enc), `${name} seed`).toBe(false);
      }
    }
    // The passphrase is never echoed either.
    expect(all.includes(PASS)).toBe(false);
  });
});
