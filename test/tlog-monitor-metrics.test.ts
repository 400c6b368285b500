/**
 * `fwseal log monitor --metrics-file F` (issue 19 item 4; SPEC.md §16.5): every run, clean, with
 * findings, with a verdict on the log or unable to check it, replaces F with gauges for node_exporter's
 * textfile collector; the end of the last clean run survives the runs that are not; a file the
 * command did not write is refused and left as it is; promtool accepts every file written.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MONITOR_FINDING_CODES, parseMonitorMetrics, renderMonitorMetrics } from '../host/tlog/monitor-metrics.js';
import { type CliWorld, expectOk, expectRejected, expectUsage, makeCliWorld } from './support/cli-world.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';

const ORIGIN = 'example.com/metered';
const S = standardWorld();
const X = detKey('not a release key either');
const P = 'fwseal_tlog_monitor_';
let w: CliWorld;
let k = 0;
const manifest = (signers: Parameters<typeof makeManifestEnvelope>[1]) =>
  w.write(`m${k++}.cose`, makeManifestEnvelope(makeManifest(detBytes(64, `metered ${k}`), { securityCounter: 40 + k }), signers));

async function appendAndCheckpoint(dir: string, ...files: string[]): Promise<void> {
  expectOk(await w.run('log', 'append', dir, ...files));
  expectOk(await w.run('log', 'checkpoint', dir, '--key', 'logkey.key'));
}

const monitor = (file: string, ...extra: string[]) => w.run('log', 'monitor', '--log', 'tlog', '--trust', 'trust.cbor', '--metrics-file', file, ...extra);

/** The samples of a metrics file: `name{labels}` → value. */
function samples(file: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of readFileSync(w.path(file), 'utf8').split('\n')) {
    const m = /^(\S+) (\S+)$/.exec(line);
    if (m && !line.startsWith('#')) out.set(m[1], Number(m[2]));
  }
  return out;
}

const at = (log: string, code?: string) => `{log="${log}"${code ? `,code="${code}"` : ''}}`;

/** Every findings{code} of the file, by code. */
const findings = (s: Map<string, number>, log = ORIGIN) => Object.fromEntries(MONITOR_FINDING_CODES.map((c) => [c, s.get(`${P}findings${at(log, c)}`)]));
const none = Object.fromEntries(MONITOR_FINDING_CODES.map((c) => [c, 0]));

