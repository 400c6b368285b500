/**
 * The OTA server's state in SQLite (SPEC.md §12.9 "Persistence and several instances"): one file,
 * DATA/fwseal.db, shared by every `fwseal serve` instance on the same data folder (WAL, busy_timeout),
 * plus image files DATA/images/<sha256hex> and digest tables DATA/digests/<campaign>.digests. The
 * contract (what each method must make atomic) is OtaStore's (store.ts). better-sqlite3 is synchronous:
 * each method runs its statements when called and returns a settled promise (status writes: once their
 * batch committed, store-sqlite-batch.ts); each atomic step is one transaction (IMMEDIATE: read, then write).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { FwsealError } from '../errors.js';
import { type RootVersions } from './root-store.js';
import { SqliteRootStore } from './root-store-sqlite.js';
import {
  type CampaignChange,
  type CampaignEvent,
  type CampaignGate,
  type CampaignRow,
  type CampaignState,
  DEFAULT_DEVICE_TIMEOUT_MS,
  type DeviceCampaignRow,
  type DeviceCampaignState,
  type DeviceHistoryRow,
  type DeviceQuery,
  type DeviceReport,
  type DeviceRow,
  type ExcludeResult,
  type NewCampaign,
  type OtaStore,
  STATE_RANK,
  type StatusContext,
  type StatusRecord,
  TERMINAL_RANK,
  type UnexpectedReleases,
} from './store.js';
import { SqliteWriteBatch } from './store-sqlite-batch.js';
import { FLEET_SCHEMA, SqliteFleet } from './store-sqlite-fleet.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS campaigns (
  id TEXT PRIMARY KEY, grp TEXT NOT NULL, version TEXT NOT NULL, security_counter INTEGER NOT NULL,
  state TEXT NOT NULL, wave INTEGER NOT NULL, waves TEXT NOT NULL, rollout INTEGER NOT NULL,
  abort_failure_rate REAL NOT NULL, halt_baseline INTEGER NOT NULL DEFAULT 0, halt_code INTEGER,
  manifest BLOB NOT NULL, manifest_sha BLOB NOT NULL, image_sha TEXT NOT NULL, image_size INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL, block_size INTEGER NOT NULL, page_count INTEGER NOT NULL,
  created INTEGER NOT NULL, updated INTEGER NOT NULL,
  device_timeout_ms INTEGER NOT NULL DEFAULT ${DEFAULT_DEVICE_TIMEOUT_MS}, abort_min_devices INTEGER NOT NULL DEFAULT 1,
  wave_soak_ms INTEGER NOT NULL DEFAULT 0, wave_gate TEXT NOT NULL DEFAULT 'auto', wave_started INTEGER NOT NULL DEFAULT 0,
  wave_done_at INTEGER, approved_wave INTEGER);
CREATE INDEX IF NOT EXISTS campaigns_grp ON campaigns(grp, state);
CREATE TABLE IF NOT EXISTS devices (
  id TEXT PRIMARY KEY, grp TEXT NOT NULL, version TEXT, counter INTEGER, last_seen INTEGER NOT NULL,
  trust_version INTEGER, revocation_version INTEGER, revocation_digest BLOB,
  online INTEGER NOT NULL DEFAULT 1, last_error_code INTEGER, last_error_campaign TEXT);
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
  // Issue 15: rollouts that finish, the fleet view (SPEC.md §12.9).
  ['campaigns', 'device_timeout_ms', `INTEGER NOT NULL DEFAULT ${DEFAULT_DEVICE_TIMEOUT_MS}`],
  ['campaigns', 'abort_min_devices', 'INTEGER NOT NULL DEFAULT 1'],
  ['campaigns', 'wave_soak_ms', 'INTEGER NOT NULL DEFAULT 0'],
  ['campaigns', 'wave_gate', "TEXT NOT NULL DEFAULT 'auto'"],
  ['campaigns', 'wave_started', 'INTEGER NOT NULL DEFAULT 0'],
  ['campaigns', 'wave_done_at', 'INTEGER'],
  ['campaigns', 'approved_wave', 'INTEGER'],
  ['devices', 'online', 'INTEGER NOT NULL DEFAULT 1'],
  ['devices', 'last_error_code', 'INTEGER'],
  ['devices', 'last_error_campaign', 'TEXT'],
  ['devices', 'first_version', 'TEXT'], // issue 16: the release a device was first seen with (M10, unexpectedReleases)
  ['devices', 'first_counter', 'INTEGER'],
];

function addMissingColumns(db: Database.Database): void {
  for (const [table, column, type] of ADDED_COLUMNS) {
    const have = (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).some((c) => c.name === column);
    if (have) continue;
    db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
    // A campaign from before the device timeout counts silence from the upgrade, not from 1970.
    if (column === 'wave_started') db.prepare('UPDATE campaigns SET wave_started = ?').run(Date.now());
    // Devices from before count as first seen with the release they run now (M10 never flags them).
    if (column === 'first_version' || column === 'first_counter') db.exec(`UPDATE devices SET ${column} = ${column.slice('first_'.length)}`);
  }
}

/** The schema, created or brought up to date; the pragmas every connection needs. */
function openDatabase(dataDir: string): Database.Database {
  let db: Database.Database;
  try {
    mkdirSync(join(dataDir, 'images'), { recursive: true });
    mkdirSync(join(dataDir, 'digests'), { recursive: true });
    db = new Database(join(dataDir, 'fwseal.db'));
  } catch (e) {
    throw new FwsealError('IO', `cannot open the data folder ${dataDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  db.pragma('busy_timeout = 5000');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  const upgrading =
    db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'campaigns'").get() !== undefined &&
    db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'manifest_fetches'").get() === undefined;
  db.exec(SCHEMA);
  addMissingColumns(db);
  db.exec(FLEET_SCHEMA);
  // A data folder from before manifest_fetches: a device with a row reported under the old rules
  // (and was counted then); it keeps counting, so a campaign in flight does not stall on the upgrade.
  if (upgrading) {
    db.exec(`INSERT OR IGNORE INTO manifest_fetches (manifest_sha, device, at)
      SELECT c.manifest_sha, dc.device, dc.updated FROM device_campaign dc JOIN campaigns c ON c.id = dc.campaign`);
  }
  return db;
}

/**
 * Test only: turn the closed data folder `dataDir` into one from before the fetch records (no
 * manifest_fetches table), to exercise the upgrade above (SPEC.md §12.9 "Persistence").
 */
export function dropFetchRecordsForTest(dataDir: string): void {
  const db = new Database(join(dataDir, 'fwseal.db'));
  try {
    db.exec('DROP TABLE manifest_fetches');
  } finally {
    db.close();
  }
}

function prepare(db: Database.Database) {
  return {
    campaign: db.prepare('SELECT * FROM campaigns WHERE id = ?'),
    campaigns: db.prepare('SELECT * FROM campaigns ORDER BY created, id'),
    byState: db.prepare('SELECT * FROM campaigns WHERE state = ? ORDER BY created, id'),
    activeInGroup: db.prepare("SELECT id FROM campaigns WHERE grp = ? AND state IN ('running','paused','halted')"),
    insertCampaign: db.prepare(`INSERT INTO campaigns (id, grp, version, security_counter, state, wave, waves, rollout, abort_failure_rate,
      manifest, manifest_sha, image_sha, image_size, chunk_size, block_size, page_count, created, updated,
      device_timeout_ms, abort_min_devices, wave_soak_ms, wave_gate, wave_started)
      VALUES (@id, @grp, @version, @security_counter, @state, @wave, @waves, @rollout, @abort_failure_rate,
      @manifest, @manifest_sha, @image_sha, @image_size, @chunk_size, @block_size, @page_count, @created, @updated,
      @device_timeout_ms, @abort_min_devices, @wave_soak_ms, @wave_gate, @wave_started)`),
    rootVersions: db.prepare(`SELECT coalesce((SELECT max(version) FROM trust_bundles), 0) AS trust,
      coalesce((SELECT max(version) FROM revocation_lists), 0) AS list`),
    updateDevice: db.prepare(`UPDATE devices SET grp = @grp, version = @version, counter = @counter, last_seen = @now, online = 1,
      trust_version = @trust_version, revocation_version = @revocation_version, revocation_digest = @revocation_digest WHERE id = @id`),
    // A new device only while fewer than @max were ever inserted: rowids only grow (no device is
    // ever deleted), so max(rowid) is the count without a scan (SPEC.md §12.9, maxKnownDevices).
    insertDevice: db.prepare(`INSERT INTO devices (id, grp, version, counter, last_seen, trust_version, revocation_version, revocation_digest,
        first_version, first_counter) SELECT @id, @grp, @version, @counter, @now, @trust_version, @revocation_version, @revocation_digest, @version, @counter
      WHERE (SELECT coalesce(max(rowid), 0) FROM devices) < @max
      ON CONFLICT(id) DO UPDATE SET grp = excluded.grp, version = excluded.version, counter = excluded.counter, last_seen = excluded.last_seen, online = 1,
        trust_version = excluded.trust_version, revocation_version = excluded.revocation_version, revocation_digest = excluded.revocation_digest`),
    deviceRevocation: db.prepare('SELECT revocation_version AS v FROM devices WHERE id = ?'),
    devices: db.prepare('SELECT * FROM devices ORDER BY id'),
    groupDevices: db.prepare('SELECT * FROM devices WHERE grp = ? ORDER BY id'),
    deviceCount: db.prepare('SELECT count(*) AS n FROM devices'),
    // Monotonic: a row moves to a higher rank, or within downloading to more blocks done; terminal rows never
    // change, but a timed-out device that comes back takes its own end state (SPEC.md §12.9 "Rollouts that finish").
    upsertStatus: db.prepare(`INSERT INTO device_campaign (campaign, device, state, rank, done, total, code, updated)
      VALUES (@campaign, @device, @state, @rank, @done, @total, @code, @updated)
      ON CONFLICT(campaign, device) DO UPDATE SET state = excluded.state, rank = excluded.rank, done = excluded.done,
        total = excluded.total, code = excluded.code, updated = excluded.updated
      WHERE (device_campaign.rank < ${TERMINAL_RANK} AND (excluded.rank > device_campaign.rank
        OR (excluded.rank = device_campaign.rank AND coalesce(excluded.done, 0) > coalesce(device_campaign.done, 0))))
        OR (device_campaign.state = 'timed-out' AND excluded.rank = ${TERMINAL_RANK})`),
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
    fetchedDevices: db.prepare(`SELECT f.device FROM manifest_fetches f JOIN campaigns c ON c.manifest_sha = f.manifest_sha
      WHERE c.id = ? ORDER BY f.device`),
  };
}

const sameRoot = (a: RootVersions, b: RootVersions) => a.trust === b.trust && a.list === b.list;

export class SqliteStore implements OtaStore {
  readonly root: SqliteRootStore;
  readonly imagesDir: string;
  readonly digestsDir: string;
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly fleet: SqliteFleet;
  readonly writes: SqliteWriteBatch;

  constructor(readonly dataDir: string) {
    this.db = openDatabase(dataDir);
    this.imagesDir = join(dataDir, 'images');
    this.digestsDir = join(dataDir, 'digests');
    this.root = new SqliteRootStore(this.db);
    this.stmts = prepare(this.db);
    this.fleet = new SqliteFleet(this.db);
    this.writes = new SqliteWriteBatch(this.db);
  }

  async campaign(id: string): Promise<CampaignRow | undefined> {
    return this.stmts.campaign.get(id) as CampaignRow | undefined;
  }

  async gate(id: string, device?: string): Promise<CampaignGate | undefined> {
    return this.fleet.gates.get(id, device);
  }

  async campaigns(state?: CampaignState): Promise<CampaignRow[]> {
    return (state ? this.stmts.byState.all(state) : this.stmts.campaigns.all()) as CampaignRow[];
  }

  async activeInGroup(group: string): Promise<string | undefined> {
    return this.activeIn(group);
  }

  private activeIn(group: string): string | undefined {
    return (this.stmts.activeInGroup.get(group) as { id: string } | undefined)?.id;
  }

  private rootVersions(): RootVersions {
    return this.stmts.rootVersions.get() as RootVersions;
  }

  async insertCampaign(row: NewCampaign, root?: RootVersions): Promise<boolean> {
    return this.db
      .transaction(() => {
        const other = this.activeIn(row.grp);
        if (other) throw new FwsealError('CONFLICT', `group ${row.grp} already has the active campaign ${other}`);
        if (root && !sameRoot(root, this.rootVersions())) return false;
        this.stmts.insertCampaign.run(row);
        return true;
      })
      .immediate();
  }

  async updateCampaign(id: string, change: CampaignChange, opts: { readonly progress?: boolean } = {}): Promise<CampaignRow | null> {
    return this.db
      .transaction(() => {
        const row = this.stmts.campaign.get(id) as CampaignRow | undefined;
        if (!row) return null;
        const progress = opts.progress
          ? { statuses: this.stmts.statuses.all(id) as DeviceCampaignRow[], devices: this.stmts.groupDevices.all(row.grp) as DeviceRow[] }
          : null;
        const fields = change(row, { progress, root: this.rootVersions() });
        if (!fields || Object.keys(fields).length === 0) return null;
        const next = { ...row, ...fields, updated: Date.now() };
        const names = Object.keys(fields)
          .filter((k) => k !== 'id')
          .concat('updated');
        this.db
          .prepare(`UPDATE campaigns SET ${names.map((k) => `${k} = @${k}`).join(', ')} WHERE id = @id`)
          .run(Object.fromEntries([['id', id], ...names.map((k) => [k, (next as Record<string, unknown>)[k]])]));
        this.fleet.gates.invalidate(id);
        return next as CampaignRow;
      })
      .immediate();
  }

  async recordOnline(id: string, r: DeviceReport, max: number): Promise<boolean> {
    const now = Date.now();
    const reported = { grp: r.group, version: r.version ?? null, counter: r.counter ?? null, now, trust_version: r.trustVersion ?? null };
    const row = {
      id,
      ...reported,
      revocation_version: r.revocationVersion ?? null,
      revocation_digest: r.revocationDigest ? Buffer.from(r.revocationDigest) : null,
    };
    const online = () => {
      const before = (this.stmts.deviceRevocation.get(id) as { v: number | null } | undefined)?.v ?? null;
      if (this.stmts.updateDevice.run(row).changes === 0 && this.stmts.insertDevice.run({ ...row, max }).changes === 0) return false;
      // A device known before whose revocation version rose acknowledged every list in between (§12.13).
      if (before !== null && r.revocationVersion !== undefined && r.revocationVersion > before)
        this.root.acknowledgeInTransaction(id, before, r.revocationVersion, now);
      return true;
    };
    return this.writes.write(online);
  }

  async recordFetch(campaign: string, device: string): Promise<void> {
    const now = Date.now();
    // Gathered like status writes (store-sqlite-batch.ts): a herd's manifest requests commit together
    // (one transaction each cost ~45 µs of BEGIN/COMMIT). The manifest reply waits for the commit; the
    // device's own gathered `online` (its row) comes earlier in the same batch.
    await this.writes.write(() => {
      this.stmts.recordFetch.run({ campaign, device, now });
      this.fleet.touchFetch(campaign, device, now);
    });
  }

  async statusContext(campaign: string, device: string): Promise<StatusContext | undefined> {
    return this.stmts.statusContext.get({ campaign, device }) as StatusContext | undefined;
  }

  async recordStatus(s: StatusRecord): Promise<boolean> {
    const now = Date.now();
    return this.writes.write(() => {
      const r = this.stmts.upsertStatus.run({
        campaign: s.campaign,
        device: s.device,
        state: s.state,
        rank: STATE_RANK[s.state],
        done: s.done ?? null,
        total: s.total ?? null,
        code: s.code ?? null,
        updated: now,
      });
      // Only an event that counts changes the device (SPEC.md §12.9 "Fleet view").
      if (r.changes > 0) this.fleet.followStatus(s, now);
      return r.changes > 0;
    });
  }

  async recordOffline(device: string): Promise<boolean> {
    return this.fleet.recordOffline(device);
  }

  async recordTimeouts(campaign: string, devices: readonly string[], cutoff: number): Promise<string[]> {
    return this.fleet.recordTimeouts(campaign, devices, cutoff);
  }

  async excludeDevice(campaign: string, device: string): Promise<ExcludeResult> {
    return this.fleet.excludeDevice(campaign, device);
  }

  async recordEvent(e: CampaignEvent): Promise<void> {
    this.fleet.recordEvent(e);
  }

  async events(campaign: string, limit: number): Promise<CampaignEvent[]> {
    return this.fleet.events(campaign, limit);
  }

  async devicePage(q: DeviceQuery): Promise<DeviceRow[]> {
    return this.fleet.devicePage(q);
  }

  async device(id: string): Promise<DeviceRow | undefined> {
    return this.fleet.device(id);
  }

  async deviceHistory(id: string): Promise<DeviceHistoryRow[]> {
    return this.fleet.deviceHistory(id);
  }

  async statuses(campaign: string): Promise<DeviceCampaignRow[]> {
    return this.stmts.statuses.all(campaign) as DeviceCampaignRow[];
  }

  async devices(group?: string): Promise<DeviceRow[]> {
    return (group === undefined ? this.stmts.devices.all() : this.stmts.groupDevices.all(group)) as DeviceRow[];
  }

  async deviceCount(): Promise<number> {
    return (this.stmts.deviceCount.get() as { n: number }).n;
  }

  async stateCounts(): Promise<{ campaign: string; state: DeviceCampaignState; n: number }[]> {
    return this.stmts.stateCounts.all() as { campaign: string; state: DeviceCampaignState; n: number }[];
  }

  async rejections(): Promise<{ code: number; n: number }[]> {
    return this.stmts.rejections.all() as { code: number; n: number }[];
  }

  async campaignCounts(): Promise<{ state: CampaignState; n: number }[]> {
    return this.fleet.campaignCounts();
  }

  async unexpectedReleases(): Promise<UnexpectedReleases> {
    return this.fleet.unexpectedReleases();
  }

  async fetchCount(): Promise<number> {
    return (this.stmts.fetchCount.get() as { n: number }).n;
  }

  async fetchedDevices(campaign: string): Promise<string[]> {
    return (this.stmts.fetchedDevices.all(campaign) as { device: string }[]).map((r) => r.device);
  }

  async close(): Promise<void> {
    if (this.db.open) this.writes.flush(); // what is gathered is written before the database goes
    if (this.db.open) this.db.close();
  }
}
