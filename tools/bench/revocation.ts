/**
 * Revocation benchmark (issue 13, item 7): 1,000 devices online on a real mosquitto with a real
 * `fwseal serve` (the built CLI, a child process); a revocation list published with POST /api/root
 * (SPEC.md §12.9) reaches each device on the retained root topic, the device checks it (R1–R5) and
 * acknowledges with `online` keys 12–14 (SPEC.md §12.13). Per device: the time from the POST call
 * to its acknowledgement at a monitor subscribed to the status topics (the headline), next to the
 * server's own `fwseal_revocation_propagation_seconds`. Goal: p99 < 2 s, every device enforcing.
 *
 * Two fleets, one after the other, each with its own server and topic prefix: protocol clients
 * (revocation-devices.ts, one forked process, the device verifier, no flash) and `fwseal fleet-sim`
 * (real OtaClients: the agent stores the list power-fail safely on RAM flash). The reference,
 * measured in the same run: the broker's raw fan-out of a retained message of the announcement's
 * size to the same 1,000 clients, each echoing it (publish -> last echo at the monitor).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeRootAnnouncement } from '../../shared/ota/root.js';
import { detBytes, makeManifest, makeManifestEnvelope, makeRevocations, standardWorld } from '../../test/support/fixtures.js';
import { type Mosquitto } from '../../test/support/mosquitto.js';
import { type BenchContext, type Section, type SectionResult } from './common.js';
import { BenchProcesses, fdLimit, waitFor } from './ota-procs.js';
import { ProtocolFleet } from './revocation-fleet.js';
import { ECHO_PREFIX, Monitor, REF_TOPIC } from './revocation-monitor.js';
import { report } from './revocation-report.js';
import { type Results, type Round, type RoundEnv, referenceRound, revocationRound } from './revocation-rounds.js';
import { devicesAt, startServe } from './revocation-server.js';

export const DEVICES = 1000;
const CLASS = 'acme-gw';
const GROUP = 'bench-rev';

/** The objects of the section: trust bundle (file), one list per run (versions 1..runs, each revoking R1), the fleet-sim factory release. */
type RootFiles = {
  readonly trust: string;
  readonly trustBytes: Uint8Array;
  readonly lists: readonly Uint8Array[];
  readonly factory: string;
  readonly factoryImage: string;
};

type Phase = {
  readonly ctx: BenchContext;
  readonly procs: BenchProcesses;
  readonly broker: Mosquitto;
  readonly monitor: Monitor;
  readonly files: RootFiles;
  readonly r: Results;
};

export const revocation: Section = {
  name: 'revocation',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const cli = join(ctx.repoRoot, 'dist/host/cli.js');
    if (!existsSync(cli)) throw new Error(`${cli} is missing (npm run build)`);
    const t0 = Date.now();
    const procs = new BenchProcesses(cli, ctx.tmpDir);
    const files = writeFiles(ctx);
    const r: Results = { ref: [], clients: [], fleetSim: [], notes: [] };
    try {
      // sys_interval 1: $SYS/broker/bytes/* fresh every second; otherwise mosquitto's defaults, persistence off.
      const broker = await procs.broker(['sys_interval 1']);
      const monitor = await Monitor.connect(broker.url);
      try {
        const p: Phase = { ctx, procs, broker, monitor, files, r };
        await protocolClients(p);
        await fleetSim(p);
      } finally {
        await monitor.close();
      }
      const drops = broker
        .log()
        .split('\n')
        .filter((l) => /dropped/i.test(l));
      r.notes.push(`mosquitto log: ${drops.length} "messages are being dropped" notices${drops.length ? ` (first: ${drops[0]!.replace(/^\d+: /, '')})` : ''}`);
    } finally {
      await procs.closeAll();
    }
    r.notes.push(
      `connections: ${DEVICES} devices + serve + monitor on one mosquitto (one fd each there, ${DEVICES} in the fleet process); open-file limit ${fdLimit()}`,
      `section wall time ${((Date.now() - t0) / 1000).toFixed(1)} s (start-up of both fleets included)`,
    );
    return report(r, DEVICES, files.lists.length);
  },
};

function writeFiles(ctx: BenchContext): RootFiles {
  const w = standardWorld();
  const file = (name: string, bytes: Uint8Array) => {
    const p = join(ctx.tmpDir, name);
    writeFileSync(p, bytes);
    return p;
  };
  // Release key R1 leaked: every list revokes it (R5 keeps it revoked), signed by root keys A and B.
  const lists = Array.from({ length: ctx.runs }, (_, i) => makeRevocations({ version: i + 1, keyIds: [w.R1.keyId], signers: [w.A, w.B] }));
  // The factory release of fleet-sim's devices is signed by R2 + R3: the revocation leaves it valid.
  const image = detBytes(8192, 'bench revocation v1');
  const factory = makeManifestEnvelope(makeManifest(image, { deviceClass: CLASS, version: '1.0.0', securityCounter: 5, chunkSize: 4096 }), [w.R2, w.R3]);
  return { trust: file('trust.cbor', w.trust), trustBytes: w.trust, lists, factory: file('v1.cose', factory), factoryImage: file('v1.bin', image) };
}

