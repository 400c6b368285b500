/**
 * The server's HTTP API (SPEC.md §12.9 "HTTP API"): images, campaigns, devices, the root of trust,
 * the audit log, its OpenAPI description, /metrics and /healthz, and the web console (console/).
 * JSON in and out; errors are `{ error: CODE_NAME, code, detail }`. Requests are dispatched only from
 * the route table (routes.ts), which names each route's least role; who calls is the bearer token's
 * name and role (tokens.ts: compared in constant time, never logged).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, fsync, openSync, renameSync, rmSync } from 'node:fs';
import { type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { toHex } from '../../shared/bytes.js';
import { CODES, type CodeName } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { FwsealError } from '../errors.js';
import { envelopeKind } from '../inspect.js';
import { NEW_FILE_FLAGS, syncFolder } from '../io.js';
import { imageFile } from './assets.js';
import { type AuditDetails } from './audit-routes.js';
import { ApiError, detail } from './campaigns.js';
import { type BrowserGuard, browserGuard } from './console/guard.js';
import { consoleHandlers } from './console/handlers.js';
import { JSON_HEADERS, sendConsole } from './console/headers.js';
import { fleetHandlers, ROLLOUT_FIELDS, rolloutFields } from './http-fleet.js';
import { logHandlers } from './http-log.js';
import { rootView } from './http-root.js';
import { createApiServer, isLoopbackHost, type TlsFiles } from './listen.js';
import { openApiDocument } from './openapi.js';
import { BODY_LIMITS, CONSOLE_ROUTES, matchRoute, ROUTES } from './routes.js';
import { type OtaServer } from './server.js';
import { type CampaignRow } from './store.js';
import { type ApiAccess, AuthRefusal, type Caller, requireRole } from './tokens.js';

export type HttpApi = { address(): { host: string; port: number; url: string }; close(): Promise<void> };

/** Largest JSON body: a base64 manifest envelope plus the campaign fields. */
const MAX_JSON_BODY = LIMITS.maxApiJsonBytes;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...JSON_HEADERS, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, e: unknown): void {
  // A body refused as too large may still be arriving: close the connection after the answer rather
  // than read the rest of it for the next request on a kept-alive connection (§12.9).
  if (e instanceof FwsealError && e.codeName === 'TOO_LARGE') res.shouldKeepAlive = false;
  // RFC 6750 §3: a 401 or 403 names the scheme, and why (invalid_token, insufficient_scope and the role needed).
  if (e instanceof AuthRefusal) res.setHeader('www-authenticate', e.challenge);
  if (e instanceof ApiError) return sendJson(res, e.status, { error: e.codeName, code: e.code, detail: e.message });
  if (e instanceof FwsealError) {
    const status =
      e.codeName === 'TOO_LARGE'
        ? 413
        : e.codeName === 'CONFLICT'
          ? 409
          : e.codeName === 'NOT_FOUND'
            ? 404
            : e.code >= 100 && e.code < 800
              ? 422
              : e.codeName === 'USAGE'
                ? 400
                : 500;
    return sendJson(res, status, { error: e.codeName, code: e.code, detail: e.message });
  }
  sendJson(res, 500, { error: 'INTERNAL', code: CODES.INTERNAL, detail: (e as Error).message });
}

const apiError = (status: number, name: Exclude<CodeName, 'OK'>, detailText: string) => new ApiError(status, name, detailText);

/**
 * The body, at most `max` bytes kept. Larger (by Content-Length, or once a chunked body passes the
 * limit): 413 TOO_LARGE at once; the rest is read and dropped, never kept, so the client gets the
 * answer and not a reset, and the connection closes after it (sendError).
 */
function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max) return reject(apiError(413, 'TOO_LARGE', `body of ${declared} bytes; at most ${max}`));
    const parts: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (c: Buffer) => {
      if (refused) return;
      size += c.length;
      if (size > max) {
        refused = true;
        parts.length = 0;
        reject(apiError(413, 'TOO_LARGE', `body larger than ${max} bytes`));
      } else parts.push(c);
    });
    req.on('error', reject);
    req.on('end', () => {
      if (!refused) resolve(Buffer.concat(parts));
    });
  });
}

/** The JSON body, at most MAX_JSON_BODY bytes (readBody). */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readBody(req, MAX_JSON_BODY);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw apiError(400, 'MALFORMED', 'body is not JSON');
  }
}

