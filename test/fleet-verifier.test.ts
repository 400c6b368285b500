/** The host's fleet verifier: a memo of Ed25519 outcomes changes cost, never outcomes. */
import { describe, expect, it } from 'vitest';
import { CODES } from '../shared/codes.js';
import { createVerifier } from '../device/index.js';
import { fleetVerifier } from '../host/hash.js';
import { makeManifest, makeManifestEnvelope, makeRevocations, standardWorld, detBytes } from './support/fixtures.js';

describe('fleetVerifier (signature memo)', () => {
  const w = standardWorld();
  const image = detBytes(5000, 'memo');
  const good = makeManifestEnvelope(makeManifest(image, { version: '1.0.0', securityCounter: 2 }), [w.R1, w.R2]);
  const short = makeManifestEnvelope(makeManifest(image, { version: '1.0.0', securityCounter: 2 }), [w.R1]);
  const tampered = Uint8Array.from(good);
  tampered[tampered.length - 5] ^= 1; // inside the last signature

  it('gives the plain verifier\'s outcome for good, short and tampered manifests, first and second time', () => {
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

  it('a cache without get/set is a programmer error (TypeError)', () => {
    expect(() => createVerifier({ signatureCache: {} as never })).toThrow(TypeError);
  });
});
