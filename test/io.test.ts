/**
 * host/io.ts writes (SPEC.md §14 H5–H7): a random temporary name opened O_CREAT|O_EXCL|O_NOFOLLOW,
 * fsync, rename (or link for "create, never replace"), folder fsync; nothing is written through a
 * planted symlink, and no temporary file survives a failure. Codes are asserted, never messages.
 */
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { FwsealError } from '../host/errors.js';
import { writeFileAtomic, writeSecretFile } from '../host/io.js';
import { generateKey } from '../host/keys.js';
import { type CodeName } from '../shared/codes.js';
import { encodeEnvelope } from '../shared/cose.js';
import { encodeManifest } from '../shared/manifest.js';
import { runCli } from './support/cli-run.js';
import { makeManifest } from './support/fixtures.js';

/** When set, node:crypto's randomBytes answers these bytes: the "random" temporary name becomes known. */
const fixedRandom: { bytes: Buffer | null } = { bytes: null };
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  const randomBytes = ((n: number, ...rest: unknown[]) =>
    fixedRandom.bytes && rest.length === 0
      ? Buffer.from(fixedRandom.bytes.subarray(0, n))
      : (real.randomBytes as (...a: unknown[]) => Buffer)(n, ...rest)) as typeof real.randomBytes;
  return { ...real, randomBytes, default: { ...real, randomBytes } };
});

const PASS = 'io test passphrase';
let dir: string;
let n = 0;
function fresh(): string {
  const d = join(dir, `t${++n}`);
  mkdirSync(d);
  return d;
}

function expectCode(f: () => unknown, name: CodeName): void {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FwsealError);
    expect((e as FwsealError).codeName).toBe(name);
    return;
  }
  throw new Error(`expected ${name}, nothing was thrown`);
}

/** The name the old writer used: predictable from the target and the process id. */
const oldTempName = (folder: string, base: string) => join(folder, `.${base}.${process.pid}.tmp`);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fwseal-io-test-'));
});

