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
 *   }
 */
import { type CborKey, type Encodable, encodeCbor } from './cbor.js';
import { type Result } from './codes.js';
import { asBytes, asText, asUint } from './fields.js';
import { DIGEST_BYTES, LIMITS } from './limits.js';
import { DEVICE_CLASS_PATTERN } from './manifest.js';
import { parsePayload, payloadHeader } from './payload.js';

export const STATE_KEY = Object.freeze({
  sequence: 2, deviceClass: 3, securityCounter: 4, trustVersion: 5, revocationVersion: 6, installed: 7, pending: 8, trialBoots: 9,
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
};

export function parseStateRecord(bytes: Uint8Array): Result<{ value: DeviceStateRecord }> {
  return parsePayload(bytes, 'state', (f) => {
    const K = STATE_KEY;
    const installed = f.optional(K.installed);
    const pending = f.optional(K.pending);
    return Object.freeze({
      sequence: asUint(f.required(K.sequence, 'sequence'), 'sequence', 0, LIMITS.maxCounter),
      deviceClass: asText(f.required(K.deviceClass, 'device class'), 'device class', LIMITS.maxDeviceClassBytes, DEVICE_CLASS_PATTERN),
      securityCounter: asUint(f.required(K.securityCounter, 'security counter'), 'security counter', 0, LIMITS.maxCounter),
      trustVersion: asUint(f.required(K.trustVersion, 'trust version'), 'trust version', 0, LIMITS.maxCounter),
      revocationVersion: asUint(f.required(K.revocationVersion, 'revocation version'), 'revocation version', 0, LIMITS.maxCounter),
      ...(installed !== undefined ? { installed: asBytes(installed, 'installed digest', DIGEST_BYTES) } : {}),
      ...(pending !== undefined ? { pending: asBytes(pending, 'pending digest', DIGEST_BYTES) } : {}),
      trialBoots: asUint(f.required(K.trialBoots, 'trial boots'), 'trial boots', 0, 255),
    });
  });
}

export function encodeStateRecord(s: DeviceStateRecord): Uint8Array {
  const K = STATE_KEY;
  const entries: [CborKey, Encodable][] = [
    ...payloadHeader('state'),
    [K.sequence, s.sequence], [K.deviceClass, s.deviceClass], [K.securityCounter, s.securityCounter],
    [K.trustVersion, s.trustVersion], [K.revocationVersion, s.revocationVersion], [K.trialBoots, s.trialBoots],
  ];
  if (s.installed) entries.push([K.installed, s.installed]);
  if (s.pending) entries.push([K.pending, s.pending]);
  const bytes = encodeCbor(new Map(entries));
  const check = parseStateRecord(bytes);
  if (!check.ok) throw new RangeError(`state record rejected: ${check.error}${check.detail ? ' (' + check.detail + ')' : ''}`);
  return bytes;
}
