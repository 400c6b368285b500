/**
 * The server's HTTP API (SPEC.md §12.8): images, campaigns, devices, /metrics and /healthz. JSON in
 * and out; errors are `{ error: CODE_NAME, code, detail }`. With a token, every /api request needs
 * `Authorization: Bearer <token>` (compared in constant time; never logged).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createWriteStream, existsSync, fsync, openSync, renameSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { toHex } from '../../shared/bytes.js';
import { CODES, type CodeName } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { FwsealError } from '../errors.js';
import { envelopeKind } from '../inspect.js';
import { NEW_FILE_FLAGS, syncFolder } from '../io.js';
import { imageFile } from './assets.js';
import { ApiError, detail, summary } from './campaigns.js';
import { deviceView, rootView } from './http-root.js';
import { type OtaServer } from './server.js';
import { type CampaignRow } from './store.js';

export type HttpApi = { address(): { host: string; port: number; url: string }; close(): Promise<void> };

/** Largest JSON body: a base64 manifest envelope plus the campaign fields. */
const MAX_JSON_BODY = LIMITS.maxApiJsonBytes;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, e: unknown): void {
  // A body refused as too large may still be arriving: close the connection after the answer rather
  // than read the rest of it for the next request on a kept-alive connection (§12.9).
  if (e instanceof FwsealError && e.codeName === 'TOO_LARGE') res.shouldKeepAlive = false;
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
              resolve({ status: existed ? 200 : 201, body: { sha256: sha, size } });
            } catch {
              abort(apiError(500, 'IO', 'cannot store the image'));
            }
          });
        }),
      );
    });
  });
}

