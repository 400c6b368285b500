/**
 * A minimal OTA server for the device-client tests, written from the wire forms of shared/ota/
 * only (not the real `fwseal serve`): it announces campaigns (retained) and answers manifest, page
 * and block requests. Per campaign it can answer normally, with CAMPAIGN_INACTIVE or with
 * UNKNOWN_CAMPAIGN, and it records every request it saw. For the root of trust (SPEC.md §12.13) it
 * publishes the retained root announcement and answers root requests from the trust bundles it was
 * given (UNKNOWN_TRUST_VERSION for others).
 */
import mqtt, { type MqttClient } from 'mqtt';
import { createLayout, layoutBytes } from '../../device/agent/layout.js';
import { provision } from '../../device/agent/provision.js';
import { SimFlash } from '../../device/sim/flash.js';
import { createVerifier } from '../../device/verifier.js';
import { nodeSha256 } from '../../host/hash.js';
import { concatBytes } from '../../shared/bytes.js';
import { CODES } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { pageLeafRange, pageProofs } from '../../shared/merkle.js';
import { messageType } from '../../shared/ota/codec.js';
import {
  type Announcement,
  encodeAnnouncement,
  encodeBlockResponse,
  encodeErrorReply,
  encodeManifestResponse,
  encodePageResponse,
  parseBlockRequest,
  parseManifestRequest,
  parsePageRequest,
  requestedBlocks,
} from '../../shared/ota/messages.js';
import { encodeRootAnnouncement, encodeRootResponse, parseRootRequest, type RootAnnouncement } from '../../shared/ota/root.js';
import { parseRequestTopic, parseRootRequestTopic, topics } from '../../shared/ota/topics.js';
import { detBytes, imageTree, makeManifest, makeManifestEnvelope, standardWorld } from './fixtures.js';

export type Mode = 'serve' | 'inactive' | 'unknown';

type Campaign = { a: Announcement; envelope: Uint8Array; image: Uint8Array; leaves: Uint8Array[]; proofs: Uint8Array[][]; mode: Mode };

export type SeenRequest = {
  campaign: string;
  device: string;
  kind: 'manifest' | 'page' | 'block' | 'root';
  blocks: number[];
  /** Root requests: the trust bundle version asked for (campaign is '' then). */
  trustVersion?: number;
  responseTopic?: string;
  correlation?: Buffer;
};

export class OtaResponder {
  readonly seen: SeenRequest[] = [];
  readonly campaigns = new Map<string, Campaign>();
  /** Delay (ms) before answering a block request; 0 = at once. */
  blockDelay: (request: SeenRequest, index: number) => number = () => 0;
  /** Trust bundles by version, each with the newest list that verifies under it: what root requests get. */
  readonly roots = new Map<number, { trust: Uint8Array; revocations?: Uint8Array }>();
  /** Delay (ms) before answering a root request; 0 = at once. */
  rootDelay = 0;
  private constructor(
    readonly client: MqttClient,
    readonly prefix: string,
  ) {}

