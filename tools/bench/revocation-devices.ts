/**
 * The child process of the "revocation" section's protocol clients (forked by revocation-fleet.ts):
 * N MQTT connections in one process, each acting as a device on the root channel (SPEC.md §12.13).
 * A client subscribes to `<prefix>/root` with its announce and reply topics in one SUBSCRIBE, as a
 * device does, reports `online` (trust version 1, no list), and on every root announcement checks
 * the list with the device verifier (R1–R5 against its own trust bundle and the list it keeps), keeps
 * it, and acknowledges with `online` keys 12–14 (trust version, list version, SHA-256 of the list's
 * payload). It stores nothing on flash: the row measures the server, the broker and the protocol.
 *
 * All clients share host/hash.ts `fleetVerifier()`, as fleet-sim does: 1,000 clients checking one
 * list cost one set of Ed25519 checks (real devices each do their own), every other step is per client.
 * A message on the reference topic is echoed at once with an `online` payload of the same size.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { type VerifiedRevocations, type VerifiedTrust } from '../../device/verify/trust.js';
import { fleetVerifier } from '../../host/hash.js';
import { bytesEqual } from '../../shared/bytes.js';
import { parseRootAnnouncement } from '../../shared/ota/root.js';
import { encodeStatusEvent } from '../../shared/ota/status.js';
import { topics } from '../../shared/ota/topics.js';
import { type FleetCommand, type FleetCounters, type FleetReply, type FleetStart } from './revocation-fleet.js';

const CONNECT_CONCURRENCY = 50;
const verifier = fleetVerifier();
const counters: FleetCounters = { stored: 0, same: 0, refused: 0, otherTrust: 0, malformed: 0, echoes: 0 };

/** One device on the root channel: its trust bundle, the list it keeps, and its acknowledgement. */
class RootClient {
  #kept: VerifiedRevocations | undefined;

  constructor(
    readonly client: MqttClient,
    readonly id: string,
    readonly trust: VerifiedTrust,
    readonly s: FleetStart,
  ) {
    client.on('message', (topic, payload) => {
      if (topic === s.refTopic) return this.#echo();
      if (topic === topics.root(s.prefix)) this.#onRoot(payload);
    });
  }

  async start(): Promise<void> {
    const { s } = this;
    await this.client.subscribeAsync([topics.root(s.prefix), topics.announce(s.prefix, s.group), topics.reply(s.prefix, this.id), s.refTopic], { qos: 1 });
    await this.#online();
  }

  /** §12.13 steps 2–3: R1–R5 under the client's own bundle (an announcement of another bundle version is not walked here). */
  #onRoot(payload: Buffer): void {
    if (payload.length === 0) return;
    const a = parseRootAnnouncement(payload);
    if (!a.ok) return void counters.malformed++;
    if (a.value.trustVersion !== this.trust.bundle.version) return void counters.otherTrust++;
    const list = a.value.revocations;
    if (list === undefined) return;
    const kept = this.#kept;
    const r = verifier.verifyRevocations(list, this.trust, kept?.list.version ?? 0, kept);
    if (!r.ok) return void counters.refused++;
    if (kept && bytesEqual(kept.digest, r.revocations.digest)) return void counters.same++;
    this.#kept = r.revocations;
    counters.stored++;
    void this.#online().catch(() => {});
  }

  /** `online` with the root of trust in force (keys 12–14; no digest while no list is kept). */
  #online(): Promise<unknown> {
    return this.client.publishAsync(topics.status(this.s.prefix, this.id), Buffer.from(this.#status(this.#kept)), { qos: 1 });
  }

  #status(kept: VerifiedRevocations | undefined): Uint8Array {
    return encodeStatusEvent({
      device: this.id,
      state: 'online',
      group: this.s.group,
      version: '1.0.0',
      counter: 1,
      trustVersion: this.trust.bundle.version,
      revocationVersion: kept?.list.version ?? 0,
      ...(kept ? { revocationDigest: kept.digest } : {}),
    });
  }

  /** The reference: an echo the size of an acknowledgement (a 32-byte digest, a list version below 24). */
  #echo(): void {
    counters.echoes++;
    const payload = encodeStatusEvent({
      device: this.id,
      state: 'online',
      group: this.s.group,
      version: '1.0.0',
      counter: 1,
      trustVersion: 1,
      revocationVersion: 1,
      revocationDigest: new Uint8Array(32),
    });
    void this.client.publishAsync(`${this.s.echoPrefix}/${this.id}`, Buffer.from(payload), { qos: 1 }).catch(() => {});
  }
}

const clients: RootClient[] = [];

async function startFleet(s: FleetStart): Promise<FleetReply> {
  const trust = new Uint8Array(Buffer.from(s.trust, 'base64'));
  const t = verifier.loadTrust(trust);
  if (!t.ok) return { type: 'error', message: `trust bundle refused: ${t.error}` };
  const t0 = performance.now();
  const width = String(s.count).length;
  for (let i = 0; i < s.count; i += CONNECT_CONCURRENCY) {
    const batch = Array.from({ length: Math.min(CONNECT_CONCURRENCY, s.count - i) }, async (_, j) => {
      const id = `${s.idPrefix}${String(i + j + 1).padStart(width, '0')}`;
      const client = await mqtt.connectAsync(s.url, { protocolVersion: 4, clientId: id, reconnectPeriod: 0, keepalive: 60 });
      // Each device loads its factory trust itself (memoised signature checks: cheap after the first).
      const own = verifier.loadTrust(trust);
      if (!own.ok) throw new Error(own.error);
      const c = new RootClient(client, id, own.trust, s);
      await c.start();
      return c;
    });
    clients.push(...(await Promise.all(batch)));
  }
  return { type: 'ready', connected: clients.length, seconds: (performance.now() - t0) / 1000 };
}

async function stop(): Promise<never> {
  await Promise.all(clients.map((c) => c.client.endAsync(true).catch(() => {})));
  process.exit(0);
}

const reply = (r: FleetReply) => process.send?.(r);

process.on('message', (cmd: FleetCommand) => {
  if (cmd.type === 'start') startFleet(cmd).then(reply, (e: unknown) => reply({ type: 'error', message: e instanceof Error ? e.message : String(e) }));
  else if (cmd.type === 'counters') reply({ type: 'counters', counters });
  else void stop();
});
// The bench process is gone (or closed the channel): leave, whatever happened to it.
process.on('disconnect', () => void stop());
