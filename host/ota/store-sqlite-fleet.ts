/**
 * The SQLite half of the fleet view and of rollouts that always finish (SPEC.md §12.9 "Rollouts that
 * finish", "Fleet view", "Campaign events"): the device row kept current from every counted event,
 * the last will, timeouts and exclusions written as compare-and-set on the stored rows, campaign
 * events, and the paged device queries. SqliteStore (store-sqlite.ts) delegates here; the contract of
 * each method is OtaStore's (store.ts). Each atomic step is one transaction on the shared connection.
 */
import type Database from 'better-sqlite3';
import { GateCache, type GateRead } from './gate-cache.js';
import {
  type CampaignEvent,
  type CampaignGate,
  type CampaignState,
  type DeviceHistoryRow,
  type DeviceQuery,
  type DeviceRow,
  EXCLUDED_RANK,
  type ExcludeResult,
  type StatusRecord,
  TERMINAL_RANK,
  type UnexpectedReleases,
} from './store.js';

export const FLEET_SCHEMA = `
CREATE INDEX IF NOT EXISTS device_campaign_device ON device_campaign(device);
CREATE TABLE IF NOT EXISTS campaign_events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, campaign TEXT NOT NULL, at INTEGER NOT NULL,
  action TEXT NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS campaign_events_campaign ON campaign_events(campaign, seq);
`;

/** M10 (OtaStore.unexpectedReleases): one pass over the devices; the campaigns are few. */
const carried = (halted: string) =>
  `EXISTS (SELECT 1 FROM campaigns c WHERE c.version = d.version AND c.security_counter = d.counter AND c.halt_code IS ${halted})`;
const UNEXPECTED_RELEASES = `SELECT
    coalesce(sum(NOT (d.version IS d.first_version AND d.counter IS d.first_counter)
      AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.version = d.version AND c.security_counter = d.counter)), 0) AS notInHistory,
    coalesce(sum(${carried('NOT NULL')} AND NOT ${carried('NULL')}), 0) AS notReleaseRole
  FROM devices d WHERE d.version IS NOT NULL AND d.counter IS NOT NULL`;

function prepare(db: Database.Database) {
  return {
    // The device row follows a row that moved (SPEC.md §12.9 "Fleet view"): confirmed installs the campaign's release.
    followStatus: db.prepare(`UPDATE devices SET last_seen = @now, online = 1,
        version = CASE WHEN @state = 'confirmed' THEN (SELECT version FROM campaigns WHERE id = @campaign) ELSE version END,
        counter = CASE WHEN @state = 'confirmed' THEN (SELECT security_counter FROM campaigns WHERE id = @campaign) ELSE counter END,
        last_error_code = CASE WHEN @state IN ('rejected', 'failed') THEN @code ELSE last_error_code END,
        last_error_campaign = CASE WHEN @state IN ('rejected', 'failed') THEN @campaign ELSE last_error_campaign END
      WHERE id = @device`),
    touchFetch: db.prepare(`UPDATE devices SET last_seen = @now
      WHERE id = @device AND grp = (SELECT grp FROM campaigns WHERE id = @campaign)`),
    offline: db.prepare('UPDATE devices SET online = 0 WHERE id = ?'),
    runningSince: db.prepare("SELECT grp FROM campaigns WHERE id = ? AND state = 'running' AND wave_started <= ?"),
    timeOut: db.prepare(`INSERT INTO device_campaign (campaign, device, state, rank, done, total, code, updated)
      SELECT @campaign, d.id, 'timed-out', ${TERMINAL_RANK}, NULL, NULL, NULL, @now FROM devices d
      WHERE d.id = @device AND d.grp = @grp AND d.last_seen <= @cutoff
      ON CONFLICT(campaign, device) DO UPDATE SET state = 'timed-out', rank = ${TERMINAL_RANK}, updated = excluded.updated
      WHERE device_campaign.rank < ${TERMINAL_RANK} AND device_campaign.updated <= @cutoff`),
    campaignOf: db.prepare('SELECT grp, state FROM campaigns WHERE id = ?'),
    deviceIn: db.prepare('SELECT 1 FROM devices WHERE id = ? AND grp = ?'),
    rowState: db.prepare('SELECT state FROM device_campaign WHERE campaign = ? AND device = ?'),
    exclude: db.prepare(`INSERT INTO device_campaign (campaign, device, state, rank, done, total, code, updated)
      VALUES (@campaign, @device, 'excluded', ${EXCLUDED_RANK}, NULL, NULL, NULL, @now)
      ON CONFLICT(campaign, device) DO UPDATE SET state = 'excluded', rank = ${EXCLUDED_RANK}, updated = excluded.updated`),
    recordEvent: db.prepare('INSERT INTO campaign_events (campaign, at, action, actor, detail) VALUES (@campaign, @at, @action, @actor, @detail)'),
    events: db.prepare(`SELECT campaign, at, action, actor, detail FROM
      (SELECT * FROM campaign_events WHERE campaign = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`),
    devicePage: db.prepare(`SELECT * FROM devices WHERE id > @after
        AND (@grp IS NULL OR grp = @grp) AND (@version IS NULL OR version = @version)
        AND (@presence IS NULL OR (CASE WHEN online = 1 AND last_seen >= @since THEN 1 ELSE 0 END) = @presence)
      ORDER BY id LIMIT @limit`),
    device: db.prepare('SELECT * FROM devices WHERE id = ?'),
    // A campaign's request gate and the devices excluded from it (their requests get CAMPAIGN_INACTIVE, SPEC.md §12.9).
    gate: db.prepare('SELECT id, state, rollout, halt_code FROM campaigns WHERE id = ?'),
    excluded: db.prepare("SELECT device FROM device_campaign WHERE campaign = ? AND state = 'excluded'"),
    history: db.prepare(`SELECT dc.*, c.grp, c.version, c.state AS campaign_state, c.created
      FROM device_campaign dc JOIN campaigns c ON c.id = dc.campaign WHERE dc.device = ? ORDER BY c.created, c.id`),
    campaignCounts: db.prepare('SELECT state, count(*) AS n FROM campaigns GROUP BY state ORDER BY state'),
    unexpected: db.prepare(UNEXPECTED_RELEASES),
  };
}

