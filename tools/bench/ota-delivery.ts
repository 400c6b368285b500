/**
 * Delivery only (the "ota" section's verdict rows, issue 15 item 7a/b): one `fwseal serve` and
 * DEVICES protocol devices (ota-light.ts, in forked children) that check every chunk but flash
 * nothing, one campaign of the update (1 MiB by default), against mosquitto's raw fan-out of the same bytes to the
 * same number of subscribers (fanout.ts, the same children), both measured in this run. Per run:
 * the delivery time (the first device seeing the announcement -> the last device's last chunk
 * checked), the time from `campaign create` to the server counting every device confirmed, and
 * over that whole window the CPU seconds of serve, mosquitto and the devices and the bytes mosquitto
 * sent ($SYS/broker/bytes/sent), per delivered GiB.
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createCampaign, IMAGE_BYTES, type OtaBench, type ServeStore, serve } from './ota-campaign.js';
import { type ClientPool, type Round } from './ota-fleet.js';
import { type LightStats } from './ota-light.js';
import { type BrokerBytes, Meter, type MeterResult, type PidGroups } from './ota-meter.js';
import { getJson, mosquittoPid, type Proc, vmHwmKiB, waitFor } from './ota-procs.js';

/** The protocol devices' request time-out (a device's default) and blocks per request. */
export const TIMEOUT_MS = 5000;
export const WINDOW = 16;
export const GiB = 1024 ** 3;

/** One delivery campaign's figures. Times in seconds from `campaign create`; CPU in seconds over create -> complete. */
export type DeliveryRun = {
  readonly devices: number;
  /** The release's image size: every device's delivered bytes. */
  readonly imageBytes: number;
  readonly connectSeconds: number;
  /** First announcement seen -> last device's last chunk checked. */
  readonly delivery: number;
  readonly createToAnnounced: number;
  readonly createToDelivered: number;
  /** create -> the server counting every device confirmed (its API, polled). */
  readonly complete: number;
  readonly stats: LightStats;
  readonly meter: MeterResult;
  /** Peak RSS of each serve instance, KiB. */
  readonly serverHwm: (number | null)[];
  /** Each instance's /metrics text at the end. */
  readonly metrics: string[];
  readonly state: string;
  readonly confirmed: number;
  /** The campaign's device counts at the end (GET /api/campaigns/ID). */
  readonly counts: Record<string, number>;
  /** Every device checked every chunk and the server counted every one confirmed, before the time-out. */
  readonly completed: boolean;
  /** When not completed: the end of each instance's log, for the notes. */
  readonly serverLogTail: string[];
};

/** A fresh store's device count, from /metrics (every device the store knows: the bench's fleet only). */
export async function devicesSeen(api: string): Promise<number> {
  const text = await (await fetch(`${api}/metrics`)).text();
  return Number(text.match(/^fwseal_devices_seen (\S+)$/m)?.[1] ?? 0);
}

type CampaignEnd = { state: string; confirmed: number; counts: Record<string, number>; reached: boolean };

/** Every device has sent all its events: the server's counts not moving for this long means they will not (events were lost). */
const STUCK_MS = 20_000;

/**
 * Poll the campaign until `n` devices confirmed or it stopped, for at most `ms` (and at most STUCK_MS
 * without a change once every device finished); what the server counted then.
 */
export async function campaignDone(api: string, id: string, n: number, ms: number, alive: Proc): Promise<CampaignEnd> {
  const end: CampaignEnd = { state: '', confirmed: 0, counts: {}, reached: false };
  let seen = '';
  let since = Date.now();
  const check = async () => {
    const d = await getJson<{ state: string; counts: Record<string, number> }>(`${api}/api/campaigns/${id}`);
    end.state = d.state;
    end.counts = d.counts;
    end.confirmed = d.counts.confirmed ?? 0;
    const now = JSON.stringify(d.counts);
    if (now !== seen) [seen, since] = [now, Date.now()];
    return end.confirmed >= n || ['aborted', 'halted'].includes(end.state) || Date.now() - since > STUCK_MS;
  };
  // Polled every 100 ms, less often for large fleets (a campaign's counts cost the server a query over its devices).
  end.reached = await waitFor(`${n} devices confirmed in campaign ${id}`, ms, check, Math.max(100, n / 10), alive).then(
    () => end.confirmed >= n,
    (e: unknown) => {
      if (alive.child.exitCode !== null) throw e;
      return false;
    },
  );
  return end;
}

