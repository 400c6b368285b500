/**
 * The server's half of the root of trust over MQTT (SPEC.md §12.13, §12.9) against a real mosquitto:
 * publishing a revocation list or trust bundle over the API (stored, announced retained, every
 * campaign re-checked), refusals with the verifier's code, root requests, start-up rules, several
 * instances on one data folder, and the propagation metrics from devices' `online` acknowledgements.
 * Raw MQTT clients act as devices. Codes are asserted, never messages.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier } from '../device/index.js';
import { nodeSha256 } from '../host/hash.js';
import { OtaServer, type OtaServerOptions } from '../host/ota/server.js';
import { toHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { parseEnvelope } from '../shared/cose.js';
import { topics } from '../shared/ota/topics.js';
import { runCli } from './support/cli-run.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { errorOf, eventually, RawDevice, retainedAnnouncement } from './support/ota-client.js';
import { api, createCampaign, metricsOf, retainedRoot, rootRequest, sample, serverMqtt } from './support/ota-harness.js';

const [A, B, C, D, E] = ['A', 'B', 'C', 'D', 'E'].map(detKey);
const [R1, R2, R3] = ['R1', 'R2', 'R3'].map(detKey);
const release = { release: [R1, R2, R3], releaseThreshold: 2 };
/** Trust 1 (root A B C), its successor 2 (root A B D, signed by A B: both thresholds), then 3 (root B D E, signed by B D). */
const T1 = makeTrust({ root: [A, B, C], rootThreshold: 2, ...release, signers: [A, B] });
const T2 = makeTrust({ root: [A, B, D], rootThreshold: 2, ...release, signers: [A, B], version: 2 });
const T3 = makeTrust({ root: [B, D, E], rootThreshold: 2, ...release, signers: [B, D], version: 3 });
const T5 = makeTrust({ root: [B, D, E], rootThreshold: 2, ...release, signers: [B, D], version: 5 });
/** Release key R1 leaked: list 1 revokes it; list 2 too, signed by the root keys of trust 1, 2 and 3. */
const RL1 = makeRevocations({ version: 1, keyIds: [R1.keyId], signers: [A, B] });
const RL2 = makeRevocations({ version: 2, keyIds: [R1.keyId], signers: [A, B, D] });
const RL1_OTHER = makeRevocations({ version: 1, keyIds: [R2.keyId], signers: [A, B] });
const RL3_UNREVOKES = makeRevocations({ version: 3, keyIds: [], signers: [A, B] });
const RL3_WEAK = makeRevocations({ version: 3, keyIds: [R1.keyId], signers: [A] });
const image = detBytes(60_000, 'root server image');
const manifest = makeManifest(image, { chunkSize: 1024 });
const SIGNED_BY_R1 = { envelope: makeManifestEnvelope(manifest, [R1, R3]), image };
const SIGNED_BY_R2 = { envelope: makeManifestEnvelope(manifest, [R2, R3]), image };
const verifier = createVerifier({ sha256: nodeSha256 });
const payloadDigest = (envelope: Uint8Array) => nodeSha256((parseEnvelope(envelope) as { envelope: { payload: Uint8Array } }).envelope.payload);

let broker: Mosquitto;
const servers: OtaServer[] = [];
const devices: RawDevice[] = [];
const dirs: string[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'fwseal-root-'));
  dirs.push(d);
  return d;
}

async function startServer(opts: Partial<OtaServerOptions> & { dataDir: string; prefix: string }): Promise<OtaServer> {
  const s = await OtaServer.start({ mqtt: serverMqtt(broker.url), trust: T1, http: { host: '127.0.0.1', port: 0 }, tickMs: 100, ...opts });
  servers.push(s);
  return s;
}

async function device(id: string, prefix: string, version: 4 | 5 = 4): Promise<RawDevice> {
  const d = await RawDevice.connect(broker.url, id, { version, prefix });
  devices.push(d);
  return d;
}

const publish = (s: OtaServer, envelope: Uint8Array) => api(s, 'POST', '/api/root', envelope);

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
});