export class SqliteFleet {
  private readonly stmts;

  /** Campaign gates of the requests (gate-cache.ts); updateCampaign and excludeDevice drop a changed one. */
  readonly gates = new GateCache(async (id) => this.gateRead(id));

  constructor(private readonly db: Database.Database) {
    this.stmts = prepare(db);
  }

  /** Inside recordStatus's transaction, after its row moved. */
  followStatus(s: StatusRecord, now: number): void {
    this.stmts.followStatus.run({ campaign: s.campaign, device: s.device, state: s.state, code: s.code ?? null, now });
  }

  /** Inside recordFetch's transaction: a manifest request is not silence. */
  touchFetch(campaign: string, device: string, now: number): void {
    this.stmts.touchFetch.run({ campaign, device, now });
  }

  recordOffline(device: string): boolean {
    return this.stmts.offline.run(device).changes > 0;
  }

  recordTimeouts(campaign: string, devices: readonly string[], cutoff: number): string[] {
    const now = Date.now();
    return this.db
      .transaction(() => {
        const c = this.stmts.runningSince.get(campaign, cutoff) as { grp: string } | undefined;
        if (!c) return [];
        return devices.filter((device) => this.stmts.timeOut.run({ campaign, device, grp: c.grp, cutoff, now }).changes > 0);
      })
      .immediate();
  }

  excludeDevice(campaign: string, device: string): ExcludeResult {
    return this.db
      .transaction((): ExcludeResult => {
        const c = this.stmts.campaignOf.get(campaign) as { grp: string; state: string } | undefined;
        if (!c) return 'no-campaign';
        if (c.state === 'aborted') return 'inactive';
        if (this.stmts.deviceIn.get(device, c.grp) === undefined) return 'no-device';
        if ((this.stmts.rowState.get(campaign, device) as { state: string } | undefined)?.state === 'excluded') return 'already';
        this.stmts.exclude.run({ campaign, device, now: Date.now() });
        this.gates.invalidate(campaign);
        return 'excluded';
      })
      .immediate();
  }

  recordEvent(e: CampaignEvent): void {
    this.stmts.recordEvent.run(e);
  }

  events(campaign: string, limit: number): CampaignEvent[] {
    return this.stmts.events.all(campaign, limit) as CampaignEvent[];
  }

  devicePage(q: DeviceQuery): DeviceRow[] {
    return this.stmts.devicePage.all({
      after: q.after ?? '',
      grp: q.group ?? null,
      version: q.version ?? null,
      presence: q.presence ? (q.presence.online ? 1 : 0) : null,
      since: q.presence?.since ?? 0,
      limit: q.limit,
    }) as DeviceRow[];
  }

  /** What GateCache keeps of campaign `id` (gate-cache.ts). */
  gateRead(id: string): GateRead | undefined {
    const gate = this.stmts.gate.get(id) as CampaignGate | undefined;
    if (!gate) return undefined;
    const excluded = new Set((this.stmts.excluded.all(id) as { device: string }[]).map((r) => r.device));
    return { gate: Object.freeze(gate), excluded };
  }

  device(id: string): DeviceRow | undefined {
    return this.stmts.device.get(id) as DeviceRow | undefined;
  }

  deviceHistory(id: string): DeviceHistoryRow[] {
    return this.stmts.history.all(id) as DeviceHistoryRow[];
  }

  campaignCounts(): { state: CampaignState; n: number }[] {
    return this.stmts.campaignCounts.all() as { state: CampaignState; n: number }[];
  }

  unexpectedReleases(): UnexpectedReleases {
    return this.stmts.unexpected.get() as UnexpectedReleases;
  }
}
