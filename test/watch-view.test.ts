/**
 * `fwseal campaign status --watch` fits any terminal (issue 16; SPEC.md §12.9 "Operator CLI"): a
 * 1,000-device campaign rendered for a 24-row terminal keeps its header, wave, progress and counts
 * and shows only the newest changes; an escape sequence from a tokens file or device never reaches
 * the terminal; where stdout is not a terminal nothing is printed while nothing changes. Then one
 * watch against a real server (mosquitto, OtaServer) with 1,000 devices, to completion.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../host/cli.js';
import { type CampaignDetail } from '../host/commands/ota.js';
import { changesOf, DEFAULT_SCREEN, renderWatch, type Screen, WatchPrinter, watchCampaign } from '../host/commands/watch-view.js';
import { OtaServer } from '../host/ota/server.js';
import { CODES } from '../shared/codes.js';
import { encodeManifestRequest } from '../shared/ota/messages.js';
import { encodeStatusEvent, type StatusEvent } from '../shared/ota/status.js';
import { topics } from '../shared/ota/topics.js';
import { standardWorld } from './support/fixtures.js';
import { startMosquitto } from './support/mosquitto.js';

const T0 = Date.UTC(2026, 0, 2, 10, 0, 0);
const id = (i: number) => `dev-${String(i).padStart(4, '0')}`;
const STATES = ['waiting', 'accepted', 'downloading', 'verifying', 'installed', 'confirmed', 'rejected', 'failed', 'timed-out', 'excluded'];

/** A campaign of 1,000 devices in wave 2 of 3: each device's state by its number; the counts as the server derives them. */
function fleetDetail(over: Partial<CampaignDetail> = {}): CampaignDetail {
  const stateOf = (i: number) =>
    i < 400 ? 'confirmed' : i < 500 ? 'downloading' : i < 550 ? 'verifying' : i < 560 ? 'rejected' : i < 565 ? 'failed' : 'waiting';
  const devices = Array.from({ length: 1000 }, (_, i) => {
    const state = stateOf(i);
    const reported = state !== 'waiting';
    return {
      id: id(i),
      state,
      done: state === 'downloading' ? 7 : null,
      total: state === 'downloading' ? 40 : null,
      code: state === 'rejected' ? CODES.ROLLBACK : null,
      updated: reported ? T0 + i * 1000 : null,
      trustVersion: 1,
      revocationVersion: 0,
    };
  });
  const counts: Record<string, number> = { known: 1000, eligible: 1000 };
  for (const s of STATES) counts[s] = devices.filter((d) => d.state === s).length;
  return {
    id: 'c-watch',
    group: 'acme-gw',
    version: '1.5.0',
    securityCounter: 8,
    state: 'running',
    haltCode: null,
    wave: 2,
    waves: [5, 25, 100],
    rollout: 0,
    abortFailureRate: 0.1,
    failureRate: 15 / 415,
    counts,
    devices,
    deviceTimeoutMs: 3_600_000,
    abortMinDevices: 1,
    waveSoakMs: 600_000,
    waveGate: 'manual',
    waveDoneAt: null,
    nextWaveAt: null,
    waveApproved: false,
    waitingFor: 'devices',
    events: [{ at: T0 + 2_000_000, action: 'pause', actor: 'alice', detail: '' }],
    ...over,
  };
}

/** The counts a screen shows: every `state N` pair of its lines. */
function shownCounts(lines: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const l of lines)
    for (const m of l.matchAll(/\b([a-z]+(?:-out)?) (\d+)\b/g)) if ([...STATES, 'known', 'eligible'].includes(m[1]!)) out[m[1]!] = Number(m[2]);
  return out;
}

const VT100: Screen = { rows: 24, columns: 80 };

