/**
 * The OTA server's state in PostgreSQL (SPEC.md §12.9 "PostgreSQL"), for instances on several
 * machines: `fwseal serve --db postgres://...`. The same contract as SQLite (OtaStore, store.ts; the
 * same tests, test/ota-store.test.ts): every atomic step is one transaction or one statement, with
 * `SELECT ... FOR UPDATE` on the campaign row where a step reads before it writes, advisory locks for
 * what has no row to lock yet (a group's active campaign, the root of trust), a counter row for the
 * fleet bound, and `INSERT ... ON CONFLICT DO UPDATE ... WHERE` for the monotonic rows. Release assets
 * live in the database too (assets-pg.ts); the data folder is this instance's cache and audit log.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FwsealError } from '../errors.js';
import { PgAssets } from './assets-pg.js';
import { GateCache, type GateRead } from './gate-cache.js';
import { type RootVersions } from './root-store.js';
import { acknowledge, PgRootStore, ROOT_VERSIONS } from './root-store-pg.js';
import {
  type CampaignChange,
  type CampaignEvent,
  type CampaignGate,
  type CampaignRow,
  type CampaignState,
  type DeviceCampaignRow,
  type DeviceCampaignState,
  type DeviceHistoryRow,
  type DeviceQuery,
  type DeviceReport,
  type DeviceRow,
  type ExcludeResult,
  type NewCampaign,
  type OtaStore,
  type StatusContext,
  type StatusRecord,
  type UnexpectedReleases,
} from './store.js';
import { checkDbUrl, connectDb, LOCK, type PgDb, type Queryable, RetryTransaction, StatusBatcher } from './store-pg-db.js';
import * as fleet from './store-pg-fleet.js';
import { MIGRATIONS } from './store-pg-schema.js';

const ACTIVE = "('running','paused','halted')";
/** Column names come from the row types, never from input; checked anyway before they go into SQL text. */
const COLUMN = /^[a-z][a-z0-9_]*$/;

function columns(keys: string[]): string[] {
  for (const k of keys) if (!COLUMN.test(k)) throw new FwsealError('INTERNAL', `not a column name: ${k}`);
  return keys;
}

const sameRoot = (a: RootVersions, b: RootVersions) => a.trust === b.trust && a.list === b.list;

/** The device's columns from an `online` report (SPEC.md §12.2, §12.13): parameters $2..$8 of SET_DEVICE and of the insert. */
const deviceValues = (r: DeviceReport, now: number) => [
  r.group,
  r.version ?? null,
  r.counter ?? null,
  now,
  r.trustVersion ?? null,
  r.revocationVersion ?? null,
  r.revocationDigest ? Buffer.from(r.revocationDigest) : null,
];
const SET_DEVICE = `online = 1, grp = $2, version = $3, counter = $4, last_seen = $5, trust_version = $6, revocation_version = $7, revocation_digest = $8`;

const GATE = 'SELECT id, state, rollout, halt_code FROM campaigns WHERE id = $1';
const EXCLUDED = "SELECT device FROM device_campaign WHERE campaign = $1 AND state = 'excluded'";

export class PgStore implements OtaStore {
  readonly root: PgRootStore;
  /** Campaign gates of the requests (gate-cache.ts); updateCampaign and excludeDevice drop a changed one. */
  private readonly gates = new GateCache((id) => this.readGate(id));
  readonly imagesDir: string;
  readonly digestsDir: string;
  readonly shared: PgAssets;
  /** The status path's reads and writes, many events per statement under a burst (store-pg-db.ts StatusBatcher). */
  private readonly statusReads: StatusBatcher<{ campaign: string; device: string }, StatusContext | undefined>;
  private readonly statusWrites: StatusBatcher<StatusRecord, boolean>;

  constructor(
    private readonly db: PgDb,
    dataDir: string,
  ) {
    this.imagesDir = join(dataDir, 'images');
    this.digestsDir = join(dataDir, 'digests');
    this.root = new PgRootStore(db);
    this.shared = new PgAssets(db, this.imagesDir, this.digestsDir);
    this.statusReads = new StatusBatcher(db, (pairs) => fleet.statusContexts(db, pairs));
    this.statusWrites = new StatusBatcher(
      db,
      (records) => fleet.recordStatuses(db, records),
      (s) => s.device,
    );
  }

  async campaign(id: string): Promise<CampaignRow | undefined> {
    return (await this.db.rows<CampaignRow>('SELECT * FROM campaigns WHERE id = $1', [id]))[0];
  }

  /** With `device`: an excluded device reads rollout 0 (its requests get CAMPAIGN_INACTIVE, SPEC.md §12.9). */
  async gate(id: string, device?: string): Promise<CampaignGate | undefined> {
    return this.gates.get(id, device);
  }

