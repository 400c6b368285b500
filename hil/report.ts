/**
 * Reports of a HIL run: the line printed as each case finishes, JUnit XML (one testcase per scenario
 * x device, the Ant/Jenkins format: test/vectors/junit/junit-10.xsd validates it) and the summary table.
 */
import { type CaseResult } from './runner.js';

/** The suite around the cases: when it started, where, its wall time (cases run in parallel), and settings. */
export type SuiteInfo = {
  readonly started: Date;
  readonly hostname: string;
  /** Wall time of the whole run in seconds (not the sum of the cases: slots run in parallel). */
  readonly seconds: number;
  /** Each case's log excerpt (harness and device lines), by `caseKey`. */
  readonly logs?: ReadonlyMap<string, string>;
  readonly properties?: Readonly<Record<string, string>>;
};

export const caseKey = (r: Pick<CaseResult, 'scenario' | 'device'>): string => `${r.scenario} [dev ${r.device}]`;

/** A harness error (the rig, not the device, went wrong) is a JUnit `error`; a mismatch is a `failure`. */
export const isError = (r: CaseResult): boolean => !r.passed && r.failures.some((f) => f.startsWith('harness:'));

// XML 1.0 has no place for other control characters (a device log can hold any byte): they are dropped.
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are what is removed
const NOT_XML = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
const xml = (s: string) => s.replace(NOT_XML, '').replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** `timestamp` as Ant writes it: ISO 8601 without a zone (UTC here), whole seconds. */
const antTimestamp = (d: Date) => d.toISOString().slice(0, 19);

/** One line per finished case, on stdout in every mode (CI logs show progress as it happens). */
export function caseLine(r: CaseResult): string {
  const verdict = r.skipped !== undefined ? 'SKIP ' : r.passed ? 'PASS ' : isError(r) ? 'ERROR' : 'FAIL ';
  const why = r.skipped ?? (r.passed ? '' : r.failures.join('; '));
  return `${verdict} ${caseKey(r)} ${r.seconds.toFixed(1)} s${why ? `: ${why}` : ''}\n`;
}

function testcase(r: CaseResult, log: string | undefined): string {
  const head = `    <testcase classname="hil.${xml(r.scenario)}" name="${xml(caseKey(r))}" time="${r.seconds.toFixed(3)}">`;
  const body: string[] = [];
  if (r.skipped !== undefined) body.push(`      <skipped message="${xml(r.skipped)}"/>`);
  else if (!r.passed) {
    const detail = `expected: ${JSON.stringify(r.expected)}\nactual:   ${JSON.stringify(r.actual)}\n${r.failures.join('\n')}`;
    const tag = isError(r) ? 'error' : 'failure';
    body.push(`      <${tag} message="${xml(r.failures.join('; '))}" type="${isError(r) ? 'harness' : 'mismatch'}">${xml(detail)}</${tag}>`);
  }
  // What happened on the way: end state, restarts, each upload attempt, then the case's log lines.
  const summary = [
    `end state: ${JSON.stringify(r.actual)}`,
    `restarts: ${r.restarts}`,
    ...r.uploads.map((u) => `upload attempt ${u.attempt}: ${JSON.stringify(u)}`),
  ].join('\n');
  body.push(`      <system-out>${xml(log ? `${summary}\n--- log ---\n${log}` : summary)}</system-out>`);
  return `${head}\n${body.join('\n')}\n    </testcase>`;
}

/**
 * JUnit XML: testsuites > one testsuite "fwseal-hil" with `timestamp`, `hostname`, `tests`,
 * `failures`, `errors`, `skipped` and the run's wall `time`, its settings as properties, and one
 * testcase per scenario x device (name "<scenario> [dev N]", classname "hil.<scenario>") with its
 * log excerpt in `system-out`.
 */
export function junitXml(results: readonly CaseResult[], suite: SuiteInfo): string {
  const errors = results.filter(isError).length;
  const failures = results.filter((r) => !r.passed).length - errors;
  const skipped = results.filter((r) => r.skipped !== undefined).length;
  const time = suite.seconds.toFixed(3);
  const props = Object.entries(suite.properties ?? {}).map(([k, v]) => `      <property name="${xml(k)}" value="${xml(v)}"/>`);
  const counts = `tests="${results.length}" failures="${failures}" errors="${errors}"`;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="fwseal-hil" ${counts} time="${time}">`,
    `  <testsuite name="fwseal-hil" ${counts} skipped="${skipped}" time="${time}" timestamp="${antTimestamp(suite.started)}" hostname="${xml(suite.hostname || 'localhost')}" id="0" package="hil">`,
    ...(props.length > 0 ? ['    <properties>', ...props, '    </properties>'] : []),
    ...results.map((r) => testcase(r, suite.logs?.get(caseKey(r)))),
    '  </testsuite>',
    '</testsuites>',
    '',
  ].join('\n');
}

/** The terminal summary: one row per scenario x device, then totals. */
export function summaryTable(results: readonly CaseResult[]): string {
  const rows = results.map((r) => [
    r.scenario,
    String(r.device),
    r.skipped !== undefined ? 'SKIP' : r.passed ? 'PASS' : isError(r) ? 'ERROR' : 'FAIL',
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
  const errors = results.filter(isError).length;
  const failed = results.length - passed - skipped;
  const details = results.filter((r) => !r.passed).map((r) => `  ${caseKey(r)}: ${r.failures.join('; ')}`);
  return [
    line(head),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    `${passed} passed, ${failed} failed${errors > 0 ? ` (${errors} harness errors)` : ''}, ${skipped} skipped`,
    ...details,
    '',
  ].join('\n');
}
