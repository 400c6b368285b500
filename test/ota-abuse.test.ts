/**
 * `fwseal serve` against requesters and publishers that lie (issue 11, findings 2, 3 and 10): status
 * events count only from devices that take part in the campaign (SPEC.md §12.9), replies go only to
 * the requesting device's own reply topic (§12.4), and HTTP bodies over the limit get 413 with the
 * JSON error (§12.9). Real mosquitto, raw MQTT clients; codes and metric samples are asserted.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeSha256 } from '../host/hash.js';
import { type IgnoredReason } from '../host/ota/campaigns.js';
import { type OtaServer, type OtaServerOptions } from '../host/ota/server.js';
import { dropFetchRecordsForTest } from '../host/ota/store-sqlite.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { encodeBlockRequest, encodeManifestRequest, encodePageRequest } from '../shared/ota/messages.js';
import { encodeStatusEvent } from '../shared/ota/status.js';
import { rolloutBucket, topics } from '../shared/ota/topics.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { errorOf, eventually, RawDevice } from './support/ota-client.js';
import { createCampaign, metricsOf, sample, TestServers } from './support/ota-harness.js';

const w = standardWorld();
const image = detBytes(40_000, 'ota abuse image');
const manifest = makeManifest(image, { chunkSize: 1024 }); // version 1.4.2, security counter 7
const release = { envelope: makeManifestEnvelope(manifest, [w.R1, w.R2]), image };

let broker: Mosquitto;
let server: OtaServer;
const clients: RawDevice[] = [];

/** The file's servers on fresh data folders (test/support/ota-harness.ts); closed and removed in afterAll. */
const servers = new TestServers({ broker: () => broker.url, trust: w.trust, tag: 'abuse' });
const tempDir = (): string => servers.tempDir();
const startServer = (opts: Partial<OtaServerOptions> = {}): Promise<OtaServer> => servers.start(opts);

async function device(id: string, version: 4 | 5 = 4, prefix = 'fwseal'): Promise<RawDevice> {
  const d = await RawDevice.connect(broker.url, id, { version, prefix });
  clients.push(d);
  return d;
}

/** Devices `prefix-0..n-1` of `group`, reported online and known to `s`. */
async function fleet(s: OtaServer, group: string, n: number, prefix = 'fwseal'): Promise<RawDevice[]> {
  const ds = await Promise.all(Array.from({ length: n }, (_, i) => device(`${group}-${i}`, 4, prefix)));
  for (const d of ds) await d.online(group);
  await eventually(async () => (await s.store.devices(group)).length === n, 10_000, `${n} devices of ${group} known`);
  return ds;
}

const ignoredIn = (metrics: string, reason: IgnoredReason) => sample(metrics, 'fwseal_status_ignored_total', `{reason="${reason}"}`);
const failed = (d: RawDevice, campaign: string) => d.status({ campaign, device: d.id, state: 'failed', code: CODES.TRANSPORT_TIMEOUT });

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
  server = await startServer();
});

afterAll(async () => {
  for (const d of clients) await d.close().catch(() => {});
  await servers.close();
  await broker?.stop();
});

