/**
 * `fwseal campaign ...` and `fwseal trust publish`: the operator CLI over the server's HTTP API
 * (SPEC.md §12.9, §12.13); `fwseal serve` itself is in serve.ts. The API token comes from
 * FWSEAL_SERVER_TOKEN: never a flag, never printed.
 */
import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { codeName } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { FwsealError } from '../errors.js';
import { envelopeKind } from '../inspect.js';
import { type ApiTarget, apiRequest } from '../ota/api-client.js';
import { type DeviceView } from '../ota/campaigns.js';
import { formatEvents, formatRollout, ROLLOUT_FLAGS, ROLLOUT_USAGE, type RolloutDetail, rolloutBody } from './campaign-rules.js';
import { type Command, type Io, int, json, noPositionals, onePositional, type Parsed, readObjectFile, str } from './common.js';
import { serveCmd } from './serve.js';
import { ended, pct, watchCampaign } from './watch-view.js';

const DEFAULT_SERVER = 'http://127.0.0.1:8080';

export const SERVER_FLAGS = { server: { type: 'string' } } as const;
export const SERVER_USAGE = `--server URL defaults to FWSEAL_SERVER, else ${DEFAULT_SERVER}; the token comes from FWSEAL_SERVER_TOKEN.`;

export function target(p: Parsed): ApiTarget {
  const server = str(p, 'server') ?? process.env.FWSEAL_SERVER ?? DEFAULT_SERVER;
  const token = process.env.FWSEAL_SERVER_TOKEN;
  return { server, ...(token ? { token } : {}) };
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    const s = createReadStream(path);
    s.on('data', (c) => h.update(c));
    s.on('error', (e) => reject(new FwsealError('IO', `cannot read image ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`)));
    s.on('end', () => resolve(h.digest('hex')));
  });
}

export type CampaignDetail = RolloutDetail & {
  id: string;
  group: string;
  version: string;
  securityCounter: number;
  state: string;
  /** The verifier's code when the root of trust halted the campaign (SPEC.md §12.13). */
  haltCode: number | null;
  wave: number;
  waves: number[];
  rollout: number;
  abortFailureRate: number;
  failureRate: number;
  counts: Record<string, number>;
  devices: DeviceView[];
};

function parseWaves(text: string | undefined): number[] | undefined {
  if (text === undefined) return undefined;
  const parts = text.split(',');
  if (parts.length > 100 || !parts.every((x) => /^\d{1,3}(\.\d{1,3})?$/.test(x))) throw new FwsealError('USAGE', '--waves must be percentages like 5,25,100');
  return parts.map(Number);
}

