/**
 * The dashboards and alert rules as code in ops/ (issue 16; the metrics are SPEC.md §12.9 "Metrics"):
 * promtool checks the rules, runs their unit tests (every rule fires in one case and stays silent in
 * another) and checks the example Prometheus config; every Grafana dashboard parses, has unique panel
 * ids and only PromQL that promtool parses (written as recording rules: promtool 2.42 has no parse
 * command); and every metric any expression names is one a real `fwseal serve` exports on /metrics
 * or `fwseal sign --metrics-file` or `fwseal log monitor --metrics-file` writes. The checker itself is shown to catch a misspelled name.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OtaServer } from '../host/ota/server.js';
import { type CliRun } from './support/cli-run.js';
import { type CliWorld, makeCliWorld } from './support/cli-world.js';
import { standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { serverMqtt } from './support/ota-harness.js';

const ROOT = resolve(__dirname, '..');
const PROMETHEUS_DIR = join(ROOT, 'ops/prometheus');
const DASHBOARD_DIR = join(ROOT, 'ops/grafana/dashboards');
const PROMTOOL = '/usr/bin/promtool';
const read = (p: string) => readFileSync(p, 'utf8');

function promtool(args: readonly string[], cwd = PROMETHEUS_DIR): { status: number | null; out: string } {
  const r = spawnSync(PROMTOOL, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

// ---- PromQL: the metric names an expression reads ---------------------------------------------------

type Token = { kind: 'id' | 'num' | 'str' | 'punct'; text: string };

function tokens(expr: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i];
    if (/\s/.test(c)) i++;
    else if (c === '#') while (i < expr.length && expr[i] !== '\n') i++;
    else if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < expr.length && expr[j] !== c) j += expr[j] === '\\' && c !== '`' ? 2 : 1;
      out.push({ kind: 'str', text: expr.slice(i + 1, j) });
      i = j + 1;
    } else if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(expr[i + 1] ?? ''))) {
      // Numbers and durations: 0.95, 1e3, 0x1f, 5m, 1h30m.
      const m = /^[0-9a-zA-Z_.]+/.exec(expr.slice(i))!;
      out.push({ kind: 'num', text: m[0] });
      i += m[0].length;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i))!;
      out.push({ kind: 'id', text: m[0] });
      i += m[0].length;
    } else {
      out.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return out;
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'atan2', 'start', 'end']);
const AGGREGATORS = new Set(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile']);
/** Keywords followed by a parenthesised list of label names. */
const LABEL_LISTS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/** The metric names `expr` selects: identifiers outside label matchers, ranges and label lists that do not call a function. */
function metricNames(expr: string): string[] {
  const t = tokens(expr);
  const names = new Set<string>();
  let braces = 0;
  let brackets = 0;
  for (let k = 0; k < t.length; k++) {
    const { kind, text } = t[k];
    const next = t[k + 1]?.text;
    if (kind === 'punct') {
      braces += text === '{' ? 1 : text === '}' ? -1 : 0;
      brackets += text === '[' ? 1 : text === ']' ? -1 : 0;
      continue;
    }
    if (kind !== 'id' || brackets > 0) continue;
    if (braces > 0) {
      // {__name__="x"} names a metric too.
      if (text === '__name__' && next === '=' && t[k + 2]?.kind === 'str') names.add(t[k + 2].text);
      continue;
    }
    const low = text.toLowerCase();
    if (LABEL_LISTS.has(low) && next === '(') {
      while (k < t.length && t[k].text !== ')') k++;
      continue;
    }
    if (KEYWORDS.has(low) || AGGREGATORS.has(low) || next === '(') continue;
    names.add(text);
  }
  return [...names];
}

// ---- Grafana dashboards ----------------------------------------------------------------------------

type Panel = {
  id: number;
  type: string;
  title: string;
  datasource?: { uid?: string };
  targets?: { expr?: string; refId?: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
};
type Dashboard = {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; definition?: string; query?: unknown }[] };
};
type Expr = { where: string; expr: string };

/** How every panel names its datasource: the dashboard variable (a Grafana placeholder, not a template literal). */
const DS_UID = ['$', '{DS_PROMETHEUS}'].join('');
const GRAFANA_DURATIONS = /\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g;

/** The expression with the dashboard's variables as promtool can parse it: durations for Grafana's, `.*` for ours (used only in regex matchers). */
function substituteVariables(expr: string, variables: ReadonlySet<string>): string {
  return expr.replace(GRAFANA_DURATIONS, '5m').replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (m, a, b) => (variables.has(a ?? b) ? '.*' : m));
}

