/**
 * Every route of the server's HTTP API, in one table (SPEC.md §12.9 "HTTP API"): method, path, the
 * least role that may call it, whether it changes state (and so is audited, §15.6), the kind of body
 * it reads and a summary. The server dispatches from this table and `GET /api/openapi.json`
 * (openapi.ts) is generated from it, so the description cannot list a route the server does not
 * serve, or miss one it does.
 *
 * Roles (tokens.ts): viewer may make every GET, operator also changes campaigns and uploads images,
 * admin also publishes trust bundles and revocation lists. `/healthz` and `/metrics` are open: load
 * balancers, orchestrators and Prometheus scrapers poll them without credentials, and they carry no
 * secret and change nothing (a deployment that must hide fleet counts keeps them off public networks).
 *
 * The web console (SPEC.md §12.9 "Web console", host/ota/console/) has rows of its own here: its
 * pages and their script and style sheet. They are not API: open, answered as HTML, JavaScript or
 * CSS, and not in the OpenAPI description (CONSOLE_ROUTES, apart from ROUTES). They carry no data:
 * the page's script reads the API with the token the operator signs in with, so the same roles apply.
 */
import { LIMITS } from '../../shared/limits.js';
import { ApiError } from './campaigns.js';
import { LOG_QUERIES } from './http-log.js';
import { type Role } from './tokens.js';

/** `open`: no token needed, even when the API has tokens. */
export type Access = 'open' | Role;
/** What a route reads: nothing, a JSON object, an image (streamed to disk) or one signed envelope. */
export type BodyKind = 'none' | 'json' | 'image' | 'envelope';
export type Method = 'GET' | 'POST' | 'PUT';
/** What a console route answers (not JSON: served with the console's security headers, host/ota/console/headers.ts). */
export type ConsoleAnswer = 'page' | 'script' | 'style';

export type PathParam = { readonly pattern: string; readonly description: string };
export type QueryParam = { readonly name: string; readonly pattern: string; readonly description: string };

export type RouteSpec = {
  /** The OpenAPI operationId; unique. */
  readonly id: string;
  readonly method: Method;
  /** An OpenAPI path template: `{name}` stands for one path segment (PATH_PARAMS). */
  readonly path: string;
  readonly access: Access;
  /** Changes state: recorded in the audit log under `audit` (SPEC.md §15.6), refused calls too. */
  readonly mutates: boolean;
  readonly audit?: string;
  readonly body: BodyKind;
  /** `text`: Prometheus text; `page`, `script`, `style`: the web console's HTML, JavaScript, CSS; else JSON. */
  readonly answer: 'json' | 'text' | ConsoleAnswer;
  readonly query?: readonly QueryParam[];
  readonly summary: string;
};

/** Largest body of each kind (SPEC.md §12.9: 413 TOO_LARGE beyond it). */
export const BODY_LIMITS: Readonly<Record<Exclude<BodyKind, 'none'>, number>> = Object.freeze({
  json: LIMITS.maxApiJsonBytes,
  image: LIMITS.maxImageSize,
  envelope: LIMITS.maxEnvelopeBytes,
});

export const PATH_PARAMS: Readonly<Record<string, PathParam>> = Object.freeze({
  id: { pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'campaign id' },
  sha256: { pattern: '^[0-9a-f]{64}$', description: 'SHA-256 of the image, lowercase hex' },
  device: { pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'device id' },
});

const AUDIT_QUERY: readonly QueryParam[] = Object.freeze([
  { name: 'after', pattern: '^\\d{1,15}$', description: 'the line (seq) after which the page starts; default 0' },
  { name: 'limit', pattern: '^\\d{1,15}$', description: 'at most this many lines, 1 to 1000; default 100' },
]);

/** GET /api/devices (SPEC.md §12.9 "Fleet view"): filters and the page. */
const DEVICE_QUERY: readonly QueryParam[] = Object.freeze([
  { name: 'group', pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'only devices of this group' },
  { name: 'version', pattern: '^.{1,64}$', description: 'only devices that run this version' },
  { name: 'state', pattern: '^(online|offline)$', description: 'online: marked online and heard within 24 h; offline: the others' },
  { name: 'after', pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'the device id after which the page starts (the next of the page before)' },
  { name: 'limit', pattern: '^\\d{1,5}$', description: 'at most this many devices, 1 to 1000; default 1000' },
]);

const campaignAction = (action: 'pause' | 'resume' | 'abort' | 'next' | 'exclude', summary: string): RouteSpec => ({
  id: `${action}Campaign`,
  method: 'POST',
  path: `/api/campaigns/{id}/${action}`,
  access: 'operator',
  mutates: true,
  audit: `campaign ${action}`,
  body: action === 'exclude' ? 'json' : 'none',
  answer: 'json',
  summary,
});

const read = (id: string, path: string, summary: string, extra: Partial<RouteSpec> = {}): RouteSpec => ({
  id,
  method: 'GET',
  path,
  access: 'viewer',
  mutates: false,
  body: 'none',
  answer: 'json',
  summary,
  ...extra,
});

