/**
 * `fwseal device powercut-sweep`: the MCUboot-simulator style power-cut sweep of a whole update on a
 * simulated device, with throwaway keys (the sweep itself is device/agent/sweep.ts).
 */
import { randomBytes } from 'node:crypto';
import { powercutSweep } from '../../device/agent/sweep.js';
import { toHex } from '../../shared/bytes.js';
import { encodeManifest } from '../../shared/manifest.js';
import { merkleRoot } from '../../shared/merkle.js';
import { encodeTrustBundle } from '../../shared/trust.js';
import { LeafHasher, nodeSha256 } from '../hash.js';
import { signingKeyFromSeed } from '../keys.js';
import { signPayload } from '../sign.js';
import { type Command, int, json, noPositionals } from './common.js';
import { deviceVerifier } from './device.js';

export const devicePowercutSweep: Command = {
  name: 'device powercut-sweep',
  summary: 'cut power before (and in the middle of) every flash operation of an update, then boot',
  usage: `fwseal device powercut-sweep [--image-size BYTES] [--step N] [--no-torn] [--json]

Runs a complete update of a simulated device (old image confirmed, new image of --image-size,
default 65536) and counts its N flash operations; then for k = 1..N replays it with the power cut
before operation k, and with operation k torn half-way, boots, and finishes the update. Checks every
time that the device boots a valid signed image (old or new), never an unverified one, and that the
security counter never regresses. Prints N and the outcome counts; exit 1 on any violation.
Throwaway keys are generated for the run.

Examples:
  fwseal device powercut-sweep
  fwseal device powercut-sweep --image-size 262144 --step 4 --json`,
  options: { 'image-size': { type: 'string' }, step: { type: 'string' }, 'no-torn': { type: 'boolean' }, json: { type: 'boolean' } },
  run(p, io) {
    noPositionals(p);
    const imageSize = int(p, 'image-size', 4096, 64 << 20, 65536);
    const step = int(p, 'step', 1, 1 << 20, 1);
    const [A, B, R1, R2] = ['A', 'B', 'R1', 'R2'].map((n) => signingKeyFromSeed(n, randomBytes(32)));
    const trust = signPayload(
      encodeTrustBundle({
        version: 1,
        root: { threshold: 2, keys: [A.publicKey, B.publicKey] },
        release: { threshold: 2, keys: [R1.publicKey, R2.publicKey] },
      }),
      [A, B],
    );
    const release = (version: string, counter: number) => {
      const image = new Uint8Array(randomBytes(imageSize));
      const manifest = {
        deviceClass: 'sweep-device',
        version,
        securityCounter: counter,
        imageSize,
        chunkSize: 4096,
        merkleRoot: new Uint8Array(merkleRoot(nodeSha256, leavesOf(image, 4096))),
        created: 0,
      };
      return { envelope: signPayload(encodeManifest(manifest), [R1, R2]), image };
    };
    const t0 = Date.now();
    const report = powercutSweep({
      trust,
      deviceClass: 'sweep-device',
      old: release('1.0.0', 1),
      next: release('2.0.0', 2),
      step,
      torn: !p.values['no-torn'],
      verifier: deviceVerifier,
    });
    const seconds = (Date.now() - t0) / 1000;
    if (p.values.json) json(io, { ...report, seconds, trustKeyIds: [A, B].map((k) => toHex(k.keyId)) });
    else {
      io.stdout(`image ${report.imageSize} bytes: N = ${report.operations} flash operations per update; ${report.runs} replays in ${seconds.toFixed(1)} s\n`);
      for (const [k, v] of Object.entries(report.outcomes)) io.stdout(`  ${k.padEnd(20)} ${v}\n`);
      io.stdout(
        report.violations.length === 0
          ? 'violations: 0\n'
          : `violations: ${report.violations.length}\n${report.violations
              .slice(0, 20)
              .map((v) => `  k=${v.k} ${v.mode}: ${v.message}`)
              .join('\n')}\n`,
      );
    }
    return report.violations.length === 0 ? 0 : 1;
  },
};

/** Leaf hashes of an in-memory image. */
function leavesOf(image: Uint8Array, chunkSize: number): Uint8Array[] {
  const hasher = new LeafHasher(chunkSize);
  const leaves: Uint8Array[] = [];
  for (let o = 0; o < image.length; o += chunkSize) leaves.push(new Uint8Array(hasher.leaf(image.subarray(o, o + chunkSize))));
  return leaves;
}
