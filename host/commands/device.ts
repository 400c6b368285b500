/**
 * `fwseal device ...`: the update agent and boot agent on a Linux gateway (flash as a file or block
 * device under --state DIR). The transport here is local files (a manifest, its image and the digest
 * table written by pack), or OTA campaigns over MQTT (--broker). The power-cut sweep is powercut-sweep.ts.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UpdateAgent } from '../../device/agent/agent.js';
import { type BootResult, boot } from '../../device/agent/boot.js';
import { driveDownload } from '../../device/agent/driver.js';
import { createLayout, layoutBytes } from '../../device/agent/layout.js';
import { provision } from '../../device/agent/provision.js';
import { loadState } from '../../device/agent/state-store.js';
import { createVerifier, parseEnvelope, parseManifest } from '../../device/index.js';
import { openFileFlash } from '../../device/node/file-flash.js';
import { openFileTransport } from '../../device/node/file-transport.js';
import { type CodeName, type Result } from '../../shared/codes.js';
import { LIMITS } from '../../shared/limits.js';
import { type StatusEvent } from '../../shared/ota/status.js';
import { isValidId, isValidPrefix } from '../../shared/ota/topics.js';
import { FwsealError } from '../errors.js';
import { nodeSha256 } from '../hash.js';
import { readFileLimited, writeFileAtomic } from '../io.js';
import { OtaDevice, withOfflineWill } from '../ota/device-client.js';
import { connectMqtt, MQTT_FLAGS, MQTT_USAGE, mqttSettings } from '../ota/mqtt-options.js';
import { type Command, FLAG_ENV_USAGE, type Io, int, json, noPositionals, type Parsed, readObjectFile, str, withEnv } from './common.js';
import { digestTablePath } from './release.js';

const DEVICE_FILE = 'device.json';
const FLASH_FILE = 'flash.img';
const IMAGE_MAX = 1 << 30;
/** The device's own verifier (pure-JS Ed25519, as on a device), with the host's SHA-256: `device run` simulates a device. */
export const deviceVerifier = createVerifier({ sha256: nodeSha256 });

type DeviceConfig = {
  deviceClass: string;
  eraseBlockSize: number;
  writeAlign: number;
  erasedValue: number;
  slotSize: number;
  size: number;
  maxTrialBoots: number;
};

function check<T extends object>(r: Result<T>, context: string): T {
  if (!r.ok) throw new FwsealError(r.error as Exclude<CodeName, 'OK'>, `${context}${r.detail ? `: ${r.detail}` : ''}`);
  return r as unknown as T;
}

function openDevice(stateDir: string, create?: Omit<DeviceConfig, 'size'>) {
  const cfgPath = join(stateDir, DEVICE_FILE);
  let cfg: DeviceConfig;
  if (create) {
    if (existsSync(cfgPath)) throw new FwsealError('IO', `${stateDir} already holds a device; refusing to overwrite it`);
    mkdirSync(stateDir, { recursive: true });
    cfg = { ...create, size: layoutBytes(create.eraseBlockSize, create.writeAlign, create.slotSize) };
    writeFileAtomic(cfgPath, `${JSON.stringify(cfg, null, 2)}\n`);
  } else {
    if (!existsSync(cfgPath)) throw new FwsealError('IO', `${stateDir} holds no device (run fwseal device provision first)`);
    cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as DeviceConfig;
  }
  const geometry = { size: cfg.size, eraseBlockSize: cfg.eraseBlockSize, writeAlign: cfg.writeAlign, erasedValue: cfg.erasedValue };
  const flash = openFileFlash(join(stateDir, FLASH_FILE), geometry, { create: !!create });
  const layout = createLayout(geometry, { slotSize: cfg.slotSize });
  return { cfg, flash, layout };
}

function trustInputs(p: Parsed) {
  const trust = readObjectFile(str(p, 'trust', true), 'trust-bundle');
  const rl = str(p, 'revocations');
  return { trust, ...(rl ? { revocations: readObjectFile(rl, 'revocation-list') } : {}) };
}

