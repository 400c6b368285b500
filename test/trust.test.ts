import { Point } from '@noble/ed25519';
import { describe, expect, it } from 'vitest';
import { isAcceptablePublicKey, loadTrust, type VerifiedTrust, verifyManifest, verifyRevocations, verifyTrustUpdate } from '../device/index.js';
import { fromHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { encodeTrustBundle } from '../shared/trust.js';
import { detKey, makeManifestEnvelope, makeRevocations, makeTrust, signWith, standardWorld } from './support/fixtures.js';

const w = standardWorld();
const [D, E, F] = ['D', 'E', 'F'].map(detKey);
const current = (() => {
  const t = loadTrust(w.trust);
  if (!t.ok) throw new Error('fixture');
  return t.trust;
})();
const v2 = (signers: ReturnType<typeof detKey>[], version = 2) =>
  makeTrust({ root: [D, E, F], rootThreshold: 2, release: [w.R1, w.R2, w.R3], releaseThreshold: 2, signers, version });

describe('trust bundle rotation (T5, T6)', () => {
  it('accepts version N+1 signed by a threshold of the old root keys and of its own', () => {
    const r = verifyTrustUpdate(v2([w.A, w.B, D, E]), current);
    expect(r.code).toBe(CODES.OK);
    if (r.ok) expect(verifyManifest(w.envelope, v2([w.A, w.B, D, E]), w.state).code).toBe(CODES.OK);
  });

  it('refuses a rotation signed only by the new root keys', () => {
    expect(verifyTrustUpdate(v2([D, E]), current).code).toBe(CODES.ROTATION_NOT_AUTHORIZED);
  });

  it('refuses a rotation signed only by the old root keys (the new bundle must carry its own threshold)', () => {
    expect(verifyTrustUpdate(v2([w.A, w.B]), current).code).toBe(CODES.TRUST_THRESHOLD_NOT_MET);
  });

  it('refuses a rotation where one of the two old signatures is by a revoked root key', () => {
    const stored = verifyRevocations(makeRevocations({ version: 1, keyIds: [w.B.keyId], signers: [w.A, w.C] }), current);
    if (!stored.ok) throw new Error(stored.error);
    expect(verifyTrustUpdate(v2([w.A, w.B, D, E]), current, stored.revocations).code).toBe(CODES.ROTATION_NOT_AUTHORIZED);
    expect(verifyTrustUpdate(v2([w.A, w.C, D, E]), current, stored.revocations).code).toBe(CODES.OK);
  });

  it('moves versions by exactly one', () => {
    expect(verifyTrustUpdate(v2([w.A, w.B, D, E], 3), current).code).toBe(CODES.TRUST_VERSION_SKIP);
  });

  it('refuses an older version, accepts the identical current bundle, refuses a different one with the same version', () => {
    const next = verifyTrustUpdate(v2([w.A, w.B, D, E]), current);
    expect(next.ok).toBe(true);
    const now = (next as { trust: VerifiedTrust }).trust;
    expect(verifyTrustUpdate(w.trust, now).code).toBe(CODES.TRUST_ROLLBACK);
    expect(verifyTrustUpdate(v2([w.A, w.B, D, E]), now).code).toBe(CODES.OK);
    const other = makeTrust({ root: [D, E, F], rootThreshold: 3, release: [w.R1, w.R2, w.R3], releaseThreshold: 2, signers: [D, E, F], version: 2 });
    expect(verifyTrustUpdate(other, now).code).toBe(CODES.TRUST_ROLLBACK);
  });
});

describe('trust bundle contents (T2, T3)', () => {
  it('refuses a small-order public key in a role', () => {
    const identity = fromHex('0100000000000000000000000000000000000000000000000000000000000000') as Uint8Array;
    const payload = encodeTrustBundle({ version: 1, root: { threshold: 1, keys: [w.A.publicKey] }, release: { threshold: 1, keys: [identity] } });
    expect(loadTrust(signWith(payload, [w.A])).code).toBe(CODES.BAD_VALUE);
  });

  it('refuses a mixed-order (torsioned) key, which would let one secret count twice', () => {
    // A + T where T is the order-2 point (0, -1): same secret, another key id.
    const A = w.R1.publicKey;
    const torsioned = mixedOrder(A);
    expect(isAcceptablePublicKey(torsioned)).toBe(true); // fine for plain verification (policy P5)
    const payload = encodeTrustBundle({ version: 1, root: { threshold: 1, keys: [w.A.publicKey] }, release: { threshold: 1, keys: [A, torsioned] } });
    expect(loadTrust(signWith(payload, [w.A])).code).toBe(CODES.BAD_VALUE);
  });

  it('refuses a threshold above the key count, duplicate keys, an empty role', () => {
    const bad = (root: object, release: object) => {
      try {
        encodeTrustBundle({ version: 1, root, release } as never);
        return 'encoded';
      } catch (e) {
        return (e as Error).constructor.name;
      }
    };
    expect(bad({ threshold: 2, keys: [w.A.publicKey] }, { threshold: 1, keys: [w.R1.publicKey] })).toBe('RangeError');
    expect(bad({ threshold: 1, keys: [w.A.publicKey, w.A.publicKey] }, { threshold: 1, keys: [w.R1.publicKey] })).toBe('RangeError');
    expect(bad({ threshold: 1, keys: [] }, { threshold: 1, keys: [w.R1.publicKey] })).toBe('RangeError');
  });
});

describe('revocation lists (R1–R4)', () => {
  it('accepts a list signed by a root threshold, at or above the stored version', () => {
    const rl = makeRevocations({ version: 4, keyIds: [w.R3.keyId], signers: [w.A, w.C] });
    expect(verifyRevocations(rl, current, 4).code).toBe(CODES.OK);
    expect(verifyRevocations(rl, current, 5).code).toBe(CODES.REVOCATION_ROLLBACK);
  });

  it('refuses a malformed stored version instead of skipping the rollback check', () => {
    const rl = makeRevocations({ version: 2, keyIds: [], signers: [w.A, w.B] });
    for (const bad of [NaN, -5, 1.5, '1', Infinity]) expect(verifyRevocations(rl, current, bad as never).code).toBe(CODES.INVALID_STATE);
  });

  it('a revoked release key no longer counts even in a fresh manifest', () => {
    const rl = makeRevocations({ version: 1, keyIds: [w.R1.keyId], signers: [w.A, w.B] });
    expect(verifyManifest(makeManifestEnvelope(w.manifest, [w.R1, w.R3]), w.trust, { ...w.state, revocations: rl }).code).toBe(CODES.REVOKED_KEY);
  });
});

/** A + (0, -1): the encoding of the sum, computed with noble's point arithmetic. */
function mixedOrder(pub: Uint8Array): Uint8Array {
  const T = Point.fromBytes(fromHex('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f') as Uint8Array);
  return Point.fromBytes(pub).add(T).toBytes();
}
