/**
 * The device state record (SPEC.md §Device state record): what a device persists between updates
 * and boots. Counters in it never go down. The update agent stores it power-fail-safely (two copies
 * with this record's sequence number and a checksum); this module is only its wire form.
 *
 *   state = {
 *     0: 4, 1: 1,            ; kind = device state, format version
 *     2: uint,               ; sequence number (the newer of two copies wins)
 *     3: tstr,               ; device class
 *     4: uint,               ; security counter (raised only after a confirmed boot)
 *     5: uint,               ; highest trust bundle version seen
 *     6: uint,               ; highest revocation list version seen
 *     ? 7: bstr .size 32,    ; digest of the installed (confirmed) manifest payload
 *     ? 8: bstr .size 32,    ; digest of a manifest installed and pending its trial boot
 *     9: uint,               ; trial boots used by the pending image
 *     ? 10: 0 / 1,           ; active slot (A = 0, B = 1); absent = 0 (SPEC.md §11)
 *     ? 11: bstr .size 32,   ; digest of a manifest whose download into the inactive slot is in progress
 *     ? 12: uint,            ; code of the last update/boot failure (e.g. NOT_CONFIRMED after a revert)
 *     ? 13: 0 / 1,           ; trust area holding the device's current trust bundle (SPEC.md §11)
 *     ? 14: bstr .size 32,   ; SHA-256 of that stored trust bundle envelope
 *     ? 15: 0 / 1,           ; revocation area holding the device's current revocation list
 *     ? 16: bstr .size 32,   ; SHA-256 of that stored revocation list envelope
 *     ? 17: uint,            ; size of the newest log checkpoint accepted (SPEC.md §16.8), with 18
 *     ? 18: bstr .size 32,   ; its root hash
 *   }
 */
import { type CborKey, type Encodable, encodeCbor } from './cbor.js';
import { type Result } from './codes.js';
import { asBytes, asText, asUint, schemaFail } from './fields.js';
import { DIGEST_BYTES, WIRE_LIMITS as LIMITS } from './limits.js';
import { DEVICE_CLASS_PATTERN } from './manifest.js';
import { parsePayload, payloadHeader } from './payload.js';

export const STATE_KEY = Object.freeze({
  sequence: 2,
  deviceClass: 3,
  securityCounter: 4,
  trustVersion: 5,
  revocationVersion: 6,
  installed: 7,
  pending: 8,
  trialBoots: 9,
  activeSlot: 10,
  downloading: 11,
  lastError: 12,
  trustArea: 13,
  trustDigest: 14,
  revocationArea: 15,
  revocationDigest: 16,
  logSize: 17,
  logRoot: 18,
});

export type DeviceStateRecord = {
  readonly sequence: number;
  readonly deviceClass: string;
  readonly securityCounter: number;
  readonly trustVersion: number;
  readonly revocationVersion: number;
  readonly installed?: Uint8Array;
  readonly pending?: Uint8Array;
  readonly trialBoots: number;
  /** Slot holding the installed (confirmed) image: 0 (A) or 1 (B); absent means 0. */
  readonly activeSlot?: number;
  /** Manifest digest of a download in progress into the inactive slot. */
  readonly downloading?: Uint8Array;
  /** Numeric code (shared/codes.ts) of the last update or boot failure, for reporting. */
  readonly lastError?: number;
  /** Trust area (0 or 1) holding the current trust bundle; absent: none stored (the factory value applies). */
  readonly trustArea?: number;
  /** SHA-256 of the stored trust bundle envelope (the area must hold exactly it). */
  readonly trustDigest?: Uint8Array;
  /** Revocation area (0 or 1) holding the current revocation list; absent: none stored. */
  readonly revocationArea?: number;
  /** SHA-256 of the stored revocation list envelope. */
  readonly revocationDigest?: Uint8Array;
  /** The newest transparency log checkpoint accepted (SPEC.md §16.8 L7): its tree size, with `logRoot`. */
  readonly logSize?: number;
  readonly logRoot?: Uint8Array;
};

