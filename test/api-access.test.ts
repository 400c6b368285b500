/**
 * Who may call a real `fwseal serve` (SPEC.md §12.9 "HTTP API", §15.6): a child process on loopback
 * with a tokens file, driven by the CLI and by raw requests. Roles decide (viewer reads, operator runs
 * campaigns, admin publishes the root of trust), a bad token is 401, the audit log names the token of
 * every state-changing call (403 refusals too), the listen policy refuses an open API off the loopback
 * unless --insecure-open-api, HTTPS works end to end with the CLI (NODE_EXTRA_CA_CERTS), and
 * GET /api/openapi.json describes exactly what the server dispatches: every documented operation
 * answers one of its documented statuses with a body that fits its schema, and every other method on
 * a documented path, or any other path, is 404.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditRecord, scanAuditLog } from '../host/audit.js';
import { nodeSha256 } from '../host/hash.js';
import { generateKey } from '../host/keys.js';
import { unmatchedRoutes } from '../host/ota/http.js';
import { openApiDocument } from '../host/ota/openapi.js';
import { ROUTES } from '../host/ota/routes.js';
import { createToken } from '../host/ota/tokens.js';
import { initLog } from '../host/tlog/store.js';
import { toHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { runCli } from './support/cli-run.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually, RawDevice } from './support/ota-client.js';
import { runFwsealProcess, type ServeChild, startServeChild } from './support/serve-child.js';

const w = standardWorld();
const image = detBytes(30_000, 'api access image');
const imageSha = toHex(nodeSha256(image));
const manifest = makeManifestEnvelope(makeManifest(image, { chunkSize: 1024 }), [w.R1, w.R2]);

let broker: Mosquitto;
let dir: string;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
const at = (name: string) => join(dir, name);
const codeIn = (text: string) => Number(text.match(/\(code (\d+)\)/)?.[1]);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fwseal-api-access-'));
  writeFileSync(at('trust.cbor'), w.trust);
  writeFileSync(at('fw.cose'), manifest);
  writeFileSync(at('fw.bin'), image);
  broker = await startMosquitto({ persistence: false });
});

afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

type Serve = ServeChild & { data: string };

/** `fwseal serve` as a child process with a fresh data folder (test/support/serve-child.ts). */
async function startServe(name: string, extra: string[], env: Record<string, string> = {}): Promise<Serve> {
  const data = at(`data-${name}`);
  // A prefix of its own: instances on one broker with one prefix share the device traffic (MQTT 5 shared subscriptions).
  const args = ['--broker', broker.url, '--data', data, '--trust', at('trust.cbor'), '--prefix', name, '--tick-ms', '100', ...extra];
  return { ...(await startServeChild(args, { env, cleanups })), data };
}

/** `fwseal ARGS` in this process, as the holder of `token` (FWSEAL_SERVER_TOKEN, as the CLI reads it). */
async function as(token: string | undefined, ...argv: string[]) {
  if (token === undefined) delete process.env.FWSEAL_SERVER_TOKEN;
  else process.env.FWSEAL_SERVER_TOKEN = token;
  try {
    return await runCli(argv);
  } finally {
    delete process.env.FWSEAL_SERVER_TOKEN;
  }
}

type Answer = { status: number; body: any; headers: Record<string, string | string[] | undefined> };

/** One raw request: JSON or bytes in, the parsed JSON (or text) out. `ca` for https. */
function call(base: string, method: string, path: string, opts: { token?: string; body?: unknown; ca?: Buffer } = {}): Promise<Answer> {
  const url = new URL(path, base);
  const payload = opts.body instanceof Uint8Array ? Buffer.from(opts.body) : opts.body !== undefined ? Buffer.from(JSON.stringify(opts.body)) : undefined;
  const headers: Record<string, string | number> = {};
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  if (payload) {
    headers['content-type'] = opts.body instanceof Uint8Array ? 'application/octet-stream' : 'application/json';
    headers['content-length'] = payload.length;
  }
  return new Promise((ok, fail) => {
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, { method, headers, ...(opts.ca ? { ca: opts.ca } : {}) }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          /* /metrics */
        }
        ok({ status: res.statusCode ?? 0, body, headers: res.headers });
      });
    });
    req.on('error', fail);
    req.end(payload);
  });
}

