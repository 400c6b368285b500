/**
 * The root of trust over MQTT on the device (SPEC.md §12.13), against a real mosquitto and the
 * in-test responder (test/support/ota-responder.ts): a trust rotation 1 -> 2 -> 3 reaching a device
 * still on 1, a revocation list that stops a download in progress, a device that was offline during
 * the publish and enforces the list before it looks at a campaign, a rogue publisher's older list on
 * the retained topic, and the `online` acknowledgements carrying the versions. Each test has its own
 * topic prefix (the root topic is one per prefix).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boot } from '../device/agent/boot.js';
import { keyId } from '../device/index.js';
import { nodeSha256 } from '../host/hash.js';
import { OtaDevice as Device, type OtaDevice } from '../host/ota/device-client.js';
import { CODES } from '../shared/codes.js';
import { parseEnvelope } from '../shared/cose.js';
import { encodeRootAnnouncement } from '../shared/ota/root.js';
import { parseStatusEvent, type StatusEvent } from '../shared/ota/status.js';
import { topics } from '../shared/ota/topics.js';
import { detKey, makeRevocations, makeTrust } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { OtaResponder, otaWorld, until } from './support/ota-responder.js';

const world = otaWorld();
const { A, B, C, R1, R2, R3 } = world.w;
const D = detKey('D');
const [N1] = ['N1'].map(detKey);
const fast = { timeoutMs: 2000, baseBackoffMs: 20, maxBackoffMs: 100, retryBaseMs: 20, retryMaxMs: 100 };
/** Trust 2 adds a release key; trust 3 rotates root key C out for D (signed by the current A, B and by D). */
const trust2 = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2, R3, N1], releaseThreshold: 2, signers: [A, B], version: 2 });
const trust3 = makeTrust({ root: [A, B, D], rootThreshold: 2, release: [R1, R2, R3, N1], releaseThreshold: 2, signers: [A, B, D], version: 3 });
/** Revokes R1 (v2 is signed by R1 + R2); signed by B and D, so it verifies under trust 3 only. */
const revokeR1 = makeRevocations({ version: 1, keyIds: [keyId(R1.publicKey)], signers: [B, D] });

let broker: Mosquitto;
const responders: OtaResponder[] = [];
const devices: OtaDevice[] = [];
const clients: MqttClient[] = [];

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
});
afterAll(async () => {
  for (const d of devices) await d.stop();
  for (const c of clients) await c.endAsync();
  for (const r of responders) await r.stop();
  await broker?.stop();
});

async function responder(prefix: string): Promise<OtaResponder> {
  const r = await OtaResponder.start(broker.url, prefix);
  responders.push(r);
  return r;
}

async function start(prefix: string, id: string, version: 4 | 5 = 4, dev = world.device()) {
  const d = await Device.start({
    id,
    group: 'g',
    prefix,
    flash: dev.flash,
    layout: dev.layout,
    trust: world.trust,
    maxTrialBoots: 2,
    pull: fast,
    mqtt: { url: broker.url, options: { protocolVersion: version, clientId: `dev-${id}-${Math.random().toString(16).slice(2, 8)}`, reconnectPeriod: 0 } },
  });
  devices.push(d);
  return { d, dev };
}

/** Every status event of a device, as a server would see them. */
async function watch(prefix: string, id: string): Promise<StatusEvent[]> {
  const c = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
  clients.push(c);
  const events: StatusEvent[] = [];
  c.on('message', (_t, payload) => {
    const e = parseStatusEvent(payload);
    if (e.ok) events.push(e.value);
  });
  await c.subscribeAsync(topics.status(prefix, id), { qos: 1 });
  return events;
}

const rootOf = (d: OtaDevice) => {
  const s = d.agent.status();
  if (!s.ok) throw new Error(s.error);
  return { trustVersion: s.state.trustVersion, revocationVersion: s.state.revocationVersion, revocationDigest: s.state.revocationDigest };
};
const payloadDigest = (envelope: Uint8Array) => {
  const env = parseEnvelope(envelope);
  if (!env.ok) throw new Error(env.error);
  return Buffer.from(nodeSha256(env.envelope.payload));
};
const terminal = (campaign: string) => (e: StatusEvent) => e.campaign === campaign && ['confirmed', 'rejected', 'failed'].includes(e.state);