export function parseStateRecord(bytes: Uint8Array): Result<{ value: DeviceStateRecord }> {
  return parsePayload(bytes, 'state', (f) => {
    const K = STATE_KEY;
    const installed = f.optional(K.installed);
    const pending = f.optional(K.pending);
    const activeSlot = f.optional(K.activeSlot);
    const downloading = f.optional(K.downloading);
    const lastError = f.optional(K.lastError);
    const trustArea = f.optional(K.trustArea);
    const trustDigest = f.optional(K.trustDigest);
    const revocationArea = f.optional(K.revocationArea);
    const revocationDigest = f.optional(K.revocationDigest);
    const logSize = f.optional(K.logSize);
    const logRoot = f.optional(K.logRoot);
    if ((logSize === undefined) !== (logRoot === undefined)) schemaFail('MISSING_FIELD', 'log checkpoint size and root come together');
    return Object.freeze({
      sequence: asUint(f.required(K.sequence, 'sequence'), 'sequence', 0, LIMITS.maxCounter),
      deviceClass: asText(f.required(K.deviceClass, 'device class'), 'device class', LIMITS.maxDeviceClassBytes, DEVICE_CLASS_PATTERN),
      securityCounter: asUint(f.required(K.securityCounter, 'security counter'), 'security counter', 0, LIMITS.maxCounter),
      trustVersion: asUint(f.required(K.trustVersion, 'trust version'), 'trust version', 0, LIMITS.maxCounter),
      revocationVersion: asUint(f.required(K.revocationVersion, 'revocation version'), 'revocation version', 0, LIMITS.maxCounter),
      ...(installed !== undefined ? { installed: asBytes(installed, 'installed digest', DIGEST_BYTES) } : {}),
      ...(pending !== undefined ? { pending: asBytes(pending, 'pending digest', DIGEST_BYTES) } : {}),
      trialBoots: asUint(f.required(K.trialBoots, 'trial boots'), 'trial boots', 0, 255),
      ...(activeSlot !== undefined ? { activeSlot: asUint(activeSlot, 'active slot', 0, 1) } : {}),
      ...(downloading !== undefined ? { downloading: asBytes(downloading, 'downloading digest', DIGEST_BYTES) } : {}),
      ...(lastError !== undefined ? { lastError: asUint(lastError, 'last error', 0, 65535) } : {}),
      ...(trustArea !== undefined ? { trustArea: asUint(trustArea, 'trust area', 0, 1) } : {}),
      ...(trustDigest !== undefined ? { trustDigest: asBytes(trustDigest, 'trust digest', DIGEST_BYTES) } : {}),
      ...(revocationArea !== undefined ? { revocationArea: asUint(revocationArea, 'revocation area', 0, 1) } : {}),
      ...(revocationDigest !== undefined ? { revocationDigest: asBytes(revocationDigest, 'revocation digest', DIGEST_BYTES) } : {}),
      ...(logSize !== undefined ? { logSize: asUint(logSize, 'log size', 1, LIMITS.maxCounter), logRoot: asBytes(logRoot, 'log root', DIGEST_BYTES) } : {}),
    });
  });
}

export function encodeStateRecord(s: DeviceStateRecord): Uint8Array {
  const K = STATE_KEY;
  const entries: [CborKey, Encodable][] = [
    ...payloadHeader('state'),
    [K.sequence, s.sequence],
    [K.deviceClass, s.deviceClass],
    [K.securityCounter, s.securityCounter],
    [K.trustVersion, s.trustVersion],
    [K.revocationVersion, s.revocationVersion],
    [K.trialBoots, s.trialBoots],
  ];
  if (s.installed) entries.push([K.installed, s.installed]);
  if (s.pending) entries.push([K.pending, s.pending]);
  if (s.activeSlot !== undefined) entries.push([K.activeSlot, s.activeSlot]);
  if (s.downloading) entries.push([K.downloading, s.downloading]);
  if (s.lastError !== undefined) entries.push([K.lastError, s.lastError]);
  if (s.trustArea !== undefined) entries.push([K.trustArea, s.trustArea]);
  if (s.trustDigest) entries.push([K.trustDigest, s.trustDigest]);
  if (s.revocationArea !== undefined) entries.push([K.revocationArea, s.revocationArea]);
  if (s.revocationDigest) entries.push([K.revocationDigest, s.revocationDigest]);
  if (s.logSize !== undefined && s.logRoot) entries.push([K.logSize, s.logSize], [K.logRoot, s.logRoot]);
  const bytes = encodeCbor(new Map(entries));
  const check = parseStateRecord(bytes);
  if (!check.ok) throw new RangeError(`state record rejected: ${check.error}${check.detail ? ` (${check.detail})` : ''}`);
  return bytes;
}
