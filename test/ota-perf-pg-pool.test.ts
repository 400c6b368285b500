/**
 * The PostgreSQL pool is warm from the start (host/ota/store-pg-db.ts PG_POOL_WARM, SPEC.md §12.9
 * "PostgreSQL"): connectDb opens PG_POOL_WARM connections and the pool keeps them past its idle
 * time-out, so the first burst of answers never waits for a connection to open.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDb, PG_POOL_WARM, type PgDb } from '../host/ota/store-pg-db.js';
import { type Postgres, startPostgres } from './support/postgres.js';

describe('the PostgreSQL pool at start', () => {
  let postgres: Postgres;
  let db: PgDb | null = null;
  beforeAll(async () => {
    postgres = await startPostgres();
    process.env.PGPASSWORD = postgres.env.PGPASSWORD; // as `fwseal serve` gets it: never in the URL
  }, 60_000);
  afterAll(async () => {
    await db?.close();
    await postgres?.stop();
  });

  it('holds PG_POOL_WARM open connections once connected, and keeps them as its minimum', async () => {
    db = await connectDb(new URL(await postgres.database()));
    expect([db.pool.totalCount, db.pool.idleCount]).toEqual([PG_POOL_WARM, PG_POOL_WARM]);
    expect((db.pool as unknown as { options: { min: number } }).options.min).toBe(PG_POOL_WARM);
    // A burst of as many statements as the pool holds warm opens no new connection.
    await Promise.all(Array.from({ length: PG_POOL_WARM }, () => db!.rows('SELECT pg_sleep(0.01)')));
    expect(db.pool.totalCount).toBe(PG_POOL_WARM);
  });
});
