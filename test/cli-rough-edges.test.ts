/**
 * The rough edges of issue 17 (item 5) and the environment variables of the MQTT commands (item 4):
 * serve binds its HTTP port before it touches the store or the broker; HEAD answers like GET without
 * a body; fleet-sim prints its live count only on change and its table agrees with its summary;
 * FWSEAL_BROKER / FWSEAL_TRUST / FWSEAL_PREFIX stand in for the flags of serve, device run and
 * fleet-sim (a flag given wins); the demo leaves URLs alone. Codes and exit status are asserted.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveCounts, printReport } from '../host/commands/fleet.js';
import { type FleetSimOptions, recordStatus, type SimDeviceReport, type SimStatus } from '../host/fleet/fleet-sim.js';
import { OtaServer } from '../host/ota/server.js';
import { CODES } from '../shared/codes.js';
import { type StatusEvent } from '../shared/ota/status.js';
import { fileWriter, runCli } from './support/cli-run.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { serverMqtt } from './support/ota-harness.js';
import { otaWorld } from './support/ota-responder.js';

const root = join(__dirname, '..');
const world = otaWorld(40_000);
const dir = mkdtempSync(join(tmpdir(), 'fwseal-rough-'));
const file = fileWriter(dir);
const trust = file('trust.cbor', world.trust);
const v1 = file('v1.cose', world.v1.envelope);
const v1Image = file('v1.bin', world.v1.image);
/** A loopback port nothing listens on: MQTT connections to it are refused. */
let closedBroker: string;