function authorized(req: IncomingMessage, token: string | undefined): boolean {
  if (token === undefined) return true;
  const h = req.headers.authorization;
  if (typeof h !== 'string' || !h.startsWith('Bearer ')) return false;
  const given = createHash('sha256').update(h.slice(7)).digest();
  return timingSafeEqual(given, createHash('sha256').update(token).digest());
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

async function route(server: OtaServer, token: string | undefined, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://x');
  const path = url.pathname;
  const method = req.method ?? 'GET';
  if (path === '/healthz' && method === 'GET') return sendJson(res, 200, { ok: true, mqtt: server.metrics.mqttConnected });
  if (path === '/metrics' && method === 'GET') {
    const text = await server.metrics.render(server.store);
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    res.end(text);
    return;
  }
  if (!path.startsWith('/api/')) throw apiError(404, 'NOT_FOUND', `no route ${path}`);
  if (!authorized(req, token)) throw apiError(401, 'UNAUTHORIZED', 'missing or wrong bearer token');
  if (path === '/api/root' && method === 'GET') return sendJson(res, 200, await rootView(server));
  // A signed trust bundle or revocation list, as the file holds it (§12.13): at most one envelope; audited (§15.6).
  if (path === '/api/root' && method === 'POST')
    return sendJson(
      res,
      200,
      await server.audit.record('trust publish', { file: path }, async (d) => {
        const body = await readBody(req, LIMITS.maxEnvelopeBytes);
        d.digest = createHash('sha256').update(body).digest('hex');
        d.kind = envelopeKind(body) ?? undefined;
        return server.publishRoot(body);
      }),
    );
  if (path === '/api/audit' && method === 'GET') return sendJson(res, 200, server.audit.page(url.searchParams));
  if (path === '/api/devices' && method === 'GET') return sendJson(res, 200, { devices: (await server.store.devices()).map(deviceView) });
  return routeCampaigns(server, req, res, path, method);
}

/** Images and campaigns (SPEC.md §12.9 "HTTP API"). */
async function routeCampaigns(server: OtaServer, req: IncomingMessage, res: ServerResponse, path: string, method: string): Promise<void> {
  const image = path.match(/^\/api\/images\/([^/]+)$/);
  if (image) {
    if (method !== 'PUT') throw apiError(404, 'NOT_FOUND', `${method} ${path}`);
    if (!/^[0-9a-f]{64}$/.test(image[1])) throw apiError(400, 'BAD_VALUE', 'image name must be a lowercase SHA-256 hex digest');
    const r = await server.audit.record('image upload', { kind: 'image', digest: image[1], file: path }, () => putImage(server, req, image[1]));
    return sendJson(res, r.status, r.body);
  }
  if (path === '/api/campaigns') {
    if (method === 'GET') return sendJson(res, 200, { campaigns: (await server.store.campaigns()).map(summary) });
    if (method !== 'POST') throw apiError(404, 'NOT_FOUND', `${method} ${path}`);
    const row = await server.audit.record('campaign create', { kind: 'manifest', file: path }, async (d) => {
      const r = await createFromBody(server, req);
      d.digest = toHex(new Uint8Array(r.manifest_sha));
      d.file = `${path}/${r.id}`;
      return r;
    });
    return sendJson(res, 201, await detail(server.store, row));
  }
  const campaign = path.match(/^\/api\/campaigns\/([A-Za-z0-9_-]{1,64})(?:\/(pause|resume|abort))?$/);
  if (campaign) {
    const id = campaign[1];
    const action = campaign[2] as 'pause' | 'resume' | 'abort' | undefined;
    if (action) {
      if (method !== 'POST') throw apiError(404, 'NOT_FOUND', `${method} ${path}`);
      const row = await server.audit.record(`campaign ${action}`, { file: `/api/campaigns/${id}` }, async (d) => {
        const r = await server.transition(id, action);
        d.kind = 'manifest';
        d.digest = toHex(new Uint8Array(r.manifest_sha));
        return r;
      });
      return sendJson(res, 200, await detail(server.store, row));
    }
    if (method !== 'GET') throw apiError(404, 'NOT_FOUND', `${method} ${path}`);
    const row = await server.store.campaign(id);
    if (!row) throw apiError(404, 'NOT_FOUND', `no campaign ${id}`);
    return sendJson(res, 200, await detail(server.store, row));
  }
  throw apiError(404, 'NOT_FOUND', `no route ${method} ${path}`);
}

/** POST /api/campaigns: the body checked field by field, then the campaign created (SPEC.md §12.9). */
async function createFromBody(server: OtaServer, req: IncomingMessage): Promise<CampaignRow> {
  const body = await readJson(req);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw apiError(400, 'BAD_VALUE', 'body must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b))
    if (!['manifest', 'image', 'group', 'waves', 'abortFailureRate', 'blockSize'].includes(k)) throw apiError(400, 'UNKNOWN_KEY', `unknown field ${k}`);
  if (typeof b.image !== 'string') throw apiError(400, 'MISSING_FIELD', 'image (sha256 hex)');
  if (typeof b.group !== 'string') throw apiError(400, 'MISSING_FIELD', 'group');
  if (b.blockSize !== undefined && (typeof b.blockSize !== 'number' || !Number.isSafeInteger(b.blockSize)))
    throw apiError(400, 'BAD_VALUE', 'blockSize must be a whole number');
  return server.createCampaign({
    manifest: base64Strict(b.manifest, 'manifest'),
    image: b.image,
    group: b.group,
    ...(b.waves !== undefined ? { waves: b.waves as number[] } : {}),
    ...(b.abortFailureRate !== undefined ? { abortFailureRate: b.abortFailureRate as number } : {}),
    ...(b.blockSize !== undefined ? { blockSize: b.blockSize as number } : {}),
  });
}

export function startHttp(server: OtaServer, listen: { host: string; port: number }, token: string | undefined): Promise<HttpApi> {
  const http: Server = createServer((req, res) => {
    route(server, token, req, res).catch((e) => {
      if (!res.headersSent) sendError(res, e);
      else res.destroy();
    });
  });
  return new Promise((resolve, reject) => {
    http.once('error', (e) =>
      reject(new FwsealError('IO', `cannot listen on ${listen.host}:${listen.port}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)),
    );
    http.listen(listen.port, listen.host, () => {
      const a = http.address();
      const port = typeof a === 'object' && a ? a.port : listen.port;
      const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
      resolve({
        address: () => ({ host: listen.host, port, url: `http://${host}:${port}` }),
        close: () =>
          new Promise<void>((r) => {
            http.close(() => r());
            http.closeAllConnections();
          }),
      });
    });
  });
}