const allPanels = (panels: readonly Panel[]): Panel[] => panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);

/** Every PromQL expression of a dashboard (panel targets and `label_values(SELECTOR, label)` variables), variables substituted. */
function dashboardExprs(name: string, d: Dashboard): Expr[] {
  const variables = new Set(d.templating.list.map((v) => v.name));
  const out: Expr[] = [];
  for (const v of d.templating.list.filter((x) => x.type === 'query')) {
    const m = /^label_values\((.+),\s*\w+\)$/.exec(v.definition ?? '');
    out.push({ where: `${name} variable ${v.name}`, expr: m ? m[1] : `unparsed variable query ${JSON.stringify(v.definition)}` });
  }
  for (const p of allPanels(d.panels))
    for (const t of p.targets ?? []) out.push({ where: `${name} panel ${p.id} "${p.title}" ${t.refId}`, expr: substituteVariables(t.expr ?? '', variables) });
  return out;
}

/** What is wrong with a dashboard's structure (not its PromQL): [] when nothing. */
function dashboardProblems(name: string, d: Dashboard): string[] {
  const problems: string[] = [];
  const ids = allPanels(d.panels).map((p) => p.id);
  const dup = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (dup.length > 0) problems.push(`${name}: panel ids used twice: ${dup.join(', ')}`);
  if (!(d.schemaVersion >= 39)) problems.push(`${name}: schemaVersion ${d.schemaVersion}`);
  if (!d.templating.list.some((v) => v.name === 'DS_PROMETHEUS' && v.type === 'datasource')) problems.push(`${name}: no DS_PROMETHEUS datasource variable`);
  for (const p of allPanels(d.panels)) {
    if (p.type === 'row' || p.type === 'text') continue;
    if (p.datasource?.uid !== DS_UID) problems.push(`${name} panel ${p.id}: datasource is not ${DS_UID}`);
    if (!p.targets || p.targets.length === 0) problems.push(`${name} panel ${p.id}: no query`);
    for (const t of p.targets ?? []) if (!t.expr || t.datasource?.uid !== DS_UID) problems.push(`${name} panel ${p.id} ${t.refId}: no expr or datasource`);
  }
  for (const e of dashboardExprs(name, d)) if (e.expr.includes('$')) problems.push(`${e.where}: an undefined variable in ${e.expr}`);
  return problems;
}

const DASHBOARDS = readdirSync(DASHBOARD_DIR).filter((f) => f.endsWith('.json'));
const dashboard = (file: string) => JSON.parse(read(join(DASHBOARD_DIR, file))) as Dashboard;

// ---- Alert rules (the layout of alerts.yml: `- alert:`, `expr: |` blocks, one key per line) ------------

type Rule = { alert: string; expr: string; severity?: string; annotations: Record<string, string> };

function alertRules(text: string): Rule[] {
  const rules: Rule[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const alert = /^\s*- alert: (\S+)/.exec(line);
    if (alert) rules.push({ alert: alert[1], expr: '', annotations: {} });
    const rule = rules.at(-1);
    if (!rule) continue;
    const expr = /^(\s*)expr: (.*)$/.exec(line);
    if (expr && expr[2].trim() === '|') {
      const body: string[] = [];
      while (i + 1 < lines.length && (lines[i + 1].trim() === '' || lines[i + 1].search(/\S/) > expr[1].length)) body.push(lines[++i]);
      rule.expr = body.join('\n').trim();
    } else if (expr) rule.expr = expr[2].trim();
    const kv = /^\s*(severity|summary|description|runbook_url): '?(.*?)'?$/.exec(line);
    if (kv && kv[1] === 'severity') rule.severity = kv[2];
    else if (kv) rule.annotations[kv[1]] = kv[2];
  }
  return rules;
}

const ALERTS_YML = join(PROMETHEUS_DIR, 'alerts.yml');
const ALERTS_TEST_YML = join(PROMETHEUS_DIR, 'alerts.test.yml');

/** The series of the rule unit tests: they must be metrics fwseal exports too, or the tests test nothing real. */
const testSeries = (text: string): Expr[] => [...text.matchAll(/- series: '([^']+)'/g)].map((m) => ({ where: 'alerts.test.yml input series', expr: m[1] }));

/** GitHub's anchor of a Markdown heading. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\w\- ]/g, '')
    .replace(/ /g, '-');

// ---- Checks shared by the tests and their negative cases ----------------------------------------------

/** The names no expression may use unless exported, as "where: name" lines. */
function unknownNames(exprs: readonly Expr[], exported: ReadonlySet<string>): string[] {
  return exprs.flatMap((e) =>
    metricNames(e.expr)
      .filter((n) => !exported.has(n))
      .map((n) => `${e.where}: ${n}`),
  );
}