export const deviceProvision: Command = {
  name: 'device provision',
  summary: 'create a simulated device (flash file under --state) with a factory image',
  usage: `fwseal device provision --state DIR --trust trust.cbor --device-class CLASS --manifest M.cose --image IMAGE
    [--slot-size BYTES] [--erase-block BYTES] [--max-trial-boots N] [--json]

Creates DIR/flash.img (state records, manifest areas, progress area, slots A and B) and writes the
verified factory image to slot A, confirmed, with the security counter of its manifest.

Examples:
  fwseal device provision --state dev1 --trust trust.cbor --device-class acme-gw --manifest M.cose --image firmware.bin`,
  options: {
    state: { type: 'string' },
    trust: { type: 'string' },
    revocations: { type: 'string' },
    'device-class': { type: 'string' },
    manifest: { type: 'string' },
    image: { type: 'string' },
    'slot-size': { type: 'string' },
    'erase-block': { type: 'string' },
    'max-trial-boots': { type: 'string' },
    json: { type: 'boolean' },
  },
  run(p, io) {
    noPositionals(p);
    const store = trustInputs(p);
    const envelope = readObjectFile(str(p, 'manifest', true), 'manifest');
    const image = readFileLimited(str(p, 'image', true), IMAGE_MAX, 'image');
    const eraseBlockSize = int(p, 'erase-block', 512, 1 << 20, 4096);
    const slotSize = int(p, 'slot-size', eraseBlockSize, IMAGE_MAX, Math.max(eraseBlockSize, Math.ceil((image.length * 2) / eraseBlockSize) * eraseBlockSize));
    if (slotSize % eraseBlockSize !== 0) throw new FwsealError('USAGE', '--slot-size must be a multiple of --erase-block');
    const deviceClass = str(p, 'device-class', true);
    const { flash, layout } = openDevice(str(p, 'state', true), {
      deviceClass,
      eraseBlockSize,
      writeAlign: 8,
      erasedValue: 0xff,
      slotSize,
      maxTrialBoots: int(p, 'max-trial-boots', 1, 255, 2),
    });
    try {
      const r = check(provision(flash, layout, { ...store, deviceClass, envelope, image, verifier: deviceVerifier }), 'provision');
      if (p.values.json) json(io, { ok: true, counter: r.state.securityCounter, slot: 0 });
      else io.stdout(`provisioned: slot A holds the factory image, security counter ${r.state.securityCounter}\n`);
      return 0;
    } finally {
      flash.close();
    }
  },
};

