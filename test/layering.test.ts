/**
 * ARCHITECTURE.md dependency direction, checked on the sources (the device bundle build checks it again
 * while bundling): shared <- device <- host; hil -> host, device, shared; nothing imports tools/.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(__dirname, '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(join(root, dir));
  } catch {
    return out; // a layer that has no code yet
  }
  for (const name of names) {
    const p = join(dir, name);
    if (statSync(join(root, p)).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

function imports(file: string): string[] {
  const src = readFileSync(join(root, file), 'utf8');
  return [...src.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g), ...src.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)].map(
    (m) => m[1],
  );
}

function topFolder(file: string, spec: string): string {
  return relative(root, resolve(root, dirname(file), spec)).split('/')[0];
}

describe('dependency direction', () => {
  it('shared/ imports nothing but shared/', () => {
    for (const f of sources('shared')) {
      for (const spec of imports(f)) {
        expect(spec.startsWith('.'), `${f} imports ${spec}`).toBe(true);
        expect(topFolder(f, spec), `${f} imports ${spec}`).toBe('shared');
      }
    }
  });

  it('device/ (outside device/node/) imports only device/, shared/ and @noble/*', () => {
    for (const f of sources('device').filter((f) => !f.startsWith('device/node/'))) {
      for (const spec of imports(f)) {
        if (spec.startsWith('.')) {
          expect(['device', 'shared'], `${f} imports ${spec}`).toContain(topFolder(f, spec));
          expect(relative(root, resolve(root, dirname(f), spec)).startsWith('device/node/'), `${f} imports ${spec}`).toBe(false);
        } else {
          expect(spec.startsWith('@noble/'), `${f} imports ${spec}`).toBe(true);
        }
      }
    }
  });

  it('host/ does not import hil/ or tools/; nothing imports tools/', () => {
    for (const dir of ['host', 'device', 'shared', 'hil', 'test']) {
      for (const f of sources(dir)) {
        for (const spec of imports(f).filter((s) => s.startsWith('.'))) {
          expect(topFolder(f, spec), `${f} imports ${spec}`).not.toBe('tools');
          if (dir === 'host') expect(topFolder(f, spec), `${f} imports ${spec}`).not.toBe('hil');
        }
      }
    }
  });

  it('the checker sees imports (it can fail)', () => {
    expect(imports('device/verify/manifest.ts')).toContain('../../shared/codes.js');
  });
});