  /** What GateCache keeps of campaign `id`: one bounded request store call (two statements). */
  private readGate(id: string): Promise<GateRead | undefined> {
    return this.db.bounded(async () => {
      const gate = (await this.db.rows<CampaignGate>(GATE, [id]))[0];
      if (!gate) return undefined;
      const excluded = await this.db.rows<{ device: string }>(EXCLUDED, [id]);
      return { gate: Object.freeze(gate), excluded: new Set(excluded.map((r) => r.device)) };
    });
  }

  async campaigns(state?: CampaignState): Promise<CampaignRow[]> {
    return state
      ? this.db.rows('SELECT * FROM campaigns WHERE state = $1 ORDER BY created, id', [state])
      : this.db.rows('SELECT * FROM campaigns ORDER BY created, id');
  }

  async activeInGroup(group: string): Promise<string | undefined> {
    return (await this.db.rows<{ id: string }>(`SELECT id FROM campaigns WHERE grp = $1 AND state IN ${ACTIVE}`, [group]))[0]?.id;
  }

  /** The newest root versions, read under the shared root lock: no root change commits before this transaction does. */
  private async rootVersions(c: Queryable): Promise<RootVersions> {
    await c.query('SELECT pg_advisory_xact_lock_shared($1, $2)', LOCK.root);
    return (await c.query<RootVersions>(ROOT_VERSIONS)).rows[0]!;
  }

