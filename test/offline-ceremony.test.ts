/**
 * Offline ceremonies (SPEC.md §15.4): `sign --detached`, `sign --print-tbs`, `attach` (detached and
 * raw signatures) and `merge`, for manifests, trust bundles and revocation lists. Every refusal is
 * a code and leaves every file as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeDetached, encodeDetached } from '../host/detached.js';
import { loadSigningKey } from '../host/keys.js';
import { toHex } from '../shared/bytes.js';
import { parseEnvelope, sigStructure } from '../shared/cose.js';
import { runCli } from './support/cli-run.js';
import { type CliWorld, expectOk, expectRejected, expectUsage, makeCliWorld, PASS } from './support/cli-world.js';

let w: CliWorld;
const run = (...args: string[]) => runCli(args);
const payloadOf = (name: string) => {
  const e = parseEnvelope(w.bytes(name));
  if (!e.ok) throw new Error(e.error);
  return e.envelope;
};
/** Run `f` and check that `files` are byte-identical afterwards. */
async function unchanged(files: string[], f: () => Promise<void>): Promise<void> {
  const before = files.map((n) => toHex(w.bytes(n)));
  await f();
  expect(files.map((n) => toHex(w.bytes(n)))).toEqual(before);
}

beforeAll(async () => {
  w = await makeCliWorld(['A', 'B', 'C', 'R1', 'R2', 'R3'], {
    trust: [
      ...['--root', 'A.pub', '--root', 'B.pub', '--root', 'C.pub', '--root-threshold', '2'],
      ...['--release', 'R1.pub', '--release', 'R2.pub', '--release', 'R3.pub', '--release-threshold', '2'],
      ...['--sign', 'A.key', '--sign', 'B.key'],
    ],
    image: true,
  });
  w.write('m2.cose', w.bytes('m.cose'));
});
afterAll(() => w.close());

describe('sign --print-tbs', () => {
  it('writes the exact Sig_structure, binary or hex, with no key', async () => {
    const tbs = sigStructure(payloadOf('m.cose').payload);
    const r = await run('sign', 'm.cose', '--print-tbs');
    expectOk(r);
    expect(toHex(r.bytes)).toBe(toHex(tbs));
    const h = await run('sign', 'm.cose', '--print-tbs', '--hex');
    expect(h.out.trim()).toBe(toHex(tbs));
  });
  it('refuses a key, and --hex without --print-tbs', async () => {
    expectUsage(await run('sign', 'm.cose', '--print-tbs', '--key', 'R1.key'));
    expectUsage(await run('sign', 'm.cose', '--key', 'R1.key', '--hex'));
  });
});

