/**
 * `GET /api/openapi.json`: an OpenAPI 3.1 description of the server's HTTP API (SPEC.md §12.9),
 * generated from the route table (routes.ts) plus the JSON shapes of §12.9's table, written here by
 * hand as JSON Schema 2020-12 (the dialect of OpenAPI 3.1). Objects list every member and allow no
 * other, so a test that checks real answers against these schemas fails when an answer gains a field
 * the description does not have.
 */

import { CONSOLE_SCHEMAS } from './console/api-schemas.js';
import { LOG_OPERATIONS, LOG_SCHEMAS } from './http-log.js';
import { BODY_LIMITS, type BodyKind, PATH_PARAMS, pathParams, ROUTES, type RouteSpec } from './routes.js';
import { DEVICE_STATES } from './store.js';

export const API_VERSION = '0.1.0';

type Schema = Record<string, unknown>;
type Answer = readonly [status: number, schema: string, description: string];
/** What the route table does not say: the request schema, the answers, and errors beyond those every route of its kind has. */
type Operation = { readonly request?: string; readonly answers: readonly Answer[]; readonly errors?: readonly number[]; readonly description?: string };

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const nullable = (s: Schema): Schema => ({ ...s, type: [s.type, 'null'] });
const int = (description?: string, minimum = 0): Schema => ({ type: 'integer', minimum, ...(description ? { description } : {}) });
const str = (description?: string): Schema => ({ type: 'string', ...(description ? { description } : {}) });
const HEX64: Schema = { type: 'string', pattern: '^[0-9a-f]{64}$' };
const TIME_MS = int('milliseconds since 1970-01-01T00:00:00Z');
const array = (items: Schema): Schema => ({ type: 'array', items });
const PERCENT: Schema = { type: 'number', exclusiveMinimum: 0, maximum: 100 };

/** A closed object: every member listed, all required except `optional`. */
function obj(properties: Record<string, Schema>, optional: readonly string[] = [], description?: string): Schema {
  return {
    type: 'object',
    ...(description ? { description } : {}),
    properties,
    required: Object.keys(properties).filter((k) => !optional.includes(k)),
    additionalProperties: false,
  };
}

const CAMPAIGN_STATES = ['running', 'paused', 'halted', 'aborted', 'completed'];

const SUMMARY: Record<string, Schema> = {
  id: str('campaign id'),
  group: str('device group'),
  version: str('release version from the manifest'),
  securityCounter: int('security counter from the manifest'),
  state: { type: 'string', enum: CAMPAIGN_STATES },
  haltCode: nullable(int('the verifier code with which the root of trust halted the campaign (§12.13)')),
  wave: int('the open wave, 1-based', 1),
  waves: array(PERCENT),
  rollout: int('bucket threshold of the open waves (§12.8)'),
  created: TIME_MS,
  updated: TIME_MS,
};

const COUNT_NAMES = ['known', 'eligible', 'waiting', ...DEVICE_STATES];

/** The rollout rules of a campaign (SPEC.md §12.9 "Rollouts that finish"), as created and as shown. */
const ROLLOUT_RULES: Record<string, Schema> = {
  deviceTimeoutMs: int('a device of the open wave silent this long is timed-out (default 3600000)', 1000),
  abortMinDevices: int('the failure-rate rule halts only after this many devices reported an end state (default 1)', 1),
  waveSoakMs: int('after a wave is done, wait this long before the next opens (default 0)'),
  waveGate: { type: 'string', enum: ['auto', 'manual'], description: 'manual: the next wave opens only after POST /api/campaigns/{id}/next' },
};

/** Where the open wave stands, and who did what (SPEC.md §12.9). */
const WAVE_STATE: Record<string, Schema> = {
  waveDoneAt: nullable(int('when every device of the open wave reached an end state (the soak started)')),
  nextWaveAt: nullable(int('when the soak ends and the next wave may open')),
  waveApproved: { type: 'boolean', description: 'manual gate: the operator let the next wave open' },
  waitingFor: { type: ['string', 'null'], enum: ['devices', 'soak', 'operator', null], description: 'what the open wave waits for' },
  events: array(
    obj({
      at: TIME_MS,
      action: str('create, pause, resume, abort, next, exclude, halt, timeout, wave, complete'),
      actor: str('the API token name (api on an open API), or server'),
      detail: str(),
    }),
  ),
};