beforeAll(async () => {
  const probe = await listening();
  closedBroker = `mqtt://127.0.0.1:${port(probe)}`;
  await new Promise((r) => probe.close(r));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function listening(): Promise<Server> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
}
const port = (s: Server) => (s.address() as { port: number }).port;

/** `fwseal ARGS` with these FWSEAL_* variables set (and every other FWSEAL_ variable of this file unset). */
async function withVars(vars: Record<string, string>, argv: string[]) {
  const names = ['FWSEAL_BROKER', 'FWSEAL_TRUST', 'FWSEAL_PREFIX'];
  const saved = Object.fromEntries(names.map((n) => [n, process.env[n]]));
  for (const n of names) delete process.env[n];
  Object.assign(process.env, vars);
  try {
    return await runCli(argv);
  } finally {
    for (const n of names) {
      if (saved[n] === undefined) delete process.env[n];
      else process.env[n] = saved[n];
    }
  }
}

const codeIn = (err: string) => Number(err.match(/\(code (\d+)\)/)?.[1]);

describe('serve binds --http before it touches the store or the broker', () => {
  it('a port in use: IO, exit 2, no data folder, the broker never tried (FWSEAL_BROKER and FWSEAL_TRUST given)', async () => {
    const taken = await listening();
    const data = join(dir, 'serve-data');
    try {
      const r = await withVars({ FWSEAL_BROKER: closedBroker, FWSEAL_TRUST: trust }, [
        'serve',
        '--data',
        data,
        '--http',
        `127.0.0.1:${port(taken)}`,
        '--insecure-open-api',
      ]);
      expect(r.status, r.err).toBe(2);
      expect(codeIn(r.err), r.err).toBe(CODES.IO);
      expect(existsSync(join(data, 'fwseal.db'))).toBe(false);
    } finally {
      await new Promise((r) => taken.close(r));
    }
  }, 30_000);

  it('without --broker or FWSEAL_BROKER: USAGE', async () => {
    const r = await withVars({}, ['serve', '--data', join(dir, 'none'), '--insecure-open-api']);
    expect(codeIn(r.err), r.err).toBe(CODES.USAGE);
  });
});

describe('HEAD answers like GET, without a body', () => {
  let broker: Mosquitto;
  let server: OtaServer;
  beforeAll(async () => {
    broker = await startMosquitto({ persistence: false });
    server = await OtaServer.start({ mqtt: serverMqtt(broker.url), dataDir: join(dir, 'head'), trust: world.trust, http: { host: '127.0.0.1', port: 0 } });
  });
  afterAll(async () => {
    await server?.close();
    await broker?.stop();
  });

  it.each(['/metrics', '/healthz', '/api/campaigns', '/api/openapi.json'])('HEAD %s: the status and headers of GET, no body', async (path) => {
    const url = `${server.address()!.url}${path}`;
    const get = await fetch(url);
    await get.arrayBuffer();
    const head = await fetch(url, { method: 'HEAD' });
    expect(head.status).toBe(get.status);
    expect(get.status).toBe(200);
    expect(head.headers.get('content-type')).toBe(get.headers.get('content-type'));
    expect((await head.arrayBuffer()).byteLength).toBe(0);
  });

  it('HEAD of no route is 404, as GET', async () => {
    expect((await fetch(`${server.address()!.url}/nothing-here`, { method: 'HEAD' })).status).toBe(404);
  });
});

describe('fleet-sim: the live count on change only; the table agrees with the summary', () => {
  it('liveCounts prints a line only when the counts differ from the last line', () => {
    const lines: string[] = [];
    const live = liveCounts((l) => lines.push(l));
    live({ online: 2 }, 1);
    live({ online: 2 }, 2);
    live({ online: 1, downloading: 1 }, 3);
    live({ downloading: 1, online: 1 }, 4);
    expect(lines).toHaveLength(2);
  });

  it('the outcome is the latest campaign end: a second campaign clears it and sets its own', () => {
    const sim: SimStatus = { state: 'online' };
    const ev = (state: StatusEvent['state'], campaign: string, extra: Partial<StatusEvent> = {}): StatusEvent => ({ device: 'd1', state, campaign, ...extra });
    expect(recordStatus(sim, ev('accepted', 'c1'))).toBe(false);
    expect(recordStatus(sim, ev('confirmed', 'c1'))).toBe(true);
    expect(sim.outcome?.state).toBe('confirmed');
    expect(recordStatus(sim, ev('accepted', 'c2'))).toBe(false);
    expect(sim.outcome).toBeUndefined();
    expect(recordStatus(sim, ev('rejected', 'c2', { code: CODES.ROLLBACK }))).toBe(false);
    expect(sim).toMatchObject({ state: 'rejected', campaign: 'c2', outcome: { state: 'rejected', code: CODES.ROLLBACK } });
  });

  it('the table has the state the summary counts, and each row its latest outcome', () => {
    const row = (id: string, state: string, outcome: string | null): SimDeviceReport => ({
      id,
      version: '1.0.0',
      counter: 5,
      state,
      outcome,
      campaign: 'c2',
      requests: 0,
      blocks: 0,
      rejected: 0,
      timeouts: 0,
      malformed: 0,
    });
    const rows = [row('sim-0001', 'rejected', 'rejected'), row('sim-0002', 'downloading', null)];
    let out = '';
    const io = { stdout: (t: string) => (out += t), stderr: () => {}, stderrIsTty: false };
    printReport(io, rows, { rejected: 1, downloading: 1 }, 1, { count: 2, idPrefix: 'sim-' } as FleetSimOptions);
    const lines = out.trimEnd().split('\n');
    const stateAt = lines[0].indexOf('state');
    const tally: Record<string, number> = {};
    for (const l of lines.slice(1, -1)) {
      const s = l.slice(stateAt).split(/\s+/)[0];
      tally[s] = (tally[s] ?? 0) + 1;
    }
    expect(tally).toEqual({ rejected: 1, downloading: 1 });
    expect(lines[2].slice(stateAt).split(/\s+/)[1]).toBe('-');
  });
});

describe('FWSEAL_BROKER, FWSEAL_TRUST, FWSEAL_PREFIX for device run and fleet-sim', () => {
  const state = join(dir, 'dev');
  beforeAll(async () => {
    const r = await runCli(['device', 'provision', '--state', state, '--trust', trust, '--device-class', 'acme-gw', '--manifest', v1, '--image', v1Image]);
    expect(r.status, r.err).toBe(0);
  });
  const mqttRun = ['device', 'run', '--state', state, '--id', 'gw-1', '--group', 'g', '--device-class', 'acme-gw', '--connect-timeout', '100'];

  it('device run: the variables make it an MQTT run (the broker refuses: BROKER_UNREACHABLE); without them USAGE', async () => {
    expect(codeIn((await withVars({ FWSEAL_BROKER: closedBroker, FWSEAL_TRUST: trust }, mqttRun)).err)).toBe(CODES.BROKER_UNREACHABLE);
    expect(codeIn((await withVars({}, mqttRun)).err)).toBe(CODES.USAGE);
  });

  it('a flag given wins over its variable; FWSEAL_PREFIX is checked like --prefix', async () => {
    const flagWins = await withVars({ FWSEAL_BROKER: closedBroker, FWSEAL_TRUST: join(dir, 'missing.cbor') }, [...mqttRun, '--trust', trust]);
    expect(codeIn(flagWins.err), flagWins.err).toBe(CODES.BROKER_UNREACHABLE);
    const badFlag = await withVars({ FWSEAL_BROKER: closedBroker, FWSEAL_TRUST: trust }, [...mqttRun, '--broker', 'ftp://127.0.0.1:1']);
    expect(codeIn(badFlag.err), badFlag.err).toBe(CODES.USAGE);
    const badPrefix = await withVars({ FWSEAL_BROKER: closedBroker, FWSEAL_TRUST: trust, FWSEAL_PREFIX: 'no spaces' }, mqttRun);
    expect(codeIn(badPrefix.err), badPrefix.err).toBe(CODES.USAGE);
  });

  it('device run from files ignores FWSEAL_BROKER and FWSEAL_PREFIX, and takes FWSEAL_TRUST', async () => {
    const r = await withVars({ FWSEAL_BROKER: closedBroker, FWSEAL_PREFIX: 'x', FWSEAL_TRUST: trust }, [
      'device',
      'run',
      '--state',
      state,
      '--update',
      v1,
      '--image',
      v1Image,
    ]);
    expect(r.status, r.err).toBeLessThan(2);
    const noTrust = await withVars({}, ['device', 'run', '--state', state, '--update', v1, '--image', v1Image]);
    expect(codeIn(noTrust.err)).toBe(CODES.USAGE);
  });

  it('fleet-sim takes FWSEAL_BROKER and FWSEAL_TRUST', async () => {
    const argv = ['fleet-sim', '--count', '1', '--group', 'g', '--device-class', 'acme-gw', '--state', join(dir, 'sims'), '--memory'];
    const full = [...argv, '--factory', v1, '--factory-image', v1Image, '--connect-timeout', '100'];
    expect(codeIn((await withVars({ FWSEAL_BROKER: closedBroker, FWSEAL_TRUST: trust }, full)).err)).toBe(CODES.BROKER_UNREACHABLE);
    expect(codeIn((await withVars({}, full)).err)).toBe(CODES.USAGE);
  });
});

describe('the demo', () => {
  it('maps bare file names into its folder and leaves URLs (and everything else) alone', () => {
    const script = join(dir, 'demo-argv.ts');
    const argv =
      'pack firmware.bin --sbom sbom.json --sbom-uri https://sbom.acme.example/gw/1.4.2.cdx.json --out M.cose --server http://127.0.0.1:8080 --dir .';
    writeFileSync(
      script,
      `import { demoArgv } from ${JSON.stringify(join(root, 'tools/demo/script.ts'))};\nconsole.log(JSON.stringify(demoArgv(${JSON.stringify(argv)}, '/demo')));\n`,
    );
    const r = spawnSync(process.execPath, [join(root, 'node_modules/tsx/dist/cli.mjs'), script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      'pack',
      '/demo/firmware.bin',
      '--sbom',
      '/demo/sbom.json',
      '--sbom-uri',
      'https://sbom.acme.example/gw/1.4.2.cdx.json',
      '--out',
      '/demo/M.cose',
      '--server',
      'http://127.0.0.1:8080',
      '--dir',
      '/demo',
    ]);
  });
});
