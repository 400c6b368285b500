/**
 * Log proofs delivered over MQTT (issue 19 items 2 and 5): the real `fwseal serve` hosting a
 * transparency log (OtaServer with `tlog`, in-process), a real mosquitto on loopback, and device
 * clients whose trust bundle carries a log policy (format 2). Devices ask for the proof of the
 * campaign's manifest before they verify it, the server builds it from the log, and the agent checks
 * it (inclusion in a signed checkpoint, consistency from the checkpoint it stored) before anything is
 * written. A server whose checkpoint is not signed yet is asked again until it is; one that never has
 * a proof leaves the device refusing the manifest (LOG_PROOF_MISSING). A device without a policy asks
 * for nothing new.
 */
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { SimFlash } from '../device/sim/flash.js';
import { fleetVerifier } from '../host/hash.js';
import { OtaDevice, type OtaPullOptions } from '../host/ota/device-client.js';
import { serveLogProofs } from '../host/ota/log-proof-requests.js';
import { OtaServer } from '../host/ota/server.js';
import { signCheckpoint } from '../host/tlog/log.js';
import { cosignNote, formatNote, parseNote } from '../host/tlog/note.js';
import { appendEntries, initLog } from '../host/tlog/store.js';
import { CODES } from '../shared/codes.js';
import { parseLogProof } from '../shared/log-proof.js';
import { encodeLogProofRequest, parseLogProofResponse } from '../shared/ota/log-proof.js';
import { encodeTrustBundle } from '../shared/trust.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, signWith, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { errorOf, eventually, type Msg, RawDevice } from './support/ota-client.js';
import { api, createCampaign, metricsOf, sample, serverMqtt } from './support/ota-harness.js';
import { worldBundle } from './support/tlog-device-world.js';

const W = standardWorld();
const ORIGIN = 'example.com/ota-log';
const LOG = detKey('LOG');
const verifier = fleetVerifier();

/** The standard trust bundle, plus the policy: proofs in checkpoints signed by LOG (format 2). */
const policyTrust = worldBundle(W, { origin: ORIGIN, logKey: LOG.publicKey, witnessThreshold: 0, witnesses: [] });
const release = (version: string, counter: number, size: number) => {
  const image = detBytes(size, `tlog-ota ${version}`);
  return { version, image, envelope: makeManifestEnvelope(makeManifest(image, { version, securityCounter: counter, chunkSize: 4096 }), [W.R1, W.R2]) };
};
const v1 = release('1.0.0', 5, 20_000);
const v2 = release('2.0.0', 6, 40_000);
const v3 = release('3.0.0', 7, 40_000);
/** Other signed objects a busy log holds between two releases. */
const others = [0, 1, 2].map((i) => release(`0.0.${i}`, 1, 5000).envelope);