afterAll(async () => {
  for (const d of devices) await d.close().catch(() => {});
  for (const s of servers) await s.close().catch(() => {});
  await broker?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('publishing a revocation list', () => {
  const P = 'rl';
  let s: OtaServer;
  const ids: Record<string, string> = {};
  beforeAll(async () => {
    s = await startServer({ dataDir: tempDir(), prefix: P });
    for (const [group, rel] of [
      ['g-bad', SIGNED_BY_R1],
      ['g-done', SIGNED_BY_R1],
      ['g-good', SIGNED_BY_R2],
    ] as const) {
      const r = await createCampaign(s, group, rel);
      expect(r.status).toBe(201);
      ids[group] = r.body.id;
    }
    // g-done completes: its one device fetched the manifest and confirmed.
    const d = await device('done-1', P);
    await d.online('g-done');
    await eventually(async () => (await s.store.devices('g-done')).length === 1);
    expect((await d.manifest(ids['g-done']!, 1)).type).toBe('manifestResponse');
    await d.status({ campaign: ids['g-done']!, device: 'done-1', state: 'confirmed' });
    await eventually(async () => (await s.store.campaign(ids['g-done']!))!.state === 'completed');
  });

  it('the root announcement is retained from the start: trust bundle 1, no list', async () => {
    const root = await retainedRoot(broker.url, P);
    expect(root?.trustVersion).toBe(1);
    expect(toHex(root!.trust)).toBe(toHex(T1));
    expect(root?.revocations).toBeUndefined();
  });

  it('is stored and announced; campaigns signed by the revoked key are halted with REVOKED_KEY, withdrawn and served no more', async () => {
    const r = await publish(s, RL1);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ kind: 'revocation-list', version: 1, changed: true });
    expect(new Set(r.body.halted)).toEqual(
      new Set([
        { id: ids['g-bad'], code: CODES.REVOKED_KEY },
        { id: ids['g-done'], code: CODES.REVOKED_KEY },
      ]),
    );
    expect(toHex((await retainedRoot(broker.url, P))!.revocations!)).toBe(toHex(RL1));
    const bad = (await api(s, 'GET', `/api/campaigns/${ids['g-bad']}`)).body;
    expect([bad.state, bad.haltCode]).toEqual(['halted', CODES.REVOKED_KEY]);
    // The completed campaign keeps its state (another may follow it in the group) but is withdrawn too.
    const done = (await api(s, 'GET', `/api/campaigns/${ids['g-done']}`)).body;
    expect([done.state, done.haltCode]).toEqual(['completed', CODES.REVOKED_KEY]);
    expect(await retainedAnnouncement(broker.url, 'g-bad', P)).toBeNull();
    expect(await retainedAnnouncement(broker.url, 'g-done', P)).toBeNull();
    expect((await retainedAnnouncement(broker.url, 'g-good', P))?.campaign).toBe(ids['g-good']);
    const d = await device('late-1', P);
    for (const g of ['g-bad', 'g-done']) expect(errorOf(await d.manifest(ids[g]!, g.length)).code).toBe(CODES.CAMPAIGN_INACTIVE);
    expect(errorOf((await d.blocks(ids['g-bad']!, 7, [[0, 1]]))[0]!).code).toBe(CODES.CAMPAIGN_INACTIVE);
    expect((await api(s, 'GET', `/api/campaigns/${ids['g-good']}`)).body).toMatchObject({ state: 'running', haltCode: null });
    expect((await d.manifest(ids['g-good']!, 9)).type).toBe('manifestResponse');
  });

  it('a halted campaign does not resume while its manifest fails, and new campaigns are checked against the new list', async () => {
    const resumed = await api(s, 'POST', `/api/campaigns/${ids['g-bad']}/resume`);
    expect([resumed.status, resumed.body.code]).toEqual([422, CODES.REVOKED_KEY]);
    expect(await retainedAnnouncement(broker.url, 'g-bad', P)).toBeNull();
    const created = await createCampaign(s, 'g-new', SIGNED_BY_R1);
    expect([created.status, created.body.code]).toEqual([422, CODES.REVOKED_KEY]);
  });

  it('an older list, another list of the stored version, or one that un-revokes a key is refused with REVOCATION_ROLLBACK; nothing changes', async () => {
    expect((await publish(s, RL2)).body).toMatchObject({ version: 2, changed: true, halted: [] });
    for (const [list, code] of [
      [RL1, CODES.REVOCATION_ROLLBACK],
      [RL1_OTHER, CODES.REVOCATION_ROLLBACK],
      [makeRevocations({ version: 2, keyIds: [R1.keyId, R2.keyId], signers: [A, B] }), CODES.REVOCATION_ROLLBACK],
      [RL3_UNREVOKES, CODES.REVOCATION_ROLLBACK],
      [RL3_WEAK, CODES.REVOCATION_THRESHOLD_NOT_MET],
      [SIGNED_BY_R2.envelope, CODES.WRONG_KIND],
    ] as const) {
      const r = await publish(s, list);
      expect([r.status, r.body.code]).toEqual([422, code]);
    }
    expect((await publish(s, new Uint8Array(20_000))).status).toBe(413);
    expect((await publish(s, RL2)).body).toMatchObject({ kind: 'revocation-list', version: 2, changed: false });
    expect(toHex((await retainedRoot(broker.url, P))!.revocations!)).toBe(toHex(RL2));
    expect((await api(s, 'GET', '/api/root')).body).toMatchObject({ trustVersion: 1, revocationVersion: 2, revocationSha256: toHex(payloadDigest(RL2)) });
  });
});

