import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTrust, sha256, type VerifiedTrust, verifyManifest, verifyManifestWithTrust } from '../device/index.js';
import { CborTag, encodeCbor } from '../shared/cbor.js';
import { CODES, codeName } from '../shared/codes.js';
import { HEADER_KID, SIGNER_PROTECTED, sigStructure } from '../shared/cose.js';
import { encodeManifest } from '../shared/manifest.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust, standardWorld } from './support/fixtures.js';

const w = standardWorld();
let trust: VerifiedTrust;
beforeAll(() => {
  const t = loadTrust(w.trust);
  if (!t.ok) throw new Error('fixture trust does not load');
  trust = t.trust;
});

const verify = (envelope: Uint8Array, state: Parameters<typeof verifyManifest>[2] = w.state) => verifyManifest(envelope, w.trust, state);

/** Build a COSE_Sign by hand, so tests can create what the host tools refuse to (duplicate kids...). */
function rawEnvelope(payload: Uint8Array, sigs: { kid: Uint8Array; signature: Uint8Array }[]): Uint8Array {
  return encodeCbor(new CborTag(98, [new Uint8Array(0), new Map(), payload, sigs.map((s) => [SIGNER_PROTECTED, new Map([[HEADER_KID, s.kid]]), s.signature])]));
}

describe('V6 thresholds: distinct, known, non-revoked release keys', () => {
  const payload = encodeManifest(w.manifest);
  const sigBy = (k: ReturnType<typeof detKey>) => ({ kid: k.keyId, signature: k.sign(sigStructure(payload)) });

  it('accepts a threshold exactly met (2 of 3)', () => {
    const r = verify(w.envelope);
    expect(r.code).toBe(CODES.OK);
    expect(r.ok && r.signers.length).toBe(2);
  });

  it('accepts all three release keys', () => {
    expect(verify(makeManifestEnvelope(w.manifest, [w.R1, w.R2, w.R3])).code).toBe(CODES.OK);
  });

  it('rejects one signature short', () => {
    expect(verify(makeManifestEnvelope(w.manifest, [w.R1])).code).toBe(CODES.THRESHOLD_NOT_MET);
  });

  it('rejects an unsigned draft', () => {
    expect(verify(makeManifestEnvelope(w.manifest, [])).code).toBe(CODES.THRESHOLD_NOT_MET);
  });

  it('counts a second signature by the same key once', () => {
    const s = sigBy(w.R1);
    expect(verify(rawEnvelope(payload, [s, s])).code).toBe(CODES.THRESHOLD_NOT_MET);
  });

  it('ignores signatures by unknown key ids', () => {
    const X = detKey('outsider');
    expect(verify(rawEnvelope(payload, [sigBy(w.R1), sigBy(X)])).code).toBe(CODES.THRESHOLD_NOT_MET);
    expect(verify(rawEnvelope(payload, [sigBy(X), sigBy(w.R1), sigBy(w.R2)])).code).toBe(CODES.OK);
  });

  it('does not count a valid signature filed under another key id', () => {
    const s1 = sigBy(w.R1);
    expect(verify(rawEnvelope(payload, [s1, { kid: w.R2.keyId, signature: s1.signature }])).code).toBe(CODES.THRESHOLD_NOT_MET);
  });

  it('does not count root keys toward the release threshold', () => {
    expect(verify(makeManifestEnvelope(w.manifest, [w.A, w.B])).code).toBe(CODES.THRESHOLD_NOT_MET);
  });

  it('does not count a revoked signer (REVOKED_KEY when revocation is why the threshold fails)', () => {
    const rl = makeRevocations({ version: 1, keyIds: [w.R2.keyId], signers: [w.A, w.B] });
    expect(verify(w.envelope, { ...w.state, revocations: rl }).code).toBe(CODES.REVOKED_KEY);
    expect(verify(makeManifestEnvelope(w.manifest, [w.R1, w.R2, w.R3]), { ...w.state, revocations: rl }).code).toBe(CODES.OK);
  });

  it('reports THRESHOLD_NOT_MET, not REVOKED_KEY, when too few signed at all', () => {
    const rl = makeRevocations({ version: 1, keyIds: [w.R3.keyId], signers: [w.A, w.B] });
    expect(verify(makeManifestEnvelope(w.manifest, [w.R1]), { ...w.state, revocations: rl }).code).toBe(CODES.THRESHOLD_NOT_MET);
  });
});

