/**
 * The root of trust over MQTT end to end (SPEC.md §12.13, §12.9, §11.4; issue 13 item 6): the real
 * `fwseal serve` with real device clients on one mosquitto, the operator publishing through
 * `fwseal trust publish`. A leaked release key revoked while a campaign is mid-download; a device
 * offline during the publish; a trust rotation 1 -> 2 -> 3 reaching a device still on 1; an older
 * list replayed on the retained root topic. Each story has its own topic prefix and data folder.
 *
 * Not here, because covered elsewhere: a server restarted with an older `--revocations` (refused,
 * REVOCATION_ROLLBACK, exit 2: test/ota-root-server.test.ts "start-up" and "the CLI"); power cuts
 * during the store of a trust bundle or list (test/agent.test.ts, sweepOne over updateTrust and
 * updateRevocations).
 */
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { boot } from '../device/agent/boot.js';
import { toHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { encodeAnnouncement, encodeManifestResponse, parseManifestRequest } from '../shared/ota/messages.js';
import { encodeRootAnnouncement } from '../shared/ota/root.js';
import { parseRequestTopic, topics } from '../shared/ota/topics.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { retainedAnnouncement } from './support/ota-client.js';
import { api, metricsOf, retainedRoot, sample } from './support/ota-harness.js';
import {
  campaign,
  devicesOf,
  enforced,
  eventsOf,
  installedUnderList,
  keys,
  layout,
  payloadDigest,
  publish,
  RL1,
  RL2,
  RootFleet,
  release,
  type Sim,
  T1,
  T2,
  T3,
  until,
} from './support/root-fleet.js';

const { R1, R2, R3, N1, N2 } = keys;
/** The production release, co-signed by R1 (which leaks); the same manifest re-signed by the keys left; a release of trust 3's keys. */
const LEAKED = release('2.0.0', 6, 460_000, [R1, R2]);
const RESIGNED = release('2.0.0', 6, 460_000, [R2, R3]);
const NEW_KEYS = release('3.0.0', 7, 100_000, [N1, N2]);
const RL1_SHA = toHex(payloadDigest(RL1));

let broker: Mosquitto;
let fleet: RootFleet;

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
  fleet = new RootFleet(broker);
});
afterEach(async () => {
  await fleet.stopAll();
});
afterAll(async () => {
  await broker?.stop();
});

const confirmed = (s: Sim, version: string) => s.device.state().version === version && s.device.state().lastStatus?.state === 'confirmed';
const known = async (s: Parameters<typeof devicesOf>[0], n: number) => (await devicesOf(s)).length === n;

