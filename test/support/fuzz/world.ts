/**
 * The fuzz world: the valid inputs, built from the deterministic fixtures, and the standard targets
 * that feed their mutations to the verifier.
 */

import { loadTrust, sha256, type VerifiedTrust, verifyManifest, verifyManifestWithTrust, verifyRevocations, verifyTrustUpdate } from '../../../device/index.js';
import { parseEnvelope } from '../../../shared/cose.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust } from '../fixtures.js';
import { apiTarget } from './api-target.js';
import { chunkTarget, streamTarget } from './image-targets.js';
import { logProofTargets } from './log-target.js';
import { bytesTarget } from './signed-object-target.js';
import { type FuzzTarget } from './target.js';

/** Valid inputs from the deterministic fixtures; every signed object carries exactly its threshold of needed signatures. */
export type World = {
  readonly corpus: readonly Uint8Array[];
  readonly targets: readonly FuzzTarget[];
};

function must<T extends { ok: boolean }>(r: T, what: string): Extract<T, { ok: true }> {
  if (!r.ok) throw new Error(`fuzz fixture ${what} does not verify: ${JSON.stringify(r)}`);
  return r as Extract<T, { ok: true }>;
}

/**
 * World U, the root-revocation chain of SPEC.md §6.7: root A,B,C,D 2-of-4; the device stores list v1
 * (signed by C+D) revoking A and B. Accepted: the next list that keeps A and B revoked, the stored
 * list itself, a rotation by C+D to a root without A and B. Refused: A+B's list that revokes nothing,
 * A+C's, a list that drops B, another list with version 1, A+B's rotation, and C+D's rotation whose
 * own threshold rests on A+B again.
 */
function rootRevocationWorld() {
  const [A, B, C, D, E] = ['A', 'B', 'C', 'D', 'E'].map((l) => detKey(`fuzz U/${l}`));
  const [R1, R2] = ['R1', 'R2'].map((l) => detKey(`fuzz U/${l}`));
  const rot = (root: (typeof A)[], signers: (typeof A)[]) => makeTrust({ version: 2, root, rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers });
  const trustU = makeTrust({ root: [A, B, C, D], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [C, D] });
  const revAB = makeRevocations({ version: 1, keyIds: [A.keyId, B.keyId], signers: [C, D] });
  const trust = must(loadTrust(trustU), 'trust U').trust;
  const stored = must(verifyRevocations(revAB, trust), 'stored list U').revocations;
  return {
    trust,
    stored,
    accept: {
      lists: [makeRevocations({ version: 2, keyIds: [A.keyId, B.keyId, R2.keyId], signers: [C, D] }), revAB],
      rotations: [rot([C, D, E], [C, D])],
    },
    refuse: {
      lists: [
        makeRevocations({ version: 2, keyIds: [], signers: [A, B] }),
        makeRevocations({ version: 2, keyIds: [A.keyId, B.keyId], signers: [A, C] }),
        makeRevocations({ version: 2, keyIds: [A.keyId], signers: [C, D] }),
        makeRevocations({ version: 1, keyIds: [A.keyId, B.keyId, R1.keyId], signers: [C, D] }),
      ],
      rotations: [rot([A, B, C, D], [A, B]), rot([A, B, E], [A, B, C, D])],
    },
  };
}

/**
 * The standard fuzz world. Every signed object carries exactly the signatures its threshold needs.
 *  - S: root A,B,C 2-of-3, release R1,R2,R3 2-of-3; trust signed by A+B; a manifest with SBOM and
 *    provenance signed by R1+R2; a revocation list v3 (R3's key id, the "revoked" manifest) signed
 *    by A+B; a rotation candidate v2 (root A,B,D,E 3-of-4, release R1,R4,R5) signed by A+B+D: A+B
 *    are exactly the old root threshold, A+B+D exactly the new one, so each is needed both for
 *    loadTrust and for verifyTrustUpdate.
 *  - T: one root key and one release key, 1-of-1: the same checks at half the Ed25519 cost.
 *  - validly signed objects that policy must refuse (another device class, a lower security
 *    counter, a revoked signer, a revoked manifest, an older revocation list, a trust bundle that
 *    skips a version, one the current root did not sign, a different bundle with the current
 *    version): mutations substitute and splice them, which reaches the policy codes.
 *  - images: a 3-chunk image (512-byte chunks, short last chunk) streamed; a 130-chunk image
 *    (2 digest pages) for single chunks, proofs and pages.
 */
