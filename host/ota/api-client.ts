/**
 * The CLI's side of the HTTP API: one request, its JSON answer, and the API's error codes turned
 * into FwsealErrors (connection refused or reset, no answer in time, a proxy's 502/503/504:
 * SERVER_UNREACHABLE; 401/403/404/409 and 422 with the server's code). `apiGetRetrying` rides out a
 * server restart for the commands that follow a campaign (SPEC.md §12.9).
 */
import { createReadStream } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CODES, type CodeName } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { FwsealError } from '../errors.js';

export type ApiTarget = { readonly server: string; readonly token?: string };

const MAX_RESPONSE = LIMITS.maxApiResponseBytes;
const TIMEOUT_MS = 120_000;

function codeNameOf(name: unknown, fallback: Exclude<CodeName, 'OK'>): Exclude<CodeName, 'OK'> {
  return typeof name === 'string' && name !== 'OK' && Object.hasOwn(CODES, name) ? (name as Exclude<CodeName, 'OK'>) : fallback;
}

const STATUS_CODES: Record<number, Exclude<CodeName, 'OK'>> = { 401: 'UNAUTHORIZED', 403: 'FORBIDDEN', 404: 'NOT_FOUND', 409: 'CONFLICT', 413: 'TOO_LARGE' };
/** A reverse proxy's answers while the server behind it is down or restarting: no fwseal server answered. */
const GATEWAY_DOWN = new Set([502, 503, 504]);

/** The name for an unsuccessful HTTP answer: the server's own code where it gave one (SPEC.md §12.9). */
function failureName(status: number, err: { error?: unknown }): Exclude<CodeName, 'OK'> {
  if (GATEWAY_DOWN.has(status) && codeNameOf(err.error, 'INTERNAL') === 'INTERNAL') return 'SERVER_UNREACHABLE';
  const name = STATUS_CODES[status] ?? codeNameOf(err.error, status >= 500 ? 'INTERNAL' : 'USAGE');
  return status === 422 || status === 400 ? codeNameOf(err.error, name) : name;
}

/** A request body: JSON, a file streamed from disk, or bytes in memory (a signed object, application/octet-stream). */
export type ApiBody = { json: unknown } | { file: string; size: number } | { bytes: Uint8Array };

export function apiRequest<T>(target: ApiTarget, method: string, path: string, body?: ApiBody, timeoutMs = TIMEOUT_MS): Promise<T> {
  let url: URL;
  try {
    url = new URL(path, target.server.endsWith('/') ? target.server : `${target.server}/`);
  } catch {
    throw new FwsealError('USAGE', `--server ${JSON.stringify(target.server)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FwsealError('USAGE', '--server must be http:// or https://');
  const headers: Record<string, string | number> = {};
  if (target.token) headers.authorization = `Bearer ${target.token}`;
  let payload: Buffer | undefined;
  if (body && 'json' in body) {
    payload = Buffer.from(JSON.stringify(body.json));
    headers['content-type'] = 'application/json';
    headers['content-length'] = payload.length;
  } else if (body && 'bytes' in body) {
    payload = Buffer.from(body.bytes);
    headers['content-type'] = 'application/octet-stream';
    headers['content-length'] = payload.length;
  } else if (body) {
    headers['content-type'] = 'application/octet-stream';
    headers['content-length'] = body.size;
  }
  return new Promise<T>((resolve, reject) => {
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method, headers, timeout: timeoutMs }, (res) => {
      const parts: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_RESPONSE) res.destroy(new Error('response too large'));
        else parts.push(c);
      });
      res.on('error', (e) => reject(new FwsealError('SERVER_UNREACHABLE', `${target.server}: ${e.message}`)));
      res.on('end', () => {
        let parsed: unknown = null;
        try {
          parsed = JSON.parse(Buffer.concat(parts).toString('utf8'));
        } catch {
          parsed = null;
        }
        const status = res.statusCode ?? 0;
        if (status >= 200 && status < 300) return resolve(parsed as T);
        const err = (parsed ?? {}) as { error?: unknown; detail?: unknown };
        const detail = typeof err.detail === 'string' ? err.detail : `HTTP ${status}`;
        reject(new FwsealError(failureName(status, err), `server: ${detail}`));
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => {
      const code = (e as NodeJS.ErrnoException).code ?? e.message;
      reject(new FwsealError('SERVER_UNREACHABLE', `no answer from ${url.origin} (${code}); start fwseal serve or set --server / FWSEAL_SERVER`));
    });
    if (payload) req.end(payload);
    else if (body && 'file' in body) {
      const s = createReadStream(body.file);
      s.on('error', (e) => req.destroy(e));
      s.pipe(req);
    } else req.end();
  });
}

/** Failures that say no server answered, or it asked to come back later: asked again. */
const TRANSIENT: ReadonlySet<CodeName> = new Set(['SERVER_UNREACHABLE', 'SERVER_BUSY']);

export type RetryPolicy = {
  /** Give up (SERVER_UNREACHABLE) once this long passed without an answer. */
  readonly giveUpMs: number;
  /** The first wait (default 500 ms); each next one doubles, up to `maxDelayMs` (default 8 s). */
  readonly firstDelayMs?: number;
  readonly maxDelayMs?: number;
  /** One request's own limit (default 10 s): a server that accepts but never answers is retried too. */
  readonly requestTimeoutMs?: number;
  /** Told before each wait (the CLI prints one line on stderr). */
  readonly onRetry?: (e: FwsealError, attempt: number, delayMs: number) => void;
};

/**
 * GET `path`, asking again while the server is unreachable or busy, with exponential backoff and
 * jitter (so the CI jobs watching one restarted server do not all come back at once); any other
 * answer, an error included, ends it. Only for reads: a GET changes nothing when repeated.
 */
export async function apiGetRetrying<T>(target: ApiTarget, path: string, policy: RetryPolicy): Promise<T> {
  const started = Date.now();
  let delay = policy.firstDelayMs ?? 500;
  for (let attempt = 1; ; attempt++) {
    try {
      return await apiRequest<T>(target, 'GET', path, undefined, policy.requestTimeoutMs ?? 10_000);
    } catch (e) {
      if (!(e instanceof FwsealError) || !TRANSIENT.has(e.codeName)) throw e;
      const left = policy.giveUpMs - (Date.now() - started);
      if (left <= 0)
        throw new FwsealError(
          'SERVER_UNREACHABLE',
          `no answer for ${Math.round((Date.now() - started) / 1000)} s after ${attempt} attempts; last: ${e.message}`,
        );
      const wait = Math.min(left, Math.round(delay * (0.8 + 0.4 * Math.random())));
      policy.onRetry?.(e, attempt, wait);
      await new Promise((r) => setTimeout(r, wait));
      delay = Math.min(delay * 2, policy.maxDelayMs ?? 8000);
    }
  }
}

/**
 * Every device of GET /api/devices with the filters given, page by page (at most 1000 a page,
 * SPEC.md §12.9): the one reader of the paged device list (fleet-view commands, the incident watch).
 */
export async function allDevices<T>(t: ApiTarget, filters: URLSearchParams = new URLSearchParams()): Promise<T[]> {
  const out: T[] = [];
  let after: string | null = null;
  do {
    const q = new URLSearchParams(filters);
    if (after !== null) q.set('after', after);
    const query = q.toString();
    const page: { devices: T[]; next: string | null; more: boolean } = await apiRequest(t, 'GET', `api/devices${query ? `?${query}` : ''}`);
    out.push(...page.devices);
    after = page.more ? page.next : null;
  } while (after !== null);
  return out;
}