describe('V2/V3 trust bundle and revocation list', () => {
  it('rejects a trust bundle signed below its root threshold', () => {
    const weak = makeTrust({ root: [w.A, w.B, w.C], rootThreshold: 2, release: [w.R1, w.R2, w.R3], releaseThreshold: 2, signers: [w.A] });
    expect(verifyManifest(w.envelope, weak, w.state).code).toBe(CODES.TRUST_THRESHOLD_NOT_MET);
  });

  it('rejects a trust bundle signed by keys outside its root role', () => {
    const forged = makeTrust({ root: [w.A, w.B, w.C], rootThreshold: 2, release: [w.R1, w.R2, w.R3], releaseThreshold: 2, signers: [w.R1, w.R2] });
    expect(verifyManifest(w.envelope, forged, w.state).code).toBe(CODES.TRUST_THRESHOLD_NOT_MET);
  });

  it('rejects a trust bundle older than the device has seen', () => {
    expect(verify(w.envelope, { ...w.state, trustVersion: 2 }).code).toBe(CODES.TRUST_ROLLBACK);
  });

  it('rejects a revocation list older than the device has seen', () => {
    const rl = makeRevocations({ version: 1, keyIds: [], signers: [w.A, w.B] });
    expect(verify(w.envelope, { ...w.state, revocations: rl, revocationVersion: 2 }).code).toBe(CODES.REVOCATION_ROLLBACK);
    expect(verify(w.envelope, { ...w.state, revocations: rl, revocationVersion: 1 }).code).toBe(CODES.OK);
  });

  it('rejects a revocation list below the root threshold (fail closed)', () => {
    const rl = makeRevocations({ version: 3, keyIds: [w.R1.keyId], signers: [w.A] });
    expect(verify(w.envelope, { ...w.state, revocations: rl }).code).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
  });

  it('rejects a revocation list signed by release keys', () => {
    const rl = makeRevocations({ version: 3, keyIds: [], signers: [w.R1, w.R2] });
    expect(verify(w.envelope, { ...w.state, revocations: rl }).code).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
  });

  it('refuses a revoked manifest digest (V7)', () => {
    const parsedDigest = sha256(encodeManifest(w.manifest));
    const rl = makeRevocations({ version: 1, manifests: [parsedDigest], signers: [w.A, w.B] });
    expect(verify(w.envelope, { ...w.state, revocations: rl }).code).toBe(CODES.REVOKED_MANIFEST);
  });

  it('does not let a root key revoked by the list sign that list', () => {
    // A list that revokes A, signed by A and B, has only B's signature left: below threshold.
    const rl = makeRevocations({ version: 1, keyIds: [w.A.keyId], signers: [w.A, w.B] });
    expect(verify(w.envelope, { ...w.state, revocations: rl }).code).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
  });
});

describe('V8/V9 policy', () => {
  it('accepts a security counter equal to the stored one, rejects a lower one (ROLLBACK)', () => {
    expect(verify(w.envelope, { ...w.state, counter: 7 }).code).toBe(CODES.OK);
    expect(verify(w.envelope, { ...w.state, counter: 8 }).code).toBe(CODES.ROLLBACK);
  });

  it('rejects a manifest for another device class', () => {
    expect(verify(w.envelope, { ...w.state, deviceClass: 'acme-sensor' }).code).toBe(CODES.WRONG_DEVICE_CLASS);
  });

  it('checks signatures before policy: an unsigned rollback is a signature failure', () => {
    expect(verify(makeManifestEnvelope(w.manifest, [w.R1]), { ...w.state, counter: 99 }).code).toBe(CODES.THRESHOLD_NOT_MET);
  });
});

describe('kinds cannot be confused', () => {
  it('a trust bundle is not a manifest, a revocation list is not a trust bundle', () => {
    expect(verify(w.trust).code).toBe(CODES.WRONG_KIND);
    const rl = makeRevocations({ version: 1, keyIds: [], signers: [w.A, w.B] });
    expect(verifyManifest(w.envelope, rl, w.state).code).toBe(CODES.WRONG_KIND);
    expect(verifyManifest(w.envelope, w.envelope, w.state).code).toBe(CODES.WRONG_KIND);
  });
});