function auditLines(data: string): AuditRecord[] {
  const out: AuditRecord[] = [];
  const v = scanAuditLog(join(data, 'audit.log'), { visit: (r) => out.push(r) });
  expect(v.ok).toBe(true);
  return out;
}

const createArgs = (group: string) => ['campaign', 'create', '--manifest', at('fw.cose'), '--image', at('fw.bin'), '--group', group, '--waves', '100'];

describe('named tokens with roles on a running server', () => {
  let serve: Serve;
  let tokensFile: string;
  const t: Record<'viewer' | 'operator' | 'admin', string> = { viewer: '', operator: '', admin: '' };
  let campaign: string;
  /** [who, what, exit status, code] of each CLI call, made in order in beforeAll. */
  const calls: [string, string, number, number][] = [];

  beforeAll(async () => {
    tokensFile = at('tokens.json');
    t.viewer = createToken(tokensFile, 'dash', 'viewer').token;
    t.operator = createToken(tokensFile, 'ci', 'operator').token;
    t.admin = createToken(tokensFile, 'release-mgr', 'admin').token;
    serve = await startServe('roles', ['--http', '127.0.0.1:0', '--tokens', tokensFile]);
    const run = async (who: keyof typeof t, what: string, ...argv: string[]) => {
      const r = await as(t[who], ...argv, '--server', serve.url);
      calls.push([who, what, r.status, codeIn(r.err) || 0]);
      expect(r.err).not.toContain(t[who]);
      return r;
    };
    const created = await run('operator', 'create', ...createArgs('g-roles'));
    campaign = created.out.trim();
    await run('viewer', 'status', 'campaign', 'status', campaign);
    await run('viewer', 'create', ...createArgs('g-roles-2'));
    await run('viewer', 'pause', 'campaign', 'pause', campaign);
    await run('operator', 'pause', 'campaign', 'pause', campaign);
    await run('operator', 'publish', 'trust', 'publish', at('trust.cbor'));
    await run('admin', 'publish', 'trust', 'publish', at('trust.cbor'));
    await run('admin', 'resume', 'campaign', 'resume', campaign);
  });

  it('viewer reads but may not create or pause (403); operator creates and pauses but may not publish the root (403); admin may do all', () => {
    const F = CODES.FORBIDDEN;
    expect(calls).toEqual([
      ['operator', 'create', 0, 0],
      ['viewer', 'status', 0, 0],
      ['viewer', 'create', 2, F],
      ['viewer', 'pause', 2, F],
      ['operator', 'pause', 0, 0],
      ['operator', 'publish', 2, F],
      ['admin', 'publish', 0, 0],
      ['admin', 'resume', 0, 0],
    ]);
  });

  it('no token or an unknown one is 401 UNAUTHORIZED with the Bearer challenge of RFC 6750; a role too low names the scope it needs', async () => {
    const none = await as(undefined, 'campaign', 'status', campaign, '--server', serve.url);
    const bad = await as(`fwseal_${'A'.repeat(43)}`, 'campaign', 'status', campaign, '--server', serve.url);
    expect([none.status, codeIn(none.err), bad.status, codeIn(bad.err)]).toEqual([2, CODES.UNAUTHORIZED, 2, CODES.UNAUTHORIZED]);
    const raw = await call(serve.url, 'GET', '/api/campaigns');
    expect([raw.status, raw.body.code, raw.headers['www-authenticate']]).toEqual([401, CODES.UNAUTHORIZED, 'Bearer realm="fwseal"']);
    const wrong = await call(serve.url, 'GET', '/api/campaigns', { token: 'nope' });
    expect(wrong.headers['www-authenticate']).toBe('Bearer realm="fwseal", error="invalid_token"');
    const low = await call(serve.url, 'POST', '/api/root', { token: t.operator, body: w.trust });
    expect([low.status, low.body.code, low.headers['www-authenticate']]).toEqual([
      403,
      CODES.FORBIDDEN,
      'Bearer realm="fwseal", error="insufficient_scope", scope="admin"',
    ]);
    // Unauthenticated: 401 before any 404, so the answer says nothing of which routes or campaigns exist.
    for (const path of ['/api/nothing', '/api/campaigns/nosuch', '/api/campaigns/bad.id']) expect((await call(serve.url, 'GET', path)).status, path).toBe(401);
    expect((await call(serve.url, 'GET', '/healthz')).status).toBe(200);
    expect((await call(serve.url, 'GET', '/metrics')).status).toBe(200);
  });

  it('the audit log names the token of every state-changing call, refusals for its role (403) too; unauthenticated calls are not recorded', () => {
    const got = auditLines(serve.data).map((r) => [r.action, r.actor, r.result]);
    expect(got).toEqual([
      ['image upload', 'ci', 'ok'],
      ['campaign create', 'ci', 'ok'],
      ['image upload', 'dash', 'FORBIDDEN'],
      ['campaign pause', 'dash', 'FORBIDDEN'],
      ['campaign pause', 'ci', 'ok'],
      ['trust publish', 'ci', 'FORBIDDEN'],
      ['trust publish', 'release-mgr', 'ok'],
      ['campaign resume', 'release-mgr', 'ok'],
      ['trust publish', 'ci', 'FORBIDDEN'], // the raw POST of the test before
    ]);
    for (const r of auditLines(serve.data)) expect(r.actorSource).toBe('api-token');
    const text = readFileSync(join(serve.data, 'audit.log'), 'utf8');
    for (const token of Object.values(t)) expect(text).not.toContain(token);
  });

  it('token revoke and token create act on the running server from the next request on, without a restart', async () => {
    expect((await call(serve.url, 'GET', '/api/campaigns', { token: t.viewer })).status).toBe(200);
    expect((await runCli(['token', 'revoke', 'dash', '--tokens', tokensFile])).status).toBe(0);
    expect((await call(serve.url, 'GET', '/api/campaigns', { token: t.viewer })).body.code).toBe(CODES.UNAUTHORIZED);
    const fresh = await runCli(['token', 'create', 'dash2', '--role', 'viewer', '--tokens', tokensFile]);
    expect((await call(serve.url, 'GET', '/api/campaigns', { token: fresh.out.trim() })).status).toBe(200);
  });
});

