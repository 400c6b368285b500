/**
 * A simulated device in this process, on the link emulator over a VirtualClock: the same SimDevice
 * (update agent, boot agent, file flash) as the device processes, without socat and processes, so
 * an upload's line time is measured exactly and the same seed gives the same faults. The benchmark
 * and the unit tests use it; the rig (hil/rig.ts) is the real thing.
 */

import { type Verifier } from '../device/index.js';
import { nodeSha256 } from '../host/hash.js';
import { type Result } from '../shared/codes.js';
import { VirtualClock } from './clock.js';
import { type PowerCutPoint, SimDevice } from './device.js';
import { Link, type LinkFaults } from './link.js';
import { provisionDevice } from './provision.js';
import { SmpClient } from './smp-endpoint.js';
import { type UploadReport, uploadImage } from './upload.js';
import { makeRelease, makeTrust, type Release } from './world.js';

export const EMULATED_TRUST = { root: ['A', 'B', 'C'], rootThreshold: 2, release: ['R1', 'R2', 'R3'], releaseThreshold: 2 } as const;

/** A power cut in an emulated device: thrown out of the device's handler, caught by its link listener. */
export class EmulatedPowerCut extends Error {}

export type EmulatedDevice = {
  readonly clock: VirtualClock;
  readonly link: Link;
  readonly client: SmpClient;
  device: SimDevice;
  /** Power cycles: a new SimDevice on the same flash (as a process restart). */
  restart(): void;
  powerCuts: number;
  close(): void;
};

/** Provision `dir` with factory release 1.0.0 (counter 1) of `deviceClass` and run a device on a fresh link. */
export function emulatedDevice(
  dir: string,
  options: {
    baud: number;
    faults?: LinkFaults;
    seed?: number;
    latencyMs?: number;
    imageSize?: number;
    chunkSize?: number;
    timeoutMs?: number;
    verifier?: Verifier;
  },
): EmulatedDevice {
  const trust = makeTrust(EMULATED_TRUST);
  const factory = makeRelease({
    version: '1.0.0',
    counter: 1,
    signers: ['R1', 'R2'],
    deviceClass: 'hil-board',
    imageSize: options.imageSize ?? 16384,
    chunkSize: options.chunkSize ?? 1024,
  });
  const p = provisionDevice(dir, {
    deviceClass: 'hil-board',
    trust,
    envelope: factory.envelope,
    image: factory.image,
    slotSize: Math.ceil(((options.imageSize ?? 16384) + 4096) / 4096) * 4096,
  });
  if (!p.ok) throw new Error(`provision: ${p.error}`);
  const clock = new VirtualClock();
  const link = new Link(clock, { baud: options.baud, faults: options.faults ?? {}, seed: options.seed ?? 1, latencyMs: options.latencyMs ?? 0 });
  const client = new SmpClient(link.host, clock, { timeoutMs: options.timeoutMs ?? 2000 });
  // The device's receive path: a power cut stops it (the exception ends the handler), then it restarts.
  const guarded = {
    write: (b: Uint8Array) => link.device.write(b),
    onData: (l: (c: Uint8Array) => void) =>
      link.device.onData((c) => {
        try {
          l(c);
        } catch (e) {
          if (!(e instanceof EmulatedPowerCut)) throw e;
          emu.powerCuts++;
          emu.restart();
        }
      }),
  };
  const make = () =>
    new SimDevice({
      dir,
      end: guarded,
      ...(options.verifier ? { verifier: options.verifier } : {}),
      onReset: () => emu.restart(),
      powerCut: () => {
        throw new EmulatedPowerCut('power cut');
      },
    });
  const emu: EmulatedDevice = {
    clock,
    link,
    client,
    device: make(),
    powerCuts: 0,
    restart() {
      emu.device.close();
      emu.device = make();
    },
    close() {
      client.close();
      emu.device.close();
      link.close();
    },
  };
  return emu;
}

export function release2(options: { imageSize?: number; chunkSize?: number; signers?: string[]; deviceClass?: string } = {}): Release {
  return makeRelease({
    version: '2.0.0',
    counter: 2,
    signers: options.signers ?? ['R1', 'R2'],
    deviceClass: options.deviceClass ?? 'hil-board',
    imageSize: options.imageSize ?? 16384,
    chunkSize: options.chunkSize ?? 1024,
  });
}

/** Upload a release's bundle to an emulated device on virtual time; the report and the virtual seconds it took. */
export async function emulatedUpload(
  emu: EmulatedDevice,
  bundle: Uint8Array,
  options: { chunkBytes?: number; window?: number; timeoutMs?: number; maxStalls?: number; fault?: PowerCutPoint } = {},
): Promise<{ result: Result<UploadReport>; seconds: number }> {
  if (options.fault) emu.device.armFault(options.fault);
  const t0 = emu.clock.now();
  const result = await emu.clock.settle(
    uploadImage(emu.client, bundle, {
      sha: nodeSha256(bundle),
      window: options.window ?? 2,
      maxStalls: options.maxStalls ?? 50,
      ...(options.chunkBytes ? { chunkBytes: options.chunkBytes } : {}),
      ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
    }),
  );
  return { result, seconds: (emu.clock.now() - t0) / 1000 };
}
