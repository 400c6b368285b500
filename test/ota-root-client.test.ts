/**
 * The device client's root-of-trust channel (SPEC.md §12.13) on an in-memory link and a hand-driven
 * clock, no broker: the walk N -> V one version at a time with root requests (time-out and retry as
 * for manifests), the list stored after it, `online` acknowledging the versions, and no campaign
 * acted on while a root update is in progress.
 */
import { describe, expect, it } from 'vitest';
import { createVerifier, keyId } from '../device/index.js';
import { OtaClient } from '../device/ota/client.js';
import { nodeSha256 } from '../host/hash.js';
import { CODES } from '../shared/codes.js';
import { parseEnvelope } from '../shared/cose.js';
import { messageType } from '../shared/ota/codec.js';
import { encodeAnnouncement, encodeErrorReply, encodeManifestResponse, parseManifestRequest } from '../shared/ota/messages.js';
import { encodeRootAnnouncement, encodeRootResponse, parseRootRequest } from '../shared/ota/root.js';
import { parseStatusEvent, type StatusEvent } from '../shared/ota/status.js';
import { ROLLOUT_ALL, topics } from '../shared/ota/topics.js';
import { detKey, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust } from './support/fixtures.js';
import { ManualClock, memoryLink } from './support/ota-fakes.js';
import { otaWorld } from './support/ota-responder.js';

const world = otaWorld(64 * 1024);
const { A, B, C, R1, R2, R3 } = world.w;
const [N1, N2] = ['N1', 'N2'].map(detKey);
const trust2 = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2, R3, N1], releaseThreshold: 2, signers: [A, B], version: 2 });
const trust3 = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2, R3, N1, N2], releaseThreshold: 2, signers: [A, B], version: 3 });
const list = makeRevocations({ version: 1, keyIds: [keyId(R3.publicKey)], signers: [A, B] });
const announcement = encodeRootAnnouncement({ trustVersion: 3, trust: trust3, revocations: list });
/** v2 signed only by keys trust 3 brings: it verifies after the walk, never before. */
const newKeysV2 = makeManifestEnvelope(makeManifest(world.v2.image, { version: '2.0.0', securityCounter: 6, chunkSize: 1024 }), [N1, N2]);

function setup() {
  const dev = world.device();
  const { link, published, subscribed } = memoryLink();
  const clock = new ManualClock();
  const verifier = createVerifier({ sha256: nodeSha256 });
  const client = new OtaClient({ id: 'gw-1', group: 'g', flash: dev.flash, layout: dev.layout, trust: world.trust, verifier, maxTrialBoots: 2 }, link, clock);
  const on = (topic: string) => published.filter((p) => p.topic === topic);
  const rootRequests = () =>
    on(topics.rootRequest('fwseal', 'gw-1')).map((p) => parseRootRequest(p.payload) as { ok: true; value: { requestId: number; trustVersion: number } });
  const onlines = () =>
    on(topics.status('fwseal', 'gw-1'))
      .map((p) => (parseStatusEvent(p.payload) as { value: StatusEvent }).value)
      .filter((e) => e.state === 'online');
  const reply = (bytes: Uint8Array) => client.receive(topics.reply('fwseal', 'gw-1'), bytes);
  return { client, clock, published, subscribed, on, rootRequests, onlines, reply };
}

const listPayloadDigest = () => {
  const env = parseEnvelope(list);
  if (!env.ok) throw new Error(env.error);
  return Buffer.from(nodeSha256(env.envelope.payload));
};

