/**
 * Revoked root keys stay revoked over the serial line too (SPEC.md §6.7, §13.3 group 64): a HIL
 * device (root A, B, C, threshold 2) stores a list by B + C that revokes A; A + B then send a list
 * that revokes nothing and a trust bundle that hands the release role to their own key. Both are
 * refused with the verifier's code, and the device keeps enforcing the first list.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { makeRevocations, makeTrust } from '../hil/world.js';
import { CODES } from '../shared/codes.js';
import { DeviceUnderTest, type RawHeader } from './support/smp-device.js';

const TRUST: RawHeader = { group: 64, command: 1, op: 2 };
const REVOCATION: RawHeader = { group: 64, command: 2, op: 2 };
const STATUS: RawHeader = { group: 64, command: 3, op: 0 };

const devices: DeviceUnderTest[] = [];
afterEach(() => {
  for (const d of devices.splice(0)) d.close();
});

/** A whole envelope in one group-64 upload; the `code` the device answers (0 accepted). */
function upload(d: DeviceUnderTest, to: RawHeader, envelope: Uint8Array): number {
  const answers = d.request(
    to,
    new Map<string, unknown>([
      ['off', 0],
      ['data', envelope],
      ['len', envelope.length],
    ]) as never,
  );
  expect(answers).toHaveLength(1);
  const p = answers[0].payload;
  expect(p.get('off')).toBe(envelope.length);
  return (p.get('code') as number | undefined) ?? 0;
}

describe('root revocation over SMP group 64', () => {
  it('a list by revoked root keys, and their rotation, are refused; the stored list stays', () => {
    const d = new DeviceUnderTest();
    devices.push(d);
    expect(upload(d, REVOCATION, makeRevocations({ version: 1, keys: ['A'], signers: ['B', 'C'] }))).toBe(0);
    expect(upload(d, REVOCATION, makeRevocations({ version: 2, keys: [], signers: ['A', 'B'] }))).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
    const takeover = makeTrust({ version: 2, root: ['A', 'B', 'C'], rootThreshold: 2, release: ['X'], releaseThreshold: 1, signers: ['A', 'B'] });
    expect(upload(d, TRUST, takeover)).toBe(CODES.ROTATION_NOT_AUTHORIZED);
    const dropsA = makeRevocations({ version: 2, keys: [], signers: ['B', 'C'] });
    expect(upload(d, REVOCATION, dropsA)).toBe(CODES.REVOCATION_ROLLBACK);
    const status = d.request(STATUS, new Map());
    expect(status[0].payload.get('trust')).toBe(1);
    expect(status[0].payload.get('revocation')).toBe(1);
  });
});
