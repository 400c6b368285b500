/**
 * The simulated fleet of `fwseal fleet-sim` (SPEC.md §12.10): N OtaDevices in one process, each with
 * its own MQTT connection and its own flash (a file under the state folder, provisioned with the
 * factory release on the first run and reused later, or RAM). For load and rollout tests of
 * `fwseal serve`. The command (host/commands/fleet.ts) parses flags and prints; this runs the devices.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type MqttClient } from 'mqtt';
import { type Flash, type FlashGeometry } from '../../device/agent/flash.js';
import { createLayout, type Layout, layoutBytes } from '../../device/agent/layout.js';
import { provision } from '../../device/agent/provision.js';
import { openFileFlash } from '../../device/node/file-flash.js';
import { SimFlash } from '../../device/sim/flash.js';
import { type Verifier } from '../../device/verifier.js';
import { type StatusEvent } from '../../shared/ota/status.js';
import { FwsealError } from '../errors.js';
import { fleetVerifier } from '../hash.js';
import { writeFileAtomic } from '../io.js';
import { OtaDevice } from '../ota/device-client.js';

/** Erase block of every simulated device; slot sizes are whole erase blocks. */
export const ERASE_BLOCK_BYTES = 4096;
/** Devices connecting at the same time (a connect storm helps nobody). */
const CONNECT_CONCURRENCY = 50;
const FLEET_FILE = 'fleet.json';
const TERMINAL = new Set(['confirmed', 'rejected', 'failed']);

/** The fleet's flash geometry and device class, kept in DIR/fleet.json. */
export type FleetConfig = { deviceClass: string; eraseBlockSize: number; writeAlign: number; slotSize: number; maxTrialBoots: number };

export type FleetSimOptions = {
  readonly count: number;
  readonly group: string;
  readonly prefix: string;
  readonly idPrefix: string;
  readonly trust: Uint8Array;
  readonly revocations?: Uint8Array;
  /** The factory release every new device is provisioned with: manifest envelope and image. */
  readonly factory: Uint8Array;
  readonly factoryImage: Uint8Array;
  readonly stateDir: string;
  /** Flash in RAM instead of files under stateDir. */
  readonly memory: boolean;
  readonly config: FleetConfig;
  /** End the run once every device has ended its first campaign. */
  readonly exitAfterUpdate: boolean;
  /** An MQTT connection for one device id. */
  readonly connect: (id: string) => Promise<MqttClient>;
};

/** One device in the final report. */
export type SimDeviceReport = {
  readonly id: string;
  readonly version: string | null;
  readonly counter: number | null;
  readonly state: string;
  readonly outcome: string | null;
  readonly code?: number;
  readonly campaign: string | null;
  readonly requests: number;
  readonly blocks: number;
  readonly rejected: number;
  readonly timeouts: number;
  readonly malformed: number;
};

/** What the fleet keeps of one device's status events (recordStatus). */
export type SimStatus = {
  state: string;
  campaign?: string;
  code?: number;
  done?: number;
  total?: number;
  /** The event that ended the latest campaign; cleared when another campaign starts. */
  outcome?: StatusEvent;
  /** The device's first campaign has ended (--exit-after-update waits for every device's). */
  ended?: boolean;
};

type Sim = SimStatus & {
  readonly id: string;
  readonly flash: Flash & { close?: () => void };
  device: OtaDevice | null;
};

/**
 * One status event into a device's record: its state (what counts() tallies), its campaign, and the
 * end of its latest campaign, so the report's outcome and the counts speak of the same campaign
 * (issue 17: the outcome used to stay the first campaign's). True when it ends the first campaign.
 */
export function recordStatus(sim: SimStatus, e: StatusEvent): boolean {
  sim.state = e.state;
  if (e.campaign && e.campaign !== sim.campaign) {
    sim.campaign = e.campaign;
    sim.outcome = undefined;
  }
  if (e.done !== undefined) {
    sim.done = e.done;
    sim.total = e.total;
  }
  if (e.code !== undefined) sim.code = e.code;
  if (!TERMINAL.has(e.state)) return false;
  sim.outcome = e;
  const first = !sim.ended;
  sim.ended = true;
  return first;
}

/** Digits of the device number in ids: at least 4 (`sim-0001`). */
export function idWidth(count: number): number {
  return Math.max(4, String(count).length);
}

/** Default slot: room for twice the factory image in whole erase blocks, at least 1 MiB. */
export function defaultSlotSize(factoryImageBytes: number): number {
  const E = ERASE_BLOCK_BYTES;
  return Math.max(1 << 20, Math.ceil((factoryImageBytes * 2) / E) * E);
}

/**
 * Geometry: one for the fleet, kept in DIR/fleet.json so a later run reuses the flash files (the
 * stored one wins over `wanted`, and must name the same device class). RAM fleets keep nothing.
 */
