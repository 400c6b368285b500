/** MQTT connection options for real fleets: flags and environment -> client options; bad input -> codes. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Parsed } from '../host/commands/common.js';
import { FwsealError } from '../host/errors.js';
import { mqttSettings } from '../host/ota/mqtt-options.js';
import { CODES } from '../shared/codes.js';

const dir = mkdtempSync(join(tmpdir(), 'fwseal-mqtt-opts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const pem = (name: string, text = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n') => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const parsed = (values: Parsed['values']): Parsed => ({ values, positionals: [] });
const codeOf = (f: () => unknown): number => {
  try {
    f();
  } catch (e) {
    if (e instanceof FwsealError) return e.code;
    throw e;
  }
  return 0;
};

describe('mqttSettings', () => {
  it('defaults: clean session, keepalive 30, client id = prefix + id, the version asked for', () => {
    const s = mqttSettings(parsed({ broker: 'mqtt://127.0.0.1:1883' }), {}, 'gw-1', 4);
    expect(s.url).toBe('mqtt://127.0.0.1:1883');
    expect(s.options).toMatchObject({ protocolVersion: 4, clientId: 'fwseal-gw-1', keepalive: 30, clean: true });
    expect(s.options.username).toBeUndefined();
    expect(mqttSettings(parsed({ broker: 'mqtt://h:1' }), {}, 'x', 5).options.protocolVersion).toBe(5);
  });

  it('takes credentials from the environment only, and refuses them in the URL', () => {
    const s = mqttSettings(parsed({ broker: 'mqtt://h:1' }), { FWSEAL_MQTT_USERNAME: 'fleet', FWSEAL_MQTT_PASSWORD: 's3cret' }, 'd', 4);
    expect(s.options.username).toBe('fleet');
    expect(s.options.password).toBe('s3cret');
    expect(codeOf(() => mqttSettings(parsed({ broker: 'mqtt://u:p@h:1' }), {}, 'd', 4))).toBe(CODES.USAGE);
  });

  it('client id prefix, keepalive, persistent sessions and the protocol version are flags', () => {
    const s = mqttSettings(
      parsed({ broker: 'mqtt://h:1', 'client-id-prefix': 'plant7-', keepalive: '120', 'persistent-session': true, 'mqtt-version': '5' }),
      {},
      'gw',
      4,
    );
    expect(s.options).toMatchObject({ clientId: 'plant7-gw', keepalive: 120, clean: false, protocolVersion: 5 });
    expect(codeOf(() => mqttSettings(parsed({ broker: 'mqtt://h:1', keepalive: '2' }), {}, 'gw', 4))).toBe(CODES.USAGE);
    expect(codeOf(() => mqttSettings(parsed({ broker: 'mqtt://h:1', 'mqtt-version': '3' }), {}, 'gw', 4))).toBe(CODES.USAGE);
    expect(codeOf(() => mqttSettings(parsed({ broker: 'mqtt://h:1', 'client-id-prefix': 'a/b' }), {}, 'gw', 4))).toBe(CODES.USAGE);
  });

  it('mqtts: CA, client certificate and key are read from files; TLS flags need mqtts; cert and key go together', () => {
    const ca = pem('ca.pem');
    const cert = pem('c.pem');
    const key = pem('k.pem', '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n');
    const s = mqttSettings(parsed({ broker: 'mqtts://broker.example:8883', 'mqtt-ca': ca, 'mqtt-cert': cert, 'mqtt-key': key }), {}, 'gw', 4);
    expect(Buffer.isBuffer(s.options.ca)).toBe(true);
    expect(Buffer.isBuffer(s.options.cert) && Buffer.isBuffer(s.options.key)).toBe(true);
    expect(s.options.rejectUnauthorized).toBe(true);
    expect(codeOf(() => mqttSettings(parsed({ broker: 'mqtt://h:1', 'mqtt-ca': ca }), {}, 'gw', 4))).toBe(CODES.USAGE);
    expect(codeOf(() => mqttSettings(parsed({ broker: 'mqtts://h:1', 'mqtt-cert': cert }), {}, 'gw', 4))).toBe(CODES.USAGE);
    expect(codeOf(() => mqttSettings(parsed({ broker: 'mqtts://h:1', 'mqtt-ca': join(dir, 'missing.pem') }), {}, 'gw', 4))).toBe(CODES.IO);
  });

  it('refuses brokers that are not mqtt:// or mqtts:// URLs', () => {
    for (const broker of ['127.0.0.1:1883', 'http://h:1', 'ws://h:1', '']) {
      expect(
        codeOf(() => mqttSettings(parsed({ broker }), {}, 'gw', 4)),
        broker,
      ).toBe(CODES.USAGE);
    }
    expect(codeOf(() => mqttSettings(parsed({}), {}, 'gw', 4))).toBe(CODES.USAGE);
  });
});