describe('a release key revoked while its campaign is mid-download', () => {
  it('the campaign halts with REVOKED_KEY; each device stops (rejected) or had finished, none installs under the list; all acknowledge it', async () => {
    const P = 'rk-mid';
    // Block answers for devices that ask with the multicast flag wait for other askers (150 ms
    // without one): the five devices pulling two blocks at a time are mid-download for seconds,
    // while the one that asks without the flag is answered at once and finishes first.
    const s = await fleet.server('mid', P, { coalesceMs: 150 });
    const early = await fleet.device(P, 'mid-early', 'g', { multicast: false });
    const pulling = await Promise.all(Array.from({ length: 5 }, (_, i) => fleet.device(P, `mid-${i}`, 'g', { window: 2 })));
    const all = [early, ...pulling];
    await until('six devices known', () => known(s, 6));
    const id = await campaign(s, 'g', LEAKED, { blockSize: 4096 });
    const total = Math.ceil(LEAKED.image.length / 4096);
    await until('the early device confirmed 2.0.0', () => confirmed(early, '2.0.0'));
    await until('the others mid-download', () => pulling.every((x) => x.blocks >= 2));
    expect(pulling.every((x) => x.blocks < total)).toBe(true);

    expect(await publish(fleet, s, 'RL1.cbor', RL1)).toEqual({ kind: 'revocation-list', version: 1, changed: true, halted: [{ id, code: CODES.REVOKED_KEY }] });
    await until('every device stopped with the code', () => pulling.every((x) => eventsOf(x, id).some((e) => e.state === 'rejected')), 20_000);
    await until('every acknowledgement in', async () => (await devicesOf(s)).every((d) => d.revocationVersion === 1));

    for (const x of pulling) {
      const events = eventsOf(x, id);
      expect(events.at(-1)).toMatchObject({ state: 'rejected', code: CODES.REVOKED_KEY, enforcedList: 1 });
      expect(events.map((e) => e.state)).not.toContain('verifying');
      expect([x.device.state().version, x.blocks < total, enforced(x.flash).revocationVersion]).toEqual(['1.0.0', true, 1]);
    }
    for (const x of all) expect(installedUnderList(x, id, 1), x.id).toBe(false);
    // The one that finished keeps running 2.0.0: its signers were revoked after it was installed (§11.4).
    expect(eventsOf(early, id).at(-1)).toMatchObject({ state: 'confirmed', enforcedList: 0 });
    expect(boot(early.flash, layout, T1, { maxTrialBoots: 2 })).toMatchObject({ version: '2.0.0', code: 0, revokedSigners: true });

    const detail = (await api(s, 'GET', `/api/campaigns/${id}`)).body;
    expect([detail.state, detail.haltCode]).toEqual(['halted', CODES.REVOKED_KEY]);
    expect(await retainedAnnouncement(broker.url, 'g', P)).toBeNull();
    await until('the rejections counted', async () => (await api(s, 'GET', `/api/campaigns/${id}`)).body.counts.rejected === 5);
    const rows = (await api(s, 'GET', `/api/campaigns/${id}`)).body.devices as { id: string; state: string; code: number | null; revocationVersion: number }[];
    for (const r of rows)
      expect([r.id, r.state, r.code, r.revocationVersion]).toEqual(r.id === early.id ? [r.id, 'confirmed', null, 1] : [r.id, 'rejected', CODES.REVOKED_KEY, 1]);

    for (const d of await devicesOf(s)) expect([d.id, d.revocationVersion, d.revocationSha256]).toEqual([d.id, 1, RL1_SHA]);
    const m = await metricsOf(s);
    expect(sample(m, 'fwseal_revocation_propagation_seconds_count')).toBe(6);
    expect(sample(m, 'fwseal_revocation_propagation_seconds_bucket', '{le="5"}')).toBe(6);
    expect(sample(m, 'fwseal_revocation_version', '{version="1"}')).toBe(6);
    expect(sample(m, 'fwseal_revocation_enforcing_ratio')).toBe(1);
  }, 120_000);
});

