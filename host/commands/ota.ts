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
import { type ApiTarget, apiGetRetrying, apiRequest } from '../ota/api-client.js';
import { type DeviceView } from '../ota/campaigns.js';
import { formatEvents, formatRollout, ROLLOUT_FLAGS, ROLLOUT_USAGE, type RolloutDetail, rolloutBody } from './campaign-rules.js';
import { type Command, type Io, int, json, noPositionals, onePositional, type Parsed, readObjectFile, str } from './common.js';
import { serveCmd } from './serve.js';

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
${SERVER_USAGE}`,
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

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** The status table of a campaign (what `campaign status` prints). */
export function formatStatus(d: CampaignDetail, bar?: number): string {
  const c = d.counts;
  const lines = [
    `campaign ${d.id}  group ${d.group}  version ${d.version} (counter ${d.securityCounter})`,
    `state ${d.state}  wave ${d.wave}/${d.waves.length} (${d.waves[d.wave - 1]}% of ${d.waves.join(',')})`,
    `devices: known ${c.known}  eligible ${c.eligible}  waiting ${c.waiting}  accepted ${c.accepted}  downloading ${c.downloading}  verifying ${c.verifying}  installed ${c.installed}  confirmed ${c.confirmed}  rejected ${c.rejected}  failed ${c.failed}${ended(c)}`,
    `failure rate ${pct(d.failureRate)} (halts above ${pct(d.abortFailureRate)})`,
    ...formatRollout(d),
  ];
  if (d.haltCode) lines.push(`halted by the root of trust: the manifest fails ${codeName(d.haltCode)} (${d.haltCode}); no longer announced or served`);
  if (bar !== undefined) {
    const done = c.confirmed + c.rejected + c.failed + (c['timed-out'] ?? 0) + (c.excluded ?? 0);
    const all = Math.max(c.known, done, 1);
    const fill = Math.round((done / all) * 30);
    lines.push(`[${'#'.repeat(fill)}${'.'.repeat(30 - fill)}] ${done}/${all} devices done`);
  }
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

/** The server's own end states (SPEC.md §12.9 "Rollouts that finish"), when the server reports them. */
const ended = (c: Record<string, number>) => (c['timed-out'] === undefined ? '' : `  timed-out ${c['timed-out']}  excluded ${c.excluded}`);

function changeLine(d: CampaignDetail): string {
  const c = d.counts;
  return `${d.id} ${d.state} wave ${d.wave}/${d.waves.length} eligible ${c.eligible} downloading ${c.downloading} confirmed ${c.confirmed} rejected ${c.rejected} failed ${c.failed}${ended(c)} failure-rate ${pct(d.failureRate)}\n`;
}

const FINAL = new Set(['completed', 'aborted', 'halted']);

/** Why a watched campaign ended without completing (one stderr line): the halt code, or the failure rate and the devices' codes. */
export function endReason(d: CampaignDetail): string {
  if (d.state !== 'halted') return `campaign ${d.id} ${d.state}`;
  if (d.haltCode) return `campaign ${d.id} halted by the root of trust: ${codeName(d.haltCode)} (code ${d.haltCode})`;
  const codes = new Map<number, number>();
  for (const x of d.devices) if (x.code) codes.set(x.code, (codes.get(x.code) ?? 0) + 1);
  const named = [...codes].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${codeName(c)} (code ${c}) x${n}`);
  return `campaign ${d.id} halted: failure rate ${pct(d.failureRate)} above ${pct(d.abortFailureRate)}${named.length ? `; device codes: ${named.join(', ')}` : ''}`;
}

/**
 * `--watch`: poll until a final state; exit 0 only for completed, 1 for halted or aborted (SPEC.md
 * §12.9). A server that does not answer (restart, reset, a proxy's 502/503/504) is asked again with
 * backoff for --retry-for seconds since its last answer, then SERVER_UNREACHABLE (exit 2).
 */
async function watchCampaign(p: Parsed, io: Io, t: ApiTarget, id: string): Promise<number> {
  const retryFor = int(p, 'retry-for', 1, 86_400, 60);
  const tty = !p.values.json && !!io.stdoutIsTty;
  const onRetry = (e: FwsealError, attempt: number, ms: number) =>
    io.stderr(`fwseal campaign status: ${e.codeName} (code ${e.code}); asking again in ${(ms / 1000).toFixed(1)} s (attempt ${attempt + 1})\n`);
  let last = '';
  for (;;) {
    const d = await apiGetRetrying<CampaignDetail>(t, `api/campaigns/${encodeURIComponent(id)}`, { giveUpMs: retryFor * 1000, onRetry });
    const text = p.values.json ? `${JSON.stringify(d)}\n` : tty ? formatStatus(d, 1) : changeLine(d);
    if (text !== last) io.stdout(tty ? `\x1b[H\x1b[2J${text}` : text);
    last = text;
    if (d.state === 'completed') return 0;
    if (FINAL.has(d.state)) {
      io.stderr(`fwseal campaign status: ${endReason(d)}\n`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

export const campaignStatus: Command = {
  name: 'campaign status',
  summary: 'show a campaign: state, wave, device counts, failure rate, devices (--watch to follow it)',
  usage: `fwseal campaign status ID [--watch [--retry-for SECONDS]] [--json] [--server URL]

--watch polls every second until the campaign is completed, aborted or halted: on a terminal it
redraws the table with a progress bar, otherwise it prints one line per change (with --json, the
campaign as one JSON line per change). Exit status with --watch: 0 completed; 1 halted or aborted
(the reason on stderr: the halt code, or the failure rate and the devices' codes); 2 when the server
gave no answer for --retry-for seconds (default 60; SERVER_UNREACHABLE): a server restart, a reset
connection or a proxy's 502/503/504 is asked again with backoff (0.5 s doubling to 8 s) meanwhile.
Without --watch: exit 0 whatever the state.
${SERVER_USAGE}`,
  options: { ...SERVER_FLAGS, watch: { type: 'boolean' }, json: { type: 'boolean' }, 'retry-for': { type: 'string' } },
  async run(p, io) {
    const id = onePositional(p, 'campaign id');
    const t = target(p);
    if (p.values.watch) return watchCampaign(p, io, t, id);
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
    usage: `fwseal campaign ${action} ID [--server URL] [--json]\n\n${SERVER_USAGE}`,
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
${SERVER_USAGE}`,
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