afterAll(() => {
  fixedRandom.bytes = null;
  rmSync(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('a symlink planted at the old predictable temporary name is not followed; its target is untouched', () => {
    const d = fresh();
    const victim = join(d, 'victim.txt');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, oldTempName(d, 'out.bin'));
    writeFileAtomic(join(d, 'out.bin'), 'new contents');
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    expect(readFileSync(join(d, 'out.bin'), 'utf8')).toBe('new contents');
    expect(lstatSync(join(d, 'out.bin')).isSymbolicLink()).toBe(false);
  });

  it('a symlink planted at the (known) random temporary name makes the write fail with IO; the link target, the target and the link stay as they were', () => {
    const d = fresh();
    const victim = join(d, 'victim.txt');
    writeFileSync(victim, 'precious');
    writeFileSync(join(d, 'out.bin'), 'old contents');
    fixedRandom.bytes = Buffer.alloc(8, 0xab);
    try {
      const planted = join(d, `.out.bin.${'ab'.repeat(8)}.tmp`);
      symlinkSync(victim, planted);
      expectCode(() => writeFileAtomic(join(d, 'out.bin'), 'new contents'), 'IO');
      expect(readFileSync(victim, 'utf8')).toBe('precious');
      expect(readFileSync(join(d, 'out.bin'), 'utf8')).toBe('old contents');
      // Not ours, so not removed either.
      expect(readlinkSync(planted)).toBe(victim);
      // A dangling symlink there is refused the same way (no file is created at its target).
      rmSync(planted);
      symlinkSync(join(d, 'created-through-link'), planted);
      expectCode(() => writeFileAtomic(join(d, 'out.bin'), 'x'), 'IO');
      expect(existsSync(join(d, 'created-through-link'))).toBe(false);
    } finally {
      fixedRandom.bytes = null;
    }
  });

  it('with real randomness the temporary name differs from write to write: symlinks planted at earlier names are never met', () => {
    const d = fresh();
    const victim = join(d, 'victim.txt');
    writeFileSync(victim, 'precious');
    for (let i = 0; i < 8; i++) {
      const planted = join(d, `.a.${Buffer.alloc(8, i).toString('hex')}.tmp`);
      symlinkSync(victim, planted);
      writeFileAtomic(join(d, 'a'), String(i));
      expect(readFileSync(join(d, 'a'), 'utf8')).toBe(String(i));
    }
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    // Only the planted links and the target: no temporary file of ours is left.
    expect(
      readdirSync(d)
        .filter((f) => !lstatSync(join(d, f)).isSymbolicLink())
        .sort(),
    ).toEqual(['a', 'victim.txt']);
  });

  it('a target that is a symlink is replaced by the new file; the file it pointed to is untouched', () => {
    const d = fresh();
    const victim = join(d, 'victim.txt');
    writeFileSync(victim, 'precious');
    symlinkSync(victim, join(d, 'out.bin'));
    writeFileAtomic(join(d, 'out.bin'), 'new');
    expect(lstatSync(join(d, 'out.bin')).isSymbolicLink()).toBe(false);
    expect(readFileSync(join(d, 'out.bin'), 'utf8')).toBe('new');
    expect(readFileSync(victim, 'utf8')).toBe('precious');
  });

  it('a folder that cannot hold the file is IO; nothing is left behind', () => {
    const d = fresh();
    writeFileSync(join(d, 'plain-file'), 'x');
    expectCode(() => writeFileAtomic(join(d, 'plain-file', 'out.bin'), 'x'), 'IO');
    expectCode(() => writeFileAtomic(join(d, 'missing', 'out.bin'), 'x'), 'IO');
    expect(readdirSync(d)).toEqual(['plain-file']);
  });

  it('a failed rename (the target is a non-empty folder) is IO and removes the temporary file', () => {
    const d = fresh();
    mkdirSync(join(d, 'out.bin'));
    writeFileSync(join(d, 'out.bin', 'inside'), 'x');
    expectCode(() => writeFileAtomic(join(d, 'out.bin'), 'data'), 'IO');
    expect(readdirSync(d)).toEqual(['out.bin']);
  });

  it('replace: false refuses any existing name (a file, a dangling symlink) with IO and leaves it as it was', () => {
    const d = fresh();
    writeFileSync(join(d, 'taken'), 'old');
    expectCode(() => writeFileAtomic(join(d, 'taken'), 'new', { replace: false }), 'IO');
    expect(readFileSync(join(d, 'taken'), 'utf8')).toBe('old');
    symlinkSync(join(d, 'nowhere'), join(d, 'dangling'));
    expectCode(() => writeSecretFile(join(d, 'dangling'), 'secret'), 'IO');
    expect(existsSync(join(d, 'nowhere'))).toBe(false);
    expect(readdirSync(d).sort()).toEqual(['dangling', 'taken']);
  });

  it('secret files are 0600 whatever the umask, and complete', () => {
    const d = fresh();
    const old = process.umask(0);
    try {
      writeSecretFile(join(d, 's.key'), 'secret text');
    } finally {
      process.umask(old);
    }
    expect(statSync(join(d, 's.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(d, 's.key'), 'utf8')).toBe('secret text');
    expect(readdirSync(d)).toEqual(['s.key']);
  });
});

describe('callers', () => {
  it('keygen refuses when NAME.pub exists (IO), before asking for a passphrase, and creates no NAME.key', () => {
    const d = fresh();
    writeFileSync(join(d, 'K.pub'), "someone else's public key");
    let asked = 0;
    expectCode(
      () =>
        generateKey('K', d, () => {
          asked++;
          return PASS;
        }),
      'IO',
    );
    expect(asked).toBe(0);
    expect(readdirSync(d)).toEqual(['K.pub']);
    expect(readFileSync(join(d, 'K.pub'), 'utf8')).toBe("someone else's public key");
  });

  it('keygen does not write its private key through a symlink planted at NAME.key', () => {
    const d = fresh();
    symlinkSync(join(d, 'stolen'), join(d, 'K.key'));
    expectCode(() => generateKey('K', d, () => PASS), 'IO');
    expect(existsSync(join(d, 'stolen'))).toBe(false);
  });

  it('fwseal pack does not write through a symlink planted at the old temporary name of its output', async () => {
    const d = fresh();
    const victim = join(d, 'victim.txt');
    writeFileSync(victim, 'precious');
    writeFileSync(join(d, 'image.bin'), Buffer.alloc(5000, 7));
    symlinkSync(victim, oldTempName(d, 'm.cose'));
    symlinkSync(victim, oldTempName(d, 'm.digests'));
    const r = await runCli([
      'pack',
      join(d, 'image.bin'),
      '--device-class',
      'acme-gw',
      '--version',
      '1.0.0',
      '--counter',
      '1',
      '--created',
      '1764000000',
      '--out',
      join(d, 'm.cose'),
    ]);
    expect(r.status, r.err).toBe(0);
    expect(readFileSync(victim, 'utf8')).toBe('precious');
    const expected = encodeEnvelope({
      payload: encodeManifest(makeManifest(new Uint8Array(5000).fill(7), { version: '1.0.0', securityCounter: 1 })),
      signatures: [],
    });
    expect(new Uint8Array(readFileSync(join(d, 'm.cose')))).toEqual(expected);
  });
});
