/**
 * The OTA server's audit trail (SPEC.md §15.6): every state-changing API call is one line of
 * DATA/audit.log (refused calls too) with the token's name as actor, and `GET /api/audit` pages
 * through it behind the API's token. A real mosquitto on loopback, as in test/ota-server.test.ts.
 */
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditRecord, scanAuditLog } from '../host/audit.js';
import { nodeSha256 } from '../host/hash.js';
import { OtaServer, type OtaServerOptions } from '../host/ota/server.js';
import { toHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { type Api, api, createCampaign, serverMqtt } from './support/ota-harness.js';

const w = standardWorld();
const image = detBytes(40_000, 'audit server image');
const envelope = makeManifestEnvelope(makeManifest(image, { chunkSize: 1024 }), [w.R1, w.R2]);
const TOKEN = 'audit-test-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };

let broker: Mosquitto;
const servers: OtaServer[] = [];
const dirs: string[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'fwseal-audit-srv-'));
  dirs.push(d);
  return d;
}

async function startServer(dataDir: string, opts: Partial<OtaServerOptions> = {}): Promise<OtaServer> {
  const s = await OtaServer.start({ mqtt: serverMqtt(broker.url), dataDir, trust: w.trust, http: { host: '127.0.0.1', port: 0 }, tickMs: 100, ...opts });
  servers.push(s);
  return s;
}

const lines = (dataDir: string): AuditRecord[] => {
  const out: AuditRecord[] = [];
  const v = scanAuditLog(join(dataDir, 'audit.log'), { visit: (r) => out.push(r) });
  expect(v.ok).toBe(true);
  return out;
};

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
});

