/**
 * Access to the server's HTTP API (SPEC.md §12.9 "HTTP API"; host/ota/tokens.ts, host/ota/listen.ts,
 * host/commands/tokens.ts): named tokens with roles, kept hashed in a 0600 tokens file edited by
 * `fwseal token create|list|revoke`; 401 for a missing, unknown or revoked token and 403 FORBIDDEN for
 * a role too low; a running server sees token changes at once; the listen policy (no open API off
 * the loopback without --insecure-open-api) and HTTPS from --http-cert/--http-key, on a real TLS
 * listener on loopback.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { scanAuditLog } from '../host/audit.js';
import { type Parsed } from '../host/commands/common.js';
import { FwsealError } from '../host/errors.js';
import { ApiError } from '../host/ota/campaigns.js';
import { createApiServer, isLoopbackHost, listenPolicy, planApiListen, readTlsFiles, type TlsFiles } from '../host/ota/listen.js';
import { matchRoute } from '../host/ota/routes.js';
import {
  ApiAccess,
  AuthRefusal,
  createToken,
  MAX_TOKENS,
  parseTokensFile,
  revokeToken,
  serializeTokensFile,
  TOKEN_FORMAT,
  type TokenInfo,
  tokenDigest,
} from '../host/ota/tokens.js';
import { CODES, type CodeName } from '../shared/codes.js';
import { runCli } from './support/cli-run.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'fwseal-tokens-'));
  dirs.push(d);
  return d;
}

const cli = (...argv: string[]) => runCli(argv);
const bearer = (token: string) => `Bearer ${token}`;

/** The code an action fails with (FwsealError and its ApiError subclass). */
function codeOf(f: () => unknown): CodeName | 'none' {
  try {
    f();
  } catch (e) {
    if (e instanceof FwsealError) return e.codeName;
    throw e;
  }
  return 'none';
}

function refusal(f: () => unknown): AuthRefusal {
  try {
    f();
  } catch (e) {
    if (e instanceof AuthRefusal) return e;
    throw e;
  }
  throw new Error('not refused');
}

