/**
 * `fwseal fleet-sim`: N simulated devices in one process, each an OtaDevice with its own MQTT
 * connection and its own flash (a file under --state DIR, provisioned with the factory release on the
 * first run and reused later, or RAM with --memory). For load and rollout tests of `fwseal serve`.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LIMITS } from '../../shared/limits.js';
import { type StatusEvent, isValidId, isValidPrefix } from '../../shared/ota.js';
import { provision } from '../../device/agent/agent.js';
import { type Flash } from '../../device/agent/flash.js';
import { createLayout, layoutBytes } from '../../device/agent/layout.js';
import { openFileFlash } from '../../device/node/file-flash.js';
import { SimFlash } from '../../device/sim/flash.js';
import { FwsealError } from '../errors.js';
import { fleetVerifier } from '../hash.js';
import { readFileLimited, writeFileAtomic } from '../io.js';
import { OtaDevice } from '../ota/device-client.js';
import { MQTT_FLAGS, MQTT_USAGE, connectMqtt, mqttSettings } from '../ota/mqtt-options.js';
import { type Command, int, json, noPositionals, readObjectFile, str } from './common.js';

const MAX_DEVICES = LIMITS.maxFleetDevices;
const IMAGE_MAX = 1 << 30;
/** Devices connecting at the same time (a connect storm helps nobody). */
const CONNECT_CONCURRENCY = 50;
const FLEET_FILE = 'fleet.json';
const TERMINAL = new Set(['confirmed', 'rejected', 'failed']);

type FleetConfig = { deviceClass: string; eraseBlockSize: number; writeAlign: number; slotSize: number; maxTrialBoots: number };

