/** The root-of-trust messages (SPEC.md §12.13) and the root-of-trust fields of `online` (§12.2). */
import { describe, expect, it } from 'vitest';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { messageType } from '../shared/ota/codec.js';
import {
  encodeRootAnnouncement,
  encodeRootRequest,
  encodeRootResponse,
  parseRootAnnouncement,
  parseRootRequest,
  parseRootResponse,
} from '../shared/ota/root.js';
import { encodeStatusEvent, parseStatusEvent } from '../shared/ota/status.js';
import { parseRootRequestTopic, topics } from '../shared/ota/topics.js';

const env = (n: number, fill = 0xd8) => new Uint8Array(n).fill(fill);

describe('root-of-trust messages', () => {
  it('round-trip, and a full announcement (two largest envelopes) fits an OTA message', () => {
    const a = { trustVersion: 3, trust: env(LIMITS.maxEnvelopeBytes), revocations: env(LIMITS.maxEnvelopeBytes, 0x11) };
    const bytes = encodeRootAnnouncement(a);
    expect(bytes.length).toBeLessThanOrEqual(LIMITS.maxOtaMessageBytes);
    expect(parseRootAnnouncement(bytes)).toMatchObject({ ok: true, value: a });
    expect(messageType(bytes)).toMatchObject({ ok: true, type: 'rootAnnouncement' });
    const q = { requestId: 7, replyTopic: 'fwseal/device/gw-1/reply', trustVersion: 2 };
    expect(parseRootRequest(encodeRootRequest(q))).toMatchObject({ ok: true, value: q });
    const r = { requestId: 7, trustVersion: 2, trust: env(300) };
    expect(parseRootResponse(encodeRootResponse(r))).toMatchObject({ ok: true, value: r });
  });

  it('refuses an envelope above maxEnvelopeBytes, an empty one, version 0, and another message type', () => {
    expect(() => encodeRootAnnouncement({ trustVersion: 1, trust: env(LIMITS.maxEnvelopeBytes + 1) })).toThrow(RangeError);
    expect(() => encodeRootResponse({ requestId: 1, trustVersion: 1, trust: new Uint8Array(0) })).toThrow(RangeError);
    expect(() => encodeRootRequest({ requestId: 1, trustVersion: 0 })).toThrow(RangeError);
    const q = encodeRootRequest({ requestId: 1, trustVersion: 1 });
    expect(parseRootAnnouncement(q).code).toBe(CODES.WRONG_KIND);
    expect(parseRootResponse(q).code).toBe(CODES.WRONG_KIND);
  });

  it('topics: the retained root topic, and a root request topic names its device', () => {
    expect(topics.root('fwseal')).toBe('fwseal/root');
    expect(parseRootRequestTopic('fwseal', topics.rootRequest('fwseal', 'gw-9'))).toMatchObject({ ok: true, device: 'gw-9' });
    for (const t of ['fwseal/root/req', 'fwseal/root/req/a/b', 'fwseal/root/x/gw-9', 'other/root/req/gw-9', 'fwseal/root/req/bad id']) {
      expect(parseRootRequestTopic('fwseal', t).ok, t).toBe(false);
    }
  });
});

describe('online events carry the root of trust the device enforces', () => {
  const online = { device: 'gw-1', state: 'online' as const, group: 'g', trustVersion: 2, revocationVersion: 5, revocationDigest: env(32, 7) };

  it('round-trips with and without a list', () => {
    expect(parseStatusEvent(encodeStatusEvent(online))).toMatchObject({ ok: true, value: online });
    const none = { device: 'gw-1', state: 'online' as const, group: 'g', trustVersion: 1, revocationVersion: 0 };
    expect(parseStatusEvent(encodeStatusEvent(none))).toMatchObject({ ok: true, value: none });
  });

  it('only with state online; a digest of the wrong length is BAD_VALUE', () => {
    expect(() => encodeStatusEvent({ campaign: 'c1', device: 'gw-1', state: 'accepted', trustVersion: 2 })).toThrow(RangeError);
    expect(() => encodeStatusEvent({ ...online, revocationDigest: env(31) })).toThrow(RangeError);
  });
});
