/**
 * The directory a simulated device (hil/device.ts) runs from: its config, flash file and factory
 * trust bundle, written once at the factory; a device restart reads them again.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type FlashGeometry } from '../device/agent/flash.js';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { createVerifier } from '../device/index.js';
import { openFileFlash } from '../device/node/file-flash.js';
import { nodeSha256 } from '../host/hash.js';
import { ok, type Result } from '../shared/codes.js';

export const DEVICE_CONFIG_FILE = 'device.json';
export const FLASH_FILE = 'flash.img';
export const TRUST_FILE = 'factory-trust.cbor';

export type DeviceConfig = {
  readonly deviceClass: string;
  readonly geometry: FlashGeometry;
  readonly slotSize: number;
  readonly maxTrialBoots: number;
};

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
  writeFileSync(join(dir, DEVICE_CONFIG_FILE), `${JSON.stringify(config, null, 2)}\n`);
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
