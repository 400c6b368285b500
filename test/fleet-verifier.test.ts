/** The host's fleet verifier: a memo of Ed25519 outcomes changes cost, never outcomes. */
import { describe, expect, it } from 'vitest';
import { createVerifier } from '../device/index.js';
import { fleetVerifier, memoSha256, nodeSha256 } from '../host/hash.js';
import { toHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { detBytes, makeManifest, makeManifestEnvelope, makeRevocations, standardWorld } from './support/fixtures.js';

describe('fleetVerifier (signature memo)', () => {
  const w = standardWorld();
  const image = detBytes(5000, 'memo');
  const good = makeManifestEnvelope(makeManifest(image, { version: '1.0.0', securityCounter: 2 }), [w.R1, w.R2]);
  const short = makeManifestEnvelope(makeManifest(image, { version: '1.0.0', securityCounter: 2 }), [w.R1]);
  const tampered = Uint8Array.from(good);
  tampered[tampered.length - 5] ^= 1; // inside the last signature

  it("gives the plain verifier's outcome for good, short and tampered manifests, first and second time", () => {
    const plain = createVerifier();
    const memo = fleetVerifier();
    for (const env of [good, short, tampered, good, tampered, short]) {
      const state = { deviceClass: 'acme-gw', counter: 0 };
      expect(memo.verifyManifest(env, w.trust, state).code).toBe(plain.verifyManifest(env, w.trust, state).code);
    }
    expect(memo.verifyManifest(good, w.trust, { deviceClass: 'acme-gw', counter: 0 }).code).toBe(CODES.OK);
    expect(memo.verifyManifest(tampered, w.trust, { deviceClass: 'acme-gw', counter: 0 }).ok).toBe(false);
  });

  it('a revoked signer is still refused when its signature is memoised as valid', () => {
    const memo = fleetVerifier();
    expect(memo.verifyManifest(good, w.trust, { deviceClass: 'acme-gw', counter: 0 }).ok).toBe(true);
    const rl = makeRevocations({ version: 1, keyIds: [w.R2.keyId], signers: [w.A, w.B] });
    expect(memo.verifyManifest(good, w.trust, { deviceClass: 'acme-gw', counter: 0, revocations: rl }).code).toBe(CODES.REVOKED_KEY);
  });

  it('the device verifier takes no outcome cache: a lying one passed to createVerifier changes nothing', () => {
    const lying = { get: () => true, set: () => undefined, has: () => true };
    const v = createVerifier({ signatureCache: lying } as never);
    const state = { deviceClass: 'acme-gw', counter: 0 };
    expect(v.verifyManifest(short, w.trust, state).code).toBe(CODES.THRESHOLD_NOT_MET);
    expect(v.verifyManifest(tampered, w.trust, state).ok).toBe(false);
    expect(v.verifyManifest(good, w.trust, state).code).toBe(CODES.OK);
  });
});

describe('memoSha256 (the exact digest memo of simulated fleets)', () => {
  const ref = (d: Uint8Array) => toHex(nodeSha256(d));

  it('always returns SHA-256 of the input: repeats, near misses on the sampled words, odd offsets, small and large inputs', () => {
    const sha = memoSha256();
    const chunk = detBytes(4097, 'memo chunk');
    const inputs: Uint8Array[] = [chunk, Uint8Array.from(chunk), detBytes(65, 'node'), detBytes(2000, 'mid'), detBytes(600, 'unmemoised size')];
    // Differs from `chunk` only at bytes the fingerprint does not sample: same fingerprint, different input.
    const near = Uint8Array.from(chunk);
    near[100] ^= 1;
    inputs.push(near);
    const nearNode = Uint8Array.from(inputs[2]!);
    nearNode[64] ^= 0x80;
    inputs.push(nearNode);
    // A view at an odd offset into a larger buffer.
    const big = new Uint8Array(5000);
    big.set(chunk, 3);
    inputs.push(big.subarray(3, 3 + chunk.length));
    for (let round = 0; round < 3; round++) for (const d of inputs) expect(toHex(sha(d))).toBe(ref(d));
    expect(sha.stats.hits).toBeGreaterThan(0);
    expect(toHex(sha(near))).not.toBe(toHex(sha(chunk)));
  });

  it("a returned digest is the caller's own copy: changing it does not change later answers", () => {
    const sha = memoSha256();
    const d = detBytes(4096, 'own copy');
    const first = sha(d);
    first.fill(0);
    expect(toHex(sha(d))).toBe(ref(d));
    const n = detBytes(65, 'own node');
    sha(n).fill(0);
    expect(toHex(sha(n))).toBe(ref(n));
  });

  it('forgets everything at its byte bound and keeps answering correctly', () => {
    const sha = memoSha256(8192);
    const inputs = [0, 1, 2, 3].map((i) => detBytes(4096, `bound ${i}`));
    for (let round = 0; round < 2; round++) for (const d of inputs) expect(toHex(sha(d))).toBe(ref(d));
    // 8 KiB hold two chunks: cycling through four never hits.
    expect(sha.stats.hits).toBe(0);
    expect(sha.stats.misses).toBe(8);
  });

  it("the fleet verifier with the memo gives the plain verifier's image outcomes, good and tampered", () => {
    const plain = createVerifier();
    const memo = fleetVerifier();
    const img = detBytes(3 * 4096 + 100, 'memo image');
    const m = makeManifest(img, { chunkSize: 4096 });
    const bad = Uint8Array.from(img);
    bad[5000] ^= 1;
    for (const data of [img, bad, img, bad]) {
      const run = (v: ReturnType<typeof createVerifier>) => {
        const iv = v.imageVerifier(m);
        const u = iv.update(data);
        return u.ok ? iv.finish().code : u.code;
      };
      expect(run(memo)).toBe(run(plain));
    }
    const good = memo.imageVerifier(m);
    good.update(img);
    expect(good.finish().code).toBe(CODES.OK);
  });
});