describe('trust rotations and root requests', () => {
  const P = 'rot';
  let s: OtaServer;
  beforeAll(async () => {
    s = await startServer({ dataDir: tempDir(), prefix: P, revocations: RL1 });
  });

  it('1 -> 2 -> 3: a bundle is the next version, and the stored list must verify under it', async () => {
    expect((await publish(s, T2)).body).toMatchObject({ kind: 'trust-bundle', version: 2, changed: true });
    // List 1 is signed by A and B; trust 3's root is B D E: publish a list its keys sign first.
    const early = await publish(s, T3);
    expect([early.status, early.body.code]).toEqual([422, CODES.REVOCATION_THRESHOLD_NOT_MET]);
    expect((await publish(s, RL2)).body).toMatchObject({ version: 2, changed: true });
    expect((await publish(s, T3)).body).toMatchObject({ kind: 'trust-bundle', version: 3, changed: true });
    for (const [bundle, code] of [
      [T1, CODES.TRUST_ROLLBACK],
      [T2, CODES.TRUST_ROLLBACK],
      [makeTrust({ root: [B, D, E], rootThreshold: 2, release: [R2, R3], releaseThreshold: 2, signers: [B, D], version: 3 }), CODES.TRUST_ROLLBACK],
      [T5, CODES.TRUST_VERSION_SKIP],
    ] as const) {
      const r = await publish(s, bundle);
      expect([r.status, r.body.code]).toEqual([422, code]);
    }
    expect((await publish(s, T3)).body).toMatchObject({ version: 3, changed: false });
    const root = await retainedRoot(broker.url, P);
    expect([root?.trustVersion, toHex(root!.trust), toHex(root!.revocations!)]).toEqual([3, toHex(T3), toHex(RL2)]);
    expect((await api(s, 'GET', '/api/root')).body).toMatchObject({ trustVersions: [1, 2, 3], trustVersion: 3, revocationVersion: 2 });
  });

  it('answers a request for each stored version with that bundle and a list a device on the version before takes', async () => {
    const d = await device('walker', P);
    let trust = verifier.loadTrust(T1);
    let kept = trust.ok ? verifier.verifyRevocations(RL1, trust.trust) : null;
    for (const v of [2, 3]) {
      const { response } = await rootRequest(d, 10 + v, v);
      expect(response?.trustVersion).toBe(v);
      expect(toHex(response!.trust)).toBe(toHex(v === 2 ? T2 : T3));
      // What a device on version v - 1 does with it (SPEC.md §11.3 updateTrust): both pass.
      if (!trust.ok || !kept?.ok) throw new Error('setup');
      const next = verifier.verifyTrustUpdate(response!.trust, trust.trust, kept.revocations);
      expect(next.ok).toBe(true);
      if (!next.ok) return;
      const list = verifier.verifyRevocations(response!.revocations!, next.trust, kept.revocations.list.version, kept.revocations);
      expect(list.ok).toBe(true);
      trust = next;
      kept = list;
    }
    expect(toHex((await rootRequest(d, 21, 1)).response!.revocations!)).toBe(toHex(RL1));
    expect((await rootRequest(d, 22, 9)).code).toBe(CODES.UNKNOWN_TRUST_VERSION);
  });

  it('follows the reply rules: another reply topic is refused, a malformed request gets BAD_REQUEST and is counted', async () => {
    const d = await device('asker', P, 5);
    await device('other', P);
    expect((await rootRequest(d, 31, 2, { responseTopic: topics.reply(P, 'other') })).code).toBe(CODES.REPLY_TOPIC_REFUSED);
    expect((await rootRequest(d, 32, 2, { replyTopic: topics.reply(P, 'other') })).code).toBe(CODES.REPLY_TOPIC_REFUSED);
    expect(devices.find((x) => x.id === 'other')!.messages).toEqual([]);
    const before = sample(await metricsOf(s), 'fwseal_malformed_messages_total', '{kind="request"}');
    await d.raw(topics.rootRequest(P, 'asker'), new Uint8Array([0xa1, 0x00, 0x0b]));
    const bad = await d.next((m) => m.type === 'errorReply' && errorOf(m).code === CODES.BAD_REQUEST);
    expect(bad.topic).toBe(topics.reply(P, 'asker'));
    expect(sample(await metricsOf(s), 'fwseal_malformed_messages_total', '{kind="request"}')).toBe(before + 1);
  });
});

