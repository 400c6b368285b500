/**
 * Revoked root keys stay revoked (SPEC.md §6.1 T6–T7, §6.2 R3–R5, §6.7), on the verifier and on the
 * update agent, with the pure-JS verifier and with the device bundle running in QuickJS (the
 * verifier a HIL device uses). The scenario is the review's: root {A, B, C, D}, threshold 2; list v1
 * (signed by C + D) revokes A and B; A + B then try to undo it and take over.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpdateAgent } from '../device/agent/agent.js';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { loadState } from '../device/agent/state-store.js';
import { createVerifier, type VerifiedRevocations, type VerifiedTrust, type Verifier } from '../device/index.js';
import { SimFlash } from '../device/sim/flash.js';
import { type QuickJSVerifier, quickjsVerifier } from '../hil/quickjs-verifier.js';
import { CODES, type Result } from '../shared/codes.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust } from './support/fixtures.js';

const [A, B, C, D, E] = ['A', 'B', 'C', 'D', 'E'].map(detKey);
const [R1, R2, X] = ['R1', 'R2', 'X-attacker-release'].map(detKey);
const trust1 = makeTrust({ root: [A, B, C, D], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [C, D] });
const revokeAB = makeRevocations({ version: 1, keyIds: [A.keyId, B.keyId], signers: [C, D] });
/** A + B's attempts: a list that revokes nothing, and a rotation to their own release key. */
const unrevoke = makeRevocations({ version: 2, keyIds: [], signers: [A, B] });
const takeover = makeTrust({ root: [A, B, C, D], rootThreshold: 2, release: [X], releaseThreshold: 1, signers: [A, B], version: 2 });
const image1 = detBytes(8192, 'root revocation v1');
const v1 = makeManifestEnvelope(makeManifest(image1, { version: '1.0.0', securityCounter: 1 }), [R1, R2]);
const evilImage = detBytes(8192, 'attacker image');
const evil = makeManifestEnvelope(makeManifest(evilImage, { version: '9.0.0', securityCounter: 9 }), [X]);

function must<T extends object>(r: Result<T>): T {
  if (!r.ok) throw new Error(r.error);
  return r;
}