/** ajv over the live document's component schemas (`#/components/schemas/X` as `#/$defs/X`). */
function schemaChecker(doc: any): (schema: unknown, value: unknown) => string[] {
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  ajv.addSchema({ $id: 'fwseal:api', $defs: JSON.parse(JSON.stringify(doc.components.schemas).replaceAll('#/components/schemas/', '#/$defs/')) });
  return (schema, value) => {
    const ref = (schema as { $ref?: string }).$ref;
    const v = ref ? ajv.getSchema(`fwseal:api${ref.replace('#/components/schemas/', '#/$defs/')}`) : ajv.compile(schema as object);
    if (!v) throw new Error(`no schema ${ref}`);
    return v(value) ? [] : (v.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
  };
}

describe('GET /api/openapi.json describes exactly what the server dispatches', () => {
  let serve: Serve;
  let doc: any;
  const t = { viewer: '', admin: '' };
  /** A value for each path parameter that names something that exists, by the collection it is in. */
  const sample: Record<string, string> = {};
  const fill = (path: string) =>
    path.replace(/\/([a-z]+)\/\{[A-Za-z0-9_]+\}/g, (_, collection: string) => {
      if (sample[collection] === undefined) throw new Error(`no sample for a parameter under /${collection}`);
      return `/${collection}/${sample[collection]}`;
    });
  const operations = () =>
    Object.entries<any>(doc.paths).flatMap(([path, item]) => Object.entries<any>(item).map(([m, op]) => ({ path, method: m.toUpperCase(), op })));

  beforeAll(async () => {
    const file = at('tokens-doc.json');
    t.viewer = createToken(file, 'doc-viewer', 'viewer').token;
    t.admin = createToken(file, 'doc-admin', 'admin').token;
    // A served transparency log (SPEC.md §16.7), so that its routes answer too: the log key's passphrase as for every key.
    const logKey = generateKey('doc-log', dir, () => 'doc log passphrase');
    initLog(at('tlog-doc'), 'example.com/doc-log', logKey);
    const tlog = ['--log', at('tlog-doc'), '--log-key', logKey.keyPath];
    serve = await startServe('doc', ['--http', '127.0.0.1:0', '--tokens', file, ...tlog], { FWSEAL_PASSPHRASE: 'doc log passphrase' });
    const created = await as(t.admin, ...createArgs('g-doc'), '--server', serve.url);
    expect(created.status, created.err).toBe(0);
    const device = await RawDevice.connect(broker.url, 'doc-dev', { prefix: 'doc' });
    cleanups.push(() => device.close());
    await device.online('g-doc');
    await eventually(
      async () => (await call(serve.url, 'GET', '/api/devices', { token: t.viewer })).body.devices?.some((d: any) => d.id === 'doc-dev'),
      20_000,
      'device known',
    );
    Object.assign(sample, { campaigns: created.out.trim(), images: imageSha, devices: 'doc-dev' });
    const signed = async () => String((await call(serve.url, 'GET', '/api/log/checkpoint', { token: t.viewer })).body).startsWith('example.com/doc-log\n1\n');
    await eventually(signed, 20_000, 'a checkpoint with the manifest');
    const got = await call(serve.url, 'GET', '/api/openapi.json', { token: t.viewer });
    expect(got.status).toBe(200);
    doc = got.body;
  });

  it('is the document generated from the route table, for a viewer; no token is 401', async () => {
    expect(doc).toEqual(openApiDocument());
    expect(
      operations()
        .map((o) => `${o.method} ${o.path}`)
        .sort(),
    ).toEqual(ROUTES.map((r) => `${r.method} ${r.path}`).sort());
    expect((await call(serve.url, 'GET', '/api/openapi.json')).status).toBe(401);
    expect(unmatchedRoutes()).toEqual({ unhandled: [], unrouted: [] });
  });

  it('every documented operation is served: it answers one of its documented statuses (never the 404 of no route) with a body that fits its schema', async () => {
    const check = schemaChecker(doc);
    for (const { path, method, op } of operations()) {
      const what = `${method} ${path}`;
      const body = op.requestBody ? (op.requestBody.content['application/json'] ? {} : new Uint8Array(0)) : undefined;
      const r = await call(serve.url, method, fill(path), { token: t.admin, body });
      const documented = op.responses[String(r.status)];
      expect(documented, `${what} answered ${r.status}: ${JSON.stringify(r.body)}`).toBeDefined();
      if (r.status === 404) expect(r.body.code, what).toBe(CODES.NOT_FOUND);
      const schema = documented.$ref ? doc.components.responses[documented.$ref.split('/').at(-1)].content : documented.content;
      if (schema['text/plain']) expect(r.headers['content-type'], what).toMatch(/^text\/plain/);
      else expect(check(schema['application/json'].schema, r.body), `${what} ${r.status}`).toEqual([]);
    }
  });

  it('the documented success answers are reached too, and fit their schemas', async () => {
    const check = schemaChecker(doc);
    /** Call the operation at `template` (its parameters from the samples, or `id`) and check the answer against the schema of `status`. */
    const ok = async (method: string, template: string, status: number, opts: { body?: unknown; id?: string; query?: string } = {}) => {
      const path = (opts.id ? template.replace('{id}', opts.id) : fill(template)) + (opts.query ?? '');
      const r = await call(serve.url, method, path, { token: t.admin, body: opts.body });
      expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(status);
      const content = doc.paths[template][method.toLowerCase()].responses[String(status)].content;
      if (content['application/json']) expect(check(content['application/json'].schema, r.body), `${method} ${path}`).toEqual([]);
      return r.body;
    };
    // The log's proofs need their query: the manifest of the campaign created above, and a size.
    const query: Record<string, string> = { '/api/log/proof': `?entry=${toHex(nodeSha256(manifest))}`, '/api/log/consistency': '?from=0' };
    for (const r of ROUTES.filter((x) => x.method === 'GET')) await ok('GET', r.path, 200, { query: query[r.path] });
    await ok('PUT', '/api/images/{sha256}', 200, { body: image });
    await ok('POST', '/api/root', 200, { body: w.trust });
    const release = { manifest: Buffer.from(manifest).toString('base64'), image: imageSha, group: 'g-doc-2', waves: [100] };
    const fresh = await ok('POST', '/api/campaigns', 201, { body: release });
    for (const action of ['pause', 'resume', 'abort']) await ok('POST', `/api/campaigns/{id}/${action}`, 200, { id: fresh.id });
  });

  it('any other method on a documented path is 404, as is any path outside the table', async () => {
    for (const [path, item] of Object.entries<any>(doc.paths))
      for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH'].filter((m) => !item[m.toLowerCase()])) {
        const r = await call(serve.url, method, fill(path), { token: t.admin });
        expect([r.status, r.body.code], `${method} ${path}`).toEqual([404, CODES.NOT_FOUND]);
      }
    for (const path of ['/api/nothing', '/api/campaigns/', '/api', '/nothing', '/campaigns/', '/healthz/x'])
      expect((await call(serve.url, 'GET', path, { token: t.admin })).status, path).toBe(404);
  });

  it('roles as documented: without a token every operation but the open ones is 401; a viewer gets 403 on each operator or admin one', async () => {
    for (const { path, method, op } of operations()) {
      const what = `${method} ${path}`;
      const anonymous = await call(serve.url, method, fill(path));
      expect(anonymous.status === 401, what).toBe(op['x-fwseal-role'] !== 'open');
      if (op['x-fwseal-role'] !== 'operator' && op['x-fwseal-role'] !== 'admin') continue;
      const viewer = await call(serve.url, method, fill(path), { token: t.viewer });
      expect([viewer.status, viewer.body.code, viewer.headers['www-authenticate']], what).toEqual([
        403,
        CODES.FORBIDDEN,
        `Bearer realm="fwseal", error="insufficient_scope", scope="${op['x-fwseal-role']}"`,
      ]);
    }
  });
});

