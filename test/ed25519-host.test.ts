/**
 * The host's Ed25519 (host/hash.ts hostVerifyEd25519: OpenSSL where it decides, the device verifier
 * otherwise) gives the verdict of the device's policy verifier (SPEC.md §7) for every input: the
 * Wycheproof and CCTV vectors (low-order and non-canonical A and R, cofactored-only residues, S + L),
 * and random honest signatures with every kind of corruption. A difference anywhere fails the test.
 */
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as noble from '@noble/ed25519';
import { describe, expect, it } from 'vitest';
import { isTrustableRoleKey, verifyEd25519 } from '../device/crypto/ed25519.js';
import { verifierFrom } from '../device/verifier.js';
import { fleetVerifier, hostCrypto, hostVerifyEd25519 } from '../host/hash.js';

const here = dirname(fileURLToPath(import.meta.url));
const vector = (rel: string): unknown => JSON.parse(readFileSync(join(here, 'vectors', rel), 'utf8'));
const hex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

type Case = { readonly name: string; readonly sig: Uint8Array; readonly msg: Uint8Array; readonly key: Uint8Array };

/** Every case on which the two verifiers disagree, and how many each accepted. */
function compare(cases: readonly Case[]): { differ: string[]; accepted: number } {
  const differ: string[] = [];
  let accepted = 0;
  for (const c of cases) {
    const policy = verifyEd25519(c.sig, c.msg, c.key);
    const host = hostVerifyEd25519(c.sig, c.msg, c.key);
    if (host !== policy) differ.push(`${c.name}: policy ${policy}, host ${host}`);
    if (policy) accepted++;
  }
  return { differ, accepted };
}

/** Honest keys with their signatures, the same keys plus a torsion point (mixed order) and small-order keys. */
function torsionCases(): Case[] {
  const cases: Case[] = [];
  // A point of order 8: the torsion part added to honest keys; noble's Point does the group law.
  const T8 = noble.Point.fromHex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a');
  expect(T8.multiply(8n, false).is0()).toBe(true);
  for (let i = 0; i < 8; i++) {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const key = rawPublicKey(publicKey);
    const msg = Uint8Array.from(randomBytes(32));
    const sig = Uint8Array.from(sign(null, msg, privateKey));
    const mixed = noble.Point.fromHex(Buffer.from(key).toString('hex'))
      .add(T8.multiply(BigInt(i + 1), false))
      .toBytes();
    const small = T8.multiply(BigInt(i + 1), false).toBytes();
    cases.push(
      { name: `honest key ${i}`, sig, msg, key },
      { name: `mixed-order key ${i}`, sig, msg, key: mixed },
      { name: `small-order key ${i}`, sig, msg, key: small },
    );
  }
  return cases;
}

function rawPublicKey(key: ReturnType<typeof generateKeyPairSync>['publicKey']): Uint8Array {
  return Uint8Array.from(Buffer.from(key.export({ format: 'jwk' }).x as string, 'base64url'));
}

function withScalar(sig: Uint8Array, s: bigint): Uint8Array {
  const out = Uint8Array.from(sig);
  for (let i = 0; i < 32; i++) out[32 + i] = Number((s >> BigInt(8 * i)) & 0xffn);
  return out;
}

