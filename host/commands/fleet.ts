/**
 * `fwseal fleet-sim`: N simulated devices in one process (host/fleet/fleet-sim.ts), each an OtaDevice
 * with its own MQTT connection and its own flash (a file under --state DIR, provisioned with the
 * factory release on the first run and reused later, or RAM with --memory). For load and rollout
 * tests of `fwseal serve`. This file parses the flags and prints the live counts and the report.
 */
import { LIMITS } from '../../shared/limits.js';
import { isValidId, isValidPrefix } from '../../shared/ota/topics.js';
import { FwsealError } from '../errors.js';
import { defaultSlotSize, ERASE_BLOCK_BYTES, FleetSim, type FleetSimOptions, fleetConfig, idWidth, type SimDeviceReport } from '../fleet/fleet-sim.js';
import { readFileLimited } from '../io.js';
import { withOfflineWill } from '../ota/device-client.js';
import { connectMqtt, MQTT_FLAGS, MQTT_USAGE, mqttSettings } from '../ota/mqtt-options.js';
import { type Command, FLAG_ENV_USAGE, type Io, int, json, noPositionals, type Parsed, readObjectFile, str, withEnv } from './common.js';

const MAX_DEVICES = LIMITS.maxFleetDevices;
const IMAGE_MAX = 1 << 30;

