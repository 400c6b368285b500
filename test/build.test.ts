import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { CODES, DEVICE_CODES } from '../shared/codes.js';

const root = join(__dirname, '..');
const out = mkdtempSync(join(tmpdir(), 'fwseal-build-'));
afterAll(() => rmSync(out, { recursive: true, force: true }));
const buildDevice = (entry: string) =>
  spawnSync(process.execPath, ['tools/build-device.mjs', '--entry', entry, '--outdir', out], { cwd: root, encoding: 'utf8' });

describe('the device bundle build enforces the dependency direction', () => {
  it('builds the real verifier: one file, no imports', () => {
    const r = buildDevice('device/bundle.ts');
    expect(r.status, r.stderr).toBe(0);
    const src = readFileSync(join(out, 'fwseal-verifier.js'), 'utf8');
    expect(src).toMatch(/^("use strict";)?var fwsealVerifier=/);
    expect(src).not.toMatch(/\bimport\b\s*[{*"']/);
  });

  it("the bundle's CODES is the device's table (0–5xx) exactly; the host's has every code (SPEC.md §10)", () => {
    const r = buildDevice('device/bundle.ts');
    expect(r.status, r.stderr).toBe(0);
    const sandbox: { fwsealVerifier?: { CODES: Record<string, number>; codeName(c: number): string } } = {};
    runInNewContext(`${readFileSync(join(out, 'fwseal-verifier.js'), 'utf8')};this.fwsealVerifier=fwsealVerifier;`, sandbox);
    const bundled = sandbox.fwsealVerifier!;
    expect({ ...bundled.CODES }).toEqual({ ...DEVICE_CODES });
    expect(Math.max(...Object.values(bundled.CODES))).toBeLessThan(600);
    expect(bundled.codeName(CODES.LOG_FORK)).toBe('LOG_FORK');
    expect(bundled.codeName(CODES.SERVER_BUSY)).toBe(`UNKNOWN_${CODES.SERVER_BUSY}`);
    expect(Object.keys(CODES).length).toBeGreaterThan(Object.keys(DEVICE_CODES).length);
    expect(Object.entries(DEVICE_CODES).every(([k, v]) => CODES[k as keyof typeof CODES] === v)).toBe(true);
  });

  it('fails when device code imports a Node built-in', () => {
    const r = buildDevice('test/support/layering/imports-node.ts');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("must not import the Node built-in 'node:fs'");
  });

  it('fails when device code reaches into host/', () => {
    const r = buildDevice('test/support/layering/imports-host.ts');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/must not import/);
  });

  it('the CLI is built', () => {
    expect(existsSync(join(root, 'dist/host/cli.js'))).toBe(true);
  });
});
