/**
 * The directory a simulated device (hil/device.ts) runs from: its config, flash file and factory
 * trust bundle, written once at the factory; a device restart reads them again. One directory format
 * for both provisioners: `fwseal device provision` (host/commands/device.ts) writes a flat
 * device.json and keeps the trust bundle on flash only; `adoptDeviceDir` completes such a directory
 * for the simulated device, and `provisionDevice` writes both forms, so either tool runs the other's.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type FlashGeometry } from '../device/agent/flash.js';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { loadTrustStore } from '../device/agent/slot.js';
import { loadState } from '../device/agent/state-store.js';
import { createVerifier } from '../device/index.js';
import { openFileFlash } from '../device/node/file-flash.js';
import { FwsealError } from '../host/errors.js';
import { nodeSha256 } from '../host/hash.js';
import { writeFileAtomic } from '../host/io.js';
import { type CodeName, ok, type Result } from '../shared/codes.js';

export const DEVICE_CONFIG_FILE = 'device.json';
export const FLASH_FILE = 'flash.img';
export const TRUST_FILE = 'factory-trust.cbor';

export type DeviceConfig = {
  readonly deviceClass: string;
  readonly geometry: FlashGeometry;
  readonly slotSize: number;
  readonly maxTrialBoots: number;
};

/** device.json as `fwseal device provision` writes it (host/commands/device.ts). */
type HostDeviceConfig = {
  readonly deviceClass: string;
  readonly eraseBlockSize: number;
  readonly writeAlign: number;
  readonly erasedValue: number;
  readonly slotSize: number;
  readonly size: number;
  readonly maxTrialBoots: number;
};

/** Both forms in one object: the simulated device reads `geometry`, `fwseal device run` the flat fields. */
function configFile(config: DeviceConfig): DeviceConfig & HostDeviceConfig {
  const { geometry: g } = config;
  return { ...config, eraseBlockSize: g.eraseBlockSize, writeAlign: g.writeAlign, erasedValue: g.erasedValue, size: g.size };
}

/**
 * Make a device directory runnable by the simulated device (hil/device.ts): a directory from
 * `fwseal device provision` has no `geometry` in device.json and no factory-trust.cbor (its trust
 * bundle is on flash, in the area its state record names). Both are added from what is there; the
 * flat fields stay, so `fwseal device run` still runs it. Throws FwsealError (IO: no device there).
 */
export function adoptDeviceDir(dir: string): DeviceConfig {
  const path = join(dir, DEVICE_CONFIG_FILE);
  if (!existsSync(path) || !existsSync(join(dir, FLASH_FILE))) throw new FwsealError('IO', `${dir} holds no device (run fwseal device provision first)`);
  let raw: Partial<DeviceConfig & HostDeviceConfig>;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new FwsealError('IO', `${path}: ${(e as Error).message}`);
  }
  let config: DeviceConfig;
  if (raw.geometry) config = raw as DeviceConfig;
  else {
    const h = raw as HostDeviceConfig;
    if (![h.eraseBlockSize, h.writeAlign, h.erasedValue, h.slotSize, h.size, h.maxTrialBoots].every(Number.isSafeInteger) || typeof h.deviceClass !== 'string')
      throw new FwsealError('IO', `${path} is not a device configuration`);
    const geometry = { size: h.size, eraseBlockSize: h.eraseBlockSize, writeAlign: h.writeAlign, erasedValue: h.erasedValue };
    config = { deviceClass: h.deviceClass, geometry, slotSize: h.slotSize, maxTrialBoots: h.maxTrialBoots };
    writeFileAtomic(path, `${JSON.stringify({ ...raw, ...configFile(config) }, null, 2)}\n`);
  }
  if (!existsSync(join(dir, TRUST_FILE))) writeFileAtomic(join(dir, TRUST_FILE), storedTrust(dir, config));
  return config;
}

/** The trust bundle the device's state record names on flash (SPEC.md §11.3: provisioning stores it in area 0). */
function storedTrust(dir: string, config: DeviceConfig): Uint8Array {
  const flash = openFileFlash(join(dir, FLASH_FILE), config.geometry);
  try {
    const layout = createLayout(config.geometry, { slotSize: config.slotSize });
    const s = loadState(flash, layout);
    if (!s.ok) throw new FwsealError(s.error as Exclude<CodeName, 'OK'>, `${dir}: ${s.detail ?? 'no device state'}`);
    if (s.record.trustArea === undefined) throw new FwsealError('STATE_CORRUPT', `${dir}: the device state names no stored trust bundle`);
    const t = loadTrustStore(nodeSha256, flash, layout, s.record, { trust: new Uint8Array(0) });
    if (!t.ok) throw new FwsealError(t.error as Exclude<CodeName, 'OK'>, `${dir}: ${t.detail ?? 'stored trust bundle unreadable'}`);
    return t.store.trust;
  } finally {
    flash.close();
  }
}

/** Factory provisioning of a device directory: flash file, config, factory trust; slot A confirmed. */
export function provisionDevice(
  dir: string,
  input: {
    readonly deviceClass: string;
    readonly trust: Uint8Array;
    readonly revocations?: Uint8Array;
    readonly envelope: Uint8Array;
    readonly image: Uint8Array;
    readonly slotSize?: number;
    readonly maxTrialBoots?: number;
  },
): Result<{ config: DeviceConfig }> {
  mkdirSync(dir, { recursive: true });
  const E = 4096;
  const slotSize = input.slotSize ?? Math.max(64 * 1024, Math.ceil((input.image.length * 2) / E) * E);
  const geometry: FlashGeometry = { size: layoutBytes(E, 8, slotSize), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
  const config: DeviceConfig = { deviceClass: input.deviceClass, geometry, slotSize, maxTrialBoots: input.maxTrialBoots ?? 2 };
  writeFileSync(join(dir, DEVICE_CONFIG_FILE), `${JSON.stringify(configFile(config), null, 2)}\n`);
  writeFileSync(join(dir, TRUST_FILE), input.trust);
  const flash = openFileFlash(join(dir, FLASH_FILE), geometry, { create: true });
  try {
    const r = provision(flash, createLayout(geometry, { slotSize }), {
      deviceClass: input.deviceClass,
      trust: input.trust,
      envelope: input.envelope,
      image: input.image,
      verifier: createVerifier({ sha256: nodeSha256 }),
      ...(input.revocations ? { revocations: input.revocations } : {}),
    });
    if (!r.ok) return r;
  } finally {
    flash.close();
  }
  return ok({ config });
}
