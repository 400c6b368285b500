/**
 * The fleet's root of trust in SQLite (SPEC.md §12.13, §12.9 "Persistence"): every trust bundle
 * version the server accepted, every revocation list it accepted (with the trust bundle version that
 * was the newest when it came), and each device's acknowledgement of a list, in the data folder's
 * fwseal.db, so a restarted server and every instance sharing the folder agree on one root of trust.
 * What may be stored is decided in root-of-trust.ts; this file only keeps and counts.
 */
import type Database from 'better-sqlite3';

export type TrustRow = {
  readonly version: number;
  readonly envelope: Buffer;
  /** SHA-256 of the bundle's payload (what the verifier calls its digest). */
  readonly digest: Buffer;
  readonly accepted: number;
};

export type ListRow = {
  readonly version: number;
  readonly envelope: Buffer;
  /** SHA-256 of the list's payload: what a device reports in `online` key 14. */
  readonly digest: Buffer;
  /** The newest trust bundle version when the list was accepted: the list verifies under it. */
  readonly trust_version: number;
  /** When the list was accepted (ms): the start of its propagation time. */
  readonly published: number;
};

/** Upper bounds (seconds) of fwseal_revocation_propagation_seconds: a second or two online, hours for devices that were away. */
export const PROPAGATION_BUCKETS = Object.freeze([0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400]);

export type Histogram = { readonly buckets: readonly number[]; readonly count: number; readonly sum: number };

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

export class RootStore {
  private readonly stmts;

  constructor(private readonly db: Database.Database) {
    db.exec(SCHEMA);
    const bucketSums = PROPAGATION_BUCKETS.map((b, i) => `sum(seconds <= ${b}) AS b${i}`).join(', ');
    this.stmts = {
      versions: db.prepare(`SELECT (SELECT max(version) FROM trust_bundles) AS trust, (SELECT max(version) FROM revocation_lists) AS list`),
      trust: db.prepare('SELECT * FROM trust_bundles WHERE version = ?'),
      trustVersions: db.prepare('SELECT version FROM trust_bundles ORDER BY version'),
      list: db.prepare('SELECT * FROM revocation_lists WHERE version = ?'),
      listFor: db.prepare('SELECT * FROM revocation_lists WHERE trust_version <= ? ORDER BY version DESC LIMIT 1'),
      insertTrust: db.prepare('INSERT INTO trust_bundles (version, envelope, digest, accepted) VALUES (@version, @envelope, @digest, @accepted)'),
      insertList: db.prepare(`INSERT INTO revocation_lists (version, envelope, digest, trust_version, published)
        VALUES (@version, @envelope, @digest, @trust_version, @published)`),
      deviceRevocation: db.prepare('SELECT revocation_version AS v FROM devices WHERE id = ?'),
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

  /** The newest trust bundle and revocation list versions (0: none): one cheap read to see whether another instance changed them. */
  versions(): { trust: number; list: number } {
    const r = this.stmts.versions.get() as { trust: number | null; list: number | null };
    return { trust: r.trust ?? 0, list: r.list ?? 0 };
  }

  trust(version: number): TrustRow | undefined {
    return this.stmts.trust.get(version) as TrustRow | undefined;
  }

  trustVersions(): number[] {
    return (this.stmts.trustVersions.all() as { version: number }[]).map((r) => r.version);
  }

  list(version: number): ListRow | undefined {
    return this.stmts.list.get(version) as ListRow | undefined;
  }

  /** The newest list accepted while trust bundle `trustVersion` or an older one was the newest. */
  listFor(trustVersion: number): ListRow | undefined {
    return this.stmts.listFor.get(trustVersion) as ListRow | undefined;
  }

  /**
   * Store what `decide` returns, in one IMMEDIATE transaction: `decide` reads the newest rows itself
   * (another instance may have stored newer ones since this one last looked) and returns the rows to
   * add, or null for no change.
   */
  change<T>(decide: () => { result: T; trust?: Omit<TrustRow, 'accepted'>; list?: Omit<ListRow, 'published'> }, now = Date.now()): T {
    return this.db
      .transaction(() => {
        const d = decide();
        if (d.trust) this.stmts.insertTrust.run({ ...d.trust, accepted: now });
        if (d.list) this.stmts.insertList.run({ ...d.list, published: now });
        return d.result;
      })
      .immediate();
  }

  /** The revocation version a device last acknowledged (null: unknown device, or it never reported one). */
  deviceRevocationVersion(device: string): number | null {
    return (this.stmts.deviceRevocation.get(device) as { v: number | null } | undefined)?.v ?? null;
  }

  /** A device moved from revocation version `before` to `after`: one propagation time for each list in between. */
  acknowledge(device: string, before: number, after: number, now = Date.now()): void {
    this.stmts.acknowledge.run({ device, before, after, now });
  }

  /** The propagation histogram over every acknowledgement (cumulative buckets, PROPAGATION_BUCKETS). */
  propagation(): Histogram {
    const r = this.stmts.propagation.get() as Record<string, number | null>;
    return { buckets: PROPAGATION_BUCKETS.map((_, i) => r[`b${i}`] ?? 0), count: r.n ?? 0, sum: r.total ?? 0 };
  }

  /** Known devices by the revocation list version they acknowledged (null: never reported one). */
  revocationVersions(): { v: number | null; n: number }[] {
    return this.stmts.revocationVersions.all() as { v: number | null; n: number }[];
  }

  /** Known devices by the trust bundle version they reported (null: never reported one). */
  trustVersionsSeen(): { v: number | null; n: number }[] {
    return this.stmts.trustVersionsSeen.all() as { v: number | null; n: number }[];
  }

  /** Devices seen since `since` (ms), and how many of them acknowledged revocation version `version` or newer. */
  enforcing(version: number, since: number): { online: number; enforcing: number } {
    return this.stmts.enforcing.get({ version, since }) as { online: number; enforcing: number };
  }
}
