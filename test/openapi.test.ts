/**
 * The route table and the OpenAPI 3.1 description generated from it (host/ota/routes.ts,
 * host/ota/openapi.ts; SPEC.md §12.9 "HTTP API"): the document has the structure OpenAPI 3.1 asks
 * for (checked with ajv against a schema written here after the official one), every schema in it is
 * valid JSON Schema 2020-12 and every reference resolves, it lists exactly the routes of the table,
 * the table gives each route the role the access rules name, the server (http.ts) has a handler for
 * each route of the table and for nothing else, and real answers fit the schemas (against a running
 * server: test/api-access.test.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, describe, expect, it } from 'vitest';
import { appendAudit } from '../host/audit.js';
import { AuditPager } from '../host/ota/audit-routes.js';
import { ApiError } from '../host/ota/campaigns.js';
import { unmatchedRoutes } from '../host/ota/http.js';
import { describedOperations, errorStatuses, openApiDocument } from '../host/ota/openapi.js';
import { matchRoute, PATH_PARAMS, pathParams, ROUTES } from '../host/ota/routes.js';

type Json = Record<string, any>;
const doc = openApiDocument() as Json;
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const text = { type: 'string' };
/**
 * The parts of the OpenAPI 3.1 schema (spec.openapis.org/oas/3.1/schema) this document uses, as
 * strict as the original: unknown members refused except `x-` extensions, required members required.
 */
const OAS31 = {
  type: 'object',
  required: ['openapi', 'info', 'paths'],
  properties: {
    openapi: { type: 'string', pattern: '^3\\.1\\.\\d+(-.+)?$' },
    info: { type: 'object', required: ['title', 'version'], properties: { title: text, version: text, description: text }, additionalProperties: false },
    paths: { type: 'object', propertyNames: { pattern: '^/' }, additionalProperties: { $ref: '#/$defs/pathItem' } },
    components: {
      type: 'object',
      properties: {
        schemas: { type: 'object', additionalProperties: { type: ['object', 'boolean'] } },
        responses: { type: 'object', additionalProperties: { $ref: '#/$defs/response' } },
        securitySchemes: { type: 'object', additionalProperties: { $ref: '#/$defs/securityScheme' } },
      },
      additionalProperties: false,
    },
    security: { type: 'array', items: { $ref: '#/$defs/securityRequirement' } },
  },
  patternProperties: { '^x-': true },
  additionalProperties: false,
  $defs: {
    pathItem: {
      type: 'object',
      minProperties: 1,
      propertyNames: { enum: METHODS },
      additionalProperties: { $ref: '#/$defs/operation' },
    },
    operation: {
      type: 'object',
      required: ['responses'],
      properties: {
        operationId: text,
        summary: text,
        description: text,
        parameters: { type: 'array', items: { $ref: '#/$defs/parameter' } },
        requestBody: { $ref: '#/$defs/requestBody' },
        responses: { $ref: '#/$defs/responses' },
        security: { type: 'array', items: { $ref: '#/$defs/securityRequirement' } },
      },
      patternProperties: { '^x-': true },
      additionalProperties: false,
    },
    parameter: {
      type: 'object',
      required: ['name', 'in', 'schema'],
      properties: {
        name: text,
        in: { enum: ['query', 'header', 'path', 'cookie'] },
        description: text,
        required: { type: 'boolean' },
        schema: { type: 'object' },
      },
      additionalProperties: false,
      // A path parameter is required: true (OpenAPI 3.1 §4.8.12.1).
      anyOf: [{ properties: { in: { enum: ['query', 'header', 'cookie'] } } }, { required: ['required'], properties: { required: { const: true } } }],
    },
    requestBody: {
      type: 'object',
      required: ['content'],
      properties: { description: text, content: { $ref: '#/$defs/content' }, required: { type: 'boolean' } },
      additionalProperties: false,
    },
    content: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: '^[a-z]+/[a-z0-9.+-]+$' },
      additionalProperties: { type: 'object', properties: { schema: { type: ['object', 'boolean'] } }, additionalProperties: false },
    },
    responses: {
      type: 'object',
      minProperties: 1,
      propertyNames: { pattern: '^([1-5](?:[0-9]{2}|XX)|default)$' },
      additionalProperties: { oneOf: [{ $ref: '#/$defs/reference' }, { $ref: '#/$defs/response' }] },
    },
    response: {
      type: 'object',
      required: ['description'],
      properties: { description: text, content: { $ref: '#/$defs/content' } },
      additionalProperties: false,
    },
    reference: { type: 'object', required: ['$ref'], properties: { $ref: text, summary: text, description: text }, additionalProperties: false },
    securityScheme: {
      type: 'object',
      required: ['type'],
      properties: { type: { enum: ['apiKey', 'http', 'mutualTLS', 'oauth2', 'openIdConnect'] }, scheme: text, description: text, bearerFormat: text },
      additionalProperties: false,
      anyOf: [{ properties: { type: { not: { const: 'http' } } } }, { required: ['scheme'] }],
    },
    securityRequirement: { type: 'object', additionalProperties: { type: 'array', items: text } },
  },
};

