/**
 * SPEC.md §14 H8: where a manifest, trust bundle or revocation list is expected, a file that is
 * recognisably another kind of file (a key, a PEM, an empty file, a digest table) is a USAGE error
 * (exit 2); an envelope of another kind is WRONG_KIND (exit 1, as on a device); all other bytes go
 * to the device verifier, so a damaged, forged or hostile object stays a rejection with the code a
 * device gives (exit 1). Also: inspect answers a code for every object the parsers accept or refuse.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyManifest } from '../device/index.js';
import { loadSigningKey } from '../host/keys.js';
import { CborTag, decodeCbor, encodeCbor } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { encodeEnvelope, parseEnvelope } from '../shared/cose.js';
import { LIMITS } from '../shared/limits.js';
import { type CliWorld, expectOk, expectRejected, expectUsage, makeCliWorld, PASS } from './support/cli-world.js';
import { detBytes, signWith } from './support/fixtures.js';

let w: CliWorld;

beforeAll(async () => {
  w = await makeCliWorld(['A', 'B', 'R1', 'R2'], {
    trust: [
      '--root',
      'A.pub',
      '--root',
      'B.pub',
      '--root-threshold',
      '2',
      '--release',
      'R1.pub',
      '--release',
      'R2.pub',
      '--release-threshold',
      '2',
      '--sign',
      'A.key',
      '--sign',
      'B.key',
    ],
    image: true,
  });
  expectOk(await w.run('sign', 'm.cose', '--key', 'R1.key'));
  expectOk(await w.run('sign', 'm.cose', '--key', 'R2.key'));
  expectOk(
    await w.run('revoke', '--trust', 'trust.cbor', '--version', '1', '--kid', '00'.repeat(16), '--sign', 'A.key', '--sign', 'B.key', '--out', 'rl.cbor'),
  );
  const notTagged = detBytes(300, 'random bytes');
  notTagged[0] = 0x42;
  w.write('random.bin', notTagged);
  const big = new Uint8Array(LIMITS.maxEnvelopeBytes + 1);
  w.write('big-untagged.bin', big);
  big.set([0xd8, 0x62]);
  w.write('big-tagged.bin', big);
  w.write('empty.bin', new Uint8Array(0));
  w.write('key.pem', '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n');
  w.write('untagged-array.bin', encodeCbor([new Uint8Array(0), new Map(), new Uint8Array(0), []]));
});

afterAll(() => w?.close());

describe('a file that is recognisably another kind of file is USAGE (exit 2), not a rejection', () => {
  it.each([
    ['a public key file', 'A.pub'],
    ['a private key file', 'A.key'],
    ['a PEM file', 'key.pem'],
    ['an empty file', 'empty.bin'],
    ['a digest table', 'm.digests'],
  ])('verify --trust <%s>', async (_label, file) => {
    expectUsage(await w.run('verify', 'm.cose', '--trust', file));
  });

  it.each([
    ['a public key file', 'A.pub'],
    ['an empty file', 'empty.bin'],
  ])('verify <%s> as the manifest', async (_label, file) => {
    expectUsage(await w.run('verify', file, '--trust', 'trust.cbor'));
  });

  it.each([
    ['sign <a public key file>', ['sign', 'A.pub', '--key', 'R1.key']],
    ['sign <an empty file>', ['sign', 'empty.bin', '--key', 'R1.key']],
    [
      'revoke --trust <a public key file>',
      ['revoke', '--trust', 'A.pub', '--version', '2', '--kid', '11'.repeat(16), '--sign', 'A.key', '--out', 'never.cbor'],
    ],
  ])('%s', async (_label, args) => {
    const before = w.bytes('m.cose');
    expectUsage(await w.run(...args));
    expect(w.bytes('m.cose')).toEqual(before);
    expect(() => w.bytes('never.cbor')).toThrow();
  });
});

describe('another kind of fwseal object is refused as a device refuses it: WRONG_KIND (exit 1), both kinds named', () => {
  it.each([
    ['a manifest as --trust', ['verify', 'm.cose', '--trust', 'm.cose']],
    ['a revocation list as --trust', ['verify', 'm.cose', '--trust', 'rl.cbor']],
    ['a trust bundle as --revocations', ['verify', 'm.cose', '--trust', 'trust.cbor', '--revocations', 'trust.cbor']],
    ['sign --trust <a manifest>', ['sign', 'm.cose', '--key', 'R1.key', '--trust', 'm.cose']],
    [
      'revoke --manifest <a trust bundle>',
      ['revoke', '--trust', 'trust.cbor', '--version', '2', '--manifest', 'trust.cbor', '--sign', 'A.key', '--out', 'never.cbor'],
    ],
    [
      'revoke --previous <a manifest>',
      ['revoke', '--trust', 'trust.cbor', '--version', '2', '--kid', '11'.repeat(16), '--previous', 'm.cose', '--sign', 'A.key', '--out', 'never.cbor'],
    ],
    [
      'trust rotate --previous <a manifest>',
      [
        'trust',
        'rotate',
        '--previous',
        'm.cose',
        '--root',
        'A.pub',
        '--root-threshold',
        '1',
        '--release',
        'R1.pub',
        '--release-threshold',
        '1',
        '--sign',
        'A.key',
        '--out',
        'never.cbor',
      ],
    ],
  ])('%s', async (_label, args) => {
    const before = w.bytes('m.cose');
    const r = await w.run(...args);
    expectRejected(r, 'WRONG_KIND');
    expect(r.err + r.out).toMatch(/is an fwseal (manifest|trust bundle|revocation list), not an fwseal/);
    expect(w.bytes('m.cose')).toEqual(before);
    expect(() => w.bytes('never.cbor')).toThrow();
  });
});

describe("bytes that are not recognisably another file go to the verifier: the device's code (exit 1)", () => {
  it.each([
    ['random bytes', 'random.bin'],
    ['random bytes above the envelope limit', 'big-untagged.bin'],
    ['an untagged CBOR array', 'untagged-array.bin'],
  ])('verify --trust <%s> and verify <%s> give the code verifyManifest gives', async (_label, file) => {
    const bytes = w.bytes(file);
    const asTrust = verifyManifest(w.bytes('m.cose'), bytes, { deviceClass: 'acme-gw', counter: 0 });
    expectRejected(await w.run('verify', 'm.cose', '--trust', file), asTrust.error as never);
    const asManifest = verifyManifest(bytes, w.bytes('trust.cbor'), { deviceClass: 'acme-gw', counter: 0 });
    expectRejected(await w.run('verify', file, '--trust', 'trust.cbor', '--device-class', 'acme-gw'), asManifest.error as never);
  });
});

describe('a real (tagged) fwseal object that fails stays a rejection (exit 1, its code)', () => {
  const trustVariant = (change: (b: Uint8Array) => Uint8Array) => w.write('variant.cbor', change(w.bytes('trust.cbor')));

  it('a truncated trust bundle: TRUNCATED', async () => {
    trustVariant((b) => b.subarray(0, b.length - 1));
    expectRejected(await w.run('verify', 'm.cose', '--trust', 'variant.cbor'), 'TRUNCATED');
  });

  it('a trust bundle with a damaged signature: TRUST_THRESHOLD_NOT_MET', async () => {
    trustVariant((b) => {
      const c = b.slice();
      c[c.length - 1] ^= 1;
      return c;
    });
    expectRejected(await w.run('verify', 'm.cose', '--trust', 'variant.cbor'), 'TRUST_THRESHOLD_NOT_MET');
  });

  it('a tagged envelope whose payload is of an unknown kind: WRONG_KIND', async () => {
    w.write(
      'variant.cbor',
      encodeEnvelope({
        payload: encodeCbor(
          new Map([
            [0, 9],
            [1, 1],
          ]),
        ),
        signatures: [],
      }),
    );
    expectRejected(await w.run('verify', 'm.cose', '--trust', 'variant.cbor'), 'WRONG_KIND');
  });

  it('a COSE_Sign1 (tag 18): BAD_HEADER', async () => {
    w.write('variant.cbor', encodeCbor(new CborTag(18, [new Uint8Array(0), new Map(), new Uint8Array(0), new Uint8Array(64)])));
    expectRejected(await w.run('verify', 'm.cose', '--trust', 'variant.cbor'), 'BAD_HEADER');
  });

  it('a tagged file above the envelope limit: TOO_LARGE', async () => {
    expectRejected(await w.run('verify', 'm.cose', '--trust', 'big-tagged.bin'), 'TOO_LARGE');
  });

  it('the unsigned draft manifest: THRESHOLD_NOT_MET', async () => {
    const env = parseEnvelope(w.bytes('m.cose'));
    if (!env.ok) throw new Error(env.error);
    w.write('draft.cose', encodeEnvelope({ payload: env.envelope.payload, signatures: [] }));
    expectRejected(await w.run('verify', 'draft.cose', '--trust', 'trust.cbor'), 'THRESHOLD_NOT_MET');
  });
});

describe('inspect and verify on a manifest created at the edge of the calendar or past it', () => {
  /** m.cose's payload with key 10 (created) replaced, signed by R1 and R2 without parsing the payload. */
  function withCreated(created: number): Uint8Array {
    const env = parseEnvelope(w.bytes('m.cose'));
    if (!env.ok) throw new Error(env.error);
    const map = decodeCbor(env.envelope.payload);
    if (!map.ok || !(map.value instanceof Map)) throw new Error('payload');
    map.value.set(10, created);
    const signers = ['R1', 'R2'].map((k) => loadSigningKey(w.path(`${k}.key`), () => PASS));
    return signWith(encodeCbor(map.value), signers);
  }

  it.each([
    ['9999-12-31T23:59:59Z', 253402300799],
    ['2^53 - 1', Number.MAX_SAFE_INTEGER],
    ['just past the largest Date', 8.64e12 + 1],
  ])('created = %s: inspect answers a code or shows it, never INTERNAL; verify agrees with the device', async (_label, created) => {
    w.write('late.cose', withCreated(created));
    const r = await w.run('inspect', 'late.cose', '--json');
    expect(r.err).not.toMatch(/INTERNAL/);
    expect([0, 1]).toContain(r.status);
    if (r.status === 0) expect(JSON.parse(r.out)).toMatchObject({ type: 'manifest', created: expect.any(String) });
    else expect(r.err).toMatch(/\(code 1\d\d\)/);

    // Without --device-class, verify checks against the manifest's own class: the device's verdict.
    const device = verifyManifest(w.bytes('late.cose'), w.bytes('trust.cbor'), { deviceClass: 'acme-gw', counter: 0 });
    const v = await w.run('verify', 'late.cose', '--trust', 'trust.cbor', '--json');
    expect(JSON.parse(v.out)).toMatchObject({ code: device.code });
    expect(v.status).toBe(device.ok ? 0 : 1);
    expect(device.code === 0 || (device.code >= 100 && device.code < 200)).toBe(true);
    expect(CODES.INTERNAL).not.toBe(device.code);
  });
});
