/**
 * The JSON Schemas (2020-12, closed objects as in openapi.ts) of the two API routes the web console
 * reads besides the rest of the API: `GET /api/whoami` and `GET /api/overview` (SPEC.md §12.9 "Web
 * console"). openapi.ts merges them into the document.
 */
type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const int = (description?: string): Schema => ({ type: 'integer', minimum: 0, ...(description ? { description } : {}) });
const num = (description?: string): Schema => ({ type: 'number', ...(description ? { description } : {}) });
const str = (description?: string): Schema => ({ type: 'string', ...(description ? { description } : {}) });
const array = (items: Schema): Schema => ({ type: 'array', items });
function obj(properties: Record<string, Schema>, description?: string): Schema {
  return { type: 'object', ...(description ? { description } : {}), properties, required: Object.keys(properties), additionalProperties: false };
}

const CAMPAIGN_STATES = ['running', 'paused', 'halted', 'aborted', 'completed'];

export const CONSOLE_SCHEMAS: Readonly<Record<string, Schema>> = {
  WhoAmI: obj({
    name: str('the token name (api on an open API)'),
    role: { type: 'string', enum: ['viewer', 'operator', 'admin'] },
    source: { type: 'string', enum: ['api-token', 'api-open'] },
  }),
  OverviewCampaign: obj({
    id: str(),
    group: str(),
    version: str(),
    state: { type: 'string', enum: CAMPAIGN_STATES },
    haltCode: { type: ['integer', 'null'] },
    wave: int('the open wave, 1-based'),
    waves: array(num()),
    waitingFor: { type: ['string', 'null'], enum: ['devices', 'soak', 'operator', null] },
    counts: { type: 'object', additionalProperties: int(), description: 'as in the campaign detail' },
    failureRate: num('(rejected + failed) / (confirmed + rejected + failed)'),
    abortFailureRate: num(),
    updated: int('milliseconds since 1970-01-01T00:00:00Z'),
  }),
  LatencyHistogram: obj({
    metric: str('fwseal_device_verify_seconds or fwseal_server_verify_seconds'),
    stage: { type: ['string', 'null'], description: 'manifest or image (device reports); null for the server' },
    buckets: array(obj({ le: num('upper bound, seconds'), count: num('observations up to le (cumulative)') })),
    count: num(),
    sum: num('seconds'),
  }),
  Overview: obj(
    {
      at: int('when it was read (it is shared for 2 s)'),
      fleet: obj({
        known: int(),
        scanned: int('devices read for the version breakdown (at most 50000)'),
        complete: { type: 'boolean', description: 'false: the versions are those of the first `scanned` devices' },
        online: int(),
        offline: int(),
        versions: array(obj({ version: { type: ['string', 'null'] }, online: int(), offline: int() })),
      }),
      root: obj({
        trustVersion: int('the newest trust bundle the servers publish'),
        revocationVersion: int('the newest revocation list (0: none)'),
        online: int('devices seen within 24 h'),
        enforcing: int('of them, those that acknowledged the newest list'),
        trustVersions: array(obj({ version: { type: ['integer', 'null'] }, devices: int() })),
        revocationVersions: array(obj({ version: { type: ['integer', 'null'] }, devices: int() })),
      }),
      campaigns: obj({
        states: obj(Object.fromEntries(CAMPAIGN_STATES.map((s) => [s, int()]))),
        shown: array(ref('OverviewCampaign')),
      }),
      slis: obj({
        verifications: obj({ pass: num(), reject: num() }, 'fwseal_manifest_verifications (M2)'),
        rejections: array(obj({ code: str(), devices: num() })),
        refusals: array(obj({ code: str(), stage: str(), count: num() })),
        latency: array(ref('LatencyHistogram')),
      }),
    },
    'the console overview: the fleet by version and presence, the root of trust, campaigns (active, then the newest 10 finished), the SLIs of /metrics',
  ),
};
