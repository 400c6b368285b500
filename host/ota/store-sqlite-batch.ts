/**
 * SQLite status writes and fetch records gathered into one transaction (SPEC.md §12.9 "Persistence and
 * several instances"): `recordStatus`, `recordOnline` and `recordFetch` were one transaction each, and at a burst of
 * status events the BEGIN/COMMIT pairs (a WAL append each, ~45 µs) cost more than the statements
 * (tools/bench ota, delivery rows, profiled). Calls made in one turn of the event loop now run in one
 * transaction at its end (setImmediate), in the order they were made, up to SQLITE_WRITE_BATCH. No
 * timer: waking an idle server for it cost more than the commit it saves (a lone event: ~350 µs of CPU
 * with a 5 ms timer against ~50 µs committed at once, measured). A call's promise settles only after
 * that transaction committed, so whatever waits for it (a device's next status event, the wave step it
 * triggers) reads it from the database as before; `close()` writes what is still gathered. A call that
 * fails fails alone: the batch is then run again with each call in its own savepoint, so the others
 * commit and only the failing one rejects, as with one transaction each.
 */
import type Database from 'better-sqlite3';

/**
 * Most calls in one transaction (the rest go in the next): bounds how long one transaction holds the
 * database's write lock against other instances on the same folder. As PostgreSQL's PG_STATUS_BATCH.
 */
export const SQLITE_WRITE_BATCH = 256;

type Gathered = { readonly run: () => unknown; readonly resolve: (v: unknown) => void; readonly reject: (e: unknown) => void };
type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

export class SqliteWriteBatch {
  private gathered: Gathered[] = [];
  private scheduled: NodeJS.Immediate | null = null;
  /** Every call in one transaction: the common case, no savepoints. */
  private readonly together: Database.Transaction<(calls: Gathered[]) => Outcome[]>;
  /** After a failure: each call in its own savepoint (better-sqlite3 nests a transaction function as SAVEPOINT). */
  private readonly oneByOne: Database.Transaction<(calls: Gathered[]) => Outcome[]>;
  /** Transactions committed (tests: a burst takes few). */
  commits = 0;

  constructor(private readonly db: Database.Database) {
    this.together = db.transaction((calls: Gathered[]) => calls.map((c): Outcome => ({ ok: true, value: c.run() })));
    const one = db.transaction((run: () => unknown) => run());
    this.oneByOne = db.transaction((calls: Gathered[]) =>
      calls.map((c): Outcome => {
        try {
          return { ok: true, value: one(c.run) };
        } catch (error) {
          return { ok: false, error };
        }
      }),
    );
  }

  /** Run `run` (synchronous statements) in the next batch, after the calls gathered before it; settles once that batch committed. */
  write<T>(run: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.gathered.push({ run, resolve: resolve as (v: unknown) => void, reject });
      if (this.gathered.length >= SQLITE_WRITE_BATCH) this.flush();
      else this.scheduled ??= setImmediate(() => this.flush());
    });
  }

  /** Calls gathered and not yet written. */
  get pending(): number {
    return this.gathered.length;
  }

  /** Write what is gathered now, in one IMMEDIATE transaction; a transaction that cannot commit fails every call in it. */
  flush(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = null;
    const calls = this.gathered;
    this.gathered = [];
    if (calls.length === 0) return;
    let outcomes: Outcome[];
    try {
      if (!this.db.open) throw new TypeError('The database connection is not open');
      try {
        outcomes = this.together.immediate(calls);
      } catch {
        outcomes = this.oneByOne.immediate(calls); // rolled back: again, so that only the failing call fails
      }
      this.commits++;
    } catch (error) {
      for (const c of calls) c.reject(error);
      return;
    }
    for (const [i, c] of calls.entries()) {
      const o = outcomes[i]!;
      if (o.ok) c.resolve(o.value);
      else c.reject(o.error);
    }
  }
}
