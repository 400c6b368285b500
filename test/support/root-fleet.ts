/**
 * The root of trust end to end (test/ota-root-e2e.test.ts, SPEC.md §12.13): the real `fwseal serve`
 * (OtaServer, SQLite, HTTP API) and real device clients (OtaDevice over simulated flash) on one
 * mosquitto, each story under its own topic prefix (the root topic is one per prefix). The keys,
 * bundles, lists and releases of a leaked release key and of a root rotation 1 -> 2 -> 3; devices
 * that log every status event they report together with the trust and list versions their flash
 * enforced at that moment (so "nothing installed after the list was enforced" is a fact of the log,
 * not of timing); the operator's side through the CLI (`fwseal trust publish`) and the HTTP API.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLayout, layoutBytes } from '../../device/agent/layout.js';
import { provision } from '../../device/agent/provision.js';
import { loadState } from '../../device/agent/state-store.js';
import { SimFlash } from '../../device/sim/flash.js';
import { fleetVerifier, nodeSha256 } from '../../host/hash.js';
import { OtaDevice } from '../../host/ota/device-client.js';
import { OtaServer, type OtaServerOptions } from '../../host/ota/server.js';
import { parseEnvelope } from '../../shared/cose.js';
import { type StatusEvent } from '../../shared/ota/status.js';
import { fileWriter, runCli } from './cli-run.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust, standardWorld } from './fixtures.js';
import { type Mosquitto } from './mosquitto.js';
import { api, createCampaign, serverMqtt } from './ota-harness.js';

const w = standardWorld();
const { A, B, R1, R2, R3 } = w;
const [D, E, N1, N2, N3] = ['D', 'E', 'N1', 'N2', 'N3'].map(detKey);

/**
 * Trust 1 (root A B C, release R1 R2 R3) is the factory bundle; 2 rotates root key C out for D
 * (signed by A B: both thresholds); 3 moves to root B D E and new release keys N1 N2 N3 (signed by
 * B D). Release key R1 leaked: list 1 (signed by A B) revokes it; list 2 too, signed by A B D so
 * that trust 3's root keys sign it (a rotation is published after a list both roots sign, §12.13).
 */
export const keys = { ...w, D, E, N1, N2, N3 };
export const T1 = w.trust;
export const T2 = makeTrust({ root: [A, B, D], rootThreshold: 2, release: [R1, R2, R3], releaseThreshold: 2, signers: [A, B], version: 2 });
export const T3 = makeTrust({ root: [B, D, E], rootThreshold: 2, release: [N1, N2, N3], releaseThreshold: 2, signers: [B, D], version: 3 });
export const RL1 = makeRevocations({ version: 1, keyIds: [R1.keyId], signers: [A, B] });
export const RL2 = makeRevocations({ version: 2, keyIds: [R1.keyId], signers: [A, B, D] });

export type Release = { readonly version: string; readonly image: Uint8Array; readonly envelope: Uint8Array };

/** A release of `size` bytes in 4 KiB chunks; `signers` sign the manifest (the same manifest whoever signs). */
export function release(version: string, counter: number, size: number, signers: readonly (typeof R1)[]): Release {
  const image = detBytes(size, `root e2e ${version}`);
  return { version, image, envelope: makeManifestEnvelope(makeManifest(image, { version, securityCounter: counter, chunkSize: 4096 }), signers) };
}

/** The factory image: co-signed by the key that leaks later (its boot grace is SPEC.md §11.4's). */
export const FACTORY = release('1.0.0', 5, 50_000, [R1, R2]);

const EB = 4096;
const SLOT = 512 * 1024;
export const geometry = { size: layoutBytes(EB, 8, SLOT), eraseBlockSize: EB, writeAlign: 8, erasedValue: 0xff };
export const layout = createLayout(geometry, { slotSize: SLOT });
const verifier = fleetVerifier();

/** SHA-256 of a signed object's payload: how the verifier (and `/api/devices`) names a list. */
export function payloadDigest(envelope: Uint8Array): Uint8Array {
  const env = parseEnvelope(envelope);
  if (!env.ok) throw new Error(env.error);
  return nodeSha256(env.envelope.payload);
}

/** What the device's flash enforces (state keys 5 and 6). */
export function enforced(flash: SimFlash): { trustVersion: number; revocationVersion: number } {
  const s = loadState(flash, layout);
  if (!s.ok) throw new Error(s.error);
  return { trustVersion: s.record.trustVersion, revocationVersion: s.record.revocationVersion };
}

/** A status event the device reported, with what its flash enforced when it reported it. */
export type Logged = StatusEvent & { readonly enforcedTrust: number; readonly enforcedList: number };

