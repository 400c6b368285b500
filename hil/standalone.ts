/**
 * `fwseal hil device --state DIR --pty LINK | --port PATH`: one simulated device (hil/device.ts) for
 * any external SMP client (mcumgr, smpmgr, a team's own tool), from a directory made by `fwseal
 * device provision` (or the harness's provisionDevice). The device runs in this process: an OS reset
 * boots it again on the same flash (a new SimDevice, as after a power-on), the serial line stays.
 *
 * With --pty, socat makes a pseudo-terminal whose other side is this process's stdin/stdout pipes
 * (no serialport needed); LINK is a symlink to it and the /dev/pts path is printed, because clients
 * such as mcumgr take `dev=/dev/pts/N`. socat keeps the slave side open itself, so clients that open
 * and close the port for every command (mcumgr does) find the same device each time. With --port the
 * device opens an existing serial port (a USB adapter, or one end of a pty pair) with serialport.
 * SIGINT/SIGTERM close the device and socat and remove LINK; exit 0.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, lstatSync, readlinkSync, unlinkSync } from 'node:fs';
import { createVerifier, type Verifier } from '../device/index.js';
import { type Io } from '../host/commands/common.js';
import { FwsealError } from '../host/errors.js';
import { nodeSha256 } from '../host/hash.js';
import { loadOptional } from '../host/optional.js';
import { SimDevice } from './device.js';
import { adoptDeviceDir } from './provision.js';
import { type ByteEnd } from './smp-endpoint.js';

export type StandaloneOptions = {
  readonly state: string;
  readonly pty?: string;
  readonly port?: string;
  readonly baud: number;
  readonly runtime: 'quickjs' | 'node';
};

type Line = { readonly end: ByteEnd; readonly path: string; readonly close: () => Promise<void>; readonly failed: Promise<Error> };

async function verifierFor(runtime: 'quickjs' | 'node'): Promise<Verifier> {
  if (runtime === 'node') return createVerifier({ sha256: nodeSha256 });
  const what = 'fwseal hil device --runtime quickjs';
  await loadOptional('quickjs-emscripten-core', what, () => import('quickjs-emscripten-core'));
  await loadOptional('@jitl/quickjs-wasmfile-release-sync', what, () => import('@jitl/quickjs-wasmfile-release-sync'));
  try {
    return await (await import('./quickjs-verifier.js')).quickjsVerifier();
  } catch (e) {
    throw new FwsealError('IO', `the device bundle cannot be loaded in QuickJS (npm run build, or --runtime node): ${(e as Error).message}`);
  }
}

/** LINK may be a symlink left by an earlier run (replaced); anything else there is refused. */
function freeLink(link: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(link);
  } catch {
    return;
  }
  if (!st.isSymbolicLink()) throw new FwsealError('USAGE', `--pty ${link} exists and is not a symlink; refusing to replace it`);
  unlinkSync(link);
}

