/**
 * Release assets in PostgreSQL (SPEC.md §12.9 "PostgreSQL"): instances on different machines share no
 * folder, so image files and digest tables are kept in the database, content-addressed (table `blobs`:
 * SHA-256 and size, written last; `blob_chunks`: the bytes in rows of 1 MiB), each written in one
 * transaction after it was hashed. Each instance's `imagesDir` and `digestsDir` are its cache, filled
 * on first use and checked against the SHA-256 before anything is served from them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { toHex } from '../../shared/bytes.js';
import { FwsealError } from '../errors.js';
import { NEW_FILE_FLAGS, syncFolder } from '../io.js';
import { type CampaignRow, type SharedAssets } from './store.js';
import { type PgDb, type Queryable } from './store-pg-db.js';

/** Bytes per blob_chunks row: large enough for few rows, small enough to stream. */
export const BLOB_ROW_BYTES = 1 << 20;

const digestFile = (digestsDir: string, campaign: string) => join(digestsDir, `${campaign}.digests`);

/** SHA-256 (hex) of a file, streamed; null when there is no such file. */
async function hashFile(path: string): Promise<string | null> {
  const h = createHash('sha256');
  try {
    for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new FwsealError('IO', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return h.digest('hex');
}

const stored = async (c: Queryable, sha: string) => (await c.query('SELECT 1 FROM blobs WHERE sha256 = $1', [Buffer.from(sha, 'hex')])).rows.length > 0;

/**
 * The file at `path` as blob `sha` (hex), inside the caller's transaction, unless already stored.
 * Hashed while it is copied: a file that does not hash to `sha` stores nothing (IO; the caller's
 * transaction rolls back). Identical concurrent writers both succeed (ON CONFLICT: the same bytes).
 */
export async function storeBlob(c: Queryable, sha: string, path: string): Promise<void> {
  if (await stored(c, sha)) return;
  const key = Buffer.from(sha, 'hex');
  const h = createHash('sha256');
  const file = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new FwsealError('IO', `cannot open ${path}: ${e.code ?? 'error'}`);
  });
  let size = 0;
  try {
    const buf = Buffer.allocUnsafe(BLOB_ROW_BYTES);
    for (let idx = 0; ; idx++) {
      let n = 0;
      while (n < BLOB_ROW_BYTES) {
        const { bytesRead } = await file.read(buf, n, BLOB_ROW_BYTES - n, size + n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      if (n === 0 && idx > 0) break;
      h.update(buf.subarray(0, n));
      await c.query('INSERT INTO blob_chunks (sha256, idx, bytes) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [key, idx, buf.subarray(0, n)]);
      size += n;
      if (n < BLOB_ROW_BYTES) break;
    }
  } finally {
    await file.close();
  }
  if (h.digest('hex') !== sha) throw new FwsealError('IO', `${path} does not hash to ${sha}: not stored`);
  await c.query('INSERT INTO blobs (sha256, size, stored) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [key, size, Date.now()]);
}

/** Blob `sha` from the database to `path` (a new file, fsynced, renamed into place), checked against its hash; false when not stored. */
async function fetchBlob(db: PgDb, sha: string, path: string): Promise<boolean> {
  const key = Buffer.from(sha, 'hex');
  const row = (await db.rows<{ size: number }>('SELECT size FROM blobs WHERE sha256 = $1', [key]))[0];
  if (!row) return false;
  const tmp = join(dirname(path), `.fetch-${randomBytes(6).toString('hex')}`);
  const file = await open(tmp, NEW_FILE_FLAGS, 0o644).catch((e: NodeJS.ErrnoException) => {
    throw new FwsealError('IO', `cannot write ${tmp}: ${e.code ?? 'error'}`);
  });
  const h = createHash('sha256');
  let size = 0;
  try {
    const rows = Math.max(1, Math.ceil(row.size / BLOB_ROW_BYTES));
    for (let idx = 0; idx < rows; idx++) {
      const part = (await db.rows<{ bytes: Buffer }>('SELECT bytes FROM blob_chunks WHERE sha256 = $1 AND idx = $2', [key, idx]))[0];
      if (!part) throw new FwsealError('IO', `blob ${sha} misses its row ${idx}`);
      h.update(part.bytes);
      await file.write(part.bytes, 0, part.bytes.length, size);
      size += part.bytes.length;
    }
    if (size !== row.size || h.digest('hex') !== sha) throw new FwsealError('IO', `blob ${sha} in the database does not hash to its name`);
    await file.sync();
    await file.close();
    await rename(tmp, path);
    syncFolder(dirname(path));
    return true;
  } catch (e) {
    await file.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
}

/** SharedAssets (store.ts) over `blobs`, `blob_chunks` and `campaign_digests`. */
export class PgAssets implements SharedAssets {
  /** Cache files checked against their hash by this process (they are immutable once there). */
  private readonly verified = new Set<string>();
  /** Cache fills under way, so two requests for one file fetch it once. */
  private readonly filling = new Map<string, Promise<boolean>>();

  constructor(
    private readonly db: PgDb,
    private readonly imagesDir: string,
    private readonly digestsDir: string,
  ) {}

  async putImage(sha256hex: string, path: string): Promise<void> {
    await this.db.tx((c) => storeBlob(c, sha256hex, path));
  }

  cacheImage(sha256hex: string): Promise<boolean> {
    return this.cache(join(this.imagesDir, sha256hex), sha256hex);
  }

  async cacheCampaign(row: CampaignRow): Promise<void> {
    if (!(await this.cacheImage(row.image_sha))) throw new FwsealError('IO', `the database holds no image ${row.image_sha} for campaign ${row.id}`);
    const d = (await this.db.rows<{ sha256: Buffer }>('SELECT sha256 FROM campaign_digests WHERE campaign = $1', [row.id]))[0];
    if (!d || !(await this.cache(digestFile(this.digestsDir, row.id), toHex(d.sha256))))
      throw new FwsealError('IO', `the database holds no digest table for campaign ${row.id}`);
  }

  /**
   * Inside insertCampaign's transaction: the digest table createCampaign wrote for the campaign, and
   * its image when the database lacks it (placed in the folder by hand), so no instance ever sees a
   * campaign whose assets it cannot fetch. A row without local files (the store contract's) stores none.
   */
  async storeCampaign(c: Queryable, row: Pick<CampaignRow, 'id' | 'image_sha'>): Promise<void> {
    const table = digestFile(this.digestsDir, row.id);
    const sha = await hashFile(table);
    if (sha !== null) {
      await storeBlob(c, sha, table);
      await c.query('INSERT INTO campaign_digests (campaign, sha256) VALUES ($1, $2)', [row.id, Buffer.from(sha, 'hex')]);
      this.verified.add(table);
    }
    const image = join(this.imagesDir, row.image_sha);
    if (/^[0-9a-f]{64}$/.test(row.image_sha) && !(await stored(c, row.image_sha)) && (await hashFile(image)) === row.image_sha)
      await storeBlob(c, row.image_sha, image);
  }

  private cache(path: string, sha: string): Promise<boolean> {
    const busy = this.filling.get(path);
    if (busy) return busy;
    const run = this.fill(path, sha).finally(() => this.filling.delete(path));
    this.filling.set(path, run);
    return run;
  }

  /** A cache file that hashes to its SHA-256 is used as it is; anything else (missing, torn, altered) is fetched again. */
  private async fill(path: string, sha: string): Promise<boolean> {
    if (this.verified.has(path)) return true;
    if ((await hashFile(path)) === sha || (await fetchBlob(this.db, sha, path))) {
      this.verified.add(path);
      return true;
    }
    return false;
  }
}