export type Sim = {
  readonly id: string;
  readonly flash: SimFlash;
  readonly device: OtaDevice;
  readonly log: Logged[];
  /** Blocks of the current download written so far (the `progress` event). */
  blocks: number;
};

export type DeviceOptions = { readonly flash?: SimFlash; readonly multicast?: boolean; readonly window?: number };

export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Servers and devices of one test file on one broker; `stopAll` ends every one of them. */
export class RootFleet {
  readonly #live: { stop(): Promise<void> }[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), 'fwseal-root-e2e-'));
  readonly file = fileWriter(this.dir);

  constructor(readonly broker: Mosquitto) {}

  async server(name: string, prefix: string, extra: Partial<OtaServerOptions> = {}): Promise<OtaServer> {
    const s = await OtaServer.start({
      mqtt: serverMqtt(this.broker.url),
      dataDir: join(this.dir, name),
      prefix,
      trust: T1,
      http: { host: '127.0.0.1', port: 0 },
      tickMs: 100,
      ...extra,
    });
    this.#live.push({ stop: () => s.close() });
    return s;
  }

  /** A device of `group`, provisioned with FACTORY on trust 1 unless `flash` (a device that was here before) is given. */
  async device(prefix: string, id: string, group: string, o: DeviceOptions = {}): Promise<Sim> {
    const flash = o.flash ?? provisioned();
    const log: Logged[] = [];
    const device = await OtaDevice.start({
      id,
      group,
      prefix,
      flash,
      layout,
      trust: T1,
      verifier,
      maxTrialBoots: 2,
      ...(o.multicast !== undefined ? { multicast: o.multicast } : {}),
      mqtt: {
        url: this.broker.url,
        options: { protocolVersion: 4, clientId: `${prefix}-${id}-${Math.random().toString(16).slice(2, 8)}`, reconnectPeriod: 200 },
      },
      pull: { timeoutMs: 1500, baseBackoffMs: 100, maxBackoffMs: 1000, retryBaseMs: 100, retryMaxMs: 1000, window: o.window ?? 8 },
      onStatus: (e) => {
        const now = enforced(flash);
        log.push({ ...e, enforcedTrust: now.trustVersion, enforcedList: now.revocationVersion });
      },
    });
    const sim: Sim = { id, flash, device, log, blocks: 0 };
    device.on('progress', (done) => {
      sim.blocks = done;
    });
    this.#live.push({ stop: () => device.stop() });
    return sim;
  }

  async stopAll(): Promise<void> {
    await Promise.allSettled(this.#live.splice(0).map((x) => x.stop()));
  }
}

function provisioned(): SimFlash {
  const flash = new SimFlash(geometry);
  const p = provision(flash, layout, { deviceClass: 'acme-gw', trust: T1, envelope: FACTORY.envelope, image: FACTORY.image, verifier });
  if (!p.ok) throw new Error(`provision: ${p.error}`);
  return flash;
}

/** `fwseal trust publish FILE --server URL --json`: the exit status and what the server answered. */
export async function publish(fleet: RootFleet, s: OtaServer, name: string, envelope: Uint8Array) {
  const r = await runCli(['trust', 'publish', fleet.file(name, envelope), '--server', s.address()!.url, '--json']);
  if (r.status !== 0) throw new Error(`trust publish ${name}: exit ${r.status} ${r.err}`);
  return JSON.parse(r.out) as { kind: string; version: number; changed: boolean; halted: { id: string; code: number }[] };
}

/** Create a campaign over the API (one 100% wave); its id. */
export async function campaign(s: OtaServer, group: string, rel: Release, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await createCampaign(s, group, rel, extra);
  if (r.status !== 201) throw new Error(`campaign: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.id as string;
}

export type DeviceView = { id: string; version: string; trustVersion: number | null; revocationVersion: number | null; revocationSha256: string | null };

export async function devicesOf(s: OtaServer): Promise<DeviceView[]> {
  return (await api(s, 'GET', '/api/devices')).body.devices as DeviceView[];
}

/** The campaign events of `sim` for `id`, in the order reported. */
export function eventsOf(sim: Sim, id: string): Logged[] {
  return sim.log.filter((e) => e.campaign === id);
}

/** Whether `sim` reported verifying, installed or confirmed for `id` while its flash enforced list `version` or newer. */
export function installedUnderList(sim: Sim, id: string, version: number): boolean {
  return eventsOf(sim, id).some((e) => ['verifying', 'installed', 'confirmed'].includes(e.state) && e.enforcedList >= version);
}
