/**
 * The root of trust over MQTT, the server's half (SPEC.md §12.13): the retained root announcement on
 * `<prefix>/root`, and answers to root requests on `<prefix>/root/req/<device>`, which go, like every
 * reply, only to that device's own reply topic (§12.4, §12.5): a Response Topic or key 3 naming any
 * other topic gets REPLY_TOPIC_REFUSED, a request that does not parse BAD_REQUEST, a trust bundle
 * version the server does not hold UNKNOWN_TRUST_VERSION.
 */
import { type MqttClient, type Packet } from 'mqtt';
import { CODES } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { encodeRootAnnouncement, encodeRootResponse, parseRootRequest } from '../../shared/ota/root.js';
import { topics } from '../../shared/ota/topics.js';
import { errorFields, type ServerLog } from './log.js';
import { type Metrics } from './metrics.js';
import { publishRetained, type ReplyPublisher } from './reply-publisher.js';
import { errorReply, type Reply, readableIds } from './requests.js';
import { type RootOfTrust } from './root-of-trust.js';

export type RootChannelParts = {
  readonly client: MqttClient;
  readonly prefix: string;
  readonly root: RootOfTrust;
  readonly publisher: ReplyPublisher;
  readonly metrics: Metrics;
  readonly log: ServerLog;
};

export class RootChannel {
  constructor(private readonly parts: RootChannelParts) {}

  /** Publish the retained root announcement (the newest trust bundle and list); resolves as publishRetained does. */
  async announce(): Promise<void> {
    const a = await this.parts.root.announcement();
    if (!a) return;
    return publishRetained(this.parts.client, topics.root(this.parts.prefix), encodeRootAnnouncement(a), this.parts.log, 'root announcement');
  }

  /** A root request that arrived on `<prefix>/root/req/<device>`; settles once it is answered. */
  async receive(payload: Buffer, packet: Packet, device: string): Promise<void> {
    const { metrics, publisher } = this.parts;
    const send = (r: Reply) => publisher.send([r], packet, device, null);
    const own = topics.reply(this.parts.prefix, device);
    const wanted = (packet as { properties?: { responseTopic?: string } }).properties?.responseTopic;
    if (wanted !== undefined && wanted !== own) {
      metrics.refusedReplyTopic('response_topic');
      return send(errorReply(CODES.REPLY_TOPIC_REFUSED, readableIds(payload)));
    }
    if (payload.length > LIMITS.maxOtaMessageBytes) {
      metrics.malformedMessage('oversize');
      return send(errorReply(CODES.BAD_REQUEST, {}));
    }
    const req = parseRootRequest(payload);
    if (!req.ok) {
      metrics.malformedMessage('request');
      return send(errorReply(CODES.BAD_REQUEST, readableIds(payload)));
    }
    const { requestId, replyTopic, trustVersion } = req.value;
    if (replyTopic !== undefined && replyTopic !== own) {
      metrics.refusedReplyTopic('payload');
      return send(errorReply(CODES.REPLY_TOPIC_REFUSED, { requestId }));
    }
    let answer: Awaited<ReturnType<RootOfTrust['response']>>;
    try {
      answer = await this.parts.root.response(trustVersion);
    } catch (e) {
      this.parts.log.error('root.request-failed', { device, ...errorFields(e) }, `root request of ${device} failed; answered SERVER_BUSY`);
      return send(errorReply(CODES.SERVER_BUSY, { requestId }));
    }
    if (!answer) return send(errorReply(CODES.UNKNOWN_TRUST_VERSION, { requestId }));
    metrics.rootResponses++;
    send({ payload: encodeRootResponse({ requestId, trustVersion, ...answer }) });
  }
}
