/**
 * SMP requests an attacker on the serial line can send (SPEC.md §13.7; issue 11 finding 4): every
 * out-of-bounds offset or length, wrong type, missing field and lying packet is answered with an
 * SMP error (or, for an offset the device does not expect, the offset it does), nothing is sized
 * by an unchecked number, and no handler exception ever ends the device: it is answered EUNKNOWN
 * and logged. After every case the device still answers echo.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createVerifier } from '../device/index.js';
import { SmpServer } from '../hil/smp-endpoint.js';
import { nodeSha256 } from '../host/hash.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { echo, status } from '../shared/smp/commands.js';
import { encodeConsoleFrame } from '../shared/smp/console.js';
import { MGMT_ERR, smpErrorOf } from '../shared/smp/errors.js';
import { encodeRequest } from '../shared/smp/messages.js';
import { SMP_VERSION, type SmpPacket } from '../shared/smp/packet.js';
import { DeviceUnderTest, type RawCbor, RawFloat, type RawHeader, RawMap, rawPacket } from './support/smp-device.js';

const devices: DeviceUnderTest[] = [];
afterEach(() => {
  for (const d of devices.splice(0)) d.close();
});

function dut(options: ConstructorParameters<typeof DeviceUnderTest>[0] = {}): DeviceUnderTest {
  const d = new DeviceUnderTest(options);
  devices.push(d);
  return d;
}

const IMAGE: RawHeader = { group: 1, command: 1, op: 2 };
const MANIFEST: RawHeader = { group: 64, command: 0, op: 2 };
const TRUST: RawHeader = { group: 64, command: 1, op: 2 };
const REVOCATION: RawHeader = { group: 64, command: 2, op: 2 };

const b = (n: number, fill = 0xa5) => new Uint8Array(n).fill(fill);
const m = (entries: Record<string, RawCbor>) => new Map(Object.entries(entries));
const MAGIC = [0x46, 0x57, 0x53, 0x42, 0x4e, 0x44, 0x31, 0x00];

/** The only answer to a request, checked against it (same group, command, sequence number; op + 1). */
function only(answers: SmpPacket[], h: RawHeader): SmpPacket {
  expect(answers.length).toBe(1);
  const a = answers[0];
  expect([a.header.group, a.header.command, a.header.seq, a.header.op]).toEqual([h.group, h.command, h.seq ?? 0, h.op + 1]);
  return a;
}

type Expect = { readonly rc: number; readonly rsn: string } | { readonly group: number; readonly rc: number } | { readonly off: number };

type Case = {
  readonly name: string;
  readonly to: RawHeader;
  /** Requests sent first (each must be answered without an error). */
  readonly before?: readonly RawCbor[];
  readonly payload: RawCbor;
  readonly lengthDelta?: number;
  readonly expect: Expect;
};

const EINVAL = (rsn: string): Expect => ({ rc: MGMT_ERR.EINVAL, rsn });

