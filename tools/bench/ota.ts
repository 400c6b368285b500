/**
 * OTA benchmark (issue 5 item 8, issue 15 item 7): the real built CLI (`fwseal serve`, `fwseal
 * fleet-sim`) in separate processes, mosquitto on loopback, in four parts:
 *
 * (a) Delivery only, the verdict: a 1 MiB release (FWSEAL_BENCH_OTA_IMAGE_MIB) to DEVICES protocol devices (ota-light.ts, forked;
 *     they check every chunk, flash nothing, and send a device's status events) against mosquitto's
 *     raw fan-out of the same bytes to the same number of subscribers (the same forked processes),
 *     measured in the same run: raw best / delivery best, goal >= 0.5.
 * (b) What those campaigns cost: serve's and mosquitto's CPU seconds and the broker's bytes per
 *     delivered GiB; goal: serve CPU <= mosquitto CPU.
 * (c) Many light devices (FWSEAL_BENCH_OTA_DEVICES, default 10,000) through one campaign, with one
 *     serve on SQLite and with two on one PostgreSQL (ota-scale.ts).
 * Then, as information, the full-agent end-to-end row (fleet-sim's 200 simulated devices: it
 * measures their CPU more than the server's) with its lost updates, and the largest idle fleet.
 *
 * The brokers of (a)-(c) run mosquitto's defaults plus `sys_interval 1` (fresh $SYS counters) and
 * `max_queued_messages 100000`: at the default 1000, mosquitto drops messages queued for a server
 * under a herd of requests and status events (2,000 devices lost thousands: $SYS/broker/publish/
 * messages/dropped), and a campaign whose status events were dropped never completes.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from '../../test/support/fixtures.js';
import { type BenchContext, MiB, type Row, row, type Section, type SectionResult, type Verdict, valueRow } from './common.js';
import { type FanoutRun, rawFanout } from './fanout.js';
import {
  type CampaignTotals,
  CHUNK,
  CLASS,
  campaignRun,
  DEVICES,
  envCount,
  IMAGE_BYTES,
  IMAGE_MIB,
  type OtaBench,
  type Releases,
  SCALE_IMAGE_BYTES,
} from './ota-campaign.js';
import { type DeliveryRun, deliveryRun } from './ota-delivery.js';
import { ClientPool } from './ota-fleet.js';
import { measureIdleFleet } from './ota-idle.js';
import { BrokerBytes } from './ota-meter.js';
import { BenchProcesses, mosquittoPid } from './ota-procs.js';
import { deliveryRows, scaleRows } from './ota-report.js';
import { measureScale, scaleDevices } from './ota-scale.js';

const FANOUT_MESSAGE = 65536;
/** The brokers of the delivery and scale rows (see the header). */
const BROKER_CONF = ['sys_interval 1', 'max_queued_messages 100000'];

export const ota: Section = {
  name: 'ota',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const cli = join(ctx.repoRoot, 'dist/host/cli.js');
    if (!existsSync(cli)) throw new Error(`${cli} is missing (npm run build)`);
    const scale = scaleDevices();
    const procs = new BenchProcesses(cli, ctx.tmpDir);
    const rel = writeReleases(ctx);
    const rows: Row[] = [];
    const verdicts: Verdict[] = [];
    const notes: string[] = [];
    const t0 = Date.now();
    const phase = (what: string, since: number) => notes.push(`${what}: ${((Date.now() - since) / 1000).toFixed(0)} s of section time`);
    const parts = otaParts();
    if (parts.size < OTA_PARTS.length) notes.push(`parts run (FWSEAL_BENCH_OTA_PARTS): ${[...parts].join(', ')}`);
    try {
      // ---- (a), (b), and the full agent end to end: one broker ----
      const broker = await procs.broker(BROKER_CONF);
      const b: OtaBench = { ctx, procs, broker, rel, notes };
      if (parts.has('delivery') || parts.has('agent')) {
        const rawBest = await measureDelivery(b, rows, verdicts, notes);
        phase('raw fan-out and delivery only', t0);
        const t1 = Date.now();
        if (parts.has('agent')) await measureCampaigns(b, rawBest, rows, verdicts);
        phase('full agent end to end', t1);
        notes.push(dropNote(broker.log()));
      }
      await procs.stopBroker(broker);

      // ---- (c) many light devices: a fresh broker ----
      const t2 = Date.now();
      if (!parts.has('scale')) return result(scale.devices, rows, verdicts, notes, t0);
      if (scale.cut) notes.push(`scale: ${scale.cut}`);
      const sb = await procs.broker(BROKER_CONF);
      const scaleRel: Releases = { ...rel, v2: rel.scaleV2, v2Bin: rel.scaleV2Bin };
      scaleRows(await measureScale({ ctx, procs, broker: sb, rel: scaleRel, notes }, scale.devices), SCALE_IMAGE_BYTES, rows, notes);
      notes.push(`scale: ${dropNote(sb.log())}`);
      await procs.stopBroker(sb);
      phase(`scale (${scale.devices} devices, one and two instances)`, t2);

      // ---- the largest idle fleet ----
      if (parts.has('idle')) {
        const ib = await procs.broker(['sys_interval 1']);
        await measureIdleFleet(b, ib, Date.now(), rows);
      }
    } finally {
      await procs.closeAll();
    }
    return result(scale.devices, rows, verdicts, notes, t0);
  },
};

