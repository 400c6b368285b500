/**
 * Many light devices through one campaign (the "ota" section, issue 15 item 7c): SCALE_DEVICES
 * protocol devices (ota-light.ts) in several forked children on one mosquitto, the 1 MiB release,
 * first through one `fwseal serve` (SQLite), then through two instances with separate --data folders
 * on one PostgreSQL (test/support/postgres.ts) sharing the broker's MQTT 5 shared subscription. Per
 * run: create -> the server counting every device confirmed, server peak RSS, the messages the
 * server handled per second, its CPU per message, and each instance's share from its /metrics.
 *
 * FWSEAL_BENCH_OTA_DEVICES=N sets the device count (default 10,000). Every device holds one
 * connection to mosquitto, which inherits this process's open-file limit: the count is cut to fit it.
 */
import { join } from 'node:path';
import { postgresInstalled, startPostgres } from '../../test/support/postgres.js';
import { envCount, type OtaBench } from './ota-campaign.js';
import { type DeliveryRun, deliveryCampaign, deliveryLine } from './ota-delivery.js';
import { ClientPool } from './ota-fleet.js';
import { BrokerBytes } from './ota-meter.js';
import { fdLimit, postgresPids } from './ota-procs.js';

export const SCALE_DEVICES_DEFAULT = 10_000;
/** File descriptors mosquitto keeps beyond its clients (listener, log, the servers, the monitors). */
const FD_RESERVE = 100;
/** A scale campaign gives up after this long. */
const SCALE_TIMEOUT_MS = 240_000;

export type ScaleRun = { readonly label: string; readonly instances: number; readonly run: DeliveryRun | null; readonly error?: string };

/** The device count: FWSEAL_BENCH_OTA_DEVICES or the default, cut to the open-file limit; the reason when cut. */
export function scaleDevices(env: NodeJS.ProcessEnv = process.env): { devices: number; asked: number; cut: string | null } {
  const asked = envCount('FWSEAL_BENCH_OTA_DEVICES', SCALE_DEVICES_DEFAULT, 9_999_999, env);
  const soft = Number(fdLimit().match(/^(\d+)/)?.[1] ?? Number.POSITIVE_INFINITY);
  const most = soft - FD_RESERVE;
  if (asked <= most) return { devices: asked, asked, cut: null };
  return {
    devices: most,
    asked,
    cut: `open-file limit ${fdLimit()} (mosquitto holds one per device): ${most} devices, not ${asked}; raise ulimit -n for more`,
  };
}

/** The value of one sample of a Prometheus text scrape (0 when absent). */
export function metricValue(text: string, name: string): number {
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

/** One scale campaign through `instances` serve instances (1: SQLite; 2: one PostgreSQL database). */
async function scaleCampaign(b: OtaBench, bytes: BrokerBytes, pool: ClientPool, devices: number, instances: number): Promise<ScaleRun> {
  const label = instances === 1 ? '1 serve (SQLite)' : `${instances} serve instances (PostgreSQL, shared subscription)`;
  b.ctx.log(`ota: ${devices} light devices, ${label}`);
  const pg = instances > 1 ? await startPostgres() : null;
  try {
    const url = pg ? await pg.database() : null;
    const stores = Array.from({ length: instances }, () => (pg && url ? { db: url, env: pg.env } : {}));
    const run = await deliveryCampaign({
      b,
      bytes,
      runDir: join(b.ctx.tmpDir, `scale-${instances}`),
      devices,
      group: `bench-s${instances}`,
      stores,
      pool,
      timeoutMs: SCALE_TIMEOUT_MS,
      // The database server's CPU (postmaster and backends) is part of what the two instances cost.
      ...(pg ? { meter: { postgres: () => postgresPids(pg.port) } } : {}),
    });
    b.ctx.log(`ota: ${deliveryLine(run)}`);
    return { label, instances, run };
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    b.ctx.log(`ota: ${label}: failed: ${error}`);
    return { label, instances, run: null, error };
  } finally {
    await pg?.stop();
  }
}

/** Both scale campaigns on `broker` (a mosquitto with `sys_interval 1`), one pool of forked device processes for both. */
export async function measureScale(b: OtaBench, devices: number): Promise<ScaleRun[]> {
  const bytes = await BrokerBytes.connect(b.broker.url);
  const pool = ClientPool.create(devices, 2);
  const out: ScaleRun[] = [];
  try {
    out.push(await scaleCampaign(b, bytes, pool, devices, 1));
    // FWSEAL_BENCH_OTA_SCALE=sqlite: the SQLite row only (a quicker comparison while working on the server).
    if (process.env.FWSEAL_BENCH_OTA_SCALE === 'sqlite') return out;
    if (postgresInstalled()) out.push(await scaleCampaign(b, bytes, pool, devices, 2));
    else out.push({ label: '2 serve instances (PostgreSQL)', instances: 2, run: null, error: 'PostgreSQL 15 is not installed (npm run setup)' });
  } finally {
    await pool.close();
    await bytes.close();
  }
  return out;
}
