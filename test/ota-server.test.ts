/**
 * `fwseal serve` (host/ota/) against a real mosquitto, with raw MQTT clients acting as devices:
 * request serving (SPEC.md §12.2-§12.5), status ingest, waves, operator transitions, the HTTP API,
 * metrics, two instances on one store, and a restart. Every case runs on both stores, SQLite and a
 * real PostgreSQL (test/support/postgres.ts). Codes are asserted, never messages.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier } from '../device/index.js';
import { nodeSha256 } from '../host/hash.js';
import { type MqttSettings } from '../host/ota/mqtt-options.js';
import { blockResponseBytes } from '../host/ota/requests.js';
import { type OtaServer, type OtaServerOptions } from '../host/ota/server.js';
import { toHex } from '../shared/bytes.js';
import { encodeCbor } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import {
  encodeAnnouncement,
  encodeBlockRequest,
  encodeBlockResponse,
  encodeManifestRequest,
  parseBlockResponse,
  parseManifestResponse,
  parsePageResponse,
} from '../shared/ota/messages.js';
import { encodeStatusEvent } from '../shared/ota/status.js';
import { ROLLOUT_ALL, rolloutBucket, topics } from '../shared/ota/topics.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { errorOf, eventually, RawDevice, retainedAnnouncement } from './support/ota-client.js';
import { type Api, api, createCampaign, type ServerState, STORE_KINDS, serverMqtt, TestServers } from './support/ota-harness.js';
import { onePostgres } from './support/postgres.js';

const w = standardWorld();
const verifier = createVerifier({ sha256: nodeSha256 });
// 200 KB in 1 KiB chunks: 2 digest pages, 13 blocks of 16 KiB (the default block size for 1 KiB chunks).
const image = detBytes(200_000, 'ota server image');
const manifest = makeManifest(image, { chunkSize: 1024 });
const envelope = makeManifestEnvelope(manifest, [w.R1, w.R2]);
const BLOCK = 16384;
const BLOCKS = Math.ceil(image.length / BLOCK);

/** One PostgreSQL for the file, started when the postgresql run first needs a database. */
const postgres = onePostgres();
afterAll(async () => {
  await postgres.stop();
});