function result(devices: number, rows: Row[], verdicts: Verdict[], notes: string[], t0: number): SectionResult {
  notes.push(`section wall time ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  return {
    name: 'ota',
    title: `OTA: ${IMAGE_MIB} MiB to ${DEVICES} devices through mosquitto on loopback (delivery only vs raw fan-out; CPU and bytes per GiB; full agent), ${devices} light devices through one and two serve instances, largest idle fleet`,
    rows,
    verdicts,
    notes,
  };
}

/** The section's parts, in order; FWSEAL_BENCH_OTA_PARTS=delivery,scale runs only those (agent includes delivery: it needs the raw fan-out's best). */
const OTA_PARTS = ['delivery', 'agent', 'scale', 'idle'] as const;

function otaParts(env: NodeJS.ProcessEnv = process.env): Set<string> {
  const text = env.FWSEAL_BENCH_OTA_PARTS;
  if (text === undefined || text === '') return new Set(OTA_PARTS);
  const asked = text.split(',').map((p) => p.trim());
  const unknown = asked.filter((p) => !(OTA_PARTS as readonly string[]).includes(p));
  if (unknown.length) throw new Error(`FWSEAL_BENCH_OTA_PARTS: unknown part(s) ${unknown.join(', ')}; known: ${OTA_PARTS.join(', ')}`);
  return new Set(asked);
}

function dropNote(log: string): string {
  const drops = log.split('\n').filter((l) => /dropped/i.test(l));
  return `mosquitto log: ${drops.length} "messages are being dropped" notices${drops.length ? ` (first: ${drops[0]!.replace(/^\d+: /, '')})` : ''}`;
}

/** Releases: v1 (factory, 40 000 bytes) and v2 (IMAGE_MIB), 4096-byte chunks, signed R1+R2; a small factory release for the idle fleet; the scale rows' 64 KiB v2. */
function writeReleases(ctx: BenchContext): Releases {
  const w = standardWorld();
  const file = (name: string, bytes: Uint8Array) => {
    const p = join(ctx.tmpDir, name);
    writeFileSync(p, bytes);
    return p;
  };
  const release = (name: string, image: Uint8Array, version: string, securityCounter: number) => {
    const envelope = makeManifestEnvelope(makeManifest(image, { deviceClass: CLASS, version, securityCounter, chunkSize: CHUNK }), [w.R1, w.R2]);
    return { manifest: file(`${name}.cose`, envelope), image: file(`${name}.bin`, image) };
  };
  const v1 = release('v1', detBytes(40_000, 'bench ota v1'), '1.0.0', 5);
  const v2 = release('v2', detBytes(IMAGE_BYTES, 'bench ota v2'), '2.0.0', 6);
  const idle = release('idle-v1', detBytes(8192, 'bench idle v1'), '1.0.0', 5);
  const scale = release('scale-v2', detBytes(SCALE_IMAGE_BYTES, 'bench ota scale v2'), '2.0.0', 6);
  return {
    trust: file('trust.cbor', w.trust),
    ...{ v1: v1.manifest, v1Bin: v1.image, v2: v2.manifest, v2Bin: v2.image },
    ...{ idleV1: idle.manifest, idleV1Bin: idle.image, scaleV2: scale.manifest, scaleV2Bin: scale.image },
    slotSize: Math.ceil((IMAGE_BYTES + CHUNK) / 4096) * 4096,
  };
}

/**
 * (a) and (b): a warm-up fan-out, then per run mosquitto's raw fan-out and a delivery-only campaign,
 * alternating, one pool of forked client processes for both; the raw fan-out's best time.
 */
async function measureDelivery(b: OtaBench, rows: Row[], verdicts: Verdict[], notes: string[]): Promise<number> {
  const { ctx } = b;
  const bytes = await BrokerBytes.connect(b.broker.url);
  // FWSEAL_BENCH_OTA_CHILDREN=N: the clients of both sides in N forked processes (default 1; for machines with more cores).
  const pool = ClientPool.create(DEVICES, envCount('FWSEAL_BENCH_OTA_CHILDREN', 1, 16));
  const raw: FanoutRun[] = [];
  const runs: DeliveryRun[] = [];
  try {
    const fan = () =>
      rawFanout({
        url: b.broker.url,
        subscribers: DEVICES,
        bytes: IMAGE_BYTES,
        messageBytes: FANOUT_MESSAGE,
        pool,
        broker: { pid: mosquittoPid(b.broker), bytes },
      });
    ctx.log(`ota: warm-up fan-out (not counted)`);
    await fan();
    for (let i = 0; i < ctx.runs; i++) {
      ctx.log(`ota: raw fan-out ${DEVICES} x ${IMAGE_BYTES} bytes (run ${i + 1})`);
      raw.push(await fan());
      runs.push(await deliveryRun(b, bytes, pool, DEVICES, i));
    }
  } finally {
    await pool.close();
    await bytes.close();
  }
  deliveryRows(raw, runs, IMAGE_BYTES, rows, verdicts, notes);
  notes.push(
    `delivery only: ${DEVICES} devices in ${pool.pids.length === 1 ? 'one forked process' : `${pool.pids.length} forked processes`} (the raw fan-out's subscribers in the same); time from the first device seeing the announcement to the last device's last chunk checked; chunk ${CHUNK}, default block size and --coalesce-ms, --waves 100, response QoS 0 on the data topic`,
  );
  return Math.min(...raw.map((r) => r.seconds));
}

/** The full-agent end-to-end runs and their rows (information, not a verdict): goodput, ratio to raw fan-out, CPU per device, lost updates, peak RSS. */
async function measureCampaigns(b: OtaBench, rawBest: number, rows: Row[], verdicts: Verdict[]): Promise<void> {
  const { ctx, notes } = b;
  const t: CampaignTotals = { seconds: [], lostPerRun: [], serverRss: [], fleetRss: [], cpuSplits: [], fleetCpuPerRun: [], timeline: [] };
  for (let i = 0; i < ctx.runs; i++) await campaignRun(b, i, t);
  const { lostPerRun, serverRss, fleetRss, fleetCpuPerRun } = t;
  const otaRow = row(
    `full agent: ${DEVICES} devices x ${IMAGE_MIB} MiB (serve + fleet-sim, create -> all confirmed)`,
    DEVICES * IMAGE_BYTES,
    { seconds: t.seconds, rssKiB: [] },
    rawBest,
    'information (fleet-sim simulates the flash and the agent of every device); ratio: raw fan-out best / this best',
  );
  rows.push(otaRow);
  if (fleetCpuPerRun.length) {
    // What simulating the devices costs, against everything this machine has for a run at the delivery goal (2 x raw best on every core).
    const perDevice = (Math.min(...fleetCpuPerRun) / DEVICES) * 1000;
    const cores = availableParallelism();
    rows.push(
      valueRow(
        `fleet-sim CPU per simulated device (${IMAGE_MIB} MiB update, best run)`,
        Math.round(perDevice * 100) / 100,
        'ms',
        `fleet-sim alone used ${Math.min(...fleetCpuPerRun).toFixed(2)} core-s; 2 x raw best x ${cores} cores = ${(2 * rawBest * cores).toFixed(2)} core-s`,
      ),
    );
  }
  const lost = Math.max(...lostPerRun);
  rows.push(valueRow('full agent: lost updates (devices not confirmed, worst run)', lost, 'devices', `per run: ${lostPerRun.join(', ')}`));
  if (serverRss.length) rows.push(valueRow('full agent: peak RSS fwseal serve', Math.round(Math.max(...serverRss) / 102.4) / 10, 'MiB'));
  if (fleetRss.length)
    rows.push(
      valueRow(
        `full agent: peak RSS fwseal fleet-sim (${DEVICES} devices, RAM flash)`,
        Math.round(Math.max(...fleetRss) / 102.4) / 10,
        'MiB',
        `RAM flash ${((2 * b.rel.slotSize) / MiB).toFixed(1)}+ MiB per device`,
      ),
    );
  // As in powercut: value 1 = no lost update (the goal is 0 lost; the table prints goals as >=).
  verdicts.push({
    name: '0 lost updates',
    goal: 1,
    value: lost === 0 ? 1 : 0,
    pass: lost === 0,
    basis: `devices not confirmed per run: ${lostPerRun.join(', ')}`,
  });
  notes.push(...t.cpuSplits, ...t.timeline);
  notes.push(
    `full agent time: from campaign create (image upload included) to the server counting ${DEVICES} confirmed (GET /api/campaigns/<id> every 50 ms); chunk ${CHUNK}, server default block size, --waves 100`,
  );
}
