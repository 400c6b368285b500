/**
 * Code cites SPEC.md, and the citations are right (issue 12): every step a comment names (V7, T3,
 * R5, I2, E4, H8) is defined in the section that defines steps of its letter; a comment that names a
 * step above the check it introduces names the step whose text lists the code that check fails with;
 * every `SPEC.md §N` exists; a file that a SPEC section heading names cites that section; every path
 * a heading names exists; no source cites a document the repository does not have.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..');
const spec = readFileSync(join(ROOT, 'shared/SPEC.md'), 'utf8');
/** Where each kind of step is defined. */
const STEP_SECTIONS: Record<string, string> = { E: '## 3. ', T: '### 6.1 ', R: '### 6.2 ', V: '### 6.3 ', I: '### 6.4 ', H: '## 14. ' };
const STEP = /\b([ETRVIH])(\d{1,2})\b/g;

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const p = join(dir, name);
    if (statSync(join(ROOT, p)).isDirectory()) out.push(...sources(p));
    else if (/\.(ts|mjs)$/.test(p) && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}
const SRC = ['shared', 'device', 'host', 'hil', 'tools'].flatMap(sources);
const text = (f: string) => readFileSync(join(ROOT, f), 'utf8');

/** The body of the section starting at `title` (up to the next heading of any level). */
function sectionBody(title: string): string {
  const at = spec.indexOf(`\n${title}`);
  if (at < 0) return '';
  const next = spec.slice(at + 1).search(/\n#{2,3} /);
  return next < 0 ? spec.slice(at) : spec.slice(at, at + 1 + next);
}

/** The definition of step `id`: from `**id**` to the next step definition or heading. */
function stepText(id: string): string | null {
  const at = spec.indexOf(`**${id}**`);
  if (at < 0) return null;
  const rest = spec.slice(at + id.length + 4);
  const end = rest.search(/\*\*[ETRVIH]\d{1,2}\*\*|\n#{2,3} /);
  return end < 0 ? rest : rest.slice(0, end);
}

/** Step citations in comments (a `//` line or a block-comment line), with their line numbers. */
function citedSteps(f: string): { id: string; line: number; comment: string }[] {
  const out: { id: string; line: number; comment: string }[] = [];
  text(f)
    .split('\n')
    .forEach((l, i) => {
      const c = l.includes('//') ? l.slice(l.indexOf('//')) : /^\s*\*/.test(l) ? l : '';
      if (!c || /\bRFC\b|FIPS|V8 CPU|\bV8\b profile/.test(c)) return;
      for (const m of c.matchAll(STEP)) out.push({ id: m[1] + m[2], line: i + 1, comment: c });
    });
  return out;
}

describe('SPEC.md citations in code', () => {
  it('every cited step is defined once, in the section for its letter', () => {
    const ids = new Set(SRC.flatMap((f) => citedSteps(f).map((c) => c.id)));
    expect(ids.size).toBeGreaterThan(30);
    for (const id of ids) {
      expect(spec.split(`**${id}**`).length - 1, `${id} defined once`).toBe(1);
      expect(sectionBody(STEP_SECTIONS[id[0]]!), `${id} in ${STEP_SECTIONS[id[0]]}`).toContain(`**${id}**`);
    }
  });

  it('a step comment above a check names the step whose definition lists the code it fails with', () => {
    let checked = 0;
    for (const f of SRC) {
      const lines = text(f).split('\n');
      for (const c of citedSteps(f)) {
        // "// V8: it is for this kind of device." then, within the next lines, fail('WRONG_DEVICE_CLASS', ...)
        if (!/^\s*\/\/ [ETRVIH]\d{1,2}\b/.test(lines[c.line - 1]!)) continue;
        // The check the comment introduces: up to the next step comment or error handler.
        const next = lines.slice(c.line, c.line + 6);
        const stop = next.findIndex((l) => /^\s*\/\/ [ETRVIH]\d{1,2}\b|\bcatch\b/.test(l));
        const failed = /\bfail\('([A-Z_]+)'/.exec((stop < 0 ? next : next.slice(0, stop)).join('\n'));
        if (!failed) continue;
        checked++;
        expect(stepText(c.id), `${f}:${c.line} cites ${c.id}, then fails with ${failed[1]}`).toContain(failed[1]);
      }
    }
    expect(checked).toBeGreaterThanOrEqual(6);
  });

  it('every "SPEC.md §N" (and "SPEC §N") names a section that exists', () => {
    const heads = new Set([...spec.matchAll(/^#{2,3} (\d+(?:\.\d+)?)\.? /gm)].map((m) => m[1]));
    let checked = 0;
    for (const f of [...SRC, ...sources('test')]) {
      text(f)
        .split('\n')
        .forEach((l, i) => {
          const at = l.search(/\bSPEC(\.md)? §/);
          if (at < 0) return;
          for (const m of l.slice(at).matchAll(/§(\d+(?:\.\d+)?)/g)) {
            checked++;
            expect(heads.has(m[1]!), `${f}:${i + 1} cites SPEC §${m[1]}`).toBe(true);
          }
        });
    }
    expect(checked).toBeGreaterThan(50);
  });

  it('every path a section heading names exists, and a file named by a heading cites that section', () => {
    for (const m of spec.matchAll(/^#{2,3} (\d+(?:\.\d+)?)\.? [^\n]*$/gm)) {
      const number = m[1]!;
      for (const p of m[0].matchAll(/`((?:shared|device|host|hil|tools|test)\/[\w./-]*)`/g)) {
        const path = p[1]!;
        expect(existsSync(join(ROOT, path)), `§${number} names ${path}`).toBe(true);
        if (!path.endsWith('.ts')) continue;
        expect(text(path), `${path} is where §${number} lives: it cites it`).toMatch(new RegExp(`§${number.replace('.', '\\.')}\\b`));
      }
    }
  });

  it('sources cite no document the repository does not have', () => {
    for (const f of [...SRC, ...sources('test')]) {
      for (const m of text(f).matchAll(/\b([A-Z][A-Z_-]+\.md)\b/g)) {
        const doc = m[1]!;
        const candidates = [join(ROOT, doc), join(ROOT, 'shared', doc), join(ROOT, relative(ROOT, join(ROOT, f, '..')), doc)];
        expect(
          candidates.some((c) => existsSync(c)),
          `${f} cites ${doc}`,
        ).toBe(true);
      }
    }
  });
});