function promtoolCheck(file: string): { status: number | null; out: string } {
  const r = spawnSync('/usr/bin/promtool', ['check', 'metrics'], { input: readFileSync(w.path(file)), encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** A loopback port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

beforeAll(async () => {
  w = await makeCliWorld(['logkey', 'other']);
  w.write('trust.cbor', S.trust);
  expectOk(await w.run('log', 'init', 'tlog', '--origin', ORIGIN, '--key', 'logkey.pub'));
  await appendAndCheckpoint('tlog', manifest([S.R1, S.R2]), 'trust.cbor');
}, 60_000);
afterAll(() => w.close());

describe('fwseal log monitor --metrics-file', () => {
  it('a clean run: every findings code at 0, run_failed 0, last_clean = last_run, the log size and entries examined', async () => {
    expectOk(await monitor('tlog.prom', '--save', 'seen.note'));
    const s = samples('tlog.prom');
    expect(findings(s)).toEqual(none);
    expect(s.get(`${P}run_failed${at(ORIGIN)}`)).toBe(0);
    const lastRun = s.get(`${P}last_run_timestamp_seconds${at(ORIGIN)}`);
    expect(lastRun).toBeGreaterThan(1_700_000_000);
    expect(s.get(`${P}last_clean_timestamp_seconds${at(ORIGIN)}`)).toBe(lastRun);
    expect(s.get(`${P}log_size${at(ORIGIN)}`)).toBe(2);
    expect(s.get(`${P}entries_examined${at(ORIGIN)}`)).toBe(2);
    expect(promtoolCheck('tlog.prom')).toEqual({ status: 0, out: '' });
  });

  it('a run with a finding: findings{code="KEY_NOT_IN_TRUST"} 1, exit 1, and the last clean run of the file before is kept', async () => {
    // The clean run before, made older, so that keeping it differs from writing this run's time.
    const clean = readFileSync(w.path('tlog.prom'), 'utf8').replace(/^(fwseal_tlog_monitor_last_clean_timestamp_seconds\S*) \d+$/m, '$1 1000');
    w.write('tlog.prom', clean);
    await appendAndCheckpoint('tlog', manifest([X, S.R1]));
    expectRejected(await monitor('tlog.prom', '--since', 'seen.note'), 'KEY_NOT_IN_TRUST');
    const s = samples('tlog.prom');
    expect(findings(s)).toEqual({ ...none, KEY_NOT_IN_TRUST: 1 });
    expect(s.get(`${P}run_failed${at(ORIGIN)}`)).toBe(0);
    expect(s.get(`${P}last_clean_timestamp_seconds${at(ORIGIN)}`)).toBe(1000);
    expect(s.get(`${P}last_run_timestamp_seconds${at(ORIGIN)}`)).toBeGreaterThan(1_700_000_000);
    expect(s.get(`${P}log_size${at(ORIGIN)}`)).toBe(3);
    expect(s.get(`${P}entries_examined${at(ORIGIN)}`)).toBe(1);
    expect(promtoolCheck('tlog.prom')).toEqual({ status: 0, out: '' });
  });

  it('a checkpoint seen from a fork: findings{code="LOG_INVALID"} 1, exit 1, last clean kept, no size (no report)', async () => {
    expectOk(await w.run('log', 'init', 'fork', '--origin', ORIGIN, '--key', 'logkey.pub'));
    await appendAndCheckpoint('fork', manifest([S.R1, S.R2]));
    expectRejected(await monitor('tlog.prom', '--since', 'fork/checkpoint.note'), 'LOG_INVALID');
    const s = samples('tlog.prom');
    expect(findings(s)).toEqual({ ...none, LOG_INVALID: 1 });
    expect(s.get(`${P}run_failed${at(ORIGIN)}`)).toBe(0);
    expect(s.get(`${P}last_clean_timestamp_seconds${at(ORIGIN)}`)).toBe(1000);
    expect(s.has(`${P}log_size${at(ORIGIN)}`)).toBe(false);
    // A pinned log key that is not the log's: its checkpoints do not open, BAD_SIGNATURE the same way.
    expectRejected(await monitor('tlog.prom', '--log-key', 'other.pub'), 'BAD_SIGNATURE');
    expect(findings(samples('tlog.prom'))).toEqual({ ...none, BAD_SIGNATURE: 1 });
    expect(promtoolCheck('tlog.prom')).toEqual({ status: 0, out: '' });
  });

  it('a run that cannot check (server unreachable): run_failed 1, exit 2, the label and last clean of the file kept', async () => {
    const url = `http://127.0.0.1:${await closedPort()}`;
    const r = await w.run('log', 'monitor', '--log', url, '--trust', 'trust.cbor', '--metrics-file', 'tlog.prom');
    expectUsage(r, 'SERVER_UNREACHABLE');
    const s = samples('tlog.prom');
    expect(s.get(`${P}run_failed${at(ORIGIN)}`)).toBe(1);
    expect(findings(s)).toEqual(none);
    expect(s.get(`${P}last_clean_timestamp_seconds${at(ORIGIN)}`)).toBe(1000);
    expect(promtoolCheck('tlog.prom')).toEqual({ status: 0, out: '' });
    // A first run that never learnt the log: labelled "unknown", no clean run recorded.
    expectUsage(await w.run('log', 'monitor', '--log', url, '--trust', 'trust.cbor', '--metrics-file', 'fresh.prom'), 'SERVER_UNREACHABLE');
    const f = samples('fresh.prom');
    expect(f.get(`${P}run_failed${at('unknown')}`)).toBe(1);
    expect(f.get(`${P}last_clean_timestamp_seconds${at('unknown')}`)).toBe(0);
  });

  it('a clean run again: last_clean = last_run, findings back to 0', async () => {
    w.write('seen3.note', readFileSync(w.path('tlog/checkpoint.note')));
    expectOk(await monitor('tlog.prom', '--since', 'seen3.note'));
    const s = samples('tlog.prom');
    expect(findings(s)).toEqual(none);
    expect(s.get(`${P}run_failed${at(ORIGIN)}`)).toBe(0);
    expect(s.get(`${P}last_clean_timestamp_seconds${at(ORIGIN)}`)).toBe(s.get(`${P}last_run_timestamp_seconds${at(ORIGIN)}`));
    expect(s.get(`${P}entries_examined${at(ORIGIN)}`)).toBe(0);
  });

  it('a file it did not write (another exporter, fwseal sign) is refused with USAGE before the run, and left as it is', async () => {
    for (const text of ['node_foo{a="b"} 1\n', '# TYPE fwseal_signatures_total counter\nfwseal_signatures_total{result="ok",code=""} 3\n']) {
      w.write('other.prom', text);
      expectUsage(await monitor('other.prom', '--save', 'never.note'), 'USAGE');
      expect(readFileSync(w.path('other.prom'), 'utf8')).toBe(text);
    }
    expect(() => readFileSync(w.path('never.note'))).toThrow();
  });

  it('round-trips an origin with quotes, backslashes and a newline in its label, and promtool accepts it', () => {
    const origin = 'a "quoted" \\ origin\nline';
    const text = renderMonitorMetrics({ origin, failed: true, endedAt: 1_765_000_000 }, { log: origin, lastClean: 1_764_000_000 });
    expect(parseMonitorMetrics(text, 'x.prom')).toEqual({ log: origin, lastClean: 1_764_000_000 });
    w.write('odd.prom', text);
    expect(promtoolCheck('odd.prom')).toEqual({ status: 0, out: '' });
  });
});