const ENVELOPE_CASES: readonly Case[] = [
  // The reported crash: a continuation chunk that runs past `len` (RangeError in e.buf.set).
  {
    name: 'a continuation past len',
    to: TRUST,
    before: [m({ off: 0, len: 10, data: b(5) })],
    payload: m({ off: 5, data: b(10) }),
    expect: EINVAL('BAD_VALUE'),
  },
  {
    name: 'a continuation naming a larger len than its upload',
    to: TRUST,
    before: [m({ off: 0, len: 10, data: b(5) })],
    payload: m({ off: 5, len: 100, data: b(50) }),
    expect: EINVAL('BAD_VALUE'),
  },
  { name: 'a first chunk longer than its len', to: TRUST, payload: m({ off: 0, len: 4, data: b(5) }), expect: EINVAL('BAD_VALUE') },
  { name: 'a first chunk without len', to: MANIFEST, payload: m({ off: 0, data: b(4) }), expect: EINVAL('MISSING_FIELD') },
  { name: 'len 0', to: TRUST, payload: m({ off: 0, len: 0, data: b(0) }), expect: EINVAL('BAD_VALUE') },
  {
    name: 'len above maxEnvelopeBytes (nothing allocated)',
    to: REVOCATION,
    payload: m({ off: 0, len: LIMITS.maxEnvelopeBytes + 1, data: b(1) }),
    expect: EINVAL('BAD_VALUE'),
  },
  { name: 'len 2^32', to: TRUST, payload: m({ off: 0, len: 2 ** 32, data: b(1) }), expect: EINVAL('BAD_VALUE') },
  { name: 'len negative', to: TRUST, payload: m({ off: 0, len: -5, data: b(1) }), expect: EINVAL('BAD_VALUE') },
  { name: 'len NaN', to: TRUST, payload: m({ off: 0, len: new RawFloat(NaN), data: b(1) }), expect: EINVAL('WRONG_TYPE') },
  { name: 'len Infinity', to: TRUST, payload: m({ off: 0, len: new RawFloat(Infinity), data: b(1) }), expect: EINVAL('WRONG_TYPE') },
  { name: 'len 1e300', to: TRUST, payload: m({ off: 0, len: 1e300, data: b(1) }), expect: EINVAL('BAD_VALUE') },
  { name: 'len as text', to: TRUST, payload: m({ off: 0, len: '10', data: b(1) }), expect: EINVAL('WRONG_TYPE') },
  { name: 'off negative', to: TRUST, payload: m({ off: -1, data: b(1) }), expect: EINVAL('BAD_VALUE') },
  { name: 'off fractional', to: TRUST, payload: m({ off: 0.5, len: 4, data: b(1) }), expect: EINVAL('WRONG_TYPE') },
  { name: 'off as text', to: TRUST, payload: m({ off: '0', len: 4, data: b(1) }), expect: EINVAL('WRONG_TYPE') },
  { name: 'off 2^53 (beyond the integers the reader accepts)', to: TRUST, payload: m({ off: 2n ** 53n, data: b(1) }), expect: EINVAL('TOO_LARGE') },
  { name: 'off 2^64 - 1', to: TRUST, payload: m({ off: 2n ** 64n - 1n, data: b(1) }), expect: EINVAL('TOO_LARGE') },
  { name: 'off -2^64', to: TRUST, payload: m({ off: -(2n ** 64n), data: b(1) }), expect: EINVAL('TOO_LARGE') },
  { name: 'off past maxEnvelopeBytes', to: TRUST, payload: m({ off: LIMITS.maxEnvelopeBytes + 1, data: b(1) }), expect: EINVAL('BAD_VALUE') },
  { name: 'a chunk running past maxEnvelopeBytes', to: TRUST, payload: m({ off: LIMITS.maxEnvelopeBytes - 4, data: b(10) }), expect: EINVAL('TOO_LARGE') },
  { name: 'no data', to: TRUST, payload: m({ off: 0, len: 4 }), expect: EINVAL('MISSING_FIELD') },
  { name: 'data as text', to: TRUST, payload: m({ off: 0, len: 4, data: 'abcd' }), expect: EINVAL('WRONG_TYPE') },
  { name: 'data as an array', to: TRUST, payload: m({ off: 0, len: 4, data: [1, 2, 3, 4] }), expect: EINVAL('WRONG_TYPE') },
  { name: 'a payload that is not a map', to: TRUST, payload: [0, 10, b(4)], expect: EINVAL('WRONG_TYPE') },
  {
    name: 'off given twice',
    to: TRUST,
    payload: new RawMap([
      ['off', 0],
      ['len', 4],
      ['off', 4],
      ['data', b(4)],
    ]),
    expect: EINVAL('DUPLICATE_KEY'),
  },
  {
    name: 'a packet shorter than its header says',
    to: TRUST,
    payload: m({ off: 0, len: 4, data: b(4) }),
    lengthDelta: 5,
    expect: { rc: MGMT_ERR.ECORRUPT, rsn: 'TRUNCATED' },
  },
  { name: 'CBOR cut short inside a whole packet', to: TRUST, payload: Uint8Array.of(0xa3, 0x63, 0x6f, 0x66, 0x66, 0x00), expect: EINVAL('TRUNCATED') },
  { name: 'a packet longer than its header says', to: TRUST, payload: m({ off: 0, len: 4, data: b(4) }), lengthDelta: -1, expect: EINVAL('TRAILING_BYTES') },
  // Not errors: the device answers the offset it expects, as Zephyr's img_mgmt (the client goes there).
  { name: 'a continuation of an upload never started', to: REVOCATION, payload: m({ off: 5, data: b(5) }), expect: { off: 0 } },
  {
    name: 'an offset other than the expected one',
    to: TRUST,
    before: [m({ off: 0, len: 10, data: b(5) })],
    payload: m({ off: 7, data: b(3) }),
    expect: { off: 5 },
  },
];

