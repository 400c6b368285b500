/**
 * The server's structured log (SPEC.md §12.9 "Logs"): a real `fwseal serve` child process against
 * mosquitto. With `--log-format json` every stderr line is one JSON event (time, level, event, msg);
 * each operator call on a campaign logs one `campaign.transition` naming the API token that made it;
 * a halt by the failure-rate rule logs the reason, the rate and the devices' codes. The default text
 * format is one readable line per event. The logger itself (host/ota/log.ts) is checked in-process.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asServerLog, captureLog, createServerLog, logTransition, logWaveStep, textLine } from '../host/ota/log.js';
import { type CampaignRow, type OtaStore } from '../host/ota/store.js';
import { createToken } from '../host/ota/tokens.js';
import { CODES } from '../shared/codes.js';
import { runCli } from './support/cli-run.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually, RawDevice } from './support/ota-client.js';
import { type ServeChild, startServeChild } from './support/serve-child.js';

const w = standardWorld();
const image = detBytes(20_000, 'serve logs image');
const manifest = makeManifestEnvelope(makeManifest(image, { chunkSize: 1024 }), [w.R1, w.R2]);
const ISO_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const LEVELS = ['debug', 'info', 'warn', 'error'];

let broker: Mosquitto;
let dir: string;
const cleanups: (() => Promise<unknown> | unknown)[] = [];
const codeIn = (text: string) => Number(text.match(/\(code (\d+)\)/)?.[1]);

type Event = Record<string, unknown>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fwseal-serve-logs-'));
  writeFileSync(join(dir, 'trust.cbor'), w.trust);
  writeFileSync(join(dir, 'fw.cose'), manifest);
  writeFileSync(join(dir, 'fw.bin'), image);
  broker = await startMosquitto({ persistence: false });
});

afterAll(async () => {
  while (cleanups.length) await cleanups.pop()!();
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** `fwseal serve` as a child process (test/support/serve-child.ts); resolves once it printed its HTTP address. */
function startServe(data: string, extra: readonly string[]): Promise<ServeChild> {
  const args = ['--broker', broker.url, '--data', data, '--trust', join(dir, 'trust.cbor'), '--http', '127.0.0.1:0', '--tick-ms', '100', ...extra];
  return startServeChild(args, { cleanups });
}

/** The complete lines written so far (a line still being written is left out). */
const lines = (text: string) => text.split('\n').slice(0, -1);

