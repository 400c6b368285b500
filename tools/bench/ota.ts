/**
 * OTA benchmark (issue 5, item 8): a 1 MiB image to 200 simulated devices through mosquitto on
 * loopback, with the real built CLI in separate processes (`fwseal serve`, `fwseal fleet-sim`), timed
 * from `fwseal campaign create` to the moment the server has all 200 confirmed; against mosquitto's
 * raw fan-out of the same bytes to the same number of subscribers measured in the same run (goal:
 * raw best / OTA best >= 0.5) with 0 lost updates. Then the largest idle fleet one fleet-sim process
 * holds connected to one mosquitto on this machine (steps of --count, each its own process).
 *
 * Mosquitto runs with its default limits for the OTA measurement (persistence off); the idle-fleet
 * broker only adds `sys_interval 1` so $SYS/broker/clients/connected is fresh.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { main } from '../../host/cli.js';
import { type Mosquitto, startMosquitto } from '../../test/support/mosquitto.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from '../../test/support/fixtures.js';
import { type BenchContext, MiB, type Row, type Section, type SectionResult, type Verdict, row, valueRow } from './common.js';
import { rawFanout } from './fanout.js';
import { lightFleet } from './ota-light.js';

const DEVICES = 200;
const IMAGE_BYTES = 1 << 20;
const CHUNK = 4096;
const FANOUT_MESSAGE = 65536;
const IDLE_STEPS = [1000, 4000, 10000, 15000, 19500];
/** fleet-sim's --count limit (host/commands/fleet.ts MAX_DEVICES). */
const FLEET_MAX = 10_000;
/** No new idle step after this long into the section (keeps the section near 5 minutes). */
const IDLE_BUDGET_MS = 220_000;
const IDLE_CONNECT_S = 60;
const IDLE_HOLD_S = 10;
const CLASS = 'acme-gw';
const CLK_TCK = 100;

type Proc = { child: ChildProcess; out: string; err: string; exited: Promise<number | null>; rssFile: string; label: string };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** utime + stime of a process, seconds (null when it is gone). */
function cpuSeconds(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

function vmHwmKiB(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The mosquitto process started with this broker's config (startMosquitto does not expose its pid). */
function mosquittoPid(broker: Mosquitto): number | undefined {
  const conf = join(broker.dir, 'mosquitto.conf');
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(conf)) return Number(e);
    } catch {
      // gone
    }
  }
  return undefined;
}

async function getJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  return (await r.json()) as T;
}

