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
 * (the monotonic row and the device row it moves), `recordTimeouts` and `excludeDevice` (rows
 * written only while the stored rows still allow it), `root.change` (root-store.ts). Each says what a PostgreSQL
 * backend must do. Image files and digest tables stay files for now, under `imagesDir` and `digestsDir`.
 */

import { loadOptional } from '../optional.js';
import { type RootStoreApi, type RootVersions } from './root-store.js';

export type CampaignState = 'running' | 'paused' | 'halted' | 'aborted' | 'completed';

/**
 * Per-device progress states in their order; from `confirmed` on they are terminal. `timed-out` is the
 * server's verdict on a silent device (SPEC.md §12.9 "Rollouts that finish"), `excluded` the operator's.
 */
export const DEVICE_STATES = ['accepted', 'downloading', 'verifying', 'installed', 'confirmed', 'rejected', 'failed', 'timed-out', 'excluded'] as const;
export type DeviceCampaignState = (typeof DEVICE_STATES)[number];
/**
 * A row moves only to a higher rank (SPEC.md §12.9, rule 6); equal ranks only within downloading. The
 * one exception: a `timed-out` row takes the device's own confirmed, rejected or failed (it came back).
 * `excluded` is above every other state, so nothing the device reports changes it again.
 */
export const STATE_RANK: Readonly<Record<DeviceCampaignState, number>> = Object.freeze({
  accepted: 0,
  downloading: 1,
  verifying: 2,
  installed: 3,
  confirmed: 4,
  rejected: 4,
  failed: 4,
  'timed-out': 4,
  excluded: 5,
});
export const TERMINAL_RANK = 4;
export const EXCLUDED_RANK = 5;
/** The states a device reports itself (status events); `timed-out` and `excluded` only the server writes. */
export type ReportedState = Exclude<DeviceCampaignState, 'timed-out' | 'excluded'>;

/** A device of the open wave silent this long counts as `timed-out` unless the campaign says otherwise (1 h). */
export const DEFAULT_DEVICE_TIMEOUT_MS = 3_600_000;

/** How the next wave opens once the open one is done (and soaked): by itself, or when an operator says `next`. */
export type WaveGate = 'auto' | 'manual';

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
  /** A device of the open wave silent this long (no status event, no manifest request) is `timed-out`. */
  readonly device_timeout_ms: number;
  /** The failure-rate rule halts only once this many devices reported an end state (confirmed, rejected, failed). */
  readonly abort_min_devices: number;
  /** After a wave is done, wait this long before the next opens. */
  readonly wave_soak_ms: number;
  readonly wave_gate: WaveGate;
  /** When the open wave opened or the campaign was last resumed: silence is counted from here at the earliest. */
  readonly wave_started: number;
  /** When every device of the open wave was first seen at an end state (the soak starts); null while it is not. */
  readonly wave_done_at: number | null;
  /** With the manual gate: the wave (0-based) whose successor the operator let open (`campaign next`). */
  readonly approved_wave: number | null;
};

/** A campaign as a new row (not halted, no baseline, its first wave not done). */
export type NewCampaign = Omit<CampaignRow, 'halt_baseline' | 'halt_code' | 'wave_done_at' | 'approved_wave'>;

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
  /** 1 from its `online` or any counted event on, 0 after its `offline` (the MQTT last will, SPEC.md §12.2). */
  readonly online: 0 | 1;
  /** The last rejected or failed event that counted: its code and campaign (null: none). */
  readonly last_error_code: number | null;
  readonly last_error_campaign: string | null;
};

/** One page of the fleet (GET /api/devices): devices with ids after `after`, ordered by id, at most `limit`. */
export type DeviceQuery = {
  readonly group?: string;
  readonly version?: string;
  /** online: marked online and seen since `since`; offline: the others. */
  readonly presence?: { readonly online: boolean; readonly since: number };
  readonly after?: string;
  readonly limit: number;
};

/** A campaign a device took part in (it has a row), with what the campaign is. */
export type DeviceHistoryRow = DeviceCampaignRow & {
  readonly grp: string;
  readonly version: string;
  readonly campaign_state: CampaignState;
  readonly created: number;
};

