/**
 * Exit statuses and failures a CI can use (issue 15 item 4; SPEC.md §9, §12.9):
 * - exit 1 ("REJECTED") only for a verdict; the host's transport and usage failures are exit 2;
 * - a broker that refuses the CONNACK (real mosquitto with a password file, MQTT 3.1.1 and 5; a
 *   minimal broker for refusals mosquitto does not give: client id, server unavailable, banned) fails
 *   at once with BROKER_AUTH_FAILED for serve, device run and fleet-sim, not after the connect
 *   timeout (set far above the test timeout where a flag takes it; serve's would be
 *   BROKER_UNREACHABLE), so no timed assertion is needed;
 * - `--json` prints the error object on stdout for every failure of every command that takes it;
 * - `campaign status --watch` exits 0 only on completed, 1 on halted or aborted, and rides out a real
 *   `fwseal serve` killed and restarted, a proxy's 502 and a reset connection.
 * Codes and exit statuses are asserted, never message text (reason names are the protocol's names).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS, main } from '../host/cli.js';
import { exitStatusFor, FwsealError } from '../host/errors.js';
import { connectMqtt } from '../host/ota/mqtt-options.js';
import { CODES } from '../shared/codes.js';
import { runCli } from './support/cli-run.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { fleetAuth, freePort, type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually, RawDevice } from './support/ota-client.js';
import { type ServeChild, startServeChild } from './support/serve-child.js';

const w = standardWorld();
const image = detBytes(30_000, 'exit codes image');
const manifest = makeManifestEnvelope(makeManifest(image, { chunkSize: 1024 }), [w.R1, w.R2]);
/** Far above the 60 s test timeout: a connect that waits for it fails the test. */
const NEVER_MS = '600000';

const fleet = fleetAuth([{ id: 'ec-dev', group: 'g-ec' }]);
let broker: Mosquitto;
let authBroker: Mosquitto;
let dir: string;
const cleanups: (() => Promise<unknown> | unknown)[] = [];

const codeIn = (text: string) => Number(text.match(/\(code (\d+)\)/)?.[1]);
const lines = (text: string) => text.split('\n').filter((l) => l.length > 0);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fwseal-exit-codes-'));
  writeFileSync(join(dir, 'trust.cbor'), w.trust);
  writeFileSync(join(dir, 'fw.cose'), manifest);
  writeFileSync(join(dir, 'fw.bin'), image);
  writeFileSync(join(dir, 'factory.cose'), w.envelope);
  writeFileSync(join(dir, 'factory.bin'), w.image);
  writeFileSync(join(dir, 'garbage.bin'), detBytes(64, 'not an fwseal object at all'));
  broker = await startMosquitto({ persistence: false });
  authBroker = await startMosquitto({ persistence: false, auth: fleet.auth });
});