/** A device as the fleet view shows it (SPEC.md §12.9 "Fleet view"); null: never reported. */
const FLEET_DEVICE: Record<string, Schema> = {
  id: str(),
  group: str(),
  version: nullable(str()),
  counter: nullable(int()),
  lastSeen: TIME_MS,
  trustVersion: nullable(int()),
  revocationVersion: nullable(int()),
  revocationSha256: nullable(HEX64),
  online: { type: 'boolean', description: 'marked online (no last will since) and heard within 24 h' },
  lastError: nullable(obj({ code: int(), campaign: nullable(str()) }, [], 'the last rejected or failed event that counted')),
};

const SCHEMAS: Record<string, Schema> = {
  Error: obj({ error: str('code name (SPEC.md §9)'), code: int('numeric code (SPEC.md §9)'), detail: str('one line, for people') }),
  Health: obj({ ok: { const: true }, mqtt: { type: 'boolean', description: 'connected to the broker' } }),
  OpenApiDocument: { type: 'object', description: 'this document' },
  ImageStored: obj({ sha256: HEX64, size: int(undefined, 1) }),
  CampaignCreate: obj(
    {
      manifest: { type: 'string', contentEncoding: 'base64', description: 'the signed manifest envelope, standard base64' },
      image: { ...HEX64, description: 'SHA-256 of an image uploaded with PUT /api/images/{sha256}' },
      group: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' },
      waves: { ...array(PERCENT), description: 'cumulative percentages, ascending, the last 100' },
      abortFailureRate: { type: 'number', minimum: 0, maximum: 1 },
      blockSize: { type: 'integer', description: 'a power of two, at least a chunk' },
      ...ROLLOUT_RULES,
    },
    ['waves', 'abortFailureRate', 'blockSize', ...Object.keys(ROLLOUT_RULES)],
  ),
  CampaignSummary: obj(SUMMARY),
  CampaignList: obj({ campaigns: array(ref('CampaignSummary')) }),
  CampaignDevice: obj({
    id: str(),
    state: { type: 'string', enum: ['waiting', ...DEVICE_STATES] },
    done: nullable(int()),
    total: nullable(int()),
    code: nullable(int()),
    updated: nullable(TIME_MS),
    trustVersion: nullable(int()),
    revocationVersion: nullable(int()),
  }),
  CampaignDetail: obj({
    ...SUMMARY,
    imageSha256: HEX64,
    imageSize: int(),
    chunkSize: int(undefined, 1),
    blockSize: int(undefined, 1),
    manifestSha256: HEX64,
    abortFailureRate: { type: 'number', minimum: 0, maximum: 1 },
    ...ROLLOUT_RULES,
    ...WAVE_STATE,
    counts: obj(Object.fromEntries(COUNT_NAMES.map((n) => [n, int()]))),
    failureRate: { type: 'number', minimum: 0, maximum: 1, description: '(rejected + failed) / (confirmed + rejected + failed)' },
    devices: array(ref('CampaignDevice')),
  }),
  Device: obj(FLEET_DEVICE, [], 'null: never reported'),
  DeviceList: obj({
    devices: array(ref('Device')),
    next: nullable(str('the after of the next page')),
    more: { type: 'boolean' },
  }),
  DeviceDetail: obj({
    ...FLEET_DEVICE,
    campaigns: array(
      obj({
        campaign: str(),
        group: str(),
        version: str(),
        campaignState: { type: 'string', enum: CAMPAIGN_STATES },
        state: { type: 'string', enum: [...DEVICE_STATES] },
        done: nullable(int()),
        total: nullable(int()),
        code: nullable(int()),
        updated: TIME_MS,
      }),
    ),
  }),
  CampaignExclude: obj({ device: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } }),
  RootView: obj({
    trustVersion: int(),
    trustSha256: nullable(HEX64),
    trustVersions: array(int(undefined, 1)),
    revocationVersion: int('0: no list'),
    revocationSha256: nullable(HEX64),
    revocationPublished: nullable(TIME_MS),
  }),
  RootPublished: obj({
    kind: { type: 'string', enum: ['trust-bundle', 'revocation-list'] },
    version: int(undefined, 1),
    changed: { type: 'boolean', description: 'false: the stored object was sent again' },
    halted: array(obj({ id: str(), code: int() })),
  }),
  AuditRecord: obj(
    {
      seq: int(undefined, 1),
      time: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z$' },
      actor: str('the API token name, or api when the API is open'),
      actorSource: str(),
      action: str(),
      keyId: str(),
      kind: str(),
      digest: str(),
      file: str(),
      result: str('ok, or the code name'),
      prev: HEX64,
      hash: HEX64,
    },
    ['keyId', 'kind', 'digest', 'file'],
  ),
  AuditInvalid: obj({
    line: int(undefined, 1),
    invalid: { type: 'string', enum: ['torn', 'too-long', 'not-json', 'fields', 'not-canonical', 'hash', 'seq', 'prev', 'head'] },
  }),
  AuditPage: obj({
    entries: array({ oneOf: [ref('AuditRecord'), ref('AuditInvalid')] }),
    next: int('the after of the next page'),
    more: { type: 'boolean' },
  }),
  ...CONSOLE_SCHEMAS,
  ...LOG_SCHEMAS,
};