export const campaignCreate: Command = {
  name: 'campaign create',
  summary: 'upload an image and start a campaign for a device group on an OTA server',
  usage: `fwseal campaign create --manifest M.cose --image IMAGE --group G [--waves 5,25,100]
    [--abort-failure-rate 0.1] [--block-size N] [--device-timeout D] [--abort-min-devices N]
    [--wave-soak D] [--wave-gate auto|manual] [--server URL] [--json]

Uploads IMAGE (PUT /api/images/<sha256>), then creates the campaign: the server verifies the manifest
against its trust bundle and the image against the manifest (exit 1 with the verifier's code when
they do not verify). Prints the campaign id (the campaign detail with --json).
${ROLLOUT_USAGE}
${SERVER_USAGE}

Examples:
  fwseal campaign create --manifest M.cose --image firmware.bin --group acme-gw --waves 5,25,100
  fwseal campaign create --manifest M.cose --image firmware.bin --group lab --waves 100 --abort-failure-rate 0.05 --json`,
  options: {
    ...SERVER_FLAGS,
    manifest: { type: 'string' },
    image: { type: 'string' },
    group: { type: 'string' },
    waves: { type: 'string' },
    'abort-failure-rate': { type: 'string' },
    'block-size': { type: 'string' },
    ...ROLLOUT_FLAGS,
    json: { type: 'boolean' },
  },
  async run(p, io) {
    noPositionals(p);
    const t = target(p);
    const manifest = readObjectFile(str(p, 'manifest', true), 'manifest');
    const image = str(p, 'image', true);
    const group = str(p, 'group', true);
    const waves = parseWaves(str(p, 'waves'));
    const rules = rolloutBody(p);
    const rateText = str(p, 'abort-failure-rate');
    if (rateText !== undefined && !/^(0(\.\d{1,6})?|1(\.0{1,6})?)$/.test(rateText))
      throw new FwsealError('USAGE', '--abort-failure-rate must be a number from 0 to 1');
    const blockSize = p.values['block-size'] !== undefined ? int(p, 'block-size', LIMITS.minChunkSize, LIMITS.maxBlockBytes) : undefined;
    let size: number;
    try {
      const st = statSync(image);
      if (!st.isFile()) throw new FwsealError('IO', `image ${image} is not a regular file`);
      size = st.size;
    } catch (e) {
      if (e instanceof FwsealError) throw e;
      throw new FwsealError('IO', `cannot open image ${image}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    if (size > LIMITS.maxImageSize) throw new FwsealError('TOO_LARGE', `image of ${size} bytes exceeds ${LIMITS.maxImageSize}`);
    const sha = await sha256File(image);
    await apiRequest(t, 'PUT', `api/images/${sha}`, { file: image, size });
    const detail = await apiRequest<CampaignDetail>(t, 'POST', 'api/campaigns', {
      json: {
        manifest: Buffer.from(manifest).toString('base64'),
        image: sha,
        group,
        ...(waves ? { waves } : {}),
        ...(rateText !== undefined ? { abortFailureRate: Number(rateText) } : {}),
        ...(blockSize !== undefined ? { blockSize } : {}),
        ...rules,
      },
    });
    if (p.values.json) json(io, detail);
    else io.stdout(`${detail.id}\n`);
    return 0;
  },
};

/** The status table of a campaign (what `campaign status` prints; --watch prints watch-view.ts's screen instead). */
export function formatStatus(d: CampaignDetail): string {
  const c = d.counts;
  const lines = [
    `campaign ${d.id}  group ${d.group}  version ${d.version} (counter ${d.securityCounter})`,
    `state ${d.state}  wave ${d.wave}/${d.waves.length} (${d.waves[d.wave - 1]}% of ${d.waves.join(',')})`,
    `devices: known ${c.known}  eligible ${c.eligible}  waiting ${c.waiting}  accepted ${c.accepted}  downloading ${c.downloading}  verifying ${c.verifying}  installed ${c.installed}  confirmed ${c.confirmed}  rejected ${c.rejected}  failed ${c.failed}${ended(c)}`,
    `failure rate ${pct(d.failureRate)} (halts above ${pct(d.abortFailureRate)})`,
    ...formatRollout(d),
  ];
  if (d.haltCode) lines.push(`halted by the root of trust: the manifest fails ${codeName(d.haltCode)} (${d.haltCode}); no longer announced or served`);
  if (d.devices.length > 0) {
    const w = Math.max(6, ...d.devices.map((x) => x.id.length));
    lines.push('', `${'DEVICE'.padEnd(w)}  ${'STATE'.padEnd(11)}  ${'PROGRESS'.padEnd(9)}  ${'TRUST'.padEnd(5)}  ${'RL'.padEnd(5)}  CODE`);
    const v = (n: number | null | undefined) => (n === null || n === undefined ? '-' : String(n)).padEnd(5);
    for (const x of d.devices) {
      const prog = x.total ? `${x.done}/${x.total}` : '';
      const code = x.code ? `${codeName(x.code)} (${x.code})` : '';
      lines.push(`${x.id.padEnd(w)}  ${x.state.padEnd(11)}  ${prog.padEnd(9)}  ${v(x.trustVersion)}  ${v(x.revocationVersion)}  ${code}`.trimEnd());
    }
  }
  lines.push(...formatEvents(d)); // who did what (SPEC.md §12.9 "Campaign events")
  return `${lines.join('\n')}\n`;
}

export const campaignStatus: Command = {
  name: 'campaign status',
  summary: 'show a campaign: state, wave, device counts, failure rate, devices (--watch to follow it)',
  usage: `fwseal campaign status ID [--watch [--retry-for SECONDS]] [--json] [--server URL]

--watch polls every second until the campaign is completed, aborted or halted. On a terminal it
redraws one screen in place that fits the terminal whatever the fleet size: the wave and what it waits
for (devices, soak, operator), a progress bar, the failure rate, the devices counted by state and the
newest changes (device reports and campaign events), as many as the rows allow. Otherwise it appends
one line per change and nothing while nothing changes (with --json, the campaign as one JSON line per
change). Exit status with --watch: 0 completed; 1 halted or aborted (the reason on stderr: the
halt code, or the failure rate and the devices' codes); 2 when the server gave no answer for
--retry-for seconds (default 60; SERVER_UNREACHABLE): a server restart, a reset connection or a
proxy's 502/503/504 is asked again with backoff (0.5 s doubling to 8 s) meanwhile.
Without --watch: exit 0 whatever the state.
${SERVER_USAGE}

Examples:
  fwseal campaign status c-1a2b3c4d --watch
  fwseal campaign status c-1a2b3c4d --json`,
  options: { ...SERVER_FLAGS, watch: { type: 'boolean' }, json: { type: 'boolean' }, 'retry-for': { type: 'string' } },
  async run(p, io) {
    const id = onePositional(p, 'campaign id');
    const t = target(p);
    if (p.values.watch) {
      const output = p.values.json ? 'json' : io.stdoutIsTty ? 'screen' : 'lines';
      return watchCampaign(io, t, id, { output, retryForMs: int(p, 'retry-for', 1, 86_400, 60) * 1000 });
    }
    if (p.values['retry-for'] !== undefined) throw new FwsealError('USAGE', '--retry-for goes with --watch');
    const d = await apiRequest<CampaignDetail>(t, 'GET', `api/campaigns/${encodeURIComponent(id)}`);
    if (p.values.json) json(io, d);
    else io.stdout(formatStatus(d));
    return 0;
  },
};

function transitionCmd(action: 'pause' | 'resume' | 'abort', summary: string): Command {
  return {
    name: `campaign ${action}`,
    summary,
    usage: `fwseal campaign ${action} ID [--server URL] [--json]\n\n${SERVER_USAGE}\n\nExamples:\n  fwseal campaign ${action} c-1a2b3c4d\n  fwseal campaign ${action} c-1a2b3c4d --server https://ota.example:8443 --json`,
    options: { ...SERVER_FLAGS, json: { type: 'boolean' } },
    async run(p, io: Io) {
      const id = onePositional(p, 'campaign id');
      const d = await apiRequest<CampaignDetail>(target(p), 'POST', `api/campaigns/${encodeURIComponent(id)}/${action}`);
      if (p.values.json) json(io, d);
      else io.stdout(`${d.id} ${d.state}\n`);
      return 0;
    },
  };
}

export const campaignPause = transitionCmd('pause', 'pause a campaign (devices stop asking; requests get CAMPAIGN_INACTIVE)');
export const campaignResume = transitionCmd('resume', 'resume a paused or halted campaign');
export const campaignAbort = transitionCmd('abort', 'abort a campaign (clears its announcement; requests get UNKNOWN_CAMPAIGN)');

/** What `POST /api/root` answers (SPEC.md §12.13). */
export type RootPublished = { kind: string; version: number; changed: boolean; halted: { id: string; code: number }[] };

/** Upload a signed trust bundle or revocation list (POST /api/root). Refused: the verifier's code (exit 1). */
export function publishRoot(t: ApiTarget, envelope: Uint8Array): Promise<RootPublished> {
  return apiRequest<RootPublished>(t, 'POST', 'api/root', { bytes: envelope });
}

/** What the server did with a published object, for people. */
export function formatPublished(r: RootPublished): string {
  const what = `${r.kind.replace('-', ' ')} version ${r.version}`;
  const lines = [r.changed ? `published ${what}` : `${what} was already published; nothing changed`];
  for (const h of r.halted) lines.push(`halted campaign ${h.id}: ${codeName(h.code)} (${h.code})`);
  return `${lines.join('\n')}\n`;
}

export const trustPublish: Command = {
  name: 'trust publish',
  summary: 'publish a trust bundle or revocation list to the fleet through an OTA server',
  usage: `fwseal trust publish FILE [--server URL] [--json]

FILE is a signed trust bundle (the next version) or revocation list. The server verifies it against
the fleet's root of trust as a device would, stores it, announces it to every device (retained on
<prefix>/root) and halts every campaign whose manifest no longer verifies. An older list or bundle,
or another one of the same version, is refused (REVOCATION_ROLLBACK / TRUST_ROLLBACK, exit 1).
${SERVER_USAGE}

Examples:
  fwseal trust publish trust2.cbor --server https://ota.example:8443
  fwseal trust publish RL2.cbor`,
  options: { ...SERVER_FLAGS, json: { type: 'boolean' } },
  async run(p, io) {
    const file = onePositional(p, 'trust bundle or revocation list');
    const bytes = readObjectFile(file, null);
    const r = await publishRoot(target(p), bytes);
    io.audit?.({ action: 'trust publish', kind: envelopeKind(bytes) ?? 'unknown', file, result: r.changed ? 'ok' : 'unchanged' });
    if (p.values.json) json(io, r);
    else io.stdout(formatPublished(r));
    return 0;
  },
};

export const OTA_COMMANDS: readonly Command[] = [serveCmd, campaignCreate, campaignStatus, campaignPause, campaignResume, campaignAbort, trustPublish];
