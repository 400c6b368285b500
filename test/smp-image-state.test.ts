/**
 * Image state (group 1, command 0) exactly as Zephyr's img_mgmt reports it with MCUboot, in every
 * phase of an update (SPEC.md §13.3; Zephyr grp/img_mgmt/src/img_mgmt_state.c): before the
 * upload, uploaded and pending, on trial, confirmed, reverted; every flag present, false ones too,
 * "splitStatus": 0, and `hash` the slot's manifest digest, which `image test HASH` and `image
 * confirm HASH` take, with Zephyr's img_mgmt codes for a wrong hash or a refused change.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { parseEnvelope } from '../device/index.js';
import { makeBundle, makeRelease, type Release } from '../hil/world.js';
import { nodeSha256 } from '../host/hash.js';
import { type CborMap, encodeCbor } from '../shared/cbor.js';
import { IMG_MGMT_ERR } from '../shared/smp/error-map.js';
import { MGMT_ERR, smpErrorOf } from '../shared/smp/errors.js';
import { SMP_VERSION, type SmpPacket } from '../shared/smp/packet.js';
import { DeviceUnderTest, type RawCbor, type RawHeader } from './support/smp-device.js';

const devices: DeviceUnderTest[] = [];
afterEach(() => {
  for (const d of devices.splice(0)) d.close();
});

const STATE_READ: RawHeader = { group: 1, command: 0, op: 0 };
const STATE_WRITE: RawHeader = { group: 1, command: 0, op: 2 };
const UPLOAD: RawHeader = { group: 1, command: 1, op: 2 };
const release2 = (): Release => makeRelease({ version: '2.0.0', counter: 2, signers: ['R1', 'R2'], deviceClass: 'hil-board' });
const factory = (): Release =>
  makeRelease({ version: '1.0.0', counter: 1, signers: ['R1', 'R2'], deviceClass: 'hil-board', imageSize: 16384, chunkSize: 1024 });
/** The manifest digest (SPEC.md §6.3): SHA-256 of the manifest payload, the `hash` of its slot. */
const digestOf = (r: Release): Uint8Array => {
  const e = parseEnvelope(r.envelope);
  if (!e.ok) throw new Error(e.error);
  return nodeSha256(e.envelope.payload);
};

function only(d: DeviceUnderTest, h: RawHeader, payload: RawCbor): SmpPacket {
  const a = d.request(h, payload);
  expect(a).toHaveLength(1);
  expect([a[0].header.group, a[0].header.command, a[0].header.op]).toEqual([h.group, h.command, h.op + 1]);
  return a[0];
}

/** A slot entry as Zephyr sends it (non-frugal list): slot, version, hash and all five flags. */
function slot(n: number, version: string, hash: Uint8Array, flags: { pending?: boolean; confirmed?: boolean; active?: boolean } = {}): CborMap {
  return new Map<string, RawCbor>([
    ['slot', n],
    ['version', version],
    ['hash', hash],
    ['bootable', true],
    ['pending', flags.pending ?? false],
    ['confirmed', flags.confirmed ?? false],
    ['active', flags.active ?? false],
    ['permanent', false],
  ]) as CborMap;
}

/** The exact payload bytes of the image state answer (fwseal sends deterministic CBOR). */
function expectState(d: DeviceUnderTest, slots: readonly CborMap[]): void {
  const a = only(d, STATE_READ, new Map());
  const want = new Map<string, unknown>([
    ['images', slots],
    ['splitStatus', 0],
  ]);
  expect(Buffer.from(encodeCbor(a.payload)).toString('hex')).toBe(Buffer.from(encodeCbor(want as CborMap)).toString('hex'));
  expect(a.payload.get('splitStatus')).toBe(0);
}

function upload(d: DeviceUnderTest, bundle: Uint8Array): void {
  let off = 0;
  for (let i = 0; off < bundle.length && i < 1000; i++) {
    const data = bundle.subarray(off, Math.min(bundle.length, off + 2048));
    const a = only(
      d,
      UPLOAD,
      new Map<string, RawCbor>(
        off === 0
          ? [
              ['off', 0],
              ['len', bundle.length],
              ['data', data],
            ]
          : [
              ['off', off],
              ['data', data],
            ],
      ),
    );
    expect(smpErrorOf(a.payload)).toBeNull();
    off = a.payload.get('off') as number;
  }
  expect(off).toBe(bundle.length);
}

