/** `fwseal fleet-sim`: ten simulated devices update over a real mosquitto from the in-test server. */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODES } from '../shared/codes.js';
import { fileWriter, runCli } from './support/cli-run.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { OtaResponder, otaWorld } from './support/ota-responder.js';

const world = otaWorld();
const dir = mkdtempSync(join(tmpdir(), 'fwseal-fleet-'));
let broker: Mosquitto;
let server: OtaResponder;

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
  server = await OtaResponder.start(broker.url);
});
afterAll(async () => {
  await server?.stop();
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const file = fileWriter(dir);
const trust = file('trust.cbor', world.trust);
const factory = file('v1.cose', world.v1.envelope);
const factoryImage = file('v1.bin', world.v1.image);

const cli = (...argv: string[]) => runCli(argv);

type Row = { id: string; version: string; counter: number; outcome: string; code?: number; blocks: number };

describe('fwseal fleet-sim', () => {
  const base = (group: string, state: string) => [
    'fleet-sim',
    '--broker',
    broker.url,
    '--count',
    '10',
    '--group',
    group,
    '--trust',
    trust,
    '--device-class',
    'acme-gw',
    '--state',
    join(dir, state),
    '--factory',
    factory,
    '--factory-image',
    factoryImage,
    '--exit-after-update',
    '--json',
  ];

  it('updates 10 devices in RAM (--memory): all confirmed, every device fetched every block', async () => {
    await server.announce('fleet-a', 'c-fleet-a', world.v2);
    const t0 = Date.now();
    const r = await cli(...base('fleet-a', 'mem'), '--memory');
    const seconds = (Date.now() - t0) / 1000;
    expect(r.err).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.out) as { devices: Row[]; counts: Record<string, number> };
    expect(out.devices.length).toBe(10);
    expect(out.counts).toEqual({ confirmed: 10 });
    const blocks = Math.ceil(world.v2.image.length / (16 * 1024));
    for (const d of out.devices) expect(d).toMatchObject({ version: '2.0.0', counter: 6, outcome: 'confirmed', blocks });
    expect(new Set(out.devices.map((d) => d.id)).size).toBe(10);
    expect(existsSync(join(dir, 'mem'))).toBe(false);
    console.log(`fleet-sim: 10 devices x ${world.v2.image.length / 1024} KiB in ${seconds.toFixed(2)} s`);
  });

  it('keeps file flash under DIR/<id>/ across runs: the second run finds v2 installed and fetches nothing', async () => {
    await server.announce('fleet-b', 'c-fleet-b', world.v2);
    const first = await cli(...base('fleet-b', 'files'));
    expect(first.status).toBe(0);
    expect(existsSync(join(dir, 'files', 'sim-0001', 'flash.img'))).toBe(true);
    const second = await cli(...base('fleet-b', 'files'));
    expect(second.status).toBe(0);
    const out = JSON.parse(second.out) as { devices: Row[] };
    for (const d of out.devices) expect(d).toMatchObject({ version: '2.0.0', outcome: 'confirmed', blocks: 0 });
    // Another device class for the same state folder is a usage error.
    const wrong = await cli(...base('fleet-b', 'files').map((a) => (a === 'acme-gw' ? 'other' : a)));
    expect(wrong.status).toBe(2);
    expect(wrong.err).toContain(`code ${CODES.USAGE}`);
  });

  it('exits 1 when devices reject the campaign (an older release), and bounds --count', async () => {
    await server.announce('fleet-c', 'c-fleet-c', world.v0);
    const r = await cli(...base('fleet-c', 'mem-c'), '--memory');
    expect(r.status).toBe(1);
    const out = JSON.parse(r.out) as { devices: Row[] };
    for (const d of out.devices) expect(d).toMatchObject({ outcome: 'rejected', code: CODES.ROLLBACK, version: '1.0.0' });
    const tooMany = await cli(...base('fleet-c', 'mem-c').map((a) => (a === '10' ? '10001' : a)), '--memory');
    expect(tooMany.status).toBe(2);
    expect(tooMany.err).toContain(`code ${CODES.USAGE}`);
  });
});