describe('status events count only from devices that take part (SPEC.md §12.9)', () => {
  it('failed from another group, an invented id, a device that never fetched or one outside the waves halts nothing; each is counted by reason', async () => {
    const pool = await fleet(server, 'g-count', 8);
    const other = await device('count-other');
    await other.online('g-elsewhere');
    const ghost = await device('count-ghost'); // never reports online
    await eventually(async () => (await server.store.devices('g-elsewhere')).length === 1);
    const r = await createCampaign(server, 'g-count', release, { waves: [50, 100], abortFailureRate: 0 });
    expect(r.status).toBe(201);
    const id: string = r.body.id;
    const inWave = pool.filter((d) => rolloutBucket(nodeSha256, id, d.id) < r.body.rollout);
    const outside = pool.filter((d) => !inWave.includes(d));
    expect([inWave.length, outside.length]).toEqual([4, 4]);
    const [fetcher, idle] = inWave as [RawDevice, RawDevice];
    const fetchesBefore = await server.store.fetchCount();
    expect((await fetcher.manifest(id, 1)).type).toBe('manifestResponse');
    // Devices of no or another group may be served the manifest (it is no secret); it never makes them count.
    await other.manifest(id, 2);
    await ghost.manifest(id, 3);
    expect((await server.store.fetchCount()) - fetchesBefore).toBe(1);

    const before = await metricsOf(server);
    for (const d of [other, ghost, idle, outside[0]!]) await failed(d, id);
    const reasons: IgnoredReason[] = ['other_group', 'unknown_device', 'not_fetched', 'outside_wave'];
    const after = await eventually(
      async () => {
        const m = await metricsOf(server);
        return reasons.every((x) => ignoredIn(m, x) - ignoredIn(before, x) === 1) ? m : null;
      },
      10_000,
      'four ignored status events',
    );
    expect(ignoredIn(after, 'stale') - ignoredIn(before, 'stale')).toBe(0);
    await server.tick();
    expect((await server.store.campaign(id))!.state).toBe('running');
    expect(await server.store.statuses(id)).toEqual([]);

    // The device that does take part: one failure halts (abortFailureRate 0), so the rule is not vacuous.
    await failed(fetcher, id);
    await eventually(async () => (await server.store.campaign(id))!.state === 'halted', 10_000, 'halted by the counted failure');
    expect((await server.store.statuses(id)).map((s) => [s.device, s.state])).toEqual([[fetcher.id, 'failed']]);
  });

  it('statuses that go backwards and a failed replayed after confirmed change nothing and are counted as stale', async () => {
    const [d] = await fleet(server, 'g-stale', 2);
    const r = await createCampaign(server, 'g-stale', release, { abortFailureRate: 0 });
    const id: string = r.body.id;
    expect((await d!.manifest(id, 1)).type).toBe('manifestResponse');
    const before = await metricsOf(server);
    const send = (state: 'accepted' | 'downloading' | 'confirmed' | 'rejected' | 'failed', extra: object = {}) =>
      d!.status({ campaign: id, device: d!.id, state, ...extra });
    await send('accepted');
    await send('downloading', { done: 5, total: 10 });
    await send('downloading', { done: 3, total: 10 }); // backwards
    await send('accepted'); // backwards
    await send('confirmed');
    await send('failed', { code: CODES.TRANSPORT_TIMEOUT }); // replayed after confirmed
    await send('rejected', { code: CODES.ROLLBACK });
    await send('downloading', { done: 10, total: 10 });
    await eventually(async () => ignoredIn(await metricsOf(server), 'stale') - ignoredIn(before, 'stale') === 5, 10_000, 'five stale events');
    await server.tick();
    expect((await server.store.campaign(id))!.state).toBe('running');
    expect((await server.store.statuses(id)).map((s) => s.state)).toEqual(['confirmed']);
  });

  it('the served manifest is remembered in SQLite: after a restart, two instances on the same data folder count the device', async () => {
    const dir = tempDir();
    const first = await startServer({ dataDir: dir, prefix: 'persist' });
    const [d] = await fleet(first, 'g-persist', 1, 'persist');
    const r = await createCampaign(first, 'g-persist', release, { abortFailureRate: 0 });
    const id: string = r.body.id;
    expect((await d!.manifest(id, 1)).type).toBe('manifestResponse');
    await first.close();
    // Two instances share the subscriptions: whichever gets the event reads the fetch from the file.
    const a = await startServer({ dataDir: dir, prefix: 'persist' });
    await startServer({ dataDir: dir, prefix: 'persist' });
    await d!.status({ campaign: id, device: d!.id, state: 'accepted' });
    await failed(d!, id);
    await eventually(async () => (await a.store.campaign(id))!.state === 'halted', 10_000, 'halted by the remembered device');
  });

  it('a data folder from before the fetch records: a device that already had a row keeps counting', async () => {
    const dir = tempDir();
    const first = await startServer({ dataDir: dir, prefix: 'upgrade' });
    const [d] = await fleet(first, 'g-upgrade', 1, 'upgrade');
    const id: string = (await createCampaign(first, 'g-upgrade', release, { abortFailureRate: 0 })).body.id;
    expect((await d!.manifest(id, 1)).type).toBe('manifestResponse');
    await d!.status({ campaign: id, device: d!.id, state: 'accepted' });
    await eventually(async () => (await first.store.statuses(id)).length === 1);
    await first.close();
    dropFetchRecordsForTest(dir);
    const again = await startServer({ dataDir: dir, prefix: 'upgrade' });
    await failed(d!, id);
    await eventually(async () => (await again.store.campaign(id))!.state === 'halted', 10_000, 'halted by the device of the old folder');
  });

  it('invented ids never grow the store: 1,000 statuses of unknown ids add no row; a new device past maxDevices is ignored (fleet_full)', async () => {
    const s = await startServer({ prefix: 'flood', maxDevices: 5 });
    const r = await createCampaign(s, 'g-flood', release);
    const id: string = r.body.id;
    const attacker = await device('flood-attacker', 4, 'flood');
    for (let i = 0; i < 1000; i++) {
      const ghost = `ghost-${i}`;
      await attacker.raw(topics.status('flood', ghost), encodeStatusEvent({ campaign: id, device: ghost, state: 'failed', code: CODES.ROLLBACK }));
      // An invented id may even be served the manifest (rollout 100 %): nothing is remembered for it.
      if (i % 50 === 0) await attacker.raw(topics.request('flood', id, ghost), encodeManifestRequest({ campaign: id, requestId: i }));
    }
    for (let i = 0; i < 20; i++)
      await attacker.raw(topics.status('flood', `new-${i}`), encodeStatusEvent({ device: `new-${i}`, state: 'online', group: 'g-flood' }));
    const m = await eventually(
      async () => {
        const t = await metricsOf(s);
        return ignoredIn(t, 'unknown_device') === 1000 && ignoredIn(t, 'fleet_full') === 15 ? t : null;
      },
      20_000,
      'every flood event handled',
    );
    expect(sample(m, 'fwseal_devices_seen')).toBe(5);
    expect(await s.store.statuses(id)).toEqual([]);
    expect(await s.store.fetchCount()).toBe(0);
    await s.tick();
    expect((await s.store.campaign(id))!.state).toBe('running');
  });

  it("a device whose online report names the campaign's version and counter counts as confirmed without fetching; its failed does not", async () => {
    const [current, old] = await fleet(server, 'g-current', 2);
    await current!.online('g-current', manifest.version, manifest.securityCounter);
    await eventually(async () => (await server.store.devices('g-current')).find((x) => x.id === current!.id)?.version === manifest.version);
    const r = await createCampaign(server, 'g-current', release, { abortFailureRate: 0 });
    const id: string = r.body.id;
    const before = await metricsOf(server);
    await failed(current!, id);
    await old!.status({ campaign: id, device: old!.id, state: 'confirmed' }); // runs 1.0.0: must fetch to count
    await current!.status({ campaign: id, device: current!.id, state: 'confirmed' });
    await eventually(async () => (await server.store.statuses(id)).length === 1, 10_000, 'the confirmation counted');
    expect((await server.store.statuses(id)).map((s) => [s.device, s.state])).toEqual([[current!.id, 'confirmed']]);
    const after = await eventually(
      async () => {
        const t = await metricsOf(server);
        return ignoredIn(t, 'not_fetched') - ignoredIn(before, 'not_fetched') === 2 ? t : null;
      },
      10_000,
      'two not_fetched',
    );
    expect(ignoredIn(after, 'not_fetched') - ignoredIn(before, 'not_fetched')).toBe(2);
  });
});

