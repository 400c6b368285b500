/**
 * The web console of `fwseal serve` (issue 16 item 3; SPEC.md §12.9 "Web console") in a real browser:
 * headless Chromium (test/support/browser.ts) against the real server with a tokens file, a real
 * mosquitto and real device clients (OtaDevice over simulated flash). A token is signed in with, a
 * wrong one is refused with its code; the campaign page follows a campaign to completed without a
 * reload (an operator opens its second wave from the page); a campaign that devices reject is halted,
 * visibly; a viewer gets no controls and the server refuses its pause with FORBIDDEN; a version made
 * of markup stays text; nothing scrolls sideways at 390 px; an open API on the loopback needs no
 * sign-in; and the pages carry their security headers. Screenshots of every page are kept in a
 * folder of their own (its path is printed) for the issue's closing note.
 *
 * No timed assertions: every wait is for a state, bounded by the browser's and the test's timeouts.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Script } from 'node:vm';
import { type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { SimFlash } from '../device/sim/flash.js';
import { fleetVerifier, nodeSha256 } from '../host/hash.js';
import { histogram, parseSamples, total } from '../host/ota/console/prom-text.js';
import { consoleScript } from '../host/ota/console/script.js';
import { escapeHtml, html, pageShell } from '../host/ota/console/shell.js';
import { type OtaDevice as Device, OtaDevice } from '../host/ota/device-client.js';
import { OtaServer } from '../host/ota/server.js';
import { ApiAccess, createToken } from '../host/ota/tokens.js';
import { toHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { launchBrowser, loopbackContext, overflowsSideways, type Troubles } from './support/browser.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually, RawDevice } from './support/ota-client.js';
import { serverMqtt } from './support/ota-harness.js';

const w = standardWorld();
const verifier = fleetVerifier();
const release = (version: string, counter: number) => {
  const image = detBytes(40_000, `console ${version}`);
  return { image, envelope: makeManifestEnvelope(makeManifest(image, { version, securityCounter: counter, chunkSize: 4096 }), [w.R1, w.R2]) };
};
const v1 = release('1.0.0', 5);
const v2 = release('2.0.0', 6);
const older = release('0.9.0', 4);
/** A version a device may report (any text of at most 64 bytes): markup that would run if it were ever parsed as HTML. */
const MARKUP = '<img src=x onerror="window.__xss=1">';

const E = 4096;
const SLOT = 256 * 1024;
const layout = createLayout({ size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff }, { slotSize: SLOT });
const FLEET = ['c-01', 'c-02', 'c-03', 'c-04'];
const GROUP = 'g-console';
/** How long a wait for something the page shows may take (the page polls every 1.5 to 3 s). */
const WAIT_MS = 20_000;

let broker: Mosquitto;
let server: OtaServer;
let browser: Browser;
let dir: string;
let url: string;
const tokens: Record<'viewer' | 'operator', string> = { viewer: '', operator: '' };
const stops: (() => Promise<unknown>)[] = [];
const sims: Device[] = [];
/** Screenshots stay after the test (the rest of dir does not): the lead attaches them to the issue. */
const screens = mkdtempSync(join(tmpdir(), 'fwseal-console-screens-'));
const shots: string[] = [];
const campaigns: Record<'rollout' | 'halted', string> = { rollout: '', halted: '' };

async function startDevice(id: string): Promise<Device> {
  const flash = new SimFlash({ size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff });
  const p = provision(flash, layout, { deviceClass: 'acme-gw', trust: w.trust, envelope: v1.envelope, image: v1.image, verifier });
  if (!p.ok) throw new Error(`provision: ${p.error}`);
  const device = await OtaDevice.start({
    id,
    group: GROUP,
    flash,
    layout,
    trust: w.trust,
    verifier,
    maxTrialBoots: 2,
    mqtt: { url: broker.url, options: { protocolVersion: 4, clientId: `console-${id}`, reconnectPeriod: 200 } },
    pull: { timeoutMs: 1500, baseBackoffMs: 100, maxBackoffMs: 1000, retryBaseMs: 100, retryMaxMs: 1000, window: 8 },
  });
  stops.push(() => device.stop());
  return device;
}

