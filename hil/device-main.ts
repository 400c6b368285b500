/**
 * One simulated device as its own process: `node hil/device-main.js --dir DIR --port PATH [--runtime quickjs|node]`.
 * Opens the device end of a socat pty pair with serialport and runs a SimDevice (hil/device.ts) on
 * it. OS reset exits with DEVICE_RESET_EXIT after the response went out (the rig starts the process
 * again: a reset that keeps flash); a power cut is SIGKILL to itself. The rig arms power cuts over
 * the Node IPC channel (`{ fault }`, answered `{ armed: true }`), never over the serial line.
 * State transitions and requests are logged on stdout, one line each.
 */
import { parseArgs } from 'node:util';
import { type SerialPort } from 'serialport';
import { createVerifier } from '../device/index.js';
import { nodeSha256 } from '../host/hash.js';
import { loadOptional } from '../host/optional.js';
import { type PowerCutPoint, SimDevice } from './device.js';
import { adoptDeviceDir } from './provision.js';

export const DEVICE_RESET_EXIT = 75;

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

async function run(): Promise<void> {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, port: { type: 'string' }, baud: { type: 'string' }, runtime: { type: 'string' } } });
  if (!values.dir || !values.port) throw new Error('usage: device-main --dir DIR --port PATH [--baud N] [--runtime quickjs|node]');
  // A directory from `fwseal device provision` runs too: complete it for the simulated device first.
  adoptDeviceDir(values.dir);
  const runtime = values.runtime ?? 'quickjs';
  if (runtime !== 'quickjs' && runtime !== 'node') throw new Error(`--runtime ${runtime}: quickjs or node`);
  // The verifier: the device bundle inside QuickJS (as on a QuickJS-class device), or the same code in Node.
  // QuickJS is loaded only when asked for (its packages are needed only then).
  const verifier = runtime === 'quickjs' ? await (await import('./quickjs-verifier.js')).quickjsVerifier() : createVerifier({ sha256: nodeSha256 });
  // serialport is an optional package (host/optional.ts); the rig checked it before starting this process.
  const { SerialPort: Port } = await loadOptional('serialport', 'a simulated device', () => import('serialport'));
  const port = await new Promise<SerialPort>((resolve, reject) => {
    const p = new Port({ path: values.port as string, baudRate: Number(values.baud ?? 115200) }, (e) => (e ? reject(e) : resolve(p)));
  });
  // A port error is logged, not thrown: nothing on the line ends the device (SPEC.md §13.7).
  port.on('error', (e: Error) => log(`serial port error: ${e.message}`));
  const device = new SimDevice({
    dir: values.dir,
    verifier,
    end: {
      write: (bytes) => {
        port.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      },
      onData: (listener) => {
        const l = (chunk: Buffer) => listener(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        port.on('data', l);
        return () => {
          port.off('data', l);
        };
      },
    },
    log,
    onReset: () => port.drain(() => port.close(() => process.exit(DEVICE_RESET_EXIT))),
    powerCut: () => {
      log('power cut');
      process.kill(process.pid, 'SIGKILL');
      throw new Error('power cut');
    },
  });
  process.on('message', (m: { fault?: PowerCutPoint }) => {
    if (m?.fault) {
      device.armFault(m.fault);
      process.send?.({ armed: true });
    }
  });
  process.on('SIGTERM', () => {
    device.close();
    port.close(() => process.exit(0));
  });
  log(`ready on ${values.port} (verifier: ${runtime}): ${JSON.stringify(device.status())}`);
  process.send?.({ ready: true });
}

run().catch((e) => {
  process.stderr.write(`device: ${(e as Error).stack ?? e}\n`);
  process.exit(2);
});
