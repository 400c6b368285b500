/**
 * `fwseal sign` (SPEC.md §14 H1): a signature already under the signer's key id is checked with the
 * device's Ed25519; a valid one is kept, an invalid one replaced and reported; a key id listed twice
 * ends up once. In-process CLI runs; codes asserted, never message text.
 */
import { copyFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyEd25519, verifyManifest } from '../device/index.js';
import { loadSigningKey, type SigningKey } from '../host/keys.js';
import { fromHex, toHex } from '../shared/bytes.js';
import { CborTag, encodeCbor } from '../shared/cbor.js';
import { COSE_SIGN_TAG, HEADER_KID, parseEnvelope, SIGNER_PROTECTED, sigStructure } from '../shared/cose.js';
import { type CliWorld, expectOk, expectRejected, makeCliWorld, PASS } from './support/cli-world.js';

let w: CliWorld;
const keys: Record<string, SigningKey> = {};
const ROOT_ABC = ['--root', 'A.pub', '--root', 'B.pub', '--root', 'C.pub', '--root-threshold', '2'];
const RELEASE_R123 = ['--release', 'R1.pub', '--release', 'R2.pub', '--release', 'R3.pub', '--release-threshold', '2'];

/** An envelope with exactly these signatures, in this order (duplicates allowed: encodeEnvelope refuses them). */
function rawEnvelope(payload: Uint8Array, sigs: { kid: Uint8Array; signature: Uint8Array }[]): Uint8Array {
  return encodeCbor(
    new CborTag(COSE_SIGN_TAG, [new Uint8Array(0), new Map(), payload, sigs.map((s) => [SIGNER_PROTECTED, new Map([[HEADER_KID, s.kid]]), s.signature])]),
  );
}

function payloadOf(name: string): Uint8Array {
  const env = parseEnvelope(w.bytes(name));
  if (!env.ok) throw new Error(env.error);
  return env.envelope.payload;
}

function signaturesOf(name: string) {
  const env = parseEnvelope(w.bytes(name));
  if (!env.ok) throw new Error(env.error);
  return env.envelope.signatures;
}

const kid = (name: string) => fromHex(w.kids[name]) as Uint8Array;
const bogus = (fill: number) => new Uint8Array(64).fill(fill);
const validBy = (name: string, payload: Uint8Array) => ({ kid: kid(name), signature: keys[name].sign(sigStructure(payload)) });
const json = (out: string) => JSON.parse(out) as Record<string, any>;

beforeAll(async () => {
  w = await makeCliWorld(['A', 'B', 'C', 'R1', 'R2', 'R3'], { trust: [...ROOT_ABC, ...RELEASE_R123, '--sign', 'A.key', '--sign', 'B.key'], image: true });
  for (const name of ['R1', 'R2']) keys[name] = loadSigningKey(w.path(`${name}.key`), () => PASS);
});

afterAll(() => w?.close());