describe('sign --detached and attach', () => {
  it('leaves the file untouched and writes a signature naming the payload it covers', async () => {
    await unchanged(['m.cose'], async () => expectOk(await run('sign', 'm.cose', '--key', 'R1.key', '--trust', 'trust.cbor', '--detached', 'r1.sig')));
    const d = decodeDetached(w.bytes('r1.sig'), 'r1.sig');
    expect(d.kind).toBe('manifest');
    expect(toHex(d.signature.kid)).toBe(w.kids.R1);
    expect(toHex(encodeDetached(d))).toBe(toHex(w.bytes('r1.sig')));
  });
  it('attach adds detached signatures; the manifest then verifies', async () => {
    expectOk(await run('sign', 'm.cose', '--key', 'R3.key', '--detached', 'r3.sig'));
    expectRejected(await run('verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'image.bin'), 'THRESHOLD_NOT_MET');
    const r = await run('attach', 'm.cose', 'r1.sig', 'r3.sig', '--trust', 'trust.cbor', '--json');
    expectOk(r);
    expect(JSON.parse(r.out).added).toEqual([w.kids.R1, w.kids.R3]);
    expectOk(await run('verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'image.bin'));
    // Again: nothing to add, the file stays byte-identical.
    await unchanged(['m.cose'], async () => expectOk(await run('attach', 'm.cose', 'r1.sig', '--trust', 'trust.cbor')));
  });
  it('refuses a signature over another payload, a bad signature, a wrong role or an unknown key: nothing written', async () => {
    expectOk(
      await run('pack', 'image.bin', '--device-class', 'acme-gw', '--version', '1.0.1', '--counter', '2', '--created', '1764000000', '--out', 'other.cose'),
    );
    expectOk(await run('sign', 'other.cose', '--key', 'R2.key', '--detached', 'other.sig'));
    expectOk(await run('sign', 'm2.cose', '--key', 'R2.key', '--detached', 'r2.sig'));
    const bad = decodeDetached(w.bytes('r2.sig'), 'r2.sig');
    const flipped = bad.signature.signature.slice();
    flipped[5] ^= 1;
    w.write('bad.sig', encodeDetached({ ...bad, signature: { kid: bad.signature.kid, signature: flipped } }));
    expectOk(await run('sign', 'm2.cose', '--key', 'A.key', '--detached', 'a.sig'));
    expectOk(await run('sign', 'trust.cbor', '--key', 'C.key', '--detached', 'c-trust.sig'));
    await unchanged(['m2.cose'], async () => {
      expectUsage(await run('attach', 'm2.cose', 'r2.sig', 'other.sig'), 'PAYLOAD_MISMATCH');
      expectUsage(await run('attach', 'm2.cose', 'r2.sig', 'bad.sig', '--trust', 'trust.cbor'), 'BAD_SIGNATURE');
      expectUsage(await run('attach', 'm2.cose', 'a.sig', '--trust', 'trust.cbor'), 'KEY_NOT_IN_TRUST');
      expectUsage(await run('attach', 'm2.cose', 'c-trust.sig', '--trust', 'trust.cbor'), 'PAYLOAD_MISMATCH');
      expectUsage(await run('attach', 'm2.cose', 'r2.sig'), 'USAGE');
      expectUsage(await run('attach', 'm2.cose', '--trust', 'trust.cbor'), 'USAGE');
      expectUsage(await run('attach', 'm2.cose', 'R1.pub', '--trust', 'trust.cbor'));
      expectUsage(await run('attach', 'm2.cose', 'm.cose', '--trust', 'trust.cbor'));
    });
    // With --pub instead of --trust the key is known; the role cannot be checked (a warning).
    const r = await run('attach', 'm2.cose', 'r2.sig', '--pub', 'R2.pub');
    expectOk(r);
    expect(r.err).toMatch(/^warning: /m);
  });
  it('refuses a damaged detached signature file with the decoder code', async () => {
    const good = w.bytes('r1.sig');
    w.write('trunc.sig', good.slice(0, good.length - 3));
    w.write('trail.sig', new Uint8Array([...good, 0]));
    await unchanged(['m2.cose'], async () => {
      const t = await run('attach', 'm2.cose', 'trunc.sig', '--trust', 'trust.cbor');
      expectRejected(t, 'TRUNCATED');
      expectRejected(await run('attach', 'm2.cose', 'trail.sig', '--trust', 'trust.cbor'), 'TRAILING_BYTES');
    });
  });
});

describe('attach --raw: signatures made over --print-tbs elsewhere', () => {
  it('takes raw, hex and base64 signatures with their public key', async () => {
    w.write('m3.cose', w.bytes('m2.cose'));
    const tbs = (await run('sign', 'm3.cose', '--print-tbs')).bytes;
    const r1 = loadSigningKey(w.path('R1.key'), () => PASS).sign(tbs);
    const r3 = loadSigningKey(w.path('R3.key'), () => PASS).sign(tbs);
    w.write('r1.raw', r1);
    w.write('r3.b64', `${Buffer.from(r3).toString('base64')}\n`);
    expectOk(await run('attach', 'm3.cose', '--raw', 'r1.raw', '--raw-pub', 'R1.pub', '--raw', 'r3.b64', '--raw-pub', 'R3.pub', '--trust', 'trust.cbor'));
    expectOk(await run('verify', 'm3.cose', '--trust', 'trust.cbor', '--image', 'image.bin'));
  });
  it('refuses a raw signature under the wrong public key, or one that is not a signature', async () => {
    w.write('m4.cose', w.bytes('m2.cose'));
    const tbs = (await run('sign', 'm4.cose', '--print-tbs')).bytes;
    w.write('r1.hex', toHex(loadSigningKey(w.path('R1.key'), () => PASS).sign(tbs)));
    w.write('short.raw', new Uint8Array(63));
    await unchanged(['m4.cose'], async () => {
      expectUsage(await run('attach', 'm4.cose', '--raw', 'r1.hex', '--raw-pub', 'R2.pub'), 'BAD_SIGNATURE');
      expectUsage(await run('attach', 'm4.cose', '--raw', 'short.raw', '--raw-pub', 'R1.pub'), 'BAD_SIGNATURE');
      expectUsage(await run('attach', 'm4.cose', '--raw', 'r1.hex'), 'USAGE');
    });
    expectOk(await run('attach', 'm4.cose', '--raw', 'r1.hex', '--raw-pub', 'R1.pub', '--trust', 'trust.cbor'));
  });
});

describe('merge', () => {
  it('combines copies signed in parallel', async () => {
    w.write('copy-a.cose', w.bytes('m2.cose'));
    w.write('copy-b.cose', w.bytes('m2.cose'));
    expectOk(await run('sign', 'copy-a.cose', '--key', 'R1.key'));
    expectOk(await run('sign', 'copy-b.cose', '--key', 'R3.key'));
    const r = await run('merge', 'merged.cose', 'copy-a.cose', 'copy-b.cose', '--trust', 'trust.cbor', '--json');
    expectOk(r);
    expect(JSON.parse(r.out).droppedInvalid).toBe(0);
    expectOk(await run('verify', 'merged.cose', '--trust', 'trust.cbor', '--image', 'image.bin'));
  });
  it('drops invalid signatures of known keys and refuses conflicting unknown ones', async () => {
    const env = payloadOf('copy-a.cose');
    const forged = env.signatures.map((s) => ({ ...s, signature: s.signature.map((b, i) => (i === 0 ? b ^ 1 : b)) }));
    const { encodeEnvelope } = await import('../shared/cose.js');
    w.write('copy-forged.cose', encodeEnvelope({ payload: env.payload, signatures: forged }));
    const r = await run('merge', 'merged2.cose', 'copy-forged.cose', 'copy-b.cose', '--trust', 'trust.cbor', '--json');
    expectOk(r);
    // copy-a carried R2 (from m2) and R1, both forged here; copy-b carries valid R2 and R3.
    expect(JSON.parse(r.out)).toMatchObject({ signatures: 2, droppedInvalid: 2 });
    expectRejected(await run('merge', 'merged3.cose', 'copy-forged.cose', 'copy-a.cose'), 'DUPLICATE_KEY');
  });
  it('refuses copies of different payloads and writes nothing', async () => {
    const r = await run('merge', 'never.cose', 'copy-a.cose', 'other.cose');
    expectUsage(r, 'PAYLOAD_MISMATCH');
    expect(() => w.bytes('never.cose')).toThrow();
    expectUsage(await run('merge', 'never.cose', 'copy-a.cose'), 'USAGE');
  });
});

describe('trust bundles and revocation lists', () => {
  it('a rotation signed detached by old and new root keys is accepted as devices accept it', async () => {
    expectOk(
      await run(
        'trust',
        'rotate',
        '--previous',
        'trust.cbor',
        ...['--root', 'B.pub', '--root', 'C.pub', '--root-threshold', '2', '--release', 'R1.pub', '--release', 'R2.pub', '--release-threshold', '1'],
        ...['--sign', 'B.key', '--out', 'trust2.cbor'],
      ),
    );
    expectOk(await run('sign', 'trust2.cbor', '--key', 'A.key', '--trust', 'trust.cbor', '--detached', 'a2.sig'));
    expectOk(await run('sign', 'trust2.cbor', '--key', 'C.key', '--detached', 'c2.sig'));
    expectRejected(await run('verify', 'trust2.cbor', '--trust', 'trust.cbor'), 'TRUST_THRESHOLD_NOT_MET');
    expectOk(await run('attach', 'trust2.cbor', 'a2.sig', 'c2.sig', '--trust', 'trust.cbor'));
    expectOk(await run('verify', 'trust2.cbor', '--trust', 'trust.cbor'));
  });
  it('a revocation list signed in parallel and merged', async () => {
    expectOk(await run('revoke', '--trust', 'trust.cbor', '--version', '1', '--key', 'R3.pub', '--sign', 'A.key', '--out', 'rl-a.cbor'));
    w.write('rl-b.cbor', w.bytes('rl-a.cbor'));
    expectOk(await run('sign', 'rl-b.cbor', '--key', 'C.key', '--trust', 'trust.cbor'));
    expectOk(await run('sign', 'rl-a.cbor', '--key', 'B.key', '--detached', 'b-rl.sig'));
    expectOk(await run('merge', 'rl.cbor', 'rl-a.cbor', 'rl-b.cbor', '--trust', 'trust.cbor'));
    expectOk(await run('attach', 'rl.cbor', 'b-rl.sig', '--trust', 'trust.cbor'));
    const r = await run('verify', 'rl.cbor', '--trust', 'trust.cbor', '--json');
    expectOk(r);
    expect(payloadOf('rl.cbor').signatures).toHaveLength(3);
  });
});

describe('a detached signature file elsewhere', () => {
  it('inspect shows what it signs; where an object is expected it is a usage error (§14 H8)', async () => {
    const r = await run('inspect', 'r1.sig', '--json');
    expectOk(r);
    expect(JSON.parse(r.out)).toMatchObject({ type: 'detached-signature', signs: 'manifest', keyId: w.kids.R1 });
    expectUsage(await run('verify', 'r1.sig', '--trust', 'trust.cbor'));
    expectUsage(await run('sign', 'r1.sig', '--key', 'R1.key'));
  });
});