  async insertCampaign(row: NewCampaign, root?: RootVersions): Promise<boolean> {
    return this.db.tx(async (c) => {
      // The group's lock: two instances creating a campaign for one group at once insert one.
      await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK.group, row.grp]);
      const other = (await c.query<{ id: string }>(`SELECT id FROM campaigns WHERE grp = $1 AND state IN ${ACTIVE}`, [row.grp])).rows[0]?.id;
      if (other) throw new FwsealError('CONFLICT', `group ${row.grp} already has the active campaign ${other}`);
      if (root && !sameRoot(root, await this.rootVersions(c))) return false;
      const names = columns(Object.keys(row));
      const values = names.map((k) => (row as Record<string, unknown>)[k]);
      await c.query(`INSERT INTO campaigns (${names.join(', ')}) VALUES (${names.map((_, i) => `$${i + 1}`).join(', ')})`, values);
      await this.shared.storeCampaign(c, row);
      return true;
    });
  }

  async updateCampaign(id: string, change: CampaignChange, opts: { readonly progress?: boolean } = {}): Promise<CampaignRow | null> {
    return this.updateCampaignTx(id, change, opts).finally(() => this.gates.invalidate(id));
  }

  private updateCampaignTx(id: string, change: CampaignChange, opts: { readonly progress?: boolean }): Promise<CampaignRow | null> {
    return this.db.tx(async (c) => {
      const row = (await c.query<CampaignRow>('SELECT * FROM campaigns WHERE id = $1 FOR UPDATE', [id])).rows[0];
      if (!row) return null;
      const progress = opts.progress
        ? {
            statuses: (await c.query<DeviceCampaignRow>('SELECT * FROM device_campaign WHERE campaign = $1 ORDER BY device', [id])).rows,
            devices: (await c.query<DeviceRow>('SELECT * FROM devices WHERE grp = $1 ORDER BY id', [row.grp])).rows,
          }
        : null;
      const fields = change(row, { progress, root: await this.rootVersions(c) });
      if (!fields || Object.keys(fields).length === 0) return null;
      const next = { ...row, ...fields, updated: Date.now() } as CampaignRow;
      const names = columns(Object.keys(fields).filter((k) => k !== 'id' && k !== 'updated')).concat('updated');
      if (names.some((k) => !(k in row))) throw new FwsealError('INTERNAL', 'a campaign change names a column the row does not have');
      const values = names.map((k) => (next as Record<string, unknown>)[k]);
      await c.query(`UPDATE campaigns SET ${names.map((k, i) => `${k} = $${i + 2}`).join(', ')} WHERE id = $1`, [id, ...values]);
      return next;
    });
  }

  async recordOnline(id: string, r: DeviceReport, max: number): Promise<boolean> {
    const now = Date.now();
    return this.db.statusLane(() => this.recordOnlineTx(id, r, max, now));
  }

  private recordOnlineTx(id: string, r: DeviceReport, max: number, now: number): Promise<boolean> {
    return this.db.tx(async (c) => {
      const known = (await c.query<{ v: number | null }>('SELECT revocation_version AS v FROM devices WHERE id = $1 FOR UPDATE', [id])).rows[0];
      if (known) {
        await c.query(`UPDATE devices SET ${SET_DEVICE} WHERE id = $1`, [id, ...deviceValues(r, now)]);
        // A device known before whose revocation version rose acknowledged every list in between (§12.13).
        if (known.v !== null && r.revocationVersion !== undefined && r.revocationVersion > known.v) await acknowledge(c, id, known.v, r.revocationVersion, now);
        return true;
      }
      // A new device: the fleet_size row is the bound (SPEC.md §12.9, maxKnownDevices); its row lock orders new devices across instances.
      if ((await c.query('UPDATE fleet_size SET n = n + 1 WHERE n < $1', [max])).rowCount === 0) return false;
      const added = await c.query(
        `INSERT INTO devices (id, grp, version, counter, last_seen, trust_version, revocation_version, revocation_digest, first_version, first_counter)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $3, $4) ON CONFLICT (id) DO NOTHING`,
        [id, ...deviceValues(r, now)],
      );
      // Another instance added this device since the first read: not new after all; again, as a known device.
      if (added.rowCount === 0) throw new RetryTransaction();
      return true;
    });
  }

  async recordFetch(campaign: string, device: string): Promise<void> {
    await this.db.bounded(() => fleet.recordFetch(this.db, campaign, device));
  }

  // The status path (statusContext, recordStatus, recordOffline, recordOnline) is never refused here: status-ingest.ts bounds it and holds the broker instead (§12.9).
  statusContext(campaign: string, device: string): Promise<StatusContext | undefined> {
    return this.statusReads.call({ campaign, device });
  }

  recordStatus(s: StatusRecord): Promise<boolean> {
    return this.statusWrites.call(s);
  }

  async recordOffline(device: string): Promise<boolean> {
    return this.db.statusLane(() => fleet.recordOffline(this.db, device));
  }

  recordTimeouts(campaign: string, devices: readonly string[], cutoff: number): Promise<string[]> {
    return fleet.recordTimeouts(this.db, campaign, devices, cutoff);
  }

  excludeDevice(campaign: string, device: string): Promise<ExcludeResult> {
    return fleet.excludeDevice(this.db, campaign, device).finally(() => this.gates.invalidate(campaign));
  }

  recordEvent(e: CampaignEvent): Promise<void> {
    return fleet.recordEvent(this.db, e);
  }

  events(campaign: string, limit: number): Promise<CampaignEvent[]> {
    return fleet.events(this.db, campaign, limit);
  }

  devicePage(q: DeviceQuery): Promise<DeviceRow[]> {
    return fleet.devicePage(this.db, q);
  }

  device(id: string): Promise<DeviceRow | undefined> {
    return fleet.device(this.db, id);
  }

  deviceHistory(id: string): Promise<DeviceHistoryRow[]> {
    return fleet.deviceHistory(this.db, id);
  }

  async statuses(campaign: string): Promise<DeviceCampaignRow[]> {
    return this.db.rows('SELECT * FROM device_campaign WHERE campaign = $1 ORDER BY device', [campaign]);
  }

  async devices(group?: string): Promise<DeviceRow[]> {
    return group === undefined ? this.db.rows('SELECT * FROM devices ORDER BY id') : this.db.rows('SELECT * FROM devices WHERE grp = $1 ORDER BY id', [group]);
  }

  async deviceCount(): Promise<number> {
    return (await this.db.rows<{ n: number }>('SELECT count(*)::int AS n FROM devices'))[0]!.n;
  }

  async stateCounts(): Promise<{ campaign: string; state: DeviceCampaignState; n: number }[]> {
    return this.db.rows('SELECT campaign, state, count(*)::int AS n FROM device_campaign GROUP BY campaign, state ORDER BY campaign, state');
  }

  async rejections(): Promise<{ code: number; n: number }[]> {
    return this.db.rows("SELECT code, count(*)::int AS n FROM device_campaign WHERE state = 'rejected' GROUP BY code ORDER BY code");
  }

  campaignCounts(): Promise<{ state: CampaignState; n: number }[]> {
    return fleet.campaignCounts(this.db);
  }

  unexpectedReleases(): Promise<UnexpectedReleases> {
    return fleet.unexpectedReleases(this.db);
  }

  async fetchCount(): Promise<number> {
    return (await this.db.rows<{ n: number }>('SELECT count(*)::int AS n FROM manifest_fetches'))[0]!.n;
  }

  async fetchedDevices(campaign: string): Promise<string[]> {
    const sql = 'SELECT f.device FROM manifest_fetches f JOIN campaigns c ON c.manifest_sha = f.manifest_sha WHERE c.id = $1 ORDER BY f.device';
    return (await this.db.rows<{ device: string }>(sql, [campaign])).map((r) => r.device);
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/** Connect to the database `url` names (no password in it: PGPASSWORD), bring its schema up to date, and keep `dataDir` as the local cache. */
export async function openPgStore(url: string, dataDir: string, maxPending?: number): Promise<PgStore> {
  const u = checkDbUrl(url);
  try {
    mkdirSync(join(dataDir, 'images'), { recursive: true });
    mkdirSync(join(dataDir, 'digests'), { recursive: true });
  } catch (e) {
    throw new FwsealError('IO', `cannot open the data folder ${dataDir}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const db = await connectDb(u, maxPending);
  try {
    await db.migrate(MIGRATIONS);
  } catch (e) {
    await db.close().catch(() => undefined);
    throw e instanceof FwsealError ? e : new FwsealError('IO', `cannot set up the database schema: ${(e as { code?: string }).code ?? (e as Error).message}`);
  }
  return new PgStore(db, dataDir);
}
