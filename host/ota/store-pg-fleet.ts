/**
 * The PostgreSQL half of the fleet view and of rollouts that always finish (SPEC.md §12.9 "Rollouts
 * that finish", "Fleet view", "Campaign events"), as store-sqlite-fleet.ts has them for SQLite: the
 * device row follows a counted event in the same statement, timeouts and exclusions are written under
 * the campaign row's lock with their conditions on the stored rows, events are appended, and the device
 * queries page by id. PgStore (store-pg.ts) delegates here; the contract is OtaStore's (store.ts).
 */

import {
  type CampaignEvent,
  type CampaignState,
  type DeviceHistoryRow,
  type DeviceQuery,
  type DeviceRow,
  EXCLUDED_RANK,
  type ExcludeResult,
  STATE_RANK,
  type StatusContext,
  type StatusRecord,
  TERMINAL_RANK,
  type UnexpectedReleases,
} from './store.js';
import { type PgDb } from './store-pg-db.js';

/**
 * One statement, so atomic: the (campaign, device) row moves forward only (SPEC.md §12.9 rule 6; a
 * timed-out row takes the device's own end state; excluded never changes), and only when it moved the
 * device row follows: last seen, online, the installed release on `confirmed`, the last error on
 * `rejected` or `failed` (SPEC.md §12.9 "Fleet view").
 */
const RECORD_STATUS = `WITH moved AS (
    INSERT INTO device_campaign (campaign, device, state, rank, done, total, code, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (campaign, device) DO UPDATE SET state = excluded.state, rank = excluded.rank, done = excluded.done,
      total = excluded.total, code = excluded.code, updated = excluded.updated
    WHERE (device_campaign.rank < ${TERMINAL_RANK} AND (excluded.rank > device_campaign.rank
        OR (excluded.rank = device_campaign.rank AND coalesce(excluded.done, 0) > coalesce(device_campaign.done, 0))))
      OR (device_campaign.state = 'timed-out' AND excluded.rank = ${TERMINAL_RANK})
    RETURNING device),
  follow AS (
    UPDATE devices SET last_seen = $8, online = 1,
      version = CASE WHEN $3 = 'confirmed' THEN (SELECT version FROM campaigns WHERE id = $1) ELSE version END,
      counter = CASE WHEN $3 = 'confirmed' THEN (SELECT security_counter FROM campaigns WHERE id = $1) ELSE counter END,
      last_error_code = CASE WHEN $3 IN ('rejected', 'failed') THEN $7 ELSE last_error_code END,
      last_error_campaign = CASE WHEN $3 IN ('rejected', 'failed') THEN $1 ELSE last_error_campaign END
    WHERE id = $2 AND EXISTS (SELECT 1 FROM moved))
  SELECT count(*)::int AS n FROM moved`;

/**
 * RECORD_STATUS for many events in one statement (PgStore's status batcher, SPEC.md §12.9
 * "PostgreSQL"): the same conditions row by row. The input is sorted, so two instances writing
 * overlapping batches lock the rows in one order; at most one event per device (StatusBatcher's key),
 * so no row is changed twice.
 */
const RECORD_STATUSES = `WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::int[], $6::int[], $7::int[])
      AS t(campaign, device, state, rank, done, total, code) ORDER BY campaign, device),
  moved AS (
    INSERT INTO device_campaign (campaign, device, state, rank, done, total, code, updated)
      SELECT campaign, device, state, rank, done, total, code, $8 FROM input
    ON CONFLICT (campaign, device) DO UPDATE SET state = excluded.state, rank = excluded.rank, done = excluded.done,
      total = excluded.total, code = excluded.code, updated = excluded.updated
    WHERE (device_campaign.rank < ${TERMINAL_RANK} AND (excluded.rank > device_campaign.rank
        OR (excluded.rank = device_campaign.rank AND coalesce(excluded.done, 0) > coalesce(device_campaign.done, 0))))
      OR (device_campaign.state = 'timed-out' AND excluded.rank = ${TERMINAL_RANK})
    RETURNING campaign, device, state, code),
  follow AS (
    UPDATE devices d SET last_seen = $8, online = 1,
      version = CASE WHEN m.state = 'confirmed' THEN c.version ELSE d.version END,
      counter = CASE WHEN m.state = 'confirmed' THEN c.security_counter ELSE d.counter END,
      last_error_code = CASE WHEN m.state IN ('rejected', 'failed') THEN m.code ELSE d.last_error_code END,
      last_error_campaign = CASE WHEN m.state IN ('rejected', 'failed') THEN m.campaign ELSE d.last_error_campaign END
    FROM moved m LEFT JOIN campaigns c ON c.id = m.campaign WHERE d.id = m.device)
  SELECT campaign, device FROM moved`;

