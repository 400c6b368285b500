/**
 * The SLIs at their source (issue 16 item 1; SPEC.md §12.9 "Metrics", §12.2 keys 15–17, §14,
 * host signing). The status keys devices report their verify times and refusals in; what a
 * counted event adds to /metrics (and an ignored one does not); the store's first-seen release kept
 * across an upgrade of an older SQLite folder and PostgreSQL database; then a real `fwseal serve`
 * over mosquitto with real device clients: a campaign that completes, a device that refuses a
 * manifest, a create refused for its signatures, an operator's pause, a rogue root announcement the
 * devices refuse, a revocation that halts every campaign, and the scrape: every metric of the
 * contract with the counts of what happened, and `promtool check metrics` silent. Last, `fwseal sign
 * --metrics-file`, the textfile collector's file, also checked by promtool.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier } from '../device/index.js';
import { nodeSha256 } from '../host/hash.js';
import { OtaDevice } from '../host/ota/device-client.js';
import { Metrics } from '../host/ota/metrics.js';
import { fwsealVersion } from '../host/ota/metrics-prom.js';
import { OtaServer } from '../host/ota/server.js';
import { type OtaStore, openStore } from '../host/ota/store.js';
import { toHex } from '../shared/bytes.js';
import { encodeCbor } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { parseEnvelope } from '../shared/cose.js';
import { encodeRootAnnouncement } from '../shared/ota/root.js';
import { encodeStatusEvent, MAX_REPORTED_MS, parseStatusEvent, STATUS_STATES, type StatusEvent } from '../shared/ota/status.js';
import { topics } from '../shared/ota/topics.js';
import { type CliWorld, expectOk, expectUsage, makeCliWorld } from './support/cli-world.js';
import { makeRevocations, makeTrust, signWith } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually } from './support/ota-client.js';
import { api, createCampaign, metricsOf, sample, serverMqtt } from './support/ota-harness.js';
import { otaWorld } from './support/ota-responder.js';
import { onePostgres } from './support/postgres.js';

/** `promtool check metrics` (Debian package prometheus) on `text`: its exit status and everything it printed. */
function promtool(text: string): { status: number | null; output: string } {
  const r = spawnSync('/usr/bin/promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

const tempDirs: string[] = [];
const tempDir = (prefix: string) => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

describe('status event keys 15–17 (SPEC.md §12.2): verify times and refusal stage', () => {
  const state = (s: StatusEvent['state']) => STATUS_STATES.indexOf(s);
  /** A status event as a raw map (keys 0, 1, 4, 5 and `more`), to send what the encoder would refuse. */
  const raw = (s: StatusEvent['state'], more: [number, unknown][] = [], campaign = true) =>
    encodeCbor(new Map<number, never>([[0, 9], ...(campaign ? [[1, 'c1']] : []), [4, 'd1'], [5, state(s)], ...more] as [number, never][]));

  it('round-trip: manifest time with accepted and rejected, image time with installed and failed, a stage with every code', () => {
    const events: StatusEvent[] = [
      { campaign: 'c1', device: 'd1', state: 'accepted', manifestMs: 12 },
      { campaign: 'c1', device: 'd1', state: 'rejected', code: CODES.ROLLBACK, manifestMs: 0, stage: 'manifest' },
      { campaign: 'c1', device: 'd1', state: 'installed', imageMs: MAX_REPORTED_MS },
      { campaign: 'c1', device: 'd1', state: 'failed', code: CODES.CHUNK_DIGEST_MISMATCH, imageMs: 7, stage: 'image' },
      { campaign: 'c1', device: 'd1', state: 'failed', code: CODES.BOOT_IMAGE_INVALID, stage: 'install' },
      { device: 'd1', state: 'online', group: 'g', code: CODES.TRUST_THRESHOLD_NOT_MET, stage: 'trust', trustVersion: 1 },
      { device: 'd1', state: 'online', group: 'g', code: CODES.REVOCATION_THRESHOLD_NOT_MET, stage: 'revocation' },
    ];
    for (const e of events) expect(parseStatusEvent(encodeStatusEvent(e))).toMatchObject({ ok: true, value: e });
  });

  it('an event of an older device, without the keys, parses as before', () => {
    const p = parseStatusEvent(raw('rejected', [[8, CODES.ROLLBACK]]));
    expect(p.ok && p.value).toEqual({ campaign: 'c1', device: 'd1', state: 'rejected', code: CODES.ROLLBACK });
  });

  it('each key only where its state measures it: BAD_VALUE elsewhere, out of range, or a stage without a code', () => {
    const code = (bytes: Uint8Array) => parseStatusEvent(bytes).code;
    expect(
      code(
        raw('downloading', [
          [6, 1],
          [7, 2],
          [15, 3],
        ]),
      ),
    ).toBe(CODES.BAD_VALUE); // manifest time while downloading
    expect(code(raw('installed', [[15, 3]]))).toBe(CODES.BAD_VALUE);
    expect(code(raw('accepted', [[16, 3]]))).toBe(CODES.BAD_VALUE); // image time before any image
    expect(code(raw('confirmed', [[17, 0]]))).toBe(CODES.BAD_VALUE); // a stage without a code
    expect(
      code(
        raw('failed', [
          [8, 402],
          [17, 5],
        ]),
      ),
    ).toBe(CODES.BAD_VALUE); // no sixth stage
    expect(code(raw('accepted', [[15, 2 ** 32]]))).toBe(CODES.BAD_VALUE);
    expect(code(raw('accepted', [[15, '3']]))).toBe(CODES.WRONG_TYPE);
    expect(code(raw('accepted', [[15, MAX_REPORTED_MS]]))).toBe(CODES.OK);
  });

  it('online carries a code only with the stage of a refused trust bundle or list', () => {
    const online = (more: [number, unknown][]) => parseStatusEvent(raw('online', [[9, 'g'], ...more], false)).code;
    expect(
      online([
        [8, 202],
        [17, 3],
      ]),
    ).toBe(CODES.OK);
    expect(
      online([
        [8, 204],
        [17, 4],
      ]),
    ).toBe(CODES.OK);
    expect(online([[8, 202]])).toBe(CODES.BAD_VALUE); // as before: online with a code
    expect(
      online([
        [8, 300],
        [17, 0],
      ]),
    ).toBe(CODES.BAD_VALUE); // a manifest is no root object
    expect(online([[17, 3]])).toBe(CODES.BAD_VALUE);
    expect(() => encodeStatusEvent({ device: 'd1', state: 'online', group: 'g', code: 300, stage: 'manifest' })).toThrow(RangeError);
  });
});

describe('Metrics: what a status event that counted adds (status-ingest.ts calls deviceReport only for those)', () => {
  let store: OtaStore;
  beforeAll(async () => {
    store = await openStore({ kind: 'sqlite', dataDir: tempDir('fwseal-metrics-unit-') });
  });
  afterAll(async () => {
    await store?.close();
  });

  it('a device without key 17: rejected refused the manifest, failed 1xx–4xx the image, 5xx the install, 6xx nothing', async () => {
    const m = new Metrics();
    const at = (state: StatusEvent['state'], code?: number, stage?: StatusEvent['stage']): StatusEvent => ({
      campaign: 'c1',
      device: 'd1',
      state,
      ...(code !== undefined ? { code } : {}),
      ...(stage ? { stage } : {}),
    });
    for (const e of [
      at('rejected', CODES.ROLLBACK),
      at('failed', CODES.CHUNK_DIGEST_MISMATCH),
      at('failed', CODES.FLASH_WRITE_FAILED),
      at('failed', CODES.TRANSPORT_TIMEOUT),
      at('failed', CODES.UNKNOWN_CAMPAIGN),
      at('confirmed'),
      at('failed', CODES.CHUNK_DIGEST_MISMATCH, 'install'), // the device's own stage wins
    ])
      m.deviceReport(e);
    const text = await m.render(store);
    expect(sample(text, 'fwseal_refusals_total', '{code="ROLLBACK",stage="manifest"}')).toBe(1);
    expect(sample(text, 'fwseal_refusals_total', '{code="CHUNK_DIGEST_MISMATCH",stage="image"}')).toBe(1);
    expect(sample(text, 'fwseal_refusals_total', '{code="CHUNK_DIGEST_MISMATCH",stage="install"}')).toBe(1);
    expect(sample(text, 'fwseal_refusals_total', '{code="FLASH_WRITE_FAILED",stage="install"}')).toBe(1);
    expect(text).not.toMatch(/TRANSPORT_TIMEOUT|UNKNOWN_CAMPAIGN/);
    expect(sample(text, 'fwseal_device_verify_seconds_count', '{stage="manifest"}')).toBe(0);
  });

  it('verify times in ms become seconds in the histogram of their stage; two servers in one process keep their own series', async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.deviceReport({ campaign: 'c1', device: 'd1', state: 'accepted', manifestMs: 80 });
    a.deviceReport({ campaign: 'c1', device: 'd1', state: 'installed', imageMs: 2500 });
    a.blocksServed++;
    const text = await a.render(store);
    expect(sample(text, 'fwseal_device_verify_seconds_bucket', '{le="0.05",stage="manifest"}')).toBe(0);
    expect(sample(text, 'fwseal_device_verify_seconds_bucket', '{le="0.1",stage="manifest"}')).toBe(1);
    expect(sample(text, 'fwseal_device_verify_seconds_sum', '{stage="image"}')).toBe(2.5);
    expect(sample(text, 'fwseal_blocks_served_total')).toBe(1);
    const other = await b.render(store);
    expect(sample(other, 'fwseal_blocks_served_total')).toBe(0);
    expect(sample(other, 'fwseal_device_verify_seconds_count', '{stage="image"}')).toBe(0);
    expect(sample(other, 'process_cpu_seconds_total')).toBeGreaterThan(0);
  });
});

describe('the release a device was first seen with (M10) survives an upgrade: devices known before count as first seen with theirs', () => {
  const postgres = onePostgres();
  afterAll(() => postgres.stop());

  async function expectUpgradeKeepsFleet(open: () => Promise<OtaStore>, downgrade: () => Promise<void>) {
    let store = await open();
    await store.recordOnline('d1', { group: 'g', version: '1.0.0', counter: 1 }, 10);
    await store.close();
    await downgrade(); // the columns gone, and the device on a release no campaign carried meanwhile
    store = await open();
    try {
      expect(await store.unexpectedReleases()).toEqual({ notInHistory: 0, notReleaseRole: 0 });
      await store.recordOnline('d1', { group: 'g', version: '6.6.6', counter: 66 }, 10);
      expect(await store.unexpectedReleases()).toEqual({ notInHistory: 1, notReleaseRole: 0 });
    } finally {
      await store.close();
    }
  }

  it('SQLite: a data folder from before the columns', async () => {
    const dir = tempDir('fwseal-metrics-upgrade-');
    await expectUpgradeKeepsFleet(
      () => openStore({ kind: 'sqlite', dataDir: dir }),
      async () => {
        const db = new Database(join(dir, 'fwseal.db'));
        for (const col of ['first_version', 'first_counter']) db.exec(`ALTER TABLE devices DROP COLUMN ${col}`);
        db.exec("UPDATE devices SET version = '5.5.5', counter = 55");
        db.close();
      },
    );
  });

  it('PostgreSQL: a database at schema version 1', async () => {
    const pg = await postgres.get();
    const url = await pg.database();
    await expectUpgradeKeepsFleet(
      () => openStore({ kind: 'postgres', url, dataDir: tempDir('fwseal-metrics-pg-') }),
      async () => {
        const c = await pg.client(url);
        try {
          await c.query('ALTER TABLE devices DROP COLUMN first_version, DROP COLUMN first_counter');
          await c.query('DELETE FROM schema_version WHERE version = 2');
          await c.query("UPDATE devices SET version = '5.5.5', counter = 55");
        } finally {
          await c.end();
        }
      },
    );
  });
});

describe('a real server, mosquitto and device clients: every SLI on /metrics with the counts of what happened', () => {
  const world = otaWorld(64 * 1024);
  const { w, v0, v2 } = world;
  const verifier = createVerifier({ sha256: nodeSha256 });
  const fast = { timeoutMs: 2000, baseBackoffMs: 20, maxBackoffMs: 100, retryBaseMs: 20, retryMaxMs: 100 };
  const OK_GROUP = ['ok-1', 'ok-2', 'ok-3'];
  const ALL = [...OK_GROUP, 'old-1'];
  let broker: Mosquitto;
  let server: OtaServer;
  let observer: MqttClient;
  const devices: OtaDevice[] = [];
  /** The scrape after each step, and the codes the verifier gives the rogue root objects. */
  const at: Record<string, string> = {};
  let started = 0;
  let campaigns: Record<'ok' | 'old' | 'idle', string>;
  let rogueCodes: { trust: string; revocation: string };

  const scrape = () => metricsOf(server);
  const campaignState = async (id: string) => (await api(server, 'GET', `/api/campaigns/${id}`)).body.state as string;
  const status = (device: string, e: Omit<StatusEvent, 'device'>) =>
    observer.publishAsync(topics.status('fwseal', device), Buffer.from(encodeStatusEvent({ ...e, device } as StatusEvent)), { qos: 1 });

  async function device(id: string, group: string): Promise<OtaDevice> {
    const dev = world.device();
    const d = await OtaDevice.start({
      id,
      group,
      flash: dev.flash,
      layout: dev.layout,
      trust: world.trust,
      maxTrialBoots: 2,
      pull: fast,
      mqtt: { url: broker.url, options: { protocolVersion: 5, clientId: `m-${id}`, reconnectPeriod: 0 } },
    });
    devices.push(d);
    return d;
  }

  /** A rogue publisher's root announcement: a bundle signed by one root key of two, a list signed by release keys. */
  async function rogueRoot(): Promise<void> {
    const trust = makeTrust({ root: [w.A, w.B, w.C], rootThreshold: 2, release: [w.R1, w.R2, w.R3], releaseThreshold: 2, signers: [w.A], version: 2 });
    const list = makeRevocations({ version: 5, signers: [w.R1, w.R2] });
    const current = verifier.loadTrust(w.trust);
    if (!current.ok) throw new Error(current.error);
    rogueCodes = { trust: verifier.verifyTrustUpdate(trust, current.trust).error, revocation: verifier.verifyRevocations(list, current.trust).error };
    await observer.publishAsync(topics.root('fwseal'), Buffer.from(encodeRootAnnouncement({ trustVersion: 2, trust, revocations: list })), { qos: 1 });
  }

  beforeAll(async () => {
    started = Date.now();
    broker = await startMosquitto({ persistence: false });
    const dataDir = tempDir('fwseal-metrics-e2e-');
    server = await OtaServer.start({ mqtt: serverMqtt(broker.url), dataDir, trust: w.trust, http: { host: '127.0.0.1', port: 0 }, tickMs: 50 });
    observer = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
    const ok = await Promise.all(OK_GROUP.map((id) => device(id, 'g-ok')));
    const old = await device('old-1', 'g-old');
    await eventually(async () => (await server.store.deviceCount()) === ALL.length, 10_000, 'every device known');
    // 1. A campaign to 2.0.0 that every device of its group confirms.
    const confirmed = ok.map((d) => d.waitFor((e) => e.state === 'confirmed'));
    const okId = (await createCampaign(server, 'g-ok', v2)).body.id as string;
    await Promise.all(confirmed);
    await eventually(async () => (await campaignState(okId)) === 'completed', 10_000, 'g-ok completed');
    at.completed = await scrape();
    // 2. An older release: the device refuses its manifest (ROLLBACK); the failure rate halts the campaign.
    const rejected = old.waitFor((e) => e.state === 'rejected');
    const oldId = (await createCampaign(server, 'g-old', v0)).body.id as string;
    expect((await rejected).code).toBe(CODES.ROLLBACK);
    await eventually(async () => (await campaignState(oldId)) === 'halted', 10_000, 'g-old halted');
    // 3. A campaign with nobody to update, paused by an operator; a create refused for its signatures (root keys sign no release).
    const idleId = (await createCampaign(server, 'g-idle', v2)).body.id as string;
    await server.transition(idleId, 'pause', 'ops');
    const payload = parseEnvelope(v2.envelope);
    if (!payload.ok) throw new Error(payload.error);
    const refused = await createCampaign(server, 'g-bad', { ...v2, envelope: signWith(payload.envelope.payload, [w.A, w.B]) });
    expect(refused.body.code).toBe(CODES.THRESHOLD_NOT_MET);
    campaigns = { ok: okId, old: oldId, idle: idleId };
    // 4. Releases the server never delivered: one device moved off its first release, one only ever on its factory one.
    await status('m10-moved', { state: 'online', group: 'g-raw', version: '1.0.0', counter: 5 });
    await status('m10-moved', { state: 'online', group: 'g-raw', version: '9.9.9', counter: 99 });
    await status('m10-factory', { state: 'online', group: 'g-raw', version: '7.7.7', counter: 77 });
    await eventually(
      async () => (await server.store.device('m10-moved'))?.version === '9.9.9' && (await server.store.device('m10-factory')),
      10_000,
      'raw devices',
    );
    at.beforeRoot = await scrape();
    // 5. A rogue root announcement every device refuses (twice: the bundle, then the list under the bundle it keeps).
    await rogueRoot();
    await eventually(
      async () => sample(await scrape(), 'fwseal_refusals_total', `{code="${rogueCodes.revocation}",stage="revocation"}`) === ALL.length,
      10_000,
      'root refusals',
    );
    // 6. A revocation of release key R1: every campaign signed with it halts; the devices acknowledge the list.
    const published = await server.publishRoot(makeRevocations({ version: 1, keyIds: [w.R1.keyId], signers: [w.A, w.B] }), 'ops');
    expect(published.halted.map((h) => h.id).sort()).toEqual([okId, oldId, idleId].sort());
    await eventually(async () => sample(await scrape(), 'fwseal_revocation_propagation_seconds_count') === ALL.length, 15_000, 'every device acknowledged');
    at.final = await scrape();
  }, 120_000);

  afterAll(async () => {
    for (const d of devices) await d.stop();
    await observer?.endAsync();
    await server?.close();
    await broker?.stop();
  });

  it('promtool check metrics passes the scrape without a word; one sample or comment per line', () => {
    for (const text of Object.values(at)) {
      expect(promtool(text)).toEqual({ status: 0, output: '' });
      expect(text).not.toMatch(/\n\n/);
    }
  });

  it('M4 from the devices: one manifest time per accepted or rejected device, one image time per installed one', () => {
    expect(sample(at.completed, 'fwseal_device_verify_seconds_count', '{stage="manifest"}')).toBe(OK_GROUP.length);
    expect(sample(at.completed, 'fwseal_device_verify_seconds_count', '{stage="image"}')).toBe(OK_GROUP.length);
    expect(sample(at.final, 'fwseal_device_verify_seconds_count', '{stage="manifest"}')).toBe(ALL.length);
    expect(sample(at.final, 'fwseal_device_verify_seconds_count', '{stage="image"}')).toBe(OK_GROUP.length);
    expect(sample(at.final, 'fwseal_device_verify_seconds_bucket', '{le="+Inf",stage="manifest"}')).toBe(ALL.length);
    expect(sample(at.final, 'fwseal_device_verify_seconds_bucket', '{le="+Inf",stage="image"}')).toBe(OK_GROUP.length);
  });

  it('M4 on the server: each create verifies its manifest once (the refused one too), each root re-check once per distinct manifest', () => {
    expect(sample(at.beforeRoot, 'fwseal_server_verify_seconds_count')).toBe(4);
    expect(sample(at.final, 'fwseal_server_verify_seconds_count')).toBe(6); // v2 (two campaigns, one envelope) and v0
    expect(sample(at.final, 'fwseal_server_verify_seconds_sum')).toBeGreaterThan(0);
  });

  it('M8: the refused manifest, and each root object the devices refused, by code and stage', () => {
    expect(sample(at.final, 'fwseal_refusals_total', '{code="ROLLBACK",stage="manifest"}')).toBe(1);
    expect(sample(at.final, 'fwseal_refusals_total', `{code="${rogueCodes.trust}",stage="trust"}`)).toBe(ALL.length);
    expect(sample(at.final, 'fwseal_refusals_total', `{code="${rogueCodes.revocation}",stage="revocation"}`)).toBe(ALL.length);
    expect(at.final.match(/^fwseal_refusals_total\{/gm)).toHaveLength(3);
    expect(sample(at.final, 'fwseal_rejections', '{code="ROLLBACK"}')).toBe(1);
    expect(sample(at.final, 'fwseal_manifest_verifications', '{result="reject"}')).toBe(1);
    expect(sample(at.final, 'fwseal_manifest_verifications', '{result="pass"}')).toBe(OK_GROUP.length);
  });

  it('M1: three creates accepted, one refused with the verifier code; halts by reason; campaigns by state', () => {
    expect(sample(at.final, 'fwseal_campaign_creates_total', '{result="accepted",code=""}')).toBe(3);
    expect(sample(at.final, 'fwseal_campaign_creates_total', '{result="refused",code="THRESHOLD_NOT_MET"}')).toBe(1);
    expect(sample(at.beforeRoot, 'fwseal_campaign_halts_total', '{reason="failure_rate"}')).toBe(1);
    expect(sample(at.beforeRoot, 'fwseal_campaign_halts_total', '{reason="operator"}')).toBe(1);
    expect(sample(at.beforeRoot, 'fwseal_campaign_halts_total', '{reason="revoked"}')).toBe(0);
    expect(sample(at.final, 'fwseal_campaign_halts_total', '{reason="revoked"}')).toBe(3); // the completed one withdrawn too
    const states = (text: string) =>
      Object.fromEntries(['running', 'paused', 'halted', 'completed', 'aborted'].map((s) => [s, sample(text, 'fwseal_campaigns', `{state="${s}"}`)]));
    expect(states(at.beforeRoot)).toEqual({ running: 0, paused: 1, halted: 1, completed: 1, aborted: 0 });
    expect(states(at.final)).toEqual({ running: 0, paused: 0, halted: 2, completed: 1, aborted: 0 });
    expect(sample(at.final, 'fwseal_campaign_devices', `{campaign="${campaigns.ok}",state="confirmed"}`)).toBe(OK_GROUP.length);
  });

  it('M10: the device moved to a release nobody delivered counts, the factory one does not; after the revocation 2.0.0 is no release-role release', () => {
    expect(sample(at.completed, 'fwseal_unexpected_releases', '{reason="not_in_history"}')).toBe(0);
    expect(sample(at.beforeRoot, 'fwseal_unexpected_releases', '{reason="not_in_history"}')).toBe(1);
    expect(sample(at.beforeRoot, 'fwseal_unexpected_releases', '{reason="not_release_role"}')).toBe(0);
    expect(sample(at.final, 'fwseal_unexpected_releases', '{reason="not_in_history"}')).toBe(1);
    expect(sample(at.final, 'fwseal_unexpected_releases', '{reason="not_release_role"}')).toBe(OK_GROUP.length);
  });

  it('M6: the list published, every device client acknowledged it once; the two devices that never enforce one are pending', () => {
    expect(sample(at.final, 'fwseal_root_revocation_version')).toBe(1);
    expect(sample(at.final, 'fwseal_revocation_version', '{version="1"}')).toBe(ALL.length);
    expect(sample(at.final, 'fwseal_revocations_pending')).toBe(2);
    expect(sample(at.beforeRoot, 'fwseal_revocations_pending')).toBe(0);
    expect(sample(at.final, 'fwseal_devices_online')).toBe(ALL.length + 2);
  });

  it('M5: the bundle in force and each of its keys, aged from when it was stored (the 8-hex-digit key id prefix and its role)', () => {
    const elapsed = (Date.now() - started) / 1000;
    const age = sample(at.final, 'fwseal_trust_bundle_age_seconds');
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThanOrEqual(elapsed);
    const prefix = (k: { publicKey: Uint8Array }) => toHex(nodeSha256(k.publicKey)).slice(0, 8);
    const keys = [...[w.A, w.B, w.C].map((k) => [prefix(k), 'root']), ...[w.R1, w.R2, w.R3].map((k) => [prefix(k), 'release'])];
    for (const [key, role] of keys) expect(sample(at.final, 'fwseal_trust_key_age_seconds', `{key="${key}",role="${role}"}`)).toBe(age); // all in bundle 1
    expect(at.final.match(/^fwseal_trust_key_age_seconds\{/gm)).toHaveLength(6);
  });

  it('the instance: build info, process and Node.js metrics, the block counters', () => {
    expect(sample(at.final, 'fwseal_build_info', `{version="${fwsealVersion()}",node="${process.version}"}`)).toBe(1);
    expect(fwsealVersion()).toBe(JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')).version);
    expect(sample(at.final, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    expect(at.final).toMatch(/^nodejs_version_info\{/m);
    expect(at.final).not.toMatch(/^nodejs_active_handles_total /m); // a gauge promtool's lint refuses; nodejs_active_handles{type} stays
    expect(sample(at.final, 'fwseal_blocks_served_total')).toBeGreaterThan(0);
    expect(sample(at.final, 'fwseal_mqtt_connected')).toBe(1);
  });

  it('events that do not count add nothing: an unknown device, and replays of counted events', async () => {
    const before = await scrape();
    const ignored = (text: string, reason: string) => sample(text, 'fwseal_status_ignored_total', `{reason="${reason}"}`);
    await status('ghost', { campaign: campaigns.ok, state: 'accepted', manifestMs: 5 });
    await status('ok-1', { campaign: campaigns.ok, state: 'installed', imageMs: 5 });
    await status('old-1', { campaign: campaigns.old, state: 'rejected', code: CODES.ROLLBACK, manifestMs: 5, stage: 'manifest' });
    const after = await eventually(
      async () => {
        const t = await scrape();
        return ignored(t, 'unknown_device') === ignored(before, 'unknown_device') + 1 && ignored(t, 'stale') === ignored(before, 'stale') + 2 && t;
      },
      10_000,
      'three events ignored',
    );
    for (const [name, labels] of [
      ['fwseal_device_verify_seconds_count', '{stage="manifest"}'],
      ['fwseal_device_verify_seconds_count', '{stage="image"}'],
      ['fwseal_refusals_total', '{code="ROLLBACK",stage="manifest"}'],
    ])
      expect(sample(after, name, labels), `${name}${labels}`).toBe(sample(before, name, labels));
  });
});

describe('fwseal sign --metrics-file (M3, the textfile collector of node_exporter)', () => {
  let cw: CliWorld;
  const trust = ['--root', 'A.pub', '--root', 'B.pub', '--root-threshold', '2', '--release', 'R1.pub', '--release', 'R2.pub', '--release-threshold', '2'];
  beforeAll(async () => {
    cw = await makeCliWorld(['A', 'B', 'R1', 'R2', 'X'], { trust: [...trust, '--sign', 'A.key', '--sign', 'B.key'], image: true });
  });
  afterAll(() => cw?.close());

  it('each run adds itself: ok runs with the signer time, a refused run with its code; promtool check metrics passes the file', async () => {
    const f = cw.path('fwseal_sign.prom');
    expectOk(await cw.run('sign', 'm.cose', '--key', 'R1.key', '--trust', 'trust.cbor', '--metrics-file', f));
    expectOk(await cw.run('sign', 'm.cose', '--key', 'R2.key', '--trust', 'trust.cbor', '--metrics-file', f));
    expectUsage(await cw.run('sign', 'm.cose', '--key', 'X.key', '--trust', 'trust.cbor', '--metrics-file', f), 'KEY_NOT_IN_TRUST');
    // R1 again: its valid signature is kept, the signer is not asked; the run is ok, with no time.
    expectOk(await cw.run('sign', 'm.cose', '--key', 'R1.key', '--trust', 'trust.cbor', '--metrics-file', f));
    expectOk(await cw.run('sign', 'm.cose', '--key', 'R2.key', '--detached', 'r2.sig', '--metrics-file', f));
    const text = readFileSync(f, 'utf8');
    expect(sample(text, 'fwseal_signatures_total', '{result="ok",code=""}')).toBe(4);
    expect(sample(text, 'fwseal_signatures_total', '{result="refused",code="KEY_NOT_IN_TRUST"}')).toBe(1);
    expect(sample(text, 'fwseal_sign_duration_seconds_count')).toBe(3); // R1, R2 and the detached one: the refused run never reached a signer
    expect(sample(text, 'fwseal_sign_duration_seconds_bucket', '{le="+Inf"}')).toBe(3);
    expect(sample(text, 'fwseal_sign_duration_seconds_sum')).toBeGreaterThan(0);
    expect(promtool(text)).toEqual({ status: 0, output: '' });
    expect(existsSync(`${f}.lock`)).toBe(false);
  });

  it('a file it did not write is refused (USAGE) before anything is signed, and left as it was', async () => {
    const f = cw.write('other.prom', 'node_something 1\n');
    const before = cw.bytes('m.cose');
    expectUsage(await cw.run('sign', 'm.cose', '--key', 'X.key', '--metrics-file', f));
    expect(cw.bytes('m.cose')).toEqual(before);
    expect(readFileSync(f, 'utf8')).toBe('node_something 1\n');
    expectUsage(await cw.run('sign', 'm.cose', '--print-tbs', '--hex', '--metrics-file', cw.path('fwseal_sign.prom')));
  });

  it('a folder that does not exist is IO before anything is signed; a lock a crashed run left behind is taken over', async () => {
    const before = cw.bytes('m.cose');
    expectUsage(await cw.run('sign', 'm.cose', '--key', 'X.key', '--metrics-file', cw.path('no/such/folder/x.prom')), 'IO');
    expect(cw.bytes('m.cose')).toEqual(before);
    const f = cw.path('crashed.prom');
    writeFileSync(`${f}.lock`, '');
    utimesSync(`${f}.lock`, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000));
    cw.write('plain.cose', cw.bytes('m.cose'));
    expectOk(await cw.run('sign', 'plain.cose', '--key', 'R1.key', '--metrics-file', f));
    expect(sample(readFileSync(f, 'utf8'), 'fwseal_signatures_total', '{result="ok",code=""}')).toBe(1);
    expect(existsSync(`${f}.lock`)).toBe(false);
  });
});
