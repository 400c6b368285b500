/**
 * The fleet view and the rollout controls of the HTTP API (SPEC.md §12.9 "Fleet view", "Rollouts that
 * finish"): the known devices, paged and filtered, one device with its history across campaigns, the
 * campaign list by state, and `next` / `exclude` on a campaign. Handlers of the route table
 * (routes.ts), spread into http.ts's dispatch; they call the server's campaign methods with the
 * caller's token name, which the campaign events record.
 */
import { type IncomingMessage } from 'node:http';
import { LIMITS } from '../../shared/limits.js';
import { ID_PATTERN } from '../../shared/ota/topics.js';
import { ApiError, type CreateCampaign, detail, summary } from './campaigns.js';
import { type RouteAnswer, type RouteCall, type RouteHandler } from './http.js';
import { deviceView } from './http-root.js';
import { ONLINE_WINDOW_MS } from './metrics.js';
import { BODY_LIMITS } from './routes.js';
import { type CampaignState, type DeviceQuery, type DeviceRow, type OtaStore } from './store.js';

/** Devices per page of GET /api/devices: the default and the most (SPEC.md §12.9 "Fleet view"). */
export const DEVICE_PAGE_MAX = 1000;
const CAMPAIGN_STATES: readonly CampaignState[] = ['running', 'paused', 'halted', 'completed', 'aborted'];

const ok = (body: unknown, status = 200): RouteAnswer => ({ status, body });
const actorOf = (c: RouteCall): string => c.caller?.name ?? 'api';

/**
 * A device as the fleet view shows it: what `online` reported and every counted event since, whether
 * it is online (marked so, and heard within the online window: MQTT tells of a lost connection only
 * through the last will, which a device without one never sets), and its last error.
 */
export function fleetDeviceView(d: DeviceRow, now = Date.now()) {
  return {
    ...deviceView(d),
    online: d.online === 1 && d.last_seen >= now - ONLINE_WINDOW_MS,
    lastError: d.last_error_code === null ? null : { code: d.last_error_code, campaign: d.last_error_campaign },
  };
}

/** The query of GET /api/devices, checked: unknown parameters and malformed values are 400. */
function deviceQuery(q: URLSearchParams, now: number): DeviceQuery {
  for (const k of q.keys())
    if (!['group', 'version', 'state', 'after', 'limit'].includes(k)) throw new ApiError(400, 'UNKNOWN_KEY', `unknown query parameter ${k}`);
  const group = q.get('group') ?? undefined;
  if (group !== undefined && !ID_PATTERN.test(group)) throw new ApiError(400, 'BAD_VALUE', 'group must be 1..64 characters of [A-Za-z0-9_-]');
  const version = q.get('version') ?? undefined;
  if (version !== undefined && (version.length === 0 || Buffer.byteLength(version) > LIMITS.maxVersionBytes))
    throw new ApiError(400, 'BAD_VALUE', `version must be 1..${LIMITS.maxVersionBytes} bytes`);
  const state = q.get('state');
  if (state !== null && state !== 'online' && state !== 'offline') throw new ApiError(400, 'BAD_VALUE', 'state must be online or offline');
  const after = q.get('after') ?? undefined;
  if (after !== undefined && !ID_PATTERN.test(after)) throw new ApiError(400, 'BAD_VALUE', 'after must be a device id');
  const limitText = q.get('limit');
  const limit = limitText === null ? DEVICE_PAGE_MAX : /^\d{1,5}$/.test(limitText) ? Number(limitText) : 0;
  if (limit < 1 || limit > DEVICE_PAGE_MAX) throw new ApiError(400, 'BAD_VALUE', `limit must be a whole number from 1 to ${DEVICE_PAGE_MAX}`);
  return {
    limit,
    ...(group !== undefined ? { group } : {}),
    ...(version !== undefined ? { version } : {}),
    ...(state !== null ? { presence: { online: state === 'online', since: now - ONLINE_WINDOW_MS } } : {}),
    ...(after !== undefined ? { after } : {}),
  };
}

/** One page: `next` is the `after` of the following page (null on the last one). */
export async function devicePage(store: OtaStore, query: URLSearchParams, now = Date.now()) {
  const q = deviceQuery(query, now);
  const rows = await store.devicePage({ ...q, limit: q.limit + 1 });
  const more = rows.length > q.limit;
  const page = rows.slice(0, q.limit);
  return { devices: page.map((d) => fleetDeviceView(d, now)), next: more ? page[page.length - 1].id : null, more };
}

