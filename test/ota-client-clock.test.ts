/**
 * The OTA device client is device code over injected ports (SPEC.md §12.10, device/ota/ports.ts):
 * here it runs on an in-memory link and a hand-driven clock, with no broker and no real time. An
 * unanswered manifest request expires when the clock says so and is asked again; the answer is
 * verified by the agent and the pull starts with a page request.
 */
import { describe, expect, it } from 'vitest';
import { createVerifier } from '../device/index.js';
import { OtaClient } from '../device/ota/client.js';
import { nodeSha256 } from '../host/hash.js';
import { messageType } from '../shared/ota/codec.js';
import { encodeAnnouncement, encodeManifestResponse, parseManifestRequest } from '../shared/ota/messages.js';
import { parseStatusEvent } from '../shared/ota/status.js';
import { ROLLOUT_ALL, topics } from '../shared/ota/topics.js';
import { ManualClock, memoryLink } from './support/ota-fakes.js';
import { otaWorld } from './support/ota-responder.js';

describe('OtaClient on an injected link and clock', () => {
  it('retries an unanswered manifest request when the injected clock passes its time-out, then pulls', async () => {
    const world = otaWorld(64 * 1024);
    const dev = world.device();
    const { link, published } = memoryLink();
    const clock = new ManualClock();
    const verifier = createVerifier({ sha256: nodeSha256 });
    const client = new OtaClient({ id: 'gw-1', group: 'g', flash: dev.flash, layout: dev.layout, trust: world.trust, verifier, maxTrialBoots: 2 }, link, clock);
    await client.start();
    const requests = () =>
      published.filter((p) => p.topic === topics.request('fwseal', 'c1', 'gw-1')).map((p) => (messageType(p.payload) as { type: string }).type);

    const envelope = world.v2.envelope;
    const announcement = {
      campaign: 'c1',
      manifestDigest: nodeSha256(envelope),
      manifestSize: envelope.length,
      imageSize: world.v2.image.length,
      chunkSize: 1024,
      blockSize: 16 * 1024,
      pageCount: 1,
      rollout: ROLLOUT_ALL,
    };
    client.receive(topics.announce('fwseal', 'g'), encodeAnnouncement(announcement));
    await clock.advance(0);
    expect(requests()).toEqual(['manifestRequest']);

    await clock.advance(4999); // the default time-out is 5000 ms: nothing yet
    expect(requests()).toEqual(['manifestRequest']);
    await clock.advance(1); // expired; the retry waits random() * backoff = 0
    expect(requests()).toEqual(['manifestRequest', 'manifestRequest']);
    expect(client.stats().timeouts).toBe(1);

    const last = parseManifestRequest(published.filter((p) => p.topic === topics.request('fwseal', 'c1', 'gw-1')).at(-1)!.payload);
    if (!last.ok) throw new Error(last.error);
    client.receive(topics.reply('fwseal', 'gw-1'), encodeManifestResponse({ campaign: 'c1', requestId: last.value.requestId, manifest: envelope }));
    await clock.advance(0);
    const states = published
      .filter((p) => p.topic === topics.status('fwseal', 'gw-1'))
      .map((p) => (parseStatusEvent(p.payload) as { value: { state: string } }).value.state);
    expect(states).toContain('accepted');
    expect(requests()).toContain('pageRequest');
    client.crash();
  });
});