const IMAGE_CASES: readonly Case[] = [
  {
    name: 'a continuation past len',
    to: IMAGE,
    before: [m({ off: 0, len: 13, data: new Uint8Array(MAGIC) })],
    payload: m({ off: 8, data: b(10) }),
    expect: EINVAL('BAD_VALUE'),
  },
  {
    name: 'len beyond any bundle that fits the slot (refused before anything is kept)',
    to: IMAGE,
    payload: m({ off: 0, len: LIMITS.maxImageSize, data: b(1) }),
    expect: { rc: MGMT_ERR.ENOMEM, rsn: 'SLOT_TOO_SMALL' },
  },
  { name: 'len too short for a bundle', to: IMAGE, payload: m({ off: 0, len: 12, data: b(1) }), expect: EINVAL('BAD_VALUE') },
  {
    name: 'a bundle header naming a manifest longer than len',
    to: IMAGE,
    payload: m({ off: 0, len: 40, data: new Uint8Array([...MAGIC, 0, 0, 0x40, 0]) }),
    expect: EINVAL('BAD_VALUE'),
  },
  { name: 'len 2^32', to: IMAGE, payload: m({ off: 0, len: 2 ** 32, data: b(1) }), expect: EINVAL('BAD_VALUE') },
  { name: 'len 2^53 - 1', to: IMAGE, payload: m({ off: 0, len: Number.MAX_SAFE_INTEGER, data: b(1) }), expect: EINVAL('BAD_VALUE') },
  { name: 'off 2^32', to: IMAGE, payload: m({ off: 2 ** 32, data: b(1) }), expect: EINVAL('BAD_VALUE') },
  { name: 'off negative', to: IMAGE, payload: m({ off: -4096, data: b(1) }), expect: EINVAL('BAD_VALUE') },
  { name: 'off fractional', to: IMAGE, payload: m({ off: new RawFloat(0.25), len: 100, data: b(1) }), expect: EINVAL('WRONG_TYPE') },
  { name: 'a first chunk without len', to: IMAGE, payload: m({ off: 0, data: b(1) }), expect: EINVAL('MISSING_FIELD') },
  { name: 'a sha longer than 32 bytes', to: IMAGE, payload: m({ off: 0, len: 100, sha: b(33), data: b(1) }), expect: EINVAL('TOO_LARGE') },
  { name: 'a continuation of an upload never started', to: IMAGE, payload: m({ off: 4096, data: b(100) }), expect: { off: 0 } },
  {
    name: 'an SMP v2 request past len (a group error: img_mgmt INVALID_IMAGE_DATA_OVERRUN, as Zephyr)',
    to: { ...IMAGE, version: SMP_VERSION.v2 },
    before: [m({ off: 0, len: 13, data: new Uint8Array(MAGIC) })],
    payload: m({ off: 8, data: b(10) }),
    expect: { group: 1, rc: 31 },
  },
];

describe('out-of-bounds offsets and lengths are answered with an SMP error; the device keeps serving (SPEC.md §13.7)', () => {
  for (const c of [...ENVELOPE_CASES.map((c) => ['group 64', c] as const), ...IMAGE_CASES.map((c) => ['image upload', c] as const)]) {
    it(`${c[0]}: ${c[1].name}`, () => {
      const { to, before = [], payload, lengthDelta = 0, expect: want } = c[1];
      const d = dut();
      before.forEach((p, i) => {
        const a = only(d.request({ ...to, seq: 100 + i }, p), { ...to, seq: 100 + i });
        expect(smpErrorOf(a.payload)).toBeNull();
      });
      const a = only(d.request({ ...to, seq: 7 }, payload, lengthDelta), { ...to, seq: 7 });
      if ('off' in want) {
        expect(smpErrorOf(a.payload)).toBeNull();
        expect(a.payload.get('off')).toBe(want.off);
      } else {
        expect(smpErrorOf(a.payload)).toEqual(want);
      }
      // Answered by the checks, not by the safety net; and the device still serves.
      expect(d.device.server.stats().failed).toBe(0);
      expect(d.echoes()).toBe(true);
    });
  }

  it('an envelope upload refused past len still completes with the right chunk', () => {
    const d = dut();
    expect(only(d.request(TRUST, m({ off: 0, len: 10, data: b(5) })), TRUST).payload.get('off')).toBe(5);
    expect(smpErrorOf(only(d.request(TRUST, m({ off: 5, data: b(10) })), TRUST).payload)).toEqual(EINVAL('BAD_VALUE'));
    const done = only(d.request(TRUST, m({ off: 5, data: b(5) })), TRUST).payload;
    expect([done.get('off'), done.get('code')]).toEqual([10, CODES.TRUNCATED]); // ten bytes of 0xa5 are not a trust bundle
  });
});

