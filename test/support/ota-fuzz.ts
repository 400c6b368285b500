/**
 * The OTA server fuzzer (run by tools/fuzz-ota.ts and test/ota-fuzz.test.ts).
 *
 * Status-event and reply-topic abuse against a live `fwseal serve` (issue 11, findings 2 and 3):
 * `fuzzOtaServer({ runs, seed })` starts a mosquitto and a real OtaServer with two campaigns, then
 * throws seeded random status events (any device id, group, campaign, state, counts, codes) and
 * requests (any type, campaign, multicast flag, Response Topic and payload reply topic, mutated and
 * oversize payloads) at it from one publisher that plays every identity, while a subscriber to `#`
 * records everything the broker carries. Invariants (SPEC.md §12.4, §12.9, §12.11):
 *
 * - the campaign is never halted, and no row counts, for devices that do not take part (another
 *   group, invented, outside the waves, never served the manifest); replays never undo a terminal state;
 * - the server publishes only on the reply topic of the device that sent the request (replies carry
 *   that device's request id), on its groups' announce topics (announcements only), on its
 *   campaigns' data topics (multicast block responses only) and on the root topic (its own root
 *   announcement, SPEC.md §12.13): never where a requester asked;
 * - the store does not grow with invented ids (fetches, rows, at most `maxDevices` devices);
 * - the server never logs a dropped message or a failed request, and still answers afterwards;
 * - and the rule is not vacuous: at the end one device that does take part fails, and that halts.
 *
 * Case n of seed s is the same on every machine (the broker's timing is not). Bounded: every wait
 * has a deadline and no case is generated after `deadlineMs`.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { nodeSha256 } from '../../host/hash.js';
import { OtaServer } from '../../host/ota/server.js';
import { CODES } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { messageType } from '../../shared/ota/codec.js';
import {
  encodeBlockRequest,
  encodeManifestRequest,
  encodePageRequest,
  parseAnnouncement,
  parseBlockResponse,
  parseErrorReply,
  parseManifestResponse,
  parsePageResponse,
} from '../../shared/ota/messages.js';
import { encodeRootAnnouncement } from '../../shared/ota/root.js';
import { encodeStatusEvent, type StatusEvent } from '../../shared/ota/status.js';
import { rolloutBucket, topics } from '../../shared/ota/topics.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './fixtures.js';
import { mutate } from './fuzz/mutators.js';
import { Rng } from './fuzz/rng.js';
import { startMosquitto } from './mosquitto.js';
import { createCampaign, serverMqtt } from './ota-harness.js';

export type OtaFuzzOptions = { readonly runs: number; readonly seed: number; readonly deadlineMs?: number };
export type OtaFuzzResult = { cases: number; failures: string[] };

const P = 'fwseal';
const GROUP_A = 'fz-a';
const GROUP_B = 'fz-b';
const MAX_DEVICES = 64;
const MAX_FAILURES = 50;
const WAIT_MS = 15_000;
const STATES = ['accepted', 'downloading', 'verifying', 'installed', 'confirmed', 'rejected', 'failed', 'online'] as const;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

type Seen = { topic: string; payload: Uint8Array; retain: boolean };

/** The fleet around campaign A: who counts (served the manifest), who must never count, and why. */
type Cast = { counted: string[]; quiet: string; outside: string[]; groupB: string[]; a: string; b: string };