/** PgStore.recordStatus, batched: for each record, true when its row moved. */
export async function recordStatuses(db: PgDb, records: readonly StatusRecord[]): Promise<boolean[]> {
  if (records.length === 1) {
    const s = records[0]!;
    const values = [s.campaign, s.device, s.state, STATE_RANK[s.state], s.done ?? null, s.total ?? null, s.code ?? null, Date.now()];
    return [(await db.rowsRetrying<{ n: number }>(RECORD_STATUS, values))[0]!.n > 0];
  }
  const column = <T>(f: (s: StatusRecord) => T) => records.map(f);
  const values = [
    column((s) => s.campaign),
    column((s) => s.device),
    column((s) => s.state),
    column((s) => STATE_RANK[s.state]),
    column((s) => s.done ?? null),
    column((s) => s.total ?? null),
    column((s) => s.code ?? null),
    Date.now(),
  ];
  // Ids are [A-Za-z0-9_-] (§12.1): '/' cannot make two pairs one key.
  const moved = new Set((await db.rowsRetrying<{ campaign: string; device: string }>(RECORD_STATUSES, values)).map((r) => `${r.campaign}/${r.device}`));
  return records.map((s) => moved.has(`${s.campaign}/${s.device}`));
}

/** What deciding whether a status event counts needs (OtaStore.statusContext), for many (campaign, device) pairs in one read. */
const STATUS_CONTEXTS = `SELECT q.i, c.id, c.grp, c.rollout, c.version, c.security_counter,
    d.grp AS device_grp, d.version AS device_version, d.counter AS device_counter,
    EXISTS (SELECT 1 FROM manifest_fetches f WHERE f.manifest_sha = c.manifest_sha AND f.device = q.device)::int AS fetched
  FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS q(campaign, device, i)
  JOIN campaigns c ON c.id = q.campaign LEFT JOIN devices d ON d.id = q.device`;

/** PgStore.statusContext, batched: each pair's context, undefined for a campaign that does not exist. */
export async function statusContexts(db: PgDb, pairs: readonly { campaign: string; device: string }[]): Promise<(StatusContext | undefined)[]> {
  const rows = await db.rows<StatusContext & { i: number }>(STATUS_CONTEXTS, [pairs.map((p) => p.campaign), pairs.map((p) => p.device)]);
  const out: (StatusContext | undefined)[] = pairs.map(() => undefined);
  for (const { i, ...context } of rows) out[i - 1] = context;
  return out;
}

/** PgStore.recordFetch: one statement (the fetch record and the device's last seen, both only in the campaign's group). */
export async function recordFetch(db: PgDb, campaign: string, device: string): Promise<void> {
  await db.rows(
    `WITH fetched AS (INSERT INTO manifest_fetches (manifest_sha, device, at)
        SELECT c.manifest_sha, d.id, $3 FROM campaigns c JOIN devices d ON d.id = $2 AND d.grp = c.grp WHERE c.id = $1
        ON CONFLICT DO NOTHING)
      UPDATE devices SET last_seen = $3 WHERE id = $2 AND grp = (SELECT grp FROM campaigns WHERE id = $1)`,
    [campaign, device, Date.now()],
  );
}

export async function recordOffline(db: PgDb, device: string): Promise<boolean> {
  return ((await db.pool.query('UPDATE devices SET online = 0 WHERE id = $1', [device])).rowCount ?? 0) > 0;
}

/** PgStore.recordTimeouts: under the campaign row's lock, every condition checked on the stored rows in one upsert. */
export async function recordTimeouts(db: PgDb, campaign: string, devices: readonly string[], cutoff: number): Promise<string[]> {
  const now = Date.now();
  return db.tx(async (c) => {
    const running = (
      await c.query<{ grp: string }>("SELECT grp FROM campaigns WHERE id = $1 AND state = 'running' AND wave_started <= $2 FOR UPDATE", [campaign, cutoff])
    ).rows[0];
    if (!running || devices.length === 0) return [];
    const timedOut = await c.query<{ device: string }>(
      `INSERT INTO device_campaign (campaign, device, state, rank, done, total, code, updated)
        SELECT $1, d.id, 'timed-out', ${TERMINAL_RANK}, NULL, NULL, NULL, $5 FROM devices d
        WHERE d.id = ANY($2::text[]) AND d.grp = $3 AND d.last_seen <= $4
        ON CONFLICT (campaign, device) DO UPDATE SET state = 'timed-out', rank = ${TERMINAL_RANK}, updated = excluded.updated
        WHERE device_campaign.rank < ${TERMINAL_RANK} AND device_campaign.updated <= $4
        RETURNING device`,
      [campaign, [...new Set(devices)], running.grp, cutoff, now],
    );
    const done = new Set(timedOut.rows.map((r) => r.device));
    return devices.filter((d) => done.delete(d)); // in the caller's order, each once
  });
}