describe('fwseal serve --log-format json', () => {
  let serve: ServeChild;
  let token: string;
  const events = () => lines(serve.err()).map((l) => JSON.parse(l) as Event);
  const transitions = (id: string) => events().filter((e) => e.event === 'campaign.transition' && e.campaign === id);

  /** `fwseal ARGS --server URL` in-process, with the operator token of the tokens file. */
  async function cli(...argv: string[]) {
    process.env.FWSEAL_SERVER_TOKEN = token;
    try {
      return await runCli([...argv, '--server', serve.url]);
    } finally {
      delete process.env.FWSEAL_SERVER_TOKEN;
    }
  }

  /** `devices` devices of `group`, known to the server from their `online`, and a campaign for the group (one 100% wave). */
  async function campaignFor(group: string, devices: number, extra: string[] = []): Promise<{ id: string; d: RawDevice[] }> {
    const d: RawDevice[] = [];
    for (let i = 0; i < devices; i++) {
      const dev = await RawDevice.connect(broker.url, `${group}-${i}`);
      cleanups.push(() => dev.close());
      await dev.online(group);
      d.push(dev);
    }
    await eventually(async () => {
      const r = await fetch(`${serve.url}/api/devices`, { headers: { authorization: `Bearer ${token}` } });
      const text = await r.text();
      return d.every((x) => text.includes(`"${x.id}"`));
    }, 20_000);
    const c = await cli('campaign', 'create', '--manifest', join(dir, 'fw.cose'), '--image', join(dir, 'fw.bin'), '--group', group, '--waves', '100', ...extra);
    expect(c.status, c.err).toBe(0);
    return { id: c.out.trim(), d };
  }

  beforeAll(async () => {
    // A named operator token: the actor the log names for its calls (SPEC.md §15.6).
    const tokens = join(dir, 'tokens.json');
    token = createToken(tokens, 'ops-alice', 'operator').token;
    serve = await startServe(join(dir, 'json-data'), ['--log-format', 'json', '--tokens', tokens]);
  });

  it('logs create, pause, resume and abort as one campaign.transition each, naming the token that asked', async () => {
    const { id } = await campaignFor('g-ops', 1);
    for (const action of ['pause', 'resume', 'abort']) expect((await cli('campaign', action, id)).status).toBe(0);
    const seen = await eventually(() => transitions(id).length >= 4 && transitions(id), 20_000, 'four transitions');
    expect(seen.map((e) => [e.action, e.from, e.to, e.reason, e.actor])).toEqual([
      ['create', null, 'running', 'operator', 'ops-alice'],
      ['pause', 'running', 'paused', 'operator', 'ops-alice'],
      ['resume', 'paused', 'running', 'operator', 'ops-alice'],
      ['abort', 'running', 'aborted', 'operator', 'ops-alice'],
    ]);
    expect(seen.every((e) => e.level === 'info' && e.group === 'g-ops' && e.component === 'campaigns')).toBe(true);
  });

  it('logs a halt by the failure-rate rule with its reason, the rate and the devices\u2019 codes', async () => {
    const { id, d } = await campaignFor('g-halt', 2, ['--abort-failure-rate', '0.4']);
    for (const [i, dev] of d.entries()) await dev.manifest(id, i + 1); // a status counts only from a device served the manifest (§12.9)
    await d[0].status({ campaign: id, device: d[0].id, state: 'confirmed' });
    await eventually(async () => JSON.parse((await cli('campaign', 'status', id, '--json')).out).counts.confirmed === 1, 20_000, 'confirmed');
    await d[1].status({ campaign: id, device: d[1].id, state: 'failed', code: CODES.MERKLE_ROOT_MISMATCH });
    const halt = await eventually(() => transitions(id).find((e) => e.to === 'halted'), 20_000, 'the halt');
    expect(halt).toMatchObject({ level: 'warn', from: 'running', reason: 'failure-rate', actor: 'server', failureRate: 0.5, abortFailureRate: 0.4 });
    expect(halt.codes).toEqual([{ code: CODES.MERKLE_ROOT_MISMATCH, name: 'MERKLE_ROOT_MISMATCH', count: 1 }]);
  });

  it('writes nothing but JSON events on stderr, from start to stop', async () => {
    expect(await serve.stop()).toBe(0);
    const all = events(); // throws on a line that is not JSON
    expect(all.length).toBeGreaterThan(0);
    for (const e of all) {
      expect(e.time, JSON.stringify(e)).toMatch(ISO_TIME);
      expect(LEVELS).toContain(e.level);
      expect([typeof e.event, typeof e.msg], JSON.stringify(e)).toEqual(['string', 'string']);
    }
    const names = all.map((e) => e.event);
    expect(names).toContain('mqtt.subscribed');
    expect(names.filter((n) => n === 'serve.started')).toHaveLength(1);
    expect(names.at(-1)).toBe('serve.stopped');
    expect(serve.err()).not.toContain(token);
  });
});

describe('fwseal serve, text log (the default)', () => {
  it('writes one readable line per event: ISO time, level, event, message', async () => {
    const serve = await startServe(join(dir, 'text-data'), []);
    expect(await serve.stop()).toBe(0);
    const text = lines(serve.err());
    for (const l of text) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO |WARN |ERROR)( \[[a-z-]+\])? [a-z-]+\.[a-z.-]+: /);
    const started = text.filter((l) => / serve\.started: /.test(l));
    expect(started).toHaveLength(1);
    expect(started[0]).toMatch(/ url=http:\/\/127\.0\.0\.1:\d+ /);
    expect(text.filter((l) => /\[mqtt\] mqtt\.subscribed: /.test(l))).toHaveLength(1);
    expect(text.at(-1)).toMatch(/ INFO {2}serve\.stopped: stopped$/);
  });

  it('refuses an unknown --log-format or --log-level with USAGE before connecting', async () => {
    for (const flag of [
      ['--log-format', 'xml'],
      ['--log-level', 'trace'],
    ]) {
      const r = await runCli(['serve', '--broker', 'mqtt://127.0.0.1:1', '--data', join(dir, 'never'), ...flag]);
      expect([r.status, codeIn(r.err)]).toEqual([2, CODES.USAGE]);
    }
  });
});

