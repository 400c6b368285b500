/**
 * `fwseal log monitor` (issue 19 item 4; SPEC.md §16.5): the transparency log since the checkpoint
 * seen last, every new entry per signing key, and exit 1 on what the owner did not expect; with
 * `--metrics-file` every run, whatever its end, leaves its findings as gauges for Prometheus.
 */
import { FwsealError } from '../errors.js';
import { writeFileAtomic } from '../io.js';
import { loadPublicKey } from '../keys.js';
import { apiRequest } from '../ota/api-client.js';
import { readCheckpointArg } from '../tlog/cli-support.js';
import { type MonitorOptions, type MonitorReport, monitorLog } from '../tlog/monitor.js';
import { type MonitorMetricsBefore, type MonitorRun, readMonitorMetricsFile, recordMonitorRun } from '../tlog/monitor-metrics.js';
import { SIG_ED25519 } from '../tlog/note.js';
import { monitorServed } from '../tlog/remote.js';
import { readConfig } from '../tlog/store.js';
import { type Command, type Io, json, list, type Parsed, readObjectFile, str } from './common.js';
import { verdict } from './log.js';

/** What a run found out, for --metrics-file: filled in as the run goes. */
type Outcome = { origin?: string; report?: MonitorReport; verdict?: string };

export const logMonitor: Command = {
  name: 'log monitor',
  summary: 'check a transparency log since the last checkpoint seen: consistency, every new entry per signing key, unexpected signers',
  usage: `fwseal log monitor --log DIR|URL --trust trust.cbor [--since SEEN.note] [--save SEEN.note] [--revocations RL.cbor] [--device-class C]... [--log-key LOG.pub] [--metrics-file F.prom] [--json]

For a cron job or CI. Proves the log's newest checkpoint consistent with SEEN.note (the checkpoint
seen last; none: from the first entry), reads every new entry (each against its leaf hash, all
against the signed root) and lists them per signing key. Exit 1 (REJECTED) with a finding per
problem: a signature by a key trust.cbor does not list for that kind of object (KEY_NOT_IN_TRUST),
by a key RL.cbor revokes (REVOKED_KEY), a release for a device class not among --device-class
(WRONG_DEVICE_CLASS), an entry that is no fwseal object (MALFORMED); a fork or a rollback is
LOG_INVALID. --save writes the newest checkpoint to SEEN.note after a clean run. --log-key pins the
log key (default: the log's own log.json). --log URL reads a log served by fwseal serve --log (the
API's viewer role; token from FWSEAL_SERVER_TOKEN): the same checks, made here on what it serves.
--metrics-file F.prom replaces F after every run, whatever its end, with gauges for node_exporter's
textfile collector: the run's findings by code, whether it could check the log at all, the end of
this run and of the last clean one (fwseal_tlog_monitor_*).

Examples:
  fwseal log monitor --log ./tlog --trust trust.cbor --since seen.note --save seen.note --device-class acme-gw
  fwseal log monitor --log ./tlog --trust trust.cbor --since seen.note --save seen.note --metrics-file /var/lib/node_exporter/textfile/fwseal-tlog.prom`,
  options: {
    log: { type: 'string' },
    trust: { type: 'string' },
    since: { type: 'string' },
    save: { type: 'string' },
    revocations: { type: 'string' },
    'device-class': { type: 'string', multiple: true },
    'log-key': { type: 'string' },
    'metrics-file': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(p, io) {
    const metricsFile = str(p, 'metrics-file');
    if (metricsFile === undefined) return monitor(p, io, {});
    // Checked before the run: a file this command did not write is USAGE and stays as it is.
    const before = readMonitorMetricsFile(metricsFile);
    const outcome: Outcome = {};
    let failed = true;
    try {
      const status = await monitor(p, io, outcome);
      failed = false;
      return status;
    } finally {
      recordRun(io, metricsFile, { ...outcome, failed, endedAt: Math.floor(Date.now() / 1000) }, before);
    }
  },
};

/** Write the metrics file; a failure to is a warning, and the exit status stays the run's (as for sign, SPEC.md §14 H11). */
function recordRun(io: Io, path: string, run: MonitorRun, before: MonitorMetricsBefore): void {
  try {
    recordMonitorRun(path, run, before);
  } catch (e) {
    io.stderr(`warning: --metrics-file ${path} not updated: ${(e as Error).message}\n`);
  }
}

/** The run: its exit status (0 clean, 1 findings or a verdict); an error that is no verdict is thrown. */
async function monitor(p: Parsed, io: Io, outcome: Outcome): Promise<number> {
  const dir = str(p, 'log', true);
  const url = /^https?:\/\//i.test(dir);
  if (!url && /^[a-z][a-z0-9+.-]*:\/\//i.test(dir)) throw new FwsealError('USAGE', '--log takes a log folder or an http(s):// URL of fwseal serve');
  const asJson = p.values.json === true;
  if (!url) outcome.origin = originOf(dir);
  const trust = readObjectFile(str(p, 'trust', true), 'trust-bundle');
  const rl = str(p, 'revocations');
  const since = str(p, 'since');
  const pinned = str(p, 'log-key');
  const opts = {
    trust,
    ...(rl ? { revocations: readObjectFile(rl, 'revocation-list') } : {}),
    ...(since ? { since: readCheckpointArg(since) } : {}),
    deviceClasses: list(p, 'device-class'),
  };
  // A served log (SPEC.md §16): read over the API with FWSEAL_SERVER_TOKEN; the log key's name is the checkpoint's origin.
  const served = url ? await monitorServedArg(dir, opts, pinned).catch((e: Error) => e) : null;
  return verdict(io, 'log monitor', asJson, () => {
    let report: MonitorReport;
    try {
      if (served instanceof Error) throw served;
      const cfg = served ? null : readConfig(dir);
      report = served ?? monitorLog(dir, { ...opts, ...(pinned && cfg ? { logKey: { ...cfg.logKey, publicKey: loadPublicKey(pinned).publicKey } } : {}) });
    } catch (e) {
      // A verdict on the log (exit 1) when verdict() takes it; anything else ends the run unchecked.
      if (e instanceof FwsealError) outcome.verdict = e.codeName;
      throw e;
    }
    outcome.report = report;
    printMonitor(io, asJson, report);
    if (report.findings.length > 0) {
      const first = report.findings[0];
      io.stderr(
        `fwseal log monitor: REJECTED ${first.error} (code ${first.code}): ${report.findings.length} findings in entries ${report.fromSize}..${report.toSize - 1}\n`,
      );
      return 1;
    }
    const save = str(p, 'save');
    if (save) writeFileAtomic(save, report.checkpoint);
    return 0;
  });
}

/** The origin in a log folder's log.json, for the metrics of a run that ends before its report; undefined when unreadable. */
function originOf(dir: string): string | undefined {
  try {
    return readConfig(dir).origin;
  } catch {
    return undefined; // the run itself reports why
  }
}

/** monitorServed with the API target of --log URL and the pinned key named after the served log's origin. */
async function monitorServedArg(url: string, opts: Omit<MonitorOptions, 'logKey'>, pinned: string | undefined): Promise<MonitorReport> {
  const token = process.env.FWSEAL_SERVER_TOKEN;
  const target = { server: url, ...(token ? { token } : {}) };
  if (!pinned) return monitorServed(target, opts);
  const { origin } = await apiRequest<{ origin: string }>(target, 'GET', 'api/log');
  return monitorServed(target, { ...opts, logKey: { name: origin, publicKey: loadPublicKey(pinned).publicKey, type: SIG_ED25519 } });
}

function printMonitor(io: Io, asJson: boolean, r: MonitorReport): void {
  if (asJson) {
    json(io, r);
    return;
  }
  io.stdout(`${r.origin}: entries ${r.fromSize}..${r.toSize - 1} (checkpoint of size ${r.toSize}, consistent)\n`);
  for (const [kid, indexes] of Object.entries(r.byKey)) {
    const what = indexes.map((i) => r.entries[i - r.fromSize]).map((e) => `${e.index} ${e.kind}${e.deviceClass ? ` ${e.deviceClass} ${e.version}` : ''}`);
    io.stdout(`key ${kid}: ${indexes.length} entries: ${what.join('; ')}\n`);
  }
  for (const f of r.findings)
    io.stdout(
      `FINDING entry ${f.index}: ${f.error} (code ${f.code})${f.keyId ? ` key ${f.keyId}` : ''}${f.deviceClass ? ` device class ${f.deviceClass}` : ''}\n`,
    );
}