/** Every device done, then the server counting them confirmed, within one deadline; a time-out is a result, not a failure. */
async function awaitCampaign(
  fleet: Round,
  api: string,
  id: string,
  n: number,
  deadline: number,
  alive: Proc,
): Promise<{ stats: LightStats; end: CampaignEnd }> {
  const stats = await fleet.done(Math.max(1000, deadline - Date.now())).catch(async (e: unknown) => {
    if ((e as Error).message.includes('exited')) throw e;
    return fleet.stats();
  });
  const end = await campaignDone(api, id, n, Math.max(1000, deadline - Date.now()), alive);
  return { stats, end: { ...end, reached: end.reached && stats.finished >= n } };
}

export type DeliverySetup = {
  readonly b: OtaBench;
  readonly bytes: BrokerBytes;
  readonly runDir: string;
  readonly devices: number;
  readonly group: string;
  /** One entry per serve instance (each its own data folder; a shared --db for several). */
  readonly stores: readonly ServeStore[];
  readonly pool: ClientPool;
  readonly timeoutMs: number;
  /** More processes to meter (the database server). */
  readonly meter?: PidGroups;
};

/** One campaign to `devices` protocol devices through `stores.length` serve instances (the campaign is created on the first). */
export async function deliveryCampaign(s: DeliverySetup): Promise<DeliveryRun> {
  const { b } = s;
  mkdirSync(s.runDir, { recursive: true });
  const servers: { server: Proc; api: string }[] = [];
  let fleet: Round | null = null;
  try {
    for (let k = 0; k < s.stores.length; k++) servers.push(await serve(b, join(s.runDir, `serve-${k}`), s.stores[k]!));
    const [first] = servers;
    const spec = {
      mode: 'light',
      url: b.broker.url,
      prefix: 'fwseal',
      group: s.group,
      idPrefix: `${s.group}-`,
      timeoutMs: TIMEOUT_MS,
      window: WINDOW,
    } as const;
    fleet = await s.pool.round({ ...spec, count: s.devices }, s.timeoutMs);
    await waitFor(
      `${s.devices} devices on the server`,
      s.timeoutMs,
      async () => (await devicesSeen(first!.api)) >= s.devices,
      Math.max(250, s.devices / 10),
      first!.server,
    );
    const serves = Object.fromEntries(servers.map((x, k) => [`serve ${k + 1}`, [x.server.child.pid]]));
    const groups: PidGroups = { mosquitto: [mosquittoPid(b.broker)], ...serves, ...s.meter, devices: s.pool.pids };
    const meter = await Meter.begin(groups, s.bytes);
    const tCreate = performance.timeOrigin + performance.now();
    const id = await createCampaign(b, first!.api, s.group);
    const { stats, end } = await awaitCampaign(fleet, first!.api, id, s.devices, Date.now() + s.timeoutMs, first!.server);
    const complete = (performance.timeOrigin + performance.now() - tCreate) / 1000;
    const m = await meter.end();
    const metrics = await Promise.all(servers.map(async (x) => (await fetch(`${x.api}/metrics`)).text()));
    return {
      devices: s.devices,
      imageBytes: statSync(b.rel.v2Bin).size,
      connectSeconds: fleet.connectSeconds,
      delivery: (stats.lastDoneAt - stats.firstAnnouncedAt) / 1000,
      createToAnnounced: (stats.firstAnnouncedAt - tCreate) / 1000,
      createToDelivered: (stats.lastDoneAt - tCreate) / 1000,
      complete,
      stats,
      meter: m,
      serverHwm: servers.map((x) => vmHwmKiB(x.server.child.pid)),
      metrics,
      state: end.state,
      confirmed: end.confirmed,
      counts: end.counts,
      completed: end.reached,
      serverLogTail: end.reached ? [] : servers.map((x) => x.server.err.slice(-800)),
    };
  } finally {
    await fleet?.end();
    for (const x of servers) await b.procs.stop(x.server);
    rmSync(s.runDir, { recursive: true, force: true });
  }
}