const OPERATIONS: Readonly<Record<string, Operation>> = {
  health: { answers: [[200, 'Health', 'the server runs']] },
  metrics: { answers: [[200, 'text', 'Prometheus text format 0.0.4']] },
  openApi: { answers: [[200, 'OpenApiDocument', 'this document']] },
  getRoot: { answers: [[200, 'RootView', 'the stored root of trust']] },
  publishRoot: {
    answers: [[200, 'RootPublished', 'stored and announced (or already stored: changed false)']],
    errors: [422],
    description:
      'A trust bundle or revocation list is checked as a device checks it; 422 carries the verifier code (REVOCATION_ROLLBACK, TRUST_VERSION_SKIP, ...).',
  },
  getAudit: { answers: [[200, 'AuditPage', 'one page of the audit log']] },
  whoAmI: { answers: [[200, 'WhoAmI', "the caller's token name and role"]] },
  getOverview: {
    answers: [[200, 'Overview', 'the overview the web console draws']],
    description: "Read from the store and from this instance's /metrics; one answer is shared for 2 s by every caller.",
  },
  listDevices: { answers: [[200, 'DeviceList', 'one page of the known devices, ordered by id']] },
  getDevice: { answers: [[200, 'DeviceDetail', 'the device and its campaigns']], errors: [404] },
  putImage: {
    answers: [
      [201, 'ImageStored', 'stored'],
      [200, 'ImageStored', 'already stored'],
    ],
    description: 'The body is streamed to disk and hashed; it is kept only if it hashes to {sha256} (else 400 BAD_VALUE).',
  },
  listCampaigns: { answers: [[200, 'CampaignList', 'every campaign']] },
  createCampaign: {
    request: 'CampaignCreate',
    answers: [[201, 'CampaignDetail', 'created and announced']],
    errors: [404, 409, 422],
    description: '404: no such image uploaded; 409: the group has an active campaign; 422: the manifest or image does not verify (the verifier code).',
  },
  getCampaign: { answers: [[200, 'CampaignDetail', 'the campaign']], errors: [404] },
  pauseCampaign: { answers: [[200, 'CampaignDetail', 'paused']], errors: [404, 409] },
  resumeCampaign: {
    answers: [[200, 'CampaignDetail', 'running again']],
    errors: [404, 409, 422],
    description: '422: the manifest no longer verifies under the root of trust (the verifier code).',
  },
  abortCampaign: { answers: [[200, 'CampaignDetail', 'aborted']], errors: [404, 409] },
  nextCampaign: {
    answers: [[200, 'CampaignDetail', 'the next wave is let open (it opens once the soak is over)']],
    errors: [404, 409],
    description: '409: not running, no manual wave gate, the last wave open, the open wave not done yet, or let open already.',
  },
  excludeCampaign: {
    request: 'CampaignExclude',
    answers: [[200, 'CampaignDetail', 'the device is excluded']],
    errors: [404, 409],
    description: '404: no such campaign, or the device is not known in its group; 409: the campaign is aborted, or the device excluded already.',
  },
  ...LOG_OPERATIONS,
};

/** The route ids this file describes (a test holds them to the table). */
export function describedOperations(): string[] {
  return Object.keys(OPERATIONS);
}