afterAll(async () => {
  while (cleanups.length) await cleanups.pop()!();
  delete process.env.FWSEAL_MQTT_USERNAME;
  delete process.env.FWSEAL_MQTT_PASSWORD;
  await broker?.stop();
  await authBroker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Exit 2, one stderr line with `code`, never REJECTED. */
function expectHostFailure(r: { status: number; err: string }, code: number): void {
  expect(r.status, r.err).toBe(2);
  expect(lines(r.err), r.err).toHaveLength(1);
  expect(codeIn(r.err)).toBe(code);
  expect(r.err).not.toContain('REJECTED');
}

describe('exit statuses: 1 for a verdict, 2 for the host itself', () => {
  it('maps transport and host codes to 2, verdicts (device-reported 6xx included) to 1', () => {
    for (const c of [CODES.BROKER_UNREACHABLE, CODES.SERVER_UNREACHABLE, CODES.BROKER_AUTH_FAILED, CODES.USAGE, CODES.IO, CODES.FORBIDDEN, CODES.INTERNAL])
      expect(exitStatusFor(c), String(c)).toBe(2);
    for (const c of [CODES.MALFORMED, CODES.THRESHOLD_NOT_MET, CODES.ROLLBACK, CODES.MERKLE_ROOT_MISMATCH, CODES.NOT_CONFIRMED, CODES.TRANSPORT_TIMEOUT])
      expect(exitStatusFor(c), String(c)).toBe(1);
  });

  it('an unreachable broker is BROKER_UNREACHABLE, exit 2, not REJECTED', async () => {
    const port = await freePort();
    const state = join(dir, 'dev-unreachable');
    await provision(state);
    const r = await runCli([...deviceRun(state), '--broker', `mqtt://127.0.0.1:${port}`, '--connect-timeout', '300']);
    expectHostFailure(r, CODES.BROKER_UNREACHABLE);
  });
});

async function provision(state: string): Promise<void> {
  const factory = ['--manifest', join(dir, 'factory.cose'), '--image', join(dir, 'factory.bin')];
  const r = await runCli(['device', 'provision', '--state', state, '--trust', join(dir, 'trust.cbor'), '--device-class', 'acme-gw', ...factory]);
  expect(r.status, r.err).toBe(0);
}

/** `device run` of the provisioned device in `state`, the MQTT flags still to add. */
function deviceRun(state: string): string[] {
  const device = ['--id', 'ec-dev', '--group', 'g-ec', '--device-class', 'acme-gw'];
  return ['device', 'run', ...device, '--trust', join(dir, 'trust.cbor'), '--state', state];
}

describe('broker refusals fail fast with BROKER_AUTH_FAILED (code 821), exit 2', () => {
  const login = (user: string, password: string) => {
    process.env.FWSEAL_MQTT_USERNAME = user;
    process.env.FWSEAL_MQTT_PASSWORD = password;
  };

  it.each([4, 5] as const)('a wrong password, MQTT %s: device run, fleet-sim and serve', async (version) => {
    login('ec-dev', 'not-the-password');
    const state = join(dir, `dev-auth-v${version}`);
    await provision(state);
    const mqtt = ['--broker', authBroker.url, '--mqtt-version', String(version)];
    const run = await runCli([...deviceRun(state), ...mqtt, '--connect-timeout', NEVER_MS, '--json']);
    expectHostFailure(run, CODES.BROKER_AUTH_FAILED);
    // The reason is named: MQTT 3.1.1 mosquitto answers "not authorized", MQTT 5 "bad user name or password".
    expect(run.err).toMatch(version === 4 ? /NOT_AUTHORIZED/ : /BAD_USER_NAME_OR_PASSWORD|NOT_AUTHORIZED/);
    expect(JSON.parse(run.out)).toEqual({ ok: false, code: CODES.BROKER_AUTH_FAILED, error: 'BROKER_AUTH_FAILED', detail: expect.any(String), exitStatus: 2 });
    expect(run.err + run.out).not.toContain('not-the-password');

    const sim = ['fleet-sim', '--count', '2', '--group', 'g-ec', '--trust', join(dir, 'trust.cbor'), '--device-class', 'acme-gw', '--memory'].concat([
      '--state',
      join(dir, `sim-v${version}`),
      '--factory',
      join(dir, 'factory.cose'),
      '--factory-image',
      join(dir, 'factory.bin'),
    ]);
    expectHostFailure(await runCli([...sim, ...mqtt, '--connect-timeout', NEVER_MS]), CODES.BROKER_AUTH_FAILED);

    login('fwseal.server', 'not-the-password');
    const serve = await runCli(['serve', ...mqtt, '--data', join(dir, `serve-auth-v${version}`), '--trust', join(dir, 'trust.cbor'), '--http', '127.0.0.1:0']);
    expectHostFailure(serve, CODES.BROKER_AUTH_FAILED);
  });

  it.each([
    [4, [0x20, 0x02, 0x00, 0x02], 'IDENTIFIER_REJECTED'],
    [4, [0x20, 0x02, 0x00, 0x03], 'SERVER_UNAVAILABLE'],
    [4, [0x20, 0x02, 0x00, 0x04], 'BAD_USER_NAME_OR_PASSWORD'],
    [5, [0x20, 0x03, 0x00, 0x85, 0x00], 'CLIENT_IDENTIFIER_NOT_VALID'],
    [5, [0x20, 0x03, 0x00, 0x88, 0x00], 'SERVER_UNAVAILABLE'],
    [5, [0x20, 0x03, 0x00, 0x8a, 0x00], 'BANNED'],
  ] as const)('a broker answering CONNACK refusal MQTT %s %j: %s, at once', async (version, connack, reason) => {
    const port = await refusingBroker(Buffer.from(connack));
    const err = await connectMqtt(
      { url: `mqtt://127.0.0.1:${port}`, options: { protocolVersion: version, clientId: 'fwseal-x', reconnectPeriod: 100 } },
      600_000,
    ).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FwsealError);
    expect((err as FwsealError).code).toBe(CODES.BROKER_AUTH_FAILED);
    expect((err as FwsealError).message).toContain(reason);
  });
});

/** A TCP server that answers every CONNECT with `connack` (a refusal) and closes. */
async function refusingBroker(connack: Buffer): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.once('data', () => s.end(connack));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return (server.address() as { port: number }).port;
}

