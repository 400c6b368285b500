/**
 * `fwseal serve --log DIR --log-key LOG.key` hosts the transparency log (issue 19 items 1 and 4,
 * SPEC.md §16): creating a campaign appends its manifest envelope (once), the server signs a
 * checkpoint that the log key opens, the inclusion proof it serves verifies offline with `fwseal log
 * verify --proof`, M9 is observed, and `fwseal log monitor --log URL` reads the served log and finds
 * an entry signed by a key the trust bundle does not list. A real mosquitto on loopback and the
 * server in-process, as test/audit-server.test.ts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeSha256 } from '../host/hash.js';
import { loadPublicKey, loadSigningKey } from '../host/keys.js';
import { OtaServer } from '../host/ota/server.js';
import { openCheckpoint } from '../host/tlog/log.js';
import { type NoteKey, SIG_ED25519 } from '../host/tlog/note.js';
import { toHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { type CliWorld, expectOk, expectRejected, expectUsage, makeCliWorld, PASS } from './support/cli-world.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually } from './support/ota-client.js';
import { type Api, api, metricsOf, sample, serverMqtt } from './support/ota-harness.js';
import { runFwsealProcess, startServeChild } from './support/serve-child.js';

const ORIGIN = 'example.com/served-log';
const TOKEN = 'tlog-server-token';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const S = standardWorld();
const image = detBytes(20_000, 'tlog server image');
const envelope = makeManifestEnvelope(makeManifest(image, { chunkSize: 1024 }), [S.R1, S.R2]);
const sha = toHex(nodeSha256(envelope));

let broker: Mosquitto;
let w: CliWorld;
let server: OtaServer;
let plain: OtaServer;
const cleanups: (() => unknown)[] = [];
const codeIn = (text: string) => Number(text.match(/\(code (\d+)\)/)?.[1]);
const call = (path: string, s: OtaServer = server): Promise<Api> => api(s, 'GET', path, undefined, AUTH);

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
  w = await makeCliWorld(['logkey']);
  w.write('trust.cbor', S.trust);
  w.write('m.cose', envelope);
  expectOk(await w.run('log', 'init', 'tlog', '--origin', ORIGIN, '--key', 'logkey.pub'));
  const base = { mqtt: serverMqtt(broker.url), trust: S.trust, http: { host: '127.0.0.1', port: 0 }, tickMs: 100, token: TOKEN };
  const tlog = { dir: w.path('tlog'), key: loadSigningKey(w.path('logkey.key')), checkpointIntervalMs: 50 };
  server = await OtaServer.start({ ...base, dataDir: w.path('data'), prefix: 'tlogsrv', tlog });
  plain = await OtaServer.start({ ...base, dataDir: w.path('data-plain'), prefix: 'tlogplain' });
}, 60_000);

afterAll(async () => {
  for (const c of cleanups) await c();
  await server?.close();
  await plain?.close();
  await broker?.stop();
  delete process.env.FWSEAL_SERVER_TOKEN;
  w?.close();
});

describe('fwseal serve --log: the campaign manifests in a served transparency log', () => {
  let note = '';

  it('a campaign appends its manifest once (the same manifest again is the same entry); a checkpoint follows, signed by the log key', async () => {
    expect((await api(server, 'PUT', `/api/images/${toHex(nodeSha256(image))}`, image, AUTH)).status).toBe(201);
    for (const group of ['g-log-1', 'g-log-2']) {
      const body = { manifest: Buffer.from(envelope).toString('base64'), image: toHex(nodeSha256(image)), group, waves: [100] };
      expect((await api(server, 'POST', '/api/campaigns', body, AUTH)).status).toBe(201);
    }
    const info = await call('/api/log');
    expect(info.body).toMatchObject({ origin: ORIGIN, size: 1 });
    const first = await call('/api/log/entries?start=0&count=10');
    expect(first.body.entries.map((e: { object: string }) => Buffer.from(e.object, 'base64').equals(envelope))).toEqual([true]);
    const served = await eventually(async () => {
      const r = await call('/api/log/checkpoint');
      return r.status === 200 && (r.body as string);
    });
    note = served;
    const logKey: NoteKey = { name: ORIGIN, publicKey: loadPublicKey(w.path('logkey.pub')).publicKey, type: SIG_ED25519 };
    expect(openCheckpoint(note, logKey).checkpoint.size).toBe(1);
    expect(note).toBe(readFileSync(w.path('tlog/checkpoint.note'), 'utf8'));
    const other: NoteKey = { ...logKey, publicKey: detKey('not the log key').publicKey };
    expect(() => openCheckpoint(note, other)).toThrow(expect.objectContaining({ codeName: 'BAD_SIGNATURE' }));
  });

  it('the inclusion proof served for the manifest verifies offline (log verify --proof); for another object it does not', async () => {
    const proof = await call(`/api/log/proof?entry=${sha}`);
    expect(proof.status).toBe(200);
    w.write('m.proof.json', JSON.stringify(proof.body));
    const verify = (entry: string) => w.run('log', 'verify', '--proof', 'm.proof.json', '--entry', entry, '--log-key', 'logkey.pub', '--origin', ORIGIN);
    expectOk(await verify('m.cose'));
    w.write('other.cose', makeManifestEnvelope(makeManifest(detBytes(64, 'other')), [S.R1, S.R2]));
    expectRejected(await verify('other.cose'), 'LOG_INVALID');
    expect((await call(`/api/log/proof?entry=${'0'.repeat(64)}`)).body.code).toBe(CODES.NOT_FOUND);
  });

  it('M9: one inclusion observed, the log size exported', async () => {
    const text = await metricsOf(server);
    expect(sample(text, 'fwseal_tlog_inclusion_seconds_count')).toBe(1);
    expect(sample(text, 'fwseal_tlog_size')).toBe(1);
    expect(sample(await metricsOf(plain), 'fwseal_tlog_size')).toBe(0);
  });

  it('bounded, checked queries; a server without --log answers 404 NOT_FOUND', async () => {
    expect((await call('/api/log/entries?count=101')).body.code).toBe(CODES.BAD_VALUE);
    expect((await call('/api/log/proof')).body.code).toBe(CODES.MISSING_FIELD);
    expect((await call('/api/log/consistency?from=0&x=1')).body.code).toBe(CODES.UNKNOWN_KEY);
    expect((await api(server, 'GET', '/api/log/checkpoint')).status).toBe(401);
    for (const path of ['/api/log', '/api/log/checkpoint', `/api/log/proof?entry=${sha}`]) expect((await call(path, plain)).body.code).toBe(CODES.NOT_FOUND);
  });

  it('log monitor --log URL: clean (exit 0, saves the checkpoint), then an entry signed by an unexpected key (KEY_NOT_IN_TRUST, exit 1)', async () => {
    const url = server.address()!.url;
    const monitor = (...extra: string[]) => w.run('log', 'monitor', '--log', url, '--trust', 'trust.cbor', ...extra);
    expectUsage(await monitor(), 'UNAUTHORIZED');
    process.env.FWSEAL_SERVER_TOKEN = TOKEN;
    const clean = await monitor('--save', 'seen.note', '--json');
    expectOk(clean);
    expect(JSON.parse(clean.out)).toMatchObject({ origin: ORIGIN, fromSize: 0, toSize: 1, findings: [] });
    expect(readFileSync(w.path('seen.note'), 'utf8')).toBe(note);
    // A release signed by a key nobody listed, logged behind the server's back (another writer of the folder), and checkpointed.
    const X = detKey('an unexpected key');
    w.write('x.cose', makeManifestEnvelope(makeManifest(detBytes(64, 'unexpected')), [X, S.R1]));
    expectOk(await w.run('log', 'append', 'tlog', 'x.cose'));
    expectOk(await w.run('log', 'checkpoint', 'tlog', '--key', 'logkey.key'));
    const found = await monitor('--since', 'seen.note', '--log-key', 'logkey.pub', '--json');
    expectRejected(found, 'KEY_NOT_IN_TRUST');
    expect(JSON.parse(found.out)).toMatchObject({ fromSize: 1, toSize: 2, findings: [{ index: 1, error: 'KEY_NOT_IN_TRUST', keyId: toHex(X.keyId) }] });
    // The consistency proof it served verifies offline from the checkpoint seen.
    w.write('step.json', JSON.stringify((await call('/api/log/consistency?from=1')).body));
    expectOk(await w.run('log', 'verify', '--consistency', 'step.json', '--from', 'seen.note', '--log-key', 'logkey.pub', '--origin', ORIGIN));
    // A log key the owner pinned that is not the served log's: its checkpoints do not open.
    expectOk(await w.run('keygen', 'stranger', '--dir', w.dir));
    expectRejected(await monitor('--log-key', 'stranger.pub'), 'BAD_SIGNATURE');
  });

  it('serve refuses --log-key without --log (USAGE, exit 2)', async () => {
    expectUsage(await w.run('serve', '--broker', broker.url, '--data', join(w.dir, 'd3'), '--log-key', 'logkey.key'));
  });

  it('fwseal serve --log --log-key as a process: the key unlocked with FWSEAL_PASSPHRASE, a checkpoint signed at start; another key stops the start', async () => {
    expectOk(await w.run('log', 'init', 'tlog2', '--origin', ORIGIN, '--key', 'logkey.pub'));
    const args = (key: string) => [
      '--broker',
      broker.url,
      '--data',
      w.path('d4'),
      '--trust',
      w.path('trust.cbor'),
      '--http',
      '127.0.0.1:0',
      '--prefix',
      'tlogchild',
      '--log',
      w.path('tlog2'),
      '--log-key',
      w.path(key),
    ];
    const env = { FWSEAL_PASSPHRASE: PASS };
    const child = await startServeChild(args('logkey.key'), { env, cleanups });
    const r = await fetch(`${child.url}/api/log/checkpoint`);
    expect([r.status, (await r.text()).split('\n').slice(0, 2)]).toEqual([200, [ORIGIN, '0']]);
    expect(await child.stop()).toBe(0);
    expectOk(await w.run('keygen', 'other-log', '--dir', w.dir));
    const refused = await runFwsealProcess(['serve', ...args('other-log.key')], env);
    expect([refused.status, codeIn(refused.err)]).toEqual([2, CODES.KEY_NOT_IN_TRUST]);
  });
});
