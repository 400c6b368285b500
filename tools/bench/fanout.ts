/**
 * The reference for the OTA benchmark: mosquitto's raw fan-out of the same bytes to the same number
 * of subscribers, measured in the same run. One publisher (in the bench process, where `fwseal serve`
 * would be) sends `bytes` as QoS 1 messages of `messageBytes` to one topic; `subscribers` MQTT 3.1.1
 * clients receive them in the forked children (ota-fleet.ts) the protocol devices of the delivery
 * rows use. The time runs from the first publish to the last byte at the last subscriber (wall clock,
 * compared across processes); CPU and broker bytes over the same window (ota-meter.ts).
 */
import mqtt from 'mqtt';
import { type ClientPool } from './ota-fleet.js';
import { wallMs } from './ota-light.js';
import { type BrokerBytes, Meter, type MeterResult } from './ota-meter.js';

export type FanoutRun = { readonly seconds: number; readonly delivered: number; readonly meter: MeterResult };

export type FanoutSpec = {
  readonly url: string;
  readonly subscribers: number;
  readonly bytes: number;
  readonly messageBytes: number;
  readonly pool: ClientPool;
  readonly broker: { readonly pid: number | undefined; readonly bytes: BrokerBytes };
};

export async function rawFanout(s: FanoutSpec): Promise<FanoutRun> {
  const { url, bytes, messageBytes } = s;
  const tag = `${process.pid}-${Date.now()}`;
  const topic = `bench/fanout/${tag}`;
  const fleet = await s.pool.round({ mode: 'raw', url, idPrefix: `fanout-sub-${tag}-`, topic, bytes, count: s.subscribers });
  const pub = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: `fanout-pub-${tag}`, reconnectPeriod: 0 });
  try {
    const meter = await Meter.begin({ mosquitto: [s.broker.pid], subscribers: s.pool.pids }, s.broker.bytes);
    const body = Buffer.alloc(messageBytes, 0xa5);
    const t0 = wallMs();
    const sends: Promise<unknown>[] = [];
    for (let o = 0; o < bytes; o += messageBytes) sends.push(pub.publishAsync(topic, body.subarray(0, Math.min(messageBytes, bytes - o)), { qos: 1 }));
    await Promise.all(sends);
    const stats = await fleet.done(300_000);
    const m = await meter.end();
    return { seconds: (stats.lastDoneAt - t0) / 1000, delivered: stats.rxBytes, meter: m };
  } finally {
    await pub.endAsync(true);
    await fleet.end();
  }
}