describe('fwseal token create | list | revoke', () => {
  it('create prints a new random token once, and the file keeps only its SHA-256, mode 0600', async () => {
    const file = join(tempDir(), 'tokens.json');
    const r = await cli('token', 'create', 'ci', '--role', 'operator', '--tokens', file);
    expect(r.status).toBe(0);
    const token = r.out.trim();
    expect(token).toMatch(TOKEN_FORMAT);
    expect(r.err).not.toContain(token);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const stored = readFileSync(file, 'utf8');
    expect(stored).not.toContain(token);
    expect(stored).not.toContain(token.slice(7, 30));
    expect(JSON.parse(stored).tokens).toEqual([{ name: 'ci', role: 'operator', sha256: tokenDigest(token).toString('hex'), created: expect.any(String) }]);
    const again = await cli('token', 'create', 'ci2', '--role', 'operator', '--tokens', file);
    expect(again.out.trim()).toMatch(TOKEN_FORMAT);
    expect(again.out.trim()).not.toBe(token);
  });

  it('list shows names, roles and creation times, never a token digest; --json has exactly those members', async () => {
    const file = join(tempDir(), 'tokens.json');
    await cli('token', 'create', 'alice', '--role', 'admin', '--tokens', file);
    await cli('token', 'create', 'dash', '--role', 'viewer', '--tokens', file);
    const digests = JSON.parse(readFileSync(file, 'utf8')).tokens.map((t: TokenInfo) => t.sha256);
    const text = await cli('token', 'list', '--tokens', file);
    expect(text.status).toBe(0);
    expect(text.out).toMatch(/alice\s+admin/);
    expect(text.out).toMatch(/dash\s+viewer/);
    const asJson = await cli('token', 'list', '--tokens', file, '--json');
    const listed = JSON.parse(asJson.out);
    expect(listed.tokens.map((t: object) => Object.keys(t).sort())).toEqual([
      ['created', 'name', 'role'],
      ['created', 'name', 'role'],
    ]);
    for (const d of digests) expect(text.out + asJson.out).not.toContain(d);
  });

  it('a name already there is CONFLICT and the file is unchanged; a bad role or name is USAGE', async () => {
    const file = join(tempDir(), 'tokens.json');
    await cli('token', 'create', 'ci', '--role', 'viewer', '--tokens', file);
    const before = readFileSync(file);
    const twice = await cli('token', 'create', 'ci', '--role', 'admin', '--tokens', file);
    expect(twice.status).toBe(2);
    expect(twice.err).toContain(`(code ${CODES.CONFLICT})`);
    expect(twice.out).toBe('');
    expect(readFileSync(file)).toEqual(before);
    for (const argv of [
      ['token', 'create', 'x', '--role', 'root', '--tokens', file],
      ['token', 'create', 'has space', '--role', 'viewer', '--tokens', file],
      ['token', 'create', 'x', '--tokens', file],
      ['token', 'create', '--role', 'viewer', '--tokens', file],
    ]) {
      const r = await cli(...argv);
      expect(r.status, argv.join(' ')).toBe(2);
      expect(r.err, argv.join(' ')).toContain(`(code ${CODES.USAGE})`);
    }
    expect(readFileSync(file)).toEqual(before);
  });

  it('revoke removes the token; an unknown name is NOT_FOUND', async () => {
    const file = join(tempDir(), 'tokens.json');
    await cli('token', 'create', 'a', '--role', 'viewer', '--tokens', file);
    await cli('token', 'create', 'b', '--role', 'operator', '--tokens', file);
    const r = await cli('token', 'revoke', 'a', '--tokens', file, '--json');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.out)).toEqual({ revoked: { name: 'a', role: 'viewer', created: expect.any(String) } });
    expect(JSON.parse(readFileSync(file, 'utf8')).tokens.map((t: TokenInfo) => t.name)).toEqual(['b']);
    const unknown = await cli('token', 'revoke', 'a', '--tokens', file);
    expect(unknown.status).toBe(2);
    expect(unknown.err).toContain(`(code ${CODES.NOT_FOUND})`);
  });

  it('a tokens file that group or others can read or write is refused, as a private key is', async () => {
    const file = join(tempDir(), 'tokens.json');
    await cli('token', 'create', 'a', '--role', 'viewer', '--tokens', file);
    chmodSync(file, 0o640);
    for (const argv of [
      ['token', 'list', '--tokens', file],
      ['token', 'create', 'b', '--role', 'viewer', '--tokens', file],
      ['token', 'revoke', 'a', '--tokens', file],
    ]) {
      const r = await cli(...argv);
      expect(r.status, argv[1]).toBe(2);
      expect(r.err, argv[1]).toContain(`(code ${CODES.KEY_FILE_PERMISSIONS})`);
    }
    expect(codeOf(() => ApiAccess.fromFile(file))).toBe('KEY_FILE_PERMISSIONS');
  });

  it('with --audit, create and revoke are audit lines carrying the digest, never the token', async () => {
    const dir = tempDir();
    const file = join(dir, 'tokens.json');
    const log = join(dir, 'audit.log');
    const created = await runCli(['--audit', log, 'token', 'create', 'ci', '--role', 'admin', '--tokens', file]);
    await runCli(['--audit', log, 'token', 'revoke', 'ci', '--tokens', file]);
    const token = created.out.trim();
    const actions: [string, string | undefined][] = [];
    expect(scanAuditLog(log, { visit: (r) => actions.push([r.action, r.digest]) }).ok).toBe(true);
    const digest = tokenDigest(token).toString('hex');
    expect(actions).toEqual([
      ['token create', digest],
      ['token revoke', digest],
    ]);
    expect(readFileSync(log, 'utf8')).not.toContain(token);
  });
});