describe('a handler failure is answered EUNKNOWN and logged, never ends the device (SPEC.md §13.7)', () => {
  it('the simulated device: a verifier that throws during a trust update', () => {
    const verifier = {
      ...createVerifier({ sha256: nodeSha256 }),
      verifyTrustUpdate: () => {
        throw new TypeError('verifier bug');
      },
    };
    const d = dut({ verifier });
    const a = only(d.request(TRUST, m({ off: 0, len: 4, data: b(4) })), TRUST);
    expect(smpErrorOf(a.payload)).toEqual({ rc: MGMT_ERR.EUNKNOWN });
    expect(d.device.server.stats().failed).toBe(1);
    expect(d.log.some((l) => l.includes('fwseal.trust') && l.includes('verifier bug'))).toBe(true);
    expect(d.echoes()).toBe(true);
    expect(only(d.request({ group: 64, command: 3, op: 0 }, new Map()), { group: 64, command: 3, op: 0 }).payload.get('phase')).toBe('idle');
  });

  function serverWith(handler: () => never | { value: { text: string } }, fatal?: (e: unknown) => boolean) {
    const written: Uint8Array[] = [];
    let listener: (c: Uint8Array) => void = () => {};
    const log: string[] = [];
    const server = new SmpServer(
      {
        write: (x) => {
          written.push(x);
        },
        onData: (l) => {
          listener = l;
          return () => {};
        },
      },
      { log: (l) => log.push(l), ...(fatal ? { fatal } : {}) },
    )
      .handle(echo, (req) => ({ value: { text: req.text } }))
      .handle(status, handler as never);
    return { server, written, log, send: (packet: Uint8Array) => listener(encodeConsoleFrame(packet)) };
  }

  it('SmpServer: a handler that throws gets EUNKNOWN, the next request is served', () => {
    const s = serverWith(() => {
      throw new RangeError('offset is out of bounds');
    });
    s.send(encodeRequest(status, {}, 1));
    s.send(encodeRequest(echo, { text: 'after' }, 2));
    expect(s.written.length).toBe(2);
    expect(s.server.stats()).toMatchObject({ requests: 2, failed: 1 });
    expect(s.log.join('\n')).toContain('offset is out of bounds');
  });

  it('SmpServer: a handler answer that cannot be encoded gets EUNKNOWN', () => {
    const s = serverWith(() => ({ value: { slot: 0, version: '', counter: 0, code: 0, phase: 'NOT A PHASE' } }) as never);
    s.send(encodeRequest(status, {}, 3));
    expect(s.written.length).toBe(1);
    expect(s.server.stats().failed).toBe(1);
  });

  it('SmpServer: an error the device declares fatal (a simulated power cut) is not answered and passes through', () => {
    class PowerCut extends Error {}
    const s = serverWith(
      () => {
        throw new PowerCut('power cut');
      },
      (e) => e instanceof PowerCut,
    );
    expect(() => s.send(encodeRequest(status, {}, 4))).toThrow(PowerCut);
    expect(s.written.length).toBe(0);
  });
});

describe('malformed frames and packets never throw out of the read loop', () => {
  it('garbage, packets with an undefined op or version, and responses are dropped; the device answers echo after', () => {
    const d = dut();
    let seed = 1;
    const noise = Uint8Array.from({ length: 20_000 }, () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed >>> 24;
    });
    expect(d.send(noise)).toEqual([]);
    const bad = rawPacket(TRUST, m({ off: 0 }));
    bad[0] = 0x07; // op 7: not defined, no header to answer with
    expect(d.sendPacket(bad)).toEqual([]);
    bad[0] = 0x12; // version bits 2
    expect(d.sendPacket(bad)).toEqual([]);
    expect(d.request({ group: 0, command: 0, op: 3 }, m({ r: 'a response' }))).toEqual([]);
    expect(d.device.server.stats()).toMatchObject({ failed: 0, unanswerable: 2 });
    expect(d.echoes()).toBe(true);
  });
});
