/**
 * The OTA campaign measurements of the "ota" section (tools/bench/ota.ts): `fwseal serve` and
 * `fwseal fleet-sim` as separate processes of the built CLI, timed from `fwseal campaign create` to
 * the server counting every device confirmed (the full-agent end-to-end row: information, it measures
 * the simulated devices' CPU more than the server). Fresh data folder and fleet per run. Also the
 * helpers the delivery rows (ota-delivery.ts, ota-scale.ts) share: `serve` and `createCampaign`.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../host/cli.js';
import { type Mosquitto } from '../../test/support/mosquitto.js';
import { type BenchContext } from './common.js';
import { type BenchProcesses, cpuSeconds, getJson, mosquittoPid, type Proc, sleep, vmHwmKiB, waitFor } from './ota-procs.js';

export const DEVICES = 200;

/** A whole number from `env` within [1, max], or `fallback` when unset. */
export function envCount(name: string, fallback: number, max: number, env: NodeJS.ProcessEnv = process.env): number {
  const text = env[name];
  if (text === undefined || text === '') return fallback;
  if (!/^[1-9]\d*$/.test(text) || Number(text) > max) throw new Error(`${name} must be a whole number from 1 to ${max}`);
  return Number(text);
}

/**
 * The update of the delivery and full-agent rows: 1 MiB, or FWSEAL_BENCH_OTA_IMAGE_MIB (at most 64).
 * The server's work is mostly per device and the broker's per byte, so (b) depends on the size.
 */
export const IMAGE_MIB = envCount('FWSEAL_BENCH_OTA_IMAGE_MIB', 1, 64);
export const IMAGE_BYTES = IMAGE_MIB << 20;
/** The update of the scale rows: one 64 KiB block, one digest page (the rows measure requests and status traffic; bytes are the delivery rows'). */
export const SCALE_IMAGE_BYTES = 64 << 10;
export const CHUNK = 4096;
export const CLASS = 'acme-gw';

/** The release files (tools/bench/ota.ts writes them): trust, factory v1, update v2, the idle fleet's factory release, the scale rows' update. */
export type Releases = {
  readonly trust: string;
  readonly v1: string;
  readonly v1Bin: string;
  readonly v2: string;
  readonly v2Bin: string;
  readonly idleV1: string;
  readonly idleV1Bin: string;
  /** The light devices' small update (ota-scale.ts): 2.0.0, SCALE_IMAGE_BYTES. */
  readonly scaleV2: string;
  readonly scaleV2Bin: string;
  readonly slotSize: number;
};

/** What the measurements share: the section's context, its processes, the broker and the releases. */
export type OtaBench = {
  readonly ctx: BenchContext;
  readonly procs: BenchProcesses;
  readonly broker: Mosquitto;
  readonly rel: Releases;
  /** The section's notes, in order. */
  readonly notes: string[];
};

/** Per-run figures of the campaign runs. */
export type CampaignTotals = {
  readonly seconds: number[];
  readonly lostPerRun: number[];
  readonly serverRss: number[];
  readonly fleetRss: number[];
  readonly cpuSplits: string[];
  readonly fleetCpuPerRun: number[];
  readonly timeline: string[];
};

type Progress = { counts: Record<string, number>; state: string; tCreate: number; tDone: number; tFirst: number; tHalf: number; tDownloading: number };
type CpuAt = { mosquitto: number | null; server: number | null; fleet: number | null };

/** Where a `fwseal serve` keeps its state: its own data folder, and optionally a PostgreSQL database (`--db`, password in `env`). */
export type ServeStore = { readonly db?: string; readonly env?: Readonly<Record<string, string>> };

/** `fwseal serve` on the bench broker with its data under runDir; resolves with its HTTP API address. */
export async function serve(b: OtaBench, runDir: string, store: ServeStore = {}): Promise<{ server: Proc; api: string }> {
  const db = store.db ? ['--db', store.db] : [];
  const server = b.procs.start(
    'fwseal serve',
    ['serve', '--broker', b.broker.url, '--data', join(runDir, 'data'), '--trust', b.rel.trust, '--http', '127.0.0.1:0', ...db],
    store.env,
  );
  let api = '';
  await waitFor(
    'the server address line',
    20_000,
    () => {
      const m = server.out.match(/HTTP API on (http:\/\/\S+)/);
      if (m) api = m[1];
      return !!m;
    },
    50,
    server,
  );
  return { server, api };
}