export const deviceRun: Command = {
  name: 'device run',
  summary: 'run the update agent on a device under --state: boot, update from local files, trial boot',
  usage: `fwseal device run --state DIR --trust trust.cbor --update M.cose --image IMAGE
    [--digests M.digests] [--log-proof M.logproof] [--revocations RL.cbor] [--trust-update trust2.cbor]
    [--confirm] [--json]
fwseal device run --broker URL --id ID --group G --trust trust.cbor --device-class CLASS --state DIR
    [--prefix P] [--revocations RL.cbor] [--exit-after-update] [--connect-timeout MS] [--json]
    ${MQTT_USAGE.replace(/\n/g, '\n    ')}

Boots (the boot agent verifies the slot it runs), verifies the manifest before anything is written,
writes only verified chunks to the inactive slot (resuming a download a reset interrupted), verifies
the whole slot, marks it pending and boots it on trial. With --confirm the application confirms the
trial image, and only then the security counter is raised. --revocations stores a newer revocation
list on the device, --trust-update a rotated trust bundle (with --revocations: a list the new root
keys signed); neither version ever goes down. Under a trust bundle with a log policy the update needs
--log-proof: the attachment of fwseal log prove --device-proof, from the checkpoint size the device
stored (SPEC.md §16.8). Exit 1 when the update is rejected.

With --broker the device takes its updates from OTA campaigns over MQTT (SPEC.md §12): it reports
online, follows the retained announcement of --group, and downloads, installs, trial-boots and
confirms each campaign it is eligible for, resuming an interrupted download from flash. It runs until
SIGINT/SIGTERM, or with --exit-after-update until its first campaign ends (exit 0 confirmed,
1 rejected or failed). --device-class must be the one the device was provisioned with.
${FLAG_ENV_USAGE} FWSEAL_BROKER and FWSEAL_PREFIX count only when none of --update, --image, --digests,
--log-proof, --confirm, --trust-update is given.

Examples:
  fwseal device run --state dev1 --trust trust.cbor --update M.cose --image firmware.bin --confirm
  fwseal device run --broker mqtt://127.0.0.1:1883 --id gw-0001 --group lab --trust trust.cbor --device-class acme-gw --state dev1`,
  options: {
    state: { type: 'string' },
    trust: { type: 'string' },
    revocations: { type: 'string' },
    update: { type: 'string' },
    image: { type: 'string' },
    digests: { type: 'string' },
    'log-proof': { type: 'string' },
    confirm: { type: 'boolean' },
    'trust-update': { type: 'string' },
    json: { type: 'boolean' },
    ...MQTT_FLAGS,
    id: { type: 'string' },
    group: { type: 'string' },
    'device-class': { type: 'string' },
    prefix: { type: 'string' },
    'exit-after-update': { type: 'boolean' },
    'connect-timeout': { type: 'string' },
  },
  run(given, io) {
    noPositionals(given);
    const p = deviceRunEnv(given);
    if (str(p, 'broker') !== undefined) return runOverMqtt(p, io);
    for (const flag of ['id', 'group', 'device-class', 'prefix', 'exit-after-update', 'connect-timeout']) {
      if (p.values[flag] !== undefined) throw new FwsealError('USAGE', `--${flag} goes with --broker`);
    }
    const store = trustInputs(p);
    const envelope = readObjectFile(str(p, 'update', true), 'manifest');
    const imagePath = str(p, 'image', true);
    const device = openDevice(str(p, 'state', true));
    const steps: string[] = [];
    try {
      const outcome = updateFromFiles(p, device, store, envelope, imagePath, steps);
      return reportRun(p, io, device, steps, outcome);
    } finally {
      device.flash.close();
    }
  },
};

/**
 * FWSEAL_TRUST always; FWSEAL_BROKER (and then FWSEAL_PREFIX) only when no flag of the local-file
 * mode is given, so an exported broker never turns `device run --update M.cose` into a USAGE error.
 */
function deviceRunEnv(given: Parsed): Parsed {
  const local = ['update', 'image', 'digests', 'log-proof', 'confirm', 'trust-update'].some((f) => given.values[f] !== undefined);
  const p = withEnv(given, local ? ['trust'] : ['broker', 'trust']);
  return str(p, 'broker') !== undefined ? withEnv(p, ['prefix']) : p;
}

type Device = ReturnType<typeof openDevice>;
type TrustInputs = ReturnType<typeof trustInputs>;
/** How a `device run` ended: OK, or the code of the step that rejected the update. */
type Outcome = { readonly ok: boolean; readonly error: string; readonly code: number };
const DONE: Outcome = { ok: true, error: 'OK', code: 0 };

/**
 * `device run` from local files: boot, store root-of-trust updates, then either settle a running
 * trial image or install the update and boot it on trial. Each step appends its line to `steps`.
 */
function updateFromFiles(p: Parsed, device: Device, store: TrustInputs, envelope: Uint8Array, imagePath: string, steps: string[]): Outcome {
  const first = bootDevice(device, store, steps);
  if (first.slot === null) return first;
  const agent = new UpdateAgent({ flash: device.flash, layout: device.layout, ...store, verifier: deviceVerifier });
  const stored = storeRootOfTrust(p, agent, store, steps);
  if (!stored.ok) return stored;
  // A trial image is running (a previous run installed it): the application confirms it, or not.
  if (first.trial) return p.values.confirm ? confirmTrial(agent, steps) : DONE;
  const installed = install(p, agent, envelope, imagePath, steps);
  if (!installed.ok) return installed;
  bootDevice(device, store, steps);
  return p.values.confirm ? confirmTrial(agent, steps) : DONE;
}