/** Stream an image upload to disk, hashing it; stored as DATA/images/<sha256> only if the digest matches. */
function putImage(server: OtaServer, req: IncomingMessage, sha: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : undefined;
    if (declared !== undefined && declared > LIMITS.maxImageSize)
      return reject(apiError(413, 'TOO_LARGE', `image of ${declared} bytes; at most ${LIMITS.maxImageSize}`));
    const final = imageFile(server.store, sha);
    const tmp = join(server.store.imagesDir, `.upload-${randomBytes(6).toString('hex')}`);
    // A new file (random name, O_EXCL|O_NOFOLLOW), fsynced, then renamed: SPEC.md §14 H5.
    let fd: number;
    try {
      fd = openSync(tmp, NEW_FILE_FLAGS, 0o644);
    } catch (e) {
      req.resume();
      return reject(apiError(500, 'IO', `cannot store the image: ${(e as NodeJS.ErrnoException).code ?? 'error'}`));
    }
    const out = createWriteStream(tmp, { fd });
    const hash = createHash('sha256');
    let size = 0;
    let failed = false;
    const abort = (e: ApiError) => {
      if (failed) return;
      failed = true;
      out.destroy();
      rmSync(tmp, { force: true });
      req.resume();
      reject(e);
    };
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > LIMITS.maxImageSize) return abort(apiError(413, 'TOO_LARGE', `image larger than ${LIMITS.maxImageSize} bytes`));
      hash.update(c);
      if (!failed && !out.write(c)) {
        req.pause();
        out.once('drain', () => req.resume());
      }
    });
    req.on('error', () => abort(apiError(400, 'IO', 'upload interrupted')));
    out.on('error', (e) => abort(apiError(500, 'IO', `cannot store the image: ${(e as NodeJS.ErrnoException).code ?? 'error'}`)));
    req.on('end', () => {
      if (failed) return;
      const got = hash.digest('hex');
      if (size === 0) return abort(apiError(400, 'BAD_VALUE', 'empty image'));
      if (got !== sha) return abort(apiError(400, 'BAD_VALUE', `body hashes to ${got}, not ${sha}`));
      // The empty write's callback runs once every earlier write reached the file.
      out.write('', () =>
        fsync(fd, (e) => {
          if (e) return abort(apiError(500, 'IO', `cannot store the image: ${e.code ?? 'error'}`));
          out.end(() => {
            if (failed) return;
            try {
              const existed = existsSync(final);
              if (existed) rmSync(tmp, { force: true });
              else {
                renameSync(tmp, final);
                syncFolder(server.store.imagesDir);
              }
              const stored = { status: existed ? 200 : 201, body: { sha256: sha, size } };
              // PostgreSQL: into the database too, content-addressed, so every instance can serve it (SPEC.md §12.9).
              const shared = server.store.shared;
              if (!shared) return resolve(stored);
              shared.putImage(sha, final).then(
                () => resolve(stored),
                () => reject(apiError(500, 'IO', 'cannot store the image in the database')),
              );
            } catch {
              abort(apiError(500, 'IO', 'cannot store the image'));
            }
          });
        }),
      );
    });
  });
}

function base64Strict(v: unknown, what: string): Uint8Array {
  if (
    typeof v !== 'string' ||
    v.length === 0 ||
    v.length > Math.ceil((LIMITS.maxEnvelopeBytes * 4) / 3) + 4 ||
    !/^[A-Za-z0-9+/]+={0,2}$/.test(v) ||
    v.length % 4 !== 0
  ) {
    throw apiError(400, 'BAD_VALUE', `${what} must be standard base64 of at most ${LIMITS.maxEnvelopeBytes} bytes`);
  }
  return new Uint8Array(Buffer.from(v, 'base64'));
}

/** What a route's handler is given (SPEC.md §12.9 "HTTP API"). */
export type RouteCall = {
  readonly server: OtaServer;
  readonly req: IncomingMessage;
  readonly url: URL;
  /** The route's path parameters, each already checked against its pattern (routes.ts). */
  readonly params: Readonly<Record<string, string>>;
  /** Who calls: null on the open routes (/healthz, /metrics), which take no token. */
  readonly caller: Caller | null;
  /** What a state-changing call learns (digest, kind, file), recorded with its result (SPEC.md §15.6). */
  readonly audit: AuditDetails;
};
export type RouteAnswer = { readonly status: number; readonly body: unknown };
export type RouteHandler = (call: RouteCall) => Promise<RouteAnswer>;