describe('the listen policy of fwseal serve', () => {
  const serveArgs = (...extra: string[]) => ['serve', '--broker', broker.url, '--data', at('data-refused'), '--trust', at('trust.cbor'), ...extra];

  it('an open API off the loopback is refused before anything starts (exit 2, USAGE); so are --insecure-open-api with tokens, and half a TLS pair', async () => {
    const file = at('tokens-policy.json');
    createToken(file, 'p', 'viewer');
    for (const extra of [
      ['--http', '0.0.0.0:0'],
      ['--http', '[::]:0'],
      ['--http', '0.0.0.0:0', '--insecure-open-api', '--tokens', file],
      ['--http', '127.0.0.1:0', '--http-cert', at('fw.bin')],
    ]) {
      const r = await runCli(serveArgs(...extra));
      expect([r.status, codeIn(r.err)], extra.join(' ')).toEqual([2, CODES.USAGE]);
      expect(r.out, extra.join(' ')).toBe('');
    }
  });

  // Tests listen on loopback only: the WARNING for an open API off the loopback is checked on
  // listenPolicy itself (test/tokens.test.ts); here the open API runs on 127.0.0.1.
  it('--insecure-open-api starts it without tokens, and the audit log names the actor api (api-open)', async () => {
    const s = await startServe('open', ['--http', '127.0.0.1:0', '--insecure-open-api']);
    const local = `http://127.0.0.1:${s.port}`;
    expect((await call(local, 'PUT', `/api/images/${imageSha}`, { body: image })).status).toBe(201);
    expect(auditLines(s.data).map((r) => [r.action, r.actor, r.actorSource])).toEqual([['image upload', 'api', 'api-open']]);
  });

  it('FWSEAL_SERVER_TOKEN alone still works: one admin token, named FWSEAL_SERVER_TOKEN_NAME in the audit log', async () => {
    const s = await startServe('shared', ['--http', '127.0.0.1:0'], { FWSEAL_SERVER_TOKEN: 'legacy-secret', FWSEAL_SERVER_TOKEN_NAME: 'legacy-ci' });
    expect((await call(s.url, 'GET', '/api/root')).status).toBe(401);
    expect((await call(s.url, 'POST', '/api/root', { token: 'legacy-secret', body: w.trust })).status).toBe(200);
    expect(auditLines(s.data).map((r) => [r.action, r.actor, r.actorSource])).toEqual([['trust publish', 'legacy-ci', 'api-token']]);
    expect(s.err()).not.toContain('legacy-secret');
  });
});