describe('the logger (host/ota/log.ts)', () => {
  it('writes JSON lines with an ISO time, the level by name, the component, the event and its fields', () => {
    const c = captureLog();
    c.log.child('campaigns').info('campaign.wave', { campaign: 'c1', wave: 2 }, 'wave 2 open');
    expect(c.lines).toHaveLength(1);
    expect(c.lines[0].endsWith('\n')).toBe(true);
    expect(c.events()[0]).toMatchObject({ level: 'info', component: 'campaigns', event: 'campaign.wave', campaign: 'c1', wave: 2, msg: 'wave 2 open' });
    expect(c.events()[0].time).toMatch(ISO_TIME);
  });

  it('leaves out events below the level', () => {
    const lines: string[] = [];
    const log = createServerLog({ format: 'json', level: 'warn', write: (l) => lines.push(l) });
    log.debug('a.debug', {}, 'no');
    log.info('a.info', {}, 'no');
    log.warn('a.warn', {}, 'yes');
    log.error('a.error', {}, 'yes');
    expect(lines.map((l) => JSON.parse(l).event)).toEqual(['a.warn', 'a.error']);
  });

  it('never lets a field rename the event', () => {
    const c = captureLog();
    c.log.info('real.event', { event: 'forged.event' }, 'm');
    expect(c.events()[0].event).toBe('real.event');
  });

  it('keeps a text event on one line and escapes control characters (no terminal escapes from a logged value)', () => {
    const lines: string[] = [];
    const log = createServerLog({ write: (l) => lines.push(l) });
    log.error('request.failed', { topic: 'a b', error: 'bad\n\u001b[31mred' }, 'line one\nline two\u0007');
    expect(lines).toHaveLength(1);
    const [line] = lines;
    const controls = [...line.slice(0, -1)].map((c) => c.charCodeAt(0)).filter((n) => n < 0x20 || (n >= 0x7f && n <= 0x9f));
    expect(controls).toEqual([]);
    expect(line).toContain(' ERROR request.failed: line one\\u000aline two\\u0007 | topic="a b" error="bad\\n\\u001b[31mred"');
  });

  it('renders a campaign transition as text with its fields; a halt is a warning', () => {
    const lines: string[] = [];
    const log = createServerLog({ write: (l) => lines.push(l) }).child('campaigns');
    logTransition(log, { campaign: 'c1', group: 'g', from: 'running', to: 'halted', reason: 'failure-rate', actor: 'server' }, { failureRate: 0.5 });
    expect(lines[0]).toMatch(
      / WARN {2}\[campaigns\] campaign\.transition: campaign c1 running -> halted \(failure-rate, server\) \| campaign=c1 group=g from=running to=halted reason=failure-rate actor=server failureRate=0\.5\n$/,
    );
  });

  it('logs a wave step that opened a wave, and nothing for a step that changed neither wave nor rollout', async () => {
    const c = captureLog();
    const row = { id: 'c1', grp: 'g', state: 'running', wave: 0, waves: '[5,25,100]', rollout: 10 } as unknown as CampaignRow;
    const noStore = {} as OtaStore; // a wave step that is not a halt reads nothing
    await logWaveStep(c.log, noStore, row, { ...row, updated: 1 } as CampaignRow);
    expect(c.lines).toEqual([]);
    await logWaveStep(c.log, noStore, row, { ...row, wave: 1, rollout: 40 } as CampaignRow);
    expect(c.events()).toMatchObject([{ level: 'info', event: 'campaign.wave', campaign: 'c1', group: 'g', wave: 2, waves: [5, 25, 100], rollout: 40 }]);
    await logWaveStep(c.log, noStore, row, { ...row, state: 'completed' } as CampaignRow);
    expect(c.events()[1]).toMatchObject({ event: 'campaign.transition', from: 'running', to: 'completed', reason: 'completed', actor: 'server' });
  });

  it('hands a line function (older callers) one text line per event, without the newline', () => {
    const got: string[] = [];
    const log = asServerLog((l) => got.push(l));
    log.child('requests').error('request.failed', { topic: 't' }, 'request on t failed');
    log.debug('hidden.event', {}, 'below info');
    expect(got).toHaveLength(1);
    expect(got[0]).toMatch(/^\S+Z ERROR \[requests\] request\.failed: request on t failed \| topic=t$/);
  });

  it('turns a JSON line it cannot parse into one escaped line rather than dropping it', () => {
    expect(textLine('not json\u001b\n')).toBe('not json\\u001b\n');
  });
});