describe('--json: the error object on stdout for every failure', () => {
  const withJson = COMMANDS.filter((c) => 'json' in c.options);

  it('is one line for a usage error of every command that takes --json (exit 2)', async () => {
    expect(withJson.length).toBeGreaterThan(20);
    for (const c of withJson) {
      const r = await runCli([...c.name.split(' '), '--json', '--no-such-flag']);
      expectHostFailure(r, CODES.USAGE);
      expect(lines(r.out), c.name).toHaveLength(1);
      expect(JSON.parse(r.out), c.name).toEqual({ ok: false, code: CODES.USAGE, error: 'USAGE', detail: expect.any(String), exitStatus: 2 });
    }
  });

  it('carries exit status 1 for a rejection, and is printed for a bad --audit too', async () => {
    const rejected = await runCli(['inspect', join(dir, 'garbage.bin'), '--json']);
    expect(rejected.status).toBe(1);
    expect(JSON.parse(rejected.out)).toMatchObject({ ok: false, code: codeIn(rejected.err), exitStatus: 1 });
    const audit = await runCli(['sign', join(dir, 'fw.cose'), '--json', '--audit']);
    expectHostFailure(audit, CODES.USAGE);
    expect(JSON.parse(audit.out)).toMatchObject({ ok: false, code: CODES.USAGE, exitStatus: 2 });
    const without = await runCli(['inspect', join(dir, 'garbage.bin')]);
    expect(without.out).toBe('');
  });
});

/** `fwseal serve` as a child process (test/support/serve-child.ts) on a fixed port; `kill()` is SIGKILL, a crash. */
function startServe(data: string, port: number): Promise<ServeChild> {
  const args = ['--broker', broker.url, '--data', data, '--trust', join(dir, 'trust.cbor'), '--http', `127.0.0.1:${port}`, '--tick-ms', '100'];
  return startServeChild(args, { cleanups });
}

/** `fwseal ARGS` in-process, its output readable while it runs. */
function live(...argv: string[]) {
  const io = { out: '', err: '' };
  const done = main(argv, {
    stdout: (t) => {
      io.out += t;
    },
    stderr: (t) => {
      io.err += t;
    },
    stderrIsTty: false,
  });
  return { io, done };
}