describe('start-up', () => {
  it('a later start takes only the stored root or its successor: an older list is refused with REVOCATION_ROLLBACK', async () => {
    const dataDir = tempDir();
    const P = 'restart';
    let s = await startServer({ dataDir, prefix: P, revocations: RL1 });
    const created = await createCampaign(s, 'g-r', SIGNED_BY_R1);
    expect(created.status).toBe(422); // list 1 revokes R1
    await s.close();
    s = await startServer({ dataDir, prefix: P, revocations: RL2 });
    await s.close();
    await expect(startServer({ dataDir, prefix: P, revocations: RL1 })).rejects.toMatchObject({ codeName: 'REVOCATION_ROLLBACK' });
    await expect(startServer({ dataDir, prefix: P, revocations: RL1_OTHER })).rejects.toMatchObject({ codeName: 'REVOCATION_ROLLBACK' });
    await expect(startServer({ dataDir, prefix: P, trust: T3 })).rejects.toMatchObject({ codeName: 'TRUST_VERSION_SKIP' });
    s = await startServer({ dataDir, prefix: P, revocations: RL2 });
    expect((await api(s, 'GET', '/api/root')).body).toMatchObject({ trustVersion: 1, revocationVersion: 2 });
    await s.close();
    // No --trust on a later start: the stored root.
    s = await startServer({ dataDir, prefix: P, trust: undefined });
    expect((await api(s, 'GET', '/api/root')).body).toMatchObject({ trustVersion: 1, revocationVersion: 2 });
    expect(toHex((await retainedRoot(broker.url, P))!.revocations!)).toBe(toHex(RL2));
  });

  it('a start with a list that revokes a live campaign halts it before announcing anything', async () => {
    const dataDir = tempDir();
    const P = 'restart-halt';
    let s = await startServer({ dataDir, prefix: P });
    const id: string = (await createCampaign(s, 'g-h', SIGNED_BY_R1)).body.id;
    expect((await retainedAnnouncement(broker.url, 'g-h', P))?.campaign).toBe(id);
    await s.close();
    s = await startServer({ dataDir, prefix: P, revocations: RL1 });
    expect((await api(s, 'GET', `/api/campaigns/${id}`)).body).toMatchObject({ state: 'halted', haltCode: CODES.REVOKED_KEY });
    expect(await retainedAnnouncement(broker.url, 'g-h', P)).toBeNull();
  });

  it('the first start needs --trust', async () => {
    await expect(startServer({ dataDir: tempDir(), prefix: 'first', trust: undefined })).rejects.toMatchObject({ codeName: 'USAGE' });
  });
});

