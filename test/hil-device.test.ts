/**
 * The simulated device (hil/device.ts) in-process on the link emulator over a virtual clock: update
 * bundles over SMP image upload (SPEC.md §13.5), verification before writing, rejections by code,
 * resume decided by the device from its flash, power cuts. The rig runs the same device as processes
 * on socat ptys (test/hil.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type EmulatedDevice, emulatedDevice, emulatedUpload, release2 } from '../hil/emulated.js';
import { SmpClient } from '../hil/smp-endpoint.js';
import { makeBundle, makeTrust } from '../hil/world.js';
import { BUNDLE_HEADER_BYTES, bundleLayout, chunkOffset, parseBundleHeader } from '../shared/bundle.js';
import { CODES } from '../shared/codes.js';
import { imageStateWrite, imageUpload, status, trustUpdate } from '../shared/smp/commands.js';
import { IMG_MGMT_ERR } from '../shared/smp/error-map.js';
import { MGMT_ERR } from '../shared/smp/errors.js';
import { SMP_GROUP, SMP_VERSION } from '../shared/smp/packet.js';

const dirs: string[] = [];
const devices: EmulatedDevice[] = [];
afterEach(() => {
  for (const d of devices.splice(0)) d.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function device(options: Partial<Parameters<typeof emulatedDevice>[1]> = {}): EmulatedDevice {
  const dir = mkdtempSync(join(tmpdir(), 'fwseal-hil-dev-'));
  dirs.push(dir);
  const d = emulatedDevice(dir, { baud: 921600, ...options });
  devices.push(d);
  return d;
}

async function statusOf(d: EmulatedDevice) {
  const r = await d.clock.settle(d.client.request(status, {}));
  if (!r.ok || r.value === undefined) throw new Error('no status');
  return r.value;
}

describe('update bundle layout (SPEC.md §13.5)', () => {
  it('puts each digest page and its proof right before the chunks of that page', () => {
    const l = bundleLayout(300, 200 * 1024, 1024); // 200 chunks: pages of 128 and 72 leaves
    expect(l.pages.map((p) => [p.digestsAt, p.leavesBytes, p.proofBytes, p.chunksAt, p.firstChunk, p.endChunk, p.end])).toEqual([
      [312, 128 * 32, 32, 312 + 4096 + 32, 0, 128, 312 + 4128 + 128 * 1024],
      [312 + 4128 + 128 * 1024, 72 * 32, 32, 312 + 4128 + 128 * 1024 + 2304 + 32, 128, 200, 312 + 4128 + 128 * 1024 + 2336 + 72 * 1024],
    ]);
    expect(l.length).toBe(12 + 300 + 200 * 32 + 2 * 32 + 200 * 1024);
    expect(chunkOffset(l, 129)).toBe(l.pages[1].chunksAt + 1024);
  });

  it('a bundle starts with the magic and the manifest length', () => {
    const rel = release2();
    const b = makeBundle(rel);
    expect(parseBundleHeader(b.subarray(0, BUNDLE_HEADER_BYTES))).toBe(rel.envelope.length);
    expect(parseBundleHeader(new Uint8Array(12))).toBeNull();
    expect(b.length).toBe(bundleLayout(rel.envelope.length, 16384, 1024).length);
  });
});

describe('simulated device over the emulated link', () => {
  it('installs a bundle: pending after the upload, trial after a reset, counter raised on confirm', async () => {
    const d = device();
    const up = await emulatedUpload(d, makeBundle(release2()));
    expect(up.result.ok).toBe(true);
    expect(await statusOf(d)).toMatchObject({ slot: 0, version: '1.0.0', counter: 1, code: 0, phase: 'pending' });
    d.restart();
    expect(await statusOf(d)).toMatchObject({ slot: 1, version: '2.0.0', counter: 1, phase: 'trial' });
    const c = await d.clock.settle(d.client.request(imageStateWrite, { confirm: true }));
    expect(c.ok && c.value !== undefined).toBe(true);
    expect(await statusOf(d)).toEqual({ slot: 1, version: '2.0.0', counter: 2, code: 0, phase: 'idle', trust: 1, revocation: 0 });
  });

  it('refuses a tampered chunk before writing it: ECORRUPT with the code name, status code 402', async () => {
    const d = device();
    const up = await emulatedUpload(d, makeBundle(release2(), { tamperChunk: 5 }));
    expect(up.result.ok).toBe(false);
    expect(await statusOf(d)).toMatchObject({ slot: 0, code: CODES.CHUNK_DIGEST_MISMATCH, phase: 'downloading' });
    // Chunks 0-4 are on flash: the untampered bundle resumes at chunk 5.
    const again = await emulatedUpload(d, makeBundle(release2()));
    expect(again.result.ok && again.result.skipped).toBeGreaterThanOrEqual(5 * 1024 - 4096);
    expect((await statusOf(d)).phase).toBe('pending');
  });

  it('answers the fwseal code: v1 rc + rsn, v2 an img_mgmt group error (SPEC.md §13.6)', async () => {
    const d = device();
    const bundle = makeBundle(release2({ deviceClass: 'other-board' }));
    const first = { off: 0, len: bundle.length, data: bundle.subarray(0, 2000) };
    const v1 = await d.clock.settle(d.client.request(imageUpload, first));
    expect(v1.ok && v1.smpError).toEqual({ rc: MGMT_ERR.EACCESSDENIED, rsn: 'WRONG_DEVICE_CLASS' });
    const v2client = new SmpClient(d.link.host, d.clock, { version: SMP_VERSION.v2 });
    const v2 = await d.clock.settle(v2client.request(imageUpload, first));
    expect(v2.ok && v2.smpError).toEqual({ rc: IMG_MGMT_ERR.INVALID_IMAGE_HEADER, group: SMP_GROUP.image });
    expect((await statusOf(d)).code).toBe(CODES.WRONG_DEVICE_CLASS);
    v2client.close();
  });

  it('resumes after a power cut from what the flash holds: the device skips the chunks it has', async () => {
    const d = device({ imageSize: 65536 });
    const bundle = makeBundle(release2({ imageSize: 65536 }));
    // The uploader sees no answer, rewinds, is told offset 0 by the restarted device, starts over,
    // and the device (manifest verified again) jumps it past the 30 chunks already on flash.
    const up = await emulatedUpload(d, bundle, { fault: { at: 'chunk', after: 30 }, timeoutMs: 300 });
    expect(d.powerCuts).toBe(1);
    expect(up.result.ok).toBe(true);
    if (!up.result.ok) return;
    expect(up.result.skipped).toBeGreaterThanOrEqual(28 * 1024);
    // A restart from offset 0 would have sent the bytes before the cut plus the whole bundle.
    expect(up.result.dataBytes).toBeLessThan(2 * bundle.length - 29 * 1024);
    expect((await statusOf(d)).phase).toBe('pending');
  });

  it('survives a power cut in the middle of a chunk write and of the commit (torn writes)', async () => {
    for (const fault of [
      { at: 'write', op: 9, torn: true },
      { at: 'commit', op: 2, torn: true },
    ] as const) {
      const d = device();
      const up = await emulatedUpload(d, makeBundle(release2()), { fault, timeoutMs: 300 });
      expect(d.powerCuts, fault.at).toBe(1);
      expect(up.result.ok, fault.at).toBe(true);
      expect((await statusOf(d)).phase, fault.at).toBe('pending');
      d.restart();
      expect(await statusOf(d), fault.at).toMatchObject({ slot: 1, version: '2.0.0', phase: 'trial' });
    }
  });

  it('rotates trust over group 64 and reports the new version', async () => {
    const d = device();
    const v2 = makeTrust({ version: 2, root: ['B', 'C', 'D'], rootThreshold: 2, release: ['R4', 'R5'], releaseThreshold: 2, signers: ['A', 'B', 'C', 'D'] });
    const r = await d.clock.settle(d.client.request(trustUpdate, { off: 0, len: v2.length, data: v2 }));
    expect(r.ok && r.value).toEqual({ off: v2.length, code: 0 });
    expect((await statusOf(d)).trust).toBe(2);
    const skip = makeTrust({ version: 4, root: ['B', 'C', 'D'], rootThreshold: 2, release: ['R4'], releaseThreshold: 1 });
    const bad = await d.clock.settle(d.client.request(trustUpdate, { off: 0, len: skip.length, data: skip }));
    expect(bad.ok && bad.value).toEqual({ off: skip.length, code: CODES.TRUST_VERSION_SKIP });
    expect(await statusOf(d)).toMatchObject({ trust: 2, code: CODES.TRUST_VERSION_SKIP });
  });
});

describe('simulated device with the device bundle in QuickJS (--runtime quickjs)', () => {
  it('installs a bundle and refuses a tampered chunk with the same codes as in Node', async () => {
    const { defaultBundlePath, quickjsVerifier } = await import('../hil/quickjs-verifier.js');
    defaultBundlePath(); // throws when the bundle is not built (npm test builds it first)
    const verifier = await quickjsVerifier();
    try {
      const d = device({ verifier });
      const wrong = makeBundle(release2({ deviceClass: 'other-board' }));
      const r = await d.clock.settle(d.client.request(imageUpload, { off: 0, len: wrong.length, data: wrong.subarray(0, 1000) }));
      expect(r.ok && r.smpError).toEqual({ rc: MGMT_ERR.EACCESSDENIED, rsn: 'WRONG_DEVICE_CLASS' });
      expect((await emulatedUpload(d, makeBundle(release2(), { tamperChunk: 2 }))).result.ok).toBe(false);
      expect(await statusOf(d)).toMatchObject({ code: CODES.CHUNK_DIGEST_MISMATCH, phase: 'downloading' });
      expect((await emulatedUpload(d, makeBundle(release2()))).result.ok).toBe(true);
      d.restart();
      expect(await statusOf(d)).toMatchObject({ slot: 1, version: '2.0.0', phase: 'trial' });
    } finally {
      verifier.dispose();
    }
  });
});

describe('simulated device: lost answers', () => {
  it('answers len again to a client that restarts a completed upload (its last answer was lost)', async () => {
    const d = device();
    const bundle = makeBundle(release2());
    expect((await emulatedUpload(d, bundle)).result.ok).toBe(true);
    const again = await emulatedUpload(d, bundle);
    expect(again.result.ok && again.result.requests).toBe(1);
    expect((await statusOf(d)).phase).toBe('pending');
  });
});