describe('campaign status --watch', () => {
  let serve: ServeChild;
  const data = () => join(dir, 'serve-data');

  async function campaignFor(group: string, extra: string[] = []): Promise<{ id: string; d: RawDevice }> {
    const d = await RawDevice.connect(broker.url, `${group}-dev`);
    cleanups.push(() => d.close());
    await d.online(group);
    await eventually(async () => (await (await fetch(`${serve.url}/api/devices`)).text()).includes(`"${group}-dev"`), 20_000, 'device known');
    const c = await runCli(
      ['campaign', 'create', '--manifest', join(dir, 'fw.cose'), '--image', join(dir, 'fw.bin'), '--group', group, '--waves', '100'].concat([
        '--server',
        serve.url,
        ...extra,
      ]),
    );
    expect(c.status, c.err).toBe(0);
    const id = c.out.trim();
    await d.manifest(id, 1); // a status counts only from a device served the manifest (SPEC.md §12.9)
    return { id, d };
  }

  beforeAll(async () => {
    serve = await startServe(data(), await freePort());
  });

  it('rides out a server killed and restarted mid-watch, and exits 0 when the campaign completes', async () => {
    const { id, d } = await campaignFor('g-restart');
    const watch = live('campaign', 'status', id, '--watch', '--server', serve.url);
    await eventually(() => watch.io.out.includes(`${id} running`), 20_000, 'first poll');
    await serve.kill();
    await eventually(() => codeIn(watch.io.err) === CODES.SERVER_UNREACHABLE, 20_000, 'a retry reported');
    serve = await startServe(data(), serve.port);
    await eventually(async () => ((await (await fetch(`${serve.url}/healthz`)).json()) as { mqtt?: boolean }).mqtt === true, 20_000, 'serve on the broker');
    await d.manifest(id, 2);
    await d.status({ campaign: id, device: d.id, state: 'confirmed' });
    expect(await watch.done).toBe(0);
    expect(lines(watch.io.out).at(-1)).toMatch(new RegExp(`^${id} completed `));
    expect(watch.io.err).not.toContain('REJECTED');
  });

  it('exits 1 on a halted campaign, naming the devices\u2019 codes; its --json lines end with the halted campaign', async () => {
    const { id, d } = await campaignFor('g-halt', ['--abort-failure-rate', '0']);
    const watch = live('campaign', 'status', id, '--watch', '--json', '--server', serve.url);
    await eventually(() => watch.io.out.length > 0, 20_000, 'first poll');
    await d.status({ campaign: id, device: d.id, state: 'failed', code: CODES.MERKLE_ROOT_MISMATCH });
    expect(await watch.done).toBe(1);
    expect(JSON.parse(lines(watch.io.out).at(-1)!)).toMatchObject({ id, state: 'halted' });
    expect(codeIn(watch.io.err)).toBe(CODES.MERKLE_ROOT_MISMATCH);
    expect(watch.io.err).not.toContain('REJECTED');
    // Without --watch, status only shows the campaign: exit 0 whatever its state.
    expect((await runCli(['campaign', 'status', id, '--server', serve.url])).status).toBe(0);
  });

  it('exits 1 on an aborted campaign', async () => {
    const { id } = await campaignFor('g-abort');
    const watch = live('campaign', 'status', id, '--watch', '--server', serve.url);
    await eventually(() => watch.io.out.length > 0, 20_000, 'first poll');
    expect((await runCli(['campaign', 'abort', id, '--server', serve.url])).status).toBe(0);
    expect(await watch.done).toBe(1);
    expect(lines(watch.io.out).at(-1)).toMatch(new RegExp(`^${id} aborted `));
  });

  it('asks again through a proxy answering 502 and a reset connection', async () => {
    const { id, d } = await campaignFor('g-proxy');
    await d.status({ campaign: id, device: d.id, state: 'confirmed' });
    const proxy = await flakyProxy(serve.url);
    const r = await runCli(['campaign', 'status', id, '--watch', '--server', proxy.url]);
    expect(r.status, r.err).toBe(0);
    expect(proxy.requests()).toBe(3);
    expect(lines(r.err).map(codeIn)).toEqual([CODES.SERVER_UNREACHABLE, CODES.SERVER_UNREACHABLE]);
  });

  it('gives up with SERVER_UNREACHABLE (exit 2) after --retry-for seconds without an answer; --json gets the error object', async () => {
    const port = await freePort();
    const r = await runCli(['campaign', 'status', 'c-none', '--watch', '--retry-for', '1', '--json', '--server', `http://127.0.0.1:${port}`]);
    expect(r.status).toBe(2);
    expect(
      lines(r.err)
        .map(codeIn)
        .every((c) => c === CODES.SERVER_UNREACHABLE),
    ).toBe(true);
    expect(r.err).not.toContain('REJECTED');
    expect(JSON.parse(lines(r.out).at(-1)!)).toMatchObject({ ok: false, code: CODES.SERVER_UNREACHABLE, exitStatus: 2 });
  });

  it('--retry-for without --watch is a usage error', async () => {
    expectHostFailure(await runCli(['campaign', 'status', 'x', '--retry-for', '5', '--server', serve.url]), CODES.USAGE);
  });
});

/** An HTTP proxy to `upstream` that answers the first request 502 (no body), resets the second, and forwards the rest. */
async function flakyProxy(upstream: string): Promise<{ url: string; requests: () => number }> {
  let n = 0;
  const server: Server = createHttpServer(async (req, res) => {
    n++;
    if (n === 1) return void res.writeHead(502).end();
    if (n === 2) return void req.socket.destroy();
    const r = await fetch(`${upstream}${req.url}`, { method: req.method });
    res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' }).end(Buffer.from(await r.arrayBuffer()));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, requests: () => n };
}