export const ota: Section = {
  name: 'ota',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const cli = join(ctx.repoRoot, 'dist/host/cli.js');
    if (!existsSync(cli)) throw new Error(`${cli} is missing (npm run build)`);
    const procs = new Set<Proc>();
    const brokers = new Set<Mosquitto>();
    const preload = join(ctx.tmpDir, 'exit-stats.cjs');
    // Peak RSS and CPU of a Node child at exit (it may exit before we can read /proc).
    writeFileSync(preload, `process.on('exit', () => { const f = process.env.FWSEAL_BENCH_STATS; if (f) { const c = process.cpuUsage(); require('node:fs').writeFileSync(f, JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS, cpu: (c.user + c.system) / 1e6 })); } });\n`);
    let seq = 0;

    const start = (label: string, args: string[]): Proc => {
      const rssFile = join(ctx.tmpDir, `stats-${++seq}.json`);
      // FWSEAL_BENCH_CPU_PROF=DIR: a V8 CPU profile of every child (written when it exits) into DIR.
      const prof = process.env.FWSEAL_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FWSEAL_BENCH_CPU_PROF}`] : [];
      const child = spawn(process.execPath, [...prof, '--require', preload, cli, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FWSEAL_BENCH_STATS: rssFile },
      });
      const p: Proc = { child, out: '', err: '', rssFile, label, exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
      child.stdout!.on('data', (d: Buffer) => { p.out += d.toString(); });
      child.stderr!.on('data', (d: Buffer) => { if (p.err.length < 1 << 20) p.err += d.toString(); });
      procs.add(p);
      void p.exited.then(() => procs.delete(p));
      return p;
    };
    const stop = async (p: Proc, ms = 10_000): Promise<void> => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      p.child.kill('SIGTERM');
      const t = setTimeout(() => p.child.kill('SIGKILL'), ms);
      await p.exited;
      clearTimeout(t);
    };
    const exitStats = (p: Proc): { maxRssKiB: number; cpu: number } | null => {
      try {
        return JSON.parse(readFileSync(p.rssFile, 'utf8')) as { maxRssKiB: number; cpu: number };
      } catch {
        return null;
      }
    };
    const broker = async (extra: string[] = []) => {
      const b = await startMosquitto({ persistence: false, extra });
      brokers.add(b);
      return b;
    };
    const waitFor = async (what: string, ms: number, check: () => boolean | Promise<boolean>, every = 50, alive?: Proc) => {
      const deadline = Date.now() + ms;
      for (;;) {
        if (await check()) return;
        if (alive && alive.child.exitCode !== null) throw new Error(`${alive.label} exited with ${alive.child.exitCode} while waiting for ${what}: ${alive.err.slice(-500)}`);
        if (Date.now() > deadline) throw new Error(`timed out (${ms / 1000} s) waiting for ${what}`);
        await sleep(every);
      }
    };

    // Releases: v1 (factory, 40 000 bytes) and v2 (1 MiB), 4096-byte chunks, signed R1+R2.
    const w = standardWorld();
    const file = (name: string, bytes: Uint8Array) => {
      const p = join(ctx.tmpDir, name);
      writeFileSync(p, bytes);
      return p;
    };
    const trust = file('trust.cbor', w.trust);
    const v1Image = detBytes(40_000, 'bench ota v1');
    const v2Image = detBytes(IMAGE_BYTES, 'bench ota v2');
    const v1 = file('v1.cose', makeManifestEnvelope(makeManifest(v1Image, { deviceClass: CLASS, version: '1.0.0', securityCounter: 5, chunkSize: CHUNK }), [w.R1, w.R2]));
    const v1Bin = file('v1.bin', v1Image);
    const v2 = file('v2.cose', makeManifestEnvelope(makeManifest(v2Image, { deviceClass: CLASS, version: '2.0.0', securityCounter: 6, chunkSize: CHUNK }), [w.R1, w.R2]));
    const v2Bin = file('v2.bin', v2Image);
    const smallImage = detBytes(8192, 'bench idle v1');
    const idleV1 = file('idle-v1.cose', makeManifestEnvelope(makeManifest(smallImage, { deviceClass: CLASS, version: '1.0.0', securityCounter: 5, chunkSize: CHUNK }), [w.R1, w.R2]));
    const idleV1Bin = file('idle-v1.bin', smallImage);
    const slotSize = Math.ceil((IMAGE_BYTES + CHUNK) / 4096) * 4096;

    const rows: Row[] = [];
    const verdicts: Verdict[] = [];
    const notes: string[] = [];
    const sectionT0 = Date.now();
    try {
      // ---- mosquitto's raw fan-out (the reference), default limits ----
      const b = await broker();
      /** `fwseal serve` on this broker with its data under runDir; resolves with its HTTP API address. */
      const serve = async (runDir: string): Promise<{ server: Proc; api: string }> => {
        const server = start('fwseal serve', ['serve', '--broker', b.url, '--data', join(runDir, 'data'), '--trust', trust, '--http', '127.0.0.1:0']);
        let api = '';
        await waitFor('the server address line', 20_000, () => {
          const m = server.out.match(/HTTP API on (http:\/\/\S+)/);
          if (m) api = m[1];
          return !!m;
        }, 50, server);
        return { server, api };
      };
      const rawSeconds: number[] = [];
      for (let i = 0; i < ctx.runs; i++) {
        ctx.log(`ota: raw fan-out ${DEVICES} x ${IMAGE_BYTES} bytes (run ${i + 1})`);
        const r = await rawFanout(b.url, DEVICES, IMAGE_BYTES, FANOUT_MESSAGE);
        rawSeconds.push(r.seconds);
      }
      const aggregate = DEVICES * IMAGE_BYTES;
      const rawRow = row(`raw fan-out: ${DEVICES} subscribers x 1 MiB (QoS 1, 64 KiB messages)`, aggregate, { seconds: rawSeconds, rssKiB: [] }, null);
      rows.push(rawRow);

      // ---- the OTA campaign: serve + fleet-sim + campaign create, fresh data and fleet per run ----
      const otaSeconds: number[] = [];
      const lostPerRun: number[] = [];
      const serverRss: number[] = [];
      const fleetRss: number[] = [];
      const cpuSplits: string[] = [];
      const fleetCpuPerRun: number[] = [];
      const cores = availableParallelism();
      const timeline: string[] = [];
      for (let i = 0; i < ctx.runs; i++) {
        const group = `bench-g${i + 1}`;
        const runDir = join(ctx.tmpDir, `run-${i + 1}`);
        mkdirSync(runDir);
        ctx.log(`ota: campaign run ${i + 1}: serve, ${DEVICES} devices, 1 MiB`);
        const { server, api } = await serve(runDir);
        const fleet = start('fwseal fleet-sim', ['fleet-sim', '--broker', b.url, '--count', String(DEVICES), '--group', group, '--trust', trust, '--device-class', CLASS,
          '--state', join(runDir, 'fleet'), '--factory', v1, '--factory-image', v1Bin, '--memory', '--slot-size', String(slotSize),
          '--id-prefix', `r${i + 1}-`, '--exit-after-update', '--json']);
        try {
          await waitFor(`${DEVICES} devices on the server`, 60_000, async () => {
            const d = await getJson<{ devices: { group: string }[] }>(`${api}/api/devices`);
            return d.devices.filter((x) => x.group === group).length >= DEVICES;
          }, 200, fleet);
          const mpid = mosquittoPid(b);
          const cpu0 = { mosquitto: cpuSeconds(mpid), server: cpuSeconds(server.child.pid), fleet: cpuSeconds(fleet.child.pid), bench: process.cpuUsage() };
          const t0 = performance.now();
          let out = '';
          let err = '';
          const status = await main(['campaign', 'create', '--server', api, '--manifest', v2, '--image', v2Bin, '--group', group, '--waves', '100'],
            { stdout: (t) => { out += t; }, stderr: (t) => { err += t; }, stderrIsTty: false });
          if (status !== 0) throw new Error(`campaign create exited ${status}: ${err}`);
          const id = out.trim();
          const tCreate = performance.now();
          let counts: Record<string, number> = {};
          let state = '';
          let tDone = 0;
          let tFirst = 0;
          let tHalf = 0;
          let tDownloading = 0;
          await waitFor(`all ${DEVICES} devices to finish campaign ${id}`, 180_000, async () => {
            const d = await getJson<{ state: string; counts: Record<string, number> }>(`${api}/api/campaigns/${id}`);
            counts = d.counts;
            state = d.state;
            const c = counts.confirmed ?? 0;
            if (c > 0 && !tFirst) tFirst = performance.now();
            if (c >= DEVICES / 2 && !tHalf) tHalf = performance.now();
            if ((counts.downloading ?? 0) > 0 && !tDownloading) tDownloading = performance.now();
            if (c >= DEVICES) tDone = performance.now();
            return (counts.confirmed ?? 0) + (counts.rejected ?? 0) + (counts.failed ?? 0) >= DEVICES || ['aborted', 'halted'].includes(state);
          }, 50);
          if (!tDone) tDone = performance.now();
          const seconds = (tDone - t0) / 1000;
          const cpu1 = { mosquitto: cpuSeconds(mpid), server: cpuSeconds(server.child.pid), fleet: cpuSeconds(fleet.child.pid), bench: process.cpuUsage(cpu0.bench) };
          const serverHwm = vmHwmKiB(server.child.pid);
          // fleet-sim exits by itself (--exit-after-update) once every device ended its campaign.
          const code = await Promise.race([fleet.exited, sleep(30_000).then(() => 'timeout' as const)]);
          if (code === 'timeout') await stop(fleet);
          let confirmed = counts.confirmed ?? 0;
          try {
            const report = JSON.parse(fleet.out) as { devices: { outcome: string | null; version: string | null; requests: number; blocks: number; timeouts: number; rejected: number; malformed: number }[] };
            const ok = report.devices.filter((d) => d.outcome === 'confirmed' && d.version === '2.0.0').length;
            const sum = (k: 'requests' | 'blocks' | 'timeouts' | 'rejected' | 'malformed') => report.devices.reduce((a, d) => a + (d[k] ?? 0), 0);
            const withTimeouts = report.devices.filter((d) => d.timeouts > 0).length;
            const ms = (t: number) => (t ? `${((t - t0) / 1000).toFixed(2)} s` : '-');
            timeline.push(`run ${i + 1}: create returned ${ms(tCreate)}, first downloading seen ${ms(tDownloading)}, first confirmed ${ms(tFirst)}, half ${ms(tHalf)}, all ${ms(tDone)}; fleet-sim totals: requests ${sum('requests')}, blocks ${sum('blocks')}, timeouts ${sum('timeouts')} (on ${withTimeouts} devices), rejected ${sum('rejected')}, malformed ${sum('malformed')}`);
            ctx.log(`ota: ${timeline[timeline.length - 1]}`);
            if (ok !== confirmed) notes.push(`run ${i + 1}: server counted ${confirmed} confirmed, fleet-sim reported ${ok}`);
            confirmed = Math.min(confirmed, ok);
          } catch {
            notes.push(`run ${i + 1}: no fleet-sim JSON report (exit ${String(code)}): ${fleet.err.slice(-300)}`);
          }
          const fs = exitStats(fleet);
          const fleetCpu = cpu1.fleet ?? (fs ? fs.cpu : null);
          if (fleetCpu !== null && cpu0.fleet !== null) fleetCpuPerRun.push(fleetCpu - cpu0.fleet);
          const d = (a: number | null, z: number | null) => (a === null || z === null ? '?' : `${(z - a).toFixed(1)} (${Math.round(((z - a) / seconds) * 100)}% of a core)`);
          cpuSplits.push(`run ${i + 1}: ${seconds.toFixed(2)} s wall; CPU s mosquitto ${d(cpu0.mosquitto, cpu1.mosquitto)}, serve ${d(cpu0.server, cpu1.server)}, fleet-sim ${d(cpu0.fleet, fleetCpu)}${cpu1.fleet === null ? ' (to its exit)' : ''}, bench ${((cpu1.bench.user + cpu1.bench.system) / 1e6).toFixed(1)}; campaign ${state}, counts ${JSON.stringify(counts)}`);
          ctx.log(`ota: ${cpuSplits[cpuSplits.length - 1]}`);
          otaSeconds.push(seconds);
          lostPerRun.push(DEVICES - confirmed);
          if (serverHwm !== null) serverRss.push(serverHwm);
          if (fs) fleetRss.push(fs.maxRssKiB);
        } finally {
          await stop(fleet);
          await stop(server);
          const ss = exitStats(server);
          if (ss && serverRss.length < otaSeconds.length) serverRss.push(ss.maxRssKiB);
          rmSync(runDir, { recursive: true, force: true });
        }
      }
      const otaRow = row(`OTA: ${DEVICES} devices x 1 MiB (serve + fleet-sim, create -> all confirmed)`, aggregate, { seconds: otaSeconds, rssKiB: [] }, null,
        'MB/s = aggregate goodput (devices x image bytes / wall time)');
      rows.push(otaRow);
      const ratio = rawRow.bestSeconds / otaRow.bestSeconds;
      rows.push(valueRow('ratio: raw fan-out best / OTA best', ratio, 'x', 'goal >= 0.5'));
      if (fleetCpuPerRun.length) {
        // The goal in CPU terms: at ratio 0.5 the whole run may take 2 x raw best of wall time, i.e.
        // at most that many seconds times the cores of this machine for everything (broker, server,
        // and the simulation of 200 devices); what fleet-sim alone needed says whether it can fit.
        const perDevice = (Math.min(...fleetCpuPerRun) / DEVICES) * 1000;
        rows.push(valueRow('fleet-sim CPU per simulated device (1 MiB update, best run)', Math.round(perDevice * 100) / 100, 'ms',
          `the budget at the goal: 2 x ${rawRow.bestSeconds.toFixed(3)} s x ${cores} cores = ${(2 * rawRow.bestSeconds * cores).toFixed(2)} core-s for everything; fleet-sim alone used ${Math.min(...fleetCpuPerRun).toFixed(2)}`));
      }
      const lost = Math.max(...lostPerRun);
      rows.push(valueRow('lost updates (devices not confirmed, worst run)', lost, 'devices', `per run: ${lostPerRun.join(', ')}`));
      if (serverRss.length) rows.push(valueRow('peak RSS fwseal serve', Math.round(Math.max(...serverRss) / 102.4) / 10, 'MiB'));
      if (fleetRss.length) rows.push(valueRow(`peak RSS fwseal fleet-sim (${DEVICES} devices, RAM flash)`, Math.round(Math.max(...fleetRss) / 102.4) / 10, 'MiB',
        `RAM flash ${(2 * slotSize / MiB).toFixed(1)}+ MiB per device`));
      verdicts.push({ name: 'OTA vs raw fan-out', goal: 0.5, value: ratio, pass: ratio >= 0.5, basis: `raw best ${rawRow.bestSeconds.toFixed(3)} s / OTA best ${otaRow.bestSeconds.toFixed(3)} s` });
      // As in powercut: value 1 = no lost update (the goal is 0 lost; the table prints goals as >=).
      verdicts.push({ name: '0 lost updates', goal: 1, value: lost === 0 ? 1 : 0, pass: lost === 0, basis: `devices not confirmed per run: ${lostPerRun.join(', ')}` });
      notes.push(...cpuSplits, ...timeline);
      notes.push(`OTA time: from campaign create (image upload included) to the server counting ${DEVICES} confirmed (GET /api/campaigns/<id> every 50 ms); chunk ${CHUNK}, server default block size, --waves 100, mosquitto defaults, persistence off`);
      // ---- delivery only: the same campaign to protocol clients that check chunks but simulate no flash ----
      const lightSeconds: number[] = [];
      for (let i = 0; i < ctx.runs; i++) {
        const group = `bench-light${i + 1}`;
        const runDir = join(ctx.tmpDir, `light-${i + 1}`);
        mkdirSync(runDir);
        ctx.log(`ota: delivery-only run ${i + 1}: serve, ${DEVICES} protocol clients, 1 MiB`);
        const { server, api } = await serve(runDir);
        let fleet: Awaited<ReturnType<typeof lightFleet>> | null = null;
        try {
          fleet = await lightFleet(b.url, DEVICES, group);
          await waitFor(`${DEVICES} protocol clients on the server`, 60_000, async () => {
            const d = await getJson<{ devices: { group: string }[] }>(`${api}/api/devices`);
            return d.devices.filter((x) => x.group === group).length >= DEVICES;
          }, 200, server);
          const t0 = performance.now();
          let err = '';
          const status = await main(['campaign', 'create', '--server', api, '--manifest', v2, '--image', v2Bin, '--group', group, '--waves', '100'],
            { stdout: () => {}, stderr: (t) => { err += t; }, stderrIsTty: false });
          if (status !== 0) throw new Error(`campaign create exited ${status}: ${err}`);
          await Promise.race([fleet.done, sleep(120_000).then(() => { throw new Error('delivery-only run did not finish in 120 s'); })]);
          lightSeconds.push((performance.now() - t0) / 1000);
        } finally {
          await fleet?.close();
          await stop(server);
          rmSync(runDir, { recursive: true, force: true });
        }
      }
      const lightRow = row(`delivery only: ${DEVICES} protocol clients x 1 MiB (serve, multicast; every chunk checked, no flash)`, aggregate, { seconds: lightSeconds, rssKiB: [] }, null,
        'what server + broker deliver when the devices cost nothing: the same protocol, no agent, no simulated flash');
      rows.push(lightRow);
      const lightRatio = rawRow.bestSeconds / lightRow.bestSeconds;
      rows.push(valueRow('ratio: raw fan-out best / delivery-only best', lightRatio, 'x', 'goal >= 0.5 (delivery system alone)'));
      verdicts.push({ name: 'delivery only vs raw fan-out', goal: 0.5, value: lightRatio, pass: lightRatio >= 0.5, basis: `raw best ${rawRow.bestSeconds.toFixed(3)} s / delivery best ${lightRow.bestSeconds.toFixed(3)} s` });

      const drops = b.log().split('\n').filter((l) => /dropped/i.test(l));
      notes.push(`mosquitto log: ${drops.length} "messages are being dropped" notices${drops.length ? ` (first: ${drops[0].replace(/^\d+: /, '')})` : ''}`);
      await b.stop();
      brokers.delete(b);

      // ---- the largest idle fleet ----
      const ib = await broker(['sys_interval 1']);
      const mon = await mqtt.connectAsync(ib.url, { protocolVersion: 4, clientId: `bench-mon-${process.pid}`, reconnectPeriod: 0 });
      let connected = 0;
      mon.on('message', (_t, payload) => { connected = Number(payload.toString()); });
      await mon.subscribeAsync('$SYS/broker/clients/connected', { qos: 0 });
      const mpid = mosquittoPid(ib);
      let held = 0;
      let heldRss = 0;
      let heldBrokerRss: number | null = null;
      const idleNotes: string[] = [];
      try {
        // The broker's count includes this monitor: wait for a $SYS update that shows it.
        await waitFor('$SYS/broker/clients/connected', 5000, () => connected >= 1, 100);
        const base = connected;
        for (const n of IDLE_STEPS) {
          if (Date.now() - sectionT0 > IDLE_BUDGET_MS) {
            idleNotes.push(`stopped before ${n}: section time budget`);
            break;
          }
          // fleet-sim takes at most FLEET_MAX devices: larger steps run several processes.
          const parts = Array.from({ length: Math.ceil(n / FLEET_MAX) }, (_, k) => Math.min(FLEET_MAX, n - k * FLEET_MAX));
          ctx.log(`ota: idle fleet of ${n} (${parts.length} fleet-sim process${parts.length > 1 ? 'es' : ''})`);
          const t0 = Date.now();
          const fleets = parts.map((count, k) => start('fwseal fleet-sim', ['fleet-sim', '--broker', ib.url, '--count', String(count), '--group', `idle-${n}`, '--trust', trust,
            '--device-class', CLASS, '--state', join(ctx.tmpDir, `idle-${n}-${k}`), '--factory', idleV1, '--factory-image', idleV1Bin, '--memory', '--slot-size', '16384',
            '--id-prefix', `i${n}-${k}-`, '--json']));
          const anyExited = () => fleets.find((f) => f.child.exitCode !== null || f.child.signalCode !== null);
          let ok = false;
          try {
            await waitFor(`${n} idle devices connected`, IDLE_CONNECT_S * 1000, () => {
              const gone = anyExited();
              if (gone) throw new Error(`fleet-sim exited with ${gone.child.exitCode ?? gone.child.signalCode}: ${gone.err.slice(-300).trim()}`);
              return connected - base >= n;
            }, 200);
            const up = (Date.now() - t0) / 1000;
            const holdEnd = Date.now() + IDLE_HOLD_S * 1000;
            let min = n;
            while (Date.now() < holdEnd) {
              await sleep(500);
              min = Math.min(min, connected - base);
              if (anyExited()) break;
            }
            ok = min >= n && !anyExited();
            const rssAll = fleets.map((f) => vmHwmKiB(f.child.pid));
            const rss = rssAll.every((x) => x !== null) ? rssAll.reduce((a: number, x) => a + (x ?? 0), 0) : null;
            const brss = vmHwmKiB(mpid);
            idleNotes.push(`${n}: ${ok ? `held ${IDLE_HOLD_S} s` : `dropped to ${min}`}; all connected after ${up.toFixed(1)} s (process start included); fleet-sim peak RSS ${rss === null ? '?' : (rss / 1024).toFixed(0)} MiB${parts.length > 1 ? ` (sum of ${parts.length})` : ''}, mosquitto ${brss === null ? '?' : (brss / 1024).toFixed(0)} MiB`);
            if (ok) {
              held = n;
              heldRss = rss ?? 0;
              heldBrokerRss = brss;
            }
          } catch (e) {
            idleNotes.push(`${n}: failed: ${(e as Error).message} (connected ${connected - base})`);
          } finally {
            await Promise.all(fleets.map((f) => stop(f, 20_000)));
            for (let k = 0; k < parts.length; k++) rmSync(join(ctx.tmpDir, `idle-${n}-${k}`), { recursive: true, force: true });
          }
          if (!ok) break;
          await waitFor('the idle fleet to disconnect', 30_000, () => connected - base <= 0, 200).catch(() => idleNotes.push(`${n}: broker still counted ${connected - base} clients 30 s after the fleet stopped`));
        }
      } finally {
        await mon.endAsync(true);
      }
      rows.push(valueRow('largest idle fleet held connected (one mosquitto)', held, 'devices',
        `steps ${IDLE_STEPS.join(', ')}, <= ${FLEET_MAX} devices per fleet-sim process; ${IDLE_HOLD_S} s held`));
      if (held) {
        rows.push(valueRow('fleet-sim RSS per idle device', Math.round((heldRss / held) * 10) / 10, 'KiB', `16 KiB slots in RAM (--memory), peak ${(heldRss / 1024).toFixed(0)} MiB at ${held}`));
        if (heldBrokerRss !== null) rows.push(valueRow('mosquitto RSS per idle client', Math.round((heldBrokerRss / held) * 10) / 10, 'KiB'));
      }
      notes.push(`idle fleet (mosquitto defaults + sys_interval 1, count from $SYS/broker/clients/connected): ${idleNotes.join('; ')}`);
      notes.push(`idle fleet bound: open-file limit ${fdLimit()} (inherited by mosquitto, one fd per client), so ${IDLE_STEPS[IDLE_STEPS.length - 1]} is the last step; beyond it needs a higher ulimit -n, not more RAM or CPU`);
    } finally {
      for (const p of [...procs]) await stop(p, 5000);
      for (const b of [...brokers]) await b.stop();
    }
    return { name: 'ota', title: `OTA: 1 MiB to ${DEVICES} simulated devices through mosquitto on loopback, against raw fan-out; largest idle fleet`, rows, verdicts, notes };
  },
};

function fdLimit(): string {
  try {
    const m = readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/);
    return m ? `${m[1]} soft / ${m[2]} hard` : '?';
  } catch {
    return '?';
  }
}
