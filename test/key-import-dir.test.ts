/**
 * `fwseal key import --dir DIR` creates DIR as keygen does (issue 17 item 4): with its missing
 * parents, mode 0700, once the key is known to be importable; a refused import leaves no folder.
 */
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli-run.js';
import { expectOk, expectUsage, PASS } from './support/cli-world.js';

let base: string;
let privatePem: string;
let publicPem: string;
let savedPassphrase: string | undefined;

beforeAll(() => {
  base = mkdtempSync(join(tmpdir(), 'fwseal-import-dir-'));
  savedPassphrase = process.env.FWSEAL_PASSPHRASE;
  process.env.FWSEAL_PASSPHRASE = PASS;
  const pair = generateKeyPairSync('ed25519');
  privatePem = join(base, 'private.pem');
  publicPem = join(base, 'public.pem');
  writeFileSync(privatePem, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(publicPem, pair.publicKey.export({ type: 'spki', format: 'pem' }));
});

afterAll(() => {
  process.env.FWSEAL_PASSPHRASE = savedPassphrase;
  rmSync(base, { recursive: true, force: true });
});

describe('key import --dir', () => {
  it('creates the folder of a private key and its missing parents, mode 0700', async () => {
    const dir = join(base, 'new', 'keys');
    expectOk(await runCli(['key', 'import', privatePem, '--name', 'I1', '--dir', dir]));
    expect(existsSync(join(dir, 'I1.key'))).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(base, 'new')).mode & 0o777).toBe(0o700);
  });

  it('creates the folder of a public key (NAME.pub only)', async () => {
    const dir = join(base, 'pub-only');
    expectOk(await runCli(['key', 'import', publicPem, '--name', 'I2', '--dir', dir]));
    expect(existsSync(join(dir, 'I2.pub'))).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('uses an existing folder as it is', async () => {
    const dir = join(base, 'new', 'keys');
    expectOk(await runCli(['key', 'import', publicPem, '--name', 'I3', '--dir', dir]));
    expect(existsSync(join(dir, 'I3.pub'))).toBe(true);
  });

  it('creates nothing when the key cannot be imported (bad name, no passphrase, not a key)', async () => {
    expectUsage(await runCli(['key', 'import', privatePem, '--name', 'bad/name', '--dir', join(base, 'a')]));
    expect(existsSync(join(base, 'a'))).toBe(false);
    expectUsage(await runCli(['key', 'import', join(base, 'missing.pem'), '--name', 'I4', '--dir', join(base, 'b')]), 'IO');
    expect(existsSync(join(base, 'b'))).toBe(false);
    process.env.FWSEAL_PASSPHRASE = '';
    try {
      expectUsage(await runCli(['key', 'import', privatePem, '--name', 'I5', '--dir', join(base, 'c')]), 'NO_PASSPHRASE');
      expect(existsSync(join(base, 'c'))).toBe(false);
    } finally {
      process.env.FWSEAL_PASSPHRASE = PASS;
    }
  });
});
