/**
 * Replies of one turn of the event loop leave the server in one socket write (host/ota/reply-publisher.ts
 * turnCork, SPEC.md §12.9 "Requests"): mqtt.js handles one incoming packet per tick and writes each
 * packet on its own, so replies made one per tick were one system call each. Against a real mosquitto:
 * ten replies made in ten successive ticks reach the socket in one write, and the device receives all
 * ten, in order, byte for byte.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metrics } from '../host/ota/metrics.js';
import { ReplyPublisher } from '../host/ota/reply-publisher.js';
import { topics } from '../shared/ota/topics.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';

type Socket = { _write: (...a: unknown[]) => unknown; _writev?: (...a: unknown[]) => unknown };

describe('replies of one turn of the event loop', () => {
  let broker: Mosquitto;
  let server: MqttClient;
  let device: MqttClient;
  beforeAll(async () => {
    broker = await startMosquitto({ persistence: false });
    server = await mqtt.connectAsync(broker.url, { protocolVersion: 4, clientId: 'cork-server', reconnectPeriod: 0 });
    device = await mqtt.connectAsync(broker.url, { protocolVersion: 4, clientId: 'cork-device', reconnectPeriod: 0 });
    await device.subscribeAsync(topics.reply('fwseal', 'd1'), { qos: 0 });
  });
  afterAll(async () => {
    await device?.endAsync(true);
    await server?.endAsync(true);
    await broker?.stop();
  });

  it('ten replies made one per tick go out in one socket write, all ten received in order', async () => {
    const publisher = new ReplyPublisher(server, 'fwseal', 0, false, new Metrics());
    const socket = (server as unknown as { stream: Socket }).stream;
    let writes = 0;
    const { _write, _writev } = socket;
    socket._write = (...a) => {
      writes++;
      return _write.apply(socket, a);
    };
    if (_writev)
      socket._writev = (...a) => {
        writes++;
        return _writev.apply(socket, a);
      };
    const got: string[] = [];
    const all = new Promise<void>((ok) =>
      device.on('message', (_t, payload) => {
        got.push(payload.toString());
        if (got.length === 10) ok();
      }),
    );
    try {
      // As mqtt.js takes incoming packets: one per tick, the next one after this one's writes.
      await new Promise<void>((done) => {
        const step = (i: number) => {
          if (i === 10) return done();
          publisher.send([{ payload: Buffer.from(`reply ${i}`) }], { cmd: 'publish' } as never, 'd1', null);
          process.nextTick(step, i + 1);
        };
        process.nextTick(step, 0);
      });
      await new Promise((r) => setImmediate(r));
      expect(writes).toBe(1);
    } finally {
      socket._write = _write;
      if (_writev) socket._writev = _writev;
    }
    await all;
    expect(got).toEqual(Array.from({ length: 10 }, (_, i) => `reply ${i}`));
  });
});
