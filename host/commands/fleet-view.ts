/**
 * The fleet view and the rollout controls on the command line (SPEC.md §12.9 "Fleet view", "Rollouts
 * that finish"), over the server's HTTP API: `fwseal devices list`, `fwseal devices show`, `fwseal
 * campaign list`, `fwseal campaign next` and `fwseal campaign exclude`.
 */
import { codeName } from '../../shared/codes.js';
import { FwsealError } from '../errors.js';
import { allDevices, apiRequest } from '../ota/api-client.js';
import { type Command, json, noPositionals, onePositional, type Parsed, str } from './common.js';
import { type CampaignDetail, SERVER_FLAGS, SERVER_USAGE, target } from './ota.js';

/** A device of GET /api/devices (host/ota/http-fleet.ts); null: never reported. */
export type FleetDevice = {
  id: string;
  group: string;
  version: string | null;
  counter: number | null;
  lastSeen: number;
  trustVersion: number | null;
  revocationVersion: number | null;
  revocationSha256: string | null;
  online: boolean;
  lastError: { code: number; campaign: string | null } | null;
};
export type DeviceHistory = FleetDevice & {
  campaigns: { campaign: string; group: string; version: string; campaignState: string; state: string; code: number | null; updated: number }[];
};
type CampaignSummary = { id: string; group: string; version: string; state: string; wave: number; waves: number[]; created: number };

