/**
 * The simulated device answers as a Zephyr/MCUboot device does (SPEC.md §13.3, §13.6, §13.7; issue
 * 18 item 1), checked on the bytes of Zephyr's documented formats (docs.zephyrproject.org, "SMP
 * protocol specification" and "Application/software image management group"; sources cited in
 * shared/smp/error-map.ts): every request gets an answer, errors in the request's version, image
 * state in every phase of an update with every flag and the slot's hash, and `image test/confirm
 * HASH` with Zephyr's group codes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { emulatedDevice } from '../hil/emulated.js';
import { makeBundle, makeRelease } from '../hil/world.js';
import { encodeCbor } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { ConsoleDecoder, encodeConsoleFrame } from '../shared/smp/console.js';
import { IMG_MGMT_ERR, imageGroupCode, rejectionError } from '../shared/smp/error-map.js';
import { MGMT_ERR, smpErrorOf } from '../shared/smp/errors.js';
import { parseSmpPacket, SMP_VERSION, type SmpPacket } from '../shared/smp/packet.js';
import { DeviceUnderTest, type RawCbor, type RawHeader, RawMap, rawPacket } from './support/smp-device.js';

const devices: DeviceUnderTest[] = [];
afterEach(() => {
  for (const d of devices.splice(0)) d.close();
});
function dut(): DeviceUnderTest {
  const d = new DeviceUnderTest();
  devices.push(d);
  return d;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const ECHO: RawHeader = { group: 0, command: 0, op: 2 };
const UPLOAD: RawHeader = { group: 1, command: 1, op: 2 };

/** The one answer to a request, its header checked (same group, command, sequence number and version; op + 1). */
function answer(d: DeviceUnderTest, h: RawHeader, payload: RawCbor): SmpPacket {
  const a = d.request(h, payload);
  expect(a).toHaveLength(1);
  const { header } = a[0];
  expect([header.group, header.command, header.seq, header.version, header.op]).toEqual([h.group, h.command, h.seq ?? 0, h.version ?? 0, h.op + 1]);
  return a[0];
}

/** The payload bytes of an answer, re-encoded deterministically (fwseal sends deterministic CBOR, so these are the wire bytes). */
const payloadHex = (p: SmpPacket) => hex(encodeCbor(p.payload));

describe('a request the CBOR reader or the codec refuses is always answered, in its version', () => {
  const refused: readonly [string, RawCbor][] = [
    ['a 300-character echo (text over 256 bytes)', new Map([['d', 'x'.repeat(300)]])],
    [
      'duplicate keys',
      new RawMap([
        ['d', 'a'],
        ['d', 'b'],
      ]),
    ],
    ['a wrong type (d is an integer)', new Map([['d', 7]])],
    ['an array where a map is expected', ['d', 'x']],
  ];
  for (const [name, payload] of refused) {
    it(`${name}: v1 {"rc": 3, "rsn"}, v2 {"err": {"group": 0, "rc": 2}}`, () => {
      const d = dut();
      const v1 = answer(d, { ...ECHO, seq: 9 }, payload);
      // a2 62 "rc" 03 63 "rsn" <text>: SMP v1 error with MGMT_ERR_EINVAL.
      expect(payloadHex(v1).startsWith('a262726303637273')).toBe(true);
      expect(smpErrorOf(v1.payload)?.rc).toBe(MGMT_ERR.EINVAL);
      const v2 = answer(d, { ...ECHO, seq: 10, version: SMP_VERSION.v2 }, payload);
      // {"err": {"group": 0, "rc": 2 OS_MGMT_ERR_INVALID_FORMAT}}: the only shape a v2 client reads.
      expect(payloadHex(v2)).toBe('a163657272a2627263026567726f757000');
      expect(d.echoes()).toBe(true);
    });
  }

  it('answers the image group with img_mgmt codes and group 64 with the fwseal code (v2)', () => {
    const d = dut();
    const img = answer(
      d,
      { ...UPLOAD, version: SMP_VERSION.v2 },
      new Map<string, RawCbor>([
        ['off', 0],
        ['data', 'text'],
      ]),
    );
    expect(smpErrorOf(img.payload)).toEqual({ group: 1, rc: IMG_MGMT_ERR.INVALID_IMAGE_HEADER });
    const env = answer(
      d,
      { group: 64, command: 0, op: 2, version: SMP_VERSION.v2 },
      new Map<string, RawCbor>([
        ['off', 0],
        ['data', new Uint8Array(1)],
      ]),
    );
    expect(smpErrorOf(env.payload)).toEqual({ group: 64, rc: CODES.MISSING_FIELD });
  });

  it('keeps SMP-level errors SMP-level, as Zephyr: an unknown command is {"rc": 8} in v1 and v2', () => {
    const d = dut();
    for (const version of [SMP_VERSION.v1, SMP_VERSION.v2])
      expect(payloadHex(answer(d, { group: 0, command: 42, op: 2, version }, new Map([['d', 'x'.repeat(300)]])))).toBe('a1627263' + '08');
  });
});