/** The boot agent verifies the slot it runs; an outcome that fails when nothing verified. */
function bootDevice({ cfg, flash, layout }: Device, store: TrustInputs, steps: string[]): BootResult & Outcome {
  const b = boot(flash, layout, store.trust, {
    maxTrialBoots: cfg.maxTrialBoots,
    verifier: deviceVerifier,
    ...(store.revocations ? { revocations: store.revocations } : {}),
  });
  steps.push(`boot: slot ${b.slot} ${b.version ?? ''}${b.trial ? ' on trial' : ''} (${b.error})`);
  return { ...b, ok: b.slot !== null };
}

/** Root-of-trust updates first: stored on flash, versions never go down (SPEC.md §11). */
function storeRootOfTrust(p: Parsed, agent: UpdateAgent, store: TrustInputs, steps: string[]): Outcome {
  const trustUpdatePath = str(p, 'trust-update');
  if (trustUpdatePath) {
    const t = agent.updateTrust(readObjectFile(trustUpdatePath, 'trust-bundle'), store.revocations);
    if (!t.ok) return t;
    steps.push(`trust bundle version ${t.version}${t.changed ? ' stored' : ' (already stored)'}`);
  } else if (store.revocations) {
    const r = agent.updateRevocations(store.revocations);
    if (!r.ok) return r;
    steps.push(`revocation list version ${r.version}${r.changed ? ' stored' : ' (already stored)'}`);
  }
  return DONE;
}

/** Verify the manifest, fetch the missing chunks from the local files, verify the slot: pending. */
function install(p: Parsed, agent: UpdateAgent, envelope: Uint8Array, imagePath: string, steps: string[]): Outcome {
  // SPEC.md §16.8: the log proof travels next to the manifest (never inside it); bounded before it is read.
  const proofPath = str(p, 'log-proof');
  const proof = proofPath === undefined ? undefined : readFileLimited(proofPath, LIMITS.maxLogProofBytes, 'log proof');
  const begin = agent.beginUpdate(envelope, proof);
  if (!begin.ok) return begin;
  steps.push(`manifest verified; ${begin.missing} of ${begin.chunks} chunks to fetch${begin.resumed ? ' (resumed)' : ''}`);
  // Local transport: the image file and its digest table (pages proven against the signed root).
  const env = parseEnvelope(envelope);
  const m = env.ok ? parseManifest(env.envelope.payload) : null;
  if (!m?.ok) throw new FwsealError('INTERNAL', 'verified manifest did not parse');
  const transport = openFileTransportChecked(imagePath, str(p, 'digests') ?? digestTablePath(str(p, 'update', true)), m.value.chunkSize);
  try {
    const d = driveDownload(agent, transport, { retries: 2 });
    if (!d.ok) return d;
    steps.push(`fetched ${d.fetchedChunks} chunks and ${d.fetchedPages} digest pages; ${d.rejected} rejected`);
  } finally {
    transport.close();
  }
  const done = agent.finishDownload();
  if (!done.ok) return done;
  steps.push(`slot ${done.slot} verified and pending`);
  return DONE;
}

/** The application confirms the trial image; only then the security counter is raised. */
function confirmTrial(agent: UpdateAgent, steps: string[]): Outcome {
  const c = agent.confirm();
  if (!c.ok) return c;
  steps.push(`confirmed: security counter ${c.counter}`);
  return DONE;
}

/** The steps and the device state after the run; exit 0 done, 1 rejected. */
function reportRun(p: Parsed, io: Io, { flash, layout }: Device, steps: string[], { ok: okay, error, code }: Outcome): number {
  const st = loadState(flash, layout);
  const state = st.ok
    ? { counter: st.record.securityCounter, activeSlot: st.record.activeSlot ?? 0, pending: !!st.record.pending, trialBoots: st.record.trialBoots }
    : null;
  if (p.values.json) json(io, { ok: okay, code, error, steps, state });
  else
    io.stdout(
      `${steps.map((s) => `  ${s}`).join('\n')}\n${okay ? 'DONE' : `REJECTED ${error} (code ${code})`}${state ? `: counter ${state.counter}, active slot ${state.activeSlot}${state.pending ? ', trial image pending confirmation' : ''}` : ''}\n`,
    );
  return okay ? 0 : 1;
}

