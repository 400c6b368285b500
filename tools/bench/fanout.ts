/**
 * The reference for the OTA benchmark: mosquitto's raw fan-out of the same bytes to the same number
 * of subscribers, measured in the same run. One publisher sends `bytes` as QoS 1 messages of
 * `messageBytes` to one topic; `subscribers` MQTT 3.1.1 clients receive them. The time runs from the
 * first publish to the last byte at the last subscriber. Subscribers drain as fast as they can.
 */
import mqtt, { type MqttClient } from 'mqtt';

export async function connectMany(url: string, count: number, prefix: string, concurrency = 50): Promise<MqttClient[]> {
  const clients: MqttClient[] = [];
  for (let i = 0; i < count; i += concurrency) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(concurrency, count - i) }, (_, j) =>
        mqtt.connectAsync(url, { protocolVersion: 4, clientId: `${prefix}${i + j}`, reconnectPeriod: 0, keepalive: 60 }),
      ),
    );
    clients.push(...batch);
  }
  return clients;
}

export async function rawFanout(url: string, subscribers: number, bytes: number, messageBytes: number): Promise<{ seconds: number; delivered: number }> {
  const topic = `bench/fanout/${process.pid}`;
  const subs = await connectMany(url, subscribers, `fanout-sub-${process.pid}-`);
  const pub = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: `fanout-pub-${process.pid}`, reconnectPeriod: 0 });
  try {
    await Promise.all(subs.map((c) => c.subscribeAsync(topic, { qos: 1 })));
    let delivered = 0;
    const want = subscribers * bytes;
    const done = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`raw fan-out: ${delivered} of ${want} bytes after 300 s`)), 300_000);
      for (const c of subs) {
        c.on('message', (_t, payload) => {
          delivered += payload.length;
          if (delivered >= want) {
            clearTimeout(t);
            resolve();
          }
        });
      }
    });
    const body = new Uint8Array(messageBytes).fill(0xa5);
    const t0 = performance.now();
    const sends: Promise<unknown>[] = [];
    for (let o = 0; o < bytes; o += messageBytes)
      sends.push(pub.publishAsync(topic, Buffer.from(body.subarray(0, Math.min(messageBytes, bytes - o))), { qos: 1 }));
    await Promise.all(sends);
    await done;
    return { seconds: (performance.now() - t0) / 1000, delivered };
  } finally {
    await Promise.all([...subs, pub].map((c) => c.endAsync(true)));
  }
}