describe.each(['pure JS', 'QuickJS bundle'] as const)('root revocation with the %s verifier', (kind) => {
  let v: Verifier;
  let qjs: QuickJSVerifier | null = null;
  beforeAll(async () => {
    if (kind === 'pure JS') v = createVerifier();
    else v = qjs = await quickjsVerifier();
  });
  afterAll(() => qjs?.dispose());

  const load = (t: Uint8Array): VerifiedTrust => must(v.loadTrust(t)).trust;
  const stored = (): VerifiedRevocations => must(v.verifyRevocations(revokeAB, load(trust1))).revocations;

  it('R3: root keys revoked by the stored list do not count for a new list, even one that revokes nothing', () => {
    const t = load(trust1);
    expect(v.verifyRevocations(unrevoke, t, 1, stored()).code).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
    const aAndC = makeRevocations({ version: 2, keyIds: [], signers: [A, C] });
    expect(v.verifyRevocations(aAndC, t, 1, stored()).code).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
    const honest = makeRevocations({ version: 2, keyIds: [A.keyId, B.keyId, R2.keyId], signers: [C, D] });
    expect(v.verifyRevocations(honest, t, 1, stored()).code).toBe(CODES.OK);
  });

  it('R5: a list must keep revoking every key id of the stored list the bundle still lists', () => {
    const t = load(trust1);
    const dropsB = makeRevocations({ version: 2, keyIds: [A.keyId], signers: [C, D] });
    expect(v.verifyRevocations(dropsB, t, 1, stored()).code).toBe(CODES.REVOCATION_ROLLBACK);
    const sameVersionOther = makeRevocations({ version: 1, keyIds: [A.keyId, B.keyId, R1.keyId], signers: [C, D] });
    expect(v.verifyRevocations(sameVersionOther, t, 1, stored()).code).toBe(CODES.REVOCATION_ROLLBACK);
    expect(v.verifyRevocations(revokeAB, t, 1, stored()).code).toBe(CODES.OK);
  });

  it('T6/T7: revoked root keys can neither authorize a rotation nor hold a threshold in the next bundle', () => {
    const t = load(trust1);
    expect(v.verifyTrustUpdate(takeover, t, stored()).code).toBe(CODES.ROTATION_NOT_AUTHORIZED);
    // C + D authorize, but the new root threshold would rest on A + B again.
    const handBack = makeTrust({ root: [A, B, E], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [A, B, C, D], version: 2 });
    expect(v.verifyTrustUpdate(handBack, t, stored()).code).toBe(CODES.TRUST_THRESHOLD_NOT_MET);
    const honest = makeTrust({ root: [C, D, E], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [C, D, E], version: 2 });
    expect(v.verifyTrustUpdate(honest, t, stored()).code).toBe(CODES.OK);
  });

  it('a revocation outlives a rotation that still lists the key, and ends with one that removes it', () => {
    const t = load(trust1);
    const keepsAB = makeTrust({ root: [A, B, C, D, E], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [C, D], version: 2 });
    const t2 = must(v.verifyTrustUpdate(keepsAB, t, stored())).trust;
    const dropsA = makeRevocations({ version: 2, keyIds: [B.keyId], signers: [C, E] });
    expect(v.verifyRevocations(dropsA, t2, 1, stored()).code).toBe(CODES.REVOCATION_ROLLBACK);
    const withoutAB = makeTrust({ root: [C, D, E], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [C, D, E], version: 2 });
    const t3 = must(v.verifyTrustUpdate(withoutAB, t, stored())).trust;
    const empty = makeRevocations({ version: 2, keyIds: [], signers: [C, E] });
    expect(v.verifyRevocations(empty, t3, 1, stored()).code).toBe(CODES.OK);
  });

  it("the update agent refuses the whole takeover, and the attacker's image never installs", () => {
    const geometry = { size: layoutBytes(4096, 8, 64 * 1024), eraseBlockSize: 4096, writeAlign: 8, erasedValue: 0xff };
    const layout = createLayout(geometry, { slotSize: 64 * 1024 });
    const flash = new SimFlash(geometry);
    must(provision(flash, layout, { deviceClass: 'acme-gw', trust: trust1, envelope: v1, image: image1, verifier: v }));
    const agent = () => new UpdateAgent({ flash, layout, trust: trust1, verifier: v });
    expect(agent().updateRevocations(revokeAB)).toMatchObject({ ok: true, version: 1 });
    expect(agent().updateRevocations(unrevoke).code).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
    expect(agent().updateTrust(takeover).code).toBe(CODES.ROTATION_NOT_AUTHORIZED);
    expect(agent().updateTrust(takeover, unrevoke).code).toBe(CODES.ROTATION_NOT_AUTHORIZED);
    expect(agent().beginUpdate(evil).code).toBe(CODES.THRESHOLD_NOT_MET);
    const s = loadState(flash, layout);
    expect(s.ok && s.record).toMatchObject({ trustVersion: 1, revocationVersion: 1, securityCounter: 1 });
    // The honest way out: rotate to a root without A and B, with a list that may now drop them.
    const rotated = makeTrust({ root: [C, D, E], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [C, D, E], version: 2 });
    const dropsAB = makeRevocations({ version: 2, keyIds: [], signers: [C, E] });
    expect(agent().updateTrust(rotated, dropsAB)).toMatchObject({ ok: true, version: 2, changed: true });
  });

  it('a rotation that keeps a revoked key cannot bring a list that drops it', () => {
    const geometry = { size: layoutBytes(4096, 8, 64 * 1024), eraseBlockSize: 4096, writeAlign: 8, erasedValue: 0xff };
    const layout = createLayout(geometry, { slotSize: 64 * 1024 });
    const flash = new SimFlash(geometry);
    must(provision(flash, layout, { deviceClass: 'acme-gw', trust: trust1, envelope: v1, image: image1, verifier: v, revocations: revokeAB }));
    const agent = new UpdateAgent({ flash, layout, trust: trust1, verifier: v });
    const keepsA = makeTrust({ root: [A, C, D, E], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [C, D], version: 2 });
    const dropsA = makeRevocations({ version: 2, keyIds: [], signers: [C, D] });
    expect(agent.updateTrust(keepsA, dropsA).code).toBe(CODES.REVOCATION_ROLLBACK);
    const keepsAList = makeRevocations({ version: 2, keyIds: [A.keyId], signers: [C, D] });
    expect(agent.updateTrust(keepsA, keepsAList)).toMatchObject({ ok: true, version: 2 });
    expect(agent.updateRevocations(makeRevocations({ version: 3, keyIds: [], signers: [C, D] })).code).toBe(CODES.REVOCATION_ROLLBACK);
  });
});