function scalarOf(sig: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(sig.subarray(32)).reverse().toString('hex')}`);
}

describe('host Ed25519 = the SPEC.md §7 policy', () => {
  it('on every Wycheproof vector (88 accepted)', () => {
    const file = vector('wycheproof/ed25519_test.json') as { testGroups: { publicKey: { pk: string }; tests: { tcId: number; msg: string; sig: string }[] }[] };
    const cases = file.testGroups.flatMap((g) =>
      g.tests.map((t) => ({ name: `wycheproof ${t.tcId}`, sig: hex(t.sig), msg: hex(t.msg), key: hex(g.publicKey.pk) })),
    );
    expect(cases.length).toBe(151);
    expect(compare(cases)).toEqual({ differ: [], accepted: 88 });
  });

  it('on every CCTV ed25519vectors.json vector (cofactored-only residues accepted as the policy says)', () => {
    const vectors = vector('cctv/ed25519vectors.json') as { number: number; key: string; sig: string; msg: string; flags: string[] | null }[];
    const cases = vectors.map((v) => ({
      name: `cctv ${v.number} [${(v.flags ?? []).join(',')}]`,
      sig: hex(v.sig),
      msg: new TextEncoder().encode(v.msg),
      key: hex(v.key),
    }));
    expect(cases.length).toBe(914);
    const r = compare(cases);
    expect(r.differ).toEqual([]);
    // The vectors exercise both outcomes, and some acceptances only the cofactored equation gives.
    const residueOnly = vectors.filter((v, i) => (v.flags ?? []).includes('low_order_residue') && verifyEd25519(cases[i].sig, cases[i].msg, cases[i].key));
    expect(r.accepted).toBeGreaterThan(0);
    expect(r.accepted).toBeLessThan(cases.length);
    expect(residueOnly.length).toBeGreaterThan(0);
  });

  it('on random honest signatures and their corruptions', () => {
    const cases: Case[] = [];
    for (let i = 0; i < 40; i++) {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const key = rawPublicKey(publicKey);
      const msg = Uint8Array.from(randomBytes(i * 7));
      const sig = Uint8Array.from(sign(null, msg, privateKey));
      const bit = (b: Uint8Array, n: number) => {
        const c = Uint8Array.from(b);
        c[(n >> 3) % c.length] ^= 1 << (n & 7);
        return c;
      };
      const other = rawPublicKey(generateKeyPairSync('ed25519').publicKey);
      cases.push(
        { name: `honest ${i}`, sig, msg, key },
        { name: `R bit ${i}`, sig: bit(sig, i * 5), msg, key },
        { name: `S bit ${i}`, sig: bit(sig, 256 + i * 3), msg, key },
        { name: `S + L ${i}`, sig: withScalar(sig, scalarOf(sig) + L), msg, key },
        { name: `key bit ${i}`, sig, msg, key: bit(key, i * 11) },
        { name: `other key ${i}`, sig, msg, key: other },
        { name: `short sig ${i}`, sig: sig.subarray(0, 63), msg, key },
        { name: `short key ${i}`, sig, msg, key: key.subarray(0, 31) },
      );
      if (msg.length > 0) cases.push({ name: `message bit ${i}`, sig, msg: bit(msg, i), key });
    }
    const r = compare(cases);
    expect(r.differ).toEqual([]);
    expect(r.accepted).toBe(40);
  });

  it('on keys with a torsion component (mixed order: P5 accepts them) and small-order keys (P4 refuses them)', () => {
    expect(compare(torsionCases()).differ).toEqual([]);
  });

  it('the CLI verifier, its trustable-key memo filled first, gives the policy verdict on honest, mixed-order and small-order keys', () => {
    // hostCrypto answers P3 + P4 from the memo for a key it found trustable: never for any other.
    const c = hostCrypto();
    const cases = torsionCases();
    const differ: string[] = [];
    for (const k of cases) {
      // Mixed-order key 7 adds [8]T8, the identity: it is the honest key again.
      expect(c.trustableKey(k.key), k.name).toBe(isTrustableRoleKey(k.key));
      if (k.name.startsWith('honest')) expect(isTrustableRoleKey(k.key)).toBe(true);
      const policy = verifyEd25519(k.sig, k.msg, k.key);
      if (c.verify(k.sig, k.msg, k.key) !== policy) differ.push(k.name);
      const forged = withScalar(k.sig, (scalarOf(k.sig) + 1n) % L);
      if (c.verify(forged, k.msg, k.key) !== verifyEd25519(forged, k.msg, k.key)) differ.push(`${k.name} (forged)`);
    }
    // OpenSSL accepts (R = [S]B, S) under the identity key for any message; P4 refuses the key. The
    // memo must not let it through because the identity was asked about (and found untrustable) before.
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const forgery = Uint8Array.from([...noble.Point.BASE.multiply(5n).toBytes(), 5, ...new Uint8Array(31)]);
    const msg = Uint8Array.from([1, 2, 3]);
    expect(c.trustableKey(identity)).toBe(false);
    expect(verifyEd25519(forgery, msg, identity)).toBe(false);
    expect(c.verify(forgery, msg, identity)).toBe(false);
    expect(differ).toEqual([]);
    expect(cases.filter((k) => k.name.startsWith('honest') && verifyEd25519(k.sig, k.msg, k.key))).toHaveLength(8);
  });

  it('wrong types are refused as the policy refuses them (false, no throw)', () => {
    const junk = [null, undefined, 'x', 64, new Uint16Array(32), {}] as unknown as Uint8Array[];
    const ok = new Uint8Array(32);
    for (const j of junk) {
      expect(hostVerifyEd25519(j, ok, ok)).toBe(false);
      expect(hostVerifyEd25519(new Uint8Array(64), j, ok)).toBe(false);
      expect(hostVerifyEd25519(new Uint8Array(64), ok, j)).toBe(false);
    }
  });

  it('the memoised verifiers (fwseal verify, fleet-sim) give the policy verdict, the second time too', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const key = rawPublicKey(publicKey);
    const msg = Uint8Array.from(randomBytes(40));
    const sig = Uint8Array.from(sign(null, msg, privateKey));
    const bad = withScalar(sig, scalarOf(sig) + L);
    for (const v of [verifierFrom(hostCrypto()), fleetVerifier()]) {
      for (let round = 0; round < 2; round++) {
        expect(v.verifyEd25519(sig, msg, key)).toBe(true);
        expect(v.verifyEd25519(bad, msg, key)).toBe(false);
      }
    }
  });

  it('the memo never hands the outcome of a verified signature to other bytes that concatenate the same (P1)', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const key = rawPublicKey(publicKey);
    const msg = Uint8Array.from(randomBytes(40));
    const sig = Uint8Array.from(sign(null, msg, privateKey));
    // signature || key || message is the same byte string for (63-byte signature, 33-byte key).
    const shortSig = sig.subarray(0, 63);
    const longKey = Uint8Array.of(sig[63], ...key);
    for (const v of [verifierFrom(hostCrypto()), fleetVerifier()]) {
      expect(v.verifyEd25519(sig, msg, key)).toBe(true);
      expect(v.verifyEd25519(shortSig, msg, longKey)).toBe(false);
    }
  });
});
