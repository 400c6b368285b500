/** shared/SPEC.md stays in step with the code: its code and limit tables equal the code's. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';

const spec = readFileSync(join(__dirname, '../shared/SPEC.md'), 'utf8');
const section = (title: string) => spec.slice(spec.indexOf(title), spec.indexOf('\n## ', spec.indexOf(title) + 1) >>> 0);

describe('SPEC.md', () => {
  it('lists exactly the error codes of shared/codes.ts', () => {
    const rows = [...section('## 9. Error codes').matchAll(/^\| (\d+) \| ([A-Z][A-Z0-9_]*) \|/gm)].map((m) => [m[2], Number(m[1])]);
    expect(Object.fromEntries(rows)).toEqual({ ...CODES });
  });

  it('lists exactly the limits of shared/limits.ts', () => {
    const rows = [...section('## 8. Limits').matchAll(/^\| `(\w+)` \| (\d+) \|/gm)].map((m) => [m[1], Number(m[2])]);
    expect(Object.fromEntries(rows)).toEqual({ ...LIMITS });
  });

  it('defines every verification step the code cites', () => {
    const cited = new Set<string>();
    for (const file of ['device/verify/manifest.ts', 'device/verify/trust.ts', 'device/verify/image.ts', 'shared/cose.ts']) {
      for (const m of readFileSync(join(__dirname, '..', file), 'utf8').matchAll(/\b([VTRIE]\d)\b/g)) cited.add(m[1]);
    }
    expect(cited.size).toBeGreaterThan(20);
    for (const step of cited) expect(spec, step).toContain(`**${step}**`);
  });
});