describe('the watch screen', () => {
  it('renders 1,000 devices into a 24-row terminal: at most 23 lines (the cursor rests on the 24th), header, wave, progress and every count', () => {
    const d = fleetDetail();
    const lines = renderWatch(d, VT100);
    expect(lines.length).toBeLessThanOrEqual(23);
    expect(lines.length).toBeGreaterThan(12); // the rows left over are used for changes
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);
    expect(lines[0]).toContain('campaign c-watch');
    expect(lines[1]).toMatch(/^running {2}wave 2\/3 \(25% of 5,25,100\) {2}waiting for its devices$/);
    expect(lines[2]).toMatch(/\] 415\/1000 done {2}failure rate 3\.6% \(halts above 10\.0%\)$/);
    const { known, eligible, ...states } = shownCounts(lines.slice(0, lines.indexOf('')));
    expect({ known, eligible }).toEqual({ known: 1000, eligible: 1000 });
    expect(states).toEqual(Object.fromEntries(STATES.map((s) => [s, d.counts[s]])));
    expect(lines.some((l) => l.startsWith('rules: manual gate, soak 10m, device timeout 1h'))).toBe(true);
  });

  it('shows the newest changes first, as many as the rows left allow, and says how many there are', () => {
    const d = fleetDetail();
    const lines = renderWatch(d, VT100);
    const title = lines.findIndex((l) => l.startsWith('CHANGES'));
    const shown = lines.slice(title + 1);
    expect(title + 1 + shown.length).toBe(23);
    expect(lines[title]).toContain(`newest ${shown.length} of 566`); // 565 device reports and one event
    // The event (at T0 + 2000 s) is newer than every device report (the newest at T0 + 564 s).
    expect(shown[0]).toMatch(/^10:33:20Z {2}alice +pause$/);
    expect(shown[1]).toMatch(/^10:09:24Z {2}dev-0564 +failed$/);
    expect(shown.find((l) => l.includes('dev-0559'))).toMatch(/rejected +ROLLBACK \(code 300\)$/);
    expect(
      changesOf(d)
        .slice(1, shown.length)
        .map((c) => c.who),
    ).toEqual(shown.slice(1).map((l) => l.split(/\s+/)[1]));
  });

  it('keeps the first lines (campaign, wave, progress) on a screen too short for the rest, and fits a narrow one', () => {
    const tiny = renderWatch(fleetDetail(), { rows: 4, columns: 80 });
    expect(tiny).toHaveLength(3);
    expect(tiny[0]).toContain('campaign c-watch');
    expect(tiny[2]).toContain('415/1000 done');
    const narrow = renderWatch(fleetDetail(), { rows: 40, columns: 40 });
    for (const l of narrow) expect(l.length).toBeLessThanOrEqual(40);
    const { known, ...states } = shownCounts(narrow.slice(0, narrow.indexOf('')));
    expect(known).toBe(1000);
    expect(states.waiting).toBe(435);
  });

  it('says why a campaign halted, and what the open wave waits for when soaking', () => {
    const halted = renderWatch(fleetDetail({ state: 'halted', haltCode: CODES.REVOKED_KEY, waitingFor: null }), VT100);
    expect(halted.some((l) => l.includes(`REVOKED_KEY (code ${CODES.REVOKED_KEY})`))).toBe(true);
    const soaking = renderWatch(fleetDetail({ waitingFor: 'soak', nextWaveAt: T0 + 3_600_000, waveApproved: true }), VT100);
    expect(soaking[1]).toContain('  soaking until 11:00:00Z, next approved');
    expect(renderWatch(fleetDetail({ waitingFor: 'operator' }), VT100)[1]).toMatch(/ {2}waiting for fwseal campaign next$/);
  });

  it('never passes an escape sequence from an event (tokens file, device) to the terminal', () => {
    const d = fleetDetail({ events: [{ at: T0 + 3_000_000, action: 'pause', actor: 'eve\x1b]0;pwned\x07', detail: '\x1b[2Jgone' }] });
    const frame = new WatchPrinter('screen', () => VT100).print(d);
    const ours = withoutClears(frame).replaceAll('\x1b[H', '');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: any other control character would reach the terminal
    expect(ours).not.toMatch(/[\x00-\x08\x0b-\x1f\x7f]/);
    expect(ours).toContain('eve\\u001b]0;pwned\\u0007');
  });
});