/** Who acted, as the server's campaign methods record it: the token's name, or `api` on an open API. */
export const actorName = (c: RouteCall): string => c.caller?.name ?? 'api';
const ok = (body: unknown, status = 200): RouteAnswer => ({ status, body });

function campaignAction(action: 'pause' | 'resume' | 'abort'): RouteHandler {
  return async (c) => {
    c.audit.file = `/api/campaigns/${c.params.id}`;
    const r = await c.server.transition(c.params.id, action, actorName(c));
    c.audit.kind = 'manifest';
    c.audit.digest = toHex(new Uint8Array(r.manifest_sha));
    return ok(await detail(c.server.store, r));
  };
}

/** The OpenAPI document, generated once from the route table (openapi.ts). */
let described: unknown;
function description(): unknown {
  described ??= openApiDocument();
  return described;
}

/**
 * The handler of each route of the table (routes.ts), by route id: the only way a request reaches a
 * handler. A new route is a row in routes.ts (with its operation in openapi.ts) and an entry here
 * (or spread in here from the file that holds its handlers); startHttp refuses to run while they differ.
 */
const HANDLERS: Readonly<Record<string, RouteHandler>> = {
  health: async (c) => ok({ ok: true, mqtt: c.server.metrics.mqttConnected }),
  metrics: async (c) => ok(await c.server.metrics.render(c.server.store)),
  openApi: async () => ok(description()),
  getRoot: async (c) => ok(await rootView(c.server)),
  // A signed trust bundle or revocation list, as the file holds it (§12.13): at most one envelope.
  publishRoot: async (c) => {
    const body = await readBody(c.req, BODY_LIMITS.envelope);
    c.audit.digest = createHash('sha256').update(body).digest('hex');
    c.audit.kind = envelopeKind(body) ?? undefined;
    return ok(await c.server.publishRoot(body, actorName(c)));
  },
  getAudit: async (c) => ok(c.server.audit.page(c.url.searchParams)),
  putImage: (c) => {
    c.audit.kind = 'image';
    c.audit.digest = c.params.sha256;
    return putImage(c.server, c.req, c.params.sha256);
  },
  createCampaign: async (c) => {
    c.audit.kind = 'manifest';
    const r = await createFromBody(c.server, c.req, actorName(c));
    c.audit.digest = toHex(new Uint8Array(r.manifest_sha));
    c.audit.file = `/api/campaigns/${r.id}`;
    return ok(await detail(c.server.store, r), 201);
  },
  getCampaign: async (c) => {
    const row = await c.server.store.campaign(c.params.id);
    if (!row) throw apiError(404, 'NOT_FOUND', `no campaign ${c.params.id}`);
    return ok(await detail(c.server.store, row));
  },
  pauseCampaign: campaignAction('pause'),
  resumeCampaign: campaignAction('resume'),
  abortCampaign: campaignAction('abort'),
  // The fleet view and the rollout controls (SPEC.md §12.9): listDevices, getDevice, listCampaigns, nextCampaign, excludeCampaign.
  ...fleetHandlers(),
  // The web console's pages and assets, and its two API routes: whoAmI, getOverview (SPEC.md §12.9 "Web console").
  ...consoleHandlers(),
  // The transparency log of fwseal serve --log (http-log.ts, SPEC.md §16).
  ...logHandlers(),
};

/** Routes of the tables (API and console) without a handler, and handlers without a route: both must be empty, or the server does not start. */
export function unmatchedRoutes(): { unhandled: string[]; unrouted: string[] } {
  const ids = new Set([...ROUTES, ...CONSOLE_ROUTES].map((r) => r.id));
  return { unhandled: [...ids].filter((id) => !Object.hasOwn(HANDLERS, id)), unrouted: Object.keys(HANDLERS).filter((id) => !ids.has(id)) };
}

/**
 * One request, in the order SPEC.md §12.9 "HTTP API" gives: what a browser may not do (console/
 * guard.ts: another origin, or a foreign Host on an open loopback API: 403), then under /api the
 * token (401 before any 404, so an unauthenticated caller learns nothing of which routes or campaigns
 * exist), then the route from the table (none: 404), then the role the table names (403 FORBIDDEN,
 * recorded when the route changes state), then the handler, recorded in the audit log when the route
 * changes state.
 */