/** One recorded campaign action (SPEC.md §12.9 "Campaign events"): who did what, the server's own steps included. */
export type CampaignEvent = {
  readonly campaign: string;
  readonly at: number;
  /** create, pause, resume, abort, next, exclude (operators); halt, timeout, wave, complete (the server). */
  readonly action: string;
  /** The API token's name (`api` on an open API), or `server`. */
  readonly actor: string;
  readonly detail: string;
};

/**
 * M10, a monitor signal that is 0 in a healthy fleet (SPEC.md §12.9 "Metrics"; OtaStore.unexpectedReleases).
 * A device's release is the version and security counter it last reported in `online` (or that a
 * `confirmed` it sent installed); known devices without both are in neither count.
 */
export type UnexpectedReleases = {
  /** Devices on a release no campaign ever carried (any group, any state) that is not the one they were first seen with. */
  readonly notInHistory: number;
  /** Devices on a release that only campaigns halted by the root of trust carried (`halt_code`: the manifest fails under it now). */
  readonly notReleaseRole: number;
};

/** What excluding a device from a campaign did (OtaStore.excludeDevice). */
export type ExcludeResult = 'excluded' | 'already' | 'no-campaign' | 'inactive' | 'no-device';

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
  readonly state: ReportedState;
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
  /** PostgreSQL: the assets in the database, the folders above this instance's cache (SharedAssets); absent with SQLite. */
  readonly shared?: SharedAssets;

  campaign(id: string): Promise<CampaignRow | undefined>;
  /**
   * What a request needs (one read). With `device`: a device excluded from the campaign (SPEC.md §12.9)
   * reads rollout 0, so the request check answers it CAMPAIGN_INACTIVE as it answers a device outside
   * the waves.
   */
  gate(id: string, device?: string): Promise<CampaignGate | undefined>;
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
  /**
   * The server served `campaign`'s manifest to `device`: remembered only for a device of the
   * campaign's group, whose last seen it sets (a request is not silence, SPEC.md §12.9 "Rollouts that
   * finish"). SQLite: one transaction. PostgreSQL: one transaction (INSERT ... ON CONFLICT DO NOTHING,
   * then the UPDATE of the device row, both conditioned on the group).
   */
  recordFetch(campaign: string, device: string): Promise<void>;
  statusContext(campaign: string, device: string): Promise<StatusContext | undefined>;
  /**
   * Record a counted status event atomically: its (campaign, device) row moved forward only (a higher
   * rank, or more blocks done within downloading; terminal rows never change, except that a
   * `timed-out` row takes the device's own confirmed, rejected or failed; `excluded` never changes).
   * Only when the row moved, the device row follows in the same step (SPEC.md §12.9 "Fleet view"):
   * last seen, online; `confirmed` sets its version and counter to the campaign's; `rejected` and
   * `failed` set its last error (code, campaign). False when the row did not move (old or redelivered).
   * SQLite: one IMMEDIATE transaction. PostgreSQL: one transaction with `INSERT ... ON CONFLICT DO
   * UPDATE ... WHERE` (the condition on the stored row, as the SQLite statement has it) `RETURNING`,
   * then the device UPDATE only when a row came back.
   */
  recordStatus(s: StatusRecord): Promise<boolean>;
  /**
   * The device's MQTT last will (`offline`, SPEC.md §12.2): a known device is marked offline (its last
   * seen stays: when it was last heard). False for an unknown device. One statement.
   */
  recordOffline(device: string): Promise<boolean>;
  /**
   * Time out silent devices of a running campaign's open wave (SPEC.md §12.9 "Rollouts that finish"),
   * atomically, re-checking each condition on the stored rows: the campaign is `running` and its
   * `wave_started <= cutoff`; the device is known in the campaign's group with `last_seen <= cutoff`;
   * it has no row, or a row below the end states last updated at or before `cutoff`. Each such device
   * gets the row `timed-out` (rank 4). `devices` are the candidates the caller found in the open wave
   * (buckets are the caller's: §12.8). Returns the devices timed out, so a device that spoke meanwhile,
   * or another instance's earlier step, times out nobody twice. SQLite: one IMMEDIATE transaction.
   * PostgreSQL: one transaction, `SELECT ... FROM campaigns WHERE id = $1 FOR UPDATE` first, then per
   * device `INSERT ... ON CONFLICT DO UPDATE ... WHERE` with the same conditions, `RETURNING device`.
   */
  recordTimeouts(campaign: string, devices: readonly string[], cutoff: number): Promise<string[]>;
  /**
   * `campaign exclude` (SPEC.md §12.9): the device's row becomes `excluded` (rank 5: nothing changes it
   * again), atomically: `no-campaign`, `inactive` (aborted), `no-device` (not known in the campaign's
   * group), `already` (excluded before; nothing written), else `excluded`. SQLite: one IMMEDIATE
   * transaction. PostgreSQL: one transaction with the campaign row `FOR UPDATE`, then the upsert.
   */
  excludeDevice(campaign: string, device: string): Promise<ExcludeResult>;
  /** Append one campaign event (one INSERT; events are never changed or removed). */
  recordEvent(e: CampaignEvent): Promise<void>;
  /** The newest `limit` events of a campaign, oldest first (in the order they were recorded). */
  events(campaign: string, limit: number): Promise<CampaignEvent[]>;
  /** One page of known devices (DeviceQuery), ordered by id. */
  devicePage(q: DeviceQuery): Promise<DeviceRow[]>;
  device(id: string): Promise<DeviceRow | undefined>;
  /** Every campaign the device has a row in, oldest campaign first. */
  deviceHistory(id: string): Promise<DeviceHistoryRow[]>;
  statuses(campaign: string): Promise<DeviceCampaignRow[]>;
  /** Known devices (of `group`), ordered by id. */
  devices(group?: string): Promise<DeviceRow[]>;
  deviceCount(): Promise<number>;
  stateCounts(): Promise<{ campaign: string; state: DeviceCampaignState; n: number }[]>;
  rejections(): Promise<{ code: number; n: number }[]>;
  /** Campaigns by state (fwseal_campaigns). One statement. */
  campaignCounts(): Promise<{ state: CampaignState; n: number }[]>;
  /**
   * M10 (UnexpectedReleases). One statement, over the devices and the campaigns. The release a device
   * was first seen with is kept in its row from its first `online` on (a folder or database from
   * before takes each device's release at the upgrade), so a fleet provisioned before the server, or a
   * factory release, is never counted.
   */
  unexpectedReleases(): Promise<UnexpectedReleases>;
  /** Rows of manifest_fetches (tests and the fuzzer check that abuse does not grow the store). */
  fetchCount(): Promise<number>;
  /** The devices recorded as served `campaign`'s manifest envelope (under any campaign), ordered by id. */
  fetchedDevices(campaign: string): Promise<string[]>;
  close(): Promise<void>;
}

