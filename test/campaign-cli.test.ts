/**
 * `fwseal campaign create|status|pause|resume|abort` in-process through main() against a running
 * OtaServer, and `fwseal serve` as a process (the built binary): the address line, the API, SIGTERM.
 * Exit statuses and codes are asserted, never message text.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../host/cli.js';
import { OtaServer } from '../host/ota/server.js';
import { CODES } from '../shared/codes.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { freePort, type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually, RawDevice, retainedAnnouncement } from './support/ota-client.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'dist', 'host', 'cli.js');
const w = standardWorld();
const image = detBytes(150_000, 'campaign cli image');
const manifest = makeManifest(image, { chunkSize: 1024 });

let broker: Mosquitto;
let server: OtaServer;
let dir: string;
const cleanups: (() => Promise<void> | void)[] = [];

type Out = { status: number; stdout: string; stderr: string };
async function fwseal(...argv: string[]): Promise<Out> {
  let stdout = '';
  let stderr = '';
  const status = await main(argv, {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    stderrIsTty: false,
  });
  return { status, stdout, stderr };
}

const codeIn = (text: string) => Number(text.match(/\(code (\d+)\)/)?.[1]);

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
  dir = mkdtempSync(join(tmpdir(), 'fwseal-campaign-cli-'));
  writeFileSync(join(dir, 'trust.cbor'), w.trust);
  writeFileSync(join(dir, 'fw.bin'), image);
  writeFileSync(join(dir, 'fw.cose'), makeManifestEnvelope(manifest, [w.R1, w.R2]));
  writeFileSync(join(dir, 'weak.cose'), makeManifestEnvelope(manifest, [w.R3]));
  writeFileSync(join(dir, 'other.bin'), detBytes(150_000, 'not the signed image'));
  server = await OtaServer.start({
    mqtt: { url: broker.url, options: { protocolVersion: 5, clientId: `cli-srv-${randomBytes(3).toString('hex')}`, reconnectPeriod: 500 } },
    dataDir: join(dir, 'data'),
    trust: w.trust,
    http: { host: '127.0.0.1', port: 0 },
    tickMs: 100,
  });
  process.env.FWSEAL_SERVER = server.address()!.url;
  delete process.env.FWSEAL_SERVER_TOKEN;
});

afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

afterAll(async () => {
  delete process.env.FWSEAL_SERVER;
  await server?.close();
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('fwseal campaign', () => {
  it('creates a campaign (only the id on stdout), shows its status, pauses, resumes and aborts it', async () => {
    const d = await RawDevice.connect(broker.url, 'cli-dev-1');
    cleanups.push(() => d.close());
    await d.online('cli-group');
    await eventually(async () => (await server.store.devices('cli-group')).length === 1);
    const created = await fwseal(
      'campaign',
      'create',
      '--manifest',
      join(dir, 'fw.cose'),
      '--image',
      join(dir, 'fw.bin'),
      '--group',
      'cli-group',
      '--waves',
      '100',
    );
    expect(created.status).toBe(0);
    const id = created.stdout.trim();
    expect(id).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect((await retainedAnnouncement(broker.url, 'cli-group'))?.campaign).toBe(id);

    const table = await fwseal('campaign', 'status', id);
    expect(table.status).toBe(0);
    expect(table.stdout).toContain(`campaign ${id}`);
    expect(table.stdout).toMatch(/state running/);
    expect(table.stdout).toMatch(/cli-dev-1\s+waiting/);

    await d.manifest(id, 1); // a status counts only from a device served the manifest (SPEC.md §12.9)
    await d.status({ campaign: id, device: 'cli-dev-1', state: 'downloading', done: 3, total: 10 });
    const js = await eventually(async () => {
      const r = await fwseal('campaign', 'status', id, '--json');
      const body = JSON.parse(r.stdout);
      return body.counts.downloading === 1 ? body : null;
    });
    expect(js).toMatchObject({ id, group: 'cli-group', state: 'running', wave: 1, waves: [100] });
    expect(js.devices).toEqual([expect.objectContaining({ id: 'cli-dev-1', state: 'downloading', done: 3, total: 10 })]);

    expect((await fwseal('campaign', 'pause', id)).stdout).toBe(`${id} paused\n`);
    const again = await fwseal('campaign', 'pause', id);
    expect(again.status).toBe(2);
    expect(codeIn(again.stderr)).toBe(CODES.CONFLICT);
    expect((await fwseal('campaign', 'resume', id)).stdout).toBe(`${id} running\n`);

    // --watch (not a TTY): one line per change, ends when the campaign completes.
    const watching = fwseal('campaign', 'status', id, '--watch');
    await d.status({ campaign: id, device: 'cli-dev-1', state: 'confirmed' });
    const watched = await watching;
    expect(watched.status).toBe(0);
    expect(watched.stdout.trim().split('\n').at(-1)).toMatch(new RegExp(`^${id} completed `));

    expect((await fwseal('campaign', 'abort', id, '--json')).stdout).toContain('"state": "aborted"');
    expect(await retainedAnnouncement(broker.url, 'cli-group')).toBeNull();
  });

  it('maps refusals to codes: 422 the verifier code (exit 1), 404 NOT_FOUND, 409 CONFLICT, 401 UNAUTHORIZED, SERVER_UNREACHABLE', async () => {
    const weak = await fwseal('campaign', 'create', '--manifest', join(dir, 'weak.cose'), '--image', join(dir, 'fw.bin'), '--group', 'cli-g2');
    expect(weak.status).toBe(1);
    expect(codeIn(weak.stderr)).toBe(CODES.THRESHOLD_NOT_MET);
    const mismatch = await fwseal('campaign', 'create', '--manifest', join(dir, 'fw.cose'), '--image', join(dir, 'other.bin'), '--group', 'cli-g2');
    expect(mismatch.status).toBe(1);
    expect(codeIn(mismatch.stderr)).toBe(CODES.MERKLE_ROOT_MISMATCH);

    const missing = await fwseal('campaign', 'status', 'no-such-campaign');
    expect([missing.status, codeIn(missing.stderr)]).toEqual([2, CODES.NOT_FOUND]);

    const first = await fwseal('campaign', 'create', '--manifest', join(dir, 'fw.cose'), '--image', join(dir, 'fw.bin'), '--group', 'cli-g2', '--json');
    expect(first.status).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ group: 'cli-g2', state: 'running', waves: [5, 25, 100] });
    const second = await fwseal('campaign', 'create', '--manifest', join(dir, 'fw.cose'), '--image', join(dir, 'fw.bin'), '--group', 'cli-g2');
    expect([second.status, codeIn(second.stderr)]).toEqual([2, CODES.CONFLICT]);

    const port = await freePort();
    const down = await fwseal('campaign', 'status', 'x', '--server', `http://127.0.0.1:${port}`);
    expect([down.status, codeIn(down.stderr)]).toEqual([2, CODES.SERVER_UNREACHABLE]);

    const usage = await fwseal('campaign', 'create', '--manifest', join(dir, 'fw.cose'), '--image', join(dir, 'fw.bin'), '--group', 'g', '--waves', 'lots');
    expect([usage.status, codeIn(usage.stderr)]).toEqual([2, CODES.USAGE]);

    const guarded = await OtaServer.start({
      mqtt: { url: broker.url, options: { protocolVersion: 5, clientId: `cli-guard-${randomBytes(3).toString('hex')}`, reconnectPeriod: 500 } },
      dataDir: join(dir, 'guarded'),
      prefix: 'guarded',
      trust: w.trust,
      http: { host: '127.0.0.1', port: 0 },
      token: 'the-token',
    });
    cleanups.push(() => guarded.close());
    const url = guarded.address()!.url;
    const denied = await fwseal('campaign', 'status', 'x', '--server', url);
    expect([denied.status, codeIn(denied.stderr)]).toEqual([2, CODES.UNAUTHORIZED]);
    process.env.FWSEAL_SERVER_TOKEN = 'the-token';
    cleanups.push(() => {
      delete process.env.FWSEAL_SERVER_TOKEN;
    });
    const allowed = await fwseal('campaign', 'status', 'x', '--server', url);
    expect(codeIn(allowed.stderr)).toBe(CODES.NOT_FOUND);
    expect(denied.stderr + allowed.stderr).not.toContain('the-token');
  });
});

describe('fwseal serve', () => {
  it('prints its HTTP address, serves the API, and stops cleanly on SIGTERM', async () => {
    const data = join(dir, 'serve-data');
    const child: ChildProcess = spawn(
      process.execPath,
      [CLI, 'serve', '--broker', broker.url, '--data', data, '--trust', join(dir, 'trust.cbor'), '--http', '127.0.0.1:0', '--prefix', 'proc'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      },
    );
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    cleanups.push(async () => {
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });
    const url = await new Promise<string>((resolveUrl, reject) => {
      let out = '';
      child.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const m = out.match(/HTTP API on (http:\/\/127\.0\.0\.1:\d+)/);
        if (m) resolveUrl(m[1]);
      });
      child.on('exit', (code) => reject(new Error(`serve exited with ${code}`)));
    });
    expect(await (await fetch(`${url}/healthz`)).json()).toMatchObject({ ok: true, mqtt: true });
    const created = await fwseal(
      'campaign',
      'create',
      '--manifest',
      join(dir, 'fw.cose'),
      '--image',
      join(dir, 'fw.bin'),
      '--group',
      'proc-group',
      '--server',
      url,
    );
    expect(created.status).toBe(0);
    expect((await retainedAnnouncement(broker.url, 'proc-group', 'proc'))?.campaign).toBe(created.stdout.trim());
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('refuses bad flags with USAGE before connecting', async () => {
    const r = await fwseal('serve', '--broker', broker.url, '--data', join(dir, 'x'), '--trust', join(dir, 'trust.cbor'), '--http', 'nowhere');
    expect([r.status, codeIn(r.stderr)]).toEqual([2, CODES.USAGE]);
    const noTrust = await fwseal('serve', '--broker', broker.url, '--data', join(dir, 'x'), '--trust', join(dir, 'missing.cbor'));
    expect([noTrust.status, codeIn(noTrust.stderr)]).toEqual([2, CODES.IO]);
  });
});