/** Delivery-only run `i` of the section: `devices` devices, one serve on SQLite, fresh data and group. */
export async function deliveryRun(b: OtaBench, bytes: BrokerBytes, pool: ClientPool, devices: number, i: number): Promise<DeliveryRun> {
  b.ctx.log(`ota: delivery-only run ${i + 1}: serve, ${devices} protocol devices (forked), ${IMAGE_BYTES} bytes`);
  const runDir = join(b.ctx.tmpDir, `delivery-${i + 1}`);
  const r = await deliveryCampaign({ b, bytes, runDir, devices, group: `bench-d${i + 1}`, stores: [{}], pool, timeoutMs: 120_000 });
  b.ctx.log(`ota: ${deliveryLine(r)}`);
  return r;
}

/** CPU seconds of every serve instance of a run (null when one could not be read). */
export function serveCpu(r: DeliveryRun): number | null {
  let sum = 0;
  for (const [k, v] of Object.entries(r.meter.cpu)) {
    if (!k.startsWith('serve')) continue;
    if (v === null) return null;
    sum += v;
  }
  return sum;
}

/** Broker bytes against delivered bytes, and the blocks each instance multicast (SPEC.md §12.11: a copy per listener on the data topic). */
function bytesText(r: DeliveryRun): string {
  const ratio = r.meter.bytesSent / (r.devices * r.imageBytes);
  const multicasts = r.metrics.map((m) => Number(m.match(/^fwseal_block_multicasts_total (\S+)$/m)?.[1] ?? 0));
  return `broker sent ${(r.meter.bytesSent / 1e6).toFixed(1)} MB (${ratio.toFixed(2)}x the delivered bytes), dropped ${r.meter.dropped} messages; multicasts ${multicasts.join(' + ')}`;
}

/** One run as a note line. */
export function deliveryLine(r: DeliveryRun): string {
  const c = r.meter.cpu;
  const f = (x: number | null | undefined) => (x === null || x === undefined ? '?' : x.toFixed(2));
  const serves = Object.keys(c).filter((k) => k.startsWith('serve'));
  const serveText = serves.length === 1 ? f(c[serves[0]!]) : `${f(serveCpu(r))} (${serves.map((k) => `${k}: ${f(c[k])}`).join(', ')})`;
  const at = (t: number) => (t ? `${(t - r.stats.firstAnnouncedAt) / 1000 >= 0 ? ((t - r.stats.firstAnnouncedAt) / 1000).toFixed(3) : '?'} s` : '-');
  const timeline = `after the first announcement: last announcement ${at(r.stats.lastAnnouncedAt)}, last device asking for blocks ${at(r.stats.lastBlocksAskedAt)}, first block ${at(r.stats.firstBlockAt)}, first device done ${at(r.stats.firstDoneAt)}`;
  return `${r.devices} devices: ${timeline}; create -> announced ${r.createToAnnounced.toFixed(3)} s, delivery ${r.delivery.toFixed(3)} s, create -> all checked ${r.createToDelivered.toFixed(3)} s, create -> server counts ${r.confirmed} confirmed ${r.complete.toFixed(2)} s (${r.state}${r.completed ? '' : `, NOT COMPLETED: ${r.stats.finished} devices done, counts ${JSON.stringify(r.counts)}`}); CPU s serve ${serveText}, mosquitto ${f(c.mosquitto)},${c.postgres !== undefined ? ` postgres ${f(c.postgres)},` : ''} devices ${f(c.devices)}, bench ${r.meter.benchCpu.toFixed(2)}; ${bytesText(r)}; requests: manifest ${r.stats.manifestRequests}, page ${r.stats.pageRequests}, block ${r.stats.blockRequests}, status ${r.stats.statusEvents}, retries ${r.stats.retries}, duplicate blocks ${r.stats.duplicateBlocks}, bad ${r.stats.badBlocks}, error replies ${r.stats.errorReplies}`;
}