/** The protocol clients: one forked process of DEVICES clients; per run the reference round, then a revocation round. */
async function protocolClients(p: Phase): Promise<void> {
  const { ctx, files, r } = p;
  const prefix = 'bench-rev-clients';
  const serve = await startServe(p.procs, p.broker.url, join(ctx.tmpDir, 'data-clients'), files.trust, prefix);
  await p.monitor.watch(prefix);
  ctx.log(`revocation: ${DEVICES} protocol clients connecting`);
  const { fleet, connectSeconds } = await ProtocolFleet.start({
    url: p.broker.url,
    prefix,
    group: GROUP,
    idPrefix: 'rc-',
    count: DEVICES,
    trust: Buffer.from(files.trustBytes).toString('base64'),
    refTopic: REF_TOPIC,
    echoPrefix: ECHO_PREFIX,
  });
  try {
    await devicesAt(serve, DEVICES, 0, 60_000);
    r.notes.push(`protocol clients: ${DEVICES} connected, subscribed and online in ${connectSeconds.toFixed(1)} s`);
    const env: RoundEnv = { broker: p.broker, monitor: p.monitor, serve, prefix, devices: DEVICES, fleetPid: fleet.pid };
    for (let i = 0; i < ctx.runs; i++) {
      const size = encodeRootAnnouncement({ trustVersion: 1, trust: files.trustBytes, revocations: files.lists[i]! }).length;
      ctx.log(`revocation: run ${i + 1}: reference fan-out of ${size} bytes`);
      r.ref.push(await referenceRound(env, size));
      ctx.log(`revocation: run ${i + 1}: list ${i + 1} to ${DEVICES} protocol clients`);
      r.clients.push(await revocationRound(env, files.lists[i]!, i + 1));
      ctx.log(`revocation: ${summary(r.clients[r.clients.length - 1]!)}`);
    }
    const c = await fleet.counters();
    r.notes.push(`protocol clients' counters: ${JSON.stringify(c)}`);
  } finally {
    await fleet.close();
    await p.procs.stop(serve.proc);
  }
}

/** `fwseal fleet-sim`: DEVICES real OtaClients on RAM flash in one process, a fresh server; per run a revocation round. */
async function fleetSim(p: Phase): Promise<void> {
  const { ctx, files, r } = p;
  const prefix = 'bench-rev-fleet';
  const serve = await startServe(p.procs, p.broker.url, join(ctx.tmpDir, 'data-fleet'), files.trust, prefix);
  await p.monitor.watch(prefix);
  ctx.log(`revocation: fleet-sim of ${DEVICES} devices starting`);
  const t0 = Date.now();
  const sim = p.procs.start('fwseal fleet-sim', [
    ...['fleet-sim', '--broker', p.broker.url, '--count', String(DEVICES), '--group', GROUP, '--trust', files.trust, '--device-class', CLASS],
    ...['--state', join(ctx.tmpDir, 'fleet'), '--factory', files.factory, '--factory-image', files.factoryImage, '--memory', '--slot-size', '16384'],
    ...['--id-prefix', 'rf-', '--prefix', prefix, '--json'],
  ]);
  try {
    await waitFor('fleet-sim to start', 5000, () => sim.child.pid !== undefined, 50, sim);
    await devicesAt(serve, DEVICES, 0, 120_000);
    r.notes.push(`fleet-sim: ${DEVICES} devices provisioned, connected and online in ${((Date.now() - t0) / 1000).toFixed(1)} s (process start included)`);
    const env: RoundEnv = { broker: p.broker, monitor: p.monitor, serve, prefix, devices: DEVICES, fleetPid: sim.child.pid };
    for (let i = 0; i < ctx.runs; i++) {
      ctx.log(`revocation: run ${i + 1}: list ${i + 1} to ${DEVICES} fleet-sim devices`);
      r.fleetSim.push(await revocationRound(env, files.lists[i]!, i + 1));
      ctx.log(`revocation: ${summary(r.fleetSim[r.fleetSim.length - 1]!)}`);
    }
  } finally {
    await p.procs.stop(sim, 20_000);
    await p.procs.stop(serve.proc);
  }
}

function summary(x: Round): string {
  const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`;
  return `list ${x.version}: p50 ${ms(x.p50)}, p99 ${ms(x.p99)}, max ${ms(x.max)}, ${x.enforcing} enforcing; broker sent ${x.bytes.sent} B; ${x.cpu}`;
}