/** One device and every campaign it took part in (it has a row there), oldest campaign first. */
export async function deviceDetail(store: OtaStore, id: string, now = Date.now()) {
  const d = await store.device(id);
  if (!d) throw new ApiError(404, 'NOT_FOUND', `no device ${id}`);
  const campaigns = (await store.deviceHistory(id)).map((h) => ({
    campaign: h.campaign,
    group: h.grp,
    version: h.version,
    campaignState: h.campaign_state,
    state: h.state,
    done: h.done,
    total: h.total,
    code: h.code,
    updated: h.updated,
  }));
  return { ...fleetDeviceView(d, now), campaigns };
}

/** A small JSON body (at most maxApiJsonBytes; beyond it 413 TOO_LARGE, the rest read and dropped). */
function readJsonObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let refused = Number(req.headers['content-length'] ?? 0) > BODY_LIMITS.json;
    if (refused) reject(new ApiError(413, 'TOO_LARGE', `body larger than ${BODY_LIMITS.json} bytes`));
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (!refused && size > BODY_LIMITS.json) {
        refused = true;
        reject(new ApiError(413, 'TOO_LARGE', `body larger than ${BODY_LIMITS.json} bytes`));
      }
      if (!refused) parts.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (refused) return;
      let v: unknown;
      try {
        v = JSON.parse(Buffer.concat(parts).toString('utf8'));
      } catch {
        return reject(new ApiError(400, 'MALFORMED', 'body is not JSON'));
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return reject(new ApiError(400, 'BAD_VALUE', 'body must be a JSON object'));
      resolve(v as Record<string, unknown>);
    });
  });
}

/** The rollout rules of POST /api/campaigns (checked by campaigns.ts checkRolloutRules). */
export const ROLLOUT_FIELDS = ['deviceTimeoutMs', 'abortMinDevices', 'waveSoakMs', 'waveGate'] as const;
export function rolloutFields(b: Record<string, unknown>): Partial<CreateCampaign> {
  return Object.fromEntries(ROLLOUT_FIELDS.filter((k) => b[k] !== undefined).map((k) => [k, b[k]])) as Partial<CreateCampaign>;
}

function campaignCall(c: RouteCall, digest: Buffer): void {
  c.audit.file = `/api/campaigns/${c.params.id}`;
  c.audit.kind = 'manifest';
  c.audit.digest = digest.toString('hex');
}

/**
 * The handlers of the fleet routes, by route id (routes.ts). A function declaration, not a constant:
 * http.ts spreads it into its table when it loads, and a module cycle through the type imports
 * (server.ts, http.ts) must never meet it uninitialised.
 */
export function fleetHandlers(): Readonly<Record<string, RouteHandler>> {
  return {
    listDevices: async (c) => ok(await devicePage(c.server.store, c.url.searchParams)),
    getDevice: async (c) => ok(await deviceDetail(c.server.store, c.params.device)),
    listCampaigns: async (c) => {
      for (const k of c.url.searchParams.keys()) if (k !== 'state') throw new ApiError(400, 'UNKNOWN_KEY', `unknown query parameter ${k}`);
      const state = c.url.searchParams.get('state');
      if (state !== null && !CAMPAIGN_STATES.includes(state as CampaignState))
        throw new ApiError(400, 'BAD_VALUE', `state must be one of ${CAMPAIGN_STATES.join(', ')}`);
      return ok({ campaigns: (await c.server.store.campaigns((state as CampaignState | null) ?? undefined)).map(summary) });
    },
    nextCampaign: async (c) => {
      const row = await c.server.nextWave(c.params.id, actorOf(c));
      campaignCall(c, row.manifest_sha);
      return ok(await detail(c.server.store, row));
    },
    excludeCampaign: async (c) => {
      c.audit.file = `/api/campaigns/${c.params.id}`;
      const body = await readJsonObject(c.req);
      for (const k of Object.keys(body)) if (k !== 'device') throw new ApiError(400, 'UNKNOWN_KEY', `unknown field ${k}`);
      if (typeof body.device !== 'string') throw new ApiError(400, 'MISSING_FIELD', 'device');
      const row = await c.server.exclude(c.params.id, body.device, actorOf(c));
      campaignCall(c, row.manifest_sha);
      return ok(await detail(c.server.store, row));
    },
  };
}
