/**
 * The broker access rules of SPEC.md §12.12 bite: a mosquitto with the shipped ACL file
 * (ops/mosquitto/fwseal.acl), a password file and one credential per device. A device's credentials
 * publish only its own request, root request and status topics and receive only its own replies, its
 * group's announcements, the data topics and the root of trust. mosquitto drops a denied PUBLISH silently (MQTT 3.1.1), so a
 * privileged observer checks that nothing arrived; no timing: each probe ends with an allowed message
 * from the same client, and the broker keeps one client's messages in order, so once that one is in,
 * anything before it would be too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeManifestRequest } from '../shared/ota/messages.js';
import { encodeRootRequest } from '../shared/ota/root.js';
import { encodeStatusEvent } from '../shared/ota/status.js';
import { topics } from '../shared/ota/topics.js';
import { fleetAuth, type Mosquitto, SERVER_USERNAME, startMosquitto } from './support/mosquitto.js';
import { RawDevice } from './support/ota-client.js';

const OBSERVER = 'fwseal.observer';
const fleet = fleetAuth(
  [
    { id: 'acl-1', group: 'g-acl' },
    { id: 'acl-2', group: 'g-other' },
  ],
  { users: [OBSERVER], acl: `user ${OBSERVER}\ntopic read #\n` },
);
const P = 'fwseal';
const CAMPAIGN = 'c-acl';
/** MQTT 5 PUBACK / SUBACK reason "Not authorized". */
const NOT_AUTHORIZED = 0x87;

let broker: Mosquitto;
const clients: RawDevice[] = [];

async function connect(id: string, user: string, version: 4 | 5): Promise<RawDevice> {
  const d = await RawDevice.connect(broker.url, id, { version, credentials: fleet.credentials(user) });
  clients.push(d);
  return d;
}

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false, auth: fleet.auth });
});

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
  await broker?.stop();
});

