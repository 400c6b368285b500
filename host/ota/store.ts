/**
 * The OTA server's state (SPEC.md §12.8): one SQLite file, DATA/fwseal.db, shared by every `fwseal serve`
 * instance on the same data folder (WAL, busy_timeout), plus image files DATA/images/<sha256hex> and
 * digest tables DATA/digests/<campaign>.digests. Counts are always derived from rows keyed
 * (campaign, device) whose state only moves forward, so a redelivered status event never double-counts.
 * Which status events reach those rows at all is decided in campaigns.ts (`ingestStatus`, SPEC.md §12.9).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { FwsealError } from '../errors.js';
import { RootStore } from './root-store.js';

export type CampaignState = 'running' | 'paused' | 'halted' | 'aborted' | 'completed';

/** Per-device progress states in their order; the last three are terminal. */
export const DEVICE_STATES = ['accepted', 'downloading', 'verifying', 'installed', 'confirmed', 'rejected', 'failed'] as const;
export type DeviceCampaignState = (typeof DEVICE_STATES)[number];
const RANK: Record<DeviceCampaignState, number> = { accepted: 0, downloading: 1, verifying: 2, installed: 3, confirmed: 4, rejected: 4, failed: 4 };
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

const SCHEMA = `
CREATE TABLE IF NOT EXISTS campaigns (
  id TEXT PRIMARY KEY, grp TEXT NOT NULL, version TEXT NOT NULL, security_counter INTEGER NOT NULL,
  state TEXT NOT NULL, wave INTEGER NOT NULL, waves TEXT NOT NULL, rollout INTEGER NOT NULL,
  abort_failure_rate REAL NOT NULL, halt_baseline INTEGER NOT NULL DEFAULT 0, halt_code INTEGER,
  manifest BLOB NOT NULL, manifest_sha BLOB NOT NULL, image_sha TEXT NOT NULL, image_size INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL, block_size INTEGER NOT NULL, page_count INTEGER NOT NULL,
  created INTEGER NOT NULL, updated INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS campaigns_grp ON campaigns(grp, state);
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY, grp TEXT NOT NULL, version TEXT, counter INTEGER, last_seen INTEGER NOT NULL,
  trust_version INTEGER, revocation_version INTEGER, revocation_digest BLOB);
CREATE INDEX IF NOT EXISTS devices_grp ON devices(grp);
CREATE TABLE IF NOT EXISTS device_campaign (
  campaign TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL, rank INTEGER NOT NULL,
  done INTEGER, total INTEGER, code INTEGER, updated INTEGER NOT NULL,
  PRIMARY KEY (campaign, device));
CREATE TABLE IF NOT EXISTS manifest_fetches (
  manifest_sha BLOB NOT NULL, device TEXT NOT NULL, at INTEGER NOT NULL,
  PRIMARY KEY (manifest_sha, device)) WITHOUT ROWID;
`;

/** Columns added after the first release of a table: a data folder from before gets them when first opened. */
const ADDED_COLUMNS: readonly [table: string, column: string, type: string][] = [
  ['campaigns', 'halt_code', 'INTEGER'],
  ['devices', 'trust_version', 'INTEGER'],
  ['devices', 'revocation_version', 'INTEGER'],
  ['devices', 'revocation_digest', 'BLOB'],
];

function addMissingColumns(db: Database.Database): void {
  for (const [table, column, type] of ADDED_COLUMNS) {
    const have = (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).some((c) => c.name === column);
    if (!have) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
  }
}

export class Store {
  readonly db: Database.Database;
  /** The fleet's root of trust: trust bundles, revocation lists, acknowledgements (root-store.ts). */
  readonly root: RootStore;
  readonly imagesDir: string;
  readonly digestsDir: string;
  private readonly stmts;