/** An API call with a token (the console's tokens file has no other way in). */
async function call(method: string, path: string, token: string, body?: Uint8Array | object): Promise<{ status: number; body: any }> {
  const bytes = body instanceof Uint8Array;
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': bytes ? 'application/octet-stream' : 'application/json' }) },
    ...(body === undefined ? {} : { body: bytes ? Buffer.from(body) : JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.json() };
}

async function createCampaign(rel: { image: Uint8Array; envelope: Uint8Array }, extra: object): Promise<string> {
  const sha = toHex(nodeSha256(rel.image));
  expect((await call('PUT', `/api/images/${sha}`, tokens.operator, rel.image)).status).toBeLessThan(300);
  const r = await call('POST', '/api/campaigns', tokens.operator, {
    manifest: Buffer.from(rel.envelope).toString('base64'),
    image: sha,
    group: GROUP,
    ...extra,
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.id;
}

async function screenshot(page: Page, name: string): Promise<void> {
  const path = join(screens, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  shots.push(path);
}

/** A signed-in page: the sign-in form filled with `token`, then the page drawn. */
async function signedIn(context: BrowserContext, path: string, token: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(url + path);
  await page.fill('#token', token);
  await page.click('#signin-submit');
  await page.locator('#who').filter({ hasText: '·' }).waitFor();
  return page;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fwseal-console-'));
  const tokensFile = join(dir, 'tokens.json');
  tokens.viewer = createToken(tokensFile, 'console-viewer', 'viewer').token;
  tokens.operator = createToken(tokensFile, 'console-operator', 'operator').token;
  broker = await startMosquitto({ persistence: false });
  server = await OtaServer.start({
    mqtt: serverMqtt(broker.url),
    dataDir: join(dir, 'data'),
    trust: w.trust,
    http: { host: '127.0.0.1', port: 0 },
    access: ApiAccess.fromFile(tokensFile),
    tickMs: 50,
  });
  url = server.address()!.url;
  for (const id of FLEET) sims.push(await startDevice(id));
  const lab = await RawDevice.connect(broker.url, 'lab-1');
  stops.push(() => lab.close());
  await lab.online('g-lab', MARKUP, 1);
  await eventually(async () => (await server.store.deviceCount()) === FLEET.length + 1, 15_000, 'every device known');
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  for (const s of stops.reverse()) await s().catch(() => {});
  await server?.close();
  await broker?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (shots.length) console.log(`console screenshots (kept):\n${shots.join('\n')}`);
});

describe('the pieces, without a browser', () => {
  it('every value in the page template is escaped: markup in an id or title becomes text', () => {
    expect(escapeHtml(MARKUP)).toBe('&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;');
    expect(html`<b title="${`"'><i>`}">${MARKUP}</b>`.text).toBe(
      '<b title="&quot;&#39;&gt;&lt;i&gt;">&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;</b>',
    );
    const page = pageShell('device', MARKUP, MARKUP);
    expect(page).not.toContain('<img');
    expect(page).toContain('data-id="&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;"');
  });

  it('reads the Prometheus text it serves: labels with escapes, sums, a histogram with its finite buckets', () => {
    const text = [
      '# TYPE fwseal_rejections gauge',
      'fwseal_rejections{code="ROLLBACK"} 3',
      'fwseal_rejections{code="say \\"hi\\""} 1',
      'fwseal_device_verify_seconds_bucket{stage="manifest",le="0.01"} 2',
      'fwseal_device_verify_seconds_bucket{stage="manifest",le="0.1"} 5',
      'fwseal_device_verify_seconds_bucket{stage="manifest",le="+Inf"} 6',
      'fwseal_device_verify_seconds_sum{stage="manifest"} 0.9',
      'fwseal_device_verify_seconds_count{stage="manifest"} 6',
      'not a sample line',
    ].join('\n');
    const samples = parseSamples(text);
    expect(samples.map((x) => x.labels.code).filter(Boolean)).toEqual(['ROLLBACK', 'say "hi"']);
    expect(total(samples, 'fwseal_rejections')).toBe(4);
    expect(histogram(samples, 'fwseal_device_verify_seconds', { stage: 'manifest' })).toEqual({
      buckets: [
        { le: 0.01, count: 2 },
        { le: 0.1, count: 5 },
      ],
      count: 6,
      sum: 0.9,
    });
    expect(histogram(samples, 'fwseal_device_verify_seconds', { stage: 'image' })).toBeNull();
  });

  it('the served script is one valid script, with no HTML sink in it', () => {
    expect(() => new Script(consoleScript())).not.toThrow();
    expect(consoleScript()).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/);
  });
});

describe('signing in', () => {
  let context: BrowserContext;
  let troubles: Troubles;
  beforeAll(async () => ({ context, troubles } = await loopbackContext(browser, { viewport: { width: 1280, height: 900 } })));
  afterAll(async () => context?.close());

  it('asks for a token; an unknown one is refused with UNAUTHORIZED and its code; the operator token shows the overview', async () => {
    const page = await context.newPage();
    await page.goto(`${url}/`);
    await page.locator('#signin').waitFor();
    await screenshot(page, 'sign-in');
    await page.fill('#token', `fwseal_${'A'.repeat(43)}`);
    await page.click('#signin-submit');
    await expect.poll(() => page.locator('#error-code').textContent(), { timeout: WAIT_MS }).toBe(`UNAUTHORIZED (code ${CODES.UNAUTHORIZED})`);
    await expect.poll(() => page.evaluate<string | null>("sessionStorage.getItem('fwseal.console.token')"), { timeout: WAIT_MS }).toBeNull();
    await page.fill('#token', tokens.operator);
    await page.click('#signin-submit');
    await page.locator('#overview').waitFor();
    expect(await page.locator('#who').textContent()).toBe('console-operator · operator');
    expect(troubles).toEqual([]);
  });
});

describe('a campaign followed live, from the campaign page', () => {
  let operator: BrowserContext;
  let viewer: BrowserContext;
  const troubles: Troubles[] = [];
  beforeAll(async () => {
    const o = await loopbackContext(browser, { viewport: { width: 1280, height: 900 } });
    const v = await loopbackContext(browser, { viewport: { width: 1280, height: 900 } });
    [operator, viewer] = [o.context, v.context];
    troubles.push(o.troubles, v.troubles);
    // A manual gate holds the campaign after its first wave until an operator lets the second open.
    campaigns.rollout = await createCampaign(v2, { waves: [50, 100], waveGate: 'manual' });
  });
  afterAll(async () => {
    await operator?.close();
    await viewer?.close();
  });

  it('a viewer sees no controls, and the server refuses its pause with FORBIDDEN', async () => {
    const page = await signedIn(viewer, `/campaigns/${campaigns.rollout}`, tokens.viewer);
    await expect.poll(() => page.locator('#campaign-state').textContent(), { timeout: WAIT_MS }).toBe('running');
    await page.locator('#read-only').waitFor();
    expect(await page.locator('[data-action]').count()).toBe(0);
    const refused = await page.evaluate<[number, string, number]>(
      `fetch('/api/campaigns/' + ${JSON.stringify(campaigns.rollout)} + '/pause', { method: 'POST', headers: { authorization: 'Bearer ' + sessionStorage.getItem('fwseal.console.token') } })
        .then((r) => r.json().then((b) => [r.status, b.error, b.code]))`,
    );
    expect(refused).toEqual([403, 'FORBIDDEN', CODES.FORBIDDEN]);
    expect((await call('GET', `/api/campaigns/${campaigns.rollout}`, tokens.viewer)).body.state).toBe('running');
    await screenshot(page, 'campaign-viewer');
  });

  it('advances to completed without a reload: wave 1, the operator opens wave 2 from the page, every device confirms', async () => {
    const page = await signedIn(operator, `/campaigns/${campaigns.rollout}`, tokens.operator);
    await page.locator('#campaign-state').waitFor();
    expect(await page.locator('[data-action="pause"]').count()).toBe(1);
    // Record what the page shows at each redraw, and count navigations: a reload would lose the one and add to the other.
    let navigations = 0;
    page.on('framenavigated', (f) => {
      if (f === page.mainFrame()) navigations++;
    });
    await page.evaluate(`(() => {
      const seen = (window.__seen = []);
      const note = () => {
        const s = document.querySelector('#campaign-state');
        const wave = document.querySelector('#wave');
        const line = (s ? s.textContent : '') + ' ' + (wave ? wave.textContent.split(' (')[0] : '');
        if (seen[seen.length - 1] !== line) seen.push(line);
      };
      note();
      new MutationObserver(note).observe(document.querySelector('#main'), { childList: true, subtree: true });
    })()`);
    await page.locator('[data-action="next"]').click({ timeout: 60_000 });
    await expect.poll(() => page.locator('#campaign-state').textContent(), { timeout: 60_000 }).toBe('completed');
    const seen = await page.evaluate<string[]>('window.__seen');
    // What lies between depends on how fast the devices are (wave 2 may complete between two polls).
    expect(seen[0]).toBe('running 1 of 2');
    expect(seen.at(-1)).toBe('completed 2 of 2');
    expect(navigations).toBe(0);
    expect(await page.locator('.progress').first().getAttribute('data-ended')).toBe(String(FLEET.length));
    expect(await page.locator('[data-action]').count()).toBe(0);
    expect(sims.every((s) => s.state().version === '2.0.0')).toBe(true);
    await screenshot(page, 'campaign-completed');
  }, 90_000);

  it('a campaign the devices reject is halted, visibly: the badge, the reason with the code, the operator may resume', async () => {
    campaigns.halted = await createCampaign(older, { waves: [100], abortFailureRate: 0.05 });
    const page = await signedIn(operator, `/campaigns/${campaigns.halted}`, tokens.operator);
    await expect.poll(() => page.locator('#campaign-state').textContent(), { timeout: 60_000 }).toBe('halted');
    expect(await page.locator('#campaign-state').getAttribute('class')).toContain('s-halted');
    expect(await page.locator('#halted').textContent()).toContain('ROLLBACK');
    await page
      .locator('#devices td', { hasText: `ROLLBACK (code ${CODES.ROLLBACK})` })
      .first()
      .waitFor();
    expect(await page.locator('[data-action="resume"]').count()).toBe(1);
    expect(await page.locator('[data-action="pause"]').count()).toBe(0);
    await screenshot(page, 'campaign-halted');
    for (const t of troubles) expect(t).toEqual([]);
  }, 90_000);
});

describe('the overview and the device page', () => {
  let context: BrowserContext;
  let troubles: Troubles;
  beforeAll(async () => ({ context, troubles } = await loopbackContext(browser, { viewport: { width: 1280, height: 900 } })));
  afterAll(async () => context?.close());

  it('the overview shows the fleet by version, the root of trust, both campaigns and the rejections by code', async () => {
    const page = await signedIn(context, '/', tokens.viewer);
    await page.locator('#overview').waitFor();
    await page.locator('#campaigns [data-campaign] .badge', { hasText: 'halted' }).waitFor();
    const fleet = page.locator('#fleet');
    expect(await fleet.locator('.figure').first().textContent()).toBe(`${FLEET.length + 1}known`);
    await fleet.locator('tr', { hasText: '2.0.0' }).waitFor();
    expect(await page.locator(`#campaigns [data-campaign="${campaigns.rollout}"] .badge`).textContent()).toBe('completed');
    expect(await page.locator('#root .figure b').first().textContent()).toBe('v1');
    await page.locator('#rejections li[data-label="ROLLBACK"]').first().waitFor();
    await screenshot(page, 'overview');
    expect(troubles).toEqual([]);
  });

  it('a version made of markup is shown as text, on the overview and on its device page: no element is made of it', async () => {
    const page = await signedIn(context, '/devices/lab-1', tokens.viewer);
    await page.locator('#device-version').waitFor();
    expect(await page.locator('#device-version').textContent()).toBe(MARKUP);
    expect(await page.evaluate<number>("document.querySelectorAll('img').length")).toBe(0);
    await page.goto(`${url}/`);
    await page.locator('#fleet td', { hasText: MARKUP }).waitFor();
    expect(await page.evaluate<number>("document.querySelectorAll('img').length")).toBe(0);
    expect(await page.evaluate<unknown>('window.__xss')).toBeUndefined();
    expect(troubles).toEqual([]);
  });

  it("a device's page lists its history: the completed campaign confirmed, the halted one rejected with its code", async () => {
    const page = await signedIn(context, `/devices/${FLEET[0]}`, tokens.viewer);
    const history = page.locator('#history');
    await history.locator('tr', { hasText: campaigns.halted }).locator('td', { hasText: 'ROLLBACK' }).waitFor();
    expect(await history.locator('tr', { hasText: campaigns.rollout }).locator('.badge').allTextContents()).toEqual(['completed', 'confirmed']);
    expect(await page.locator('#presence').textContent()).toBe('online');
    await screenshot(page, 'device');
    expect(troubles).toEqual([]);
  });
});

describe('on a phone (390 px wide)', () => {
  it('no page scrolls sideways; the check sees a page that does', async () => {
    const { context, troubles } = await loopbackContext(browser, {
      viewport: { width: 390, height: 844 },
      isMobile: true,
      hasTouch: true,
      deviceScaleFactor: 2,
    });
    try {
      const page = await signedIn(context, '/', tokens.operator);
      const pages: [string, string][] = [
        ['/', '#overview'],
        [`/campaigns/${campaigns.rollout}`, '#campaign'],
        [`/campaigns/${campaigns.halted}`, '#campaign'],
        [`/devices/${FLEET[0]}`, '#device'],
        ['/devices/lab-1', '#device'],
      ];
      for (const [path, ready] of pages) {
        await page.goto(url + path);
        await page.locator(ready).waitFor();
        expect(await overflowsSideways(page), path).toBe(false);
        await screenshot(page, `phone${path === '/' ? '-overview' : path.replaceAll('/', '-')}`);
      }
      await page.evaluate("document.querySelector('#main').append(Object.assign(document.createElement('pre'), { textContent: 'x'.repeat(400) }))");
      expect(await overflowsSideways(page)).toBe(true);
      expect(troubles).toEqual([]);
    } finally {
      await context.close();
    }
  }, 60_000);
});

/** A raw request with its own Host and Origin headers (fetch sets Host itself). */
function raw(target: string, method: string, path: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${target}${path}`, { method, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(parts).toString('utf8') || 'null') }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('what protects the console', () => {
  it('pages and script: a strict policy (no inline script, no framing, Trusted Types), no caching; API answers are not cached either', async () => {
    for (const path of ['/', `/campaigns/${campaigns.rollout}`, '/console/app.js', '/console/app.css']) {
      const r = await fetch(url + path);
      expect(r.status, path).toBe(200);
      const csp = r.headers.get('content-security-policy') ?? '';
      for (const rule of ["script-src 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'", "default-src 'none'"])
        expect(csp, path).toContain(rule);
      expect([r.headers.get('x-frame-options'), r.headers.get('cache-control'), r.headers.get('x-content-type-options')]).toEqual([
        'DENY',
        'no-store',
        'nosniff',
      ]);
      const text = await r.text();
      if (path === '/') expect(text.match(/<script\b[^>]*>/g)).toEqual(['<script src="/console/app.js" defer>']);
    }
    const overview = await fetch(`${url}/api/overview`, { headers: { authorization: `Bearer ${tokens.viewer}` } });
    expect([overview.status, overview.headers.get('cache-control')]).toEqual([200, 'no-store']);
    expect((await fetch(`${url}/api/overview`)).status).toBe(401);
  });

  it('a request from another origin is refused with FORBIDDEN before its token is looked at', async () => {
    const r = await raw(url, 'POST', `/api/campaigns/${campaigns.halted}/abort`, { origin: 'http://evil.example', authorization: `Bearer ${tokens.operator}` });
    expect([r.status, r.body.error, r.body.code]).toEqual([403, 'FORBIDDEN', CODES.FORBIDDEN]);
    expect((await call('GET', `/api/campaigns/${campaigns.halted}`, tokens.viewer)).body.state).toBe('halted');
  });

  it('an open API on the loopback: the console without a sign-in; a foreign Host name is refused (DNS rebinding)', async () => {
    const open = await OtaServer.start({
      mqtt: serverMqtt(broker.url),
      dataDir: join(dir, 'open'),
      prefix: 'console-open',
      trust: w.trust,
      http: { host: '127.0.0.1', port: 0 },
    });
    stops.push(() => open.close());
    const { context, troubles } = await loopbackContext(browser, { viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      await page.goto(`${open.address()!.url}/`);
      await page.locator('#overview').waitFor();
      expect(await page.locator('#signin').count()).toBe(0);
      expect(await page.locator('#who').textContent()).toBe('open API (no tokens)');
      await screenshot(page, 'open-api-overview');
      expect(troubles).toEqual([]);
    } finally {
      await context.close();
    }
    const rebound = await raw(open.address()!.url, 'GET', '/api/overview', { host: `evil.example:${open.address()!.port}` });
    expect([rebound.status, rebound.body.code]).toEqual([403, CODES.FORBIDDEN]);
    expect((await raw(open.address()!.url, 'GET', '/api/whoami', { host: `localhost:${open.address()!.port}` })).body).toEqual({
      name: 'api',
      role: 'admin',
      source: 'api-open',
    });
  });
});
