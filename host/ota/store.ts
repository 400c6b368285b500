/**
 * The OTA server's state (SPEC.md §12.9 "Persistence and several instances"): campaigns, devices,
 * per-device progress rows keyed (campaign, device), manifest fetch records and the root of trust
 * (root-store.ts), behind one asynchronous interface, `OtaStore`, so that the backend may be SQLite
 * (store-sqlite.ts: one file that instances on one machine share) or a database server (whose clients
 * are asynchronous). Counts are always derived from rows whose state only moves forward, so a
 * redelivered status event never double-counts. Which status events reach those rows at all is decided
 * in campaigns.ts (`ingestStatus`, SPEC.md §12.9 "Status ingest").
 *
 * Atomicity: every method is one atomic step of the backend. Whatever must not interleave with another
 * instance's (or this instance's) work is ONE method, never a read and a write awaited one after the
 * other: `insertCampaign` (no second active campaign in a group), `updateCampaign` (read, decide,
 * write), `recordOnline` (device row, fleet bound and revocation acknowledgements), `recordStatus`
 * (last seen and the monotonic row), `root.change` (root-store.ts). Each says what a PostgreSQL
 * backend must do. Image files and digest tables stay files for now, under `imagesDir` and `digestsDir`.
 */
import { type RootStoreApi, type RootVersions } from './root-store.js';

export type CampaignState = 'running' | 'paused' | 'halted' | 'aborted' | 'completed';

/** Per-device progress states in their order; the last three are terminal. */
export const DEVICE_STATES = ['accepted', 'downloading', 'verifying', 'installed', 'confirmed', 'rejected', 'failed'] as const;
export type DeviceCampaignState = (typeof DEVICE_STATES)[number];
/** A row moves only to a higher rank (SPEC.md §12.9, rule 6); equal ranks only within downloading. */
export const STATE_RANK: Readonly<Record<DeviceCampaignState, number>> = Object.freeze({
  accepted: 0,
  downloading: 1,
  verifying: 2,
  installed: 3,
  confirmed: 4,
  rejected: 4,
  failed: 4,
});
export const TERMINAL_RANK = 4;

export type CampaignRow = {
  readonly id: string;
  readonly grp: string;
  readonly version: string;
  readonly security_counter: number;
  readonly state: CampaignState;
  /** Index of the open wave (0-based) in `waves`. */
  readonly wave: number;
  readonly waves: string;
  /** The open wave's rollout (announced as 0 while paused or halted). */
  readonly rollout: number;
  readonly abort_failure_rate: number;
  /** Failed + rejected count when the campaign was last resumed from halted: a resume overrides earlier failures. */
  readonly halt_baseline: number;
  /** Set when the manifest stopped verifying under the root of trust (SPEC.md §12.13): the verifier's code. */
  readonly halt_code: number | null;
  readonly manifest: Buffer;
  readonly manifest_sha: Buffer;
  readonly image_sha: string;
  readonly image_size: number;
  readonly chunk_size: number;
  readonly block_size: number;
  readonly page_count: number;
  readonly created: number;
  readonly updated: number;
};

/** A campaign as a new row (not halted, no baseline). */
export type NewCampaign = Omit<CampaignRow, 'halt_baseline' | 'halt_code'>;

/** What a request needs to know (the hot path: no manifest blob). */
export type CampaignGate = Pick<CampaignRow, 'id' | 'state' | 'rollout' | 'halt_code'>;

/** What deciding whether a status event counts needs (SPEC.md §12.9 "Status ingest"), in one read. */
export type StatusContext = {
  readonly id: string;
  readonly grp: string;
  readonly rollout: number;
  readonly version: string;
  readonly security_counter: number;
  /** The device as known from its `online` events: null when it never reported. */
  readonly device_grp: string | null;
  readonly device_version: string | null;
  readonly device_counter: number | null;
  /** 1 when the server served this campaign's manifest envelope to the device (under any campaign). */
  readonly fetched: 0 | 1;
};

export type DeviceRow = {
  readonly id: string;
  readonly grp: string;
  readonly version: string | null;
  readonly counter: number | null;
  readonly last_seen: number;
  /** The root of trust the device last acknowledged in `online` (keys 12-14; null: never reported). */
  readonly trust_version: number | null;
  readonly revocation_version: number | null;
  readonly revocation_digest: Buffer | null;
};

/** What an `online` event says about a device (SPEC.md §12.2, §12.13). */
export type DeviceReport = {
  readonly group: string;
  readonly version?: string;
  readonly counter?: number;
  readonly trustVersion?: number;
  readonly revocationVersion?: number;
  readonly revocationDigest?: Uint8Array;
};

export type DeviceCampaignRow = {
  readonly campaign: string;
  readonly device: string;
  readonly state: DeviceCampaignState;
  readonly rank: number;
  readonly done: number | null;
  readonly total: number | null;
  readonly code: number | null;
  readonly updated: number;
};

/** A status event that counts (campaigns.ts decided): the row it may move forward. */
export type StatusRecord = {
  readonly campaign: string;
  readonly device: string;
  readonly state: DeviceCampaignState;
  readonly done?: number;
  readonly total?: number;
  readonly code?: number;
};

/** A campaign's rows and its group's known devices, read inside the same atomic step as the campaign row. */
export type CampaignProgress = { readonly statuses: DeviceCampaignRow[]; readonly devices: DeviceRow[] };