  constructor(readonly dataDir: string) {
    try {
      mkdirSync(join(dataDir, 'images'), { recursive: true });
      mkdirSync(join(dataDir, 'digests'), { recursive: true });
      this.db = new Database(join(dataDir, 'fwseal.db'));
    } catch (e) {
      throw new FwsealError('IO', `cannot open the data folder ${dataDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    this.imagesDir = join(dataDir, 'images');
    this.digestsDir = join(dataDir, 'digests');
    this.db.pragma('busy_timeout = 5000');
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    const upgrading =
      this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'campaigns'").get() !== undefined &&
      this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'manifest_fetches'").get() === undefined;
    this.db.exec(SCHEMA);
    addMissingColumns(this.db);
    // A data folder from before manifest_fetches: a device with a row reported under the old rules
    // (and was counted then); it keeps counting, so a campaign in flight does not stall on the upgrade.
    if (upgrading) {
      this.db.exec(`INSERT OR IGNORE INTO manifest_fetches (manifest_sha, device, at)
        SELECT c.manifest_sha, dc.device, dc.updated FROM device_campaign dc JOIN campaigns c ON c.id = dc.campaign`);
    }
    const db = this.db;
    this.root = new RootStore(db);
    this.stmts = {
      campaign: db.prepare('SELECT * FROM campaigns WHERE id = ?'),
      gate: db.prepare('SELECT id, state, rollout, halt_code FROM campaigns WHERE id = ?'),
      campaigns: db.prepare('SELECT * FROM campaigns ORDER BY created, id'),
      byState: db.prepare('SELECT * FROM campaigns WHERE state = ? ORDER BY created, id'),
      activeInGroup: db.prepare("SELECT id FROM campaigns WHERE grp = ? AND state IN ('running','paused','halted')"),
      insertCampaign: db.prepare(`INSERT INTO campaigns (id, grp, version, security_counter, state, wave, waves, rollout, abort_failure_rate,
        manifest, manifest_sha, image_sha, image_size, chunk_size, block_size, page_count, created, updated)
        VALUES (@id, @grp, @version, @security_counter, @state, @wave, @waves, @rollout, @abort_failure_rate,
        @manifest, @manifest_sha, @image_sha, @image_size, @chunk_size, @block_size, @page_count, @created, @updated)`),
      updateDevice: db.prepare(`UPDATE devices SET grp = @grp, version = @version, counter = @counter, last_seen = @now,
        trust_version = @trust_version, revocation_version = @revocation_version, revocation_digest = @revocation_digest WHERE id = @id`),
      // A new device only while fewer than @max were ever inserted: rowids only grow (no device is
      // ever deleted), so max(rowid) is the count without a scan (SPEC.md §12.9, maxKnownDevices).
      insertDevice: db.prepare(`INSERT INTO devices (id, grp, version, counter, last_seen, trust_version, revocation_version, revocation_digest)
        SELECT @id, @grp, @version, @counter, @now, @trust_version, @revocation_version, @revocation_digest
        WHERE (SELECT coalesce(max(rowid), 0) FROM devices) < @max
        ON CONFLICT(id) DO UPDATE SET grp = excluded.grp, version = excluded.version, counter = excluded.counter, last_seen = excluded.last_seen,
          trust_version = excluded.trust_version, revocation_version = excluded.revocation_version, revocation_digest = excluded.revocation_digest`),
      touchDevice: db.prepare('UPDATE devices SET last_seen = ? WHERE id = ?'),
      devices: db.prepare('SELECT * FROM devices ORDER BY id'),
      groupDevices: db.prepare('SELECT * FROM devices WHERE grp = ? ORDER BY id'),
      deviceCount: db.prepare('SELECT count(*) AS n FROM devices'),
      // Monotonic: a row moves to a higher rank, or within downloading to more blocks done; terminal rows never change.
      upsertStatus: db.prepare(`INSERT INTO device_campaign (campaign, device, state, rank, done, total, code, updated)
        VALUES (@campaign, @device, @state, @rank, @done, @total, @code, @updated)
        ON CONFLICT(campaign, device) DO UPDATE SET state = excluded.state, rank = excluded.rank, done = excluded.done,
          total = excluded.total, code = excluded.code, updated = excluded.updated
        WHERE device_campaign.rank < ${TERMINAL_RANK} AND (excluded.rank > device_campaign.rank
          OR (excluded.rank = device_campaign.rank AND coalesce(excluded.done, 0) > coalesce(device_campaign.done, 0)))`),
      statuses: db.prepare('SELECT * FROM device_campaign WHERE campaign = ? ORDER BY device'),
      stateCounts: db.prepare('SELECT campaign, state, count(*) AS n FROM device_campaign GROUP BY campaign, state'),
      rejections: db.prepare("SELECT code, count(*) AS n FROM device_campaign WHERE state = 'rejected' GROUP BY code"),
      // Only for a device known in the campaign's group, so invented ids never add rows.
      recordFetch: db.prepare(`INSERT OR IGNORE INTO manifest_fetches (manifest_sha, device, at)
        SELECT c.manifest_sha, d.id, @now FROM campaigns c JOIN devices d ON d.id = @device AND d.grp = c.grp WHERE c.id = @campaign`),
      statusContext: db.prepare(`SELECT c.id, c.grp, c.rollout, c.version, c.security_counter,
          d.grp AS device_grp, d.version AS device_version, d.counter AS device_counter,
          EXISTS (SELECT 1 FROM manifest_fetches f WHERE f.manifest_sha = c.manifest_sha AND f.device = @device) AS fetched
        FROM campaigns c LEFT JOIN devices d ON d.id = @device WHERE c.id = @campaign`),
      fetchCount: db.prepare('SELECT count(*) AS n FROM manifest_fetches'),
    };
  }

  campaign(id: string): CampaignRow | undefined {
    return this.stmts.campaign.get(id) as CampaignRow | undefined;
  }

  /** What a request needs to know (the hot path: no manifest blob). */
  gate(id: string): Pick<CampaignRow, 'id' | 'state' | 'rollout' | 'halt_code'> | undefined {
    return this.stmts.gate.get(id) as Pick<CampaignRow, 'id' | 'state' | 'rollout' | 'halt_code'> | undefined;
  }

  campaigns(state?: CampaignState): CampaignRow[] {
    return (state ? this.stmts.byState.all(state) : this.stmts.campaigns.all()) as CampaignRow[];
  }

  activeInGroup(group: string): string | undefined {
    return (this.stmts.activeInGroup.get(group) as { id: string } | undefined)?.id;
  }

  /** Insert a campaign unless the group already has an active one (checked in the same transaction). */
  insertCampaign(row: Omit<CampaignRow, 'halt_baseline' | 'halt_code'>): void {
    this.db
      .transaction(() => {
        const other = this.activeInGroup(row.grp);
        if (other) throw new FwsealError('CONFLICT', `group ${row.grp} already has the active campaign ${other}`);
        this.stmts.insertCampaign.run(row);
      })
      .immediate();
  }

  /**
   * Change a campaign inside an IMMEDIATE transaction: `change` sees the current row (another instance
   * may have changed it) and returns the new fields, or null for no change. Returns the new row or null.
   */
  updateCampaign(id: string, change: (row: CampaignRow) => Partial<CampaignRow> | null): CampaignRow | null {
    return this.db
      .transaction(() => {
        const row = this.campaign(id);
        if (!row) return null;
        const fields = change(row);
        if (!fields || Object.keys(fields).length === 0) return null;
        const next = { ...row, ...fields, updated: Date.now() };
        const names = Object.keys(fields)
          .filter((k) => k !== 'id')
          .concat('updated');
        this.db
          .prepare(`UPDATE campaigns SET ${names.map((k) => `${k} = @${k}`).join(', ')} WHERE id = @id`)
          .run(Object.fromEntries([['id', id], ...names.map((k) => [k, (next as Record<string, unknown>)[k]])]));
        return next as CampaignRow;
      })
      .immediate();
  }

  /** Record an `online` report; false (nothing stored) for a new device once `max` devices are known. */
  upsertDevice(id: string, r: DeviceReport, max: number): boolean {
    const row = {
      id,
      grp: r.group,
      version: r.version ?? null,
      counter: r.counter ?? null,
      now: Date.now(),
      trust_version: r.trustVersion ?? null,
      revocation_version: r.revocationVersion ?? null,
      revocation_digest: r.revocationDigest ? Buffer.from(r.revocationDigest) : null,
    };
    if (this.stmts.updateDevice.run(row).changes > 0) return true;
    return this.stmts.insertDevice.run({ ...row, max }).changes > 0;
  }

  /** The server served `campaign`'s manifest to `device`: remembered only for a device of the campaign's group. */
  recordFetch(campaign: string, device: string): void {
    this.stmts.recordFetch.run({ campaign, device, now: Date.now() });
  }

  statusContext(campaign: string, device: string): StatusContext | undefined {
    return this.stmts.statusContext.get({ campaign, device }) as StatusContext | undefined;
  }

  /** Rows of manifest_fetches (tests and the fuzzer check that abuse does not grow the store). */
  fetchCount(): number {
    return (this.stmts.fetchCount.get() as { n: number }).n;
  }

  touchDevice(id: string): void {
    this.stmts.touchDevice.run(Date.now(), id);
  }

  devices(group?: string): DeviceRow[] {
    return (group === undefined ? this.stmts.devices.all() : this.stmts.groupDevices.all(group)) as DeviceRow[];
  }

  deviceCount(): number {
    return (this.stmts.deviceCount.get() as { n: number }).n;
  }

  /** Record a status event; false when it did not move the row forward (old or redelivered). */
  recordStatus(s: { campaign: string; device: string; state: DeviceCampaignState; done?: number; total?: number; code?: number }): boolean {
    const r = this.stmts.upsertStatus.run({
      campaign: s.campaign,
      device: s.device,
      state: s.state,
      rank: RANK[s.state],
      done: s.done ?? null,
      total: s.total ?? null,
      code: s.code ?? null,
      updated: Date.now(),
    });
    return r.changes > 0;
  }

  statuses(campaign: string): DeviceCampaignRow[] {
    return this.stmts.statuses.all(campaign) as DeviceCampaignRow[];
  }

  stateCounts(): { campaign: string; state: DeviceCampaignState; n: number }[] {
    return this.stmts.stateCounts.all() as { campaign: string; state: DeviceCampaignState; n: number }[];
  }

  rejections(): { code: number; n: number }[] {
    return this.stmts.rejections.all() as { code: number; n: number }[];
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