describe('HTTPS with --http-cert/--http-key', () => {
  let serve: Serve;
  let token: string;
  const cert = () => at('api.pem');

  beforeAll(async () => {
    for (const name of ['api', 'other'])
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`].concat([
          '-days',
          '2',
          '-subj',
          '/CN=127.0.0.1',
          '-addext',
          'subjectAltName=IP:127.0.0.1',
        ]),
        { cwd: dir, stdio: 'pipe' },
      );
    const file = at('tokens-tls.json');
    token = createToken(file, 'tls-ci', 'operator').token;
    serve = await startServe('tls', ['--http', '127.0.0.1:0', '--tokens', file, '--http-cert', cert(), '--http-key', at('api.key')]);
  });

  it('serves https:// and the CLI runs a campaign over it, trusting the private certificate through NODE_EXTRA_CA_CERTS', async () => {
    expect(serve.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const env = { FWSEAL_SERVER_TOKEN: token, NODE_EXTRA_CA_CERTS: cert() };
    const created = await runFwsealProcess([...createArgs('g-tls'), '--server', serve.url], env);
    expect(created.status, created.err).toBe(0);
    const id = created.out.trim();
    const status = await runFwsealProcess(['campaign', 'status', id, '--json', '--server', serve.url], env);
    expect(status.status, status.err).toBe(0);
    expect(JSON.parse(status.out)).toMatchObject({ id, group: 'g-tls', state: 'running' });
    expect((await call(serve.url, 'GET', `/api/campaigns/${id}`, { token, ca: readFileSync(cert()) })).body.id).toBe(id);
    expect(created.err + status.err).not.toContain(token);
  });

  it('without the certificate trusted the CLI refuses the server (exit 2, not a verdict); plain http:// gets no API', async () => {
    const untrusted = await runFwsealProcess(['campaign', 'status', 'x', '--server', serve.url], { FWSEAL_SERVER_TOKEN: token });
    expect([untrusted.status, codeIn(untrusted.err)]).toEqual([2, CODES.SERVER_UNREACHABLE]);
    const plain = await runFwsealProcess(['campaign', 'status', 'x', '--server', serve.url.replace('https:', 'http:')], { FWSEAL_SERVER_TOKEN: token });
    expect([plain.status, codeIn(plain.err)]).toEqual([2, CODES.SERVER_UNREACHABLE]);
  });

  it('a certificate and a key that are not a pair stop the start (exit 2, USAGE)', async () => {
    const r = await runCli([
      'serve',
      '--broker',
      broker.url,
      '--data',
      at('data-badpair'),
      '--http',
      '127.0.0.1:0',
      '--http-cert',
      cert(),
      '--http-key',
      at('other.key'),
    ]);
    expect([r.status, codeIn(r.err)]).toEqual([2, CODES.USAGE]);
  });
});
