/**
 * The root of trust in PostgreSQL (SPEC.md §12.13, §12.9 "PostgreSQL"): the tables trust_bundles,
 * revocation_lists and revocation_acks behind RootStoreApi (root-store.ts), as root-store-sqlite.ts
 * keeps them. A root change is one transaction that first takes the root lock exclusively (campaign
 * inserts and updates take its shared form while they read the versions, store-pg.ts), then reads the
 * newest rows, so two instances never store two lists or bundles of one version.
 */
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
import { LOCK, type PgDb, type Queryable } from './store-pg-db.js';

/** The newest versions (0: none), read by the root store and, under the shared root lock, by campaign steps. */
export const ROOT_VERSIONS = `SELECT coalesce((SELECT max(version) FROM trust_bundles), 0) AS trust,
  coalesce((SELECT max(version) FROM revocation_lists), 0) AS list`;

const BUCKET_SUMS = PROPAGATION_BUCKETS.map((b, i) => `count(*) FILTER (WHERE seconds <= ${b})::int AS b${i}`).join(', ');

/**
 * A device moved from revocation version `before` to `after`: one propagation time per list in
 * between, the first acknowledgement only (the key), inside the caller's transaction (recordOnline).
 */
export async function acknowledge(c: Queryable, device: string, before: number, after: number, now: number): Promise<void> {
  await c.query(
    `INSERT INTO revocation_acks (version, device, seconds)
      SELECT version, $1, greatest(0, $2::bigint - published) / 1000.0 FROM revocation_lists WHERE version > $3 AND version <= $4
      ON CONFLICT DO NOTHING`,
    [device, now, before, after],
  );
}

export class PgRootStore implements RootStoreApi {
  constructor(private readonly db: PgDb) {}

  async versions(): Promise<RootVersions> {
    return (await this.db.rows<RootVersions>(ROOT_VERSIONS))[0]!;
  }

  async trust(version: number): Promise<TrustRow | undefined> {
    return (await this.db.rows<TrustRow>('SELECT * FROM trust_bundles WHERE version = $1', [version]))[0];
  }

  async trustVersions(): Promise<number[]> {
    return (await this.db.rows<{ version: number }>('SELECT version FROM trust_bundles ORDER BY version')).map((r) => r.version);
  }

  async trustChain(): Promise<TrustRow[]> {
    return this.db.rows<TrustRow>('SELECT * FROM trust_bundles ORDER BY version');
  }

  async list(version: number): Promise<ListRow | undefined> {
    return (await this.db.rows<ListRow>('SELECT * FROM revocation_lists WHERE version = $1', [version]))[0];
  }

  async listFor(trustVersion: number): Promise<ListRow | undefined> {
    return (await this.db.rows<ListRow>('SELECT * FROM revocation_lists WHERE trust_version <= $1 ORDER BY version DESC LIMIT 1', [trustVersion]))[0];
  }

  async change<T>(decide: (newest: NewestRoot) => RootChange<T>, now = Date.now()): Promise<T> {
    return this.db.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1, $2)', LOCK.root);
      const trust = (await c.query<TrustRow>('SELECT * FROM trust_bundles ORDER BY version DESC LIMIT 1')).rows[0];
      const list = (await c.query<ListRow>('SELECT * FROM revocation_lists ORDER BY version DESC LIMIT 1')).rows[0];
      const d = decide({ ...(trust ? { trust } : {}), ...(list ? { list } : {}) });
      if (d.trust)
        await c.query('INSERT INTO trust_bundles (version, envelope, digest, accepted) VALUES ($1, $2, $3, $4)', [
          d.trust.version,
          d.trust.envelope,
          d.trust.digest,
          now,
        ]);
      if (d.list)
        await c.query('INSERT INTO revocation_lists (version, envelope, digest, trust_version, published) VALUES ($1, $2, $3, $4, $5)', [
          d.list.version,
          d.list.envelope,
          d.list.digest,
          d.list.trust_version,
          now,
        ]);
      return d.result;
    });
  }

  async propagation(): Promise<Histogram> {
    const r = (
      await this.db.rows<Record<string, number>>(`SELECT count(*)::int AS n, coalesce(sum(seconds), 0)::float8 AS total, ${BUCKET_SUMS} FROM revocation_acks`)
    )[0]!;
    return { buckets: PROPAGATION_BUCKETS.map((_, i) => r[`b${i}`] ?? 0), count: r.n ?? 0, sum: r.total ?? 0 };
  }

  async revocationVersions(): Promise<{ v: number | null; n: number }[]> {
    return this.db.rows('SELECT revocation_version AS v, count(*)::int AS n FROM devices GROUP BY revocation_version ORDER BY v NULLS FIRST');
  }

  async trustVersionsSeen(): Promise<{ v: number | null; n: number }[]> {
    return this.db.rows('SELECT trust_version AS v, count(*)::int AS n FROM devices GROUP BY trust_version ORDER BY v NULLS FIRST');
  }

  async enforcing(version: number, since: number): Promise<{ online: number; enforcing: number }> {
    const sql = `SELECT count(*)::int AS online, count(*) FILTER (WHERE coalesce(revocation_version, 0) >= $1)::int AS enforcing
      FROM devices WHERE last_seen >= $2`;
    return (await this.db.rows<{ online: number; enforcing: number }>(sql, [version, since]))[0]!;
  }
}