describe('the tokens file is parsed strictly', () => {
  const good: TokenInfo = { name: 'ci', role: 'operator', sha256: 'ab'.repeat(32), created: '2026-01-31T12:00:00.000Z' };
  const file = (tokens: unknown[], top: Record<string, unknown> = {}) => Buffer.from(JSON.stringify({ type: 'fwseal-api-tokens', version: 1, tokens, ...top }));

  it('reads what it writes', () => {
    expect(parseTokensFile(Buffer.from(serializeTokensFile([good])), 'f')).toEqual([good]);
  });

  it.each([
    ['not JSON', Buffer.from('{"type":')],
    ['not UTF-8', Buffer.from([0x7b, 0xff, 0x7d])],
    ['a list at the top', Buffer.from('[]')],
    ['another type', file([], { type: 'fwseal-private-key' })],
    ['another version', file([], { version: 2 })],
    ['an unknown top member', file([], { extra: true })],
    ['an unknown token member', file([{ ...good, token: 'fwseal_x' }])],
    ['a missing member', file([{ name: 'ci', role: 'operator', sha256: good.sha256 }])],
    ['an unknown role', file([{ ...good, role: 'root' }])],
    ['a name with a space', file([{ ...good, name: 'c i' }])],
    ['an uppercase digest', file([{ ...good, sha256: 'AB'.repeat(32) }])],
    ['a short digest', file([{ ...good, sha256: 'ab'.repeat(31) }])],
    ['a time that is no ISO UTC time', file([{ ...good, created: 'yesterday' }])],
    ['a name twice', file([good, { ...good, sha256: 'cd'.repeat(32) }])],
    ['a digest twice', file([good, { ...good, name: 'other' }])],
    ['too many tokens', file(Array.from({ length: MAX_TOKENS + 1 }, (_, i) => ({ ...good, name: `t${i}`, sha256: i.toString(16).padStart(64, '0') })))],
  ])('refuses %s (USAGE)', (_, bytes) => {
    expect(codeOf(() => parseTokensFile(bytes, 'f'))).toBe('USAGE');
  });
});

describe('ApiAccess: 401 for no or a wrong token, 403 FORBIDDEN below the role', () => {
  const dir = tempDir();
  const path = join(dir, 'tokens.json');
  const viewer = createToken(path, 'dash', 'viewer').token;
  const operator = createToken(path, 'ci', 'operator').token;
  const admin = createToken(path, 'alice', 'admin').token;
  const access = ApiAccess.fromFile(path);

  it('each role may make the calls of its rank and those below', () => {
    expect(access.authorize(bearer(viewer), 'viewer')).toEqual({ name: 'dash', role: 'viewer', source: 'api-token' });
    expect(access.authorize(bearer(operator), 'viewer').name).toBe('ci');
    expect(access.authorize(bearer(operator), 'operator').name).toBe('ci');
    for (const role of ['viewer', 'operator', 'admin'] as const) expect(access.authorize(bearer(admin), role).name).toBe('alice');
    expect(access.authorize(`bearer  ${viewer}`, 'viewer').name).toBe('dash');
  });

  it('a role too low is 403 FORBIDDEN, naming the role needed', () => {
    for (const [token, needed] of [
      [viewer, 'operator'],
      [viewer, 'admin'],
      [operator, 'admin'],
    ] as const) {
      const e = refusal(() => access.authorize(bearer(token), needed));
      expect([e.status, e.codeName, e.code]).toEqual([403, 'FORBIDDEN', CODES.FORBIDDEN]);
      expect(e.challenge).toContain('insufficient_scope');
    }
  });

  it('no header, another scheme, an unknown token or a huge one is 401 UNAUTHORIZED', () => {
    for (const header of [
      undefined,
      '',
      `Basic ${viewer}`,
      viewer,
      bearer(`${viewer}x`),
      bearer('fwseal_'),
      bearer('x'.repeat(5000)),
      `Bearer ${viewer} extra`,
    ]) {
      const e = refusal(() => access.authorize(header, 'viewer'));
      expect([e.status, e.codeName], String(header).slice(0, 40)).toEqual([401, 'UNAUTHORIZED']);
      expect(e.challenge).toMatch(/^Bearer realm="fwseal"/);
    }
  });

  it('an open API lets every caller do everything, as `api`; one shared token is admin', () => {
    expect(ApiAccess.open().authorize(undefined, 'admin')).toEqual({ name: 'api', role: 'admin', source: 'api-open' });
    expect(ApiAccess.open().configured).toBe(false);
    const shared = ApiAccess.sharedToken('s3cret', 'legacy');
    expect(shared.authorize(bearer('s3cret'), 'admin')).toEqual({ name: 'legacy', role: 'admin', source: 'api-token' });
    expect(refusal(() => shared.authorize(bearer('other'), 'viewer')).status).toBe(401);
  });
});