/**
 * Release assets shared through the database (PostgreSQL, SPEC.md §12.9 "PostgreSQL": instances on
 * different machines share no folder): content-addressed in the database, `imagesDir` and `digestsDir`
 * this instance's cache, filled on first use and checked against the SHA-256 before use. insertCampaign
 * stores the campaign's digest table file (written before it) in the same transaction.
 */
export interface SharedAssets {
  /** The image file at `path`, which must hash to `sha256hex`, into the database unless there (one transaction). */
  putImage(sha256hex: string, path: string): Promise<void>;
  /** imageFile(sha256hex) in the cache, checked, fetched from the database when needed; false when the database has none. */
  cacheImage(sha256hex: string): Promise<boolean>;
  /** The campaign's image and digest table in the cache, checked (FwsealError IO when the database lacks one). */
  cacheCampaign(row: CampaignRow): Promise<void>;
}

/** Where the server keeps its state: one SQLite file in the data folder, or PostgreSQL (`url` without a password: PGPASSWORD) with the folder as a cache. */
export type StoreOptions =
  | { readonly kind: 'sqlite'; readonly dataDir: string }
  | { readonly kind: 'postgres'; readonly url: string; readonly dataDir: string; readonly maxPending?: number };

/** Open the store `options` names (the backend is loaded only when chosen). */
export async function openStore(options: StoreOptions): Promise<OtaStore> {
  switch (options.kind) {
    case 'sqlite': {
      // better-sqlite3 is an optional package (host/optional.ts): named when missing, never INTERNAL.
      const { SqliteStore } = await loadOptional('better-sqlite3', 'the SQLite store (fwseal serve)', () => import('./store-sqlite.js'));
      return new SqliteStore(options.dataDir);
    }
    case 'postgres': {
      const { openPgStore } = await import('./store-pg.js');
      return openPgStore(options.url, options.dataDir, options.maxPending);
    }
  }
}