/** A socat pty whose other side is our pipes; resolves when socat has named the pty and made LINK. */
async function ptyLine(link: string): Promise<Line> {
  freeLink(link);
  const socat = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${link}`, 'STDIO'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let exited = false;
  const failed = new Promise<Error>((resolve) => {
    socat.once('error', (e) => resolve(new FwsealError('IO', `socat: ${e.message} (is socat installed? tools/setup.sh)`)));
    socat.once('exit', (code, signal) => {
      exited = true;
      resolve(new FwsealError('IO', `socat ended (${code ?? signal})`));
    });
  });
  let stderr = '';
  const path = await new Promise<string>((resolve, reject) => {
    socat.stderr.on('data', (c: Buffer) => {
      stderr += c.toString('utf8');
      const m = /PTY is (\S+)/.exec(stderr);
      if (m && existsSync(link)) resolve(m[1]);
    });
    void failed.then((e) => reject(new FwsealError('IO', `${e.message}: ${stderr.trim().split('\n').pop() ?? ''}`)));
  });
  // socat logs nothing else we need; keep draining its stderr so it never blocks.
  socat.stderr.removeAllListeners('data');
  socat.stderr.resume();
  const end: ByteEnd = {
    write: (bytes) => {
      if (!exited) socat.stdin.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
    onData: (listener) => {
      const l = (c: Buffer) => listener(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
      socat.stdout.on('data', l);
      return () => socat.stdout.off('data', l);
    },
  };
  return { end, path, failed, close: () => stopSocat(socat, link, () => exited) };
}

async function stopSocat(socat: ChildProcess, link: string, exited: () => boolean): Promise<void> {
  if (!exited()) {
    const gone = new Promise<void>((resolve) => socat.once('exit', () => resolve()));
    socat.kill('SIGTERM');
    const t = setTimeout(() => socat.kill('SIGKILL'), 2000);
    await gone;
    clearTimeout(t);
  }
  try {
    if (lstatSync(link).isSymbolicLink() && readlinkSync(link).startsWith('/dev/')) unlinkSync(link);
  } catch {
    /* already removed by socat */
  }
}

/** An existing serial port, opened with serialport (an optional package). */
async function portLine(path: string, baud: number): Promise<Line> {
  const { SerialPort } = await loadOptional('serialport', 'fwseal hil device --port', () => import('serialport'));
  const port = await new Promise<InstanceType<typeof SerialPort>>((resolve, reject) => {
    const p = new SerialPort({ path, baudRate: baud }, (e) => (e ? reject(new FwsealError('IO', `cannot open ${path}: ${e.message}`)) : resolve(p)));
  });
  const failed = new Promise<Error>((resolve) => port.once('close', () => resolve(new FwsealError('IO', `${path} closed`))));
  const end: ByteEnd = {
    write: (bytes) => {
      port.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    },
    onData: (listener) => {
      const l = (c: Buffer) => listener(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
      port.on('data', l);
      return () => port.off('data', l);
    },
  };
  // A port error is logged by the caller's device, never fatal (SPEC.md §13.7).
  port.on('error', () => {});
  return { end, path, failed, close: () => new Promise<void>((resolve) => (port.isOpen ? port.drain(() => port.close(() => resolve())) : resolve())) };
}

/** Run the device until SIGINT/SIGTERM (0), or until its line fails (IO). */
export async function runStandaloneDevice(options: StandaloneOptions, io: Io): Promise<number> {
  const config = adoptDeviceDir(options.state);
  const verifier = await verifierFor(options.runtime);
  const line = options.pty !== undefined ? await ptyLine(options.pty) : await portLine(options.port as string, options.baud);
  const log = (l: string) => io.stdout(`${new Date().toISOString()} ${l}\n`);
  let device: SimDevice;
  const boot = (): SimDevice =>
    new SimDevice({
      dir: options.state,
      end: line.end,
      verifier,
      log,
      // OS reset: the response went out; the device boots again on the same flash (SPEC.md §13.5: a pending image runs on trial).
      onReset: () => {
        device.close();
        log('reset: booting again');
        device = boot();
      },
      powerCut: () => {
        throw new Error('a standalone device has no power cuts');
      },
    });
  let stop: (signal: string) => void = () => {};
  const stopped = new Promise<string>((resolve) => {
    stop = resolve;
  });
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    // The line first (a script waiting for the pty path reads one line), then the device's boot.
    const where = options.pty !== undefined ? `${line.path} (link ${options.pty})` : line.path;
    io.stdout(`fwseal hil device on ${where}, state ${options.state}; SIGINT or SIGTERM stops it\n`);
    device = boot();
    log(`ready: device class ${config.deviceClass}, ${JSON.stringify(device.status())}`);
    const ended = await Promise.race([stopped, line.failed]);
    device.close();
    if (ended instanceof Error) throw ended;
    log(`${ended}: stopped`);
    return 0;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    (verifier as Verifier & { dispose?: () => void }).dispose?.();
    await line.close();
  }
}
