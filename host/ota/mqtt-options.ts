/**
 * MQTT connection options shared by `fwseal serve`, `fwseal device run --broker` and `fwseal fleet-sim`
 * (README "OTA over MQTT"): mqtt:// or mqtts:// with a CA, client certificate and key; username and
 * password from the environment only (FWSEAL_MQTT_USERNAME / FWSEAL_MQTT_PASSWORD, never flags, never
 * printed); client id prefix; keepalive; clean or persistent sessions; MQTT 3.1.1 or 5.
 */
import { readFileSync } from 'node:fs';
import { type IClientOptions, type MqttClient } from 'mqtt';
import { LIMITS } from '../../shared/limits.js';
import { int, type Parsed, str } from '../commands/common.js';
import { FwsealError } from '../errors.js';
import { loadOptional } from '../optional.js';

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

/** CONNACK return codes of MQTT 3.1.1 (§3.2.2.3): why a broker refused a connection. */
const CONNACK_V4: Readonly<Record<number, string>> = {
  1: 'UNACCEPTABLE_PROTOCOL_VERSION',
  2: 'IDENTIFIER_REJECTED',
  3: 'SERVER_UNAVAILABLE',
  4: 'BAD_USER_NAME_OR_PASSWORD',
  5: 'NOT_AUTHORIZED',
};

/** CONNACK reason codes of MQTT 5 (§3.2.2.2). */
const CONNACK_V5: Readonly<Record<number, string>> = {
  128: 'UNSPECIFIED_ERROR',
  129: 'MALFORMED_PACKET',
  130: 'PROTOCOL_ERROR',
  131: 'IMPLEMENTATION_SPECIFIC_ERROR',
  132: 'UNSUPPORTED_PROTOCOL_VERSION',
  133: 'CLIENT_IDENTIFIER_NOT_VALID',
  134: 'BAD_USER_NAME_OR_PASSWORD',
  135: 'NOT_AUTHORIZED',
  136: 'SERVER_UNAVAILABLE',
  137: 'SERVER_BUSY',
  138: 'BANNED',
  140: 'BAD_AUTHENTICATION_METHOD',
  144: 'TOPIC_NAME_INVALID',
  149: 'PACKET_TOO_LARGE',
  151: 'QUOTA_EXCEEDED',
  153: 'PAYLOAD_FORMAT_INVALID',
  154: 'RETAIN_NOT_SUPPORTED',
  155: 'QOS_NOT_SUPPORTED',
  156: 'USE_ANOTHER_SERVER',
  157: 'SERVER_MOVED',
  159: 'CONNECTION_RATE_EXCEEDED',
};

/** The name of a CONNACK refusal code for the protocol version that sent it ("CONNACK_<n>" when unknown). */
export function connackReason(code: number, version: number | undefined): string {
  return (version === 5 ? CONNACK_V5 : CONNACK_V4)[code] ?? `CONNACK_${code}`;
}

/** mqtt.js reports a CONNACK refusal as an error carrying the numeric return/reason code (never 0). */
function connackRefusal(e: Error): number | null {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'number' && Number.isInteger(code) && code > 0 ? code : null;
}

/**
 * Connect, waiting at most `timeoutMs` for the first CONNACK: no answer is BROKER_UNREACHABLE; a
 * refusal (bad user name or password, not authorised, client id refused, server unavailable) is
 * BROKER_AUTH_FAILED at once, naming the reason (SPEC.md §9, code 821): retrying would only be
 * refused again. Afterwards the client reconnects by itself, through refusals too (a broker
 * restarting its authentication backend answers SERVER_UNAVAILABLE for a while).
 */
export async function connectMqtt(settings: MqttSettings, timeoutMs = 10_000): Promise<MqttClient> {
  // mqtt is an optional package: commands that never connect start without it (host/optional.ts).
  const { default: mqtt } = await loadOptional('mqtt', 'an MQTT connection', () => import('mqtt'));
  return new Promise((resolve, reject) => {
    // mqtt.js calls its debug logger several times per packet; off unless DEBUG asks (a measurable share of serve's CPU).
    const quiet = process.env.DEBUG ? {} : { log: () => undefined };
    const client = mqtt.connect(settings.url, { ...quiet, ...settings.options, reconnectOnConnackError: true });
    let lastError = '';
    const fail = (e: FwsealError) => {
      clearTimeout(timer);
      client.removeListener('connect', onConnect);
      client.removeListener('error', onError);
      client.on('error', () => {}); // anything the closing socket still reports is no news
      client.end(true);
      reject(e);
    };
    const onError = (e: Error) => {
      const refused = connackRefusal(e);
      if (refused === null) {
        lastError = (e as NodeJS.ErrnoException).code ?? e.message;
        return;
      }
      const reason = connackReason(refused, settings.options.protocolVersion);
      const hint = /USER_NAME|AUTHORIZED|AUTHENTICATION|BANNED/.test(reason) ? '; check FWSEAL_MQTT_USERNAME / FWSEAL_MQTT_PASSWORD and the broker ACL' : '';
      fail(new FwsealError('BROKER_AUTH_FAILED', `${settings.url} refused the connection: ${reason} (CONNACK code ${refused})${hint}`));
    };
    const timer = setTimeout(() => {
      fail(new FwsealError('BROKER_UNREACHABLE', `no connection to ${settings.url} within ${timeoutMs} ms${lastError ? ` (${lastError})` : ''}`));
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
