/**
 * The rig: N simulated devices, each a separate process on its own socat pseudo-terminal pair, or
 * one real board on `--port`. On the harness side every port goes through the link emulator
 * (hil/link.ts, real-time scheduler) into an SmpClient: pacing at the configured baud, drops, bit
 * errors, noise, a cut cable. socat gives no pacing and no close events, so liveness is OS echo with
 * timeouts (`waitAlive`), never pty events.
 *
 * Device processes that exit (OS reset: DEVICE_RESET_EXIT; a power cut: SIGKILL; a crash) are
 * started again on the same directory: a reset keeps flash. `stop()` kills every device process and
 * socat, and so does an error, SIGINT/SIGTERM or the harness's exit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type SerialPort } from 'serialport';
import { loadOptional } from '../host/optional.js';
import { echo, findCommand } from '../shared/smp/commands.js';
import { ConsoleDecoder } from '../shared/smp/console.js';
import { parseSmpPacket } from '../shared/smp/packet.js';
import { realScheduler } from './clock.js';
import { type PowerCutPoint } from './device.js';
import { bridge, Link, type LinkFaults } from './link.js';
import { SmpClient } from './smp-endpoint.js';

export type { PowerCutPoint };

const here = dirname(fileURLToPath(import.meta.url));
const RESET_EXIT = 75;

/** How to start hil/device-main: `built` if given, the built .js beside this file, or the .ts source through tsx. */
function deviceCommand(built?: string): string[] {
  if (built !== undefined) return [built];
  const js = join(here, 'device-main.js');
  if (import.meta.url.endsWith('.js') && existsSync(js)) return [js];
  const tsx = createRequire(import.meta.url).resolve('tsx');
  return ['--import', pathToFileURL(tsx).href, join(here, 'device-main.ts')];
}

export type RigOptions = {
  /** Simulated devices (ignored with `port`). */
  readonly devices: number;
  /** Where the pty links and device directories go. */
  readonly workDir: string;
  readonly baud: number;
  /** A real board instead of simulated devices. */
  readonly port?: string;
  /** Per-device logs: DIR/dev-N.log (harness side) and DIR/dev-N.device.log (the device process). */
  readonly logsDir?: string;
  /** Where the simulated devices run the verifier: the device bundle in QuickJS (default) or Node. */
  readonly runtime?: 'quickjs' | 'node';
  /** A built hil/device-main.js to run (default: beside this module, or the source through tsx). */
  readonly deviceMain?: string;
};

export type LinkSetup = { readonly faults?: LinkFaults; readonly seed?: number; readonly latencyMs?: number; readonly timeoutMs?: number };

/** One device position of the rig: its serial port, link emulator, client and device process. */
export class DeviceSlot {
  link: Link;
  client: SmpClient;
  #unbridge: () => void;
  #proc: ChildProcess | null = null;
  #dir: string | null = null;
  #stopping = false;
  #exited: Promise<void> = Promise.resolve();
  /** Device process starts after the first (resets and power cuts). */
  restarts = 0;
  readonly #readyWaiters: (() => void)[] = [];

  constructor(
    readonly index: number,
    readonly port: SerialPort,
    readonly devicePath: string | null,
    private readonly rig: { baud: number; logsDir?: string; runtime?: 'quickjs' | 'node'; deviceMain?: string },
  ) {
    this.link = new Link(realScheduler, { baud: rig.baud });
    this.#unbridge = bridge(this.link.device, portStream(port));
    this.client = new SmpClient(this.link.host, realScheduler, { timeoutMs: 2000 });
  }

  get simulated(): boolean {
    return this.devicePath !== null;
  }

  log(line: string): void {
    if (this.rig.logsDir) appendFileSync(join(this.rig.logsDir, `dev-${this.index}.log`), `${new Date().toISOString()} ${line}\n`);
  }

  /** A fresh link emulator (and client) with these faults, e.g. per scenario. */
  setLink(setup: LinkSetup = {}): void {
    this.client.close();
    this.#unbridge();
    this.link.close();
    this.link = new Link(realScheduler, {
      baud: this.rig.baud,
      latencyMs: setup.latencyMs ?? 0,
      seed: setup.seed ?? this.index + 1,
      faults: setup.faults ?? {},
    });
    this.#unbridge = bridge(this.link.device, portStream(this.port));
    this.client = new SmpClient(this.link.host, realScheduler, { timeoutMs: setup.timeoutMs ?? 2000 });
    if (this.rig.logsDir) this.#logFrames();
  }