async function dispatch(server: OtaServer, access: ApiAccess, guard: BrowserGuard, req: IncomingMessage, res: ServerResponse): Promise<void> {
  guard(req);
  const url = new URL(req.url ?? '/', 'http://x');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  const early = path.startsWith('/api/') ? access.authenticate(req.headers.authorization) : null;
  // HEAD is GET without the body (RFC 9110 §9.3.2): node:http drops the body of a HEAD answer, the headers stay.
  const m = matchRoute(method === 'HEAD' ? 'GET' : method, path);
  if (!m) throw apiError(404, 'NOT_FOUND', `no route ${method} ${path}`);
  const { route, params } = m;
  const caller = route.access === 'open' ? null : (early ?? access.authenticate(req.headers.authorization));
  const call: RouteCall = { server, req, url, params, caller, audit: { file: path } };
  const handler = HANDLERS[route.id];
  let answer: RouteAnswer;
  if (caller === null || route.access === 'open') answer = await handler(call);
  else {
    try {
      requireRole(caller, route.access);
    } catch (e) {
      if (route.audit && e instanceof FwsealError) server.audit.refused(route.audit, caller, call.audit, e);
      throw e;
    }
    answer = route.audit ? await server.audit.record(route.audit, caller, call.audit, () => handler(call)) : await handler(call);
  }
  if (route.answer === 'text') {
    res.writeHead(answer.status, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(String(answer.body));
  } else if (route.answer === 'json') sendJson(res, answer.status, answer.body);
  else sendConsole(res, route.answer, answer.status, String(answer.body));
}

/** POST /api/campaigns: the body checked field by field, then the campaign created (SPEC.md §12.9). */
async function createFromBody(server: OtaServer, req: IncomingMessage, actor: string): Promise<CampaignRow> {
  const body = await readJson(req);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw apiError(400, 'BAD_VALUE', 'body must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b))
    if (!['manifest', 'image', 'group', 'waves', 'abortFailureRate', 'blockSize', ...ROLLOUT_FIELDS].includes(k))
      throw apiError(400, 'UNKNOWN_KEY', `unknown field ${k}`);
  if (typeof b.image !== 'string') throw apiError(400, 'MISSING_FIELD', 'image (sha256 hex)');
  if (typeof b.group !== 'string') throw apiError(400, 'MISSING_FIELD', 'group');
  if (b.blockSize !== undefined && (typeof b.blockSize !== 'number' || !Number.isSafeInteger(b.blockSize)))
    throw apiError(400, 'BAD_VALUE', 'blockSize must be a whole number');
  return server.createCampaign(
    {
      manifest: base64Strict(b.manifest, 'manifest'),
      image: b.image,
      group: b.group,
      ...(b.waves !== undefined ? { waves: b.waves as number[] } : {}),
      ...(b.abortFailureRate !== undefined ? { abortFailureRate: b.abortFailureRate as number } : {}),
      ...(b.blockSize !== undefined ? { blockSize: b.blockSize as number } : {}),
      ...rolloutFields(b),
    },
    actor,
  );
}

/**
 * Serve the API on `listen`: node:http, or node:https with `tls` (listen.ts). Refuses to start while
 * the route table and the handlers differ, so no route is described but not served, or served but
 * not described (GET /api/openapi.json is generated from the same table).
 */
export function startHttp(server: OtaServer, listen: { host: string; port: number }, access: ApiAccess, tls?: TlsFiles): Promise<HttpApi> {
  const { unhandled, unrouted } = unmatchedRoutes();
  if (unhandled.length + unrouted.length > 0)
    throw new FwsealError(
      'INTERNAL',
      `route table and handlers differ: no handler for ${unhandled.join(', ') || '-'}; no route for ${unrouted.join(', ') || '-'}`,
    );
  // An open API on the loopback answers only to a loopback Host (DNS rebinding, console/guard.ts).
  const guard = browserGuard(!access.configured && isLoopbackHost(listen.host));
  const http = createApiServer((req, res) => {
    dispatch(server, access, guard, req, res).catch((e) => {
      if (!res.headersSent) sendError(res, e);
      else res.destroy();
    });
  }, tls);
  const scheme = tls ? 'https' : 'http';
  return new Promise((resolve, reject) => {
    http.once('error', (e) =>
      reject(new FwsealError('IO', `cannot listen on ${listen.host}:${listen.port}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)),
    );
    http.listen(listen.port, listen.host, () => {
      const a = http.address();
      const port = typeof a === 'object' && a ? a.port : listen.port;
      const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
      resolve({
        address: () => ({ host: listen.host, port, url: `${scheme}://${host}:${port}` }),
        close: () =>
          new Promise<void>((r) => {
            http.close(() => r());
            http.closeAllConnections();
          }),
      });
    });
  });
}
