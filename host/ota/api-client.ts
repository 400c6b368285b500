/**
 * The CLI's side of the HTTP API: one request, its JSON answer, and the API's error codes turned
 * into FwsealErrors (connection refused: SERVER_UNREACHABLE; 401/404/409 and 422 with the server's code).
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

const STATUS_CODES: Record<number, Exclude<CodeName, 'OK'>> = { 401: 'UNAUTHORIZED', 404: 'NOT_FOUND', 409: 'CONFLICT', 413: 'TOO_LARGE' };

/** A request body: JSON, a file streamed from disk, or bytes in memory (a signed object, application/octet-stream). */
export type ApiBody = { json: unknown } | { file: string; size: number } | { bytes: Uint8Array };

export function apiRequest<T>(target: ApiTarget, method: string, path: string, body?: ApiBody): Promise<T> {
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
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, { method, headers, timeout: TIMEOUT_MS }, (res) => {
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
        const name = STATUS_CODES[status] ?? codeNameOf(err.error, status >= 500 ? 'INTERNAL' : 'USAGE');
        reject(new FwsealError(status === 422 || status === 400 ? codeNameOf(err.error, name) : name, `server: ${detail}`));
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