/** PgStore.excludeDevice: under the campaign row's lock. */
export async function excludeDevice(db: PgDb, campaign: string, device: string): Promise<ExcludeResult> {
  return db.tx(async (c): Promise<ExcludeResult> => {
    const row = (await c.query<{ grp: string; state: string }>('SELECT grp, state FROM campaigns WHERE id = $1 FOR UPDATE', [campaign])).rows[0];
    if (!row) return 'no-campaign';
    if (row.state === 'aborted') return 'inactive';
    if ((await c.query('SELECT 1 FROM devices WHERE id = $1 AND grp = $2', [device, row.grp])).rows.length === 0) return 'no-device';
    const before = (await c.query<{ state: string }>('SELECT state FROM device_campaign WHERE campaign = $1 AND device = $2 FOR UPDATE', [campaign, device]))
      .rows[0];
    if (before?.state === 'excluded') return 'already';
    await c.query(
      `INSERT INTO device_campaign (campaign, device, state, rank, done, total, code, updated)
        VALUES ($1, $2, 'excluded', ${EXCLUDED_RANK}, NULL, NULL, NULL, $3)
        ON CONFLICT (campaign, device) DO UPDATE SET state = 'excluded', rank = ${EXCLUDED_RANK}, updated = excluded.updated`,
      [campaign, device, Date.now()],
    );
    return 'excluded';
  });
}

export async function recordEvent(db: PgDb, e: CampaignEvent): Promise<void> {
  await db.rows('INSERT INTO campaign_events (campaign, at, action, actor, detail) VALUES ($1, $2, $3, $4, $5)', [
    e.campaign,
    e.at,
    e.action,
    e.actor,
    e.detail,
  ]);
}

export function events(db: PgDb, campaign: string, limit: number): Promise<CampaignEvent[]> {
  return db.rows(
    `SELECT campaign, at, action, actor, detail FROM
      (SELECT * FROM campaign_events WHERE campaign = $1 ORDER BY seq DESC LIMIT $2) newest ORDER BY seq`,
    [campaign, limit],
  );
}

export function devicePage(db: PgDb, q: DeviceQuery): Promise<DeviceRow[]> {
  return db.rows(
    `SELECT * FROM devices WHERE id > $1 AND ($2::text IS NULL OR grp = $2) AND ($3::text IS NULL OR version = $3)
      AND ($4::int IS NULL OR (CASE WHEN online = 1 AND last_seen >= $5 THEN 1 ELSE 0 END) = $4)
      ORDER BY id LIMIT $6`,
    [q.after ?? '', q.group ?? null, q.version ?? null, q.presence ? (q.presence.online ? 1 : 0) : null, q.presence?.since ?? 0, q.limit],
  );
}

export async function device(db: PgDb, id: string): Promise<DeviceRow | undefined> {
  return (await db.rows<DeviceRow>('SELECT * FROM devices WHERE id = $1', [id]))[0];
}

export function deviceHistory(db: PgDb, id: string): Promise<DeviceHistoryRow[]> {
  return db.rows(
    `SELECT dc.*, c.grp, c.version, c.state AS campaign_state, c.created
      FROM device_campaign dc JOIN campaigns c ON c.id = dc.campaign WHERE dc.device = $1 ORDER BY c.created, c.id`,
    [id],
  );
}

/** PgStore.campaignCounts: campaigns by state (fwseal_campaigns). */
export function campaignCounts(db: PgDb): Promise<{ state: CampaignState; n: number }[]> {
  return db.rows('SELECT state, count(*)::int AS n FROM campaigns GROUP BY state ORDER BY state');
}

/** M10 (OtaStore.unexpectedReleases), as store-sqlite-fleet.ts counts it: one pass over the devices; the campaigns are few. */
const carried = (halted: string) =>
  `EXISTS (SELECT 1 FROM campaigns c WHERE c.version = d.version AND c.security_counter = d.counter AND c.halt_code IS ${halted})`;
const UNEXPECTED_RELEASES = `SELECT
    count(*) FILTER (WHERE NOT (d.version IS NOT DISTINCT FROM d.first_version AND d.counter IS NOT DISTINCT FROM d.first_counter)
      AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.version = d.version AND c.security_counter = d.counter))::int AS "notInHistory",
    count(*) FILTER (WHERE ${carried('NOT NULL')} AND NOT ${carried('NULL')})::int AS "notReleaseRole"
  FROM devices d WHERE d.version IS NOT NULL AND d.counter IS NOT NULL`;

/** PgStore.unexpectedReleases: one statement. */
export async function unexpectedReleases(db: PgDb): Promise<UnexpectedReleases> {
  return (await db.rows<UnexpectedReleases>(UNEXPECTED_RELEASES))[0]!;
}
