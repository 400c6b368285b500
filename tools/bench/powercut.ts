/**
 * The full power-cut sweep (issue: device update agent): a cut before, and a tear in the middle of,
 * every flash operation of updates of several image sizes, through the built CLI. Reports N (flash
 * operations per update), replays, outcomes, violations and the time per replay.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { type BenchContext, type Row, type Section, type SectionResult, type Verdict, valueRow } from './common.js';

const SIZES = [65536, 262144, 1048576];

export const powercut: Section = {
  name: 'powercut',
  run(ctx: BenchContext): SectionResult {
    const rows: Row[] = [];
    const verdicts: Verdict[] = [];
    for (const size of SIZES) {
      ctx.log(`powercut: sweep of a ${size}-byte update`);
      const t0 = Date.now();
      const r = spawnSync(process.execPath, [join(ctx.repoRoot, 'dist/host/cli.js'), 'device', 'powercut-sweep', '--image-size', String(size), '--json'], {
        encoding: 'utf8',
        timeout: 1_800_000,
      });
      const seconds = (Date.now() - t0) / 1000;
      if (r.status === null) throw new Error(`sweep of ${size} bytes did not finish`);
      const report = JSON.parse(r.stdout) as { operations: number; runs: number; violations: unknown[]; outcomes: Record<string, number> };
      const label = `${size / 1024} KiB`;
      rows.push(valueRow(`${label}: flash operations per update (N)`, report.operations, 'ops'));
      rows.push(
        valueRow(
          `${label}: replays (cut + torn)`,
          report.runs,
          'runs',
          Object.entries(report.outcomes)
            .map(([k, v]) => `${k} ${v}`)
            .join(', '),
        ),
      );
      rows.push(valueRow(`${label}: violations`, report.violations.length, 'count'));
      rows.push(valueRow(`${label}: time per replay`, (seconds * 1000) / Math.max(1, report.runs), 'ms'));
      verdicts.push({
        name: `sweep ${label}`,
        goal: 1,
        value: report.violations.length === 0 ? 1 : 0,
        pass: report.violations.length === 0 && r.status === 0,
        basis: `${report.violations.length} violations in ${report.runs} replays`,
      });
    }
    return {
      name: 'powercut',
      title: 'power-cut sweep: every flash operation cut and torn',
      rows,
      verdicts,
      notes: [
        'each replay: the update from a confirmed v1 to v2 with the power cut (or the operation torn half-way) at operation k, then boot and finish; checks: a verified image always boots, the counter never regresses',
      ],
    };
  },
};