const E = 4096;
const SLOT = 128 * 1024;
const geometry = { size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
const layout = createLayout(geometry, { slotSize: SLOT });

const dir = mkdtempSync(join(tmpdir(), 'fwseal-tlog-ota-'));
let broker: Mosquitto;
const live: { stop(): Promise<unknown> }[] = [];

beforeAll(async () => {
  broker = await startMosquitto({ persistence: false });
});
afterEach(async () => {
  await Promise.allSettled(live.splice(0).map((x) => x.stop()));
});
afterAll(async () => {
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A new log in dir/NAME whose key is LOG. */
function newLog(name: string): string {
  const d = join(dir, name);
  initLog(d, ORIGIN, LOG);
  return d;
}

/**
 * A server on its own prefix hosting `log` (with the log key: it signs checkpoints itself), or no log.
 * `serveLogProofs` is what `fwseal serve --log` does when it starts (host/ota/server.ts).
 */
async function startServer(name: string, log: { dir: string; sign: boolean } | null, trust = policyTrust): Promise<OtaServer> {
  const s = await OtaServer.start({
    mqtt: serverMqtt(broker.url),
    dataDir: join(dir, `data-${name}`),
    prefix: name,
    trust,
    http: { host: '127.0.0.1', port: 0 },
    tickMs: 100,
    ...(log ? { tlog: { dir: log.dir, ...(log.sign ? { key: LOG } : {}), checkpointIntervalMs: 50 } } : {}),
  });
  serveLogProofs(s.store, s.tlog);
  live.push({ stop: () => s.close() });
  return s;
}

type Sim = { device: OtaDevice; events: string[] };

async function startDevice(prefix: string, id: string, group: string, pull: OtaPullOptions = {}, trust = policyTrust): Promise<Sim> {
  const flash = new SimFlash(geometry);
  const p = provision(flash, layout, { deviceClass: 'acme-gw', trust, envelope: v1.envelope, image: v1.image, verifier });
  if (!p.ok) throw new Error(`provision: ${p.error}`);
  const events: string[] = [];
  const device = await OtaDevice.start({
    id,
    group,
    prefix,
    flash,
    layout,
    trust,
    verifier,
    maxTrialBoots: 2,
    mqtt: { url: broker.url, options: { protocolVersion: 4, clientId: `tlog-ota-${prefix}-${id}`, reconnectPeriod: 200 } },
    pull: { timeoutMs: 1500, baseBackoffMs: 50, maxBackoffMs: 300, retryBaseMs: 50, retryMaxMs: 300, ...pull },
    onStatus: (e) => events.push(`${e.state}${e.code ? `:${e.code}` : ''}${e.stage !== undefined ? `@${e.stage}` : ''}`),
  });
  live.push({ stop: () => device.stop() });
  return { device, events };
}

const confirmedOn = (s: Sim, version: string) => s.device.state().version === version && s.device.state().lastStatus?.state === 'confirmed';
const storedSize = (s: Sim) => {
  const r = s.device.agent.logRequirement();
  if (!r.ok) throw new Error(r.error);
  return r.fromSize;
};
const logProofRequests = async (s: OtaServer) => sample(await metricsOf(s), 'fwseal_requests_total', '{kind="log-proof"}');
const errorReplies = async (s: OtaServer) => sample(await metricsOf(s), 'fwseal_requests_total', '{kind="error"}');

describe('log proofs over MQTT (issue 19 item 2)', () => {
  it('devices under a log policy fetch the proof, confirm, store the checkpoint, and advance with a consistency proof', async () => {
    const log = newLog('log-main');
    const server = await startServer('pmain', { dir: log, sign: true });
    const sims = await Promise.all(['d1', 'd2', 'd3'].map((id) => startDevice('pmain', id, 'g')));
    expect(sims.map(storedSize)).toEqual([0, 0, 0]); // nothing stored yet: the first checkpoint is taken on first use

    const first = await createCampaign(server, 'g', v2);
    expect(first.status).toBe(201);
    await eventually(() => sims.every((s) => confirmedOn(s, '2.0.0')), 60_000, 'v2 confirmed on every device');
    expect(sims.map(storedSize)).toEqual([1, 1, 1]);
    // The group takes its next campaign once the server has counted the confirmations (SPEC.md §12.9).
    await eventually(async () => (await api(server, 'GET', `/api/campaigns/${first.body.id}`)).body.state === 'completed', 30_000, 'v2 campaign completed');
    expect(await logProofRequests(server)).toBeGreaterThanOrEqual(3);

    // The log grows (other releases, a busy log) before the next campaign: the devices hold the checkpoint
    // of size 1 and must be led to the new one by a consistency proof from exactly that size.
    appendEntries(log, others);
    expect((await createCampaign(server, 'g', v3)).status).toBe(201);
    await eventually(() => sims.every((s) => confirmedOn(s, '3.0.0')), 60_000, 'v3 confirmed on every device');
    expect(sims.map(storedSize)).toEqual([5, 5, 5]);
    for (const s of sims) expect(s.events.filter((e) => e.startsWith('rejected') || e.startsWith('failed'))).toEqual([]);
  }, 120_000);

  it('the server answers from the log: the attachment, LOG_PROOF_UNAVAILABLE before a checkpoint has the entry, LOG_CHECKPOINT_BEHIND past it', async () => {
    const log = newLog('log-raw');
    const server = await startServer('praw', { dir: log, sign: false });
    const created = await createCampaign(server, 'g', v2);
    expect(created.status).toBe(201);
    const campaign = created.body.id as string;
    const raw = await RawDevice.connect(broker.url, 'raw-1', { prefix: 'praw' });
    live.push({ stop: () => raw.close() });
    await raw.online('g');
    const ask = async (requestId: number, fromSize: number) => {
      await raw.request(campaign, encodeLogProofRequest({ campaign, requestId, fromSize }));
      const idOf = (m: Msg) => {
        if (m.type === 'errorReply') return errorOf(m).requestId;
        const r = m.type === 'logProofResponse' ? parseLogProofResponse(m.payload) : null;
        return r?.ok ? r.value.requestId : undefined;
      };
      return raw.next((m) => idOf(m) === requestId);
    };
    expect(errorOf(await ask(1, 0)).code).toBe(CODES.LOG_PROOF_UNAVAILABLE); // appended, no checkpoint signed
    signCheckpoint(log, LOG); // as `fwseal log checkpoint` where the key is: the server serves what it finds
    const got = await ask(2, 0);
    expect(got.type).toBe('logProofResponse');
    const proof = parseLogProof((parseLogProofResponse(got.payload) as { value: { proof: Uint8Array } }).value.proof);
    expect(proof).toMatchObject({ ok: true, value: { index: 0, size: 1 } });
    expect(errorOf(await ask(3, 2)).code).toBe(CODES.LOG_CHECKPOINT_BEHIND);
  }, 60_000);

  it('a checkpoint not yet signed: devices ask again until it is, then confirm', async () => {
    const log = newLog('log-late');
    const server = await startServer('plate', { dir: log, sign: false });
    const sim = await startDevice('plate', 'late-1', 'g', { logProofAttempts: 200 });
    expect((await createCampaign(server, 'g', v2)).status).toBe(201);
    await eventually(async () => (await errorReplies(server)) >= 2, 30_000, 'the device asked twice and was told LOG_PROOF_UNAVAILABLE');
    expect(sim.events.some((e) => e.startsWith('accepted'))).toBe(false); // nothing verified, nothing written yet
    signCheckpoint(log, LOG);
    await eventually(() => confirmedOn(sim, '2.0.0'), 60_000, 'v2 confirmed after the checkpoint was signed');
    expect(storedSize(sim)).toBe(1);
  }, 120_000);

  it('a proof that never comes (a server without a log): after its attempts the device refuses the manifest, LOG_PROOF_MISSING at the manifest stage', async () => {
    const server = await startServer('pnone', null);
    const sim = await startDevice('pnone', 'none-1', 'g', { logProofAttempts: 3 });
    expect((await createCampaign(server, 'g', v2)).status).toBe(201);
    await eventually(() => sim.device.state().lastStatus?.state === 'rejected', 30_000, 'the device refused');
    expect(sim.events.filter((e) => e.startsWith('rejected'))).toEqual([`rejected:${CODES.LOG_PROOF_MISSING}@manifest`]);
    expect(await logProofRequests(server)).toBe(0);
    expect(await errorReplies(server)).toBeGreaterThanOrEqual(3);
    expect(sim.device.state().version).toBe('1.0.0');
    expect(storedSize(sim)).toBe(0);
  }, 60_000);

  it('a witnessed log: a proof not yet cosigned is refused and asked for again; once the witness cosigned, the device takes it', async () => {
    const WIT = detKey('WIT');
    const witnessName = 'witness.example/w1';
    const trust = signWith(
      encodeTrustBundle({
        version: 1,
        root: { threshold: 2, keys: [W.A, W.B, W.C].map((k) => k.publicKey) },
        release: { threshold: 2, keys: [W.R1, W.R2, W.R3].map((k) => k.publicKey) },
        log: { origin: ORIGIN, logKey: LOG.publicKey, witnessThreshold: 1, witnesses: [{ name: witnessName, key: WIT.publicKey }] },
      }),
      [W.A, W.B],
    );
    const log = newLog('log-wit');
    const server = await startServer('pwit', { dir: log, sign: true }, trust);
    const sim = await startDevice('pwit', 'wit-1', 'g', { logProofAttempts: 200 }, trust);
    expect((await createCampaign(server, 'g', v2)).status).toBe(201);
    await eventually(async () => (await logProofRequests(server)) >= 2, 30_000, 'a proof served, refused, and asked for again');
    expect(sim.events.some((e) => e.startsWith('accepted') || e.startsWith('rejected'))).toBe(false);
    // The witness cosigns the server's checkpoint (as `fwseal log cosign` does, atomically): the next proof carries it.
    const path = join(log, 'checkpoint.note');
    const note = parseNote(readFileSync(path, 'utf8'));
    const cosigned = formatNote({ text: note.text, signatures: [...note.signatures, cosignNote(note.text, WIT, witnessName, Math.floor(Date.now() / 1000))] });
    writeFileSync(`${path}.new`, cosigned);
    renameSync(`${path}.new`, path);
    await eventually(() => confirmedOn(sim, '2.0.0'), 60_000, 'v2 confirmed once the checkpoint is cosigned');
    expect(storedSize(sim)).toBe(1);
  }, 120_000);

  it('a device without a log policy asks for no proof, from a server that hosts a log', async () => {
    const log = newLog('log-plain');
    const server = await startServer('pplain', { dir: log, sign: true }, W.trust);
    const sim = await startDevice('pplain', 'plain-1', 'g', {}, W.trust);
    expect((await createCampaign(server, 'g', v2)).status).toBe(201);
    await eventually(() => confirmedOn(sim, '2.0.0'), 60_000, 'v2 confirmed');
    expect(await logProofRequests(server)).toBe(0);
    expect(await errorReplies(server)).toBe(0);
    expect(sim.device.agent.logRequirement()).toMatchObject({ ok: true, required: false });
  }, 60_000);
});