export const fleetSim: Command = {
  name: 'fleet-sim',
  summary: 'simulate N devices updating over MQTT (load and rollout tests)',
  usage: `fwseal fleet-sim --broker URL --count N --group G --trust trust.cbor --device-class CLASS --state DIR
    --factory M.cose --factory-image IMAGE [--id-prefix sim-] [--memory] [--prefix P] [--slot-size BYTES]
    [--exit-after-update] [--connect-timeout MS] [--json]
    ${MQTT_USAGE.replace(/\n/g, '\n    ')}

Runs N (1..${MAX_DEVICES}) OtaDevices in this process, ids <id-prefix>0001..., each with its own MQTT
connection. Flash per device: DIR/<id>/flash.img (provisioned with the factory release on the first
run, reused later) or RAM with --memory. Prints a live count of devices by state and, on exit, a
table of devices, versions and outcomes. Runs until SIGINT/SIGTERM, or with --exit-after-update until
every device has ended its first campaign (exit 0 when all confirmed, else 1). The live count is
printed when it changes. In the table, state is each device's last reported state (what the summary
counts) and outcome the end of its latest campaign ('-' while that one runs).
${FLAG_ENV_USAGE}

Examples:
  fwseal fleet-sim --broker mqtt://127.0.0.1:1883 --count 100 --group lab --trust trust.cbor --device-class acme-gw \\
    --state sims --factory v1.cose --factory-image v1.bin --memory --exit-after-update`,
  options: {
    ...MQTT_FLAGS,
    count: { type: 'string' },
    group: { type: 'string' },
    trust: { type: 'string' },
    revocations: { type: 'string' },
    'device-class': { type: 'string' },
    state: { type: 'string' },
    factory: { type: 'string' },
    'factory-image': { type: 'string' },
    'id-prefix': { type: 'string' },
    memory: { type: 'boolean' },
    prefix: { type: 'string' },
    'slot-size': { type: 'string' },
    'exit-after-update': { type: 'boolean' },
    'connect-timeout': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(p, io) {
    const o = fleetOptions(withEnv(p, ['broker', 'trust', 'prefix']));
    const asJson = !!p.values.json;
    const fleet = new FleetSim(o);
    const t0 = Date.now();
    const onSignal = () => fleet.stop();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const live = liveCounts((line) => io.stdout(line));
    const ticker = asJson ? null : setInterval(() => live(fleet.counts(), (Date.now() - t0) / 1000), 1000);
    ticker?.unref();
    try {
      await fleet.run();
    } finally {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      if (ticker) clearInterval(ticker);
      await fleet.close();
    }

    const seconds = (Date.now() - t0) / 1000;
    const rows = fleet.report();
    const allConfirmed = rows.every((r) => r.outcome === 'confirmed');
    if (asJson) json(io, { devices: rows, counts: fleet.counts(), seconds });
    else printReport(io, rows, fleet.counts(), seconds, o);
    return o.exitAfterUpdate && !allConfirmed ? 1 : 0;
  },
};

/** The flags, checked in full before anything is created. */
function fleetOptions(p: Parsed): FleetSimOptions {
  noPositionals(p);
  const count = int(p, 'count', 1, MAX_DEVICES);
  const group = str(p, 'group', true);
  if (!isValidId(group)) throw new FwsealError('USAGE', '--group must be 1..64 characters of [A-Za-z0-9_-]');
  const prefix = str(p, 'prefix') ?? 'fwseal';
  if (!isValidPrefix(prefix)) throw new FwsealError('USAGE', '--prefix must be id segments joined by "/"');
  const idPrefix = str(p, 'id-prefix') ?? 'sim-';
  if (!isValidId(idPrefix + '0'.repeat(idWidth(count)))) throw new FwsealError('USAGE', '--id-prefix must be characters of [A-Za-z0-9_-] (ids are at most 64)');
  const deviceClass = str(p, 'device-class', true);
  const trust = readObjectFile(str(p, 'trust', true), 'trust-bundle');
  const rl = str(p, 'revocations');
  const revocations = rl ? readObjectFile(rl, 'revocation-list') : undefined;
  const factory = readObjectFile(str(p, 'factory', true), 'manifest');
  const factoryImage = readFileLimited(str(p, 'factory-image', true), IMAGE_MAX, 'factory image');
  const stateDir = str(p, 'state', true);
  const memory = !!p.values.memory;
  const timeout = int(p, 'connect-timeout', 100, 600_000, 10_000);
  mqttSettings(p, process.env, idPrefix, 4); // flags checked once, before anything is created
  const slotSize = int(p, 'slot-size', ERASE_BLOCK_BYTES, IMAGE_MAX, defaultSlotSize(factoryImage.length));
  const config = fleetConfig(stateDir, memory, { deviceClass, eraseBlockSize: ERASE_BLOCK_BYTES, writeAlign: 8, slotSize, maxTrialBoots: 2 });
  return {
    count,
    group,
    prefix,
    idPrefix,
    trust,
    ...(revocations ? { revocations } : {}),
    factory,
    factoryImage,
    stateDir,
    memory,
    config,
    exitAfterUpdate: !!p.values['exit-after-update'],
    connect: (id) => connectMqtt(withOfflineWill(mqttSettings(p, process.env, id, 4), prefix, id), timeout),
  };
}

/** The live count line, printed only when the counts differ from the last line printed (issue 17). */
export function liveCounts(print: (line: string) => void): (counts: Record<string, number>, seconds: number) => void {
  let last = '';
  return (counts, seconds) => {
    const text = Object.entries(counts)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k} ${v}`)
      .join(' | ');
    if (text === last) return;
    last = text;
    print(`[${seconds.toFixed(0)} s] ${text}\n`);
  };
}

/**
 * The final table and summary: the state column is what the summary counts (fleet.counts(), the last
 * reported state); outcome is the end of the device's latest campaign, '-' while it runs.
 */
export function printReport(io: Io, rows: readonly SimDeviceReport[], counts: Record<string, number>, seconds: number, o: FleetSimOptions): void {
  const idColumn = idWidth(o.count) + o.idPrefix.length;
  io.stdout(`${'device'.padEnd(idColumn)}  ${'version'.padEnd(10)} counter  state       outcome     code  blocks  requests  rejected\n`);
  for (const r of rows) {
    io.stdout(
      `${r.id.padEnd(idColumn)}  ${String(r.version ?? '-').padEnd(10)} ${String(r.counter ?? '-').padStart(7)}  ${r.state.padEnd(11)} ${String(r.outcome ?? '-').padEnd(10)} ${String(r.code ?? '').padStart(5)}  ${String(r.blocks).padStart(6)}  ${String(r.requests).padStart(8)}  ${String(r.rejected).padStart(8)}\n`,
    );
  }
  io.stdout(
    `${o.count} devices in ${seconds.toFixed(1)} s: ${Object.entries(counts)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}\n`,
  );
}
