/**
 * A folder of real key files (keygen), a trust bundle and an unsigned manifest made with the CLI
 * in-process, for tests of sign / verify / file types. The passphrase comes from FWSEAL_PASSPHRASE,
 * set for the test file's process only.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { generateKey } from '../../host/keys.js';
import { toHex } from '../../shared/bytes.js';
import { CODES, type CodeName } from '../../shared/codes.js';
import { type CliRun, runCli } from './cli-run.js';
import { detBytes } from './fixtures.js';

export const PASS = 'cli world passphrase';
export const CREATED = '1764000000';

export type CliWorld = {
  readonly dir: string;
  readonly kids: Record<string, string>;
  path(name: string): string;
  bytes(name: string): Uint8Array;
  write(name: string, data: Uint8Array | string): string;
  /** `fwseal ARGS`, run in the world's folder (the test process changes into it: pool 'forks'). */
  run(...args: string[]): Promise<CliRun>;
  close(): void;
};

/** Keys `names`, then trust.cbor (root A,B 2-of-2 unless given) and m.cose (unsigned) when asked. */
export async function makeCliWorld(names: readonly string[], opts: { trust?: string[]; image?: boolean } = {}): Promise<CliWorld> {
  process.env.FWSEAL_PASSPHRASE = PASS;
  const dir = mkdtempSync(join(tmpdir(), 'fwseal-cli-world-'));
  const kids: Record<string, string> = {};
  for (const name of names) kids[name] = toHex(generateKey(name, dir, () => PASS).keyId);
  const path = (name: string) => join(dir, name);
  const home = process.cwd();
  process.chdir(dir);
  const world: CliWorld = {
    dir,
    kids,
    path,
    bytes: (name) => new Uint8Array(readFileSync(path(name))),
    write: (name, data) => {
      writeFileSync(path(name), data);
      return path(name);
    },
    run: (...args) => runCli(args),
    close: () => {
      process.chdir(home);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  if (opts.trust) expectOk(await world.run('trust', 'init', ...opts.trust, '--out', 'trust.cbor'));
  if (opts.image) {
    world.write('image.bin', detBytes(20_000, 'cli world image'));
    expectOk(
      await world.run(
        'pack',
        'image.bin',
        '--device-class',
        'acme-gw',
        '--version',
        '1.0.0',
        '--counter',
        '1',
        '--created',
        CREATED,
        '--chunk-size',
        '4096',
        '--out',
        'm.cose',
      ),
    );
  }
  return world;
}

export function expectOk(r: CliRun): void {
  expect(r.status, r.out + r.err).toBe(0);
}

/** Exit 1 and the rejection line names `code` with its number. */
export function expectRejected(r: CliRun, code: CodeName): void {
  expect(r.status, r.out + r.err).toBe(1);
  expect(r.out + r.err).toMatch(new RegExp(`\\b${code}\\b \\(code ${CODES[code]}\\)`));
}

/** Exit 2, one stderr line naming `code` with its number; stdout empty, or with --json only the error object (SPEC.md §9). */
export function expectUsage(r: CliRun, code: CodeName = 'USAGE'): void {
  expect(r.status, r.out + r.err).toBe(2);
  if (r.out !== '') expect(JSON.parse(r.out), r.out).toEqual({ ok: false, code: CODES[code], error: code, detail: expect.any(String), exitStatus: 2 });
  const lines = r.err.split('\n').filter((l) => l.length > 0);
  expect(lines, r.err).toHaveLength(1);
  expect(lines[0]).toMatch(new RegExp(`\\b${code} \\(code ${CODES[code]}\\)`));
}
