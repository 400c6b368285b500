/**
 * Log proofs delivered over the HIL serial link (issue 19 items 2 and 5, SPEC.md §13.5): a device
 * provisioned with a trust bundle that requires log proofs, run by `fwseal hil device` on a socat pty
 * and driven from this process as mcumgr would drive it. Its status (group 64) reports the checkpoint
 * size a proof must start from; `fwseal hil bundle --log DIR --from-size N` writes the FWSBND2 bundle
 * that carries the proof next to the unchanged manifest; the device takes it, and refuses the same
 * release in an FWSBND1 bundle (LOG_PROOF_MISSING), answered as §13.6 says.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HIL_COMMANDS } from '../hil/cli.js';
import { type EmulatedDevice, emulatedDevice, emulatedUpload, release2 } from '../hil/emulated.js';
import { type SmpClient } from '../hil/smp-endpoint.js';
import { uploadImage } from '../hil/upload.js';
import { makeBundle } from '../hil/world.js';
import { nodeSha256 } from '../host/hash.js';
import { signCheckpoint } from '../host/tlog/log.js';
import { appendEntries, initLog } from '../host/tlog/store.js';
import { BUNDLE_MAGIC_V2, bundleLayout } from '../shared/bundle.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { imageStateWrite, imageUpload, reset, status } from '../shared/smp/commands.js';
import { IMG_MGMT_ERR, imageGroupCode } from '../shared/smp/error-map.js';
import { MGMT_ERR } from '../shared/smp/errors.js';
import { runCli } from './support/cli-run.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { childLines, smpSession } from './support/hil-pty.js';
import { worldBundle } from './support/tlog-device-world.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'fwseal-tlog-hil-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, bytes: Uint8Array | string) => {
  writeFileSync(join(dir, name), bytes);
  return join(dir, name);
};

beforeAll(() => {
  execFileSync('socat', ['-V'], { stdio: 'ignore' }); // a test requirement (tools/setup.sh): missing, the suite fails here
});

const W = standardWorld();
const ORIGIN = 'example.com/hil-log';
const LOG = detKey('LOG');
const trust = file('trust.cbor', worldBundle(W, { origin: ORIGIN, logKey: LOG.publicKey, witnessThreshold: 0, witnesses: [] }));
const release = (version: string, counter: number, size: number) => {
  const image = detBytes(size, `tlog-hil ${version}`);
  const envelope = makeManifestEnvelope(makeManifest(image, { version, securityCounter: counter, chunkSize: 1024 }), [W.R1, W.R2]);
  return { envelope, manifest: file(`fw-${version}.cose`, envelope), image: file(`fw-${version}.bin`, image) };
};
const v1 = release('1.0.0', 1, 16_384);
const v2 = release('2.0.0', 2, 20_000);
const hil = (args: string[]) => runCli(['hil', ...args], HIL_COMMANDS);

const upload = (client: SmpClient, path: string) => {
  const bundle = new Uint8Array(readFileSync(path));
  return uploadImage(client, bundle, { sha: nodeSha256(bundle), timeoutMs: 5000 });
};

describe('log proofs over the serial link (fwseal hil device on a pty, fwseal hil bundle --log)', () => {
  it('a bundle without the proof is refused (LOG_PROOF_MISSING); the FWSBND2 bundle for the size status reports is taken, installed and confirmed', async () => {
    const state = join(dir, 'dev');
    const provisioned = await runCli([
      'device',
      'provision',
      '--state',
      state,
      '--trust',
      trust,
      '--device-class',
      'acme-gw',
      '--manifest',
      v1.manifest,
      '--image',
      v1.image,
    ]);
    expect(provisioned.status).toBe(0);
    // The release process: the manifest is appended to the log and a checkpoint signed (fwseal log append, checkpoint).
    const log = join(dir, 'log');
    initLog(log, ORIGIN, LOG);
    appendEntries(log, [W.envelope, v2.envelope]);
    signCheckpoint(log, LOG);

    const link = join(dir, 'dev.pty');
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const child = spawn(
      process.execPath,
      ['--import', tsx, join(ROOT, 'hil', 'cli.ts'), 'hil', 'device', '--state', state, '--pty', link, '--runtime', 'node'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const out = childLines(child);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      const pts = (await out.waitFor(/hil device on (\/dev\/pts\/\d+) \(link /))[1];
      const before = await smpSession(pts, (c) => c.request(status, {}));
      expect(before.ok && before.value).toMatchObject({ version: '1.0.0', log: 0, code: 0 }); // a policy, no checkpoint stored yet

      // FWSBND1: the same release without its proof.
      const plain = join(dir, 'plain.bin');
      expect((await hil(['bundle', v2.manifest, '--image', v2.image, '--out', plain])).status).toBe(0);
      const refused = await smpSession(pts, (c) => upload(c, plain));
      expect(refused.ok).toBe(false);
      const after = await smpSession(pts, (c) => c.request(status, {}));
      expect(after.ok && after.value).toMatchObject({ version: '1.0.0', log: 0, code: CODES.LOG_PROOF_MISSING, phase: 'idle' });
      expect(imageGroupCode(CODES.LOG_PROOF_MISSING)).toBe(IMG_MGMT_ERR.NO_TLVS); // what a v2 image upload answers (SPEC.md §13.6)

      // FWSBND2 for the size the device reports.
      const proved = join(dir, 'proved.bin');
      const made = await hil([
        'bundle',
        v2.manifest,
        '--image',
        v2.image,
        '--log',
        log,
        '--from-size',
        String(after.ok ? after.value?.log : -1),
        '--out',
        proved,
        '--json',
      ]);
      expect(made.status, made.err).toBe(0);
      expect(JSON.parse(made.out).logProofBytes).toBeGreaterThan(0);
      expect([...readFileSync(proved).subarray(0, 8)]).toEqual([...BUNDLE_MAGIC_V2]);
      const taken = await smpSession(pts, (c) => upload(c, proved));
      expect(taken.ok, JSON.stringify(taken)).toBe(true);
      const pending = await smpSession(pts, (c) => c.request(status, {}));
      expect(pending.ok && pending.value).toMatchObject({ phase: 'pending', log: 2, code: 0 }); // the checkpoint of size 2 is stored
      await smpSession(pts, async (c) => expect((await c.request(reset, {})).ok).toBe(true));
      await out.waitFor(/reset: booting again/);
      await smpSession(pts, async (c) => expect((await c.request(imageStateWrite, { confirm: true })).ok).toBe(true));
      const end = await smpSession(pts, (c) => c.request(status, {}));
      expect(end.ok && end.value).toMatchObject({ version: '2.0.0', counter: 2, code: 0, phase: 'idle', log: 2 });
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  }, 120_000);

  it('hil run: an upload step with "log" sends the FWSBND2 bundle built for the size the device reports; without it the device refuses', async () => {
    const log = join(dir, 'scenario-log');
    initLog(log, ORIGIN, LOG);
    appendEntries(log, [v2.envelope]);
    signCheckpoint(log, LOG);
    const path = file(
      'log-scenario.json',
      JSON.stringify({
        name: 'log-proof-update',
        setup: { deviceClass: 'acme-gw', trust: 'trust.cbor', factory: { manifest: 'fw-1.0.0.cose', image: 'fw-1.0.0.bin' } },
        steps: [
          { upload: { manifest: 'fw-2.0.0.cose', image: 'fw-2.0.0.bin' }, expect: { code: 'LOG_PROOF_MISSING' } },
          { upload: { manifest: 'fw-2.0.0.cose', image: 'fw-2.0.0.bin' }, log: 'scenario-log' },
          { reset: true },
          { confirm: true },
        ],
        expect: { slot: 1, version: '2.0.0', counter: 2, code: 'OK', phase: 'idle' },
      }),
    );
    const r = await hil(['run', '--devices', '1', '--runtime', 'node', '--baud', '460800', '--scenarios', path]);
    expect(r.status, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/1 passed, 0 failed/);
  }, 120_000);

  it('hil bundle: --from-size without --log is USAGE; a manifest the log has no checkpoint for is NOT_FOUND', async () => {
    const out = join(dir, 'never.bin');
    const usage = await hil(['bundle', v2.manifest, '--image', v2.image, '--from-size', '3', '--out', out]);
    expect(usage.err).toContain(`(code ${CODES.USAGE})`);
    const empty = join(dir, 'empty-log');
    initLog(empty, ORIGIN, LOG);
    const missing = await hil(['bundle', v2.manifest, '--image', v2.image, '--log', empty, '--out', out]);
    expect(missing.err).toContain(`(code ${CODES.NOT_FOUND})`);
    expect(missing.status).toBe(2);
  });
});

describe('FWSBND2 on a device without a log policy (the emulated link, in-process)', () => {
  const emulated: EmulatedDevice[] = [];
  afterEach(() => {
    for (const d of emulated.splice(0)) d.close();
  });
  const device = (imageSize?: number): EmulatedDevice => {
    const d = emulatedDevice(mkdtempSync(join(dir, 'emu-')), { baud: 921600, ...(imageSize ? { imageSize } : {}) });
    emulated.push(d);
    return d;
  };
  const statusOf = async (d: EmulatedDevice) => {
    const r = await d.clock.settle(d.client.request(status, {}));
    if (!r.ok || r.value === undefined) throw new Error('no status');
    return r.value;
  };

  it('takes the bundle: the attachment goes to an agent that checks no proof, the pages after it land, and a power cut resumes past the chunks on flash', async () => {
    const d = device(65536);
    expect((await statusOf(d)).log).toBeUndefined(); // no policy: status has no `log`
    const bundle = makeBundle(release2({ imageSize: 65536 }), { logProof: new Uint8Array(500).fill(0x5a) });
    const up = await emulatedUpload(d, bundle, { fault: { at: 'chunk', after: 30 }, timeoutMs: 300 });
    expect(d.powerCuts).toBe(1);
    expect(up.result.ok, JSON.stringify(up.result)).toBe(true);
    expect(up.result.ok && up.result.skipped).toBeGreaterThanOrEqual(28 * 1024);
    expect(await statusOf(d)).toMatchObject({ phase: 'pending', code: 0 });
  });

  it('a proof length of 0 is BAD_VALUE, above maxLogProofBytes TOO_LARGE, before the manifest is read', async () => {
    const rel = release2();
    for (const [proofBytes, name] of [
      [0, 'BAD_VALUE'],
      [LIMITS.maxLogProofBytes + 1, 'TOO_LARGE'],
    ] as const) {
      const d = device();
      const header = new Uint8Array(16);
      header.set(BUNDLE_MAGIC_V2);
      new DataView(header.buffer).setUint32(8, rel.envelope.length);
      new DataView(header.buffer).setUint32(12, proofBytes);
      const len = bundleLayout(rel.envelope.length, rel.manifest.imageSize, rel.manifest.chunkSize, 1).length + proofBytes;
      const r = await d.clock.settle(d.client.request(imageUpload, { off: 0, len, data: header }));
      expect(r.ok && r.smpError).toEqual({ rc: MGMT_ERR.EINVAL, rsn: name }); // 1xx: v1 EINVAL with the code name (SPEC.md §13.6)
      expect((await statusOf(d)).code).toBe(CODES[name]);
    }
  });
});
