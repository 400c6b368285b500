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
 * Connections opened at start and kept open (the pool's `min`): the first burst of requests finds them
 * ready instead of opening one each (~50 ms measured), which is longer than the 20 ms multicast window
 * (SPEC.md §12.11) and than most answers. As many as answers are prepared at once (PIPELINE_DEPTH, 8).
 */
export const PG_POOL_WARM = 8;
/**
 * Connections the status path may hold at once (SPEC.md §12.9 "Status ingest"): its calls wait their
 * turn here, without a time limit (their number is bounded by maxStatusBacklog), so that they never
 * wait in the pool's own queue, where CONNECT_TIMEOUT_MS counts; the other connections stay free for
 * requests, operators and the wave engine.
 */
export const PG_STATUS_LANES = PG_POOL_SIZE - 2;
/** Most status calls of one kind gathered into one statement (StatusBatcher). */
export const PG_STATUS_BATCH = 256;
/** Statements of one kind the status path runs at once; calls that come meanwhile wait and go together in the next one. */
const BATCHES_IN_FLIGHT = 2;
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
    const sizes = { max: PG_POOL_SIZE, min: PG_POOL_WARM };
    this.pool = new pg.Pool({ connectionString: url.href, ...sizes, connectionTimeoutMillis: connectTimeoutMs, types: TYPES });
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

  /** One statement on any pooled connection, run again after a deadlock or serialization failure (it was rolled back whole). */
  async rowsRetrying<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.rows<R>(text, values);
      } catch (e) {
        if (!RETRYABLE.has((e as { code?: string }).code ?? '') || attempt >= TX_ATTEMPTS) throw e;
      }
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
    // Warm-up: PG_POOL_WARM connections at once (the pool keeps them: `min`).
    await Promise.all(Array.from({ length: PG_POOL_WARM }, () => db.rows('SELECT 1')));
  } catch (e) {
    await db.close().catch(() => undefined);
    const code = (e as { code?: string }).code;
    throw new FwsealError('IO', `cannot use the PostgreSQL database ${dbLabel(url)}: ${code ?? (e as Error).message}`);
  }
  return db;
}

type Waiting<In, Out> = { readonly input: In; readonly key: string | null; readonly resolve: (v: Out) => void; readonly reject: (e: unknown) => void };

/**
 * Calls of one kind on the status path gathered into one statement (SPEC.md §12.9 "PostgreSQL"): while
 * BATCHES_IN_FLIGHT statements of the kind run (each in a status lane), new calls wait and go together,
 * up to PG_STATUS_BATCH, in the next one. A lone call goes at once; a burst costs a round trip (and a
 * socket write on each side) per batch instead of per event. A call whose key is in a statement
 * running now or being gathered waits for a later one (one statement cannot change a row twice, and
 * two statements at once could commit in either order), so one key's calls apply in their order.
 */
export class StatusBatcher<In, Out> {
  private waiting: Waiting<In, Out>[] = [];
  private running = 0;
  /** Keys of the calls in the statements running now. */
  private readonly busyKeys = new Set<string>();

  constructor(
    private readonly db: PgDb,
    /** One statement for every input, the outputs in the inputs' order. */
    private readonly runBatch: (inputs: In[]) => Promise<Out[]>,
    /** Calls whose keys are equal never share a statement; null: any may. */
    private readonly keyOf: (input: In) => string | null = () => null,
  ) {}

  call(input: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.waiting.push({ input, key: this.keyOf(input), resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.waiting.length > 0 && this.running < BATCHES_IN_FLIGHT) {
      const batch: Waiting<In, Out>[] = [];
      const later: Waiting<In, Out>[] = [];
      // Keys taken (running, or in this batch) or passed over: a later call of a passed-over key must not overtake it.
      const taken = new Set(this.busyKeys);
      for (const w of this.waiting) {
        if (batch.length >= PG_STATUS_BATCH || (w.key !== null && taken.has(w.key))) {
          later.push(w);
          if (w.key !== null) taken.add(w.key);
        } else {
          if (w.key !== null) taken.add(w.key);
          batch.push(w);
        }
      }
      this.waiting = later;
      if (batch.length === 0) return; // every waiting call's key is in a running statement: pumped again when one ends
      for (const w of batch) if (w.key !== null) this.busyKeys.add(w.key);
      this.running++;
      void this.db
        .statusLane(() => this.runBatch(batch.map((w) => w.input)))
        .then(
          (outs) => {
            for (const [i, w] of batch.entries()) w.resolve(outs[i]!);
          },
          (e) => {
            for (const w of batch) w.reject(e);
          },
        )
        .finally(() => {
          for (const w of batch) if (w.key !== null) this.busyKeys.delete(w.key);
          this.running--;
          this.pump();
        });
    }
  }
}