describe('a running server sees the tokens file change, and a broken file never opens the API', () => {
  it('a token created after the start works, a revoked one is refused at its next call', () => {
    const path = join(tempDir(), 'tokens.json');
    const first = createToken(path, 'first', 'viewer').token;
    const logs: string[] = [];
    const access = ApiAccess.fromFile(path, (l) => logs.push(l));
    const later = createToken(path, 'later', 'operator').token;
    expect(access.authorize(bearer(later), 'operator').name).toBe('later');
    revokeToken(path, 'first');
    expect(refusal(() => access.authorize(bearer(first), 'viewer')).status).toBe(401);
    expect(logs.some((l) => l.includes('reloaded'))).toBe(true);
    expect(logs.join('\n')).not.toContain(later);
  });

  it('a file gone or damaged refuses every call (500 with its code) until it is fixed', () => {
    const path = join(tempDir(), 'tokens.json');
    const token = createToken(path, 'ci', 'admin').token;
    const access = ApiAccess.fromFile(path);
    const good = readFileSync(path);
    const failure = () => {
      try {
        access.authorize(bearer(token), 'viewer');
      } catch (e) {
        return e instanceof ApiError && !(e instanceof AuthRefusal) ? [e.status, e.codeName] : ['other'];
      }
      return ['allowed'];
    };
    writeFileSync(path, '{"type":"fwseal-api-tokens"', { mode: 0o600 });
    expect(failure()).toEqual([500, 'USAGE']);
    unlinkSync(path);
    expect(failure()).toEqual([500, 'IO']);
    writeFileSync(path, good, { mode: 0o644 });
    chmodSync(path, 0o644);
    expect(failure()).toEqual([500, 'KEY_FILE_PERMISSIONS']);
    chmodSync(path, 0o600);
    expect(access.authorize(bearer(token), 'admin').name).toBe('ci');
  });
});

describe('the listen policy', () => {
  it('knows loopback addresses; anything else (all interfaces, names) is not', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST'])
      expect(isLoopbackHost(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.5', '192.168.1.1', '::ffff:10.0.0.1', 'fwseal.example', 'localhost.example', '128.0.0.1'])
      expect(isLoopbackHost(h), h).toBe(false);
  });

  const facts = (host: string, o: { tokens?: boolean; insecure?: boolean; tls?: boolean } = {}) => ({
    host,
    tokens: o.tokens ?? false,
    insecureOpenApi: o.insecure ?? false,
    tls: o.tls ?? false,
  });

  it('an open API off the loopback is refused (USAGE) unless --insecure-open-api, which warns loudly', () => {
    expect(listenPolicy(facts('127.0.0.1'))).toEqual([]);
    expect(codeOf(() => listenPolicy(facts('0.0.0.0')))).toBe('USAGE');
    expect(codeOf(() => listenPolicy(facts('::')))).toBe('USAGE');
    const warned = listenPolicy(facts('0.0.0.0', { insecure: true }));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/^WARNING: --insecure-open-api/);
    expect(codeOf(() => listenPolicy(facts('0.0.0.0', { insecure: true, tokens: true })))).toBe('USAGE');
  });

  it('tokens off the loopback: plain HTTP is warned about, HTTPS is quiet', () => {
    expect(listenPolicy(facts('0.0.0.0', { tokens: true }))[0]).toMatch(/^warning: bearer tokens/);
    expect(listenPolicy(facts('0.0.0.0', { tokens: true, tls: true }))).toEqual([]);
  });

  it('serve flags: --tokens or FWSEAL_SERVER_TOKEN configure tokens; a missing file is IO', () => {
    const p = (values: Parsed['values']): Parsed => ({ values, positionals: [] });
    const path = join(tempDir(), 'tokens.json');
    createToken(path, 'ci', 'viewer');
    expect(planApiListen(p({ tokens: path }), {}, '0.0.0.0').access.configured).toBe(true);
    expect(planApiListen(p({}), { FWSEAL_SERVER_TOKEN: 'x' }, '0.0.0.0').access.configured).toBe(true);
    expect(planApiListen(p({}), {}, '127.0.0.1')).toMatchObject({ scheme: 'http', warnings: [] });
    expect(planApiListen(p({ tokens: path }), { FWSEAL_SERVER_TOKEN: 'x' }, '127.0.0.1').warnings[0]).toMatch(/FWSEAL_SERVER_TOKEN is ignored/);
    expect(codeOf(() => planApiListen(p({}), {}, '0.0.0.0'))).toBe('USAGE');
    expect(codeOf(() => planApiListen(p({ tokens: join(tempDir(), 'none.json') }), {}, '127.0.0.1'))).toBe('IO');
  });
});

