/**
 * MQTT over TLS for real fleets: mosquitto with a TLS listener that requires client certificates
 * (certificates made by openssl for this test), the server on the loopback plain listener, and a
 * device that connects with --mqtt-ca / --mqtt-cert / --mqtt-key and updates. A device without a
 * client certificate is refused (BROKER_UNREACHABLE).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FwsealError } from '../host/errors.js';
import { fleetVerifier } from '../host/hash.js';
import { OtaDevice } from '../host/ota/device-client.js';
import { connectMqtt, mqttSettings } from '../host/ota/mqtt-options.js';
import { CODES } from '../shared/codes.js';
import { freePort, type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { OtaResponder, otaWorld } from './support/ota-responder.js';

const dir = mkdtempSync(join(tmpdir(), 'fwseal-tls-'));
const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
const world = otaWorld(64 * 1024);
let broker: Mosquitto;
let tlsPort: number;
let responder: OtaResponder;

beforeAll(async () => {
  // A CA, a server certificate for 127.0.0.1 and a client certificate, all EC P-256.
  openssl(
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=fwseal test CA',
  );
  for (const [name, cn, ext] of [
    ['server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1'],
    ['client', 'gw-tls', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    writeFileSync(join(dir, `${name}.ext`), `${ext}\n`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  }
  tlsPort = await freePort();
  broker = await startMosquitto({
    persistence: false,
    extra: [
      `listener ${tlsPort} 127.0.0.1`,
      `cafile ${join(dir, 'ca.pem')}`,
      `certfile ${join(dir, 'server.pem')}`,
      `keyfile ${join(dir, 'server.key')}`,
      'require_certificate true',
      'allow_anonymous true',
      // As root mosquitto would drop to user mosquitto, which cannot read this test's 0600 keys in its 0700 folder.
      'user root',
    ],
  });
  responder = await OtaResponder.start(broker.url); // the server side on the plain loopback listener
}, 60_000);

afterAll(async () => {
  await responder?.stop();
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const tlsFlags = (withClientCert: boolean) => ({
  broker: `mqtts://127.0.0.1:${tlsPort}`,
  'mqtt-ca': join(dir, 'ca.pem'),
  ...(withClientCert ? { 'mqtt-cert': join(dir, 'client.pem'), 'mqtt-key': join(dir, 'client.key') } : {}),
});

describe('MQTT over TLS with client certificates', () => {
  it('a device with a client certificate connects over mqtts and updates', async () => {
    const { flash, layout } = world.device();
    const settings = mqttSettings({ values: tlsFlags(true), positionals: [] }, {}, 'gw-tls', 4);
    const device = await OtaDevice.start({
      id: 'gw-tls',
      group: 'g-tls',
      mqtt: settings,
      flash,
      layout,
      trust: world.trust,
      verifier: fleetVerifier(),
      maxTrialBoots: 2,
    });
    try {
      const done = device.waitFor((e) => e.state === 'confirmed' || e.state === 'failed');
      await responder.announce('g-tls', 'c-tls', world.v2);
      expect((await done).state).toBe('confirmed');
      expect(device.state().version).toBe('2.0.0');
    } finally {
      await device.stop();
    }
  }, 60_000);

  it('without a client certificate the broker refuses the connection: BROKER_UNREACHABLE', async () => {
    const settings = mqttSettings({ values: tlsFlags(false), positionals: [] }, {}, 'gw-nocert', 4);
    const err = await connectMqtt({ url: settings.url, options: { ...settings.options, reconnectPeriod: 200 } }, 3000).then(
      (c) => {
        c.end(true);
        return null;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FwsealError);
    expect((err as FwsealError).code).toBe(CODES.BROKER_UNREACHABLE);
  }, 30_000);
});
