/** Reports of a HIL run: JUnit XML (one testcase per scenario x device) and a summary table. */
import { type CaseResult } from './runner.js';

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** JUnit XML: one testsuite "fwseal-hil", testcase name "<scenario> [dev N]", classname "hil.<scenario>". */
export function junitXml(results: readonly CaseResult[]): string {
  const failures = results.filter((r) => !r.passed).length;
  const skipped = results.filter((r) => r.skipped !== undefined).length;
  const time = results.reduce((t, r) => t + r.seconds, 0);
  const cases = results.map((r) => {
    const head = `    <testcase classname="hil.${xml(r.scenario)}" name="${xml(`${r.scenario} [dev ${r.device}]`)}" time="${r.seconds.toFixed(3)}"`;
    if (r.skipped !== undefined) return `${head}>\n      <skipped message="${xml(r.skipped)}"/>\n    </testcase>`;
    // What happened on the way: device restarts (resets, power cuts) and each upload attempt.
    const out = `      <system-out>${xml(`end state: ${JSON.stringify(r.actual)}\nrestarts: ${r.restarts}\n${r.uploads.map((u) => `upload attempt ${u.attempt}: ${JSON.stringify(u)}`).join('\n')}`)}</system-out>`;
    if (r.passed) return `${head}>\n${out}\n    </testcase>`;
    const message = r.failures.join('; ');
    const body = `expected: ${JSON.stringify(r.expected)}\nactual:   ${JSON.stringify(r.actual)}\n${r.failures.join('\n')}`;
    return `${head}>\n      <failure message="${xml(message)}" type="mismatch">${xml(body)}</failure>\n${out}\n    </testcase>`;
  });
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites tests="${results.length}" failures="${failures}" skipped="${skipped}" time="${time.toFixed(3)}">\n  <testsuite name="fwseal-hil" tests="${results.length}" failures="${failures}" skipped="${skipped}" time="${time.toFixed(3)}">\n${cases.join('\n')}\n  </testsuite>\n</testsuites>\n`;
}

/** The terminal summary: one row per scenario x device, then totals. */
export function summaryTable(results: readonly CaseResult[]): string {
  const rows = results.map((r) => [
    r.scenario,
    String(r.device),
    r.skipped !== undefined ? 'SKIP' : r.passed ? 'PASS' : 'FAIL',
    r.actual ? String(r.actual.slot) : '-',
    r.actual?.version || '-',
    r.actual ? String(r.actual.counter) : '-',
    r.actual ? String(r.actual.code) : '-',
    r.actual?.phase ?? '-',
    String(r.restarts),
    r.seconds.toFixed(1),
  ]);
  const head = ['scenario', 'dev', 'result', 'slot', 'version', 'counter', 'code', 'phase', 'restarts', 'seconds'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  const passed = results.filter((r) => r.passed && r.skipped === undefined).length;
  const skipped = results.filter((r) => r.skipped !== undefined).length;
  const failed = results.length - passed - skipped;
  const details = results.filter((r) => !r.passed).map((r) => `  ${r.scenario} [dev ${r.device}]: ${r.failures.join('; ')}`);
  return [
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    `${passed} passed, ${failed} failed, ${skipped} skipped`,
    ...details,
    '',
  ].join('\n');
}