describe('replies go only to the reply topic of the device the request topic names (SPEC.md §12.4)', () => {
  let campaign: string;
  beforeAll(async () => {
    const r = await createCampaign(server, 'g-reply', release);
    campaign = r.body.id;
  });

  /** Topics a requester might want the server to publish on instead of its own reply topic. */
  const elsewhere = () => [
    topics.reply('fwseal', 'rt-victim'),
    topics.announce('fwseal', 'g-reply'),
    topics.data('fwseal', campaign),
    topics.status('fwseal', 'rt-victim'),
    topics.request('fwseal', campaign, 'rt-victim'),
    'fwseal/custom/rt-asker',
    'elsewhere/x',
  ];

  async function observer(): Promise<RawDevice> {
    const o = await device('rt-observer');
    await o.subscribe('fwseal/#');
    await o.subscribe('elsewhere/#');
    return o;
  }

  it("MQTT 5: a Response Topic other than the device's own gets REPLY_TOPIC_REFUSED there, with the Correlation Data; nothing reaches the asked topic", async () => {
    const o = await observer();
    const d = await device('rt-asker', 5);
    const before = await metricsOf(server);
    const targets = elsewhere();
    const asks = [
      (rid: number) => encodeManifestRequest({ campaign, requestId: rid }),
      (rid: number) => encodePageRequest({ campaign, requestId: rid, page: 0 }),
      (rid: number) => encodeBlockRequest({ campaign, requestId: rid, ranges: [[0, 2]], multicast: true }),
    ];
    let rid = 100;
    for (const t of targets) {
      for (const ask of asks) {
        const corr = Buffer.from([0, 0, 0, ++rid]);
        await d.request(campaign, ask(rid), { responseTopic: t, correlationData: corr });
        const reply = await d.replyTo(rid);
        expect([reply.topic, errorOf(reply).code, errorOf(reply).requestId]).toEqual([topics.reply('fwseal', 'rt-asker'), CODES.REPLY_TOPIC_REFUSED, rid]);
        expect(reply.correlationData?.equals(corr)).toBe(true);
      }
    }
    // The server publishes in order: once the observer has the last refusal, it has anything sent before it.
    await o.next((m) => m.topic === topics.reply('fwseal', 'rt-asker') && m.type === 'errorReply' && errorOf(m).requestId === rid);
    expect(o.messages.filter((m) => targets.includes(m.topic) && !m.retain)).toEqual([]);
    expect(o.messages.filter((m) => m.topic === topics.reply('fwseal', 'rt-asker') && m.type !== 'errorReply')).toEqual([]);
    const after = await metricsOf(server);
    expect(
      sample(after, 'fwseal_reply_topic_refused_total', '{via="response_topic"}') -
        sample(before, 'fwseal_reply_topic_refused_total', '{via="response_topic"}'),
    ).toBe(targets.length * asks.length);
    expect(sample(after, 'fwseal_block_multicasts_total')).toBe(sample(before, 'fwseal_block_multicasts_total'));
  });

  it("MQTT 3.1.1: a reply topic in the request (key 3) other than the device's own is refused the same way; its own is answered", async () => {
    const o = await observer();
    const d = await device('rt-asker4', 4);
    const before = await metricsOf(server);
    const targets = elsewhere();
    let rid = 200;
    for (const replyTopic of targets) {
      for (const ask of [
        (requestId: number) => encodeManifestRequest({ campaign, requestId, replyTopic }),
        (requestId: number) => encodeBlockRequest({ campaign, requestId, replyTopic, ranges: [[1, 1]], multicast: true }),
        (requestId: number) => encodeManifestRequest({ campaign: 'no-such-campaign', requestId, replyTopic }), // refused before anything else
      ]) {
        await d.request(campaign, ask(++rid));
        const reply = await d.replyTo(rid);
        expect([reply.topic, errorOf(reply).code]).toEqual([topics.reply('fwseal', 'rt-asker4'), CODES.REPLY_TOPIC_REFUSED]);
      }
    }
    await d.request(campaign, encodeManifestRequest({ campaign, requestId: ++rid, replyTopic: topics.reply('fwseal', 'rt-asker4') }));
    expect((await d.replyTo(rid)).type).toBe('manifestResponse');
    await o.next((m) => m.topic === topics.reply('fwseal', 'rt-asker4') && m.type === 'manifestResponse');
    expect(o.messages.filter((m) => targets.includes(m.topic) && !m.retain)).toEqual([]);
    const after = await metricsOf(server);
    expect(sample(after, 'fwseal_reply_topic_refused_total', '{via="payload"}') - sample(before, 'fwseal_reply_topic_refused_total', '{via="payload"}')).toBe(
      targets.length * 3,
    );
    expect(
      sample(after, 'fwseal_error_replies_total', '{code="REPLY_TOPIC_REFUSED"}') -
        sample(before, 'fwseal_error_replies_total', '{code="REPLY_TOPIC_REFUSED"}'),
    ).toBe(targets.length * 3);
  });
});

