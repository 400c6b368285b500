/**
 * The PostgreSQL schema of the OTA store (SPEC.md §12.9 "PostgreSQL"), as migrations: entry N brings
 * a database at schema version N - 1 to N (store-pg-db.ts `migrate`, recorded in `schema_version`).
 * A released entry is never edited: a change of schema is a new entry. The tables mirror the SQLite
 * ones (store-sqlite.ts, root-store-sqlite.ts) with PostgreSQL types: BIGINT where a value may pass
 * 2^31 (rollout is up to 2^32, counters up to 2^53, times in ms), text keys in the C collation (the
 * byte order SQLite sorts by), plus `fleet_size` (the count of devices ever added, one row every new
 * device updates: the maxKnownDevices bound between instances) and the content-addressed assets.
 */
import { DEFAULT_DEVICE_TIMEOUT_MS } from './store.js';

export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE campaigns (
    id TEXT COLLATE "C" PRIMARY KEY, grp TEXT COLLATE "C" NOT NULL, version TEXT NOT NULL, security_counter BIGINT NOT NULL,
    state TEXT NOT NULL, wave INTEGER NOT NULL, waves TEXT NOT NULL, rollout BIGINT NOT NULL,
    abort_failure_rate DOUBLE PRECISION NOT NULL, halt_baseline INTEGER NOT NULL DEFAULT 0, halt_code INTEGER,
    manifest BYTEA NOT NULL, manifest_sha BYTEA NOT NULL, image_sha TEXT NOT NULL, image_size BIGINT NOT NULL,
    chunk_size INTEGER NOT NULL, block_size INTEGER NOT NULL, page_count INTEGER NOT NULL,
    created BIGINT NOT NULL, updated BIGINT NOT NULL,
    device_timeout_ms BIGINT NOT NULL DEFAULT ${DEFAULT_DEVICE_TIMEOUT_MS}, abort_min_devices INTEGER NOT NULL DEFAULT 1,
    wave_soak_ms BIGINT NOT NULL DEFAULT 0, wave_gate TEXT NOT NULL DEFAULT 'auto', wave_started BIGINT NOT NULL DEFAULT 0,
    wave_done_at BIGINT, approved_wave INTEGER);
  CREATE INDEX campaigns_grp ON campaigns (grp, state);
  CREATE TABLE devices (
    id TEXT COLLATE "C" PRIMARY KEY, grp TEXT COLLATE "C" NOT NULL, version TEXT, counter BIGINT, last_seen BIGINT NOT NULL,
    trust_version BIGINT, revocation_version BIGINT, revocation_digest BYTEA,
    online INTEGER NOT NULL DEFAULT 1, last_error_code INTEGER, last_error_campaign TEXT);
  CREATE INDEX devices_grp ON devices (grp, id);
  CREATE TABLE fleet_size (one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one), n BIGINT NOT NULL);
  INSERT INTO fleet_size (n) VALUES (0);
  CREATE TABLE device_campaign (
    campaign TEXT COLLATE "C" NOT NULL, device TEXT COLLATE "C" NOT NULL, state TEXT NOT NULL, rank INTEGER NOT NULL,
    done INTEGER, total INTEGER, code INTEGER, updated BIGINT NOT NULL, PRIMARY KEY (campaign, device));
  CREATE INDEX device_campaign_device ON device_campaign (device);
  CREATE TABLE campaign_events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, campaign TEXT COLLATE "C" NOT NULL, at BIGINT NOT NULL,
    action TEXT NOT NULL, actor TEXT NOT NULL, detail TEXT NOT NULL);
  CREATE INDEX campaign_events_campaign ON campaign_events (campaign, seq);
  CREATE TABLE manifest_fetches (
    manifest_sha BYTEA NOT NULL, device TEXT COLLATE "C" NOT NULL, at BIGINT NOT NULL, PRIMARY KEY (manifest_sha, device));
  CREATE TABLE trust_bundles (version BIGINT PRIMARY KEY, envelope BYTEA NOT NULL, digest BYTEA NOT NULL, accepted BIGINT NOT NULL);
  CREATE TABLE revocation_lists (
    version BIGINT PRIMARY KEY, envelope BYTEA NOT NULL, digest BYTEA NOT NULL, trust_version BIGINT NOT NULL, published BIGINT NOT NULL);
  CREATE TABLE revocation_acks (version BIGINT NOT NULL, device TEXT COLLATE "C" NOT NULL, seconds DOUBLE PRECISION NOT NULL, PRIMARY KEY (version, device));
  CREATE TABLE blobs (sha256 BYTEA PRIMARY KEY, size BIGINT NOT NULL, stored BIGINT NOT NULL);
  CREATE TABLE blob_chunks (sha256 BYTEA NOT NULL, idx INTEGER NOT NULL, bytes BYTEA NOT NULL, PRIMARY KEY (sha256, idx));
  -- Firmware barely compresses: its bytes are kept out of line as they are, not run through pglz.
  ALTER TABLE blob_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL;
  CREATE TABLE campaign_digests (campaign TEXT COLLATE "C" PRIMARY KEY, sha256 BYTEA NOT NULL);`,
  // 2 (issue 16): the release each device was first seen with (M10, OtaStore.unexpectedReleases); devices
  // already known count as first seen with the release they run at the upgrade, so none is flagged for it.
  `ALTER TABLE devices ADD COLUMN first_version TEXT, ADD COLUMN first_counter BIGINT;
  UPDATE devices SET first_version = version, first_counter = counter;`,
];
