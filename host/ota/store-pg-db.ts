/**
 * The PostgreSQL connection of one server instance (SPEC.md §12.9 "PostgreSQL"): a pool, one
 * transaction helper that every atomic store step goes through (retried whole on a deadlock or a
 * serialization failure, which is why the store's `change` and `decide` callbacks must be pure), the
 * bound on store calls in flight that device traffic may start, and the schema, created or brought up
 * to date under an advisory lock on first connect (table `schema_version`).
 */
import pg from 'pg';
import { FwsealError } from '../errors.js';

/** Connections per instance: a few instances stay well below PostgreSQL's default max_connections of 100. */
export const PG_POOL_SIZE = 10;
/**
 * Store calls that device messages (requests, status events) may have in flight on one instance; one
 * more is refused SERVER_BUSY. SQLite settled every call within its turn; a database server does not,
 * and without a bound a burst of status events would queue without limit (SPEC.md §12.9 "PostgreSQL").
 */
export const PG_MAX_PENDING = 4096;
/**
 * Connections the status path may hold at once (SPEC.md §12.9 "Status ingest"): its calls wait their
 * turn here, without a time limit (their number is bounded by maxStatusBacklog), so that they never
 * wait in the pool's own queue, where CONNECT_TIMEOUT_MS counts; the other connections stay free for
 * requests, operators and the wave engine.
 */
export const PG_STATUS_LANES = PG_POOL_SIZE - 2;
/** How long getting a connection may take before a call fails (the database is down or saturated). */
const CONNECT_TIMEOUT_MS = 10_000;
/** A transaction is run again at most this many times after a deadlock or serialization failure. */
const TX_ATTEMPTS = 5;
/** Advisory lock keys (two int4: a namespace, then the key): one space per purpose, none shared with other programs' single-key locks. */
export const LOCK = Object.freeze({ schema: [0x66777301, 0], root: [0x66777302, 0], group: 0x66777303 });

/** What a statement runs on: the pool (one statement, autocommit) or a transaction's client. */
export type Queryable = { query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>> };

/** Thrown inside a transaction to run it again from the start (another instance got there first). */
export class RetryTransaction extends Error {}

/** BIGINT (int8) columns hold counters, timestamps and sizes below 2^53: read them as numbers, not strings. */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) => (oid === 20 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text'))) as never,
};

/**
 * The URL of `--db`: postgres:// or postgresql://, without a password (secrets never come from
 * flags: the password comes from PGPASSWORD, which the client reads itself).
 */
export function checkDbUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FwsealError('USAGE', '--db must be a postgres:// URL');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new FwsealError('USAGE', '--db must be a postgres:// URL');
  if (u.password !== '' || u.searchParams.has('password')) throw new FwsealError('USAGE', '--db must not carry the password: set PGPASSWORD instead');
  return u;
}

/** Where the database is, for messages: never the user's password (there is none in the URL) nor the query. */
export const dbLabel = (u: URL): string => `${u.hostname || 'localhost'}:${u.port || '5432'}${u.pathname}`;

const RETRYABLE = new Set(['40001', '40P01']);

export class PgDb {
  readonly pool: pg.Pool;
  private pending = 0;
  /** Status calls running now, and the ones waiting for a lane (in arrival order). */
  private lanesBusy = 0;
  private readonly laneQueue: (() => void)[] = [];

  constructor(
    url: URL,
    private readonly maxPending = PG_MAX_PENDING,
    connectTimeoutMs = CONNECT_TIMEOUT_MS,
  ) {
    this.pool = new pg.Pool({ connectionString: url.href, max: PG_POOL_SIZE, connectionTimeoutMillis: connectTimeoutMs, types: TYPES });
    // An idle connection the server closed (restart, failover) must not crash the process: the pool replaces it.
    this.pool.on('error', () => undefined);
  }

  /** One statement on any pooled connection (atomic by itself). */
  async rows<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    return (await this.pool.query<R>(text, values)).rows;
  }

  /**
   * A store call started by device traffic: refused with SERVER_BUSY (a request gets that reply, a
   * status event is dropped and logged) once PG_MAX_PENDING such calls are in flight.
   */
  async bounded<T>(run: () => Promise<T>): Promise<T> {
    if (this.pending >= this.maxPending) throw new FwsealError('SERVER_BUSY', `${this.pending} database calls in flight`);
    this.pending++;
    try {
      return await run();
    } finally {
      this.pending--;
    }
  }

  /**
   * A call of the status path: runs once one of PG_STATUS_LANES is free. Waiting here has no time
   * limit (a burst of status events waits for the database instead of failing on the pool's connect
   * timeout); the caller bounds how many wait (status-ingest.ts).
   */
  async statusLane<T>(run: () => Promise<T>): Promise<T> {
    if (this.lanesBusy >= PG_STATUS_LANES) await new Promise<void>((go) => this.laneQueue.push(go));
    else this.lanesBusy++;
    try {
      return await run();
    } finally {
      const next = this.laneQueue.shift();
      if (next)
        next(); // the lane passes to the next waiter
      else this.lanesBusy--;
    }
  }

  /** `body` in one transaction (READ COMMITTED; the callers take the locks they need), run again after a deadlock or a RetryTransaction. */
  async tx<T>(body: (c: Queryable) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const c = await this.pool.connect();
      let broken = false;
      try {
        await c.query('BEGIN');
        const result = await body(c);
        await c.query('COMMIT');
        return result;
      } catch (e) {
        try {
          await c.query('ROLLBACK');
        } catch {
          broken = true; // the connection is gone: never hand it out again
        }
        const again = e instanceof RetryTransaction || RETRYABLE.has((e as { code?: string }).code ?? '');
        if (!again || attempt >= TX_ATTEMPTS) throw e instanceof RetryTransaction ? new FwsealError('CONFLICT', 'the database kept changing; try again') : e;
      } finally {
        c.release(broken);
      }
    }
  }

  /** Bring the schema up to `migrations.length`: every missing step in one transaction, under the schema lock (two instances may start at once). */
  async migrate(migrations: readonly string[]): Promise<void> {
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', LOCK.schema);
      await c.query('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied BIGINT NOT NULL)');
      const have = (await c.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_version')).rows[0]?.v ?? 0;
      if (have > migrations.length)
        throw new FwsealError('IO', `the database holds schema version ${have}; this fwseal knows up to ${migrations.length}: upgrade fwseal`);
      for (let v = have + 1; v <= migrations.length; v++) {
        await c.query(migrations[v - 1]);
        await c.query('INSERT INTO schema_version (version, applied) VALUES ($1, $2)', [v, Date.now()]);
      }
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** Open the pool and check the connection: a database that is not there fails the start (IO), with where it is, never with credentials. */
export async function connectDb(url: URL, maxPending?: number, connectTimeoutMs?: number): Promise<PgDb> {
  const db = new PgDb(url, maxPending, connectTimeoutMs);
  try {
    await db.rows('SELECT 1');
  } catch (e) {
    await db.close().catch(() => undefined);
    const code = (e as { code?: string }).code;
    throw new FwsealError('IO', `cannot use the PostgreSQL database ${dbLabel(url)}: ${code ?? (e as Error).message}`);
  }
  return db;
}
