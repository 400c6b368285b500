/**
 * Cases about who signed: accepted envelopes (V1–V9 all pass), the release threshold (V6),
 * revocation lists (V3, V6, V7) and the trust bundle (V2).
 */
import { encodeEnvelope } from '../../../shared/cose.js';
import { encodeManifest } from '../../../shared/manifest.js';
import { makeTrust, sha256 } from '../fixtures.js';
import { cbor, flipBit, hex, offsetOf, rawEnvelope, signatureBy } from './raw-cbor.js';
import { type VectorWorld } from './world.js';

/** Accepted: every check passes (V1–V9). */
export function acceptedCases(w: VectorWorld): void {
  const { B, C, R1, R2, R3, X, TRUST_VERSION, payload, manifestWith, rl, rlUnrelated, add } = w;
  add('accept: 2 of 3 release signatures (R1, R2)', 'OK');
  add('accept: 3 of 3 release signatures (R1, R2, R3)', 'OK', { envelope: manifestWith({}, [R1, R2, R3]) });
  add('accept: R2 and R3', 'OK', { envelope: manifestWith({}, [R2, R3]) });
  add('accept: security counter above the stored one (V9: >=)', 'OK', { state: { counter: 3 } });
  add('accept: stored trust version equal to the bundle (V2: >=)', 'OK', { state: { trustVersion: TRUST_VERSION } });
  add('accept: revocation list naming an unrelated key', 'OK', { state: { revocations: hex(rlUnrelated) } });
  add('accept: revocation list signed by B and C, stored version equal (R4: >=)', 'OK', {
    state: { revocations: hex(rl({ keyIds: [X.keyId], signers: [B, C] })), revocationVersion: 2 },
  });
  add('accept: 3 signatures, R3 revoked, R1 and R2 still reach the threshold', 'OK', {
    envelope: manifestWith({}, [R1, R2, R3]),
    state: { revocations: hex(rl({ keyIds: [R3.keyId] })) },
  });
  add('accept: an unknown kid beside two release signatures is ignored', 'OK', { envelope: manifestWith({}, [R1, R2, X]) });
  add('accept: signatures not sorted by kid (verifiers do not require the order)', 'OK', {
    envelope: rawEnvelope(
      payload,
      [signatureBy(R1, payload), signatureBy(R2, payload)].sort((a, b) => Buffer.compare(b.kid, a.kid)),
    ),
  });
  add('accept: a corrupted third signature beside two good ones', 'OK', {
    envelope: rawEnvelope(payload, [
      signatureBy(R1, payload),
      signatureBy(R2, payload),
      { kid: R3.keyId, signature: flipBit(signatureBy(R3, payload).signature, 5) },
    ]),
  });
}

/** V6: the release threshold. */
export function thresholdCases(w: VectorWorld): void {
  const { A, R1, R2, X, manifest, payload, manifestWith, add } = w;
  add('threshold: one short (R1 only)', 'THRESHOLD_NOT_MET', { envelope: manifestWith({}, [R1]) });
  add('threshold: unsigned draft (no signatures)', 'THRESHOLD_NOT_MET', { envelope: encodeEnvelope({ payload, signatures: [] }) });
  add('threshold: duplicate signer (R1 twice) counts once', 'THRESHOLD_NOT_MET', {
    envelope: rawEnvelope(payload, [signatureBy(R1, payload), signatureBy(R1, payload)]),
  });
  add('threshold: unknown kid (R1 and an outsider)', 'THRESHOLD_NOT_MET', { envelope: manifestWith({}, [R1, X]) });
  add('threshold: a root key (A) is not a release key', 'THRESHOLD_NOT_MET', { envelope: manifestWith({}, [R1, A]) });
  add("threshold: R1's signature under R2's kid", 'THRESHOLD_NOT_MET', {
    envelope: rawEnvelope(payload, [signatureBy(R1, payload), signatureBy(R1, payload, R2.keyId)]),
  });
  add('threshold: R2 signed another manifest', 'THRESHOLD_NOT_MET', {
    envelope: rawEnvelope(payload, [signatureBy(R1, payload), signatureBy(R2, encodeManifest({ ...manifest, version: '2.1.1' }))]),
  });
  {
    // P2: S + L gives the same [S]B; the malleated signature must not count.
    const L = (1n << 252n) + 27742317777372353535851937790883648493n;
    const s2 = signatureBy(R2, payload);
    let S = 0n;
    for (let i = 63; i >= 32; i--) S = (S << 8n) | BigInt(s2.signature[i]);
    const m = Uint8Array.from(s2.signature);
    for (let i = 0, v = S + L; i < 32; i++, v >>= 8n) m[32 + i] = Number(v & 0xffn);
    add("threshold: R2's signature malleated to S + L", 'THRESHOLD_NOT_MET', {
      envelope: rawEnvelope(payload, [signatureBy(R1, payload), { kid: R2.keyId, signature: m }]),
    });
  }
}