/** JSON of a status event as host/schemas/device-run.schema.json has it: bytes (the revocation digest) in hex. */
function hexBytes(_key: string, value: unknown): unknown {
  return value instanceof Uint8Array ? Buffer.from(value).toString('hex') : value;
}

/** `device run --broker`: the OTA device client on the device under --state. */
async function runOverMqtt(p: Parsed, io: Io): Promise<number> {
  for (const flag of ['update', 'image', 'digests', 'log-proof', 'confirm', 'trust-update']) {
    if (p.values[flag] !== undefined) throw new FwsealError('USAGE', `--${flag} does not go with --broker`);
  }
  const id = str(p, 'id', true);
  const group = str(p, 'group', true);
  const prefix = str(p, 'prefix') ?? 'fwseal';
  if (!isValidId(id)) throw new FwsealError('USAGE', '--id must be 1..64 characters of [A-Za-z0-9_-]');
  if (!isValidId(group)) throw new FwsealError('USAGE', '--group must be 1..64 characters of [A-Za-z0-9_-]');
  if (!isValidPrefix(prefix)) throw new FwsealError('USAGE', '--prefix must be id segments joined by "/"');
  const deviceClass = str(p, 'device-class', true);
  const store = trustInputs(p);
  const settings = mqttSettings(p, process.env, id, 4);
  const timeout = int(p, 'connect-timeout', 100, 600_000, 10_000);
  const { cfg, flash, layout } = openDevice(str(p, 'state', true));
  const asJson = !!p.values.json;
  let device: OtaDevice | null = null;
  let onSignal = () => {};
  try {
    if (cfg.deviceClass !== deviceClass) throw new FwsealError('USAGE', `--device-class ${deviceClass} is not the provisioned class ${cfg.deviceClass}`);
    const client = await connectMqtt(withOfflineWill(settings, prefix, id), timeout);
    const line = (text: string) => {
      if (!asJson) io.stdout(`${text}\n`);
    };
    let onEnd: (e: StatusEvent | null) => void = () => {};
    const ended = new Promise<StatusEvent | null>((resolve) => {
      onEnd = resolve;
      onSignal = () => resolve(null);
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
    });
    const d = await OtaDevice.start({
      id,
      group,
      prefix,
      mqtt: client,
      flash,
      layout,
      ...store,
      verifier: deviceVerifier,
      maxTrialBoots: cfg.maxTrialBoots,
      log: line,
      onStatus: (e: StatusEvent) => {
        if (asJson) io.stdout(`${JSON.stringify(e, hexBytes)}\n`);
        if (p.values['exit-after-update'] && (e.state === 'confirmed' || e.state === 'rejected' || e.state === 'failed')) onEnd(e);
      },
    });
    device = d;
    const last = await ended;
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await d.stop();
    device = null;
    const s = d.state();
    const summary = {
      state: last?.state ?? 'stopped',
      ...(last?.campaign ? { campaign: last.campaign } : {}),
      ...(last?.code !== undefined ? { code: last.code } : {}),
      version: s.version,
      counter: s.counter,
      slot: s.slot,
    };
    if (asJson) io.stdout(`${JSON.stringify(summary)}\n`);
    else
      io.stdout(
        `${summary.state.toUpperCase()}${summary.code !== undefined ? ` code ${summary.code}` : ''}: version ${s.version ?? '-'}, counter ${s.counter ?? '-'}, slot ${s.slot ?? '-'}\n`,
      );
    return last === null || last.state === 'confirmed' ? 0 : 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    if (device) await device.stop();
    flash.close();
  }
}

function openFileTransportChecked(imagePath: string, digestsPath: string, chunkSize: number) {
  if (!existsSync(imagePath)) throw new FwsealError('IO', `no image ${imagePath}`);
  if (!existsSync(digestsPath)) throw new FwsealError('IO', `no digest table ${digestsPath} (written by fwseal pack; or give --digests)`);
  try {
    return openFileTransport(imagePath, digestsPath, chunkSize);
  } catch (e) {
    throw new FwsealError('IO', (e as Error).message);
  }
}
