import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

describe('npm run demo', () => {
  it('runs the whole sign -> verify -> reject flow and every step behaves as it says', () => {
    const root = join(__dirname, '..');
    const r = spawnSync(process.execPath, [join(root, 'node_modules/tsx/dist/cli.mjs'), join(root, 'tools/demo.ts')], {
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, FWSEAL_PASSPHRASE: '' },
    });
    expect(r.status, `${r.stderr}\n--- stdout (last 4000 characters) ---\n${r.stdout.slice(-4000)}`).toBe(0);
    expect(r.stdout).toMatch(/All \d+ steps behaved as described/);
    for (const code of ['THRESHOLD_NOT_MET', 'CHUNK_DIGEST_MISMATCH', 'ROLLBACK', 'WRONG_DEVICE_CLASS', 'REVOKED_KEY'])
      expect(r.stdout).toContain(`REJECTED ${code}`);
    // The key compromise drill (steps 16-18): list 2 published, the 1.6.0 rollout restarted, the whole fleet enforcing it.
    expect(r.stdout).toMatch(/done: revocation list version 2; \d+ campaign\(s\) halted, 1 restarted; 6\/6 online devices enforce it/);
  });
});
