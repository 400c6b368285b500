/**
 * What a server instance serves for a campaign, loaded once per instance from the data folder: the
 * manifest envelope, the digest pages (host/digests.ts, cut from the digest table written at campaign
 * creation) and the image file, read with positional reads behind a small LRU cache of blocks (a
 * wave of devices asks for the same blocks at about the same time).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { parseEnvelope } from '../../shared/cose.js';
import { DIGEST_BYTES, LIMITS } from '../../shared/limits.js';
import { type Manifest, parseManifest } from '../../shared/manifest.js';
import { encodeManifestResponse, encodePageResponse } from '../../shared/ota/messages.js';
import { type DigestPages, digestPages } from '../digests.js';
import { FwsealError } from '../errors.js';
import { readFileLimited } from '../io.js';
import { ResponseTemplates, templateOf, withRequestId } from './response-templates.js';
import { type CampaignRow, type OtaStore } from './store.js';

/** Blocks kept in memory per instance (64 KiB blocks: 16 MiB). */
const BLOCK_CACHE_ENTRIES = LIMITS.blockCacheEntries;

export type CampaignAssets = {
  readonly id: string;
  readonly envelope: Uint8Array;
  readonly manifest: Manifest;
  readonly pages: DigestPages;
  readonly imageSize: number;
  readonly blockSize: number;
  readonly blockCount: number;
  block(index: number): Uint8Array;
  /** The manifest response (SPEC.md §12.2) for a request id, from a template made once (response-templates.ts). */
  manifestResponse(requestId: number): Uint8Array;
  /** Digest page `page` (< pages.count) as a page response for a request id, from a template made once per page. */
  pageResponse(page: number, requestId: number): Uint8Array;
  close(): void;
};

export function digestTableFile(store: Pick<OtaStore, 'digestsDir'>, campaign: string): string {
  return join(store.digestsDir, `${campaign}.digests`);
}

export function imageFile(store: Pick<OtaStore, 'imagesDir'>, sha256hex: string): string {
  return join(store.imagesDir, sha256hex);
}

class BlockCache {
  private readonly map = new Map<string, Uint8Array>();
  get(key: string): Uint8Array | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key); // most recently used last
      this.map.set(key, v);
    }
    return v;
  }
  set(key: string, value: Uint8Array): void {
    this.map.set(key, value);
    if (this.map.size > BLOCK_CACHE_ENTRIES) this.map.delete(this.map.keys().next().value as string);
  }
  dropPrefix(prefix: string): void {
    for (const k of [...this.map.keys()]) if (k.startsWith(prefix)) this.map.delete(k);
  }
}

/** Per-instance cache of campaign assets (immutable once the campaign exists). */
export class AssetCache {
  private readonly assets = new Map<string, CampaignAssets>();
  private readonly blocks = new BlockCache();
  /** Manifest and page response templates (response-templates.ts), a campaign's dropped with it. */
  readonly responses = new ResponseTemplates();
  constructor(private readonly store: OtaStore) {}

  /** The campaign's assets: from memory once loaded (no store read on the hot path). */
  async get(id: string): Promise<CampaignAssets> {
    const have = this.assets.get(id);
    if (have) return have;
    const row = await this.store.campaign(id);
    if (!row) throw new FwsealError('INTERNAL', `no campaign ${id}`);
    // PostgreSQL: the image and digest table into this instance's cache, checked by their hashes (SPEC.md §12.9).
    await this.store.shared?.cacheCampaign(row);
    // Loaded by another request while the row was read: keep that one, never two open image files.
    const loaded = this.assets.get(id);
    if (loaded) return loaded;
    const a = this.load(row);
    this.assets.set(id, a);
    return a;
  }

  drop(id: string): void {
    this.assets.get(id)?.close();
    this.assets.delete(id);
    this.blocks.dropPrefix(`${id}/`);
    this.responses.dropPrefix(`${id}/`);
  }

  close(): void {
    for (const id of [...this.assets.keys()]) this.drop(id);
  }

  private load(row: CampaignRow): CampaignAssets {
    const envelope = new Uint8Array(row.manifest);
    const env = parseEnvelope(envelope);
    const m = env.ok ? parseManifest(env.envelope.payload) : null;
    if (!m?.ok) throw new FwsealError('INTERNAL', `stored manifest of campaign ${row.id} does not parse`);
    const manifest = m.value;
    const leaves = Math.ceil(manifest.imageSize / manifest.chunkSize);
    const pages = digestPages(readFileLimited(digestTableFile(this.store, row.id), 8 + leaves * DIGEST_BYTES, 'digest table'), manifest);
    let fd: number | null = null;
    try {
      fd = openSync(imageFile(this.store, row.image_sha), 'r');
    } catch (e) {
      throw new FwsealError('IO', `cannot open the image of campaign ${row.id}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    const blocks = this.blocks;
    const responses = this.responses;
    const { id } = row;
    const blockSize = row.block_size;
    const imageSize = manifest.imageSize;
    return {
      id,
      envelope,
      manifest,
      pages,
      imageSize,
      blockSize,
      blockCount: Math.ceil(imageSize / blockSize),
      block(index: number): Uint8Array {
        const key = `${id}/${index}`;
        const cached = blocks.get(key);
        if (cached) return cached;
        if (fd === null) throw new FwsealError('INTERNAL', 'campaign assets closed');
        const start = index * blockSize;
        const length = Math.min(blockSize, imageSize - start);
        const buf = new Uint8Array(length);
        let off = 0;
        while (off < length) {
          const n = readSync(fd, buf, off, length - off, start + off);
          if (n === 0) throw new FwsealError('IO', `image of campaign ${id} is shorter than announced`);
          off += n;
        }
        blocks.set(key, buf);
        return buf;
      },
      manifestResponse(requestId: number): Uint8Array {
        const t = responses.get(`${id}/m`, () => templateOf((rid) => encodeManifestResponse({ campaign: id, requestId: rid, manifest: envelope })));
        return withRequestId(t, requestId);
      },
      pageResponse(page: number, requestId: number): Uint8Array {
        const make = () =>
          templateOf((rid) => encodePageResponse({ campaign: id, requestId: rid, page, leaves: pages.leaves(page), proof: pages.proof(page) }));
        return withRequestId(responses.get(`${id}/p${page}`, make), requestId);
      },
      close() {
        if (fd !== null) closeSync(fd);
        fd = null;
      },
    };
  }
}
