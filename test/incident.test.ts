/**
 * `fwseal incident revoke-key`, the key compromise drill (SPEC.md §12.9, §12.13, §11.4), against a
 * real mosquitto, the real server (OtaServer in-process) and real device clients over simulated
 * flash. A release signed by R1 + R3 is mid-rollout when R1 leaks: the drill revokes R1, the server
 * halts the campaign, the release re-signed by R2 + R3 goes out as a new campaign, every device ends
 * on it and enforces the list, and a device that installed the R1-signed release before keeps
 * running it. Before it, a --sign key that is no root key and a list one signature short publish
 * nothing; after it, a second drill must carry the list forward, and a device that never
 * acknowledges ends the watch with TRANSPORT_TIMEOUT. The keys are real key files (keygen); the CLI
 * runs in-process. Codes, not messages.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boot } from '../device/agent/boot.js';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { SimFlash } from '../device/sim/flash.js';
import { fleetVerifier } from '../host/hash.js';
import { OtaDevice } from '../host/ota/device-client.js';
import { OtaServer } from '../host/ota/server.js';
import { CODES } from '../shared/codes.js';
import { type CliWorld, expectOk, expectRejected, expectUsage, makeCliWorld } from './support/cli-world.js';
import { detBytes } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually, RawDevice } from './support/ota-client.js';
import { api, serverMqtt } from './support/ota-harness.js';

const E = 4096;
const SLOT = 512 * 1024;
const geometry = { size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
const layout = createLayout(geometry, { slotSize: SLOT });
const verifier = fleetVerifier();
const IDS = ['gw-1', 'gw-2', 'gw-3', 'gw-4'];

type Gateway = { id: string; flash: SimFlash; device: OtaDevice; confirmed: Promise<void> };

let world: CliWorld;
let broker: Mosquitto;
let server: OtaServer;
let url: string;
const gateways: Gateway[] = [];

/** Pack IMAGE as VERSION (counter) and sign it with `signers`. */
async function release(name: string, version: string, counter: number, size: number, signers: string[]): Promise<void> {
  world.write(`${name}.bin`, detBytes(size, `incident ${version}`));
  expectOk(await world.run('pack', `${name}.bin`, '--device-class', 'acme-gw', '--version', version, '--counter', String(counter), '--out', `${name}.cose`));
  for (const k of signers) expectOk(await world.run('sign', `${name}.cose`, '--key', `${k}.key`, '--trust', 'trust.cbor'));
}

async function startGateway(id: string): Promise<Gateway> {
  const flash = new SimFlash(geometry);
  const trust = world.bytes('trust.cbor');
  const p = provision(flash, layout, { deviceClass: 'acme-gw', trust, envelope: world.bytes('factory.cose'), image: world.bytes('factory.bin'), verifier });
  if (!p.ok) throw new Error(`provision: ${p.error}`);
  let confirmed: () => void = () => {};
  const done = new Promise<void>((r) => {
    confirmed = r;
  });
  const device = await OtaDevice.start({
    id,
    group: 'acme-gw',
    flash,
    layout,
    trust,
    verifier,
    maxTrialBoots: 2,
    mqtt: { url: broker.url, options: { protocolVersion: 4, clientId: `incident-${id}`, reconnectPeriod: 200 } },
    pull: { timeoutMs: 1500, baseBackoffMs: 50, maxBackoffMs: 500, retryBaseMs: 50, retryMaxMs: 500 },
    onStatus: (e) => {
      if (e.state === 'confirmed') confirmed();
    },
  });
  return { id, flash, device, confirmed: done };
}

const rootOf = (d: OtaDevice) => {
  const s = d.agent.status();
  if (!s.ok) throw new Error(s.error);
  return { trustVersion: s.state.trustVersion, revocationVersion: s.state.revocationVersion };
};

const drill = (...extra: string[]) =>
  world.run('incident', 'revoke-key', '--key', 'R1.pub', '--trust', 'trust.cbor', '--server', url, '--watch-timeout', '60', '--json', ...extra);

beforeAll(async () => {
  world = await makeCliWorld(['A', 'B', 'C', 'R1', 'R2', 'R3'], {
    trust: ['--root', 'A.pub', '--root', 'B.pub', '--root', 'C.pub', '--root-threshold', '2'].concat([
      '--release',
      'R1.pub',
      '--release',
      'R2.pub',
      '--release',
      'R3.pub',
      '--release-threshold',
      '2',
      '--sign',
      'A.key',
      '--sign',
      'B.key',
    ]),
  });
  await release('factory', '1.0.0', 1, 40_000, ['R2', 'R3']);
  await release('rel', '2.0.0', 2, 300_000, ['R1', 'R3']);
  broker = await startMosquitto({ persistence: false });
  server = await OtaServer.start({
    mqtt: serverMqtt(broker.url),
    dataDir: world.path('serve'),
    trust: world.bytes('trust.cbor'),
    http: { host: '127.0.0.1', port: 0 },
    tickMs: 100,
  });
  url = server.address()!.url;
  for (const id of IDS) gateways.push(await startGateway(id));
  await eventually(async () => (await api(server, 'GET', '/api/devices')).body.devices.length === IDS.length, 10_000, 'every gateway online');
});

afterAll(async () => {
  await Promise.allSettled(gateways.map((g) => g.device.stop()));
  await server?.close();
  await broker?.stop();
  world?.close();
});

