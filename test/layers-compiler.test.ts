/**
 * The layers are compiler facts (ARCHITECTURE.md; tsconfig.json project references): a copy of the
 * sources with one deliberate violation added must fail `tsc -b` with the expected error, in each
 * direction: Node or DOM globals in shared/ or device/, and an import against the dependency
 * direction (shared -> device, device -> host, device/node -> host, host -> hil, hil or test -> tools).
 * The copy without a violation builds.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
let copy: string;

function tscBuild(project: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [TSC, '-b', project], { cwd: copy, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: r.stdout + r.stderr };
}

beforeAll(() => {
  copy = mkdtempSync(join(tmpdir(), 'fwseal-layers-'));
  for (const f of ['tsconfig.json', 'tsconfig.base.json', 'package.json']) cpSync(join(ROOT, f), join(copy, f));
  for (const d of ['shared', 'device', 'host', 'hil', 'test', 'tools']) {
    cpSync(join(ROOT, d), join(copy, d), { recursive: true });
  }
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
  const clean = tscBuild('.');
  expect(clean.status, clean.out).toBe(0);
}, 180_000);

afterAll(() => {
  if (copy) rmSync(copy, { recursive: true, force: true });
});

const VIOLATIONS: readonly { name: string; file: string; source: string; project: string; error: string }[] = [
  {
    name: 'Buffer (Node) in device/agent',
    file: 'device/agent/zz-violation.ts',
    source: "export const x = Buffer.from('a');\n",
    project: 'device',
    error: 'TS2591',
  },
  {
    name: 'setTimeout (a host timer) in device/',
    file: 'device/zz-violation.ts',
    source: 'export const t = setTimeout(() => 0, 1);\n',
    project: 'device',
    error: 'TS2304',
  },
  { name: 'the DOM in device/', file: 'device/zz-violation.ts', source: 'export const d = document.title;\n', project: 'device', error: 'TS2584' },
  { name: 'TextEncoder in shared/', file: 'shared/zz-violation.ts', source: 'export const e = new TextEncoder();\n', project: 'shared', error: 'TS2304' },
  {
    name: 'shared/ importing device/',
    file: 'shared/zz-violation.ts',
    source: "export { createVerifier } from '../device/index.js';\n",
    project: 'shared',
    error: 'TS6307',
  },
  {
    name: 'device/ importing host/',
    file: 'device/zz-violation.ts',
    source: "export { writeFileAtomic } from '../host/io.js';\n",
    project: 'device',
    error: 'TS6307',
  },
  {
    name: 'device/ importing a Node module',
    file: 'device/zz-violation.ts',
    source: "export { readFileSync } from 'node:fs';\n",
    project: 'device',
    error: 'TS2307',
  },
  {
    name: 'device/node/ importing host/',
    file: 'device/node/zz-violation.ts',
    source: "export { nodeSha256 } from '../../host/hash.js';\n",
    project: 'device/node',
    error: 'TS6307',
  },
  { name: 'host/ importing hil/', file: 'host/zz-violation.ts', source: "export { hilKey } from '../hil/world.js';\n", project: 'host', error: 'TS6307' },
  { name: 'hil/ importing tools/', file: 'hil/zz-violation.ts', source: "export * from '../tools/fuzz-smp.js';\n", project: 'hil', error: 'TS6307' },
  { name: 'test/ importing tools/', file: 'test/zz-violation.ts', source: "export * from '../tools/fuzz-smp.js';\n", project: 'test', error: 'TS6307' },
];

describe('a deliberate layering violation fails tsc -b', () => {
  it.each(VIOLATIONS)(
    '$name: $error',
    ({ file, source, project, error }) => {
      const path = join(copy, file);
      writeFileSync(path, source);
      try {
        const r = tscBuild(project);
        expect(r.status, r.out).not.toBe(0);
        expect(r.out).toContain(error);
        expect(r.out).toContain('zz-violation.ts');
      } finally {
        unlinkSync(path);
      }
    },
    120_000,
  );
});
