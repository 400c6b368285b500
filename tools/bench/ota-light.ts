/**
 * Protocol-only clients for the OTA benchmark's "delivery" row: they speak fwseal's MQTT protocol
 * exactly as devices do (online status, announcement, digest pages, block requests with the
 * multicast flag, the data topic) and check every chunk against its leaf digest (node:crypto), but
 * keep nothing and simulate no flash, so the row measures server + broker, not device simulation.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { LeafHasher } from '../../host/hash.js';
import { messageType } from '../../shared/ota/codec.js';
import { encodeBlockRequest, encodePageRequest, parseAnnouncement, parseBlockResponse, parsePageResponse } from '../../shared/ota/messages.js';
import { encodeStatusEvent } from '../../shared/ota/status.js';
import { topics } from '../../shared/ota/topics.js';

const PREFIX = 'fwseal';

type Light = { client: MqttClient; done: Promise<void> };

function lightClient(url: string, id: string, group: string, timeoutMs: number): Promise<Light> {
  return mqtt.connectAsync(url, { protocolVersion: 4, clientId: id, reconnectPeriod: 0, keepalive: 60 }).then(async (client) => {
    const reply = topics.reply(PREFIX, id);
    let resolveDone: () => void = () => {};
    const done = new Promise<void>((r) => {
      resolveDone = r;
    });
    let campaign = '';
    let blocks = 0;
    let cpb = 0;
    let chunkSize = 0;
    let leaves: Buffer[] = [];
    let hasher = new LeafHasher(1);
    const have = new Set<number>();
    let rid = 1;
    let timer: NodeJS.Timeout | null = null;
    const ask = () => {
      const missing = [...Array(blocks).keys()].filter((b) => !have.has(b)).slice(0, 16);
      if (missing.length === 0) return;
      const ranges: [number, number][] = [];
      for (const b of missing) {
        const last = ranges[ranges.length - 1];
        if (last && last[0] + last[1] === b) last[1]++;
        else ranges.push([b, 1]);
      }
      void client.publishAsync(
        topics.request(PREFIX, campaign, id),
        Buffer.from(encodeBlockRequest({ campaign, requestId: rid++, replyTopic: reply, ranges, multicast: true })),
        { qos: 1 },
      );
      timer = setTimeout(ask, timeoutMs);
    };
    const onBlock = (payload: Buffer) => {
      const m = parseBlockResponse(payload);
      if (!m.ok || m.value.campaign !== campaign || have.has(m.value.block)) return;
      const b = m.value.block;
      for (let j = 0; j < cpb; j++) {
        const i = b * cpb + j;
        if (i >= leaves.length) break;
        const chunk = m.value.data.subarray(j * chunkSize, (j + 1) * chunkSize);
        if (!hasher.leaf(chunk).equals(leaves[i]!)) return; // refuse the block; the timer asks again
      }
      have.add(b);
      if (have.size === blocks) {
        if (timer) clearTimeout(timer);
        resolveDone();
      }
    };
    client.on('message', (topic, payload) => {
      try {
        onMessage(topic, payload);
      } catch {
        // a bad message is dropped; the timer asks again
      }
    });
    const onMessage = (topic: string, payload: Buffer) => {
      if (topic === topics.announce(PREFIX, group)) {
        const a = parseAnnouncement(payload);
        if (!a.ok || campaign) return;
        campaign = a.value.campaign;
        chunkSize = a.value.chunkSize;
        cpb = a.value.blockSize / chunkSize;
        hasher = new LeafHasher(chunkSize);
        blocks = Math.ceil(a.value.imageSize / a.value.blockSize);
        void client.subscribeAsync(topics.data(PREFIX, campaign), { qos: 0 }).then(() => {
          for (let p = 0; p < a.value.pageCount; p++) {
            void client.publishAsync(
              topics.request(PREFIX, campaign, id),
              Buffer.from(encodePageRequest({ campaign, requestId: rid++, replyTopic: reply, page: p })),
              { qos: 1 },
            );
          }
          leaves = new Array(Math.ceil(a.value.imageSize / chunkSize));
        });
        return;
      }
      const t = messageType(payload);
      if (!t.ok) return;
      if (t.type === 'pageResponse') {
        const m = parsePageResponse(payload);
        if (!m.ok) return;
        for (let k = 0; k < m.value.leaves.length / 32; k++) leaves[m.value.page * 128 + k] = Buffer.from(m.value.leaves.subarray(k * 32, k * 32 + 32));
        if (leaves.filter(Boolean).length === leaves.length) ask();
      } else if (t.type === 'blockResponse') onBlock(payload);
    };
    await client.subscribeAsync([topics.announce(PREFIX, group), reply], { qos: 1 });
    await client.publishAsync(topics.status(PREFIX, id), Buffer.from(encodeStatusEvent({ device: id, state: 'online', group, version: '1.0.0', counter: 1 })), {
      qos: 1,
    });
    return { client, done };
  });
}

/** N protocol clients of `group`; `done` resolves when every client has checked every block. */
export async function lightFleet(url: string, n: number, group: string, timeoutMs = 3000): Promise<{ done: Promise<void>; close(): Promise<void> }> {
  const all: Light[] = [];
  for (let i = 0; i < n; i += 50)
    all.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => lightClient(url, `${group}-l${i + j}`, group, timeoutMs)))));
  return {
    done: Promise.all(all.map((l) => l.done)).then(() => undefined),
    close: async () => {
      await Promise.all(all.map((l) => l.client.endAsync(true)));
    },
  };
}