describe('a device offline during the publish', () => {
  it('enforces the list before it looks at a campaign when it comes back, then installs the release re-signed by the keys left', async () => {
    const P = 'rk-off';
    const s = await fleet.server('off', P);
    const before = await fleet.device(P, 'off-1', 'g');
    await until('device known', () => known(s, 1));
    await before.device.stop();
    const leaked = await campaign(s, 'g', LEAKED);
    expect((await publish(fleet, s, 'RL1.cbor', RL1)).halted).toEqual([{ id: leaked, code: CODES.REVOKED_KEY }]);
    // The drill: the halted campaign is aborted, the release re-signed without R1 goes out.
    expect((await api(s, 'POST', `/api/campaigns/${leaked}/abort`)).status).toBe(200);
    const resigned = await campaign(s, 'g', RESIGNED);

    const back = await fleet.device(P, 'off-1', 'g', { flash: before.flash });
    await until('2.0.0 confirmed', () => confirmed(back, '2.0.0'));
    expect(eventsOf(back, leaked)).toEqual([]);
    expect(eventsOf(back, resigned)[0]).toMatchObject({ state: 'accepted', enforcedList: 1 });
    expect(back.log.filter((e) => e.campaign !== undefined).every((e) => e.enforcedList === 1)).toBe(true);
    await until('its acknowledgement', async () => (await devicesOf(s))[0]?.revocationVersion === 1);
    expect(sample(await metricsOf(s), 'fwseal_revocation_propagation_seconds_count')).toBe(1);
  }, 90_000);

  it('refuses a stale announcement of the revoked release (REVOKED_KEY) before asking for any block; the server withdraws it again at its restart', async () => {
    const P = 'rk-stale';
    let s = await fleet.server('stale', P);
    const before = await fleet.device(P, 'stale-1', 'g');
    await until('device known', () => known(s, 1));
    await before.device.stop();
    const leaked = await campaign(s, 'g', LEAKED);
    const announced = await retainedAnnouncement(broker.url, 'g', P);
    expect(announced?.campaign).toBe(leaked);
    await publish(fleet, s, 'RL1.cbor', RL1);
    expect(await retainedAnnouncement(broker.url, 'g', P)).toBeNull();
    await s.close();

    // While the server is down, a rogue on the (anonymous) broker puts the old announcement back and
    // serves the signed manifest: the device has only the retained root announcement to go by.
    const rogue = await mqtt.connectAsync(broker.url, { clientId: 'rk-rogue-announcer', reconnectPeriod: 0 });
    const asked: string[] = [];
    rogue.on('message', (topic, payload) => {
      const m = parseManifestRequest(payload);
      asked.push(m.ok ? 'manifest' : 'other');
      const t = parseRequestTopic(P, topic);
      if (!m.ok || !t.ok) return;
      const reply = encodeManifestResponse({ campaign: leaked, requestId: m.value.requestId, manifest: LEAKED.envelope });
      void rogue.publishAsync(m.value.replyTopic ?? topics.reply(P, t.device), Buffer.from(reply), { qos: 1 });
    });
    try {
      await rogue.subscribeAsync(topics.requestFilter(P), { qos: 1 });
      await rogue.publishAsync(topics.announce(P, 'g'), Buffer.from(encodeAnnouncement(announced!)), { qos: 1, retain: true });
      const back = await fleet.device(P, 'stale-1', 'g', { flash: before.flash });
      await until('the stale release refused', () => eventsOf(back, leaked).length > 0);
      expect(eventsOf(back, leaked)).toEqual([expect.objectContaining({ state: 'rejected', code: CODES.REVOKED_KEY, enforcedList: 1 })]);
      expect(asked.length).toBeGreaterThan(0);
      expect(asked.every((a) => a === 'manifest')).toBe(true); // no page or block requested
      expect(back.device.state().version).toBe('1.0.0');
    } finally {
      await rogue.endAsync(true);
    }
    // The server's (re)connect republishes each group's head: the halted campaign's is the empty payload.
    s = await fleet.server('stale', P);
    await until('the stale announcement withdrawn', async () => (await retainedAnnouncement(broker.url, 'g', P)) === null, 10_000);
  }, 90_000);
});