describe('what each poll prints', () => {
  it('on a terminal: the screen cleared once, then redrawn in place from the top left, at most 24 rows; nothing when nothing changed', () => {
    const p = new WatchPrinter('screen', () => VT100);
    const first = p.print(fleetDetail());
    expect(first.startsWith('\x1b[2J\x1b[H')).toBe(true);
    expect(first.split('\n').length).toBeLessThanOrEqual(24);
    expect(p.print(fleetDetail())).toBe('');
    const next = p.print(fleetDetail({ state: 'completed', waitingFor: null }));
    expect(next.startsWith('\x1b[H')).toBe(true); // no second clear: the scrollback keeps one screen
    expect(next.endsWith('\x1b[J')).toBe(true);
  });

  it('elsewhere (CI logs): one line per change and nothing when nothing changed', () => {
    const p = new WatchPrinter('lines');
    expect(p.print(fleetDetail())).toMatch(
      /^c-watch running wave 2\/3 eligible 1000 downloading 100 confirmed 400 rejected 10 failed 5 .* waiting-for devices\n$/,
    );
    expect(p.print(fleetDetail())).toBe('');
    // Device progress alone (the same counts) is no change worth a line.
    const moved = fleetDetail();
    moved.devices[450]!.done = 8;
    expect(p.print(moved)).toBe('');
    expect(p.print(fleetDetail({ state: 'completed', waitingFor: null }))).toMatch(/^c-watch completed /);
  });

  it('with --json: the campaign as one JSON line per change', () => {
    const p = new WatchPrinter('json');
    const line = p.print(fleetDetail());
    expect(line.endsWith('\n')).toBe(true);
    expect(line.split('\n')).toHaveLength(2);
    expect(JSON.parse(line)).toMatchObject({ id: 'c-watch', state: 'running' });
    expect(p.print(fleetDetail())).toBe('');
  });

  it('a terminal that does not tell its size is taken as 24 x 80', () => {
    expect(DEFAULT_SCREEN).toEqual(VT100);
  });
});