describe('several instances on one data folder', () => {
  it('share the stored root: what one stores, the other announces, answers and checks campaigns against', async () => {
    const dataDir = tempDir();
    const P = 'pair';
    const one = await startServer({ dataDir, prefix: P });
    const two = await startServer({ dataDir, prefix: P, trust: undefined });
    expect((await publish(one, RL1)).body).toMatchObject({ changed: true });
    expect((await publish(two, RL1)).body).toMatchObject({ changed: false });
    expect((await publish(two, T2)).body).toMatchObject({ version: 2, changed: true });
    expect((await api(one, 'GET', '/api/root')).body).toMatchObject({ trustVersion: 2, revocationVersion: 1 });
    const refused = await publish(one, RL1_OTHER);
    expect([refused.status, refused.body.code]).toEqual([422, CODES.REVOCATION_ROLLBACK]);
    expect((await createCampaign(one, 'g-p', SIGNED_BY_R1)).body.code).toBe(CODES.REVOKED_KEY);
    const d = await device('pair-1', P);
    // The broker hands each request to one instance: every answer is the same.
    for (let i = 0; i < 6; i++) expect(toHex((await rootRequest(d, 40 + i, 2)).response!.trust)).toBe(toHex(T2));
    for (const s of [one, two]) expect(sample(await metricsOf(s), 'fwseal_root_trust_version')).toBe(2);
    expect(sample(await metricsOf(one), 'fwseal_root_responses_total') + sample(await metricsOf(two), 'fwseal_root_responses_total')).toBe(6);
  });
});

describe('acknowledgements and propagation', () => {
  const P = 'prop';
  const group = 'g-prop';
  let s: OtaServer;
  const ack = (d: RawDevice, version: number, list?: Uint8Array) =>
    d.status({
      device: d.id,
      state: 'online',
      group,
      version: '1.0.0',
      counter: 1,
      trustVersion: 1,
      revocationVersion: version,
      ...(list ? { revocationDigest: payloadDigest(list) } : {}),
    });
  const metrics = async () => metricsOf(s);

  beforeAll(async () => {
    s = await startServer({ dataDir: tempDir(), prefix: P });
  });

  it('each device acknowledging a list adds one propagation time; the distribution and the enforcing ratio follow', async () => {
    const fleet = await Promise.all(['p-1', 'p-2', 'p-3'].map((id) => device(id, P)));
    for (const d of fleet) await ack(d, 0);
    await eventually(async () => (await s.store.devices(group)).length === 3);
    expect(sample(await metrics(), 'fwseal_revocation_propagation_seconds_count')).toBe(0);
    expect((await publish(s, RL1)).body.changed).toBe(true);
    await ack(fleet[0]!, 1, RL1);
    await ack(fleet[1]!, 1, RL1);
    await eventually(async () => sample(await metrics(), 'fwseal_revocation_propagation_seconds_count') === 2);
    let m = await metrics();
    expect(sample(m, 'fwseal_root_revocation_version')).toBe(1);
    expect(sample(m, 'fwseal_revocation_version', '{version="1"}')).toBe(2);
    expect(sample(m, 'fwseal_revocation_version', '{version="0"}')).toBe(1);
    expect(sample(m, 'fwseal_revocation_enforcing_ratio')).toBeCloseTo(2 / 3);
    expect(sample(m, 'fwseal_revocation_propagation_seconds_bucket', '{le="+Inf"}')).toBe(2);
    // The same acknowledgement again counts no more; a device first seen already enforcing is no propagation.
    await ack(fleet[0]!, 1, RL1);
    const fresh = await device('p-4', P);
    await ack(fresh, 1, RL1);
    await ack(fleet[2]!, 1, RL1);
    await eventually(async () => sample(await metrics(), 'fwseal_revocation_version', '{version="1"}') === 4);
    m = await metrics();
    expect(sample(m, 'fwseal_revocation_propagation_seconds_count')).toBe(3);
    expect(sample(m, 'fwseal_revocation_enforcing_ratio')).toBe(1);
    // A device two lists behind acknowledges both at once: one observation per list.
    const behind = await device('p-5', P);
    await ack(behind, 0);
    await eventually(async () => (await s.store.devices(group)).length === 5);
    expect((await publish(s, RL2)).body.changed).toBe(true);
    await ack(behind, 2, RL2);
    await eventually(async () => sample(await metrics(), 'fwseal_revocation_version', '{version="2"}') === 1);
    expect(sample(await metrics(), 'fwseal_revocation_propagation_seconds_count')).toBe(5);
  });

  it('/api/devices and the campaign detail show what each device enforces', async () => {
    const listed = (await api(s, 'GET', '/api/devices')).body.devices.find((x: any) => x.id === 'p-5');
    expect(listed).toMatchObject({ trustVersion: 1, revocationVersion: 2, revocationSha256: toHex(payloadDigest(RL2)) });
    const id: string = (await createCampaign(s, group, SIGNED_BY_R2)).body.id;
    const detail = (await api(s, 'GET', `/api/campaigns/${id}`)).body;
    expect(detail.devices).toContainEqual(expect.objectContaining({ id: 'p-5', state: 'waiting', trustVersion: 1, revocationVersion: 2 }));
    expect(detail.devices).toContainEqual(expect.objectContaining({ id: 'p-1', state: 'waiting', trustVersion: 1, revocationVersion: 1 }));
  });
});