describe.each([4, 5] as const)('the ACL file with per-device credentials, MQTT %s', (version) => {
  it('refuses anonymous clients and wrong passwords', async () => {
    await expect(RawDevice.connect(broker.url, 'acl-1', { version })).rejects.toThrow();
    await expect(RawDevice.connect(broker.url, 'acl-1', { version, credentials: { username: 'acl-1', password: 'wrong' } })).rejects.toThrow();
  });

  it('a device publishes only its own request and status topics: nothing it sends elsewhere reaches anybody', async () => {
    const observer = await connect('observer', OBSERVER, 4);
    await observer.subscribe('#');
    const d = await connect('acl-1', 'acl-1', version);
    const mark = `forged-v${version}`;
    const denied = [
      topics.status(P, 'acl-2'),
      topics.request(P, CAMPAIGN, 'acl-2'),
      topics.reply(P, 'acl-2'),
      topics.reply(P, 'acl-1'),
      topics.announce(P, 'g-acl'),
      topics.announce(P, 'g-other'),
      topics.data(P, CAMPAIGN),
      `${P}/device/acl-1/other`,
      'elsewhere/x',
    ];
    for (const t of denied) {
      const sent = d.raw(t, mark);
      // MQTT 5 says so in the PUBACK; MQTT 3.1.1 has no way to and gets a plain PUBACK.
      if (version === 5) await expect(sent).rejects.toMatchObject({ code: NOT_AUTHORIZED });
      else await sent;
    }
    // Allowed: its own request and status topics; the last one closes the probe.
    await d.request(CAMPAIGN, encodeManifestRequest({ campaign: CAMPAIGN, requestId: 1 }));
    await d.status({ device: 'acl-1', state: 'online', group: 'g-acl', version: mark, counter: 1 });
    await observer.next((m) => m.topic === topics.status(P, 'acl-1'));
    expect(observer.messages.some((m) => m.topic === topics.request(P, CAMPAIGN, 'acl-1'))).toBe(true);
    expect(observer.messages.filter((m) => Buffer.from(m.payload).toString() === mark).map((m) => m.topic)).toEqual([]);
  });

  it("a device receives only its own replies, its group's announcements and the data topics, whatever it subscribes to", async () => {
    const d = await connect('acl-1', 'acl-1', version);
    const server = await connect('server', SERVER_USERNAME, 5);
    // mosquitto acknowledges every SUBSCRIBE when it enforces an acl_file (eclipse-mosquitto/mosquitto#2042);
    // a broker that refuses one answers 0x80 / 0x87. Either way nothing denied may be delivered.
    const wide = [topics.reply(P, 'acl-2'), topics.announce(P, 'g-other'), `${P}/device/+/reply`, `${P}/#`, '#'];
    for (const f of wide) expect([1, 0x80, NOT_AUTHORIZED]).toContain(await d.subscribe(f));
    for (const f of [topics.announce(P, 'g-acl'), topics.data(P, CAMPAIGN)]) expect(await d.subscribe(f)).toBe(1);
    const mark = `secret-v${version}`;
    // What the servers publish for others, then what is this device's, the last one closing the probe.
    await server.raw(topics.reply(P, 'acl-2'), mark);
    await server.raw(topics.announce(P, 'g-other'), mark);
    await server.raw(topics.announce(P, 'g-acl'), 'mine');
    await server.raw(topics.data(P, CAMPAIGN), 'mine');
    await server.raw(topics.reply(P, 'acl-1'), 'mine');
    await d.next((m) => m.topic === topics.reply(P, 'acl-1'));
    const got = new Set(d.messages.map((m) => m.topic));
    expect(got).toEqual(new Set([topics.announce(P, 'g-acl'), topics.data(P, CAMPAIGN), topics.reply(P, 'acl-1')]));
    expect(d.messages.filter((m) => Buffer.from(m.payload).toString() === mark)).toEqual([]);
  });

  it("the servers' credentials read every request and status event and publish replies, announcements and data, nothing else", async () => {
    const server = await connect('server', SERVER_USERNAME, version);
    const observer = await connect('observer', OBSERVER, 4);
    await observer.subscribe('#');
    expect(await server.subscribe(version === 5 ? topics.shared(topics.statusFilter(P)) : topics.statusFilter(P))).toBe(1);
    const d = await connect('acl-2', 'acl-2', 4);
    await d.status({ device: 'acl-2', state: 'online', group: 'g-other', version: '1.0.0', counter: 1 });
    await server.next((m) => m.topic === topics.status(P, 'acl-2'));
    const mark = `server-v${version}`;
    for (const t of [topics.status(P, 'acl-2'), topics.request(P, CAMPAIGN, 'acl-2')]) {
      const sent = server.raw(t, encodeStatusEvent({ device: 'acl-2', state: 'online', group: mark, version: mark, counter: 1 }));
      if (version === 5) await expect(sent).rejects.toMatchObject({ code: NOT_AUTHORIZED });
      else await sent;
    }
    await server.raw(topics.reply(P, 'acl-2'), 'closing');
    await observer.next((m) => m.topic === topics.reply(P, 'acl-2'));
    expect(observer.messages.filter((m) => Buffer.from(m.payload).includes(mark))).toEqual([]);
  });

  it('the root of trust (SPEC.md §12.13): every device reads <prefix>/root and asks only as itself; only the servers publish it and read the asks', async () => {
    const observer = await connect('observer', OBSERVER, 4);
    await observer.subscribe('#');
    const server = await connect('server', SERVER_USERNAME, version);
    expect(await server.subscribe(version === 5 ? topics.shared(topics.rootRequestFilter(P)) : topics.rootRequestFilter(P))).toBe(1);
    const d = await connect('acl-1', 'acl-1', version);
    expect(await d.subscribe(topics.root(P))).toBe(1);
    const mark = `root-forged-v${version}`;
    for (const t of [topics.root(P), topics.rootRequest(P, 'acl-2')]) {
      const sent = d.raw(t, mark);
      if (version === 5) await expect(sent).rejects.toMatchObject({ code: NOT_AUTHORIZED });
      else await sent;
    }
    const ask = encodeRootRequest({ requestId: 1, trustVersion: 2 });
    await d.raw(topics.rootRequest(P, 'acl-1'), ask);
    await server.next((m) => m.topic === topics.rootRequest(P, 'acl-1'));
    await observer.next((m) => m.topic === topics.rootRequest(P, 'acl-1'));
    await server.raw(topics.root(P), `root-v${version}`);
    await d.next((m) => m.topic === topics.root(P) && Buffer.from(m.payload).toString() === `root-v${version}`);
    await observer.next((m) => m.topic === topics.root(P) && Buffer.from(m.payload).toString() === `root-v${version}`);
    expect(observer.messages.filter((m) => Buffer.from(m.payload).toString() === mark)).toEqual([]);
    expect(d.messages.filter((m) => Buffer.from(m.payload).toString() === mark)).toEqual([]);
  });
});