const structure = new Ajv2020({ allErrors: true, strict: false }).compile(OAS31);

/** ajv over the component schemas, their `#/components/schemas/X` references turned into `#/$defs/X`. */
function schemaChecker(): (name: string, value: unknown) => string[] {
  const schemas = JSON.parse(JSON.stringify(doc.components.schemas).replaceAll('#/components/schemas/', '#/$defs/'));
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  ajv.addSchema({ $id: 'fwseal:api', $defs: schemas });
  return (name, value) => {
    const v = ajv.getSchema(`fwseal:api#/$defs/${name}`);
    if (!v) throw new Error(`no schema ${name}`);
    return v(value) ? [] : (v.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
  };
}

/** Every `$ref` string anywhere in a value. */
function refs(v: unknown, out: string[] = []): string[] {
  if (Array.isArray(v)) for (const x of v) refs(x, out);
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) {
      if (k === '$ref' && typeof x === 'string') out.push(x);
      else refs(x, out);
    }
  return out;
}

describe('the OpenAPI document has the structure of OpenAPI 3.1', () => {
  it('validates against the OpenAPI 3.1 structure', () => {
    const ok = structure(doc);
    expect(structure.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
  });

  it('the structure check refuses a broken document (it can fail)', () => {
    const broken = structuredClone(doc);
    delete broken.paths['/api/root'].get.responses['200'].description;
    expect(structure(broken)).toBe(false);
    const noSlash = structuredClone(doc);
    noSlash.paths['api/x'] = noSlash.paths['/api/root'];
    expect(structure(noSlash)).toBe(false);
    expect(structure({ ...doc, openapi: '3.0.3' })).toBe(false);
  });

  it('every component schema is valid JSON Schema 2020-12 and every reference resolves', () => {
    const check = schemaChecker();
    for (const name of Object.keys(doc.components.schemas)) expect(() => check(name, null), name).not.toThrow();
    for (const r of refs(doc)) {
      const m = /^#\/components\/(schemas|responses)\/([A-Za-z0-9._-]+)$/.exec(r);
      expect(m, r).not.toBeNull();
      expect(doc.components[m![1]][m![2]], r).toBeDefined();
    }
  });

  it('every security requirement names a declared scheme, and path parameters are declared once each', () => {
    for (const [path, item] of Object.entries<Json>(doc.paths))
      for (const op of Object.values<Json>(item)) {
        for (const req of op.security ?? []) for (const name of Object.keys(req)) expect(doc.components.securitySchemes[name]).toBeDefined();
        const declared = (op.parameters ?? []).filter((p: Json) => p.in === 'path').map((p: Json) => p.name);
        expect(declared.sort(), path).toEqual(pathParams(path).sort());
      }
  });
});

describe('the document lists exactly the routes of the table', () => {
  const operations = Object.entries<Json>(doc.paths).flatMap(([path, item]) =>
    Object.entries<Json>(item).map(([m, op]) => ({ path, method: m.toUpperCase(), op })),
  );

  it('the same method and path pairs, each once, with the same operation ids', () => {
    const key = (method: string, path: string) => `${method} ${path}`;
    expect(operations.map((o) => key(o.method, o.path)).sort()).toEqual(ROUTES.map((r) => key(r.method, r.path)).sort());
    expect(new Set(ROUTES.map((r) => r.id)).size).toBe(ROUTES.length);
    for (const r of ROUTES) expect(doc.paths[r.path][r.method.toLowerCase()].operationId).toBe(r.id);
    expect(describedOperations().sort()).toEqual(ROUTES.map((r) => r.id).sort());
  });

  it('each operation carries the route role, its token requirement, its body and its error answers', () => {
    for (const r of ROUTES) {
      const op = doc.paths[r.path][r.method.toLowerCase()];
      expect(op['x-fwseal-role'], r.id).toBe(r.access);
      expect(op.security, r.id).toEqual(r.access === 'open' ? [] : [{ bearerToken: [] }]);
      expect(op.requestBody !== undefined, r.id).toBe(r.body !== 'none');
      expect(
        Object.keys(op.responses).some((s) => s.startsWith('2')),
        r.id,
      ).toBe(true);
      for (const s of errorStatuses(r)) expect(op.responses[String(s)], `${r.id} ${s}`).toEqual({ $ref: `#/components/responses/E${s}` });
      if (r.access === 'operator' || r.access === 'admin') expect(op.responses['403'], r.id).toBeDefined();
      if (r.access === 'open') expect(op.responses['401'], r.id).toBeUndefined();
    }
  });
});

describe('the route table follows the access rules', () => {
  it('viewer: every GET but /healthz and /metrics (open); operator: campaigns and images; admin: POST /api/root', () => {
    const byKey = Object.fromEntries(ROUTES.map((r) => [`${r.method} ${r.path}`, r.access]));
    expect(byKey['GET /healthz']).toBe('open');
    expect(byKey['GET /metrics']).toBe('open');
    expect(byKey['POST /api/root']).toBe('admin');
    for (const r of ROUTES) {
      if (r.method === 'GET' && r.access !== 'open') expect(r.access, r.id).toBe('viewer');
      if (r.method !== 'GET' && r.path !== '/api/root') expect(r.access, r.id).toBe('operator');
      expect(r.access === 'open', r.id).toBe(!r.path.startsWith('/api/'));
    }
  });

  it('exactly the calls that change state are audited, under the actions of SPEC.md §15.6', () => {
    for (const r of ROUTES) {
      expect(r.mutates, r.id).toBe(r.method !== 'GET');
      expect(r.audit !== undefined, r.id).toBe(r.mutates);
    }
    expect(ROUTES.flatMap((r) => r.audit ?? []).sort()).toEqual([
      'campaign abort',
      'campaign create',
      'campaign exclude',
      'campaign next',
      'campaign pause',
      'campaign resume',
      'image upload',
      'trust publish',
    ]);
  });
});

describe('the server dispatches only from the table', () => {
  it('every route of the table has a handler in http.ts and every handler a route (startHttp refuses to start otherwise)', () => {
    expect(unmatchedRoutes()).toEqual({ unhandled: [], unrouted: [] });
  });
});

describe('matchRoute', () => {
  const sample: Record<string, string> = { id: 'c1abc', sha256: 'ab'.repeat(32), device: 'dev-1' };
  const fill = (path: string) => path.replace(/\{(\w+)\}/g, (_, n: string) => sample[n]);

  it('finds each route from its method and a concrete path, with its parameters', () => {
    for (const r of ROUTES) {
      const m = matchRoute(r.method, fill(r.path));
      expect(m?.route.id, r.id).toBe(r.id);
      for (const n of pathParams(r.path)) expect(m?.params[n]).toBe(sample[n]);
    }
  });

  it('no route for another method, an unknown path or a trailing slash', () => {
    expect(matchRoute('DELETE', '/api/campaigns')).toBeNull();
    expect(matchRoute('GET', `/api/images/${sample.sha256}`)).toBeNull();
    expect(matchRoute('GET', '/api/nothing')).toBeNull();
    expect(matchRoute('GET', '/api/campaigns/')).toBeNull();
    expect(matchRoute('POST', '/api/campaigns/c1/pause/x')).toBeNull();
  });

  it('a parameter outside its pattern is 400 BAD_VALUE', () => {
    for (const [method, path] of [
      ['PUT', '/api/images/NOT-HEX'],
      ['GET', '/api/campaigns/has.dot'],
      ['POST', `/api/campaigns/${'x'.repeat(65)}/abort`],
    ]) {
      let err: unknown;
      try {
        matchRoute(method, path);
      } catch (e) {
        err = e;
      }
      expect(err, path).toBeInstanceOf(ApiError);
      expect((err as ApiError).status).toBe(400);
      expect((err as ApiError).codeName).toBe('BAD_VALUE');
    }
    expect(Object.keys(PATH_PARAMS).sort()).toEqual(['device', 'id', 'sha256']);
  });
});

describe('real answers fit the schemas', () => {
  const check = schemaChecker();

  it('an audit page read from a real log, a torn last line included', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fwseal-openapi-'));
    dirs.push(dir);
    const log = join(dir, 'audit.log');
    appendAudit(
      log,
      { actor: 'ci', actorSource: 'api-token' },
      { action: 'campaign create', kind: 'manifest', digest: 'ab'.repeat(32), file: '/api/campaigns/c1', result: 'ok' },
    );
    appendAudit(log, { actor: 'ci', actorSource: 'api-token' }, { action: 'campaign abort', result: 'CONFLICT' });
    const page = new AuditPager(log).page(0, 10);
    expect(page.entries).toHaveLength(2);
    expect(check('AuditPage', page)).toEqual([]);
    expect(check('AuditPage', { ...page, entries: [...page.entries, { line: 3, invalid: 'torn' }] })).toEqual([]);
  });

  it('the error object of every refusal', () => {
    const e = new ApiError(403, 'FORBIDDEN', 'token ci has the role viewer; this call needs operator');
    expect(check('Error', { error: e.codeName, code: e.code, detail: e.message })).toEqual([]);
  });

  it('an answer with a member the description lacks is refused (the schemas are closed)', () => {
    expect(check('Error', { error: 'NOT_FOUND', code: 808, detail: 'x', extra: 1 })).not.toEqual([]);
    expect(check('Health', { ok: true, mqtt: true })).toEqual([]);
    expect(check('Health', { ok: true, mqtt: true, uptime: 3 })).not.toEqual([]);
    expect(check('ImageStored', { sha256: 'AB'.repeat(32), size: 3 })).not.toEqual([]);
  });
});