  static async start(url: string, prefix = 'fwseal'): Promise<OtaResponder> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: `responder-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 0 });
    const r = new OtaResponder(client, prefix);
    client.on('message', (topic, payload, packet) => r.onRequest(topic, payload, packet.properties?.responseTopic, packet.properties?.correlationData));
    await client.subscribeAsync([topics.requestFilter(prefix), topics.rootRequestFilter(prefix)], { qos: 1 });
    return r;
  }

  /** Publish the retained root announcement (or any bytes: a rogue publisher; empty clears it). */
  async publishRoot(a: RootAnnouncement | Uint8Array): Promise<void> {
    const bytes = a instanceof Uint8Array ? a : encodeRootAnnouncement(a);
    await this.client.publishAsync(topics.root(this.prefix), Buffer.from(bytes), { qos: 1, retain: true });
  }

  /** Register a release as campaign `id` and publish its retained announcement on `group`. */
  async announce(
    group: string,
    id: string,
    release: { envelope: Uint8Array; image: Uint8Array; chunkSize: number },
    options: { blockSize?: number; rollout?: number; mode?: Mode } = {},
  ): Promise<Announcement> {
    const { leaves } = imageTree(release.image, release.chunkSize);
    const blockSize = options.blockSize ?? Math.max(release.chunkSize, Math.min(LIMITS.maxBlockBytes, release.chunkSize * 16));
    const a: Announcement = {
      campaign: id,
      manifestDigest: nodeSha256(release.envelope),
      manifestSize: release.envelope.length,
      imageSize: release.image.length,
      chunkSize: release.chunkSize,
      blockSize,
      pageCount: Math.ceil(leaves.length / LIMITS.pageLeaves),
      rollout: options.rollout ?? 2 ** 32,
    };
    this.campaigns.set(id, {
      a,
      envelope: release.envelope,
      image: release.image,
      leaves,
      proofs: pageProofs(nodeSha256, leaves),
      mode: options.mode ?? 'serve',
    });
    await this.client.publishAsync(topics.announce(this.prefix, group), Buffer.from(encodeAnnouncement(a)), { qos: 1, retain: true });
    return a;
  }

  /** Republish an announcement with another rollout. */
  async rollout(group: string, id: string, rollout: number): Promise<void> {
    const c = this.campaigns.get(id)!;
    c.a = { ...c.a, rollout };
    await this.client.publishAsync(topics.announce(this.prefix, group), Buffer.from(encodeAnnouncement(c.a)), { qos: 1, retain: true });
  }

  /** Clear the retained announcement (campaign withdrawn). */
  async withdraw(group: string): Promise<void> {
    await this.client.publishAsync(topics.announce(this.prefix, group), Buffer.alloc(0), { qos: 1, retain: true });
  }

  setMode(id: string, mode: Mode): void {
    this.campaigns.get(id)!.mode = mode;
  }

  blocksFor(device: string): number[] {
    return this.seen.filter((s) => s.device === device && s.kind === 'block').flatMap((s) => s.blocks);
  }

  requestsFor(device: string): SeenRequest[] {
    return this.seen.filter((s) => s.device === device);
  }

  async stop(): Promise<void> {
    await this.client.endAsync();
  }

  private reply(topic: string, payload: Uint8Array, correlation?: Buffer): void {
    this.client.publish(topic, Buffer.from(payload), { qos: 1, ...(correlation ? { properties: { correlationData: correlation } } : {}) }, () => undefined);
  }

  private onRootRequest(device: string, payload: Buffer, responseTopic?: string, correlation?: Buffer): void {
    const m = parseRootRequest(payload);
    if (!m.ok) return;
    const { requestId, trustVersion } = m.value;
    const to = responseTopic ?? m.value.replyTopic ?? topics.reply(this.prefix, device);
    this.seen.push({
      campaign: '',
      device,
      kind: 'root',
      blocks: [],
      trustVersion,
      ...(responseTopic ? { responseTopic } : {}),
      ...(correlation ? { correlation } : {}),
    });
    const bundle = this.roots.get(trustVersion);
    const answer = bundle ? encodeRootResponse({ requestId, trustVersion, ...bundle }) : encodeErrorReply({ requestId, code: CODES.UNKNOWN_TRUST_VERSION });
    if (this.rootDelay > 0) setTimeout(() => this.reply(to, answer, correlation), this.rootDelay);
    else this.reply(to, answer, correlation);
  }

  private onRequest(topic: string, payload: Buffer, responseTopic?: string, correlation?: Buffer): void {
    const root = parseRootRequestTopic(this.prefix, topic);
    if (root.ok) return this.onRootRequest(root.device, payload, responseTopic, correlation);
    const where = parseRequestTopic(this.prefix, topic);
    if (!where.ok) return;
    const { campaign: id, device } = where;
    const t = messageType(payload);
    if (!t.ok) return;
    const c = this.campaigns.get(id);
    const parsed =
      t.type === 'manifestRequest'
        ? parseManifestRequest(payload)
        : t.type === 'pageRequest'
          ? parsePageRequest(payload)
          : t.type === 'blockRequest'
            ? parseBlockRequest(payload)
            : null;
    if (!parsed?.ok) return;
    const m = parsed.value;
    const to = responseTopic ?? m.replyTopic ?? topics.reply(this.prefix, device);
    if (!to.startsWith(`${this.prefix}/`)) return;
    const kind = t.type === 'manifestRequest' ? 'manifest' : t.type === 'pageRequest' ? 'page' : 'block';
    const blocks = 'ranges' in m || 'bitmap' in m ? requestedBlocks(m as Parameters<typeof requestedBlocks>[0]) : [];
    this.seen.push({ campaign: id, device, kind, blocks, ...(responseTopic ? { responseTopic } : {}), ...(correlation ? { correlation } : {}) });
    const error = (code: number, index?: number) =>
      this.reply(to, encodeErrorReply({ campaign: id, requestId: m.requestId, code, ...(index !== undefined ? { index } : {}) }), correlation);
    if (!c || c.mode === 'unknown') return error(CODES.UNKNOWN_CAMPAIGN);
    if (c.mode === 'inactive') return error(CODES.CAMPAIGN_INACTIVE);
    if (kind === 'manifest') return this.reply(to, encodeManifestResponse({ campaign: id, requestId: m.requestId, manifest: c.envelope }), correlation);
    if (kind === 'page') {
      const page = (m as unknown as { page: number }).page;
      if (page >= c.proofs.length) return error(CODES.UNKNOWN_BLOCK, page);
      const { start, end } = pageLeafRange(page, c.leaves.length);
      return this.reply(
        to,
        encodePageResponse({
          campaign: id,
          requestId: m.requestId,
          page,
          leaves: concatBytes(...c.leaves.slice(start, end)),
          proof: concatBytes(...c.proofs[page]!),
        }),
        correlation,
      );
    }
    const count = Math.ceil(c.a.imageSize / c.a.blockSize);
    const beyond = blocks.find((b) => b >= count);
    if (beyond !== undefined) return error(CODES.UNKNOWN_BLOCK, beyond);
    const seen = this.seen[this.seen.length - 1]!;
    const send = () => {
      for (const b of blocks) {
        const data = c.image.slice(b * c.a.blockSize, Math.min(c.a.imageSize, (b + 1) * c.a.blockSize));
        this.reply(to, encodeBlockResponse({ campaign: id, requestId: m.requestId, block: b, data }), correlation);
      }
    };
    const delay = this.blockDelay(seen, this.seen.filter((s) => s.device === device && s.kind === 'block').length - 1);
    if (delay > 0) setTimeout(send, delay);
    else send();
  }
}

/**
 * Releases for the OTA tests: the standard trust, a factory image v1 (counter 5), an update v2
 * (counter 6, 256 KiB in 1 KiB chunks: 2 digest pages) and an older v0 (counter 3).
 */
export function otaWorld(v2Size = 256 * 1024) {
  const w = standardWorld();
  const release = (version: string, counter: number, size: number, chunkSize: number) => {
    const image = detBytes(size, `ota ${version}`);
    const envelope = makeManifestEnvelope(makeManifest(image, { version, securityCounter: counter, chunkSize }), [w.R1, w.R2]);
    return { version, counter, image, envelope, chunkSize };
  };
  const v0 = release('0.9.0', 3, 30_000, 1024);
  const v1 = release('1.0.0', 5, 40_000, 1024);
  const v2 = release('2.0.0', 6, v2Size, 1024);
  const E = 4096;
  const slotSize = Math.ceil((v2Size + 4096) / E) * E;
  const geometry = { size: layoutBytes(E, 8, slotSize), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
  const layout = createLayout(geometry, { slotSize });
  /** A provisioned simulated device (v1 confirmed) in RAM. */
  function device() {
    const flash = new SimFlash(geometry);
    const p = provision(flash, layout, { deviceClass: 'acme-gw', trust: w.trust, envelope: v1.envelope, image: v1.image, verifier });
    if (!p.ok) throw new Error(`provision: ${p.error}`);
    return { flash, layout };
  }
  return { w, trust: w.trust, v0, v1, v2, device, geometry, layout, slotSize };
}

const verifier = createVerifier({ sha256: nodeSha256 });

/** Poll `check` every 10 ms until it holds; throws after `ms`. */
export async function until(check: () => boolean, ms = 20_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