describe('fwseal incident revoke-key', () => {
  it('a --sign key that is no root key is KEY_NOT_IN_TRUST (exit 2): nothing written, nothing published', async () => {
    expectUsage(await drill('--sign', 'A.key', '--sign', 'R2.key', '--out', 'bad.cbor'), 'KEY_NOT_IN_TRUST');
    expect(existsSync(world.path('bad.cbor'))).toBe(false);
    expect((await api(server, 'GET', '/api/root')).body.revocationVersion).toBe(0);
  });

  it('one root signature of two: the list is written for the other holders, REVOCATION_THRESHOLD_NOT_MET (exit 1), nothing published', async () => {
    expectRejected(await drill('--sign', 'A.key', '--out', 'partial.cbor'), 'REVOCATION_THRESHOLD_NOT_MET');
    expect(existsSync(world.path('partial.cbor'))).toBe(true);
    expect((await api(server, 'GET', '/api/root')).body.revocationVersion).toBe(0);
  });

  it('R1 leaks mid-rollout: revoked, the campaign halted, the release re-signed by R2 + R3 rolled out again; every gateway ends on it and enforces the list', async () => {
    const created = await world.run(
      'campaign',
      'create',
      '--server',
      url,
      '--manifest',
      'rel.cose',
      '--image',
      'rel.bin',
      '--group',
      'acme-gw',
      '--waves',
      '25,100',
    );
    expectOk(created);
    const first = created.out.trim();
    // Mid-rollout: the first gateway confirmed the R1-signed release, then the campaign is paused.
    const early = await Promise.race(gateways.map((g) => g.confirmed.then(() => g)));
    expectOk(await world.run('campaign', 'pause', first, '--server', url));
    const before = (await api(server, 'GET', `/api/campaigns/${first}`)).body;
    expect(before.counts.confirmed).toBeLessThan(IDS.length);

    const r = await drill('--sign', 'A.key', '--sign', 'C.key', '--resign', 'rel.cose', '--release-key', 'R2.key', '--out', 'RL2.cbor');
    expectOk(r);
    const s = JSON.parse(r.out);
    expect(s.list).toMatchObject({ version: 1, changed: true });
    expect(s.halted).toEqual([{ id: first, group: 'acme-gw', code: CODES.REVOKED_KEY, error: 'REVOKED_KEY' }]);
    expect(s.resigned).toEqual([{ file: 'rel.cose', version: '2.0.0', added: ['R2'] }]);
    expect(s.campaigns).toHaveLength(1);
    expect(s.campaigns[0]).toMatchObject({ halted: first, group: 'acme-gw', release: 'rel.cose' });
    expect(s.propagation).toMatchObject({ version: 1, online: IDS.length, enforcing: IDS.length });
    expect(s.propagation.maxSeconds).toBeGreaterThanOrEqual(0);

    const next = s.campaigns[0].id as string;
    expect((await api(server, 'GET', `/api/campaigns/${first}`)).body).toMatchObject({ state: 'aborted', haltCode: CODES.REVOKED_KEY });
    const done = await eventually(
      async () => {
        const c = (await api(server, 'GET', `/api/campaigns/${next}`)).body;
        return c.state === 'completed' && c;
      },
      30_000,
      'the re-signed release completed',
    );
    expect(done).toMatchObject({ waves: [25, 100], haltCode: null, counts: { confirmed: IDS.length, rejected: 0, failed: 0 } });
    for (const g of gateways) {
      expect(g.device.state()).toMatchObject({ version: '2.0.0', counter: 2 });
      expect(rootOf(g.device)).toEqual({ trustVersion: 1, revocationVersion: 1 });
    }
    // The gateway that installed the R1-signed release keeps booting it (SPEC.md §11.4): flagged, not refused.
    expect(boot(early.flash, layout, world.bytes('trust.cbor'), { maxTrialBoots: 2 })).toMatchObject({
      version: '2.0.0',
      code: 0,
      revokedSigners: true,
    });
    const devices = (await api(server, 'GET', '/api/devices')).body.devices as { revocationVersion: number }[];
    expect(devices.map((d) => d.revocationVersion)).toEqual(IDS.map(() => 1));
  });

  it('a second drill must carry the published list forward: without --previous it is USAGE (exit 2) before any passphrase', async () => {
    expectUsage(await drill('--key', 'R3.pub', '--sign', 'A.key', '--sign', 'C.key', '--out', 'RL3.cbor'));
    expect(existsSync(world.path('RL3.cbor'))).toBe(false);
    expect((await api(server, 'GET', '/api/root')).body.revocationVersion).toBe(1);
  });

  it('a device online that never acknowledges: the list is published, the watch stops after --watch-timeout with TRANSPORT_TIMEOUT (exit 1)', async () => {
    const ghost = await RawDevice.connect(broker.url, 'ghost-1');
    try {
      await ghost.online('elsewhere');
      await eventually(async () => (await api(server, 'GET', '/api/devices')).body.devices.some((d: { id: string }) => d.id === 'ghost-1'));
      const r = await world.run(
        ...['incident', 'revoke-key', '--key', 'R1.pub', '--trust', 'trust.cbor', '--previous', 'RL2.cbor', '--sign', 'A.key', '--sign', 'C.key'],
        ...['--out', 'RL3.cbor', '--server', url, '--watch-timeout', '1'],
      );
      expectRejected(r, 'TRANSPORT_TIMEOUT');
      expect(r.out).toMatch(/propagation: 4\/5 online devices enforce revocation list 2/);
      expect((await api(server, 'GET', '/api/root')).body.revocationVersion).toBe(2);
    } finally {
      await ghost.close();
    }
  });
});