type Sim = {
  readonly id: string;
  readonly flash: Flash & { close?: () => void };
  device: OtaDevice | null;
  state: string;
  campaign?: string;
  code?: number;
  done?: number;
  total?: number;
  outcome?: StatusEvent;
};

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
every device has ended its first campaign (exit 0 when all confirmed, else 1).`,
  options: {
    ...MQTT_FLAGS, count: { type: 'string' }, group: { type: 'string' }, trust: { type: 'string' }, revocations: { type: 'string' },
    'device-class': { type: 'string' }, state: { type: 'string' }, factory: { type: 'string' }, 'factory-image': { type: 'string' },
    'id-prefix': { type: 'string' }, memory: { type: 'boolean' }, prefix: { type: 'string' }, 'slot-size': { type: 'string' },
    'exit-after-update': { type: 'boolean' }, 'connect-timeout': { type: 'string' }, json: { type: 'boolean' },
  },
  async run(p, io) {
    noPositionals(p);
    const count = int(p, 'count', 1, MAX_DEVICES);
    const group = str(p, 'group', true);
    if (!isValidId(group)) throw new FwsealError('USAGE', '--group must be 1..64 characters of [A-Za-z0-9_-]');
    const prefix = str(p, 'prefix') ?? 'fwseal';
    if (!isValidPrefix(prefix)) throw new FwsealError('USAGE', '--prefix must be id segments joined by "/"');
    const idPrefix = str(p, 'id-prefix') ?? 'sim-';
    const width = String(count).length < 4 ? 4 : String(count).length;
    if (!isValidId(idPrefix + '0'.repeat(width))) throw new FwsealError('USAGE', '--id-prefix must be characters of [A-Za-z0-9_-] (ids are at most 64)');
    const deviceClass = str(p, 'device-class', true);
    const trust = readObjectFile(str(p, 'trust', true), 'trust-bundle');
    const rl = str(p, 'revocations');
    const revocations = rl ? readObjectFile(rl, 'revocation-list') : undefined;
    const factory = readObjectFile(str(p, 'factory', true), 'manifest');
    const factoryImage = readFileLimited(str(p, 'factory-image', true), IMAGE_MAX, 'factory image');
    const stateDir = str(p, 'state', true);
    const memory = !!p.values.memory;
    const timeout = int(p, 'connect-timeout', 100, 600_000, 10_000);
    const asJson = !!p.values.json;
    mqttSettings(p, process.env, idPrefix, 4); // flags checked once, before anything is created

    // Geometry: one for the fleet, kept in DIR/fleet.json so a later run reuses the flash files.
    const E = 4096;
    const defaultSlot = Math.max(1 << 20, Math.ceil((factoryImage.length * 2) / E) * E);
    let cfg: FleetConfig = { deviceClass, eraseBlockSize: E, writeAlign: 8, slotSize: int(p, 'slot-size', E, IMAGE_MAX, defaultSlot), maxTrialBoots: 2 };
    if (cfg.slotSize % E !== 0) throw new FwsealError('USAGE', `--slot-size must be a multiple of ${E}`);
    const cfgPath = join(stateDir, FLEET_FILE);
    if (!memory) {
      if (existsSync(cfgPath)) {
        try {
          cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as FleetConfig;
        } catch {
          throw new FwsealError('IO', `${cfgPath} is not a fleet description`);
        }
        if (cfg.deviceClass !== deviceClass) throw new FwsealError('USAGE', `--device-class ${deviceClass} is not the fleet's class ${cfg.deviceClass}`);
      } else {
        mkdirSync(stateDir, { recursive: true });
        writeFileAtomic(cfgPath, JSON.stringify(cfg, null, 2) + '\n');
      }
    }
    const geometry = { size: layoutBytes(cfg.eraseBlockSize, cfg.writeAlign, cfg.slotSize), eraseBlockSize: cfg.eraseBlockSize, writeAlign: cfg.writeAlign, erasedValue: 0xff };
    const layout = createLayout(geometry, { slotSize: cfg.slotSize });
    const verifier = fleetVerifier();

    const sims: Sim[] = [];
    const t0 = Date.now();
    let stopping = false;
    let allEnded: () => void = () => {};
    const ended = new Promise<void>((resolve) => { allEnded = resolve; });
    const onSignal = () => { stopping = true; allEnded(); };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const checkEnded = () => {
      if (p.values['exit-after-update'] && sims.length === count && sims.every((s) => s.outcome !== undefined)) allEnded();
    };
    const counts = () => {
      const c: Record<string, number> = {};
      for (const s of sims) c[s.state] = (c[s.state] ?? 0) + 1;
      return c;
    };
    const ticker = asJson ? null : setInterval(() => {
      const c = counts();
      io.stdout(`[${((Date.now() - t0) / 1000).toFixed(0)} s] ${Object.entries(c).map(([k, v]) => `${k} ${v}`).join(' | ')}\n`);
    }, 1000);
    ticker?.unref();

    try {
      // Flash for every device first (a provisioning error stops the run before anything connects).
      for (let i = 1; i <= count; i++) {
        const id = idPrefix + String(i).padStart(width, '0');
        let flash: Flash & { close?: () => void };
        let fresh = true;
        if (memory) flash = new SimFlash(geometry);
        else {
          const dir = join(stateDir, id);
          const path = join(dir, 'flash.img');
          fresh = !existsSync(path);
          if (fresh) mkdirSync(dir, { recursive: true });
          flash = openFileFlash(path, geometry, { create: fresh });
        }
        const sim: Sim = { id, flash, device: null, state: 'offline' };
        sims.push(sim);
        if (fresh) {
          const r = provision(flash, layout, { deviceClass, trust, envelope: factory, image: factoryImage, verifier, ...(revocations ? { revocations } : {}) });
          if (!r.ok) throw new FwsealError(r.error as 'IO', `provisioning ${id}: ${r.detail ?? r.error}`);
        }
      }
      // Connect in bounded batches.
      for (let i = 0; i < sims.length && !stopping; i += CONNECT_CONCURRENCY) {
        await Promise.all(sims.slice(i, i + CONNECT_CONCURRENCY).map(async (sim) => {
          const client = await connectMqtt(mqttSettings(p, process.env, sim.id, 4), timeout);
          sim.state = 'online';
          const d = await OtaDevice.start({
            id: sim.id, group, prefix, mqtt: client, flash: sim.flash, layout, trust, ...(revocations ? { revocations } : {}), verifier,
            maxTrialBoots: cfg.maxTrialBoots, onStatus: (e: StatusEvent) => {
            sim.state = e.state;
            if (e.campaign) sim.campaign = e.campaign;
            if (e.done !== undefined) { sim.done = e.done; sim.total = e.total; }
            if (e.code !== undefined) sim.code = e.code;
            if (TERMINAL.has(e.state) && sim.outcome === undefined) {
              sim.outcome = e;
              checkEnded();
            }
          } });
          sim.device = d;
        }));
      }
      checkEnded();
      if (!stopping) await ended;
    } finally {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      if (ticker) clearInterval(ticker);
      await Promise.all(sims.map((s) => s.device?.stop()));
      for (const s of sims) s.flash.close?.();
    }

    const seconds = (Date.now() - t0) / 1000;
    const rows = sims.map((s) => {
      const st = s.device?.state();
      const stats = s.device?.stats();
      return {
        id: s.id, version: st?.version ?? null, counter: st?.counter ?? null, state: s.state, outcome: s.outcome?.state ?? null,
        ...(s.outcome?.code !== undefined ? { code: s.outcome.code } : {}), campaign: s.campaign ?? null,
        requests: stats?.requests ?? 0, blocks: stats?.blocksReceived ?? 0, rejected: stats?.rejected ?? 0, timeouts: stats?.timeouts ?? 0, malformed: stats?.malformed ?? 0,
      };
    });
    const allConfirmed = rows.every((r) => r.outcome === 'confirmed');
    if (asJson) json(io, { devices: rows, counts: counts(), seconds });
    else {
      io.stdout(`${'device'.padEnd(width + idPrefix.length)}  ${'version'.padEnd(10)} counter  outcome     code  blocks  requests  rejected\n`);
      for (const r of rows) {
        io.stdout(`${r.id.padEnd(width + idPrefix.length)}  ${String(r.version ?? '-').padEnd(10)} ${String(r.counter ?? '-').padStart(7)}  ${String(r.outcome ?? r.state).padEnd(10)} ${String(r.code ?? '').padStart(5)}  ${String(r.blocks).padStart(6)}  ${String(r.requests).padStart(8)}  ${String(r.rejected).padStart(8)}\n`);
      }
      io.stdout(`${count} devices in ${seconds.toFixed(1)} s: ${Object.entries(counts()).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
    }
    return p.values['exit-after-update'] && !allConfirmed ? 1 : 0;
  },
};