describe('a trust rotation 1 -> 2 -> 3 published over the API', () => {
  it('reaches a device still on trust 1: it walks the chain, enforces trust 3 and list 2, then installs a release of the new keys', async () => {
    const P = 'rk-rot';
    const s = await fleet.server('rot', P);
    const before = await fleet.device(P, 'walker', 'g');
    await until('device known', () => known(s, 1));
    await publish(fleet, s, 'RL1.cbor', RL1);
    await until('list 1 enforced', () => enforced(before.flash).revocationVersion === 1);
    await before.device.stop();
    // Trust 3's root keys (B D E) do not sign list 1 (A B): list 2 (A B D) goes out before it.
    for (const [name, bytes] of [
      ['T2.cbor', T2],
      ['RL2.cbor', RL2],
      ['T3.cbor', T3],
    ] as const)
      expect((await publish(fleet, s, name, bytes)).changed).toBe(true);
    const id = await campaign(s, 'g', NEW_KEYS);

    const back = await fleet.device(P, 'walker', 'g', { flash: before.flash });
    await until('3.0.0 confirmed', () => confirmed(back, '3.0.0'));
    expect(enforced(back.flash)).toEqual({ trustVersion: 3, revocationVersion: 2 });
    expect(eventsOf(back, id).map((e) => [e.state, e.enforcedTrust, e.enforcedList])[0]).toEqual(['accepted', 3, 2]);
    expect(eventsOf(back, id).map((e) => e.state)).not.toContain('rejected');
    expect(back.device.stats().rootRefused).toBe(0);
    const booted = boot(back.flash, layout, T1, { maxTrialBoots: 2 }); // the stored trust 3, not the factory bundle
    expect([booted.version, booted.code, booted.revokedSigners ?? false]).toEqual(['3.0.0', 0, false]);
    // Bundle 2 came by root request; 3 with the announcement.
    expect(sample(await metricsOf(s), 'fwseal_root_responses_total')).toBeGreaterThanOrEqual(1);
    await until('its acknowledgement', async () => (await devicesOf(s))[0]?.trustVersion === 3);
    expect((await devicesOf(s))[0]).toMatchObject({ trustVersion: 3, revocationVersion: 2, revocationSha256: toHex(payloadDigest(RL2)) });
  }, 90_000);
});

describe('an older list replayed on the retained root topic', () => {
  it('every device refuses it (counted) and keeps the newer list; it stays retained until the server announces again', async () => {
    const P = 'rk-replay';
    let s = await fleet.server('replay', P);
    const fleetOf3 = await Promise.all(['rp-0', 'rp-1', 'rp-2'].map((id) => fleet.device(P, id, 'g')));
    await until('devices known', () => known(s, 3));
    await publish(fleet, s, 'RL1.cbor', RL1);
    await publish(fleet, s, 'RL2.cbor', RL2);
    await until('list 2 acknowledged everywhere', async () => (await devicesOf(s)).every((d) => d.revocationVersion === 2));

    const rogue = await mqtt.connectAsync(broker.url, { clientId: 'rk-rogue-root', reconnectPeriod: 0 });
    try {
      const replay = encodeRootAnnouncement({ trustVersion: 1, trust: T1, revocations: RL1 });
      await rogue.publishAsync(topics.root(P), Buffer.from(replay), { qos: 1, retain: true });
    } finally {
      await rogue.endAsync(true);
    }
    await until('every device refused the replay', () => fleetOf3.every((x) => x.device.stats().rootRefused === 1));
    for (const x of fleetOf3) expect(enforced(x.flash).revocationVersion).toBe(2);
    for (const d of await devicesOf(s)) expect(d.revocationVersion).toBe(2);

    // What happens meanwhile: the replay stays retained (the server does not watch its own topic,
    // and publishing the stored list again changes nothing, so nothing is announced), and a new
    // device with no list takes the older list: a valid list, merely not the newest.
    expect(toHex((await retainedRoot(broker.url, P))!.revocations!)).toBe(toHex(RL1));
    expect(await publish(fleet, s, 'RL2.cbor', RL2)).toMatchObject({ version: 2, changed: false });
    expect(toHex((await retainedRoot(broker.url, P))!.revocations!)).toBe(toHex(RL1));
    const newcomer = await fleet.device(P, 'rp-new', 'g');
    await until('the newcomer took the replayed list', () => enforced(newcomer.flash).revocationVersion === 1, 10_000);

    // The server's next announcement (here its restart; also any reconnect or a newer object) restores the topic.
    await s.close();
    s = await fleet.server('replay', P);
    await until('the topic restored', async () => toHex((await retainedRoot(broker.url, P))?.revocations ?? new Uint8Array()) === toHex(RL2), 10_000);
    await until('the newcomer on list 2', () => enforced(newcomer.flash).revocationVersion === 2, 10_000);
    for (const x of fleetOf3) expect([enforced(x.flash).revocationVersion, x.device.stats().rootRefused]).toEqual([2, 1]);
  }, 90_000);
});
