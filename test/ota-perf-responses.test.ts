/**
 * The answer path made cheaper without changing an answer (host/ota/response-templates.ts,
 * requests.ts, SPEC.md §12.2, §12.5): manifest and page responses spliced from a template are byte
 * for byte the encoder's for every request id; the templates are made once per campaign and page,
 * dropped with the campaign's assets and bounded in bytes; a request's type read from its first bytes
 * dispatches as the full decode would, so malformed requests get the same BAD_REQUEST.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FwsealError } from '../host/errors.js';
import { nodeSha256 } from '../host/hash.js';
import { AssetCache } from '../host/ota/assets.js';
import { createCampaign } from '../host/ota/campaigns.js';
import { answer } from '../host/ota/requests.js';
import { ResponseTemplates, templateOf, withRequestId } from '../host/ota/response-templates.js';
import { SqliteStore } from '../host/ota/store-sqlite.js';
import { toHex } from '../shared/bytes.js';
import { encodeCbor } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { encodeManifestRequest, encodeManifestResponse, encodePageRequest, encodePageResponse, parseErrorReply } from '../shared/ota/messages.js';
import { topics } from '../shared/ota/topics.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';

const IDS = [0, 1, 23, 24, 255, 256, 65_535, 65_536, 2 ** 31, LIMITS.maxRequestId];

describe('response templates', () => {
  it('a spliced response is the encoder output for every request id width', () => {
    const campaign = `c${'x'.repeat(63)}`;
    const manifest = detBytes(LIMITS.maxEnvelopeBytes, 'envelope');
    const leaves = detBytes(LIMITS.pageLeaves * 32, 'leaves');
    const proof = detBytes(7 * 32, 'proof');
    const m = templateOf((requestId) => encodeManifestResponse({ campaign, requestId, manifest }));
    const p = templateOf((requestId) => encodePageResponse({ campaign, requestId, page: 300, leaves, proof }));
    for (const requestId of IDS) {
      expect(toHex(withRequestId(m, requestId))).toBe(toHex(encodeManifestResponse({ campaign, requestId, manifest })));
      expect(toHex(withRequestId(p, requestId))).toBe(toHex(encodePageResponse({ campaign, requestId, page: 300, leaves, proof })));
    }
  });

  it('an encoder that differs in more than the request id is refused (INTERNAL)', () => {
    let n = 0;
    let err: unknown;
    try {
      templateOf((requestId) =>
        encodeCbor(
          new Map([
            [2, requestId],
            [4, n++],
          ]),
        ),
      );
    } catch (e) {
      err = e;
    }
    expect((err as FwsealError).codeName).toBe('INTERNAL');
  });

  it('the least recently used templates go past the byte bound', () => {
    const t = new ResponseTemplates(100);
    const make = (n: number) => () => ({ bytes: new Uint8Array(n), at: 0 });
    t.get('a/1', make(40));
    t.get('a/2', make(40));
    t.get('a/1', make(40)); // used again: a/2 is now the least recently used
    t.get('b/1', make(40));
    expect(t.size).toEqual({ entries: 2, bytes: 80 });
    let made = 0;
    t.get('a/2', () => {
      made++;
      return { bytes: new Uint8Array(40), at: 0 };
    });
    expect(made).toBe(1); // a/2 was dropped
    t.dropPrefix('a/');
    expect(t.size).toEqual({ entries: 1, bytes: 40 });
  });
});

describe('answers from templates', () => {
  const w = standardWorld();
  // 600 KB in 1 KiB chunks: 5 digest pages.
  const image = detBytes(600_000, 'templates image');
  const envelope = makeManifestEnvelope(makeManifest(image, { chunkSize: 1024 }), [w.R1, w.R2]);
  let dir: string;
  let store: SqliteStore;
  let assets: AssetCache;
  let campaign: string;
  const device = 'dev-1';
  const reply = topics.reply('fwseal', device);
  const ask = (payload: Uint8Array) => answer(store, assets, campaign, device, reply, payload);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fwseal-templates-'));
    store = new SqliteStore(dir);
    const sha = toHex(nodeSha256(image));
    writeFileSync(join(store.imagesDir, sha), image);
    await store.recordOnline(device, { group: 'g', version: '1.0.0', counter: 1 }, 10);
    const row = await createCampaign(store, async () => ({ trust: w.trust, versions: { trust: 0, list: 0 } }), { manifest: envelope, image: sha, group: 'g' });
    campaign = row.id;
    assets = new AssetCache(store);
  });
  afterAll(async () => {
    assets.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('manifest and page answers are the encoders’ bytes; one template per campaign and page, dropped with the campaign', async () => {
    const a = await assets.get(campaign);
    expect(a.pages.count).toBe(5);
    for (const requestId of IDS) {
      const m = await ask(encodeManifestRequest({ campaign, requestId }));
      expect(toHex(m.replies[0]!.payload)).toBe(toHex(encodeManifestResponse({ campaign, requestId, manifest: envelope })));
      for (let page = 0; page < a.pages.count; page++) {
        const p = await ask(encodePageRequest({ campaign, requestId, page }));
        const want = encodePageResponse({ campaign, requestId, page, leaves: a.pages.leaves(page), proof: a.pages.proof(page) });
        expect([p.kind, toHex(p.replies[0]!.payload)]).toEqual(['page', toHex(want)]);
      }
    }
    expect(assets.responses.size.entries).toBe(1 + a.pages.count);
    const beyond = await ask(encodePageRequest({ campaign, requestId: 9, page: a.pages.count }));
    expect(errorCode(beyond.replies[0]!.payload)).toBe(CODES.UNKNOWN_BLOCK);
    assets.drop(campaign); // an abort, or a halt by the root of trust
    expect(assets.responses.size).toEqual({ entries: 0, bytes: 0 });
  });

  it('a request whose first bytes name a type but that does not parse is BAD_REQUEST, as with a full decode', async () => {
    const good = encodePageRequest({ campaign, requestId: 5, page: 0 });
    const cases: Uint8Array[] = [
      Uint8Array.of(0xa1, 0x00, 0x04), // a page request with no fields
      Uint8Array.from([...good, 0x00]), // a trailing byte
      Uint8Array.of(0xa2, 0x00, 0x04, 0x00, 0x04), // key 0 twice
      Uint8Array.of(0xa1, 0x00, 0x09), // a status event on the request topic
      Uint8Array.of(0xa1, 0x00, 0x17), // no such type
      Uint8Array.of(0xa3, 0x00, 0x04, 0x01), // truncated
    ];
    for (const payload of cases) {
      const a = await ask(payload);
      expect([a.kind, a.malformed, errorCode(a.replies[0]!.payload)]).toEqual(['error', true, CODES.BAD_REQUEST]);
    }
    expect((await ask(good)).kind).toBe('page');
  });
});

function errorCode(payload: Uint8Array): number | undefined {
  const e = parseErrorReply(payload);
  return e.ok ? e.value.code : undefined;
}