const TABLE: RouteSpec[] = [
  read('health', '/healthz', 'liveness, and whether the server is connected to the broker', { access: 'open' }),
  read('metrics', '/metrics', 'Prometheus metrics (text format 0.0.4)', { access: 'open', answer: 'text' }),
  read('openApi', '/api/openapi.json', 'this description of the API (OpenAPI 3.1)'),
  read('getRoot', '/api/root', 'the trust bundle and revocation list the servers publish'),
  {
    id: 'publishRoot',
    method: 'POST',
    path: '/api/root',
    access: 'admin',
    mutates: true,
    audit: 'trust publish',
    body: 'envelope',
    answer: 'json',
    summary: 'publish a signed trust bundle or revocation list (§12.13)',
  },
  read('getAudit', '/api/audit', "the server's audit log, paged (§15.6)", { query: AUDIT_QUERY }),
  read('whoAmI', '/api/whoami', 'the caller: the name and role of its token (the web console signs in with it)'),
  read('getOverview', '/api/overview', 'the fleet at a glance for the web console: versions, root of trust, campaigns in progress, the SLIs'),
  read('listDevices', '/api/devices', 'the known devices (a page), with what each runs and acknowledged', { query: DEVICE_QUERY }),
  read('getDevice', '/api/devices/{device}', 'one device and every campaign it took part in'),
  {
    id: 'putImage',
    method: 'PUT',
    path: '/api/images/{sha256}',
    access: 'operator',
    mutates: true,
    audit: 'image upload',
    body: 'image',
    answer: 'json',
    summary: 'upload an image, named by its SHA-256',
  },
  read('listCampaigns', '/api/campaigns', 'every campaign (or those in one state), oldest first', {
    query: [{ name: 'state', pattern: '^(running|paused|halted|completed|aborted)$', description: 'only campaigns in this state' }],
  }),
  {
    id: 'createCampaign',
    method: 'POST',
    path: '/api/campaigns',
    access: 'operator',
    mutates: true,
    audit: 'campaign create',
    body: 'json',
    answer: 'json',
    summary: 'create a campaign from a signed manifest and an uploaded image',
  },
  read('getCampaign', '/api/campaigns/{id}', 'one campaign with its counts and devices'),
  campaignAction('pause', 'pause a running campaign'),
  campaignAction('resume', 'resume a paused or halted campaign'),
  campaignAction('abort', 'abort a campaign for good'),
  campaignAction('next', 'let the next wave open (a campaign with the manual wave gate)'),
  campaignAction('exclude', 'take a device out of a campaign'),
  // The transparency log of fwseal serve --log (SPEC.md §16); 404 NOT_FOUND on a server without one.
  read('getLog', '/api/log', 'the transparency log: origin, log key, size'),
  read('getLogCheckpoint', '/api/log/checkpoint', 'the newest signed checkpoint (C2SP note, text)', { answer: 'text' }),
  read('getLogProof', '/api/log/proof', 'the inclusion proof of a logged object, by its SHA-256', { query: LOG_QUERIES.proof }),
  read('getLogConsistency', '/api/log/consistency', 'the consistency proof from a tree size to the newest checkpoint', { query: LOG_QUERIES.consistency }),
  read('getLogEntries', '/api/log/entries', 'the logged objects, paged', { query: LOG_QUERIES.entries }),
];

export const ROUTES: readonly RouteSpec[] = Object.freeze(TABLE.map((r) => Object.freeze(r)));

const consolePage = (id: string, path: string, answer: ConsoleAnswer, summary: string): RouteSpec =>
  Object.freeze({ id, method: 'GET', path, access: 'open', mutates: false, body: 'none', answer, summary });

/** The web console: open (no data in them), outside /api, not in the OpenAPI description. */
export const CONSOLE_ROUTES: readonly RouteSpec[] = Object.freeze([
  consolePage('consoleOverview', '/', 'page', 'the web console: fleet, root of trust, campaigns, SLIs'),
  consolePage('consoleCampaign', '/campaigns/{id}', 'page', 'the web console: one campaign, its devices and controls'),
  consolePage('consoleDevice', '/devices/{device}', 'page', 'the web console: one device and its history'),
  consolePage('consoleScript', '/console/app.js', 'script', "the web console's script"),
  consolePage('consoleStyle', '/console/app.css', 'style', "the web console's style sheet"),
]);

/** The names of a template's `{params}`, in order. */
export function pathParams(path: string): string[] {
  return [...path.matchAll(/\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]);
}

type Compiled = { route: RouteSpec; regex: RegExp; names: string[] };
const COMPILED: readonly Compiled[] = [...ROUTES, ...CONSOLE_ROUTES].map((route) => {
  const names = pathParams(route.path);
  const source = route.path
    .split(/\{[A-Za-z0-9_]+\}/)
    .map((s) => s.replace(/[.*+?^$()|[\]\\]/g, '\\$&'))
    .join('([^/]+)');
  return { route, regex: new RegExp(`^${source}$`), names };
});

export type RouteMatch = { readonly route: RouteSpec; readonly params: Readonly<Record<string, string>> };

/**
 * The route (of the API or the console) for a method and path, or null (the caller answers 404 NOT_FOUND: no route, or a method
 * the path does not take). A path parameter that does not fit its pattern is 400 BAD_VALUE.
 */
export function matchRoute(method: string, path: string): RouteMatch | null {
  for (const c of COMPILED) {
    if (c.route.method !== method) continue;
    const m = c.regex.exec(path);
    if (!m) continue;
    const params: Record<string, string> = {};
    c.names.forEach((name, i) => {
      const value = m[i + 1];
      const spec = PATH_PARAMS[name];
      if (!spec || !new RegExp(spec.pattern).test(value)) throw new ApiError(400, 'BAD_VALUE', `${name} must match ${spec?.pattern ?? '(unknown parameter)'}`);
      params[name] = value;
    });
    return { route: c.route, params: Object.freeze(params) };
  }
  return null;
}