/** A field that came from a device or a tokens file, printed without its control characters. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
const shown = (s: string | null | undefined) => (s ?? '-').replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
const time = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z') : '-');
const errorText = (e: FleetDevice['lastError']) => (e ? `${codeName(e.code)} (${e.code})${e.campaign ? ` in ${e.campaign}` : ''}` : '');

/** Columns padded to their widest cell; the last column is not padded. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

function deviceFilters(p: Parsed): URLSearchParams {
  const q = new URLSearchParams();
  for (const k of ['group', 'version', 'state'] as const) {
    const v = str(p, k);
    if (v !== undefined) q.set(k, v);
  }
  const state = q.get('state');
  if (state !== null && state !== 'online' && state !== 'offline') throw new FwsealError('USAGE', '--state must be online or offline');
  return q;
}

export const devicesList: Command = {
  name: 'devices list',
  summary: 'list the devices an OTA server knows: installed version, online, last seen, last error',
  usage: `fwseal devices list [--group G] [--version V] [--state online|offline] [--server URL] [--json]

Every device the server knows (GET /api/devices, all pages), ordered by id: its group, the version
and security counter it runs (as its last online report or its last confirmed campaign says), whether
it is online (no MQTT last will since it was last heard, within 24 h), when it was last heard, the
trust bundle and revocation list versions it acknowledged, and its last error (code and campaign).
--json prints {devices: [...]}.
${SERVER_USAGE}

Examples:
  fwseal devices list --group acme-gw --state online
  fwseal devices list --server https://ota.example:8443 --json`,
  options: { ...SERVER_FLAGS, group: { type: 'string' }, version: { type: 'string' }, state: { type: 'string' }, json: { type: 'boolean' } },
  async run(p, io) {
    noPositionals(p);
    const devices = await allDevices<FleetDevice>(target(p), deviceFilters(p));
    if (p.values.json) json(io, { devices });
    else if (devices.length === 0) io.stdout('no devices\n');
    else
      io.stdout(
        table(
          ['DEVICE', 'GROUP', 'VERSION', 'COUNTER', 'ONLINE', 'LAST SEEN', 'TRUST', 'RL', 'LAST ERROR'],
          devices.map((d) => [
            shown(d.id),
            shown(d.group),
            shown(d.version),
            d.counter === null ? '-' : String(d.counter),
            d.online ? 'online' : 'offline',
            time(d.lastSeen),
            d.trustVersion === null ? '-' : String(d.trustVersion),
            d.revocationVersion === null ? '-' : String(d.revocationVersion),
            errorText(d.lastError),
          ]),
        ),
      );
    return 0;
  },
};

export const devicesShow: Command = {
  name: 'devices show',
  summary: 'show one device of an OTA server and every campaign it took part in',
  usage: `fwseal devices show ID [--server URL] [--json]

The device as devices list shows it, then each campaign it took part in, oldest first: the
campaign's version and state, the device's state in it, its code and when it last changed.
An unknown device: NOT_FOUND (exit 2).
${SERVER_USAGE}

Examples:
  fwseal devices show gw-0001`,
  options: { ...SERVER_FLAGS, json: { type: 'boolean' } },
  async run(p, io) {
    const id = onePositional(p, 'device id');
    const d = await apiRequest<DeviceHistory>(target(p), 'GET', `api/devices/${encodeURIComponent(id)}`);
    if (p.values.json) {
      json(io, d);
      return 0;
    }
    const lines = [
      `device ${shown(d.id)}  group ${shown(d.group)}  ${d.online ? 'online' : 'offline'}, last seen ${time(d.lastSeen)}`,
      `runs ${shown(d.version)} (counter ${d.counter ?? '-'})  trust ${d.trustVersion ?? '-'}  revocations ${d.revocationVersion ?? '-'}`,
    ];
    if (d.lastError) lines.push(`last error ${errorText(d.lastError)}`);
    io.stdout(`${lines.join('\n')}\n`);
    if (d.campaigns.length === 0) io.stdout('no campaigns\n');
    else
      io.stdout(
        `\n${table(
          ['CAMPAIGN', 'VERSION', 'CAMPAIGN STATE', 'DEVICE STATE', 'UPDATED', 'CODE'],
          d.campaigns.map((c) => [c.campaign, shown(c.version), c.campaignState, c.state, time(c.updated), c.code ? `${codeName(c.code)} (${c.code})` : '']),
        )}`,
      );
    return 0;
  },
};

const CAMPAIGN_STATES = ['running', 'paused', 'halted', 'completed', 'aborted'];

export const campaignList: Command = {
  name: 'campaign list',
  summary: 'list the campaigns of an OTA server, oldest first',
  usage: `fwseal campaign list [--state running|paused|halted|completed|aborted] [--server URL] [--json]

--json prints {campaigns: [...]}, each as GET /api/campaigns lists it.
${SERVER_USAGE}

Examples:
  fwseal campaign list --state running`,
  options: { ...SERVER_FLAGS, state: { type: 'string' }, json: { type: 'boolean' } },
  async run(p, io) {
    noPositionals(p);
    const state = str(p, 'state');
    if (state !== undefined && !CAMPAIGN_STATES.includes(state)) throw new FwsealError('USAGE', `--state must be one of ${CAMPAIGN_STATES.join(', ')}`);
    const r = await apiRequest<{ campaigns: CampaignSummary[] }>(target(p), 'GET', `api/campaigns${state ? `?state=${state}` : ''}`);
    if (p.values.json) json(io, r);
    else if (r.campaigns.length === 0) io.stdout('no campaigns\n');
    else
      io.stdout(
        table(
          ['CAMPAIGN', 'GROUP', 'VERSION', 'STATE', 'WAVE', 'CREATED'],
          r.campaigns.map((c) => [c.id, c.group, shown(c.version), c.state, `${c.wave}/${c.waves.length}`, time(c.created)]),
        ),
      );
    return 0;
  },
};

export const campaignNext: Command = {
  name: 'campaign next',
  summary: 'let the next wave of a campaign with --wave-gate manual open',
  usage: `fwseal campaign next ID [--server URL] [--json]

The open wave must be done (every device at an end state): its successor opens now, or when the
wave's soak (--wave-soak) is over. CONFLICT (exit 2) when the campaign is not running, has no manual
gate, has its last wave open, or its open wave is not done yet.
${SERVER_USAGE}

Examples:
  fwseal campaign next c-1a2b3c4d`,
  options: { ...SERVER_FLAGS, json: { type: 'boolean' } },
  async run(p, io) {
    const id = onePositional(p, 'campaign id');
    const d = await apiRequest<CampaignDetail>(target(p), 'POST', `api/campaigns/${encodeURIComponent(id)}/next`);
    if (p.values.json) json(io, d);
    else io.stdout(`${d.id} ${d.state} wave ${d.wave}/${d.waves.length}${d.waitingFor === 'soak' ? ' (next wave after the soak)' : ''}\n`);
    return 0;
  },
};

export const campaignExclude: Command = {
  name: 'campaign exclude',
  summary: 'take a device out of a campaign (excluded: not counted, never served the campaign again)',
  usage: `fwseal campaign exclude ID DEVICE [--server URL] [--json]

The device's state in the campaign becomes excluded: it counts neither toward the failure rate nor
as waiting, the open wave no longer waits for it, and its requests for the campaign are answered
CAMPAIGN_INACTIVE. NOT_FOUND (exit 2) for an unknown campaign or a device not known in its group,
CONFLICT for an aborted campaign or a device excluded already.
${SERVER_USAGE}

Examples:
  fwseal campaign exclude c-1a2b3c4d gw-0042`,
  options: { ...SERVER_FLAGS, json: { type: 'boolean' } },
  async run(p, io) {
    if (p.positionals.length !== 2) throw new FwsealError('USAGE', `expected a campaign id and a device id, got ${p.positionals.length} arguments`);
    const [id, device] = p.positionals;
    const d = await apiRequest<CampaignDetail>(target(p), 'POST', `api/campaigns/${encodeURIComponent(id)}/exclude`, { json: { device } });
    if (p.values.json) json(io, d);
    else io.stdout(`${d.id} ${d.state}: ${shown(device)} excluded\n`);
    return 0;
  },
};

/** The commands of this file, for host/cli.ts's COMMANDS. */
export const FLEET_VIEW_COMMANDS: readonly Command[] = [devicesList, devicesShow, campaignList, campaignNext, campaignExclude];
