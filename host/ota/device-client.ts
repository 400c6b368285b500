/**
 * The OTA device client, started from the host (`fwseal device run --broker`, `fwseal fleet-sim`, the
 * demo): connection settings become an mqtt.js client, then the device-side client runs on it. The
 * client itself is device code (device/ota/client.ts) and its mqtt.js adapter device/node/
 * mqtt-link.ts; nothing of a device's message path runs here.
 */
import { type MqttClient } from 'mqtt';
import { startOtaClient } from '../../device/node/mqtt-link.js';
import { type OtaClient, type OtaClientOptions } from '../../device/ota/client.js';
import { createVerifier, type Verifier } from '../../device/verifier.js';
import { offlineWill } from '../../shared/ota/status.js';
import { topics } from '../../shared/ota/topics.js';
import { nodeSha256 } from '../hash.js';
import { connectMqtt, type MqttSettings } from './mqtt-options.js';

export type { OtaPhase, OtaPullOptions, OtaState, OtaStats } from '../../device/ota/client.js';

export type OtaDeviceOptions = Omit<OtaClientOptions, 'verifier'> & {
  /** Connection settings (connected with connectMqtt) or a client already connected. */
  readonly mqtt: MqttSettings | MqttClient;
  /** Default: the device verifier with node:crypto SHA-256. */
  readonly verifier?: Verifier;
};

export type OtaDevice = OtaClient;

export const OtaDevice = Object.freeze({
  /**
   * Boot, connect (with the `offline` last will, SPEC.md §12.2), subscribe to the group announcement
   * and the reply topic, report `online`. A client connected by the caller keeps its own will.
   */
  async start(o: OtaDeviceOptions): Promise<OtaClient> {
    const { mqtt, verifier, ...rest } = o;
    const options: OtaClientOptions = { ...rest, verifier: verifier ?? createVerifier({ sha256: nodeSha256 }) };
    // Validate ids and prefix before connecting (RangeError from the topic builders).
    topics.announce(o.prefix ?? 'fwseal', o.group);
    topics.reply(o.prefix ?? 'fwseal', o.id);
    const client = isClient(mqtt) ? mqtt : await connectMqtt(withOfflineWill(mqtt, o.prefix ?? 'fwseal', o.id));
    return startOtaClient(options, client);
  },
});

/** Connection settings that carry the device's `offline` last will (SPEC.md §12.2): not retained, QoS 1. */
export function withOfflineWill(settings: MqttSettings, prefix: string, device: string): MqttSettings {
  const w = offlineWill(prefix, device);
  return { ...settings, options: { ...settings.options, will: { topic: w.topic, payload: Buffer.from(w.payload), qos: w.qos, retain: w.retain } } };
}

function isClient(m: MqttSettings | MqttClient): m is MqttClient {
  return typeof (m as MqttClient).publish === 'function';
}
