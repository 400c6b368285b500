/** `fwseal device provision | run | powercut-sweep` through the built binary (flash as a file). */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeDigestTable } from '../host/digests.js';
import { concatBytes } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { detBytes, imageTree, makeManifest, makeManifestEnvelope, makeRevocations, standardWorld } from './support/fixtures.js';

const cli = join(__dirname, '..', 'dist', 'host', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'fwseal-device-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const run = (...args: string[]) => {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  return {
    status: r.status,
    out: r.stdout,
    json: () => JSON.parse(r.stdout) as { ok: boolean; code: number; state: { counter: number; activeSlot: number; pending: boolean } },
  };
};

const w = standardWorld();
const release = (name: string, version: string, counter: number, size: number) => {
  const image = detBytes(size, name);
  writeFileSync(join(dir, `${name}.bin`), image);
  writeFileSync(join(dir, `${name}.cose`), makeManifestEnvelope(makeManifest(image, { version, securityCounter: counter }), [w.R1, w.R2]));
  writeFileSync(join(dir, `${name}.digests`), encodeDigestTable(concatBytes(...imageTree(image, 4096).leaves)));
  return image;
};
writeFileSync(join(dir, 'trust.cbor'), w.trust);
release('v1', '1.0.0', 7, 70_000);
release('v2', '2.0.0', 8, 90_000);
const v3 = release('v3', '3.0.0', 9, 50_000);
const bad = v3.slice();
bad[30_000] ^= 1;
writeFileSync(join(dir, 'v3-bad.bin'), bad);

describe('fwseal device', () => {
  it('provisions, installs an update on trial, raises the counter only on confirm, refuses a downgrade and a tampered image', () => {
    const base = ['--state', 'dev', '--trust', 'trust.cbor'];
    expect(run('device', 'provision', ...base, '--device-class', 'acme-gw', '--manifest', 'v1.cose', '--image', 'v1.bin').status).toBe(0);

    const installed = run('device', 'run', ...base, '--update', 'v2.cose', '--image', 'v2.bin', '--json');
    expect(installed.status).toBe(0);
    expect(installed.json().state).toMatchObject({ counter: 7, activeSlot: 0, pending: true });

    const confirmed = run('device', 'run', ...base, '--update', 'v2.cose', '--image', 'v2.bin', '--confirm', '--json');
    expect(confirmed.status).toBe(0);
    expect(confirmed.json().state).toMatchObject({ counter: 8, activeSlot: 1, pending: false });

    const downgrade = run('device', 'run', ...base, '--update', 'v1.cose', '--image', 'v1.bin', '--json');
    expect(downgrade.status).toBe(1);
    expect(downgrade.json().code).toBe(CODES.ROLLBACK);

    const tampered = run('device', 'run', ...base, '--update', 'v3.cose', '--image', 'v3-bad.bin', '--digests', 'v3.digests', '--json');
    expect(tampered.status).toBe(1);
    expect(tampered.json().code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
    expect(tampered.json().state).toMatchObject({ counter: 8, activeSlot: 1 });

    // The good image resumes the interrupted download and installs.
    const resumed = run('device', 'run', ...base, '--update', 'v3.cose', '--image', 'v3.bin', '--confirm', '--json');
    expect(resumed.status).toBe(0);
    const again = run('device', 'run', ...base, '--update', 'v3.cose', '--image', 'v3.bin', '--confirm', '--json');
    expect(again.json().state).toMatchObject({ counter: 9, activeSlot: 0, pending: false });
  });

  it('stores a revocation list on the device and then refuses the revoked signer; an older list is refused', () => {
    const base = ['--state', 'dev2', '--trust', 'trust.cbor'];
    // The factory image is signed by R1 + R3, so it stays bootable once R2 is revoked (SPEC §11.4: no grandfathering).
    writeFileSync(join(dir, 'v1b.cose'), makeManifestEnvelope(makeManifest(detBytes(70_000, 'v1'), { version: '1.0.0', securityCounter: 7 }), [w.R1, w.R3]));
    expect(run('device', 'provision', ...base, '--device-class', 'acme-gw', '--manifest', 'v1b.cose', '--image', 'v1.bin').status).toBe(0);
    writeFileSync(join(dir, 'rl2.cbor'), makeRevocations({ version: 2, keyIds: [w.R2.keyId], signers: [w.A, w.B] }));
    writeFileSync(join(dir, 'rl1.cbor'), makeRevocations({ version: 1, keyIds: [], signers: [w.A, w.B] }));
    const revoked = run('device', 'run', ...base, '--revocations', 'rl2.cbor', '--update', 'v2.cose', '--image', 'v2.bin', '--json');
    expect(revoked.status).toBe(1);
    expect(revoked.json().code).toBe(CODES.REVOKED_KEY);
    const older = run('device', 'run', ...base, '--revocations', 'rl1.cbor', '--update', 'v2.cose', '--image', 'v2.bin', '--json');
    expect(older.json().code).toBe(CODES.REVOCATION_ROLLBACK);
  });

  it('refuses to provision over an existing device, and to run without one', () => {
    expect(
      run('device', 'provision', '--state', 'dev', '--trust', 'trust.cbor', '--device-class', 'acme-gw', '--manifest', 'v1.cose', '--image', 'v1.bin').status,
    ).toBe(2);
    expect(run('device', 'run', '--state', 'nothing', '--trust', 'trust.cbor', '--update', 'v1.cose', '--image', 'v1.bin').status).toBe(2);
  });

  it('powercut-sweep: every cut and tear of a 64 KB update leaves a bootable, verified device', () => {
    const r = spawnSync(process.execPath, [cli, 'device', 'powercut-sweep', '--image-size', '65536', '--json'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(0);
    const report = JSON.parse(r.stdout) as { operations: number; runs: number; violations: unknown[]; outcomes: Record<string, number> };
    expect(report.violations).toEqual([]);
    expect(report.operations).toBeGreaterThan(32);
    expect(report.runs).toBe(2 * report.operations);
    expect(report.outcomes.completed).toBe(report.runs);
  });
});