describe('the CLI', () => {
  const codeIn = (text: string) => Number(text.match(/\(code (\d+)\)/)?.[1]);
  let dir: string;
  const file = (name: string, bytes: Uint8Array) => {
    writeFileSync(join(dir, name), bytes);
    return join(dir, name);
  };
  beforeAll(() => {
    dir = tempDir();
  });

  it('fwseal trust publish: exit 0 with what changed; a refused object exits 1 with the verifier code', async () => {
    const s = await startServer({ dataDir: tempDir(), prefix: 'cli' });
    const url = s.address()!.url;
    const first = await runCli(['trust', 'publish', file('RL1.cbor', RL1), '--server', url, '--json']);
    expect([first.status, JSON.parse(first.out)]).toEqual([0, { kind: 'revocation-list', version: 1, changed: true, halted: [] }]);
    const again = await runCli(['trust', 'publish', join(dir, 'RL1.cbor'), '--server', url]);
    expect(again.status).toBe(0);
    const other = await runCli(['trust', 'publish', file('RL1-other.cbor', RL1_OTHER), '--server', url]);
    expect([other.status, codeIn(other.err)]).toEqual([1, CODES.REVOCATION_ROLLBACK]);
    const rotated = await runCli(['trust', 'publish', file('T2.cbor', T2), '--server', url, '--json']);
    expect([rotated.status, JSON.parse(rotated.out).version]).toEqual([0, 2]);
  });

  it('fwseal revoke --publish signs, writes and uploads the list; the fleet gets it', async () => {
    const prior = process.env.FWSEAL_PASSPHRASE;
    process.env.FWSEAL_PASSPHRASE = 'root ceremony';
    try {
      for (const name of ['KA', 'KB', 'KR1', 'KR2']) expect((await runCli(['keygen', name, '--dir', dir])).status).toBe(0);
      const k = (n: string) => join(dir, n);
      const init = ['trust', 'init', '--root', k('KA.pub'), '--root', k('KB.pub'), '--root-threshold', '2', '--release', k('KR1.pub')];
      const trust = await runCli([
        ...init,
        '--release',
        k('KR2.pub'),
        '--release-threshold',
        '1',
        '--sign',
        k('KA.key'),
        '--sign',
        k('KB.key'),
        '--out',
        k('t.cbor'),
      ]);
      expect(trust.status).toBe(0);
      const s = await startServer({ dataDir: tempDir(), prefix: 'cli-revoke', trust: new Uint8Array(readFileSync(k('t.cbor'))) });
      const argv = ['revoke', '--trust', k('t.cbor'), '--version', '1', '--key', k('KR1.pub'), '--sign', k('KA.key'), '--sign', k('KB.key')];
      const r = await runCli([...argv, '--out', k('rl.cbor'), '--publish', '--server', s.address()!.url, '--json']);
      expect([r.status, JSON.parse(r.out).published]).toEqual([0, { kind: 'revocation-list', version: 1, changed: true, halted: [] }]);
      expect(toHex((await retainedRoot(broker.url, 'cli-revoke'))!.revocations!)).toBe(toHex(readFileSync(k('rl.cbor'))));
    } finally {
      if (prior === undefined) delete process.env.FWSEAL_PASSPHRASE;
      else process.env.FWSEAL_PASSPHRASE = prior;
    }
  });

  it('fwseal serve refuses an older --revocations than the stored list: exit 2 with REVOCATION_ROLLBACK', async () => {
    const dataDir = tempDir();
    await (await startServer({ dataDir, prefix: 'cli-serve', revocations: RL2 })).close();
    const r = await runCli(['serve', '--broker', broker.url, '--data', dataDir, '--revocations', file('old.cbor', RL1), '--http', '127.0.0.1:0']);
    expect([r.status, codeIn(r.err)]).toEqual([2, CODES.REVOCATION_ROLLBACK]);
  });
});