describe('bad input never throws and always has a code', () => {
  it('rejects every single-bit flip of a signed manifest', () => {
    const env = w.envelope;
    const seen = new Set<number>();
    for (let i = 0; i < env.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const m = env.slice();
        m[i] ^= 1 << bit;
        const r = verifyManifestWithTrust(m, trust, w.state);
        expect(r.ok, `byte ${i} bit ${bit}`).toBe(false);
        expect(codeName(r.code)).toBe(r.error);
        seen.add(r.code);
      }
    }
    // Flips land in every layer: CBOR structure, envelope, payload schema, signatures.
    expect(seen.size).toBeGreaterThanOrEqual(6);
    expect(seen.has(CODES.THRESHOLD_NOT_MET)).toBe(true);
  });

  it('rejects truncation at every offset with a code', () => {
    for (let n = 0; n < w.envelope.length; n++) {
      const r = verifyManifestWithTrust(w.envelope.subarray(0, n), trust, w.state);
      expect(r.ok, `length ${n}`).toBe(false);
      expect(r.code).toBeGreaterThanOrEqual(100);
      expect(r.code).toBeLessThan(300);
    }
  });

  it('rejects every truncation of the trust bundle', () => {
    for (let n = 0; n < w.trust.length; n += 7) expect(verifyManifest(w.envelope, w.trust.subarray(0, n), w.state).ok).toBe(false);
  });

  it('answers INVALID_STATE for a malformed device state', () => {
    for (const state of [
      null,
      {},
      { deviceClass: 'acme-gw' },
      { deviceClass: 'acme-gw', counter: -1 },
      { deviceClass: 'acme-gw', counter: 1.5 },
      { deviceClass: '', counter: 0 },
      { deviceClass: 'acme-gw', counter: 0, revocations: 'x' },
      { deviceClass: 'acme-gw', counter: 0, trustVersion: -2 },
    ]) {
      expect(verify(w.envelope, state as never).code).toBe(CODES.INVALID_STATE);
    }
  });

  it('answers WRONG_TYPE for inputs that are not bytes', () => {
    for (const bad of [null, undefined, 'text', 42, [1, 2], {}]) {
      expect(verifyManifest(bad as never, w.trust, w.state).code).toBe(CODES.WRONG_TYPE);
      expect(verifyManifest(w.envelope, bad as never, w.state).code).toBe(CODES.WRONG_TYPE);
    }
  });
});

describe('round trips (property)', () => {
  it('accepts exactly when at least the threshold of release keys signed', () => {
    const keys = [w.R1, w.R2, w.R3];
    const semver = fc
      .tuple(fc.nat(99), fc.nat(99), fc.nat(99), fc.option(fc.constantFrom('rc.1', 'beta', 'alpha.2')))
      .map(([a, b, c, pre]) => `${a}.${b}.${c}${pre ? `-${pre}` : ''}`);
    fc.assert(
      fc.property(
        fc.record({
          deviceClass: fc.stringMatching(/^[A-Za-z0-9._-]{1,20}$/),
          version: semver,
          securityCounter: fc.nat(1_000_000),
          imageSize: fc.integer({ min: 1, max: 1 << 30 }),
          chunkSize: fc.constantFrom(512, 4096, 65536),
          created: fc.nat(2_000_000_000),
        }),
        fc.subarray([0, 1, 2]),
        fc.nat(1_000_000),
        (fields, signerIdx, stored) => {
          const manifest = { ...makeManifest(new Uint8Array(1)), ...fields, merkleRoot: detBytes(32, fields.version) };
          const env = makeManifestEnvelope(
            manifest,
            signerIdx.map((i) => keys[i]),
          );
          const r = verifyManifestWithTrust(env, trust, { deviceClass: fields.deviceClass, counter: stored });
          const expected = signerIdx.length < 2 ? CODES.THRESHOLD_NOT_MET : fields.securityCounter < stored ? CODES.ROLLBACK : CODES.OK;
          expect(r.code).toBe(expected);
          if (r.ok) expect(r.manifest).toEqual(manifest);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('produces the same bytes whatever order the signers work in', () => {
    const a = makeManifestEnvelope(w.manifest, [w.R1, w.R2, w.R3]);
    const b = makeManifestEnvelope(w.manifest, [w.R3, w.R1, w.R2]);
    expect(b).toEqual(a);
  });
});

describe('size', () => {
  it('keeps a manifest with 2 signatures and typical fields (SBOM, provenance) within 400 bytes, whatever the image size', () => {
    const sizes = [1, 1 << 20, 256 << 20, 0xffffffff].map((imageSize) => {
      const m = {
        ...w.manifest,
        imageSize,
        deviceClass: 'acme-gw',
        version: '1.4.2',
        securityCounter: 42,
        sbom: { digest: detBytes(32, 'sbom'), uri: 'https://sbom.acme.example/gw/1.4.2.cdx.json' },
        provenance: { pipelineRun: '1234567', sourceRevision: '4f2a9c1e0b7d3f58a6c2e9b1d4f7a0c3e5b8d1f2' },
      };
      return makeManifestEnvelope(m, [w.R1, w.R2]).length;
    });
    for (const n of sizes) expect(n).toBeLessThanOrEqual(400);
    // Only the width of the image-size integer varies: the manifest does not grow with the image.
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(4);
  });
});