export function fleetConfig(stateDir: string, memory: boolean, wanted: FleetConfig): FleetConfig {
  if (wanted.slotSize % ERASE_BLOCK_BYTES !== 0) throw new FwsealError('USAGE', `--slot-size must be a multiple of ${ERASE_BLOCK_BYTES}`);
  const cfgPath = join(stateDir, FLEET_FILE);
  if (memory) return wanted;
  if (!existsSync(cfgPath)) {
    mkdirSync(stateDir, { recursive: true });
    writeFileAtomic(cfgPath, `${JSON.stringify(wanted, null, 2)}\n`);
    return wanted;
  }
  let cfg: FleetConfig;
  try {
    cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as FleetConfig;
  } catch {
    throw new FwsealError('IO', `${cfgPath} is not a fleet description`);
  }
  if (cfg.deviceClass !== wanted.deviceClass)
    throw new FwsealError('USAGE', `--device-class ${wanted.deviceClass} is not the fleet's class ${cfg.deviceClass}`);
  return cfg;
}

export class FleetSim {
  private readonly sims: Sim[] = [];
  private readonly geometry: FlashGeometry;
  private readonly layout: Layout;
  private readonly verifier: Verifier;
  private stopping = false;
  private allEnded: () => void = () => {};
  private readonly ended = new Promise<void>((resolve) => {
    this.allEnded = resolve;
  });

  constructor(private readonly o: FleetSimOptions) {
    const cfg = o.config;
    this.geometry = {
      size: layoutBytes(cfg.eraseBlockSize, cfg.writeAlign, cfg.slotSize),
      eraseBlockSize: cfg.eraseBlockSize,
      writeAlign: cfg.writeAlign,
      erasedValue: 0xff,
    };
    this.layout = createLayout(this.geometry, { slotSize: cfg.slotSize });
    this.verifier = fleetVerifier();
  }

  /** Provision every device, connect them, then wait for stop() or (exitAfterUpdate) every first campaign's end. */
  async run(): Promise<void> {
    this.provisionAll();
    for (let i = 0; i < this.sims.length && !this.stopping; i += CONNECT_CONCURRENCY) {
      await Promise.all(this.sims.slice(i, i + CONNECT_CONCURRENCY).map((sim) => this.startDevice(sim)));
    }
    this.checkEnded();
    if (!this.stopping) await this.ended;
  }

  /** End the run (SIGINT/SIGTERM). */
  stop(): void {
    this.stopping = true;
    this.allEnded();
  }

  /** Stop every device and close its flash. */
  async close(): Promise<void> {
    await Promise.all(this.sims.map((s) => s.device?.stop()));
    for (const s of this.sims) s.flash.close?.();
  }

  /** Devices by their last reported state. */
  counts(): Record<string, number> {
    const c: Record<string, number> = {};
    for (const s of this.sims) c[s.state] = (c[s.state] ?? 0) + 1;
    return c;
  }

  report(): SimDeviceReport[] {
    return this.sims.map((s) => {
      const st = s.device?.state();
      const stats = s.device?.stats();
      return {
        id: s.id,
        version: st?.version ?? null,
        counter: st?.counter ?? null,
        state: s.state,
        outcome: s.outcome?.state ?? null,
        ...(s.outcome?.code !== undefined ? { code: s.outcome.code } : {}),
        campaign: s.campaign ?? null,
        requests: stats?.requests ?? 0,
        blocks: stats?.blocksReceived ?? 0,
        rejected: stats?.rejected ?? 0,
        timeouts: stats?.timeouts ?? 0,
        malformed: stats?.malformed ?? 0,
      };
    });
  }

  /** Flash for every device first (a provisioning error stops the run before anything connects). */
  private provisionAll(): void {
    const { o } = this;
    const width = idWidth(o.count);
    for (let i = 1; i <= o.count; i++) {
      const id = o.idPrefix + String(i).padStart(width, '0');
      let flash: Flash & { close?: () => void };
      let fresh = true;
      if (o.memory) flash = new SimFlash(this.geometry);
      else {
        const dir = join(o.stateDir, id);
        const path = join(dir, 'flash.img');
        fresh = !existsSync(path);
        if (fresh) mkdirSync(dir, { recursive: true });
        flash = openFileFlash(path, this.geometry, { create: fresh });
      }
      this.sims.push({ id, flash, device: null, state: 'offline' });
      if (fresh) {
        const r = provision(flash, this.layout, {
          deviceClass: o.config.deviceClass,
          trust: o.trust,
          envelope: o.factory,
          image: o.factoryImage,
          verifier: this.verifier,
          ...(o.revocations ? { revocations: o.revocations } : {}),
        });
        if (!r.ok) throw new FwsealError(r.error as 'IO', `provisioning ${id}: ${r.detail ?? r.error}`);
      }
    }
  }

  private async startDevice(sim: Sim): Promise<void> {
    const { o } = this;
    const client = await o.connect(sim.id);
    sim.state = 'online';
    sim.device = await OtaDevice.start({
      id: sim.id,
      group: o.group,
      prefix: o.prefix,
      mqtt: client,
      flash: sim.flash,
      layout: this.layout,
      trust: o.trust,
      ...(o.revocations ? { revocations: o.revocations } : {}),
      verifier: this.verifier,
      maxTrialBoots: o.config.maxTrialBoots,
      onStatus: (e: StatusEvent) => {
        if (recordStatus(sim, e)) this.checkEnded();
      },
    });
  }

  private checkEnded(): void {
    if (this.o.exitAfterUpdate && this.sims.length === this.o.count && this.sims.every((s) => s.ended)) this.allEnded();
  }
}