afterAll(async () => {
  for (const s of servers) await s.close().catch(() => {});
  await broker?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('the server records every state-changing API call (SPEC.md §15.6)', () => {
  let dataDir: string;
  let server: OtaServer;
  let campaign: string;
  /** The code name the API answered the refused publish with. */
  let publishError: string;
  const call = (method: string, path: string, body?: unknown): Promise<Api> => api(server, method, path, body, AUTH);

  beforeAll(async () => {
    dataDir = tempDir();
    server = await startServer(dataDir, { token: TOKEN, tokenName: 'release-ci' });
    const sha = toHex(nodeSha256(image));
    expect((await call('PUT', `/api/images/${sha}`, image)).status).toBe(201);
    const created = await call('POST', '/api/campaigns', { manifest: Buffer.from(envelope).toString('base64'), image: sha, group: 'g-audit', waves: [100] });
    expect(created.status).toBe(201);
    campaign = created.body.id;
    expect((await call('POST', `/api/campaigns/${campaign}/pause`)).status).toBe(200);
    expect((await call('POST', `/api/campaigns/${campaign}/resume`)).status).toBe(200);
    expect((await call('POST', `/api/campaigns/${campaign}/abort`)).status).toBe(200);
    expect((await call('POST', `/api/campaigns/${campaign}/resume`)).body).toMatchObject({ code: CODES.CONFLICT });
    expect((await call('POST', '/api/root', w.trust)).status).toBe(200);
    const refused = await call('POST', '/api/root', detBytes(300, 'not an envelope'));
    expect(refused.status).toBe(422);
    publishError = refused.body.error;
    // Not authenticated: refused before anything happens, and not recorded (anyone could fill the log).
    expect((await api(server, 'POST', `/api/campaigns/${campaign}/pause`, undefined, { authorization: 'Bearer wrong' })).status).toBe(401);
  });

  it('one line per call, refused ones with their code name; actor = the token name; the chain verifies', () => {
    const got = lines(dataDir);
    expect(got.map((r) => [r.action, r.result])).toEqual([
      ['image upload', 'ok'],
      ['campaign create', 'ok'],
      ['campaign pause', 'ok'],
      ['campaign resume', 'ok'],
      ['campaign abort', 'ok'],
      ['campaign resume', 'CONFLICT'],
      ['trust publish', 'ok'],
      ['trust publish', publishError],
    ]);
    for (const r of got) expect(r).toMatchObject({ actor: 'release-ci', actorSource: 'api-token' });
    expect(got[0]).toMatchObject({ kind: 'image', digest: toHex(nodeSha256(image)) });
    expect(got[1]).toMatchObject({ kind: 'manifest', digest: toHex(nodeSha256(envelope)), file: `/api/campaigns/${campaign}` });
    expect(got[4]).toMatchObject({ file: `/api/campaigns/${campaign}`, digest: toHex(nodeSha256(envelope)) });
    expect(got[6]).toMatchObject({ file: '/api/root', kind: 'trust-bundle', digest: toHex(nodeSha256(w.trust)) });
    expect(got[7]).toMatchObject({ file: '/api/root', digest: toHex(nodeSha256(detBytes(300, 'not an envelope'))) });
  });

  it('GET /api/audit pages through the log behind the token; the pages chain like the file', async () => {
    expect((await api(server, 'GET', '/api/audit')).status).toBe(401);
    const all = await call('GET', '/api/audit');
    expect(all.status).toBe(200);
    expect(all.body).toMatchObject({ next: 8, more: false });
    expect(all.body.entries).toEqual(lines(dataDir));
    const page = await call('GET', '/api/audit?after=2&limit=3');
    expect(page.body.entries.map((r: AuditRecord) => r.seq)).toEqual([3, 4, 5]);
    expect(page.body).toMatchObject({ next: 5, more: true });
    for (let i = 1; i < page.body.entries.length; i++) expect(page.body.entries[i].prev).toBe(page.body.entries[i - 1].hash);
    expect((await call('GET', '/api/audit?after=8')).body).toMatchObject({ entries: [], next: 8, more: false });
    for (const q of ['limit=0', 'limit=1001', 'after=-1', 'after=x'])
      expect((await call('GET', `/api/audit?${q}`)).body).toMatchObject({ code: CODES.BAD_VALUE });
  });

  it('a log torn while the server runs refuses the next state-changing call (code 820) before it acts; the page shows the torn line', async () => {
    const log = join(dataDir, 'audit.log');
    appendFileSync(log, '{"seq":9,"time":"2026');
    const before = (await call('GET', '/api/campaigns')).body.campaigns.length;
    const sha = toHex(nodeSha256(image));
    const r = await call('POST', '/api/campaigns', { manifest: Buffer.from(envelope).toString('base64'), image: sha, group: 'g-audit-2', waves: [100] });
    expect(r.body).toMatchObject({ code: CODES.AUDIT_LOG_INVALID });
    expect((await call('GET', '/api/campaigns')).body.campaigns.length).toBe(before);
    expect((await call('GET', '/api/audit?after=8')).body.entries).toEqual([{ line: 9, invalid: 'torn' }]);
    expect(readFileSync(log, 'utf8').endsWith('"time":"2026')).toBe(true);
  });
});

describe('server start and an open API', () => {
  it('without a token the actor is "api"', async () => {
    const dataDir = tempDir();
    const s = await startServer(dataDir, { prefix: 'open' });
    expect((await createCampaign(s, 'g-open', { envelope, image })).status).toBe(201);
    expect(lines(dataDir).map((r) => [r.action, r.actor, r.actorSource])).toEqual([
      ['image upload', 'api', 'api-open'],
      ['campaign create', 'api', 'api-open'],
    ]);
  });

  it('a data folder whose audit log ends in a torn line is refused at start (AUDIT_LOG_INVALID)', async () => {
    const dataDir = tempDir();
    writeFileSync(join(dataDir, 'audit.log'), '{"seq":1,');
    let err: unknown;
    try {
      await startServer(dataDir, { prefix: 'torn' });
    } catch (e) {
      err = e;
    }
    expect((err as { codeName?: string }).codeName).toBe('AUDIT_LOG_INVALID');
  });
});
