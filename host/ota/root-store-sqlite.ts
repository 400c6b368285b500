/**
 * The root of trust in SQLite (SPEC.md §12.13, §12.9 "Persistence and several instances"): the
 * tables trust_bundles, revocation_lists and revocation_acks of the data folder's fwseal.db, behind
 * RootStoreApi (root-store.ts). A root change is one IMMEDIATE transaction that re-reads the newest
 * rows, so two instances sharing the folder never store two lists of one version.
 */
import type Database from 'better-sqlite3';
import {
  type Histogram,
  type ListRow,
  type NewestRoot,
  PROPAGATION_BUCKETS,
  type RootChange,
  type RootStoreApi,
  type RootVersions,
  type TrustRow,
} from './root-store.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS trust_bundles (
  version INTEGER PRIMARY KEY, envelope BLOB NOT NULL, digest BLOB NOT NULL, accepted INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revocation_lists (
  version INTEGER PRIMARY KEY, envelope BLOB NOT NULL, digest BLOB NOT NULL,
  trust_version INTEGER NOT NULL, published INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS revocation_acks (
  version INTEGER NOT NULL, device TEXT NOT NULL, seconds REAL NOT NULL,
  PRIMARY KEY (version, device)) WITHOUT ROWID;
`;

function prepare(db: Database.Database) {
  const bucketSums = PROPAGATION_BUCKETS.map((b, i) => `sum(seconds <= ${b}) AS b${i}`).join(', ');
  return {
    versions: db.prepare(`SELECT (SELECT max(version) FROM trust_bundles) AS trust, (SELECT max(version) FROM revocation_lists) AS list`),
    trust: db.prepare('SELECT * FROM trust_bundles WHERE version = ?'),
    newestTrust: db.prepare('SELECT * FROM trust_bundles ORDER BY version DESC LIMIT 1'),
    trustVersions: db.prepare('SELECT version FROM trust_bundles ORDER BY version'),
    trustChain: db.prepare('SELECT * FROM trust_bundles ORDER BY version'),
    list: db.prepare('SELECT * FROM revocation_lists WHERE version = ?'),
    newestList: db.prepare('SELECT * FROM revocation_lists ORDER BY version DESC LIMIT 1'),
    listFor: db.prepare('SELECT * FROM revocation_lists WHERE trust_version <= ? ORDER BY version DESC LIMIT 1'),
    insertTrust: db.prepare('INSERT INTO trust_bundles (version, envelope, digest, accepted) VALUES (@version, @envelope, @digest, @accepted)'),
    insertList: db.prepare(`INSERT INTO revocation_lists (version, envelope, digest, trust_version, published)
      VALUES (@version, @envelope, @digest, @trust_version, @published)`),
    // One observation per device and list (the key): the first acknowledgement only, on any instance.
    acknowledge: db.prepare(`INSERT OR IGNORE INTO revocation_acks (version, device, seconds)
      SELECT version, @device, max(0, @now - published) / 1000.0 FROM revocation_lists WHERE version > @before AND version <= @after`),
    propagation: db.prepare(`SELECT count(*) AS n, coalesce(sum(seconds), 0) AS total, ${bucketSums} FROM revocation_acks`),
    revocationVersions: db.prepare('SELECT revocation_version AS v, count(*) AS n FROM devices GROUP BY revocation_version ORDER BY v'),
    trustVersionsSeen: db.prepare('SELECT trust_version AS v, count(*) AS n FROM devices GROUP BY trust_version ORDER BY v'),
    enforcing: db.prepare(`SELECT count(*) AS online, coalesce(sum(coalesce(revocation_version, 0) >= @version), 0) AS enforcing
      FROM devices WHERE last_seen >= @since`),
  };
}

/** Methods are `async` over synchronous better-sqlite3 calls: each statement runs when the method is called. */
export class SqliteRootStore implements RootStoreApi {
  private readonly stmts;

  /** `db` already holds the devices table (store-sqlite.ts creates it first). */
  constructor(private readonly db: Database.Database) {
    db.exec(SCHEMA);
    this.stmts = prepare(db);
  }

  async versions(): Promise<RootVersions> {
    const r = this.stmts.versions.get() as { trust: number | null; list: number | null };
    return { trust: r.trust ?? 0, list: r.list ?? 0 };
  }

  async trust(version: number): Promise<TrustRow | undefined> {
    return this.stmts.trust.get(version) as TrustRow | undefined;
  }

  async trustVersions(): Promise<number[]> {
    return (this.stmts.trustVersions.all() as { version: number }[]).map((r) => r.version);
  }

  async trustChain(): Promise<TrustRow[]> {
    return this.stmts.trustChain.all() as TrustRow[];
  }

  async list(version: number): Promise<ListRow | undefined> {
    return this.stmts.list.get(version) as ListRow | undefined;
  }

  async listFor(trustVersion: number): Promise<ListRow | undefined> {
    return this.stmts.listFor.get(trustVersion) as ListRow | undefined;
  }

  async change<T>(decide: (newest: NewestRoot) => RootChange<T>, now = Date.now()): Promise<T> {
    return this.db
      .transaction(() => {
        const trust = this.stmts.newestTrust.get() as TrustRow | undefined;
        const list = this.stmts.newestList.get() as ListRow | undefined;
        const d = decide({ ...(trust ? { trust } : {}), ...(list ? { list } : {}) });
        if (d.trust) this.stmts.insertTrust.run({ ...d.trust, accepted: now });
        if (d.list) this.stmts.insertList.run({ ...d.list, published: now });
        return d.result;
      })
      .immediate();
  }

  /**
   * A device moved from revocation version `before` to `after`: one propagation time for each list in
   * between. Synchronous, for SqliteStore.recordOnline's transaction only.
   */
  acknowledgeInTransaction(device: string, before: number, after: number, now: number): void {
    this.stmts.acknowledge.run({ device, before, after, now });
  }

  async propagation(): Promise<Histogram> {
    const r = this.stmts.propagation.get() as Record<string, number | null>;
    return { buckets: PROPAGATION_BUCKETS.map((_, i) => r[`b${i}`] ?? 0), count: r.n ?? 0, sum: r.total ?? 0 };
  }

  async revocationVersions(): Promise<{ v: number | null; n: number }[]> {
    return this.stmts.revocationVersions.all() as { v: number | null; n: number }[];
  }

  async trustVersionsSeen(): Promise<{ v: number | null; n: number }[]> {
    return this.stmts.trustVersionsSeen.all() as { v: number | null; n: number }[];
  }

  async enforcing(version: number, since: number): Promise<{ online: number; enforcing: number }> {
    return this.stmts.enforcing.get({ version, since }) as { online: number; enforcing: number };
  }
}