/** What a campaign change sees besides the row: progress when asked for, and the newest root of trust versions. */
export type CampaignContext = { readonly progress: CampaignProgress | null; readonly root: RootVersions };

/**
 * A campaign change: from the row as it is inside the atomic step (another instance may have changed
 * it) to the fields to write, or null for no change. Synchronous and pure: a backend may run it again
 * after a retried transaction.
 */
export type CampaignChange = (row: CampaignRow, context: CampaignContext) => Partial<CampaignRow> | null;

export interface OtaStore {
  /** The fleet's root of trust: trust bundles, revocation lists, acknowledgements (root-store.ts). */
  readonly root: RootStoreApi;
  /** DATA/images/<sha256hex>: stored images (files for now; SPEC.md §12.9). */
  readonly imagesDir: string;
  /** DATA/digests/<campaign>.digests: each campaign's chunk digest table (SPEC.md §5.4). */
  readonly digestsDir: string;

  campaign(id: string): Promise<CampaignRow | undefined>;
  gate(id: string): Promise<CampaignGate | undefined>;
  /** Every campaign (or those in `state`), in creation order. */
  campaigns(state?: CampaignState): Promise<CampaignRow[]>;
  /** The group's running, paused or halted campaign, if any. */
  activeInGroup(group: string): Promise<string | undefined>;
  /**
   * Insert a campaign unless its group has an active one (FwsealError CONFLICT), atomically. With
   * `root`: only while the newest root of trust versions are still these (the manifest was verified
   * under them), else nothing is inserted and false returned. SQLite: one IMMEDIATE transaction.
   * PostgreSQL: one transaction holding a lock on the group (e.g. `pg_advisory_xact_lock` of the
   * group name) and reading the root versions under the shared form of the lock every root change
   * takes (root-store.ts; `pg_advisory_xact_lock_shared`), so no root change commits in between: a
   * later one re-checks the new campaign (root-recheck.ts), an earlier one makes this insert fail.
   */
  insertCampaign(row: NewCampaign, root?: RootVersions): Promise<boolean>;
  /**
   * Change a campaign atomically: read the row, run `change` (with the campaign's progress when
   * `progress` is set, and the root versions), write the fields it returns. Returns the new row, or
   * null (no campaign, or no change). SQLite: one IMMEDIATE transaction. PostgreSQL: one transaction,
   * `SELECT ... FROM campaigns WHERE id = $1 FOR UPDATE` first, then the progress reads and the root
   * versions (under the shared root lock, as insertCampaign), then the UPDATE, so two instances never
   * open a wave twice or undo each other's transition, and a resume checked under one root of trust
   * never lands after another was stored.
   */
  updateCampaign(id: string, change: CampaignChange, opts?: { readonly progress?: boolean }): Promise<CampaignRow | null>;

  /**
   * Record an `online` report atomically: false (nothing stored) for a new device once `max` devices
   * are known (SPEC.md §12.9, maxKnownDevices); a known device whose revocation version rose gets
   * one acknowledgement per list in between (§12.13). SQLite: one IMMEDIATE transaction.
   * PostgreSQL: one transaction that reads the device `FOR UPDATE` and bounds new devices with a
   * counter row updated in the same transaction (a count of rows would race between instances).
   */
  recordOnline(device: string, report: DeviceReport, max: number): Promise<boolean>;
  /** The server served `campaign`'s manifest to `device`: remembered only for a device of the campaign's group (one statement). */
  recordFetch(campaign: string, device: string): Promise<void>;
  statusContext(campaign: string, device: string): Promise<StatusContext | undefined>;
  /**
   * Record a counted status event atomically: the device's last seen, and its (campaign, device) row
   * moved forward only (a higher rank, or more blocks done within downloading; terminal rows never
   * change). False when the row did not move (old or redelivered). SQLite: one IMMEDIATE transaction.
   * PostgreSQL: one transaction with `INSERT ... ON CONFLICT DO UPDATE ... WHERE` (the condition on
   * the stored row, as the SQLite statement has it).
   */
  recordStatus(s: StatusRecord): Promise<boolean>;
  statuses(campaign: string): Promise<DeviceCampaignRow[]>;
  /** Known devices (of `group`), ordered by id. */
  devices(group?: string): Promise<DeviceRow[]>;
  deviceCount(): Promise<number>;
  stateCounts(): Promise<{ campaign: string; state: DeviceCampaignState; n: number }[]>;
  rejections(): Promise<{ code: number; n: number }[]>;
  /** Rows of manifest_fetches (tests and the fuzzer check that abuse does not grow the store). */
  fetchCount(): Promise<number>;
  /** The devices recorded as served `campaign`'s manifest envelope (under any campaign), ordered by id. */
  fetchedDevices(campaign: string): Promise<string[]>;
  close(): Promise<void>;
}

/** Where the server keeps its state: today one SQLite file in the data folder. */
export type StoreOptions = { readonly kind: 'sqlite'; readonly dataDir: string };

/** Open the store `options` names (the backend is loaded only when chosen). */
export async function openStore(options: StoreOptions): Promise<OtaStore> {
  switch (options.kind) {
    case 'sqlite': {
      const { SqliteStore } = await import('./store-sqlite.js');
      return new SqliteStore(options.dataDir);
    }
  }
}
