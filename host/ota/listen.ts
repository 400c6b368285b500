/**
 * Where and how `fwseal serve` offers its HTTP API (SPEC.md §12.9 "HTTP API"): who may call it
 * (tokens.ts), on which address, and over HTTPS when it crosses a network.
 *
 * The policy: an API without tokens lets every caller create and abort campaigns and publish trust
 * bundles and revocation lists, so it listens only on a loopback address, where only processes of
 * this machine reach it. Any other address needs tokens (--tokens FILE, or FWSEAL_SERVER_TOKEN), or
 * the explicit --insecure-open-api, which is announced with a warning line at every start. Tokens
 * over plain HTTP on a non-loopback address are allowed (a TLS reverse proxy may sit in front on
 * another machine) but warned about: a bearer token seen on the wire is a stolen token.
 */

import { createServer as createHttpServer, type Server as HttpServer, type RequestListener } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { createSecureContext } from 'node:tls';
import { LIMITS } from '../../shared/limits.js';
import { type Parsed, str } from '../commands/common.js';
import { FwsealError } from '../errors.js';
import { readFileLimited } from '../io.js';
import { ApiAccess } from './tokens.js';

export const API_ACCESS_FLAGS = {
  tokens: { type: 'string' },
  'insecure-open-api': { type: 'boolean' },
  'http-cert': { type: 'string' },
  'http-key': { type: 'string' },
} as const;

export const API_ACCESS_USAGE = `HTTP API access: --tokens FILE (named tokens with roles, made by fwseal token create; re-read
    when the file changes) or FWSEAL_SERVER_TOKEN (one token with every right). Without either the
    API is open and --http must be a loopback address, unless --insecure-open-api (a warning at start).
    HTTPS: --http-cert CERT.pem --http-key KEY.pem (PEM, at most ${LIMITS.maxPemBytes} bytes each).`;

export type TlsFiles = { readonly cert: Buffer; readonly key: Buffer };

export type ApiListenPlan = {
  readonly access: ApiAccess;
  readonly tls?: TlsFiles;
  readonly scheme: 'http' | 'https';
  /** Lines for stderr at start (`WARNING: ...` for an open API off the loopback). */
  readonly warnings: readonly string[];
};

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** 127.0.0.0/8, ::1 (IPv4-mapped too) or `localhost`; any other name is not trusted to be local. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (h.toLowerCase() === 'localhost') return true;
  if (isIPv4(h)) return LOOPBACK.check(h, 'ipv4');
  if (isIPv6(h)) return LOOPBACK.check(h, 'ipv6');
  return false;
}

export type ListenFacts = { readonly host: string; readonly tokens: boolean; readonly insecureOpenApi: boolean; readonly tls: boolean };

/** The listen policy above: USAGE when refused, else the warnings to print. */
export function listenPolicy(f: ListenFacts): string[] {
  const loopback = isLoopbackHost(f.host);
  if (f.insecureOpenApi && f.tokens) throw new FwsealError('USAGE', '--insecure-open-api asks for an API without tokens, but tokens are configured');
  if (!f.tokens && !loopback && !f.insecureOpenApi)
    throw new FwsealError(
      'USAGE',
      `refusing to serve the HTTP API on ${f.host} without tokens: anyone who reaches it could run campaigns and publish revocations. ` +
        'Give --tokens FILE (fwseal token create), listen on 127.0.0.1, or accept an open API with --insecure-open-api',
    );
  const warnings: string[] = [];
  if (!f.tokens && !loopback)
    warnings.push(
      `WARNING: --insecure-open-api: the HTTP API on ${f.host} has NO tokens: anyone who can reach it can create, pause and abort campaigns, upload images and publish trust bundles and revocation lists, and the audit log cannot say who`,
    );
  if (f.tokens && !loopback && !f.tls)
    warnings.push(`warning: bearer tokens reach ${f.host} over plain HTTP: give --http-cert/--http-key, or listen on 127.0.0.1 behind a TLS reverse proxy`);
  return warnings;
}

function readPem(path: string, what: string): Buffer {
  try {
    return Buffer.from(readFileLimited(path, LIMITS.maxPemBytes, what));
  } catch (e) {
    // Too large is a file the operator chose wrongly: IO (exit 2), as for the MQTT PEM files.
    if (e instanceof FwsealError && e.codeName === 'TOO_LARGE') throw new FwsealError('IO', e.message);
    throw e;
  }
}

/**
 * The certificate chain and key for HTTPS, read within LIMITS.maxPemBytes and checked to be a pair
 * now, so a wrong file stops the start (USAGE) rather than every TLS handshake later.
 */
export function readTlsFiles(certPath: string | undefined, keyPath: string | undefined): TlsFiles | undefined {
  if (certPath === undefined && keyPath === undefined) return undefined;
  if (certPath === undefined || keyPath === undefined) throw new FwsealError('USAGE', '--http-cert and --http-key go together');
  const cert = readPem(certPath, 'HTTPS certificate');
  const key = readPem(keyPath, 'HTTPS key');
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    const why = (e as { code?: string }).code ?? 'unreadable';
    throw new FwsealError('USAGE', `--http-cert ${certPath} and --http-key ${keyPath} are not a PEM certificate and its key (${why})`);
  }
  return { cert, key };
}

/**
 * Access, TLS and warnings from serve's flags and environment. `log` receives the tokens file's
 * reloads. With --tokens, FWSEAL_SERVER_TOKEN (which the same shell may hold for the CLI client)
 * is ignored, and said so.
 */
export function planApiListen(p: Parsed, env: NodeJS.ProcessEnv, host: string, log: (line: string) => void = () => {}): ApiListenPlan {
  const tokensPath = str(p, 'tokens');
  const shared = env.FWSEAL_SERVER_TOKEN || undefined;
  const insecureOpenApi = p.values['insecure-open-api'] === true;
  const certPath = str(p, 'http-cert');
  const keyPath = str(p, 'http-key');
  const warnings = listenPolicy({ host, tokens: tokensPath !== undefined || shared !== undefined, insecureOpenApi, tls: certPath !== undefined });
  const tls = readTlsFiles(certPath, keyPath);
  if (tokensPath !== undefined && shared !== undefined) warnings.push('note: FWSEAL_SERVER_TOKEN is ignored: --tokens names the tokens');
  const access =
    tokensPath !== undefined
      ? ApiAccess.fromFile(tokensPath, log)
      : shared !== undefined
        ? ApiAccess.sharedToken(shared, env.FWSEAL_SERVER_TOKEN_NAME || undefined)
        : ApiAccess.open();
  return { access, ...(tls ? { tls } : {}), scheme: tls ? 'https' : 'http', warnings };
}

/** node:http, or node:https (TLS 1.2 at least) with the given files: the same request handler. */
export function createApiServer(handler: RequestListener, tls?: TlsFiles): HttpServer | HttpsServer {
  return tls ? createHttpsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler) : createHttpServer(handler);
}