/** V3, V6, V7: revocation lists. */
export function revocationCases(w: VectorWorld): void {
  const { A, R1, R2, X, payload, good, rl, rlUnrelated, manifestDigest, add } = w;
  add('revoked: signer R2 revoked, R1 and R2 signed', 'REVOKED_KEY', { state: { revocations: hex(rl({ keyIds: [R2.keyId] })) } });
  add('revoked: both signers revoked', 'REVOKED_KEY', { state: { revocations: hex(rl({ keyIds: [R1.keyId, R2.keyId] })) } });
  add("revoked: R2 revoked but R2's signature is invalid anyway", 'THRESHOLD_NOT_MET', {
    envelope: rawEnvelope(payload, [signatureBy(R1, payload), { kid: R2.keyId, signature: flipBit(signatureBy(R2, payload).signature, 0) }]),
    state: { revocations: hex(rl({ keyIds: [R2.keyId] })) },
  });
  add('revoked: the manifest digest is on the list', 'REVOKED_MANIFEST', { state: { revocations: hex(rl({ manifests: [manifestDigest] })) } });
  add('revoked: manifest and signer both revoked (V6 before V7)', 'REVOKED_KEY', {
    state: { revocations: hex(rl({ keyIds: [R1.keyId], manifests: [manifestDigest] })) },
  });
  add('revoked: another manifest digest on the list', 'OK', { state: { revocations: hex(rl({ manifests: [sha256('another payload')] })) } });
  add('revocation: rollback (list version 2, stored 3)', 'REVOCATION_ROLLBACK', { state: { revocations: hex(rlUnrelated), revocationVersion: 3 } });
  add('revocation: one root signature (A)', 'REVOCATION_THRESHOLD_NOT_MET', { state: { revocations: hex(rl({ keyIds: [X.keyId], signers: [A] })) } });
  add('revocation: signed by release keys', 'REVOCATION_THRESHOLD_NOT_MET', { state: { revocations: hex(rl({ keyIds: [X.keyId], signers: [R1, R2] })) } });
  add('revocation: a list revoking its own signer A', 'REVOCATION_THRESHOLD_NOT_MET', { state: { revocations: hex(rl({ keyIds: [A.keyId] })) } });
  add('revocation: a manifest envelope given as the list', 'WRONG_KIND', { state: { revocations: hex(good) } });
  add('revocation: list truncated by one byte', 'TRUNCATED', { state: { revocations: hex(rlUnrelated.subarray(0, rlUnrelated.length - 1)) } });
  add('revocation: bit flip in the signed list payload', 'REVOCATION_THRESHOLD_NOT_MET', {
    // The version 2 -> 3 inside the payload: still a well-formed list, no longer what A and B signed.
    state: {
      revocations: hex(
        (() => {
          const p = cbor.map([
            [cbor.uint(0), cbor.uint(3)],
            [cbor.uint(1), cbor.uint(1)],
            [cbor.uint(2), cbor.uint(2)],
            [cbor.uint(3), cbor.array([cbor.bytes(X.keyId)])],
          ]);
          return flipBit(rlUnrelated, offsetOf(rlUnrelated, p) + 6, 0x01);
        })(),
      ),
    },
  });
}

/** V2: the trust bundle. */
export function trustBundleCases(w: VectorWorld): void {
  const { A, B, C, R1, R2, R3, TRUST_VERSION, trustSpec, trust, good, signedPayload, add } = w;
  add('trust: one root signature (A)', 'TRUST_THRESHOLD_NOT_MET', { trust: makeTrust({ ...trustSpec, signers: [A] }) });
  add('trust: signed by release keys', 'TRUST_THRESHOLD_NOT_MET', { trust: makeTrust({ ...trustSpec, signers: [R1, R2] }) });
  add('trust: rollback (bundle 3, stored 4)', 'TRUST_ROLLBACK', { state: { trustVersion: 4 } });
  add('trust: bit flip in the signed payload (version 3 -> 2)', 'TRUST_THRESHOLD_NOT_MET', {
    trust: (() => {
      const at = offsetOf(trust, Uint8Array.of(0xa5, 0x00, 0x02, 0x01, 0x01, 0x02, 0x03)) + 6;
      return flipBit(trust, at, 0x01);
    })(),
  });
  add('trust: a manifest envelope given as the trust bundle', 'WRONG_KIND', { trust: good });
  add('trust: truncated by one byte', 'TRUNCATED', { trust: trust.subarray(0, trust.length - 1) });
  {
    const role = (threshold: number, keys: Uint8Array[]) =>
      cbor.map([
        [cbor.uint(1), cbor.uint(threshold)],
        [cbor.uint(2), cbor.array(keys.map((k) => cbor.bytes(k)))],
      ]);
    const bundle = (release: Uint8Array) =>
      signedPayload(
        cbor.map([
          [cbor.uint(0), cbor.uint(2)],
          [cbor.uint(1), cbor.uint(1)],
          [cbor.uint(2), cbor.uint(TRUST_VERSION)],
          [
            cbor.uint(3),
            role(
              2,
              [A, B, C].map((k) => k.publicKey),
            ),
          ],
          [cbor.uint(4), release],
        ]),
        [A, B],
      );
    const identity = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0));
    add('trust: a small-order key (the identity) in the release role (T3)', 'BAD_VALUE', { trust: bundle(role(2, [R1.publicKey, R2.publicKey, identity])) });
    add('trust: release threshold above its key count', 'BAD_VALUE', {
      trust: bundle(
        role(
          4,
          [R1, R2, R3].map((k) => k.publicKey),
        ),
      ),
    });
    add('trust: a release key listed twice', 'DUPLICATE_KEY', { trust: bundle(role(2, [R1.publicKey, R2.publicKey, R1.publicKey])) });
  }
}
