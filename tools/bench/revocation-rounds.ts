/**
 * One round of the "revocation" section (tools/bench/revocation.ts): a list published with
 * POST /api/root to a fleet that is online, timed per device from the call to the device's
 * acknowledgement at the monitor; and the reference round, the same broker's raw fan-out of a
 * retained message of the same size to the same subscribers, each echoing it at once.
 */

import { nodeSha256 } from '../../host/hash.js';
import { parseEnvelope } from '../../shared/cose.js';
import { type Mosquitto } from '../../test/support/mosquitto.js';
import { cpuSeconds, mosquittoPid } from './ota-procs.js';
import { type BrokerBytes, type Monitor, percentile } from './revocation-monitor.js';
import { devicesAt, histogramDelta, listPublishedAt, publishList, rootMetrics, type Serve } from './revocation-server.js';

/** A round gives up waiting for acknowledgements after this long (the goal is 2 s). */
const ROUND_TIMEOUT_MS = 30_000;

/** What a round runs against: broker, monitor, server, the fleet's size and its process (for CPU). */
export type RoundEnv = {
  readonly broker: Mosquitto;
  readonly monitor: Monitor;
  readonly serve: Serve;
  readonly prefix: string;
  readonly devices: number;
  readonly fleetPid: number | undefined;
};

/** One revocation round: per-device times (s, ascending), counts, bytes, the server's view, CPU. */
export type Round = {
  readonly version: number;
  readonly times: readonly number[];
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly enforcing: number;
  /** POST answered, and the server's acceptance of the list (its clock, relative to the call), ms. */
  readonly answeredMs: number;
  readonly acceptedMs: number | null;
  readonly bytes: BrokerBytes;
  readonly monitorCopy: number;
  readonly server: { readonly count: number; readonly mean: number; readonly bounds: readonly string[]; readonly ratio: number; readonly ingested: boolean };
  readonly cpu: string;
};

export type RefRound = { readonly seconds: number; readonly p50: number; readonly echoes: number; readonly bytes: BrokerBytes; readonly monitorCopy: number };

/** Each kind of fleet's rounds, the reference rounds, and the section's other notes. */
export type Results = { readonly ref: RefRound[]; readonly clients: Round[]; readonly fleetSim: Round[]; readonly notes: string[] };

const delta = (a: BrokerBytes, b: BrokerBytes): BrokerBytes => ({ sent: b.sent - a.sent, received: b.received - a.received });

/** CPU seconds of mosquitto, the server, the fleet and this process, read together. */
function cpuProbe(env: RoundEnv): () => string {
  const mpid = mosquittoPid(env.broker);
  const read = () => ({ m: cpuSeconds(mpid), s: cpuSeconds(env.serve.proc.child.pid), f: cpuSeconds(env.fleetPid), b: process.cpuUsage() });
  const a = read();
  return () => {
    const z = read();
    const d = (x: number | null, y: number | null) => (x === null || y === null ? '?' : (y - x).toFixed(2));
    const bench = (z.b.user + z.b.system - a.b.user - a.b.system) / 1e6;
    return `CPU s mosquitto ${d(a.m, z.m)}, serve ${d(a.s, z.s)}, fleet ${d(a.f, z.f)}, bench ${bench.toFixed(2)}`;
  };
}

/** Publish `list` (version `version`) and time every device's acknowledgement; then the server's and the broker's account. */
export async function revocationRound(env: RoundEnv, list: Uint8Array, version: number): Promise<Round> {
  const { monitor, serve, devices } = env;
  const env1 = parseEnvelope(list);
  if (!env1.ok) throw new Error('the bench list does not parse');
  monitor.expect({ prefix: env.prefix, version, digest: nodeSha256(env1.envelope.payload) });
  const bytes0 = await monitor.nextBytes();
  const m0 = await rootMetrics(serve);
  const cpu = cpuProbe(env);
  const { t0, answered } = await publishList(serve, list);
  const acks = await monitor.waitFor('acks', devices, ROUND_TIMEOUT_MS);
  const cpuNote = cpu();
  // The server's account: every acknowledgement ingested (or the time-out), then its histogram.
  const ingested = await devicesAt(serve, devices, version, ROUND_TIMEOUT_MS).then(
    () => true,
    () => false,
  );
  const bytes1 = await monitor.nextBytes();
  const m1 = await rootMetrics(serve);
  const published = await listPublishedAt(serve);
  const times = [...acks.values()].map((t) => (t - t0) / 1000).sort((a, b) => a - b);
  const h = histogramDelta(m0, m1, [0.5, 0.99, 1]);
  return {
    version,
    times,
    p50: percentile(times, 0.5, devices),
    p99: percentile(times, 0.99, devices),
    max: times.length === devices ? times[times.length - 1]! : Number.POSITIVE_INFINITY,
    enforcing: acks.size,
    answeredMs: answered - t0,
    acceptedMs: published === null ? null : published - (performance.timeOrigin + t0),
    bytes: delta(bytes0, bytes1),
    monitorCopy: monitor.copyBytes,
    server: { ...h, ratio: m1.enforcingRatio, ingested },
    cpu: cpuNote,
  };
}

/** The reference: `size` bytes published retained (QoS 1) to the fleet's reference topic; publish -> last echo at the monitor. */
export async function referenceRound(env: RoundEnv, size: number): Promise<RefRound> {
  const { monitor, devices } = env;
  monitor.expect(null);
  const bytes0 = await monitor.nextBytes();
  const t0 = await monitor.publishReference(new Uint8Array(size).fill(0xa5));
  const echoes = await monitor.waitFor('echoes', devices, ROUND_TIMEOUT_MS);
  const times = [...echoes.values()].map((t) => (t - t0) / 1000).sort((a, b) => a - b);
  const bytes1 = await monitor.nextBytes();
  return {
    seconds: times.length === devices ? times[times.length - 1]! : Number.POSITIVE_INFINITY,
    p50: percentile(times, 0.5, devices),
    echoes: echoes.size,
    bytes: delta(bytes0, bytes1),
    monitorCopy: monitor.copyBytes,
  };
}
