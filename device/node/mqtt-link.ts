/**
 * The OTA device client over mqtt.js (SPEC.md §12.4): the only place that knows the MQTT library.
 * Messages go from the socket straight to the client (device/ota/client.ts), and from there through
 * the agent's checks to flash.
 */
import { type IClientPublishOptions, type MqttClient } from 'mqtt';
import { OtaClient, type OtaClientOptions } from '../ota/client.js';
import { type OtaClock, type OtaLink } from '../ota/ports.js';
import { nodeClock } from './clock.js';

/** An OtaLink over a connected mqtt.js client. */
export function mqttLink(client: MqttClient): OtaLink {
  return {
    v5: client.options.protocolVersion === 5,
    publish(topic, payload, qos, reply) {
      const opts: IClientPublishOptions = { qos };
      if (reply) opts.properties = { responseTopic: reply.topic, correlationData: Buffer.from(reply.correlation) };
      client.publish(topic, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), opts, () => undefined);
    },
    subscribe: async (topics, qos) => void (await client.subscribeAsync([...topics], { qos })),
    unsubscribe: async (topic) => void (await client.unsubscribeAsync(topic)),
    close: async (graceful) => {
      if (graceful) await client.endAsync();
      else client.end(true);
    },
  };
}

/** Start an OTA client on a connected mqtt.js client: messages and reconnects go to it. */
export async function startOtaClient(options: OtaClientOptions, client: MqttClient, clock: OtaClock = nodeClock): Promise<OtaClient> {
  const device = new OtaClient(options, mqttLink(client), clock);
  client.on('message', (topic, payload) => device.receive(topic, payload));
  client.on('connect', () => device.connected()); // reconnects; the first connect is already done
  await device.start();
  return device;
}