export async function fuzzOtaServer(opts: OtaFuzzOptions): Promise<OtaFuzzResult> {
  const failures: string[] = [];
  const fail = (m: string) => {
    if (failures.length < MAX_FAILURES) failures.push(`seed ${opts.seed}: ${m}`);
  };
  const deadline = Date.now() + (opts.deadlineMs ?? 120_000);
  const broker = await startMosquitto({ persistence: false });
  const dataDir = mkdtempSync(join(tmpdir(), 'fwseal-fuzz-ota-'));
  const log: string[] = [];
  const clients: MqttClient[] = [];
  let server: OtaServer | null = null;
  let cases = 0;
  try {
    const w = standardWorld();
    server = await OtaServer.start({
      mqtt: serverMqtt(broker.url),
      dataDir,
      trust: w.trust,
      http: { host: '127.0.0.1', port: 0 },
      tickMs: 50,
      coalesceMs: 5,
      responseQos: 1,
      maxDevices: MAX_DEVICES,
      log: (l) => log.push(l),
    });
    const seen: Seen[] = [];
    const observer = await mqtt.connectAsync(broker.url, { clientId: `fz-observer-${opts.seed}`, reconnectPeriod: 0 });
    clients.push(observer);
    observer.on('message', (topic, payload, packet) => seen.push({ topic, payload: new Uint8Array(payload), retain: !!packet.retain }));
    await observer.subscribeAsync('#', { qos: 1 });
    const fuzz = await mqtt.connectAsync(broker.url, { clientId: `fz-publisher-${opts.seed}`, protocolVersion: 5, reconnectPeriod: 0 });
    clients.push(fuzz);

    const published = new Map<string, Set<string>>();
    const owner = new Map<number, { device: string; index: number }>();
    const publish = async (topic: string, payload: Uint8Array, responseTopic?: string) => {
      let s = published.get(topic);
      if (!s) published.set(topic, (s = new Set()));
      s.add(sha(payload));
      await fuzz.publishAsync(topic, Buffer.from(payload), { qos: 1, ...(responseTopic !== undefined ? { properties: { responseTopic } } : {}) });
    };
    // Request ids spread over 32 bits (an odd multiplier is a bijection): a mutated junk request
    // carries some small or boundary value, never by chance another request's id.
    let nextRid = 1;
    const rid = (device: string, index: number) => {
      let r: number;
      do r = Math.imul(nextRid++, 0x9e3779b1) >>> 0;
      while (r < 0x10000);
      owner.set(r, { device, index });
      return r;
    };

    const cast = await setUp(server, publish, rid, seen);
    const barrier = async (what: string) => {
      const r = rid(cast.counted[0]!, -1);
      await publish(topics.request(P, cast.a, cast.counted[0]!), encodeManifestRequest({ campaign: cast.a, requestId: r }));
      const until = Date.now() + WAIT_MS;
      while (!seen.some((m) => m.topic === topics.reply(P, cast.counted[0]!) && requestIdOf(m.payload) === r)) {
        if (Date.now() > until) throw new Error(`no answer to the ${what} barrier within ${WAIT_MS} ms`);
        await new Promise((res) => setTimeout(res, 10));
      }
    };
    const check = async (what: string) => {
      await barrier(what);
      // Block answers held for multicast go out within the hold (25 windows of 5 ms): one more barrier after it.
      await new Promise((res) => setTimeout(res, 25 * 5 + 20));
      await barrier(what);
      await checkInvariants(server!, cast, seen.splice(0), published, owner, log, fail, what);
    };

    for (let i = 0; i < opts.runs && Date.now() < deadline; i++) {
      const c = makeOtaCase(new Rng(opts.seed, i), cast, (d) => rid(d, i));
      for (const m of c) await publish(m.topic, m.payload, m.responseTopic);
      cases++;
      if (cases % 100 === 0) await check(`after case ${i}`);
    }
    await check('at the end');

    // Not vacuous: the quiet device of wave 1 takes part for real (served the manifest), fails, and that halts.
    const q = cast.quiet;
    await publish(topics.request(P, cast.a, q), encodeManifestRequest({ campaign: cast.a, requestId: rid(q, -1) }));
    await barrier('quiet device served');
    await publish(topics.status(P, q), encodeStatusEvent({ campaign: cast.a, device: q, state: 'failed', code: CODES.TRANSPORT_TIMEOUT }));
    const until = Date.now() + WAIT_MS;
    while ((await server.store.campaign(cast.a))?.state !== 'halted') {
      if (Date.now() > until) {
        fail('a counted failure did not halt the campaign');
        break;
      }
      await new Promise((res) => setTimeout(res, 20));
    }
  } catch (e) {
    fail(`run aborted after ${cases} cases: ${(e as Error).message}`);
  } finally {
    for (const c of clients) await c.endAsync(true).catch(() => undefined);
    await server?.close().catch((e: Error) => fail(`close: ${e.message}`));
    await broker.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  return { cases, failures };
}

type Publish = (topic: string, payload: Uint8Array, responseTopic?: string) => Promise<void>;

/** Group A (8 devices, waves 50/100, any counted failure halts) and group B (4 devices, its own campaign). */
async function setUp(server: OtaServer, publish: Publish, rid: (device: string, index: number) => number, seen: Seen[]): Promise<Cast> {
  const w = standardWorld();
  const release = (label: string) => {
    const image = detBytes(24_000, `fuzz ota ${label}`);
    return { envelope: makeManifestEnvelope(makeManifest(image, { chunkSize: 1024, version: `1.0.${label.length}` }), [w.R1, w.R2]), image };
  };
  const groupA = Array.from({ length: 8 }, (_, i) => `fz-a${i}`);
  const groupB = Array.from({ length: 4 }, (_, i) => `fz-b${i}`);
  for (const [ids, group] of [
    [groupA, GROUP_A],
    [groupB, GROUP_B],
  ] as const) {
    for (const d of ids) await publish(topics.status(P, d), encodeStatusEvent({ device: d, state: 'online', group, version: '0.1.0', counter: 1 }));
  }
  await waitFor(async () => (await server.store.deviceCount()) === 12, 'the fleet known');
  const a = await createCampaign(server, GROUP_A, release('a'), { waves: [50, 100], abortFailureRate: 0 });
  const b = await createCampaign(server, GROUP_B, release('bb'));
  if (a.status !== 201 || b.status !== 201) throw new Error(`campaigns not created: ${a.status} ${b.status}`);
  const inWave = groupA.filter((d) => rolloutBucket(nodeSha256, a.body.id, d) < a.body.rollout);
  const cast: Cast = {
    counted: inWave.slice(0, 3),
    quiet: inWave[3]!,
    outside: groupA.filter((d) => !inWave.includes(d)),
    groupB,
    a: a.body.id,
    b: b.body.id,
  };
  // The devices that take part: served the manifest, then confirmed (terminal: nothing may undo it).
  for (const d of cast.counted) {
    const r = rid(d, -1);
    await publish(topics.request(P, cast.a, d), encodeManifestRequest({ campaign: cast.a, requestId: r }));
    await waitFor(() => seen.some((m) => m.topic === topics.reply(P, d) && requestIdOf(m.payload) === r), `${d} served`);
    await publish(topics.status(P, d), encodeStatusEvent({ campaign: cast.a, device: d, state: 'confirmed' }));
  }
  await waitFor(async () => (await server.store.statuses(cast.a)).length === 3, 'three confirmations counted');
  return cast;
}

async function waitFor(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const until = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`${what}: not within ${WAIT_MS} ms`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

type Message = { topic: string; payload: Uint8Array; responseTopic?: string };

/** One case: a status event, a request or junk, from any identity. */
function makeOtaCase(rng: Rng, cast: Cast, rid: (device: string) => number): Message[] {
  const invented = () => `x${rng.u32().toString(36)}`;
  const device = rng.weighted<string>([
    [invented(), 3],
    [rng.pick(cast.groupB), 2],
    [rng.pick(cast.outside), 2],
    [cast.quiet, 2],
    [rng.pick(cast.counted), 1],
  ]);
  const campaign = rng.weighted<string>([
    [cast.a, 5],
    [cast.b, 2],
    [invented(), 1],
  ]);
  const kind = rng.weighted<'status' | 'request' | 'junk-request' | 'junk-status'>([
    ['status', 4],
    ['request', 4],
    ['junk-request', 1],
    ['junk-status', 1],
  ]);
  if (kind === 'status') return [{ topic: topics.status(P, device), payload: statusPayload(rng, cast, device, campaign) }];
  if (kind === 'request') return [requestMessage(rng, cast, device, campaign, rid(device))];
  const base = kind === 'junk-request' ? requestMessage(rng, cast, device, campaign, rid(device)).payload : statusPayload(rng, cast, device, campaign);
  // A mutated refused request may become a plain one: never for the quiet device's campaign A requests.
  const mayMutate = !(kind === 'junk-request' && device === cast.quiet && campaign === cast.a);
  const payload = rng.chance(0.1)
    ? rng.bytes(LIMITS.maxOtaMessageBytes + rng.range(1, 4096))
    : rng.chance(0.2) || !mayMutate
      ? rng.bytes(rng.range(0, 300))
      : mutate(rng, base, [base]).bytes;
  return [{ topic: kind === 'junk-request' ? topics.request(P, campaign, device) : topics.status(P, device), payload }];
}

function statusPayload(rng: Rng, cast: Cast, device: string, campaign: string): Uint8Array {
  const state = rng.pick(STATES);
  const named = rng.chance(0.9) ? device : `x${rng.u32().toString(36)}`; // sometimes another device than the topic's
  // `online` only for identities outside group A: one claiming group A would join the campaign's fleet.
  if (state === 'online') {
    if (device === cast.quiet || cast.counted.includes(device) || cast.outside.includes(device))
      return encodeStatusEvent({ device: named, state: 'accepted', campaign });
    return encodeStatusEvent({
      device: named,
      state,
      group: rng.pick([GROUP_B, `g${rng.int(1000)}`]),
      version: rng.pick(['1.0.1', '1.0.2', '9.9.9']),
      counter: rng.int(10),
    });
  }
  const e: StatusEvent = {
    campaign,
    device: named,
    state,
    ...(state === 'downloading'
      ? (() => {
          const total = rng.range(1, 1000);
          return { done: rng.int(total + 1), total };
        })()
      : {}),
    ...(state === 'rejected' || state === 'failed' ? { code: rng.range(1, 999) } : {}),
  };
  return encodeStatusEvent(e);
}

function requestMessage(rng: Rng, cast: Cast, device: string, campaign: string, requestId: number): Message {
  const own = topics.reply(P, device);
  const foreign = () =>
    rng.pick([
      topics.reply(P, rng.pick([...cast.counted, cast.quiet, ...cast.groupB])),
      topics.announce(P, GROUP_A),
      topics.announce(P, GROUP_B),
      topics.data(P, cast.a),
      topics.data(P, cast.b),
      topics.status(P, cast.quiet),
      topics.request(P, cast.a, cast.quiet),
      'elsewhere/x',
      `${P}/custom/${device}`,
      `${P}/${'l'.repeat(200)}`,
      `${P}/device/${device}/reply/more`,
      `${P}/ü/${device}`,
    ]);
  // The quiet device must never be served campaign A's manifest: its requests there always name another topic.
  const mustRefuse = device === cast.quiet && campaign === cast.a;
  const mode = mustRefuse
    ? rng.pick(['rt-foreign', 'key3-foreign', 'both-foreign-rt', 'both-foreign-key3'] as const)
    : rng.pick(['none', 'rt-own', 'key3-own', 'rt-foreign', 'key3-foreign', 'both-foreign-rt', 'both-foreign-key3'] as const);
  const responseTopic = mode === 'rt-own' || mode === 'both-foreign-key3' ? own : mode === 'rt-foreign' || mode === 'both-foreign-rt' ? foreign() : undefined;
  const replyTopic = mode === 'key3-own' || mode === 'both-foreign-rt' ? own : mode === 'key3-foreign' || mode === 'both-foreign-key3' ? foreign() : undefined;
  const common = { campaign, requestId, ...(replyTopic !== undefined ? { replyTopic } : {}) };
  const type = rng.pick(['manifest', 'page', 'block'] as const);
  const payload =
    type === 'manifest'
      ? encodeManifestRequest(common)
      : type === 'page'
        ? encodePageRequest({ ...common, page: rng.int(3) })
        : encodeBlockRequest({ ...common, ranges: [[rng.int(4), rng.range(1, 3)]], ...(rng.chance(0.5) ? { multicast: true } : {}) });
  return { topic: topics.request(P, campaign, device), payload, ...(responseTopic !== undefined ? { responseTopic } : {}) };
}

function requestIdOf(payload: Uint8Array): number | undefined {
  const t = messageType(payload);
  if (!t.ok) return undefined;
  const p =
    t.type === 'manifestResponse'
      ? parseManifestResponse(payload)
      : t.type === 'pageResponse'
        ? parsePageResponse(payload)
        : t.type === 'blockResponse'
          ? parseBlockResponse(payload)
          : t.type === 'errorReply'
            ? parseErrorReply(payload)
            : null;
  return p?.ok ? p.value.requestId : undefined;
}

/** Every recorded message is the fuzzer's own, or one the server may send; then the store and the log. */
async function checkInvariants(
  server: OtaServer,
  cast: Cast,
  seen: Seen[],
  published: Map<string, Set<string>>,
  owner: Map<number, { device: string; index: number }>,
  log: string[],
  fail: (m: string) => void,
  when: string,
): Promise<void> {
  const caseOf = (r: number | undefined) => (r === undefined ? 'no request id' : `request id ${r} of case ${owner.get(r)?.index ?? '?'}`);
  for (const m of seen) {
    if (published.get(m.topic)?.has(sha(m.payload))) continue;
    const reply = m.topic.match(/^fwseal\/device\/([A-Za-z0-9_-]{1,64})\/reply$/);
    const announce = m.topic.match(/^fwseal\/group\/([A-Za-z0-9_-]{1,64})\/announce$/);
    const data = m.topic.match(/^fwseal\/campaign\/([A-Za-z0-9_-]{1,64})\/data$/);
    const r = requestIdOf(m.payload);
    if (reply) {
      const o = r === undefined ? undefined : owner.get(r);
      if (o && o.device !== reply[1]) fail(`${when}: the answer to ${caseOf(r)} (from ${o.device}) went to ${m.topic}`);
      if (!o && ![...owner.values()].some((x) => x.device === reply[1])) fail(`${when}: a reply on ${m.topic}, which never asked (${caseOf(r)})`);
    } else if (announce) {
      const a = parseAnnouncement(m.payload);
      const want = announce[1] === GROUP_A ? cast.a : announce[1] === GROUP_B ? cast.b : null;
      if (!a.ok || a.value.campaign !== want) fail(`${when}: not the server's announcement on ${m.topic} (${caseOf(r)})`);
    } else if (m.topic === topics.root(P)) {
      const own = await server.root.announcement();
      if (!own || sha(m.payload) !== sha(encodeRootAnnouncement(own))) fail(`${when}: not the server's root announcement on ${m.topic}`);
    } else if (data) {
      const b = parseBlockResponse(m.payload);
      if (!b.ok || b.value.requestId !== 0 || b.value.campaign !== data[1] || (data[1] !== cast.a && data[1] !== cast.b))
        fail(`${when}: not a multicast block on ${m.topic} (${caseOf(r)})`);
    } else fail(`${when}: the server published on ${m.topic} (${caseOf(r)})`);
  }
  const rows = await server.store.statuses(cast.a);
  const odd = rows.filter((s) => !cast.counted.includes(s.device) || s.state !== 'confirmed');
  if (odd.length > 0) fail(`${when}: rows that must not exist or change: ${JSON.stringify(odd.map((s) => [s.device, s.state]))}`);
  const state = (await server.store.campaign(cast.a))?.state;
  if (state !== 'running') fail(`${when}: campaign A is ${state}`);
  const fetchedA = await server.store.fetchedDevices(cast.a);
  if (fetchedA.some((d) => !cast.counted.includes(d))) fail(`${when}: fetches recorded for ${JSON.stringify(fetchedA)}`);
  const known = await server.store.deviceCount();
  if (known > MAX_DEVICES) fail(`${when}: ${known} devices known (at most ${MAX_DEVICES})`);
  for (const l of log.splice(0)) if (/dropped|failed|wave engine/.test(l)) fail(`${when}: server log: ${l}`);
}
