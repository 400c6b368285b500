/**
 * A correct fleet view (issue 15 item 2; SPEC.md §12.9 "Fleet view"), against a real mosquitto and the
 * real server: the issue's scenario scaled down (20 devices on 1.0.0, a campaign to 2.0.0, all
 * confirm: /api/devices shows 2.0.0 for all), filters by group, version and presence, pages, a
 * device's history across campaigns and its last error, 404 for an unknown device, the CLI (`devices
 * list`, `devices show`, `campaign list`), and a real device client whose connection is killed
 * marked offline by its MQTT last will (SPEC.md §12.2), online again when it comes back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { SimFlash } from '../device/sim/flash.js';
import { FLEET_VIEW_COMMANDS } from '../host/commands/fleet-view.js';
import { fleetVerifier } from '../host/hash.js';
import { OtaDevice } from '../host/ota/device-client.js';
import { OtaServer } from '../host/ota/server.js';
import { CODES } from '../shared/codes.js';
import { runCli } from './support/cli-run.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually, RawDevice } from './support/ota-client.js';
import { api, createCampaign, serverMqtt } from './support/ota-harness.js';

const w = standardWorld();
const verifier = fleetVerifier();
const releaseOf = (version: string, counter: number) => {
  const image = detBytes(30_000, `fleet ${version}`);
  return { image, envelope: makeManifestEnvelope(makeManifest(image, { version, securityCounter: counter }), [w.R1, w.R2]) };
};
const v1 = releaseOf('1.0.0', 1);
const v2 = releaseOf('2.0.0', 2);
const FLEET = Array.from({ length: 20 }, (_, i) => `f-${String(i + 1).padStart(2, '0')}`);

let broker: Mosquitto;
let server: OtaServer;
let url: string;
let dataDir: string;
const raw = new Map<string, RawDevice>();
const stops: (() => Promise<unknown>)[] = [];
const cli = (...argv: string[]) => runCli([...argv, '--server', url], FLEET_VIEW_COMMANDS);
const get = async (path: string) => (await api(server, 'GET', path)).body;

async function online(id: string, group: string): Promise<RawDevice> {
  const d = await RawDevice.connect(broker.url, id);
  stops.push(() => d.close());
  raw.set(id, d);
  await d.online(group, '1.0.0', 1);
  return d;
}

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
  dataDir = mkdtempSync(join(tmpdir(), 'fwseal-fleet-view-'));
  server = await OtaServer.start({ mqtt: serverMqtt(broker.url), dataDir, trust: w.trust, http: { host: '127.0.0.1', port: 0 }, tickMs: 50 });
  url = server.address()!.url;
  for (const id of FLEET) await online(id, 'g-fleet');
  for (const id of ['o-1', 'o-2', 'o-3']) await online(id, 'g-other');
  await eventually(async () => (await server.store.deviceCount()) === 23, 10_000, 'every device known');
});

afterAll(async () => {
  for (const s of stops) await s().catch(() => {});
  await server?.close();
  await broker?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('the issue scenario, scaled down: 20 devices on 1.0.0, a campaign to 2.0.0, all confirm', () => {
  let campaign: string;
  beforeAll(async () => {
    const r = await createCampaign(server, 'g-fleet', v2, { waves: [100] });
    expect(r.status).toBe(201);
    campaign = r.body.id;
    let rid = 1;
    for (const id of FLEET) {
      const d = raw.get(id)!;
      expect((await d.manifest(campaign, rid++)).type).toBe('manifestResponse');
      await d.status({ campaign, device: id, state: 'confirmed' });
    }
    await eventually(async () => (await get(`/api/campaigns/${campaign}`)).state === 'completed', 15_000, 'campaign completed');
  });

  it('/api/devices shows 2.0.0 (and its counter) for every device of the group, from their confirmations alone', async () => {
    const page = await get('/api/devices?group=g-fleet');
    expect(page.devices.map((d: { id: string }) => d.id)).toEqual(FLEET);
    expect(page.devices.every((d: { version: string; counter: number; online: boolean }) => d.version === '2.0.0' && d.counter === 2 && d.online)).toBe(true);
    expect([page.next, page.more]).toEqual([null, false]);
  });

  it('filters by version, group and presence', async () => {
    const ids = async (q: string) => (await get(`/api/devices?${q}`)).devices.map((d: { id: string }) => d.id);
    expect(await ids('version=2.0.0')).toEqual(FLEET);
    expect(await ids('version=1.0.0')).toEqual(['o-1', 'o-2', 'o-3']);
    expect(await ids('group=g-other&version=2.0.0')).toEqual([]);
    expect(await ids('group=g-other&state=online')).toEqual(['o-1', 'o-2', 'o-3']);
    expect(await ids('group=g-other&state=offline')).toEqual([]);
  });

  it('pages: at most limit devices, `next` starts the following page, the last page says no more', async () => {
    const seen: string[] = [];
    const pages: [number, boolean][] = [];
    let after = '';
    for (;;) {
      const p = await get(`/api/devices?group=g-fleet&limit=7${after ? `&after=${after}` : ''}`);
      seen.push(...p.devices.map((d: { id: string }) => d.id));
      pages.push([p.devices.length, p.more]);
      if (!p.more) break;
      after = p.next;
    }
    expect(pages).toEqual([
      [7, true],
      [7, true],
      [6, false],
    ]);
    expect(seen).toEqual(FLEET);
  });

  it('a malformed query is 400, an unknown device 404', async () => {
    for (const q of ['limit=0', 'limit=1001', 'state=asleep', 'group=a/b', 'after=x+y', 'colour=red']) {
      const r = await api(server, 'GET', `/api/devices?${q}`);
      expect(r.status, q).toBe(400);
    }
    const r = await api(server, 'GET', '/api/devices/nobody');
    expect([r.status, r.body.code]).toEqual([404, CODES.NOT_FOUND]);
  });

  it("a device's history lists every campaign it took part in; a rejection is its last error", async () => {
    const h = await get(`/api/devices/${FLEET[0]}`);
    expect(h).toMatchObject({ id: FLEET[0], group: 'g-fleet', version: '2.0.0', lastError: null });
    expect(h.campaigns).toEqual([expect.objectContaining({ campaign, version: '2.0.0', campaignState: 'completed', state: 'confirmed', code: null })]);
    const r = await createCampaign(server, 'g-other', v2, { waves: [100] });
    const other = r.body.id as string;
    const d = raw.get('o-1')!;
    expect((await d.manifest(other, 99)).type).toBe('manifestResponse');
    await d.status({ campaign: other, device: 'o-1', state: 'rejected', code: CODES.REVOKED_KEY });
    const o1 = await eventually(async () => {
      const x = await get('/api/devices/o-1');
      return x.lastError ? x : null;
    });
    expect(o1.lastError).toEqual({ code: CODES.REVOKED_KEY, campaign: other });
    expect(o1.version).toBe('1.0.0');
    expect(o1.campaigns.map((c: { campaign: string; state: string }) => [c.campaign, c.state])).toEqual([[other, 'rejected']]);
  });

  it('the CLI: devices list with filters, devices show, campaign list by state', async () => {
    const list = await cli('devices', 'list', '--group', 'g-fleet', '--version', '2.0.0', '--json');
    expect(list.status, list.err).toBe(0);
    expect(JSON.parse(list.out).devices).toHaveLength(20);
    const text = await cli('devices', 'list', '--state', 'online');
    expect(text.out.split('\n')[0]).toMatch(/^DEVICE\s+GROUP\s+VERSION\s+COUNTER\s+ONLINE/);
    expect(text.out).toMatch(/f-20\s+g-fleet\s+2\.0\.0\s+2\s+online/);
    const show = await cli('devices', 'show', FLEET[0]);
    expect(show.status).toBe(0);
    expect(show.out).toContain(campaign);
    const missing = await cli('devices', 'show', 'nobody');
    expect(missing.status).toBe(2);
    expect(missing.err).toContain(`(code ${CODES.NOT_FOUND})`);
    const completed = await cli('campaign', 'list', '--state', 'completed', '--json');
    expect(JSON.parse(completed.out).campaigns.map((c: { id: string }) => c.id)).toEqual([campaign]);
    const bad = await cli('campaign', 'list', '--state', 'sleeping');
    expect([bad.status, bad.err.includes(`(code ${CODES.USAGE})`)]).toEqual([2, true]);
  });
});

describe('offline after a killed client (the MQTT last will)', () => {
  it('a real device client whose connection dies is marked offline; back, it is online again', async () => {
    const E = 4096;
    const SLOT = 256 * 1024;
    const geometry = { size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
    const layout = createLayout(geometry, { slotSize: SLOT });
    const flash = new SimFlash(geometry);
    const p = provision(flash, layout, { deviceClass: 'acme-gw', trust: w.trust, envelope: v1.envelope, image: v1.image, verifier });
    expect(p.ok).toBe(true);
    const start = () =>
      OtaDevice.start({
        id: 'lw-1',
        group: 'g-will',
        flash,
        layout,
        trust: w.trust,
        verifier,
        maxTrialBoots: 2,
        mqtt: { url: broker.url, options: { protocolVersion: 4, clientId: 'lw-1', reconnectPeriod: 0 } },
      });
    const device = await start();
    const state = async () => {
      const r = await api(server, 'GET', '/api/devices/lw-1');
      return r.status === 200 ? (r.body.online as boolean) : null;
    };
    await eventually(async () => (await state()) === true, 10_000, 'lw-1 online');
    device.crash(); // the socket is dropped without a DISCONNECT: the broker publishes the will
    await eventually(async () => (await state()) === false, 10_000, 'lw-1 offline');
    expect((await get('/api/devices?state=offline')).devices.map((d: { id: string }) => d.id)).toEqual(['lw-1']);
    const again = await start();
    stops.push(() => again.stop());
    await eventually(async () => (await state()) === true, 10_000, 'lw-1 online again');
  });
});