const ERROR_TEXT: Readonly<Record<number, string>> = {
  400: 'a malformed request (USAGE, BAD_VALUE, MALFORMED, MISSING_FIELD, UNKNOWN_KEY)',
  401: 'no token, or an unknown or revoked one (UNAUTHORIZED)',
  403: "the token's role does not allow this call (FORBIDDEN)",
  404: 'no such resource (NOT_FOUND)',
  409: "the call conflicts with the campaign's state (CONFLICT)",
  413: 'the body is larger than allowed (TOO_LARGE); the connection closes after the answer',
  422: "refused by the verifier: the answer carries the verifier's code",
  500: 'a server-side failure (IO, AUDIT_LOG_INVALID, INTERNAL)',
};

const MEDIA: Readonly<Record<Exclude<BodyKind, 'none'>, string>> = {
  json: 'application/json',
  image: 'application/octet-stream',
  envelope: 'application/octet-stream',
};

/** The error statuses of a route: from what it is (token, role, body, parameters) plus its own. */
export function errorStatuses(route: RouteSpec): number[] {
  const s = new Set<number>(OPERATIONS[route.id]?.errors ?? []);
  if (route.access !== 'open') s.add(401).add(500);
  if (route.access === 'operator' || route.access === 'admin') s.add(403);
  if (route.body !== 'none') s.add(400).add(413);
  if (pathParams(route.path).length > 0 || route.query) s.add(400);
  if (route.mutates) s.add(500);
  return [...s].sort((a, b) => a - b);
}

function content(schema: string): Schema {
  return schema === 'text' ? { 'text/plain': { schema: { type: 'string' } } } : { 'application/json': { schema: ref(schema) } };
}

function operation(route: RouteSpec): Schema {
  const op = OPERATIONS[route.id];
  if (!op) throw new Error(`no OpenAPI operation for route ${route.id}`);
  const responses: Record<string, Schema> = {};
  for (const [status, schema, description] of op.answers) responses[String(status)] = { description, content: content(schema) };
  for (const status of errorStatuses(route)) responses[String(status)] = { $ref: `#/components/responses/E${status}` };
  const parameters = [
    ...pathParams(route.path).map((name) => ({
      name,
      in: 'path',
      required: true,
      description: PATH_PARAMS[name].description,
      schema: { type: 'string', pattern: PATH_PARAMS[name].pattern },
    })),
    ...(route.query ?? []).map((q) => ({
      name: q.name,
      in: 'query',
      required: false,
      description: q.description,
      schema: { type: 'string', pattern: q.pattern },
    })),
  ];
  const body =
    route.body === 'none'
      ? {}
      : {
          requestBody: {
            required: true,
            description: `at most ${BODY_LIMITS[route.body]} bytes`,
            content: { [MEDIA[route.body]]: { schema: op.request ? ref(op.request) : { type: 'string', contentMediaType: MEDIA[route.body] } } },
          },
        };
  return {
    operationId: route.id,
    summary: route.summary,
    ...(op.description ? { description: op.description } : {}),
    ...(parameters.length > 0 ? { parameters } : {}),
    ...body,
    responses,
    security: route.access === 'open' ? [] : [{ bearerToken: [] }],
    'x-fwseal-role': route.access,
    'x-fwseal-mutates': route.mutates,
    ...(route.audit ? { 'x-fwseal-audit-action': route.audit } : {}),
  };
}

/** The whole document, built from ROUTES (every route once, nothing else). */
export function openApiDocument(): Schema {
  const paths: Record<string, Record<string, Schema>> = {};
  for (const r of ROUTES) {
    paths[r.path] ??= {};
    paths[r.path][r.method.toLowerCase()] = operation(r);
  }
  const responses = Object.fromEntries(
    Object.entries(ERROR_TEXT).map(([status, description]) => [`E${status}`, { description, content: { 'application/json': { schema: ref('Error') } } }]),
  );
  return {
    openapi: '3.1.0',
    info: {
      title: 'fwseal server API',
      version: API_VERSION,
      description:
        'The HTTP API of fwseal serve (SPEC.md §12.9). Bearer tokens carry a role: viewer (every GET), operator (campaigns, image uploads), admin (trust bundles and revocation lists). /healthz and /metrics need no token.',
    },
    paths,
    components: {
      schemas: SCHEMAS,
      responses,
      securitySchemes: { bearerToken: { type: 'http', scheme: 'bearer', description: 'a token from fwseal token create (or FWSEAL_SERVER_TOKEN)' } },
    },
    security: [{ bearerToken: [] }],
  };
}