describe('OtaClient root of trust (SPEC.md §12.13) on an injected link and clock', () => {
  it('walks 1 -> 2 -> 3 (2 by root request, retried after its time-out; 3 from the announcement), then stores the list and acknowledges', async () => {
    const t = setup();
    await t.client.start();
    expect(t.subscribed[0]![0]).toBe(topics.root('fwseal')); // root first: its retained message comes first
    expect(t.onlines()[0]).toMatchObject({ trustVersion: 1, revocationVersion: 0 });
    expect(t.onlines()[0]!.revocationDigest).toBeUndefined();

    t.client.receive(topics.root('fwseal'), announcement);
    await t.clock.advance(0);
    expect(t.rootRequests().map((r) => r.value.trustVersion)).toEqual([2]);
    await t.clock.advance(5000); // unanswered: asked again with a new request id
    const asked = t.rootRequests();
    expect(asked.map((r) => r.value.trustVersion)).toEqual([2, 2]);
    expect(asked[1]!.value.requestId).not.toBe(asked[0]!.value.requestId);
    expect(t.client.stats().timeouts).toBe(1);

    t.reply(encodeRootResponse({ requestId: asked[0]!.value.requestId, trustVersion: 2, trust: trust2 })); // stale: dropped
    await t.clock.advance(0);
    expect(t.client.agent.status()).toMatchObject({ ok: true, state: { trustVersion: 1 } });
    t.reply(encodeRootResponse({ requestId: asked[1]!.value.requestId, trustVersion: 2, trust: trust2 }));
    await t.clock.advance(0);
    expect(t.rootRequests()).toHaveLength(2); // version 3 is the announcement's own
    expect(t.client.agent.status()).toMatchObject({ ok: true, state: { trustVersion: 3, revocationVersion: 1 } });
    expect(t.onlines().at(-1)).toMatchObject({ trustVersion: 3, revocationVersion: 1 });
    expect(Buffer.from(t.onlines().at(-1)!.revocationDigest!).equals(listPayloadDigest())).toBe(true);
    expect(t.client.stats()).toMatchObject({ rootRefused: 0, malformed: 0 });

    // The same announcement again (a reconnect): nothing changes, nothing is asked, no new online.
    const before = t.onlines().length;
    t.client.receive(topics.root('fwseal'), announcement);
    await t.clock.advance(10_000);
    expect(t.rootRequests()).toHaveLength(2);
    expect(t.onlines()).toHaveLength(before);
    t.client.crash();
  });

  it('acts on no campaign while the walk is in progress: a manifest of the new keys is asked for, and accepted, only after it', async () => {
    const t = setup();
    await t.client.start();
    t.client.receive(topics.root('fwseal'), announcement);
    const a = {
      campaign: 'c-new',
      manifestDigest: nodeSha256(newKeysV2),
      manifestSize: newKeysV2.length,
      imageSize: world.v2.image.length,
      chunkSize: 1024,
      blockSize: 16 * 1024,
      pageCount: 1,
      rollout: ROLLOUT_ALL,
    };
    t.client.receive(topics.announce('fwseal', 'g'), encodeAnnouncement(a));
    await t.clock.advance(3000);
    const manifestRequests = () => t.on(topics.request('fwseal', 'c-new', 'gw-1'));
    expect(manifestRequests()).toHaveLength(0);
    t.reply(encodeRootResponse({ requestId: t.rootRequests()[0]!.value.requestId, trustVersion: 2, trust: trust2 }));
    await t.clock.advance(0);
    expect(manifestRequests().map((p) => (messageType(p.payload) as { type: string }).type)).toEqual(['manifestRequest']);
    const m = parseManifestRequest(manifestRequests()[0]!.payload);
    if (!m.ok) throw new Error(m.error);
    t.reply(encodeManifestResponse({ campaign: 'c-new', requestId: m.value.requestId, manifest: newKeysV2 }));
    await t.clock.advance(0);
    const states = t.on(topics.status('fwseal', 'gw-1')).map((p) => (parseStatusEvent(p.payload) as { value: StatusEvent }).value.state);
    expect(states).toContain('accepted');
    expect(states).not.toContain('rejected');
    t.client.crash();
  });

  it('a version the server does not hold stops the walk (no retry); the list is still judged under the bundle kept', async () => {
    const t = setup();
    await t.client.start();
    t.client.receive(topics.root('fwseal'), announcement);
    await t.clock.advance(0);
    t.reply(encodeErrorReply({ requestId: t.rootRequests()[0]!.value.requestId, code: CODES.UNKNOWN_TRUST_VERSION }));
    await t.clock.advance(60_000);
    expect(t.rootRequests()).toHaveLength(1);
    // The list is signed by A and B, root keys of trust 1 too: stored although the walk stopped.
    expect(t.client.agent.status()).toMatchObject({ ok: true, state: { trustVersion: 1, revocationVersion: 1 } });
    expect(t.client.stats().rootRefused).toBe(0);
    t.client.crash();
  });

  it('an older or foreign root announcement is refused and counted; what is stored does not change', async () => {
    const t = setup();
    await t.client.start();
    t.client.receive(topics.root('fwseal'), encodeRootAnnouncement({ trustVersion: 2, trust: trust2, revocations: list }));
    await t.clock.advance(0);
    expect(t.client.agent.status()).toMatchObject({ ok: true, state: { trustVersion: 2, revocationVersion: 1 } });
    const older = makeRevocations({ version: 1, keyIds: [], signers: [A, B] }); // same version, another list
    const other2 = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [A, B], version: 2 });
    t.client.receive(topics.root('fwseal'), encodeRootAnnouncement({ trustVersion: 1, trust: world.trust, revocations: older }));
    await t.clock.advance(0);
    expect(t.client.stats().rootRefused).toBe(2); // the older bundle and the other list
    t.client.receive(topics.root('fwseal'), encodeRootAnnouncement({ trustVersion: 2, trust: other2 }));
    await t.clock.advance(0);
    expect(t.client.stats().rootRefused).toBe(3);
    t.client.receive(topics.root('fwseal'), new Uint8Array([0xa1, 0x00, 0x0a]));
    await t.clock.advance(0);
    expect(t.client.stats().malformed).toBe(1);
    expect(t.client.agent.status()).toMatchObject({ ok: true, state: { trustVersion: 2, revocationVersion: 1 } });
    expect(t.rootRequests()).toHaveLength(0);
    t.client.crash();
  });
});