/** promtool check rules on the expressions written as recording rules: parses each one. */
function checkParses(exprs: readonly Expr[], dir: string): { status: number | null; out: string } {
  const file = join(dir, 'exprs.rules.yml');
  const rules = exprs.map((e, i) => `      - record: ops_check:expr_${i}\n        expr: ${JSON.stringify(e.expr)}\n`).join('');
  writeFileSync(file, `groups:\n  - name: ops-check\n    rules:\n${rules}`);
  return promtool(['check', 'rules', file], dir);
}

/** Metric names in a text exposition: from `# TYPE` lines (histograms add _bucket/_sum/_count) and every sample. */
function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/gm)) {
    names.add(m[1]);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${m[1]}${s}`);
    if (m[2] === 'summary') for (const s of ['_sum', '_count']) names.add(`${m[1]}${s}`);
  }
  for (const m of text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)) names.add(m[1]);
  return names;
}

// ---- What a real server and a real signing run export ---------------------------------------------------

/** Every name of THE METRIC CONTRACT (issue 16), to report which a scrape still lacks. */
const CONTRACT = [
  'fwseal_manifest_verifications',
  'fwseal_rejections',
  'fwseal_campaign_devices',
  'fwseal_devices_seen',
  'fwseal_devices_online',
  'fwseal_blocks_served_total',
  'fwseal_block_multicasts_total',
  'fwseal_block_bytes_served_total',
  'fwseal_block_latency_seconds_bucket',
  'fwseal_root_responses_total',
  'fwseal_root_trust_version',
  'fwseal_root_revocation_version',
  'fwseal_trust_version',
  'fwseal_revocation_version',
  'fwseal_revocation_enforcing_ratio',
  'fwseal_revocation_propagation_seconds_bucket',
  'fwseal_error_replies_total',
  'fwseal_malformed_messages_total',
  'fwseal_status_ignored_total',
  'fwseal_reply_topic_refused_total',
  'fwseal_requests_total',
  'fwseal_status_events_total',
  'fwseal_status_backlog',
  'fwseal_mqtt_connected',
  'fwseal_build_info',
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
  'nodejs_eventloop_lag_p99_seconds',
  'fwseal_device_verify_seconds_bucket',
  'fwseal_server_verify_seconds_bucket',
  'fwseal_refusals_total',
  'fwseal_campaign_creates_total',
  'fwseal_campaign_halts_total',
  'fwseal_campaigns',
  'fwseal_unexpected_releases',
  'fwseal_trust_bundle_age_seconds',
  'fwseal_trust_key_age_seconds',
  'fwseal_revocations_pending',
];
const SIGNING_CONTRACT = ['fwseal_sign_duration_seconds_bucket', 'fwseal_signatures_total'];
/** What `fwseal log monitor --metrics-file` writes after a clean run (SPEC.md §16.5). */
const MONITOR_CONTRACT = [
  'fwseal_tlog_monitor_last_run_timestamp_seconds',
  'fwseal_tlog_monitor_last_clean_timestamp_seconds',
  'fwseal_tlog_monitor_findings',
  'fwseal_tlog_monitor_run_failed',
  'fwseal_tlog_monitor_log_size',
  'fwseal_tlog_monitor_entries_examined',
];

/** A one-entry log (the trust bundle) with a checkpoint, monitored clean with --metrics-file FILE; the runs before must succeed. */
async function monitorWithMetrics(w: CliWorld, file: string): Promise<CliRun> {
  w.write('trust.cbor', standardWorld().trust);
  for (const args of [
    ['log', 'init', 'tlog', '--origin', 'ops.example/tlog', '--key', 'logkey.pub'],
    ['log', 'append', 'tlog', 'trust.cbor'],
    ['log', 'checkpoint', 'tlog', '--key', 'logkey.key'],
  ]) {
    const r = await w.run(...args);
    if (r.status !== 0) return r;
  }
  return w.run('log', 'monitor', '--log', 'tlog', '--trust', 'trust.cbor', '--metrics-file', file);
}

function readOrEmpty(path: string): string {
  try {
    return read(path);
  } catch {
    return ''; // reported by the test on the monitor metrics
  }
}

let broker: Mosquitto;
let server: OtaServer | undefined;
let cli: CliWorld | undefined;
let tmp: string;
/** The names `fwseal serve` exports on /metrics. */
let served: Set<string>;
/** The names `fwseal sign --metrics-file` wrote, and that run. */
let signed: Set<string>;
let signRun: CliRun;
/** The names `fwseal log monitor --metrics-file` wrote, and that run. */
let monitored: Set<string>;
let monitorRun: CliRun;
let exported: Set<string>;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'fwseal-ops-'));
  broker = await startMosquitto({ persistence: false });
  server = await OtaServer.start({
    mqtt: serverMqtt(broker.url),
    dataDir: join(tmp, 'data'),
    trust: standardWorld().trust,
    http: { host: '127.0.0.1', port: 0 },
    tickMs: 100,
  });
  const res = await fetch(`${server.address()!.url}/metrics`);
  expect(res.status).toBe(200);
  served = exposedNames(await res.text());
  cli = await makeCliWorld(['R1', 'logkey'], { image: true });
  const file = join(tmp, 'fwseal-sign.prom');
  signRun = await cli.run('sign', 'm.cose', '--key', 'R1.key', '--metrics-file', file);
  let text = '';
  try {
    text = read(file);
  } catch {
    /* reported by the test on the signing metrics */
  }
  signed = exposedNames(text);
  monitorRun = await monitorWithMetrics(cli, join(tmp, 'fwseal-tlog.prom'));
  monitored = exposedNames(readOrEmpty(join(tmp, 'fwseal-tlog.prom')));
  exported = new Set([...served, ...signed, ...monitored]);
});

afterAll(async () => {
  await server?.close().catch(() => {});
  await broker?.stop();
  cli?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('alert rules (ops/prometheus/alerts.yml)', () => {
  const text = read(ALERTS_YML);
  const rules = alertRules(text);

  it('promtool check rules passes, and reads as many rules as the test reads', () => {
    const r = promtool(['check', 'rules', 'alerts.yml']);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain(`SUCCESS: ${rules.length} rules found`);
    for (const rule of rules) expect(rule.expr, rule.alert).not.toBe('');
  });

  it('promtool test rules passes', () => {
    const r = promtool(['test', 'rules', 'alerts.test.yml']);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain('SUCCESS');
  }, 180_000); // the day-long series of the M6 and M8 cases: ~15 s on an idle machine

  it('every rule has a case where it fires and one where it must not', () => {
    const cases = new Map<string, { fires: number; silent: number }>();
    const lines = read(ALERTS_TEST_YML).split('\n');
    lines.forEach((line, i) => {
      const name = /^\s*alertname: (\S+)/.exec(line)?.[1];
      if (!name) return;
      const exp = lines.slice(i + 1).find((l) => /^\s*exp_alerts:/.test(l)) ?? '';
      const c = cases.get(name) ?? { fires: 0, silent: 0 };
      if (/exp_alerts:\s*\[\]\s*$/.test(exp)) c.silent++;
      else c.fires++;
      cases.set(name, c);
    });
    expect([...cases.keys()].sort()).toEqual(rules.map((r) => r.alert).sort());
    for (const [name, c] of cases) {
      expect(c.fires, name).toBeGreaterThan(0);
      expect(c.silent, name).toBeGreaterThan(0);
    }
  });

  it('every rule is a page or a ticket with a summary, a description and a runbook anchor in ops/README.md', () => {
    const anchors = new Set([...read(join(ROOT, 'ops/README.md')).matchAll(/^#{1,6} (.+)$/gm)].map((m) => slug(m[1])));
    const names = rules.map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    for (const r of rules) {
      expect(['page', 'ticket'], r.alert).toContain(r.severity);
      expect(Object.keys(r.annotations).sort(), r.alert).toEqual(['description', 'runbook_url', 'summary']);
      const anchor = /^ops\/README\.md#(.+)$/.exec(r.annotations.runbook_url)?.[1];
      expect(anchor && anchors.has(anchor), `${r.alert}: ${r.annotations.runbook_url}`).toBe(true);
    }
    // The pages and tickets are all there.
    const bySeverity = (s: string) => rules.filter((r) => r.severity === s).map((r) => r.alert);
    expect(bySeverity('page')).toEqual(
      expect.arrayContaining([
        'FwsealVerificationFailuresWidespread',
        'FwsealRevokedKeySignatureRejected',
        'FwsealCampaignHalted',
        'FwsealRevocationNotPropagating',
      ]),
    );
    expect(bySeverity('ticket')).toEqual(expect.arrayContaining(['FwsealDeviceVerifySlow', 'FwsealServerVerifySlow', 'FwsealPolicyRejectionsRising']));
  });

  it('the example prometheus.yml passes promtool check config, with the rule file', () => {
    const r = promtool(['check', 'config', 'prometheus.yml']);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/SUCCESS: 1 rule files found/);
  });
});

describe('Grafana dashboards (ops/grafana/dashboards)', () => {
  it('executive, on-call and debug: each parses, with unique panel ids, a DS_PROMETHEUS datasource and a query per panel', () => {
    expect(DASHBOARDS.sort()).toEqual(['debug.json', 'executive.json', 'oncall.json']);
    const uids = DASHBOARDS.map((f) => dashboard(f).uid);
    expect(new Set(uids).size).toBe(uids.length);
    for (const f of DASHBOARDS) {
      expect(dashboardProblems(f, dashboard(f))).toEqual([]);
      expect(allPanels(dashboard(f).panels).filter((p) => p.targets?.length).length, f).toBeGreaterThan(5);
    }
  });

  it('every PromQL expression parses (promtool check rules, each expression a recording rule)', () => {
    const exprs = DASHBOARDS.flatMap((f) => dashboardExprs(f, dashboard(f)));
    expect(exprs.length).toBeGreaterThan(60);
    const r = checkParses(exprs, tmp);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toContain(`SUCCESS: ${exprs.length} rules found`);
  });

  it('a broken expression is refused by the same check', () => {
    const r = checkParses([{ where: 'broken', expr: 'sum(rate(fwseal_blocks_served_total[5m])' }], tmp);
    expect(r.status).not.toBe(0);
  });

  it('the debug dashboard has latency heatmaps for signing and verification, from histogram buckets', () => {
    const heatmaps = allPanels(dashboard('debug.json').panels).filter((p) => p.type === 'heatmap');
    const names = heatmaps.flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr ?? '')));
    expect(names.sort()).toEqual([
      'fwseal_device_verify_seconds_bucket',
      'fwseal_device_verify_seconds_bucket',
      'fwseal_server_verify_seconds_bucket',
      'fwseal_sign_duration_seconds_bucket',
    ]);
  });
});

describe('every metric the dashboards and alerts read is exported', () => {
  it('the name reader finds metrics and nothing else (functions, labels, ranges, keywords)', () => {
    const expr =
      'histogram_quantile(0.95, sum by (le, stage) (rate(a_bucket{stage="manifest",le!="x"}[5m:1m]))) > 0.1 and on (instance) group_left (x) b offset 1h unless ignoring(le) c:rule or vector(1e3) or {__name__="d"} * -Inf';
    expect(metricNames(expr).sort()).toEqual(['a_bucket', 'b', 'c:rule', 'd']);
  });

  it('`fwseal sign --metrics-file` writes the signing metrics (M3)', () => {
    expect(signRun.status, signRun.out + signRun.err).toBe(0);
    expect(SIGNING_CONTRACT.filter((n) => !signed.has(n))).toEqual([]);
  });

  it('`fwseal log monitor --metrics-file` writes the monitor metrics (SPEC.md §16.5)', () => {
    expect(monitorRun.status, monitorRun.out + monitorRun.err).toBe(0);
    expect(MONITOR_CONTRACT.filter((n) => !monitored.has(n))).toEqual([]);
  });

  it('a real `fwseal serve` exports every name of the metric contract', () => {
    expect(CONTRACT.filter((n) => !served.has(n))).toEqual([]);
  });

  it('dashboards, alert rules and the rules’ test series name only exported metrics', () => {
    const exprs = [
      ...DASHBOARDS.flatMap((f) => dashboardExprs(f, dashboard(f))),
      ...alertRules(read(ALERTS_YML)).map((r) => ({ where: `alerts.yml ${r.alert}`, expr: r.expr })),
      ...testSeries(read(ALERTS_TEST_YML)),
    ];
    expect(unknownNames(exprs, exported)).toEqual([]);
  });

  it('a misspelled metric name in a copy of a dashboard or of the rules is reported', () => {
    const typo = JSON.parse(read(join(DASHBOARD_DIR, 'debug.json')).replaceAll('fwseal_blocks_served_total', 'fwseal_blocks_servd_total')) as Dashboard;
    const known = new Set([...exported, 'fwseal_blocks_served_total', 'fwseal_status_backlog']);
    expect(unknownNames(dashboardExprs('debug.json', typo), known).join('\n')).toMatch(/: fwseal_blocks_servd_total$/m);
    const rules = alertRules(read(ALERTS_YML).replaceAll('fwseal_status_backlog', 'fwseal_status_backlg'));
    expect(
      unknownNames(
        rules.map((r) => ({ where: r.alert, expr: r.expr })),
        known,
      ),
    ).toContain('FwsealStatusBacklogPinned: fwseal_status_backlg');
  });
});
