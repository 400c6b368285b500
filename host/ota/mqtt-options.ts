/**
 * MQTT connection options shared by `fwseal serve`, `fwseal device run --broker` and `fwseal fleet-sim`
 * (README "OTA over MQTT"): mqtt:// or mqtts:// with a CA, client certificate and key; username and
 * password from the environment only (FWSEAL_MQTT_USERNAME / FWSEAL_MQTT_PASSWORD, never flags, never
 * printed); client id prefix; keepalive; clean or persistent sessions; MQTT 3.1.1 or 5.
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { LIMITS } from '../../shared/limits.js';
import { int, type Parsed, str } from '../commands/common.js';
import { FwsealError } from '../errors.js';

export const MQTT_FLAGS = {
  broker: { type: 'string' },
  'mqtt-ca': { type: 'string' },
  'mqtt-cert': { type: 'string' },
  'mqtt-key': { type: 'string' },
  'client-id-prefix': { type: 'string' },
  keepalive: { type: 'string' },
  'persistent-session': { type: 'boolean' },
  'mqtt-version': { type: 'string' },
} as const;

export const MQTT_USAGE = `MQTT: --broker mqtt://HOST:PORT | mqtts://HOST:PORT  [--mqtt-ca FILE] [--mqtt-cert FILE --mqtt-key FILE]
    [--client-id-prefix P] [--keepalive SECONDS] [--persistent-session] [--mqtt-version 4|5]
    Username and password come from FWSEAL_MQTT_USERNAME and FWSEAL_MQTT_PASSWORD.`;

export type MqttSettings = { readonly url: string; readonly options: IClientOptions };

const MAX_PEM = LIMITS.maxPemBytes;

function readPem(path: string, what: string): Buffer {
  try {
    const b = readFileSync(path);
    if (b.length > MAX_PEM) throw new FwsealError('IO', `${what} ${path} is larger than ${MAX_PEM} bytes`);
    return b;
  } catch (e) {
    if (e instanceof FwsealError) throw e;
    throw new FwsealError('IO', `cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/**
 * Connection settings from the command line and the environment. `clientId` is appended to the
 * prefix (default "fwseal-"); `defaultVersion` is 5 for servers (shared subscriptions), 4 for devices.
 */
export function mqttSettings(p: Parsed, env: NodeJS.ProcessEnv, clientId: string, defaultVersion: 4 | 5): MqttSettings {
  const url = str(p, 'broker', true);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FwsealError('USAGE', `--broker ${JSON.stringify(url)} is not a URL (mqtt://HOST:PORT or mqtts://HOST:PORT)`);
  }
  if (parsed.protocol !== 'mqtt:' && parsed.protocol !== 'mqtts:') throw new FwsealError('USAGE', '--broker must be mqtt:// or mqtts://');
  if (parsed.username || parsed.password)
    throw new FwsealError('USAGE', '--broker must not carry credentials; use FWSEAL_MQTT_USERNAME / FWSEAL_MQTT_PASSWORD');
  const version = int(p, 'mqtt-version', 4, 5, defaultVersion);
  const prefix = str(p, 'client-id-prefix') ?? 'fwseal-';
  if (!/^[A-Za-z0-9_.-]{0,32}$/.test(prefix)) throw new FwsealError('USAGE', '--client-id-prefix must be at most 32 characters of [A-Za-z0-9_.-]');
  const options: IClientOptions = {
    protocolVersion: version as 4 | 5,
    clientId: prefix + clientId,
    keepalive: int(p, 'keepalive', 5, 3600, 30),
    clean: !p.values['persistent-session'],
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    resubscribe: true,
  };
  if (env.FWSEAL_MQTT_USERNAME) options.username = env.FWSEAL_MQTT_USERNAME;
  if (env.FWSEAL_MQTT_PASSWORD) options.password = env.FWSEAL_MQTT_PASSWORD;
  const ca = str(p, 'mqtt-ca');
  const cert = str(p, 'mqtt-cert');
  const key = str(p, 'mqtt-key');
  if ((cert === undefined) !== (key === undefined)) throw new FwsealError('USAGE', '--mqtt-cert and --mqtt-key go together');
  if ((ca || cert) && parsed.protocol !== 'mqtts:') throw new FwsealError('USAGE', '--mqtt-ca/--mqtt-cert need an mqtts:// broker');
  if (ca) options.ca = readPem(ca, 'CA certificate');
  if (cert && key) {
    options.cert = readPem(cert, 'client certificate');
    options.key = readPem(key, 'client key');
  }
  if (parsed.protocol === 'mqtts:') options.rejectUnauthorized = true;
  return { url, options };
}

/**
 * Connect, waiting at most `timeoutMs` for the first CONNACK (BROKER_UNREACHABLE after that, or
 * when the broker refuses). Afterwards the client reconnects by itself.
 */
export function connectMqtt(settings: MqttSettings, timeoutMs = 10_000): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(settings.url, settings.options);
    let lastError = '';
    const onError = (e: Error) => {
      lastError = (e as NodeJS.ErrnoException).code ?? e.message;
    };
    const timer = setTimeout(() => {
      client.removeListener('connect', onConnect);
      client.end(true);
      reject(new FwsealError('BROKER_UNREACHABLE', `no connection to ${settings.url} within ${timeoutMs} ms${lastError ? ` (${lastError})` : ''}`));
    }, timeoutMs);
    const onConnect = () => {
      clearTimeout(timer);
      client.removeListener('error', onError);
      client.on('error', () => {}); // reconnects report through 'offline'/'reconnect'; never crash the process
      resolve(client);
    };
    client.on('error', onError);
    client.once('connect', onConnect);
  });
}
