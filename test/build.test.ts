import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

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