export function buildWorld(): World {
  const [A, B, C, D, E, F] = ['A', 'B', 'C', 'D', 'E', 'F'].map(detKey);
  const [R1, R2, R3, R4, R5] = ['R1', 'R2', 'R3', 'R4', 'R5'].map(detKey);
  const [K, Q] = ['fuzz-root', 'fuzz-release'].map(detKey);

  const smallImage = detBytes(3 * 512 - 100, 'fuzz small image');
  const manifestS = makeManifest(smallImage, {
    chunkSize: 512,
    sbom: { digest: sha256(Uint8Array.of(1, 2, 3)), uri: 'https://example.com/fw/sbom.cdx.json' },
    provenance: { pipelineRun: 'ci-4711', sourceRevision: '3f2a9c1e' },
  });
  const trustS = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2, R3], releaseThreshold: 2, signers: [A, B] });
  const envS = makeManifestEnvelope(manifestS, [R1, R2]);
  const revokedManifest = makeManifest(smallImage, { chunkSize: 512, securityCounter: 8 });
  const envRevoked = makeManifestEnvelope(revokedManifest, [R1, R2]);
  const envRevokedDigest = must(parseEnvelope(envRevoked), 'revoked manifest envelope').envelope.payload;
  const revS = makeRevocations({ version: 3, keyIds: [R3.keyId], manifests: [sha256(envRevokedDigest)], signers: [A, B] });
  const trustV2 = makeTrust({ version: 2, root: [A, B, D, E], rootThreshold: 3, release: [R1, R4, R5], releaseThreshold: 2, signers: [A, B, D] });
  const stateS = { deviceClass: 'acme-gw', counter: 7, trustVersion: 1 };
  const stateSR = { ...stateS, revocations: revS, revocationVersion: 3 };

  const manifestT = makeManifest(smallImage, { chunkSize: 512, securityCounter: 9, version: '2.0.0-rc.1+b7' });
  const trustT = makeTrust({ root: [K], rootThreshold: 1, release: [Q], releaseThreshold: 1, signers: [K] });
  const envT = makeManifestEnvelope(manifestT, [Q]);
  const revT = makeRevocations({ version: 1, keyIds: [R1.keyId], signers: [K] });
  const stateT = { deviceClass: 'acme-gw', counter: 9 };
  const stateTR = { ...stateT, revocations: revT, revocationVersion: 1 };

  // Validly signed, refused by policy.
  const envOtherClass = makeManifestEnvelope({ ...manifestS, deviceClass: 'other-gw' }, [R1, R2]);
  const envRollback = makeManifestEnvelope({ ...manifestS, securityCounter: 6 }, [R1, R2]);
  const envRevokedSigner = makeManifestEnvelope(manifestS, [R1, R3]);
  const revOld = makeRevocations({ version: 2, keyIds: [], signers: [A, B] });
  const trustV3 = makeTrust({ version: 3, root: [A, B, C], rootThreshold: 2, release: [R4, R5], releaseThreshold: 2, signers: [A, B] });
  const trustV2Unauthorized = makeTrust({ version: 2, root: [D, E, F], rootThreshold: 2, release: [R4, R5], releaseThreshold: 2, signers: [D, E] });
  const trustV1Other = makeTrust({ version: 1, root: [A, B, C], rootThreshold: 2, release: [R4, R5], releaseThreshold: 1, signers: [A, C] });

  const u = rootRevocationWorld();

  const verifiedS: VerifiedTrust = must(loadTrust(trustS), 'trust S').trust;
  const verifiedT: VerifiedTrust = must(loadTrust(trustT), 'trust T').trust;
  const corpus = [
    envS,
    envT,
    trustS,
    trustT,
    trustV2,
    revS,
    revT,
    envRevoked,
    envOtherClass,
    envRollback,
    envRevokedSigner,
    revOld,
    trustV3,
    trustV2Unauthorized,
    trustV1Other,
    // (world U stays out of the shared corpus: its rotations carry signatures for two thresholds, so
    // for loadTrust some are extra, and a mutated extra signature would rightly still load)
  ];
  const allTrust = [trustS, trustT, trustV2, trustV3, trustV2Unauthorized, trustV1Other];

  const targets: FuzzTarget[] = [
    // verifyManifestWithTrust is verifyManifest after the trust bundle was loaded; the end-to-end
    // verifyManifest re-loads (and Ed25519-checks) the bundle on every call, so it costs 3-10x more
    // per case and gets fewer runs, mostly with a mutated bundle (rejected before any signature).
    bytesTarget('manifest/S', 8, { accept: [envS, envRevoked, envRevokedSigner], refuse: [envOtherClass, envRollback] }, (b) =>
      verifyManifestWithTrust(b, verifiedS, stateS),
    ),
    bytesTarget('manifest+revocations/S', 2, { accept: [envS], refuse: [envRevoked, envRevokedSigner, envOtherClass, envRollback] }, (b) =>
      verifyManifestWithTrust(b, verifiedS, stateSR),
    ),
    bytesTarget('manifest/T', 6, { accept: [envT], refuse: [envS] }, (b) => verifyManifestWithTrust(b, verifiedT, stateT)),
    bytesTarget('manifest.revocations/S', 6, { accept: [revS], refuse: [revOld, revT] }, (b) =>
      verifyManifestWithTrust(envS, verifiedS, { ...stateS, revocations: b, revocationVersion: 3 }),
    ),
    bytesTarget('verifyManifest/T', 3, { accept: [envT], refuse: [envS] }, (b) => verifyManifest(b, trustT, stateTR)),
    bytesTarget('verifyManifest.trust/S', 7, { accept: [trustS], refuse: [trustV2, trustV3, trustV1Other] }, (b) => verifyManifest(envS, b, stateS)),
    bytesTarget('verifyManifest.trust/T', 5, { accept: [trustT], refuse: [trustS] }, (b) => verifyManifest(envT, b, stateT)),
    bytesTarget('loadTrust/S', 7, { accept: allTrust }, (b) => loadTrust(b)),
    bytesTarget('revocations/S', 10, { accept: [revS], refuse: [revOld, revT] }, (b) => verifyRevocations(b, verifiedS, 3)),
    bytesTarget('trustUpdate/S', 10, { accept: [trustV2, trustS], refuse: [trustV3, trustV2Unauthorized, trustV1Other, trustT] }, (b) =>
      verifyTrustUpdate(b, verifiedS),
    ),
    bytesTarget('revocations+stored/U', 6, { accept: u.accept.lists, refuse: u.refuse.lists }, (b) => verifyRevocations(b, u.trust, 1, u.stored)),
    bytesTarget('trustUpdate+stored/U', 6, { accept: u.accept.rotations, refuse: u.refuse.rotations }, (b) => verifyTrustUpdate(b, u.trust, u.stored)),
    streamTarget(manifestS, smallImage, 14),
    chunkTarget(16),
    apiTarget(envS, stateS, verifiedS, manifestS, 6),
    ...logProofTargets(envS, envT),
  ];
  // The fixtures are what this comment says: every valid input is accepted where it should be.
  for (const t of targets) {
    const problem = t.selfCheck?.() ?? null;
    if (problem !== null) throw new Error(`fuzz fixture: ${problem}`);
  }
  return Object.freeze({ corpus: Object.freeze(corpus), targets: Object.freeze(targets) });
}

let standardWorld: World | null = null;
/** The standard world, built once per process (signing and checking the fixtures takes a moment). */
export function defaultWorld(): World {
  return (standardWorld ??= buildWorld());
}