describe('HTTP bodies over maxApiJsonBytes (SPEC.md §12.9)', () => {
  type Raw = { status: number; body: string };
  /** POST /api/campaigns with a chunked body (no Content-Length) of `chunks`; `end` false leaves it open. */
  function chunked(chunks: Buffer[], end = true, headers: Record<string, string> = {}): Promise<Raw> {
    const { port } = server.address()!;
    return new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, method: 'POST', path: '/api/campaigns', headers: { 'content-type': 'application/json', ...headers } },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => {
            resolve({ status: res.statusCode ?? 0, body });
            req.destroy();
          });
        },
      );
      req.on('error', reject);
      for (const c of chunks) req.write(c);
      if (end) req.end();
    });
  }

  const over = () => Array.from({ length: 5 }, () => Buffer.alloc(LIMITS.maxApiJsonBytes / 4, 0x20));

  it('a chunked body over the limit gets 413 with the JSON error, not a connection reset', async () => {
    const r = await chunked(over());
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'TOO_LARGE', code: CODES.TOO_LARGE });
  });

  it('the 413 comes as soon as the limit is passed, while the body is still arriving (nothing past the limit is kept)', async () => {
    const r = await chunked(over(), false);
    expect([r.status, JSON.parse(r.body).code]).toEqual([413, CODES.TOO_LARGE]);
  });

  it('a Content-Length over the limit gets the same 413 before any of the body is read; a body within it is read as before', async () => {
    const big = await chunked([Buffer.alloc(16, 0x20)], false, { 'content-length': String(LIMITS.maxApiJsonBytes + 1) });
    expect([big.status, JSON.parse(big.body).code]).toEqual([413, CODES.TOO_LARGE]);
    const small = await chunked([Buffer.from('{"group":'), Buffer.from('"g"}')]);
    expect([small.status, JSON.parse(small.body).code]).toEqual([400, CODES.MISSING_FIELD]);
    expect((await fetch(`${server.address()!.url}/healthz`)).status).toBe(200);
  });
});