describe('image state in every phase of an update, as Zephyr/MCUboot report it', () => {
  it('before, pending, trial, confirmed', () => {
    const d = new DeviceUnderTest();
    devices.push(d);
    const old = digestOf(factory());
    const next = release2();
    const neu = digestOf(next);
    expectState(d, [slot(0, '1.0.0', old, { active: true, confirmed: true })]);
    upload(d, makeBundle(next));
    expectState(d, [slot(0, '1.0.0', old, { active: true, confirmed: true }), slot(1, '2.0.0', neu, { pending: true })]);
    d.restart();
    // Trial boot: the running new image is active and not confirmed, the old one confirmed, nothing pending.
    expectState(d, [slot(0, '1.0.0', old, { confirmed: true }), slot(1, '2.0.0', neu, { active: true })]);
    const c = only(
      d,
      STATE_WRITE,
      new Map<string, RawCbor>([
        ['confirm', true],
        ['hash', neu],
      ]),
    );
    expect(smpErrorOf(c.payload)).toBeNull();
    expectState(d, [slot(0, '1.0.0', old), slot(1, '2.0.0', neu, { active: true, confirmed: true })]);
    d.restart();
    expectState(d, [slot(0, '1.0.0', old), slot(1, '2.0.0', neu, { active: true, confirmed: true })]);
  });

  it('reverted: after the trial boots run out the old image is active and confirmed, the new one has no flag', () => {
    const d = new DeviceUnderTest();
    devices.push(d);
    const old = digestOf(factory());
    const next = release2();
    upload(d, makeBundle(next));
    for (let i = 0; i < 4; i++) d.restart();
    expectState(d, [slot(0, '1.0.0', old, { active: true, confirmed: true }), slot(1, '2.0.0', digestOf(next), {})]);
  });
});

describe('image test HASH / image confirm HASH with Zephyr answers', () => {
  const err = (d: DeviceUnderTest, payload: RawCbor, version: number = SMP_VERSION.v2) => smpErrorOf(only(d, { ...STATE_WRITE, version }, payload).payload);

  it('test of the pending image is a no-op; of the running one, a wrong hash, or no hash: img_mgmt errors', () => {
    const d = new DeviceUnderTest();
    devices.push(d);
    const next = release2();
    upload(d, makeBundle(next));
    expect(err(d, new Map<string, RawCbor>([['hash', digestOf(next)]]))).toBeNull();
    expect(err(d, new Map<string, RawCbor>([['hash', digestOf(factory())]]))).toEqual({ group: 1, rc: IMG_MGMT_ERR.IMAGE_SETTING_TEST_TO_ACTIVE_DENIED });
    expect(err(d, new Map<string, RawCbor>([['hash', new Uint8Array(32).fill(7)]]))).toEqual({ group: 1, rc: IMG_MGMT_ERR.HASH_NOT_FOUND });
    expect(err(d, new Map<string, RawCbor>([['hash', new Uint8Array(31)]]))).toEqual({ group: 1, rc: IMG_MGMT_ERR.INVALID_HASH });
    expect(err(d, new Map<string, RawCbor>([['confirm', false]]))).toEqual({ group: 1, rc: IMG_MGMT_ERR.INVALID_HASH });
    // While an image is pending, confirming is IMAGE_ALREADY_PENDING; in v1 that is EBADSTATE (img_mgmt_translate_error_code).
    expect(err(d, new Map<string, RawCbor>([['confirm', true]]))).toEqual({ group: 1, rc: IMG_MGMT_ERR.IMAGE_ALREADY_PENDING });
    expect(err(d, new Map<string, RawCbor>([['confirm', true]]), SMP_VERSION.v1)).toEqual({ rc: MGMT_ERR.EBADSTATE });
    // A wrong hash in v1: HASH_NOT_FOUND translates to EUNKNOWN, as in Zephyr.
    expect(err(d, new Map<string, RawCbor>([['hash', new Uint8Array(32)]]), SMP_VERSION.v1)).toEqual({ rc: MGMT_ERR.EUNKNOWN });
  });

  it('confirm without a hash on trial confirms the running image; a confirmed device answers its state', () => {
    const d = new DeviceUnderTest();
    devices.push(d);
    upload(d, makeBundle(release2()));
    d.restart();
    expect(err(d, new Map<string, RawCbor>([['confirm', true]]))).toBeNull();
    expect(only(d, { group: 64, command: 3, op: 0 }, new Map()).payload.get('counter')).toBe(2);
    expect(err(d, new Map<string, RawCbor>([['confirm', true]]))).toBeNull();
  });
});