describe('sign checks a signature already under its key id (H1)', () => {
  it("a bogus signature under the signer's key id is replaced by a valid one, and said so on stderr and in --json", async () => {
    w.write('bogus.cose', rawEnvelope(payloadOf('m.cose'), [{ kid: kid('R1'), signature: bogus(0x5a) }]));
    const r = await w.run('sign', 'bogus.cose', '--key', 'R1.key', '--json');
    expectOk(r);
    expect(json(r.out)).toMatchObject({ added: true, removedInvalid: 1, removedDuplicates: 0, keyId: w.kids.R1 });
    expect(json(r.out).warnings).toHaveLength(2); // no --trust, and the replaced signature
    expect(r.err).toMatch(/^warning: /);
    const sigs = signaturesOf('bogus.cose');
    expect(sigs.map((s) => toHex(s.kid))).toEqual([w.kids.R1]);
    expect(verifyEd25519(sigs[0].signature, sigStructure(payloadOf('bogus.cose')), keys.R1.publicKey)).toBe(true);
    // And the device now counts it: with R2 the manifest verifies.
    expectOk(await w.run('sign', 'bogus.cose', '--key', 'R2.key'));
    expect(verifyManifest(w.bytes('bogus.cose'), w.bytes('trust.cbor'), { deviceClass: 'acme-gw', counter: 0 }).ok).toBe(true);
  });

  it('the text output says it replaced the signature (not "unchanged")', async () => {
    w.write('bogus-text.cose', rawEnvelope(payloadOf('m.cose'), [{ kid: kid('R1'), signature: bogus(0x01) }]));
    const before = w.bytes('bogus-text.cose');
    const r = await w.run('sign', 'bogus-text.cose', '--key', 'R1.key');
    expectOk(r);
    expect(r.out).not.toMatch(/unchanged/);
    expect(w.bytes('bogus-text.cose')).not.toEqual(before);
  });

  it('a valid signature under the key id is kept: the file stays byte-identical', async () => {
    copyFileSync(w.path('m.cose'), w.path('again.cose'));
    expectOk(await w.run('sign', 'again.cose', '--key', 'R1.key', '--trust', 'trust.cbor'));
    const before = w.bytes('again.cose');
    const r = await w.run('sign', 'again.cose', '--key', 'R1.key', '--trust', 'trust.cbor', '--json');
    expectOk(r);
    expect(json(r.out)).toMatchObject({ added: false, removedInvalid: 0, removedDuplicates: 0 });
    expect(r.err).toBe('');
    expect(w.bytes('again.cose')).toEqual(before);
  });

  it("two signatures under the signer's key id, a bogus one first: the valid one is kept, the bogus one removed", async () => {
    const payload = payloadOf('m.cose');
    const valid = validBy('R1', payload);
    w.write('dup-own.cose', rawEnvelope(payload, [{ kid: kid('R1'), signature: bogus(0x33) }, valid]));
    const r = await w.run('sign', 'dup-own.cose', '--key', 'R1.key', '--json');
    expectOk(r);
    expect(json(r.out)).toMatchObject({ added: false, removedInvalid: 1 });
    const sigs = signaturesOf('dup-own.cose');
    expect(sigs).toHaveLength(1);
    expect(sigs[0].signature).toEqual(valid.signature);
  });

  it('two signatures under another key id: without --trust DUPLICATE_KEY (exit 1, file unchanged); with --trust the valid one is kept', async () => {
    const payload = payloadOf('m.cose');
    const valid = validBy('R2', payload);
    w.write('dup-other.cose', rawEnvelope(payload, [{ kid: kid('R2'), signature: bogus(0x44) }, valid]));
    const before = w.bytes('dup-other.cose');
    expectRejected(await w.run('sign', 'dup-other.cose', '--key', 'R1.key'), 'DUPLICATE_KEY');
    expect(w.bytes('dup-other.cose')).toEqual(before);

    const r = await w.run('sign', 'dup-other.cose', '--key', 'R1.key', '--trust', 'trust.cbor', '--json');
    expectOk(r);
    expect(json(r.out)).toMatchObject({ added: true, removedInvalid: 0, removedDuplicates: 1 });
    const sigs = signaturesOf('dup-other.cose');
    expect(sigs.map((s) => toHex(s.kid)).sort()).toEqual([w.kids.R1, w.kids.R2].sort());
    expect(sigs.find((s) => toHex(s.kid) === w.kids.R2)?.signature).toEqual(valid.signature);
    expect(verifyManifest(w.bytes('dup-other.cose'), w.bytes('trust.cbor'), { deviceClass: 'acme-gw', counter: 0 }).ok).toBe(true);
  });

  it("when the signer's valid signature is already there, another key id listed twice is left alone (unchanged, exit 0)", async () => {
    const payload = payloadOf('m.cose');
    w.write('dup-left.cose', rawEnvelope(payload, [validBy('R1', payload), { kid: kid('R2'), signature: bogus(0x45) }, validBy('R2', payload)]));
    const before = w.bytes('dup-left.cose');
    const r = await w.run('sign', 'dup-left.cose', '--key', 'R1.key', '--json');
    expectOk(r);
    expect(json(r.out)).toMatchObject({ added: false, removedInvalid: 0, removedDuplicates: 0 });
    expect(w.bytes('dup-left.cose')).toEqual(before);
  });
});