  /** Log every frame as it crosses the emulated link (what each end actually received). */
  #logFrames(): void {
    for (const [end, arrow] of [
      [this.link.device, '>'],
      [this.link.host, '<'],
    ] as const) {
      const decoder = new ConsoleDecoder();
      end.onData((chunk) => {
        for (const e of decoder.push(chunk)) {
          if (!e.ok) {
            this.log(`${arrow} frame dropped: ${e.error}`);
            continue;
          }
          const p = parseSmpPacket(e.packet);
          if (!p.ok) continue;
          const h = p.header;
          const name = findCommand({ ...h, op: h.op & 2 })?.name ?? `group ${h.group} id ${h.command}`;
          const fields = [...p.payload]
            .filter(([k]) => k !== 'data' && k !== 'sha')
            .map(([k, v]) => `${k}=${v instanceof Uint8Array ? `<${v.length} bytes>` : typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
          const data = p.payload.get('data');
          this.log(
            `${arrow} ${name} seq ${h.seq}${(h.op & 1) === 1 ? ' response' : ''} ${fields.join(' ')}${data instanceof Uint8Array ? ` data=<${data.length} bytes>` : ''}`,
          );
        }
      });
    }
  }

  /** Start the device process on `dir` (a provisioned device directory) and wait until it is up. */
  async startDevice(dir: string): Promise<void> {
    if (this.devicePath === null) throw new Error('no simulated device on a real port');
    await this.stopDevice();
    this.#dir = dir;
    this.#stopping = false;
    this.restarts = 0;
    await this.#spawn();
  }

  async #spawn(): Promise<void> {
    const dir = this.#dir as string;
    const ready = new Promise<void>((resolve) => this.#readyWaiters.push(resolve));
    const proc = spawn(
      process.execPath,
      [
        ...deviceCommand(this.rig.deviceMain),
        '--dir',
        dir,
        '--port',
        this.devicePath as string,
        '--baud',
        String(this.rig.baud),
        '--runtime',
        this.rig.runtime ?? 'quickjs',
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      },
    );
    this.#proc = proc;
    const deviceLog = (chunk: Buffer) => {
      if (this.rig.logsDir) appendFileSync(join(this.rig.logsDir, `dev-${this.index}.device.log`), chunk);
    };
    proc.stdout?.on('data', deviceLog);
    proc.stderr?.on('data', deviceLog);
    let up = false;
    let earlyExit: (e: Error) => void = () => {};
    const exitedEarly = new Promise<void>((_, reject) => {
      earlyExit = reject;
    });
    proc.on('message', (m: { ready?: boolean; armed?: boolean }) => {
      if (m?.ready) {
        up = true;
        for (const w of this.#readyWaiters.splice(0)) w();
      }
      if (m?.armed) this.#armed?.();
    });
    this.#exited = new Promise<void>((resolve) => {
      proc.once('exit', (code, signal) => {
        if (this.#proc === proc) this.#proc = null;
        const why = signal === 'SIGKILL' ? 'power cut' : code === RESET_EXIT ? 'reset' : `exit ${code ?? signal}`;
        this.log(`device process ${proc.pid}: ${why}`);
        resolve();
        if (!up) {
          // It never came up (bad arguments, a missing bundle, a crash at start): no restart loop.
          earlyExit(new Error(`device ${this.index} process exited (${why}) before it was ready (see dev-${this.index}.device.log with --logs)`));
          return;
        }
        if (!this.#stopping) {
          // The device comes back on the same flash, as after a reset or a power cycle.
          this.restarts++;
          this.#spawn().catch((e: Error) => this.log(`device restart failed: ${e.message}`));
        }
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`device ${this.index} did not start in 60 s (see its log)`)), 60_000);
    });
    try {
      await Promise.race([ready, timeout, exitedEarly]);
    } finally {
      clearTimeout(timer);
    }
    this.log(`device process ${proc.pid} up on ${dir}`);
  }

  #armed: (() => void) | null = null;

  /** Arm a power cut inside the device process (the simulator's power supply, not the wire). */
  async armFault(point: PowerCutPoint): Promise<void> {
    const proc = this.#proc;
    if (proc === null) throw new Error('no device process');
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve, reject) => {
      this.#armed = resolve;
      timer = setTimeout(() => reject(new Error('the device did not confirm the fault in 5 s')), 5000);
    });
    proc.send({ fault: point });
    try {
      await done;
    } finally {
      clearTimeout(timer);
      this.#armed = null;
    }
    this.log(`fault armed: ${JSON.stringify(point)}`);
  }

  async stopDevice(): Promise<void> {
    this.#stopping = true;
    const proc = this.#proc;
    if (proc !== null) {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 1500);
      await this.#exited;
      clearTimeout(t);
    }
    this.#proc = null;
  }

  /** Kill the device process at once (teardown on exit: no waiting). */
  killNow(): void {
    this.#stopping = true;
    this.#proc?.kill('SIGKILL');
  }

  /** Echo until the device answers (liveness by heartbeat and timeouts); false after `withinMs`. */
  async waitAlive(withinMs = 15_000, pingTimeoutMs = 400): Promise<boolean> {
    const end = Date.now() + withinMs;
    while (Date.now() < end) {
      const r = await this.client.request(echo, { text: 'hil' }, pingTimeoutMs);
      if (r.ok && r.value !== undefined && r.value.text === 'hil') return true;
      if (r.ok) return true; // an error answer is still a live device
      await new Promise((res) => setTimeout(res, 50));
    }
    return false;
  }

  async close(): Promise<void> {
    await this.stopDevice();
    this.client.close();
    this.#unbridge();
    this.link.close();
    await new Promise<void>((resolve) => (this.port.isOpen ? this.port.close(() => resolve()) : resolve()));
  }
}

function portStream(port: SerialPort) {
  return {
    on: (_: 'data', l: (c: Uint8Array) => void) => port.on('data', l),
    off: (_: 'data', l: (c: Uint8Array) => void) => port.off('data', l),
    write: (c: Uint8Array) => port.write(Buffer.from(c.buffer, c.byteOffset, c.byteLength)),
  };
}

function openPort(Port: typeof SerialPort, path: string, baud: number): Promise<SerialPort> {
  return new Promise((resolve, reject) => {
    const p = new Port({ path, baudRate: baud }, (e) => (e ? reject(e) : resolve(p)));
  });
}

/**
 * The optional packages `hil run` needs (host/optional.ts): serialport here, and for simulated devices
 * that verify in QuickJS the QuickJS packages their processes load; checked before anything starts,
 * so a missing one is one error naming it rather than devices that never answer.
 */
async function loadHilPackages(options: RigOptions): Promise<typeof SerialPort> {
  const { SerialPort: Port } = await loadOptional('serialport', 'fwseal hil run', () => import('serialport'));
  if (options.port === undefined && (options.runtime ?? 'quickjs') === 'quickjs') {
    await loadOptional('quickjs-emscripten-core', 'fwseal hil run --runtime quickjs', () => import('quickjs-emscripten-core'));
    await loadOptional('@jitl/quickjs-wasmfile-release-sync', 'fwseal hil run --runtime quickjs', () => import('@jitl/quickjs-wasmfile-release-sync'));
  }
  return Port;
}

async function waitForPaths(paths: string[], ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!paths.every((p) => existsSync(p))) {
    if (Date.now() > end) throw new Error(`socat did not create ${paths.join(', ')} in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export class Rig {
  readonly slots: DeviceSlot[] = [];
  readonly #socats: ChildProcess[] = [];
  #stopped = false;
  readonly #onSignal = (signal: NodeJS.Signals) => {
    void this.stop().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  readonly #onExit = () => this.#killAll();

  private constructor(readonly options: RigOptions) {}

  static async start(options: RigOptions): Promise<Rig> {
    const rig = new Rig(options);
    process.once('SIGINT', rig.#onSignal);
    process.once('SIGTERM', rig.#onSignal);
    process.once('exit', rig.#onExit);
    try {
      const Port = await loadHilPackages(options);
      mkdirSync(options.workDir, { recursive: true });
      if (options.logsDir) mkdirSync(options.logsDir, { recursive: true });
      if (options.port !== undefined) {
        rig.slots.push(new DeviceSlot(0, await openPort(Port, options.port, options.baud), null, options));
        return rig;
      }
      await Promise.all(
        Array.from({ length: options.devices }, async (_, i) => {
          const host = join(options.workDir, `host-${i}`);
          const dev = join(options.workDir, `dev-${i}`);
          const socat = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${host}`, `pty,raw,echo=0,link=${dev}`], { stdio: 'ignore' });
          rig.#socats.push(socat);
          const failed = new Promise<never>((_, reject) =>
            socat.once('error', (e) => reject(new Error(`socat: ${e.message} (is socat installed? tools/setup.sh)`))),
          );
          await Promise.race([waitForPaths([host, dev], 5000), failed]);
          rig.slots[i] = new DeviceSlot(i, await openPort(Port, host, options.baud), dev, options);
        }),
      );
      return rig;
    } catch (e) {
      await rig.stop();
      throw e;
    }
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all(this.slots.filter(Boolean).map((s) => s.close().catch(() => {})));
    for (const s of this.#socats) s.kill('SIGTERM');
    process.removeListener('SIGINT', this.#onSignal);
    process.removeListener('SIGTERM', this.#onSignal);
    process.removeListener('exit', this.#onExit);
  }

  #killAll(): void {
    for (const s of this.slots) s?.killNow();
    for (const s of this.#socats) s.kill('SIGKILL');
  }
}
