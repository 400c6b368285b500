/**
 * A SoftHSM2 (Debian `softhsm2`) with its own token folder in a temp dir, for the PKCS#11 tests
 * (SPEC.md §15.2): SOFTHSM2_CONF points at it for this test process, tokens are initialised with
 * softhsm2-util, and close() restores the environment and removes the folder.
 * The module reads SOFTHSM2_CONF in C_Initialize: make the world before the first pkcs11: call.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export type SoftHsmToken = { readonly label: string; readonly pin: string; readonly soPin: string };

export type SoftHsm = {
  readonly dir: string;
  readonly module: string;
  /** Run softhsm2-util with this world's configuration; throws with its stderr when it fails. */
  util(...args: string[]): string;
  close(): void;
};

export function makeSoftHsm(tokens: readonly SoftHsmToken[]): SoftHsm {
  const dir = mkdtempSync(join(tmpdir(), 'fwseal-softhsm-'));
  mkdirSync(join(dir, 'tokens'));
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${join(dir, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  const before = process.env.SOFTHSM2_CONF;
  process.env.SOFTHSM2_CONF = conf;
  const util = (...args: string[]): string => {
    const r = spawnSync('softhsm2-util', args, { env: { ...process.env, SOFTHSM2_CONF: conf }, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`softhsm2-util ${args[0]} failed: ${r.error?.message ?? r.stderr}`);
    return r.stdout;
  };
  for (const t of tokens) util('--init-token', '--free', '--label', t.label, '--pin', t.pin, '--so-pin', t.soPin);
  return {
    dir,
    module: SOFTHSM_MODULE,
    util,
    close: () => {
      if (before === undefined) delete process.env.SOFTHSM2_CONF;
      else process.env.SOFTHSM2_CONF = before;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