/** Wait until the server knows `DEVICES` devices of the group (from their `online` events). */
function devicesOnline(what: string, api: string, group: string, alive: Proc): Promise<void> {
  return waitFor(
    `${DEVICES} ${what} on the server`,
    60_000,
    async () => {
      const d = await getJson<{ devices: { group: string }[] }>(`${api}/api/devices`);
      return d.devices.filter((x) => x.group === group).length >= DEVICES;
    },
    200,
    alive,
  );
}

/** `fwseal campaign create` of v2 for the group, one wave of 100%, in-process; the campaign id. */
export async function createCampaign(b: OtaBench, api: string, group: string): Promise<string> {
  let out = '';
  let err = '';
  const status = await main(['campaign', 'create', '--server', api, '--manifest', b.rel.v2, '--image', b.rel.v2Bin, '--group', group, '--waves', '100'], {
    stdout: (t) => {
      out += t;
    },
    stderr: (t) => {
      err += t;
    },
    stderrIsTty: false,
  });
  if (status !== 0) throw new Error(`campaign create exited ${status}: ${err}`);
  return out.trim();
}

/** One campaign run: serve + fleet-sim of DEVICES devices in RAM, create -> all confirmed; figures into `t`. */
export async function campaignRun(b: OtaBench, i: number, t: CampaignTotals): Promise<void> {
  const { ctx, rel } = b;
  const group = `bench-g${i + 1}`;
  const runDir = join(ctx.tmpDir, `run-${i + 1}`);
  mkdirSync(runDir);
  ctx.log(`ota: campaign run ${i + 1}: serve, ${DEVICES} devices, ${IMAGE_MIB} MiB`);
  const { server, api } = await serve(b, runDir);
  const fleet = b.procs.start('fwseal fleet-sim', [
    'fleet-sim',
    '--broker',
    b.broker.url,
    '--count',
    String(DEVICES),
    '--group',
    group,
    '--trust',
    rel.trust,
    '--device-class',
    CLASS,
    '--state',
    join(runDir, 'fleet'),
    '--factory',
    rel.v1,
    '--factory-image',
    rel.v1Bin,
    '--memory',
    '--slot-size',
    String(rel.slotSize),
    '--id-prefix',
    `r${i + 1}-`,
    '--exit-after-update',
    '--json',
  ]);
  try {
    await devicesOnline('devices', api, group, fleet);
    const mpid = mosquittoPid(b.broker);
    const cpuAt = (): CpuAt => ({ mosquitto: cpuSeconds(mpid), server: cpuSeconds(server.child.pid), fleet: cpuSeconds(fleet.child.pid) });
    const cpu0 = cpuAt();
    const bench0 = process.cpuUsage();
    const t0 = performance.now();
    const id = await createCampaign(b, api, group);
    const progress = await watchCampaign(api, id);
    const seconds = (progress.tDone - t0) / 1000;
    const cpu1 = cpuAt();
    const bench1 = process.cpuUsage(bench0);
    const serverHwm = vmHwmKiB(server.child.pid);
    // fleet-sim exits by itself (--exit-after-update) once every device ended its campaign.
    const code = await Promise.race([fleet.exited, sleep(30_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') await b.procs.stop(fleet);
    const confirmed = readFleetReport(b, i, fleet, code, progress, t0, t);
    const fs = b.procs.exitStats(fleet);
    const fleetCpu = cpu1.fleet ?? (fs ? fs.cpu : null);
    if (fleetCpu !== null && cpu0.fleet !== null) t.fleetCpuPerRun.push(fleetCpu - cpu0.fleet);
    const d = (a: number | null, z: number | null) =>
      a === null || z === null ? '?' : `${(z - a).toFixed(1)} (${Math.round(((z - a) / seconds) * 100)}% of a core)`;
    t.cpuSplits.push(
      `run ${i + 1}: ${seconds.toFixed(2)} s wall; CPU s mosquitto ${d(cpu0.mosquitto, cpu1.mosquitto)}, serve ${d(cpu0.server, cpu1.server)}, fleet-sim ${d(cpu0.fleet, fleetCpu)}${cpu1.fleet === null ? ' (to its exit)' : ''}, bench ${((bench1.user + bench1.system) / 1e6).toFixed(1)}; campaign ${progress.state}, counts ${JSON.stringify(progress.counts)}`,
    );
    ctx.log(`ota: ${t.cpuSplits[t.cpuSplits.length - 1]}`);
    t.seconds.push(seconds);
    t.lostPerRun.push(DEVICES - confirmed);
    if (serverHwm !== null) t.serverRss.push(serverHwm);
    if (fs) t.fleetRss.push(fs.maxRssKiB);
  } finally {
    await b.procs.stop(fleet);
    await b.procs.stop(server);
    const ss = b.procs.exitStats(server);
    if (ss && t.serverRss.length < t.seconds.length) t.serverRss.push(ss.maxRssKiB);
    rmSync(runDir, { recursive: true, force: true });
  }
}

/** Poll the campaign every 50 ms until every device is terminal (or the campaign stopped); when the milestones were seen. */
async function watchCampaign(api: string, id: string): Promise<Progress> {
  const p: Progress = { counts: {}, state: '', tCreate: performance.now(), tDone: 0, tFirst: 0, tHalf: 0, tDownloading: 0 };
  await waitFor(
    `all ${DEVICES} devices to finish campaign ${id}`,
    180_000,
    async () => {
      const d = await getJson<{ state: string; counts: Record<string, number> }>(`${api}/api/campaigns/${id}`);
      p.counts = d.counts;
      p.state = d.state;
      const c = p.counts.confirmed ?? 0;
      if (c > 0 && !p.tFirst) p.tFirst = performance.now();
      if (c >= DEVICES / 2 && !p.tHalf) p.tHalf = performance.now();
      if ((p.counts.downloading ?? 0) > 0 && !p.tDownloading) p.tDownloading = performance.now();
      if (c >= DEVICES) p.tDone = performance.now();
      return (p.counts.confirmed ?? 0) + (p.counts.rejected ?? 0) + (p.counts.failed ?? 0) >= DEVICES || ['aborted', 'halted'].includes(p.state);
    },
    50,
  );
  if (!p.tDone) p.tDone = performance.now();
  return p;
}

/** fleet-sim's JSON report: the run's timeline note, and the confirmed count both sides agree on. */
function readFleetReport(b: OtaBench, i: number, fleet: Proc, code: number | null | 'timeout', p: Progress, t0: number, t: CampaignTotals): number {
  let confirmed = p.counts.confirmed ?? 0;
  try {
    const report = JSON.parse(fleet.out) as {
      devices: { outcome: string | null; version: string | null; requests: number; blocks: number; timeouts: number; rejected: number; malformed: number }[];
    };
    const ok = report.devices.filter((d) => d.outcome === 'confirmed' && d.version === '2.0.0').length;
    const sum = (k: 'requests' | 'blocks' | 'timeouts' | 'rejected' | 'malformed') => report.devices.reduce((a, d) => a + (d[k] ?? 0), 0);
    const withTimeouts = report.devices.filter((d) => d.timeouts > 0).length;
    const ms = (x: number) => (x ? `${((x - t0) / 1000).toFixed(2)} s` : '-');
    t.timeline.push(
      `run ${i + 1}: create returned ${ms(p.tCreate)}, first downloading seen ${ms(p.tDownloading)}, first confirmed ${ms(p.tFirst)}, half ${ms(p.tHalf)}, all ${ms(p.tDone)}; fleet-sim totals: requests ${sum('requests')}, blocks ${sum('blocks')}, timeouts ${sum('timeouts')} (on ${withTimeouts} devices), rejected ${sum('rejected')}, malformed ${sum('malformed')}`,
    );
    b.ctx.log(`ota: ${t.timeline[t.timeline.length - 1]}`);
    if (ok !== confirmed) b.notes.push(`run ${i + 1}: server counted ${confirmed} confirmed, fleet-sim reported ${ok}`);
    confirmed = Math.min(confirmed, ok);
  } catch {
    b.notes.push(`run ${i + 1}: no fleet-sim JSON report (exit ${String(code)}): ${fleet.err.slice(-300)}`);
  }
  return confirmed;
}