// Every case runs on both stores (issue 15: one suite, both back ends), each run with a broker and
// servers of its own; on PostgreSQL each server starts on a fresh database unless a case shares one.
describe.each(STORE_KINDS)('fwseal serve on %s', (kind) => {
  let broker: Mosquitto;
  let servers: TestServers;
  /** The main server's state: the second instance of "several instances" shares it. */
  let mainState: ServerState;
  let server: OtaServer;
  const devices: RawDevice[] = [];

  const mqttSettings = (version: 4 | 5 = 5): MqttSettings => serverMqtt(broker.url, version);

  /** A server on fresh state unless `opts.state` names one. */
  const startServer = (opts: Partial<OtaServerOptions> & { state?: ServerState } = {}): Promise<OtaServer> => servers.start(opts);

  async function device(id: string, version: 4 | 5 = 4): Promise<RawDevice> {
    const d = await RawDevice.connect(broker.url, id, { version });
    devices.push(d);
    return d;
  }

  const create = (s: OtaServer, group: string, extra: Record<string, unknown> = {}, env = envelope, img = image): Promise<Api> =>
    createCampaign(s, group, { envelope: env, image: img }, extra);

  beforeAll(async () => {
    broker = await startMosquitto({ persistence: false });
    servers = new TestServers({ broker: () => broker.url, trust: w.trust, kind, postgres, tag: 'ota' });
    mainState = await servers.fresh();
    // A 250 ms multicast window (the server's default is shorter): two askers whose answers are prepared
    // at once on PostgreSQL may come tens of ms apart when the second opens a new pool connection.
    server = await startServer({ state: mainState, coalesceMs: 250 });
  });

  afterAll(async () => {
    for (const d of devices.splice(0)) await d.close().catch(() => {});
    await servers?.close();
    await broker?.stop();
  });

  describe('request serving', () => {
    let campaign: string;
    beforeAll(async () => {
      const r = await create(server, 'g-serve');
      expect(r.status).toBe(201);
      campaign = r.body.id;
    });

    it('announces the campaign (retained) and serves manifest, pages and blocks whose bytes verify against the manifest', async () => {
      const a = await retainedAnnouncement(broker.url, 'g-serve');
      expect(a).toMatchObject({
        campaign,
        imageSize: image.length,
        chunkSize: 1024,
        blockSize: BLOCK,
        pageCount: 2,
        rollout: ROLLOUT_ALL,
        manifestSize: envelope.length,
      });
      expect(toHex(a!.manifestDigest)).toBe(toHex(nodeSha256(envelope)));

      const d = await device('d-serve');
      const m = parseManifestResponse((await d.manifest(campaign, 1)).payload);
      expect(m.ok).toBe(true);
      const checked = verifier.verifyManifest(m.ok ? m.value.manifest : new Uint8Array(), w.trust, { deviceClass: 'acme-gw', counter: 0 });
      expect(checked.ok).toBe(true);
      if (!checked.ok) return;
      const iv = verifier.imageVerifier(checked.manifest);
      for (let p = 0; p < 2; p++) {
        const pr = parsePageResponse((await d.page(campaign, 10 + p, p)).payload);
        expect(pr.ok && iv.addDigestPage(p, pr.value.leaves, pr.value.proof).ok).toBe(true);
      }
      const replies = await d.blocks(campaign, 20, [[0, BLOCKS]]);
      expect(replies).toHaveLength(BLOCKS);
      const parsed = replies
        .map((r) => parseBlockResponse(r.payload))
        .map((r) => (r.ok ? r.value : null)!)
        .sort((x, y) => x.block - y.block);
      expect(parsed.map((b) => b.block)).toEqual([...Array(BLOCKS).keys()]);
      for (const b of parsed) expect(iv.update(b.data).ok).toBe(true);
      expect(iv.finish().ok).toBe(true);
    });

    it('multicast: a block two devices ask for within the window goes out once on the data topic; a lone asker gets a plain reply', async () => {
      const a = await device('d-mc-a');
      const b = await device('d-mc-b');
      const c = await device('d-mc-c');
      for (const d of [a, b, c]) await d.subscribe(topics.data('fwseal', campaign));
      const before = (await api(server, 'GET', '/metrics')).body as string;
      const served = (text: string, name: string) => Number(text.match(new RegExp(`^${name} (\\d+)`, 'm'))?.[1] ?? NaN);
      const ask = (d: RawDevice, rid: number, block: number) =>
        d.request(campaign, encodeBlockRequest({ campaign, requestId: rid, ranges: [[block, 1]], multicast: true }));
      await Promise.all([ask(a, 501, 3), ask(b, 502, 3)]);
      const onData = (d: RawDevice) => d.next((m) => m.topic === topics.data('fwseal', campaign) && m.type === 'blockResponse');
      const [ma, mb, mc] = await Promise.all([onData(a), onData(b), onData(c)]);
      for (const m of [ma, mb, mc]) {
        const r = parseBlockResponse(m.payload);
        expect(r.ok && r.value.block).toBe(3);
        expect(r.ok && Buffer.compare(Buffer.from(r.value.data), Buffer.from(image.subarray(3 * BLOCK, 4 * BLOCK)))).toBe(0);
      }
      // A lone asker (flag set) is answered on its own reply topic with its request id, not on the data topic.
      await ask(c, 503, 5);
      const lone = parseBlockResponse((await c.replyTo(503, 'blockResponse')).payload);
      expect(lone.ok && lone.value.block).toBe(5);
      const after = (await api(server, 'GET', '/metrics')).body as string;
      expect(served(after, 'fwseal_block_multicasts_total') - served(before, 'fwseal_block_multicasts_total')).toBe(1);
      expect(served(after, 'fwseal_blocks_served_total') - served(before, 'fwseal_blocks_served_total')).toBe(2);
      expect(a.messages.some((m) => m.topic === topics.reply('fwseal', 'd-mc-a') && m.type === 'blockResponse')).toBe(false);
    });

    it('multicast: askers who trickle in, each within the window of the one before, share one copy; the hold ends after 25 windows (at most 1 s)', async () => {
      // A 300 ms window: each asker comes 100 ms after the previous one, six of them (500 ms > the
      // window, < the 1 s cap). Margins for a loaded machine (a late timer, a slow broker): each gap may
      // stretch by 200 ms, and all of them together by 500 ms, and the askers still share one copy.
      const herd = await startServer({ prefix: 'herd', coalesceMs: 300 });
      const r = await create(herd, 'g-herd');
      expect(r.status).toBe(201);
      const id = r.body.id as string;
      const devs: RawDevice[] = [];
      for (let i = 0; i < 6; i++) {
        const d = await RawDevice.connect(broker.url, `d-herd-${i}`, { prefix: 'herd' });
        devices.push(d);
        devs.push(d);
        await d.subscribe(topics.data('herd', id));
      }
      const metric = async (name: string) =>
        Number(((await api(herd, 'GET', '/metrics')).body as string).match(new RegExp(`^${name} (\\d+)`, 'm'))?.[1] ?? NaN);
      const ask = (d: RawDevice, rid: number, block: number) =>
        d.request(id, encodeBlockRequest({ campaign: id, requestId: rid, ranges: [[block, 1]], multicast: true }));
      const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));
      for (let i = 0; i < devs.length; i++) {
        await ask(devs[i]!, 600 + i, 2);
        if (i < devs.length - 1) await sleep(100);
      }
      const onData = (d: RawDevice, block: number) =>
        d.next(
          (m) =>
            m.topic === topics.data('herd', id) &&
            m.type === 'blockResponse' &&
            (() => {
              const b = parseBlockResponse(m.payload);
              return b.ok && b.value.block === block;
            })(),
        );
      await Promise.all(devs.map((d) => onData(d, 2)));
      expect(await metric('fwseal_block_multicasts_total')).toBe(1);
      expect(await metric('fwseal_blocks_served_total')).toBe(1);
      for (const d of devs) expect(d.messages.some((m) => m.topic === topics.reply('herd', d.id) && m.type === 'blockResponse')).toBe(false);

      // Two devices asking for block 4 in turn every 100 ms for 1.6 s would hold it forever without
      // the cap; the first copy goes out while they are still asking (25 x 300 ms > 1 s: the 1 s cap).
      let sentAfterFirstCopy = 0;
      let gotCopy = false;
      void onData(devs[0]!, 4).then(() => {
        gotCopy = true;
      });
      for (let k = 0; k < 17; k++) {
        await ask(devs[k % 2]!, 700 + k, 4);
        if (gotCopy) sentAfterFirstCopy++;
        await sleep(100);
      }
      expect(gotCopy).toBe(true);
      expect(sentAfterFirstCopy).toBeGreaterThan(0);
    });

    it('the block response fast path encodes exactly what encodeBlockResponse does', () => {
      for (const data of [
        new Uint8Array(1),
        detBytes(23, 'b23'),
        detBytes(24, 'b24'),
        detBytes(255, 'b255'),
        detBytes(256, 'b256'),
        detBytes(BLOCK, 'blk'),
        new Uint8Array(LIMITS.maxBlockBytes),
      ]) {
        const m = { campaign: 'c'.repeat(64), requestId: LIMITS.maxRequestId, block: 123456, data };
        expect(toHex(blockResponseBytes(m))).toBe(toHex(encodeBlockResponse(m)));
      }
    });

    it("MQTT 5: replies on the device's reply topic with the Correlation Data; 3.1.1: a key 3 naming that topic is answered there", async () => {
      const d5 = await device('d-five', 5);
      const corr = Buffer.from([0, 0, 0, 42]);
      await d5.request(campaign, encodeManifestRequest({ campaign, requestId: 42 }), {
        responseTopic: topics.reply('fwseal', 'd-five'),
        correlationData: corr,
      });
      const r5 = await d5.replyTo(42);
      expect([r5.topic, r5.type]).toEqual([topics.reply('fwseal', 'd-five'), 'manifestResponse']);
      expect(r5.correlationData?.equals(corr)).toBe(true);
      await d5.request(campaign, encodeManifestRequest({ campaign, requestId: 43 })); // no Response Topic: the same topic
      expect((await d5.replyTo(43)).type).toBe('manifestResponse');

      const d4 = await device('d-four', 4);
      await d4.request(campaign, encodeManifestRequest({ campaign, requestId: 7, replyTopic: topics.reply('fwseal', 'd-four') }));
      const r4 = await d4.replyTo(7);
      expect([r4.topic, r4.type]).toEqual([topics.reply('fwseal', 'd-four'), 'manifestResponse']);
      // Any other reply topic is refused: test/ota-abuse.test.ts.
    });

    it('answers every error with its code: UNKNOWN_CAMPAIGN, UNKNOWN_BLOCK with the index, BAD_REQUEST with the ids it could read', async () => {
      const d = await device('d-errors');
      expect(errorOf(await d.manifest('no-such-campaign', 1)).code).toBe(CODES.UNKNOWN_CAMPAIGN);
      const [beyond] = await d.blocks(campaign, 2, [[BLOCKS - 1, 3]]);
      expect(errorOf(beyond)).toMatchObject({ code: CODES.UNKNOWN_BLOCK, index: BLOCKS, requestId: 2, campaign });
      expect(errorOf(await d.page(campaign, 3, 2))).toMatchObject({ code: CODES.UNKNOWN_BLOCK, index: 2 });
      // A manifest request with an unknown key: does not parse, but its campaign and request id are readable.
      const extra = encodeStatusEvent({ campaign, device: 'd-errors', state: 'accepted' }); // wrong type on a request topic
      await d.request(campaign, extra);
      const bad1 = errorOf(await d.next((m) => m.type === 'errorReply' && errorOf(m).code === CODES.BAD_REQUEST && errorOf(m).campaign === campaign));
      expect(bad1.requestId).toBeUndefined();
      const withKey = new Map<number, unknown>([
        [0, 2],
        [1, campaign],
        [2, 77],
        [99, 1],
      ]);
      await d.request(campaign, encodeCbor(withKey as never));
      expect(errorOf(await d.replyTo(77))).toMatchObject({ code: CODES.BAD_REQUEST, campaign, requestId: 77 });
      // The campaign in the payload must be the one in the topic.
      await d.request(campaign, encodeManifestRequest({ campaign: 'other', requestId: 78 }));
      expect(errorOf(await d.replyTo(78)).code).toBe(CODES.BAD_REQUEST);
    });

    it('sheds load with SERVER_BUSY when too many requests are queued', async () => {
      const busy = await startServer({ prefix: 'busy', maxQueued: 0 });
      const d = await RawDevice.connect(broker.url, 'd-busy', { prefix: 'busy' });
      devices.push(d);
      await d.request('any', encodeManifestRequest({ campaign: 'any', requestId: 5 }));
      expect(errorOf(await d.replyTo(5))).toMatchObject({ code: CODES.SERVER_BUSY, campaign: 'any', requestId: 5 });
      expect((await api(busy, 'GET', '/metrics')).body).toMatch(/fwseal_error_replies_total\{code="SERVER_BUSY"\} 1/);
    });

    it('with --mqtt-version 4 (plain subscriptions) a single instance serves the same way', async () => {
      const plain = await startServer({ prefix: 'plain', mqtt: mqttSettings(4) });
      const r = await create(plain, 'g-plain');
      expect(r.status).toBe(201);
      const d = await RawDevice.connect(broker.url, 'd-plain', { prefix: 'plain' });
      devices.push(d);
      expect((await d.manifest(r.body.id, 1)).topic).toBe(topics.reply('plain', 'd-plain'));
    });

    it('counts malformed, oversize and wrong-type payloads on request and status topics and keeps answering', async () => {
      const d = await device('d-junk');
      const before = (await api(server, 'GET', '/metrics')).body as string;
      const count = (text: string, kind: string) => Number(text.match(new RegExp(`fwseal_malformed_messages_total\\{kind="${kind}"\\} (\\d+)`))?.[1] ?? 0);
      const req = topics.request('fwseal', campaign, 'd-junk');
      const status = topics.status('fwseal', 'd-junk');
      await d.raw(req, 'not cbor at all');
      await d.raw(req, new Uint8Array(LIMITS.maxOtaMessageBytes + 1));
      await d.raw(
        req,
        encodeAnnouncement({
          campaign,
          manifestDigest: new Uint8Array(32),
          manifestSize: 1,
          imageSize: 1,
          chunkSize: 512,
          blockSize: 512,
          pageCount: 1,
          rollout: 0,
        }),
      );
      await d.raw(status, new Uint8Array([0xff, 0x00, 0x13]));
      await d.raw(status, new Uint8Array(LIMITS.maxOtaMessageBytes + 1));
      await d.raw(status, encodeManifestRequest({ campaign, requestId: 1 }));
      await d.raw(status, encodeStatusEvent({ campaign, device: 'someone-else', state: 'accepted' }));
      await d.raw('fwseal/device/d-junk/status/extra', 'x'); // not subscribed: never reaches the server
      const after = await eventually(async () => {
        const t = (await api(server, 'GET', '/metrics')).body as string;
        return count(t, 'status') - count(before, 'status') >= 3 && count(t, 'oversize') - count(before, 'oversize') >= 2 ? t : null;
      });
      expect(count(after, 'request') - count(before, 'request')).toBe(2);
      expect(count(after, 'oversize') - count(before, 'oversize')).toBe(2);
      expect(count(after, 'status') - count(before, 'status')).toBe(3);
      expect(parseManifestResponse((await d.manifest(campaign, 99)).payload).ok).toBe(true);
    });
  });

  describe('status ingest, waves and operator transitions', () => {
    it('wave 1 admits exactly ceil(10% of 20) devices; completing them opens the next wave; the last completes the campaign', async () => {
      const group = 'g-waves';
      const fleet = await Promise.all(Array.from({ length: 20 }, (_, i) => device(`w-${i}`)));
      for (const d of fleet) await d.online(group, '1.0.0', 6);
      await eventually(async () => (await api(server, 'GET', '/api/devices')).body.devices.filter((x: any) => x.group === group).length === 20);
      const r = await create(server, group, { waves: [10, 50, 100] });
      expect(r.status).toBe(201);
      const id: string = r.body.id;
      expect(r.body.counts).toMatchObject({ known: 20, eligible: 2, waiting: 2 });
      const inWave = (rollout: number) => fleet.filter((d) => rolloutBucket(nodeSha256, id, d.id) < rollout);
      expect(inWave(r.body.rollout)).toHaveLength(2);
      expect((await retainedAnnouncement(broker.url, group))?.rollout).toBe(r.body.rollout);

      let rid = 1000;
      for (const d of fleet) {
        const reply = await d.manifest(id, ++rid);
        if (inWave(r.body.rollout).includes(d)) expect(reply.type).toBe('manifestResponse');
        else expect(errorOf(reply).code).toBe(CODES.CAMPAIGN_INACTIVE);
      }
      const finish = async (ds: RawDevice[]) => {
        for (const d of ds) {
          // A status counts only from a device the server served the manifest (SPEC.md §12.9).
          expect((await d.manifest(id, ++rid)).type).toBe('manifestResponse');
          await d.status({ campaign: id, device: d.id, state: 'accepted' });
          await d.status({ campaign: id, device: d.id, state: 'downloading', done: 5, total: 13 });
          await d.status({ campaign: id, device: d.id, state: 'downloading', done: 3, total: 13 }); // late: ignored
          await d.status({ campaign: id, device: d.id, state: 'installed' });
          await d.status({ campaign: id, device: d.id, state: 'confirmed' });
          await d.status({ campaign: id, device: d.id, state: 'downloading', done: 13, total: 13 }); // redelivered: ignored
        }
      };
      const first = inWave(r.body.rollout);
      await finish(first);
      const w2 = await eventually(async () => {
        const x = (await api(server, 'GET', `/api/campaigns/${id}`)).body;
        return x.wave === 2 ? x : null;
      });
      expect(w2.counts).toMatchObject({ eligible: 10, confirmed: 2, downloading: 0 });
      expect(w2.devices.filter((x: any) => x.state === 'confirmed')).toHaveLength(2);
      await finish(inWave(w2.rollout).filter((d) => !first.includes(d)));
      const w3 = await eventually(async () => {
        const x = (await api(server, 'GET', `/api/campaigns/${id}`)).body;
        return x.wave === 3 ? x : null;
      });
      expect(w3.rollout).toBe(ROLLOUT_ALL);
      await finish(fleet.filter((d) => !inWave(w2.rollout).includes(d)));
      const done = await eventually(async () => {
        const x = (await api(server, 'GET', `/api/campaigns/${id}`)).body;
        return x.state === 'completed' ? x : null;
      });
      expect(done.counts).toMatchObject({ confirmed: 20, failed: 0, rejected: 0 });
      expect(done.failureRate).toBe(0);
      // Completed campaigns are still announced and served.
      expect((await retainedAnnouncement(broker.url, group))?.rollout).toBe(ROLLOUT_ALL);
      const metrics = (await api(server, 'GET', '/metrics')).body as string;
      expect(metrics).toContain(`fwseal_campaign_devices{campaign="${id}",state="confirmed"} 20`);
    });

    it('halts when the failure rate passes the threshold; resume overrides it', async () => {
      const group = 'g-halt';
      const fleet = await Promise.all(Array.from({ length: 6 }, (_, i) => device(`h-${i}`)));
      for (const d of fleet) await d.online(group);
      await eventually(async () => (await api(server, 'GET', '/api/devices')).body.devices.filter((x: any) => x.group === group).length === 6);
      const r = await create(server, group, { abortFailureRate: 0.2 });
      const id: string = r.body.id;
      for (const [i, d] of fleet.slice(0, 4).entries()) expect((await d.manifest(id, 100 + i)).type).toBe('manifestResponse');
      for (const d of fleet.slice(0, 3)) await d.status({ campaign: id, device: d.id, state: 'confirmed' });
      await fleet[3].status({ campaign: id, device: fleet[3].id, state: 'rejected', code: CODES.ROLLBACK });
      const halted = await eventually(async () => {
        const x = (await api(server, 'GET', `/api/campaigns/${id}`)).body;
        return x.state === 'halted' ? x : null;
      });
      expect(halted.failureRate).toBeCloseTo(0.25);
      // The engine's announcement follows the state change.
      await eventually(async () => (await retainedAnnouncement(broker.url, group))?.rollout === 0, 10_000, 'rollout 0 announced');
      expect(errorOf(await fleet[4].manifest(id, 1)).code).toBe(CODES.CAMPAIGN_INACTIVE);
      const metrics = (await api(server, 'GET', '/metrics')).body as string;
      expect(metrics).toMatch(/fwseal_rejections\{code="ROLLBACK"\} 1/);
      const resumed = await api(server, 'POST', `/api/campaigns/${id}/resume`);
      expect(resumed.body.state).toBe('running');
      expect((await retainedAnnouncement(broker.url, group))?.rollout).toBe(ROLLOUT_ALL);
      expect((await fleet[4].manifest(id, 2)).type).toBe('manifestResponse');
    });

    it('pause, resume and abort: announcement, replies and invalid transitions (409)', async () => {
      const group = 'g-ops';
      const r = await create(server, group);
      const id: string = r.body.id;
      const d = await device('ops-1');
      expect((await api(server, 'POST', `/api/campaigns/${id}/resume`)).status).toBe(409);
      expect((await api(server, 'POST', `/api/campaigns/${id}/pause`)).body.state).toBe('paused');
      expect((await retainedAnnouncement(broker.url, group))?.rollout).toBe(0);
      expect(errorOf(await d.manifest(id, 1)).code).toBe(CODES.CAMPAIGN_INACTIVE);
      expect((await api(server, 'POST', `/api/campaigns/${id}/resume`)).body.state).toBe('running');
      expect((await retainedAnnouncement(broker.url, group))?.rollout).toBe(ROLLOUT_ALL);
      expect((await d.manifest(id, 2)).type).toBe('manifestResponse');
      // One active campaign per group.
      expect((await create(server, group)).status).toBe(409);
      expect((await api(server, 'POST', `/api/campaigns/${id}/abort`)).body.state).toBe('aborted');
      expect(await retainedAnnouncement(broker.url, group)).toBeNull();
      expect(errorOf(await d.manifest(id, 3)).code).toBe(CODES.UNKNOWN_CAMPAIGN);
      expect((await api(server, 'POST', `/api/campaigns/${id}/abort`)).body.code).toBe(CODES.CONFLICT);
      expect((await api(server, 'POST', `/api/campaigns/${id}/pause`)).status).toBe(409);
      expect((await api(server, 'POST', '/api/campaigns/nope/pause')).status).toBe(404);
      // The group is free again.
      expect((await create(server, group)).status).toBe(201);
    });
  });

  describe('HTTP API', () => {
    it('refuses a manifest that does not verify (422 with the verifier code), an image that does not match, bad uploads', async () => {
      const weak = makeManifestEnvelope(manifest, [w.R1]);
      const r1 = await create(server, 'g-refuse', {}, weak);
      expect(r1.status).toBe(422);
      expect(r1.body).toMatchObject({ error: 'THRESHOLD_NOT_MET', code: CODES.THRESHOLD_NOT_MET });
      const other = detBytes(image.length, 'another image');
      const r2 = await create(server, 'g-refuse', {}, envelope, other);
      expect(r2.status).toBe(422);
      expect(r2.body.code).toBe(CODES.MERKLE_ROOT_MISMATCH);
      const r3 = await create(server, 'g-refuse', {}, envelope, image.subarray(0, 100_000));
      expect(r3.body.code).toBe(CODES.IMAGE_TOO_SHORT);
      const longer = await create(server, 'g-refuse', {}, envelope, Buffer.concat([image, Buffer.of(0)]));
      expect(longer.status).toBe(422);
      expect(longer.body.code).toBe(CODES.IMAGE_TOO_LONG);
      const r4 = await api(server, 'POST', '/api/campaigns', { manifest: Buffer.from(envelope).toString('base64'), image: 'ab'.repeat(32), group: 'g-refuse' });
      expect(r4.status).toBe(404);
      const r5 = await api(server, 'PUT', `/api/images/${'00'.repeat(32)}`, image);
      expect(r5.body).toMatchObject({ error: 'BAD_VALUE', code: CODES.BAD_VALUE });
      const r6 = await api(server, 'POST', '/api/campaigns', { manifest: 'not base64!', image: 'ab'.repeat(32), group: 'g-refuse' });
      expect(r6.status).toBe(400);
      const r7 = await create(server, 'g-refuse', { waves: [50, 90] });
      expect(r7.status).toBe(400);
      const r8 = await create(server, 'g-refuse', { blockSize: 3000 });
      expect(r8.body.code).toBe(CODES.BAD_VALUE);
      const untrusted = makeManifestEnvelope(manifest, [w.A, w.B]);
      expect((await create(server, 'g-refuse', {}, untrusted)).body.code).toBe(CODES.THRESHOLD_NOT_MET);
      expect((await api(server, 'GET', '/api/campaigns')).body.campaigns.some((c: any) => c.group === 'g-refuse')).toBe(false);
    });

    it('/metrics is Prometheus text; /healthz answers; the token guards /api only', async () => {
      const text = (await api(server, 'GET', '/metrics')).body as string;
      for (const line of text.trim().split('\n')) {
        // Ours (fwseal_) and the process's (process_, nodejs_: prom-client's defaults); a value is a float, NaN or ±Inf (Go's ParseFloat, as Prometheus reads it).
        if (line.startsWith('#')) expect(line).toMatch(/^# (HELP|TYPE) (fwseal|process|nodejs)_[a-z0-9_]+ .+$/);
        else expect(line).toMatch(/^(fwseal|process|nodejs)_[a-z0-9_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+|NaN|Nan|[+-]Inf)$/);
      }
      expect(text).toMatch(/fwseal_mqtt_connected 1/);
      expect(Number(text.match(/fwseal_blocks_served_total (\d+)/)?.[1])).toBeGreaterThanOrEqual(BLOCKS);
      expect(Number(text.match(/fwseal_block_latency_seconds_count (\d+)/)?.[1])).toBeGreaterThan(0);
      expect(Number(text.match(/fwseal_devices_seen (\d+)/)?.[1])).toBeGreaterThanOrEqual(26);
      expect((await api(server, 'GET', '/healthz')).body).toMatchObject({ ok: true, mqtt: true });

      const guarded = await startServer({ prefix: 'guarded', token: 's3cret-token' });
      expect((await api(guarded, 'GET', '/api/campaigns')).body).toMatchObject({ code: CODES.UNAUTHORIZED });
      expect((await api(guarded, 'GET', '/api/campaigns', undefined, { authorization: 'Bearer wrong' })).status).toBe(401);
      expect((await api(guarded, 'GET', '/api/campaigns', undefined, { authorization: 'Bearer s3cret-token' })).status).toBe(200);
      expect((await api(guarded, 'GET', '/metrics')).status).toBe(200);
    });
  });

  describe('persistence and several instances', () => {
    it('keeps its state in the store the run names: SQLite in the data folder; PostgreSQL in the database, no SQLite file', async () => {
      const id: string = (await create(server, 'g-where')).body.id;
      expect(existsSync(join(mainState.dataDir, 'fwseal.db'))).toBe(kind === 'sqlite');
      if (mainState.store?.kind !== 'postgres') return;
      const db = await (await postgres.get()).client(mainState.store.url);
      try {
        expect((await db.query('SELECT grp FROM campaigns WHERE id = $1', [id])).rows).toEqual([{ grp: 'g-where' }]);
      } finally {
        await db.end();
      }
    });

    it('two instances on one broker and one store (SQLite: one folder; PostgreSQL: one database, a folder each) answer each of 200 requests exactly once', async () => {
      const r = await create(server, 'g-multi');
      const id: string = r.body.id;
      const second = await startServer({ state: servers.another(mainState) }); // same store, same prefix: a shared subscription
      const before = server.metrics.blocksServed + second.metrics.blocksServed;
      const d = await device('d-multi');
      await Promise.all(
        Array.from({ length: 200 }, (_, i) => d.request(id, encodeBlockRequest({ campaign: id, requestId: 5000 + i, ranges: [[i % BLOCKS, 1]] }))),
      );
      await eventually(() => d.messages.filter((m) => m.type === 'blockResponse').length >= 200, 20_000, '200 replies');
      const ids = d.messages
        .filter((m) => m.type === 'blockResponse')
        .map((m) => {
          const p = parseBlockResponse(m.payload);
          return p.ok ? p.value.requestId : -1;
        });
      expect(new Set(ids).size).toBe(200);
      await eventually(() => server.metrics.blocksServed + second.metrics.blocksServed - before >= 200);
      expect(server.metrics.blocksServed + second.metrics.blocksServed - before).toBe(200);
      expect(d.messages.filter((m) => m.type === 'blockResponse')).toHaveLength(200);
      expect(second.metrics.blocksServed).toBeGreaterThan(0);
      // The second instance sees campaigns the first created (one SQLite file, or one database).
      expect((await api(second, 'GET', `/api/campaigns/${id}`)).body.id).toBe(id);
      await second.close();
    });

    it('a restart on the same store (PostgreSQL: from a new folder, as on another machine) keeps campaigns and device states; the announcement is republished', async () => {
      const state = await servers.fresh();
      let s = await startServer({ state, prefix: 'restart' });
      const created = await create(s, 'g-restart');
      const id: string = created.body.id;
      const d = await RawDevice.connect(broker.url, 'r-1', { prefix: 'restart' });
      devices.push(d);
      await d.online('g-restart', '1.0.0', 3);
      await eventually(async () => (await s.store.devices('g-restart')).length === 1);
      expect((await d.manifest(id, 50)).type).toBe('manifestResponse');
      await d.status({ campaign: id, device: 'r-1', state: 'downloading', done: 4, total: 13 });
      await eventually(async () => (await api(s, 'GET', `/api/campaigns/${id}`)).body.counts.downloading === 1);
      await s.close();
      // Clear the retained announcement: the restarted server must publish it again.
      await d.client.publishAsync(topics.announce('restart', 'g-restart'), '', { qos: 1, retain: true });
      s = await startServer({ state: servers.another(state), prefix: 'restart' });
      const again = (await api(s, 'GET', `/api/campaigns/${id}`)).body;
      expect(again).toMatchObject({ id, state: 'running', group: 'g-restart' });
      expect(again.devices).toEqual([expect.objectContaining({ id: 'r-1', state: 'downloading', done: 4, total: 13 })]);
      expect((await api(s, 'GET', '/api/devices')).body.devices).toEqual([
        expect.objectContaining({ id: 'r-1', group: 'g-restart', version: '1.0.0', counter: 3 }),
      ]);
      expect((await retainedAnnouncement(broker.url, 'g-restart', 'restart'))?.campaign).toBe(id);
      expect((await d.manifest(id, 1)).type).toBe('manifestResponse');
    });

    it('after a broker restart without persistence it reconnects, resubscribes and republishes the announcements', async () => {
      const r = await create(server, 'g-bounce');
      const id: string = r.body.id;
      expect((await retainedAnnouncement(broker.url, 'g-bounce'))?.campaign).toBe(id);
      await broker.kill();
      await broker.start();
      await eventually(async () => (await retainedAnnouncement(broker.url, 'g-bounce').catch(() => null))?.campaign === id, 15_000, 'announcement republished');
      expect((await api(server, 'GET', '/metrics')).body).toMatch(/fwseal_mqtt_connected 1/);
      const d = await device('d-bounce');
      expect((await d.manifest(id, 1)).type).toBe('manifestResponse');
    });
  });
});
