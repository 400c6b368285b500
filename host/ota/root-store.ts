/**
 * The fleet's root of trust as the server keeps it (SPEC.md §12.13, §12.9 "Persistence and several
 * instances"): every trust bundle version the server accepted, every revocation list it accepted (with
 * the trust bundle version that was the newest when it came), and each device's acknowledgement of a
 * list, in the store every instance shares, so a restarted server and every instance agree on one
 * root of trust. What may be stored is decided in root-of-trust.ts; a backend only keeps and counts.
 * The SQLite backend is root-store-sqlite.ts.
 */

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

/** The newest trust bundle and revocation list versions (0: none). */
export type RootVersions = { readonly trust: number; readonly list: number };

/** The newest rows, read inside a root change (none before the first start; no list before the first one). */
export type NewestRoot = { readonly trust?: TrustRow; readonly list?: ListRow };

/** What a root change stores (nothing for a field left out) and what it returns to its caller. */
export type RootChange<T> = { result: T; trust?: Omit<TrustRow, 'accepted'>; list?: Omit<ListRow, 'published'> };

/** Upper bounds (seconds) of fwseal_revocation_propagation_seconds: a second or two online, hours for devices that were away. */
export const PROPAGATION_BUCKETS = Object.freeze([0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400]);

export type Histogram = { readonly buckets: readonly number[]; readonly count: number; readonly sum: number };

/**
 * The root of trust part of the store. Every method is one read or one atomic write. A device's
 * acknowledgements are written by OtaStore.recordOnline, in the same atomic step as its `online` row.
 */
export interface RootStoreApi {
  /** The newest trust bundle and revocation list versions: one cheap read to see whether another instance changed them. */
  versions(): Promise<RootVersions>;
  trust(version: number): Promise<TrustRow | undefined>;
  trustVersions(): Promise<number[]>;
  /** Every stored trust bundle, oldest first, with when it was stored (M5: the age of the bundle and of each key, metrics-trust.ts). */
  trustChain(): Promise<TrustRow[]>;
  list(version: number): Promise<ListRow | undefined>;
  /** The newest list accepted while trust bundle `trustVersion` or an older one was the newest. */
  listFor(trustVersion: number): Promise<ListRow | undefined>;
  /**
   * Store what `decide` returns, atomically: `decide` gets the newest rows as they are inside the
   * change (another instance may have stored newer ones since this one last looked) and returns the
   * rows to add and a result, or throws to store nothing. `decide` is synchronous and pure (a backend
   * may run it again after a retried transaction). SQLite: one IMMEDIATE transaction. PostgreSQL: one
   * transaction that first takes the root lock exclusively (`pg_advisory_xact_lock` of one constant
   * key; campaign inserts and updates take its shared form, store.ts), then reads the newest rows, so
   * two instances never store two lists or bundles of one version.
   */
  change<T>(decide: (newest: NewestRoot) => RootChange<T>, now?: number): Promise<T>;
  /** The propagation histogram over every acknowledgement (cumulative buckets, PROPAGATION_BUCKETS). */
  propagation(): Promise<Histogram>;
  /** Known devices by the revocation list version they acknowledged (null: never reported one). */
  revocationVersions(): Promise<{ v: number | null; n: number }[]>;
  /** Known devices by the trust bundle version they reported (null: never reported one). */
  trustVersionsSeen(): Promise<{ v: number | null; n: number }[]>;
  /** Devices seen since `since` (ms), and how many of them acknowledged revocation version `version` or newer. */
  enforcing(version: number, since: number): Promise<{ online: number; enforcing: number }>;
}