describe('against a real server', () => {
  const w = standardWorld();
  const dir = mkdtempSync(join(tmpdir(), 'fwseal-watch-'));
  const cleanups: (() => Promise<void> | void)[] = [];
  afterAll(async () => {
    while (cleanups.length) await cleanups.pop()!();
    rmSync(dir, { recursive: true, force: true });
  });

  it('follows a 1,000-device campaign to completion on a 24-row terminal: every frame fits, the counts are the server\u2019s, exit 0', async () => {
    // Mosquitto queues at most 1000 messages for a slow subscriber by default; the server must see every event here.
    const broker = await startMosquitto({ persistence: false, extra: ['max_queued_messages 100000'] });
    cleanups.push(() => broker.stop());
    const server = await OtaServer.start({
      mqtt: { url: broker.url, options: { protocolVersion: 5, clientId: `watch-srv-${randomBytes(3).toString('hex')}`, reconnectPeriod: 500 } },
      dataDir: join(dir, 'data'),
      trust: w.trust,
      http: { host: '127.0.0.1', port: 0 },
      tickMs: 100,
    });
    cleanups.push(() => server.close());
    const api = server.address()!.url;
    const fleet = await mqtt.connectAsync(broker.url, { clientId: `watch-fleet-${randomBytes(3).toString('hex')}`, reconnectPeriod: 0 });
    cleanups.push(() => fleet.endAsync(true));
    /** One client speaks for every device: the server tells devices apart by topic (SPEC.md §12.1). */
    const send = async (events: [string, Uint8Array][]) => {
      for (let i = 0; i < events.length; i += 250)
        await Promise.all(events.slice(i, i + 250).map(([t, b]) => fleet.publishAsync(t, Buffer.from(b), { qos: 1 })));
    };
    const status = (e: StatusEvent): [string, Uint8Array] => [topics.status('fwseal', e.device), encodeStatusEvent(e)];
    const range = (a: number, b: number) => Array.from({ length: b - a }, (_, k) => a + k);
    const online = (i: number, version: string, counter: number) => status({ device: id(i), state: 'online', group: 'watch-g', version, counter });

    await send(range(0, 1000).map((i) => online(i, '1.0.0', 1)));
    await until(async () => (await server.store.devices('watch-g')).length === 1000);
    writeFileSync(join(dir, 'fw.cose'), w.envelope);
    writeFileSync(join(dir, 'fw.bin'), w.image);
    const created = await cli(
      'campaign',
      'create',
      '--server',
      api,
      '--manifest',
      join(dir, 'fw.cose'),
      '--image',
      join(dir, 'fw.bin'),
      '--group',
      'watch-g',
      '--waves',
      '100',
      '--abort-failure-rate',
      '1',
    );
    expect(created.status).toBe(0);
    const cid = created.out.trim();

    // 110 devices fetch the manifest (a status counts only from a device served it, SPEC.md §12.9); 590
    // already run the release and confirm; 300 stay waiting.
    await send(range(0, 110).map((i) => [topics.request('fwseal', cid, id(i)), encodeManifestRequest({ campaign: cid, requestId: i + 1 })]));
    await until(async () => (await server.store.fetchedDevices(cid)).length === 110);
    const { version, securityCounter } = w.manifest;
    await send([
      ...range(0, 100).map((i) => status({ campaign: cid, device: id(i), state: 'downloading', done: 5, total: 40 })),
      ...range(100, 110).map((i) => status({ campaign: cid, device: id(i), state: 'rejected', code: CODES.ROLLBACK })),
      ...range(110, 700).flatMap((i) => [online(i, version, securityCounter), status({ campaign: cid, device: id(i), state: 'confirmed' })]),
    ]);
    const want = { known: 1000, eligible: 1000, waiting: 300, downloading: 100, rejected: 10, confirmed: 590 };
    await until(async () => {
      const c = ((await (await fetch(`${api}/api/campaigns/${cid}`)).json()) as CampaignDetail).counts;
      return Object.entries(want).every(([k, v]) => c[k] === v);
    });

    let out = '';
    const io = { stdout: (t: string) => void (out += t), stderr: () => undefined, stderrIsTty: false, stdoutIsTty: true };
    const watching = watchCampaign(io, { server: api }, cid, { output: 'screen', retryForMs: 10_000, screen: () => VT100, pollMs: 200 });
    await until(async () => out.length > 0);
    const first = frames(out)[0]!;
    expect(first.length).toBeLessThanOrEqual(24);
    expect(first[0]).toContain(`campaign ${cid}`);
    expect(shownCounts(first.slice(0, first.indexOf('')))).toMatchObject(want);
    // Every device report (700) and the campaign's events are changes; the screen shows the newest that fit.
    const title = first.find((l) => l.startsWith('CHANGES'))!;
    expect(Number(/newest (\d+) of (\d+)/.exec(title)?.[2])).toBeGreaterThanOrEqual(700);
    expect(first.length - first.indexOf(title) - 1).toBe(Number(/newest (\d+)/.exec(title)?.[1]));

    await send([
      ...range(0, 100).map((i) => status({ campaign: cid, device: id(i), state: 'confirmed' })),
      ...range(700, 1000).flatMap((i) => [online(i, version, securityCounter), status({ campaign: cid, device: id(i), state: 'confirmed' })]),
    ]);
    expect(await watching).toBe(0);
    const all = frames(out);
    for (const f of all) expect(f.length).toBeLessThanOrEqual(24);
    const last = all.at(-1)!;
    expect(last[1]).toMatch(/^completed {2}wave 1\/1/);
    expect(shownCounts(last.slice(0, last.indexOf('')))).toMatchObject({ confirmed: 990, rejected: 10, waiting: 0 });
    expect(out.split('\x1b[2J')).toHaveLength(2); // cleared once, then redrawn in place
  }, 120_000);
});

/** The screens written: each starts with cursor home; the lines between, without the clear-line codes. */
function frames(out: string): string[][] {
  return out
    .split('\x1b[H')
    .slice(1)
    .map((f) => withoutClears(f).replace(/\n$/, '').split('\n'));
}

/** Text without the clear codes the printer writes (ECMA-48 EL, ED). */
const withoutClears = (s: string) => s.replaceAll('\x1b[K', '').replaceAll('\x1b[J', '').replaceAll('\x1b[2J', '');

async function cli(...argv: string[]): Promise<{ status: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const status = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), stderrIsTty: false });
  return { status, out, err };
}

async function until(check: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