describe('HTTPS with --http-cert/--http-key', () => {
  const dir = tempDir();
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const selfSigned = (name: string) =>
    openssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    );
  selfSigned('server');
  selfSigned('other');
  const at = (n: string) => join(dir, n);

  it('the files go together, must be a certificate and its key, and are read within maxPemBytes', () => {
    expect(readTlsFiles(undefined, undefined)).toBeUndefined();
    expect(codeOf(() => readTlsFiles(at('server.pem'), undefined))).toBe('USAGE');
    expect(codeOf(() => readTlsFiles(at('server.pem'), at('other.key')))).toBe('USAGE');
    expect(codeOf(() => readTlsFiles(at('server.key'), at('server.pem')))).toBe('USAGE');
    writeFileSync(at('huge.pem'), Buffer.alloc(1048577, 0x41));
    expect(codeOf(() => readTlsFiles(at('huge.pem'), at('server.key')))).toBe('IO');
    expect(codeOf(() => readTlsFiles(at('missing.pem'), at('server.key')))).toBe('IO');
  });

  /** The pieces as the server will use them: route table, then the caller's role, over TLS. */
  async function start(tls: TlsFiles, access: ApiAccess) {
    const server = createApiServer((req, res) => {
      try {
        const m = matchRoute(req.method ?? 'GET', new URL(req.url ?? '/', 'https://x').pathname);
        if (!m) throw new ApiError(404, 'NOT_FOUND', 'no route');
        const caller = m.route.access === 'open' ? null : access.authorize(req.headers.authorization, m.route.access);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ route: m.route.id, caller: caller?.name ?? null }));
      } catch (e) {
        const err = e as ApiError;
        const headers: Record<string, string> = e instanceof AuthRefusal ? { 'www-authenticate': e.challenge } : {};
        res.writeHead(err.status, headers).end(JSON.stringify({ error: err.codeName, code: err.code }));
      }
    }, tls);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return { server, port: (server.address() as AddressInfo).port };
  }

  function call(port: number, method: string, path: string, token?: string): Promise<{ status: number; body: any; challenge?: string }> {
    return new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, method, path, ca: readFileSync(at('server.pem')), headers: token ? { authorization: bearer(token) } : {} },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(parts).toString('utf8')), challenge: res.headers['www-authenticate'] }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('over TLS: open routes need no token, roles decide the rest, a revoked token is refused without a restart', async () => {
    const path = at('tokens.json');
    const viewer = createToken(path, 'dash', 'viewer').token;
    const operator = createToken(path, 'ci', 'operator').token;
    const { server, port } = await start(readTlsFiles(at('server.pem'), at('server.key'))!, ApiAccess.fromFile(path));
    try {
      expect(await call(port, 'GET', '/healthz')).toMatchObject({ status: 200, body: { route: 'health', caller: null } });
      expect(await call(port, 'GET', '/api/campaigns')).toMatchObject({ status: 401, body: { code: CODES.UNAUTHORIZED }, challenge: 'Bearer realm="fwseal"' });
      expect(await call(port, 'GET', '/api/campaigns', viewer)).toMatchObject({ status: 200, body: { caller: 'dash' } });
      expect(await call(port, 'POST', '/api/campaigns/c1/pause', viewer)).toMatchObject({ status: 403, body: { error: 'FORBIDDEN', code: CODES.FORBIDDEN } });
      expect(await call(port, 'POST', '/api/campaigns/c1/pause', operator)).toMatchObject({ status: 200, body: { route: 'pauseCampaign', caller: 'ci' } });
      expect(await call(port, 'POST', '/api/root', operator)).toMatchObject({ status: 403, body: { code: CODES.FORBIDDEN } });
      revokeToken(path, 'ci');
      expect(await call(port, 'POST', '/api/campaigns/c1/pause', operator)).toMatchObject({ status: 401, body: { code: CODES.UNAUTHORIZED } });
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });
});