describe('a refused bundle is answered in a form stock clients parse (SPEC.md §13.6)', () => {
  it('v2: an img_mgmt group error, never group 64, for an image upload', () => {
    const d = dut();
    const wrong = makeBundle(makeRelease({ version: '2.0.0', counter: 2, signers: ['R1', 'R2'], deviceClass: 'other-board' }));
    const a = answer(
      d,
      { ...UPLOAD, version: SMP_VERSION.v2 },
      new Map<string, RawCbor>([
        ['off', 0],
        ['len', wrong.length],
        ['data', wrong.subarray(0, 2000)],
      ]),
    );
    expect(smpErrorOf(a.payload)).toEqual({ group: 1, rc: IMG_MGMT_ERR.INVALID_IMAGE_HEADER });
    // The fwseal code is kept as the device's last code (group 64 status), and named in v1 "rsn".
    expect(answer(d, { group: 64, command: 3, op: 0 }, new Map()).payload.get('code')).toBe(CODES.WRONG_DEVICE_CLASS);
    const v1 = answer(
      d,
      UPLOAD,
      new Map<string, RawCbor>([
        ['off', 0],
        ['len', wrong.length],
        ['data', wrong.subarray(0, 2000)],
      ]),
    );
    expect(smpErrorOf(v1.payload)).toEqual({ rc: MGMT_ERR.EACCESSDENIED, rsn: 'WRONG_DEVICE_CLASS' });
  });

  it('maps every fwseal code of a rejection to an img_mgmt code in 0..33 (the range stock clients know)', () => {
    for (const code of Object.values(CODES)) {
      const rc = imageGroupCode(code);
      expect(rc >= 1 && rc <= 33).toBe(true);
      const e = rejectionError({ op: 2, version: SMP_VERSION.v2, flags: 0, length: 0, group: 1, seq: 0, command: 1 }, code);
      expect(e.group).toBe(1);
    }
    expect(imageGroupCode(CODES.ROLLBACK)).toBe(IMG_MGMT_ERR.CURRENT_VERSION_IS_NEWER);
    expect(imageGroupCode(CODES.CHUNK_DIGEST_MISMATCH)).toBe(IMG_MGMT_ERR.INVALID_TLV);
    expect(imageGroupCode(CODES.SLOT_TOO_SMALL)).toBe(IMG_MGMT_ERR.INVALID_IMAGE_TOO_LARGE);
  });
});

describe('over a 115200-baud link, a refused request is answered within the SMP timeout', () => {
  it('every refused request gets its answer before a stock client gives up (2 s of virtual time, not a wall-clock assertion)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fwseal-smp-zephyr-'));
    const d = emulatedDevice(dir, { baud: 115200 });
    try {
      const decoder = new ConsoleDecoder();
      const answers: SmpPacket[] = [];
      d.link.host.onData((chunk) => {
        for (const e of decoder.push(chunk)) {
          const p = e.ok ? parseSmpPacket(e.packet) : null;
          if (p?.ok) answers.push(p);
        }
      });
      const refused: RawCbor[] = [
        new Map([['d', 'x'.repeat(300)]]),
        new RawMap([
          ['d', 'a'],
          ['d', 'b'],
        ]),
        new Map([['d', 7]]),
        ['d'],
      ];
      refused.forEach((payload, i) => {
        for (const version of [SMP_VERSION.v1, SMP_VERSION.v2]) {
          const seq = 2 * i + version;
          answers.length = 0;
          d.link.host.write(encodeConsoleFrame(rawPacket({ ...ECHO, seq, version }, payload)));
          // The SMP timeout of stock clients is seconds (smpclient 2 s for params, mcumgr 10 s); 2 s of line time is a generous bound.
          d.clock.advance(2000);
          expect(answers.map((a) => [a.header.seq, a.header.version])).toEqual([[seq, version]]);
          expect(smpErrorOf(answers[0].payload)).not.toBeNull();
        }
      });
    } finally {
      d.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