describe('root of trust over MQTT: the device (SPEC.md §12.13)', () => {
  for (const version of [4, 5] as const) {
    it(`a device on trust 1 walks to 3 by root requests and acknowledges the versions in online (MQTT ${version === 4 ? '3.1.1' : '5'})`, async () => {
      const prefix = `rt-walk-${version}`;
      const server = await responder(prefix);
      server.roots.set(2, { trust: trust2 });
      server.roots.set(3, { trust: trust3, revocations: revokeR1 });
      const events = await watch(prefix, 'dev-walk');
      const { d } = await start(prefix, 'dev-walk', version);
      await until(() => events.some((e) => e.state === 'online'), 10_000, 'the first online');
      expect(events[0]).toMatchObject({ state: 'online', trustVersion: 1, revocationVersion: 0 });

      await server.publishRoot({ trustVersion: 3, trust: trust3, revocations: revokeR1 });
      await until(() => rootOf(d).trustVersion === 3 && rootOf(d).revocationVersion === 1, 10_000, 'trust 3 and the list stored');
      const asked = server.requestsFor('dev-walk').filter((r) => r.kind === 'root');
      expect(asked.map((r) => r.trustVersion)).toEqual([2]); // 3 comes with the announcement
      if (version === 5) expect(asked[0]).toMatchObject({ responseTopic: topics.reply(prefix, 'dev-walk') });
      await until(() => events.some((e) => e.state === 'online' && e.trustVersion === 3), 10_000, 'online with trust 3');
      const ack = events.filter((e) => e.state === 'online').at(-1)!;
      expect(ack).toMatchObject({ trustVersion: 3, revocationVersion: 1, group: 'g', version: '1.0.0' });
      expect(Buffer.from(ack.revocationDigest!).equals(payloadDigest(revokeR1))).toBe(true);
      expect(d.stats()).toMatchObject({ rootRefused: 0, malformed: 0 });
    });
  }

  it('a list published mid-download stops the pull at once: rejected with REVOKED_KEY, the running image still boots', async () => {
    const prefix = 'rt-mid';
    const server = await responder(prefix);
    server.blockDelay = () => 300;
    const { d, dev } = await start(prefix, 'dev-mid');
    const blocksSeen: number[] = [];
    d.on('progress', (done) => blocksSeen.push(done));
    const done = d.waitFor(terminal('c-mid'));
    await server.announce('g', 'c-mid', world.v2);
    await until(() => blocksSeen.some((n) => n >= 1), 15_000, 'the first blocks');
    // Same trust bundle, a list revoking R1 signed by its root keys A and B.
    const list = makeRevocations({ version: 1, keyIds: [keyId(R1.publicKey)], signers: [A, B] });
    await server.publishRoot({ trustVersion: 1, trust: world.trust, revocations: list });
    expect(await done).toMatchObject({ state: 'rejected', code: CODES.REVOKED_KEY });
    const asked = server.blocksFor('dev-mid').length;
    expect(Math.max(...blocksSeen)).toBeLessThan(Math.ceil(world.v2.image.length / (16 * 1024))); // stopped before the end
    expect(d.state().lastStatus).toMatchObject({ state: 'rejected' }); // no `verifying` after it
    await new Promise((r) => setTimeout(r, 600));
    expect(server.blocksFor('dev-mid').length).toBe(asked); // nothing asked after the stop
    expect(rootOf(d).revocationVersion).toBe(1);
    // v1 is signed by R1 + R2 too: it keeps booting, flagged (SPEC.md §11.4).
    expect(boot(dev.flash, dev.layout, world.trust, { maxTrialBoots: 2 })).toMatchObject({ slot: 0, version: '1.0.0', code: 0, revokedSigners: true });
  });

  it('a device offline during the publish enforces the list (after walking the chain) before it looks at a campaign', async () => {
    const prefix = 'rt-offline';
    const server = await responder(prefix);
    server.roots.set(2, { trust: trust2 });
    server.rootDelay = 400; // the walk takes a while: a campaign looked at meanwhile would be accepted
    await server.publishRoot({ trustVersion: 3, trust: trust3, revocations: revokeR1 });
    await server.announce('g', 'c-off', world.v2); // signed by R1 + R2: revoked by the list
    const events = await watch(prefix, 'dev-off');
    const { d } = await start(prefix, 'dev-off');
    const done = await d.waitFor(terminal('c-off'));
    expect(done).toMatchObject({ state: 'rejected', code: CODES.REVOKED_KEY });
    expect(rootOf(d)).toMatchObject({ trustVersion: 3, revocationVersion: 1 });
    await until(() => events.some((e) => e.state === 'rejected'), 10_000, 'rejected on the status topic');
    expect(events.map((e) => e.state)).not.toContain('accepted');
    expect(server.requestsFor('dev-off').filter((r) => r.kind === 'page' || r.kind === 'block')).toEqual([]);
  });

  it("a rogue publisher's older list on the retained root topic is refused and counted; the stored list stays", async () => {
    const prefix = 'rt-rogue';
    const server = await responder(prefix);
    const list2 = makeRevocations({ version: 2, keyIds: [keyId(R3.publicKey)], signers: [A, B] });
    await server.publishRoot({ trustVersion: 1, trust: world.trust, revocations: list2 });
    const { d } = await start(prefix, 'dev-rogue');
    await until(() => rootOf(d).revocationVersion === 2, 10_000, 'list 2 stored');
    const stored = rootOf(d).revocationDigest!;
    const rogue = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(rogue);
    const older = makeRevocations({ version: 1, keyIds: [], signers: [A, B] }); // honestly signed, but older
    await rogue.publishAsync(topics.root(prefix), Buffer.from(encodeRootAnnouncement({ trustVersion: 1, trust: world.trust, revocations: older })), {
      qos: 1,
      retain: true,
    });
    await until(() => d.stats().rootRefused === 1, 10_000, 'the older list refused');
    expect(rootOf(d).revocationVersion).toBe(2);
    expect(Buffer.from(rootOf(d).revocationDigest!).equals(Buffer.from(stored))).toBe(true);
  });
});
