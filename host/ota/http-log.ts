/**
 * The transparency log over the HTTP API (SPEC.md §16): `fwseal serve --log DIR` serves its
 * newest checkpoint (the C2SP note, text/plain), inclusion proofs by the SHA-256 of the object (the
 * bundle `fwseal log prove` writes), consistency proofs from a size, and the entries, paged. Viewer
 * role, as every GET. Handlers of the route table (routes.ts), spread into http.ts's dispatch;
 * their OpenAPI operations and schemas are here too (openapi.ts spreads them).
 */
import { ENTRIES_PAGE_MAX, type ServedLog } from '../tlog/served.js';
import { ApiError } from './campaigns.js';
import { type RouteAnswer, type RouteCall, type RouteHandler } from './http.js';
import { type QueryParam } from './routes.js';

const ok = (body: unknown): RouteAnswer => ({ status: 200, body });

export const LOG_QUERIES: Readonly<Record<string, readonly QueryParam[]>> = Object.freeze({
  proof: [{ name: 'entry', pattern: '^[0-9a-f]{64}$', description: 'SHA-256 of the logged object (a manifest envelope), lowercase hex' }],
  consistency: [{ name: 'from', pattern: '^\\d{1,15}$', description: 'the tree size of the checkpoint the caller saw' }],
  entries: [
    { name: 'start', pattern: '^\\d{1,15}$', description: 'the first entry index; default 0' },
    {
      name: 'count',
      pattern: '^\\d{1,15}$',
      description: `at most this many entries, 1 to ${ENTRIES_PAGE_MAX} (fewer past 4 MiB of objects); default ${ENTRIES_PAGE_MAX}`,
    },
  ],
});

function servedLog(c: RouteCall): ServedLog {
  const log = c.server.tlog;
  if (!log) throw new ApiError(404, 'NOT_FOUND', 'this server hosts no transparency log (fwseal serve --log)');
  return log;
}

/** The query, checked against the route's parameters: unknown ones and malformed values are 400. */
function query(c: RouteCall, params: readonly QueryParam[], required: readonly string[] = []): Record<string, string | undefined> {
  const q = c.url.searchParams;
  const out: Record<string, string | undefined> = {};
  for (const k of q.keys()) if (!params.some((p) => p.name === k)) throw new ApiError(400, 'UNKNOWN_KEY', `unknown query parameter ${k}`);
  for (const p of params) {
    const v = q.get(p.name) ?? undefined;
    if (v === undefined && required.includes(p.name)) throw new ApiError(400, 'MISSING_FIELD', `${p.name} is required`);
    if (v !== undefined && !new RegExp(p.pattern).test(v)) throw new ApiError(400, 'BAD_VALUE', `${p.name} must match ${p.pattern}`);
    out[p.name] = v;
  }
  return out;
}

export function logHandlers(): Record<string, RouteHandler> {
  return {
    getLog: async (c) => {
      const log = servedLog(c);
      const { origin, logKey, keyId } = log.config;
      return ok({ origin, logKey: { keyId, publicKey: Buffer.from(logKey.publicKey).toString('base64') }, size: log.entries(0, 0).size });
    },
    getLogCheckpoint: async (c) => ok(servedLog(c).checkpointNote()),
    getLogProof: async (c) => ok(servedLog(c).proof(query(c, LOG_QUERIES.proof, ['entry']).entry as string)),
    getLogConsistency: async (c) => ok(servedLog(c).consistency(Number(query(c, LOG_QUERIES.consistency, ['from']).from))),
    getLogEntries: async (c) => {
      const q = query(c, LOG_QUERIES.entries);
      const count = Number(q.count ?? ENTRIES_PAGE_MAX);
      if (count < 1 || count > ENTRIES_PAGE_MAX) throw new ApiError(400, 'BAD_VALUE', `count must be 1 to ${ENTRIES_PAGE_MAX}`);
      const start = Number(q.start ?? 0);
      return ok({ start, ...servedLog(c).entries(start, count) });
    },
  };
}

type Schema = Record<string, unknown>;
const closed = (properties: Record<string, Schema>): Schema => ({
  type: 'object',
  properties,
  required: Object.keys(properties),
  additionalProperties: false,
});
const HEX: Schema = { type: 'string', pattern: '^([0-9a-f]{2})*$' };
const HEX32: Schema = { type: 'string', pattern: '^[0-9a-f]{64}$' };
const SIZE: Schema = { type: 'integer', minimum: 0 };
const NOTE: Schema = { type: 'string', description: 'the newest signed checkpoint (C2SP tlog-checkpoint note)' };

/** The JSON shapes of the log's answers (SPEC.md §16.4), for openapi.ts. */
export const LOG_SCHEMAS: Readonly<Record<string, Schema>> = Object.freeze({
  LogInfo: closed({ origin: { type: 'string' }, logKey: closed({ keyId: HEX, publicKey: { type: 'string', description: 'Ed25519, base64' } }), size: SIZE }),
  LogInclusion: closed({
    type: { const: 'fwseal-log-inclusion' },
    version: { const: 1 },
    index: SIZE,
    size: SIZE,
    leafHash: HEX32,
    proof: { type: 'array', items: HEX32 },
    checkpoint: NOTE,
  }),
  LogConsistency: closed({
    type: { const: 'fwseal-log-consistency' },
    version: { const: 1 },
    oldSize: SIZE,
    newSize: SIZE,
    proof: { type: 'array', items: HEX32 },
    checkpoint: NOTE,
  }),
  LogEntries: closed({
    start: SIZE,
    size: { ...SIZE, description: 'entries in the log now' },
    entries: { type: 'array', items: closed({ index: SIZE, leafHash: HEX32, object: { type: 'string', description: 'the signed object, base64' } }) },
  }),
});

type Answer = readonly [status: number, schema: string, description: string];
/** The OpenAPI operations of the log's routes, for openapi.ts. Without --log every one is 404. */
export const LOG_OPERATIONS: Readonly<Record<string, { answers: readonly Answer[]; errors: readonly number[]; description?: string }>> = Object.freeze({
  getLog: { answers: [[200, 'LogInfo', 'the log origin, its log key and its size']], errors: [404] },
  getLogCheckpoint: { answers: [[200, 'text', 'the newest signed checkpoint (C2SP signed note)']], errors: [404] },
  getLogProof: {
    answers: [[200, 'LogInclusion', 'the inclusion proof of the entry in the newest checkpoint, with that checkpoint']],
    errors: [404],
    description: '404: no such entry, or not in a signed checkpoint yet.',
  },
  getLogConsistency: { answers: [[200, 'LogConsistency', 'the consistency proof from that size to the newest checkpoint']], errors: [404] },
  getLogEntries: { answers: [[200, 'LogEntries', 'one page of entries, each checked against its leaf hash']], errors: [404] },
});
