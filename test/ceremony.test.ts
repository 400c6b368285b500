/**
 * Ceremony status (SPEC.md §15.7): `fwseal inspect FILE --trust T` lists, per deciding threshold,
 * which role keys signed, which are missing or revoked, the signatures that do not count and why,
 * and the device verifier's own verdict; `fwseal trust verify --previous v1 v2 ...` checks a
 * rotation chain as a device does (§6.1 T1–T7). Keys from seeds, files written to a temp folder,
 * the CLI run in-process. Codes, states and reason tokens are asserted, never message text.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writePublicKeyFile } from '../host/keys.js';
import { signEnvelope } from '../host/sign.js';
import { toHex } from '../shared/bytes.js';
import { CborTag, encodeCbor } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { encodeEnvelope, HEADER_KID, parseEnvelope, SIGNER_PROTECTED } from '../shared/cose.js';
import { encodeManifest } from '../shared/manifest.js';
import { type CliRun, fileWriter, runCli } from './support/cli-run.js';
import { detBytes, detKey, makeManifest, makeRevocations, makeTrust, signWith } from './support/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'fwseal-ceremony-'));
const keysDir = join(dir, 'keys');
mkdirSync(keysDir);
const file = fileWriter(dir);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const [A, B, C, D, E, F, G] = ['A', 'B', 'C', 'D', 'E', 'F', 'G'].map(detKey);
const [R1, R2, R3, U] = ['R1', 'R2', 'R3', 'U'].map(detKey);
const kid = (k: { keyId: Uint8Array }) => toHex(k.keyId);
for (const k of [A, B, C, D, E, F, G, R1, R2, R3]) writePublicKeyFile(join(keysDir, `${k.name}.pub`), `${k.name}-name`, k.publicKey);
const uPub = join(dir, 'U.pub');
writePublicKeyFile(uPub, 'outsider', U.publicKey);

const RELEASE = { release: [R1, R2, R3], releaseThreshold: 2 };
const trust1 = file('trust1.cbor', makeTrust({ root: [A, B, C], rootThreshold: 2, ...RELEASE, signers: [A, B] }));
/** Version 2: new root keys D, E (2 of 2); the release role stays. */
const v2 = (signers: (typeof A)[], version = 2) => makeTrust({ root: [D, E], rootThreshold: 2, ...RELEASE, signers, version });
const manifestPayload = encodeManifest(makeManifest(detBytes(10_000, 'ceremony image')));
const manifest = (signers: (typeof A)[]) => signWith(manifestPayload, signers);

const fwseal = (...args: string[]) => runCli(args);
const ceremonyOf = (r: CliRun) => {
  expect(r.status, r.out + r.err).toBe(0);
  return JSON.parse(r.out).ceremony as Record<string, any>;
};
const keyStates = (t: Record<string, any>) => Object.fromEntries(t.keys.map((k: { keyId: string; state: string }) => [k.keyId, k.state]));

/** The same envelope with the signature under `who` changed in one bit. */
function withBadSignature(envelope: Uint8Array, who: typeof A): Uint8Array {
  const env = parseEnvelope(envelope);
  if (!env.ok) throw new Error(env.error);
  const signatures = env.envelope.signatures.map((s) => {
    if (toHex(s.kid) !== kid(who)) return s;
    const signature = s.signature.slice();
    signature[5] ^= 0x01;
    return { kid: s.kid, signature };
  });
  return encodeEnvelope({ payload: env.envelope.payload, signatures });
}

/** An envelope listing the signatures of `envelope` and then a second copy of each (encodeEnvelope refuses repeats). */
function withRepeatedSignatures(envelope: Uint8Array): Uint8Array {
  const env = parseEnvelope(envelope);
  if (!env.ok) throw new Error(env.error);
  const sigs = [...env.envelope.signatures, ...env.envelope.signatures].map((s) => [SIGNER_PROTECTED, new Map([[HEADER_KID, s.kid]]), s.signature]);
  return encodeCbor(new CborTag(98, [new Uint8Array(0), new Map(), env.envelope.payload, sigs]));
}

describe('inspect --trust: a manifest (the release role of --trust, V6)', () => {
  it('a partially signed manifest: one release signature of two, one still needed, not accepted yet', async () => {
    const m = file('m-partial.cose', manifest([R1]));
    const c = ceremonyOf(await fwseal('inspect', m, '--trust', trust1, '--json'));
    expect(c.object).toBe('manifest');
    expect(c.thresholds).toHaveLength(1);
    expect(c.thresholds[0]).toMatchObject({ role: 'release', of: 'trust', bundleVersion: 1, step: 'V6', threshold: 2, valid: 1, stillNeeded: 1 });
    expect(keyStates(c.thresholds[0])).toEqual({ [kid(R1)]: 'signed', [kid(R2)]: 'missing', [kid(R3)]: 'missing' });
    expect(c.notCounted).toEqual([]);
    expect(c.complete).toBe(false);
    expect(c.acceptedByDevices).toMatchObject({ ok: false, code: CODES.THRESHOLD_NOT_MET });
  });

  it('a second release signature makes it complete, and the device verifier accepts it', async () => {
    const m = file('m-full.cose', manifest([R1, R3]));
    const c = ceremonyOf(await fwseal('inspect', m, '--trust', trust1, '--json'));
    expect(c.thresholds[0]).toMatchObject({ valid: 2, stillNeeded: 0 });
    expect(c.complete).toBe(true);
    expect(c.acceptedByDevices).toEqual({ ok: true, code: 0, error: 'OK' });
  });

  it('a root key signature on a manifest is outside-role (a root key of --trust); a key in no role is outside-role with no role', async () => {
    const m = file('m-outside.cose', manifest([R1, A, U]));
    const c = ceremonyOf(await fwseal('inspect', m, '--trust', trust1, '--json'));
    expect(c.thresholds[0]).toMatchObject({ valid: 1, stillNeeded: 1 });
    const byKid = Object.fromEntries(c.notCounted.map((n: { keyId: string }) => [n.keyId, n]));
    expect(byKid[kid(A)]).toMatchObject({ reason: 'outside-role', listedIn: { role: 'root', of: 'trust', bundleVersion: 1 } });
    expect(byKid[kid(U)]).toMatchObject({ reason: 'outside-role', listedIn: null });
    expect(c.notCounted).toHaveLength(2);
    expect(c.acceptedByDevices.code).toBe(CODES.THRESHOLD_NOT_MET);
  });

  it('an invalid signature by a release key: listed as invalid, the key stays missing', async () => {
    const m = file('m-invalid.cose', withBadSignature(manifest([R1, R2]), R2));
    const c = ceremonyOf(await fwseal('inspect', m, '--trust', trust1, '--json'));
    expect(c.notCounted).toEqual([{ keyId: kid(R2), reason: 'invalid' }]);
    expect(keyStates(c.thresholds[0])[kid(R2)]).toBe('missing');
    expect(c.thresholds[0].stillNeeded).toBe(1);
    expect(c.acceptedByDevices.code).toBe(CODES.THRESHOLD_NOT_MET);
  });

  it('a second signature by a key already counted is a duplicate and counts once', async () => {
    const m = file('m-repeated.cose', withRepeatedSignatures(manifest([R1])));
    const c = ceremonyOf(await fwseal('inspect', m, '--trust', trust1, '--json'));
    expect(c.notCounted).toEqual([{ keyId: kid(R1), reason: 'duplicate' }]);
    expect(c.thresholds[0]).toMatchObject({ valid: 1, stillNeeded: 1 });
    expect(c.acceptedByDevices.code).toBe(CODES.THRESHOLD_NOT_MET);
  });

  it('with --revocations, a revoked release key is revoked (its valid signature does not count)', async () => {
    const rl = file('rl-r2.cbor', makeRevocations({ version: 1, keyIds: [R2.keyId], signers: [A, B] }));
    const m = file('m-r1r2.cose', manifest([R1, R2]));
    const c = ceremonyOf(await fwseal('inspect', m, '--trust', trust1, '--revocations', rl, '--json'));
    expect(keyStates(c.thresholds[0])).toEqual({ [kid(R1)]: 'signed', [kid(R2)]: 'revoked', [kid(R3)]: 'missing' });
    expect(c.thresholds[0].stillNeeded).toBe(1);
    expect(c.acceptedByDevices.code).toBe(CODES.REVOKED_KEY);
  });

  it('names come from --pub files and every *.pub in --keys; the text output is a table of the same data', async () => {
    const m = file('m-names.cose', manifest([R1, U]));
    const c = ceremonyOf(await fwseal('inspect', m, '--trust', trust1, '--keys', keysDir, '--pub', uPub, '--json'));
    expect(c.thresholds[0].keys.map((k: { name: string }) => k.name)).toEqual(['R1-name', 'R2-name', 'R3-name']);
    expect(c.notCounted).toEqual([{ keyId: kid(U), name: 'outsider', reason: 'outside-role', listedIn: null }]);
    const text = await fwseal('inspect', m, '--trust', trust1, '--keys', keysDir, '--pub', uPub);
    expect(text.status, text.err).toBe(0);
    expect(text.out).toMatch(new RegExp(`^\\s+signed\\s+R1-name\\s+${kid(R1)}$`, 'm'));
    expect(text.out).toMatch(new RegExp(`^\\s+missing\\s+R2-name\\s+${kid(R2)}$`, 'm'));
    expect(text.out).toMatch(new RegExp(`^\\s+outside-role\\s+outsider\\s+${kid(U)}:`, 'm'));
    expect(text.out).toMatch(new RegExp(`THRESHOLD_NOT_MET \\(code ${CODES.THRESHOLD_NOT_MET}\\)`));
  });

  it('without --trust, inspect shows no ceremony', async () => {
    const r = await fwseal('inspect', file('m-plain.cose', manifest([R1])), '--json');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.out)).not.toHaveProperty('ceremony');
  });
});

describe('inspect --trust: a revocation list (the root role of --trust, R3)', () => {
  it('a root key the list itself revokes is revoked; one root signature of two is still missing', async () => {
    const rl = file('rl-self.cbor', makeRevocations({ version: 1, keyIds: [C.keyId], signers: [A, C] }));
    const c = ceremonyOf(await fwseal('inspect', rl, '--trust', trust1, '--json'));
    expect(c.thresholds[0]).toMatchObject({ role: 'root', of: 'trust', step: 'R3', threshold: 2, valid: 1, stillNeeded: 1 });
    expect(keyStates(c.thresholds[0])).toEqual({ [kid(A)]: 'signed', [kid(B)]: 'missing', [kid(C)]: 'revoked' });
    expect(c.acceptedByDevices.code).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
  });

  it('a release key signature on a revocation list is outside-role (a release key)', async () => {
    const rl = file('rl-release.cbor', makeRevocations({ version: 1, keyIds: [R3.keyId], signers: [A, B, R1] }));
    const c = ceremonyOf(await fwseal('inspect', rl, '--trust', trust1, '--json'));
    expect(c.notCounted).toEqual([{ keyId: kid(R1), reason: 'outside-role', listedIn: { role: 'release', of: 'trust', bundleVersion: 1 } }]);
    expect(c.complete).toBe(true);
    expect(c.acceptedByDevices.ok).toBe(true);
  });
});

describe('inspect --trust: a trust bundle (T4, and T6 for a rotation)', () => {
  const partial = v2([A, B, D]);

  it('a rotation v1 -> v2: the previous root threshold is met, the new one misses one signature', async () => {
    const t2 = file('t2-partial.cbor', partial);
    const c = ceremonyOf(await fwseal('inspect', t2, '--trust', trust1, '--json'));
    expect(c.thresholds.map((t: Record<string, unknown>) => [t.of, t.step])).toEqual([
      ['previous', 'T6'],
      ['self', 'T4'],
    ]);
    expect(c.thresholds[0]).toMatchObject({ role: 'root', bundleVersion: 1, threshold: 2, valid: 2, stillNeeded: 0 });
    expect(keyStates(c.thresholds[0])).toEqual({ [kid(A)]: 'signed', [kid(B)]: 'signed', [kid(C)]: 'missing' });
    expect(c.thresholds[1]).toMatchObject({ role: 'root', bundleVersion: 2, threshold: 2, valid: 1, stillNeeded: 1 });
    expect(keyStates(c.thresholds[1])).toEqual({ [kid(D)]: 'signed', [kid(E)]: 'missing' });
    expect(c.notCounted).toEqual([]);
    expect(c.complete).toBe(false);
    expect(c.acceptedByDevices.code).toBe(CODES.TRUST_THRESHOLD_NOT_MET);
    // The same through --previous (--trust then names the bundle itself).
    const same = ceremonyOf(await fwseal('inspect', t2, '--trust', t2, '--previous', trust1, '--json'));
    expect(same).toEqual(c);
  });

  it('complete after the last signature, and accepted by the device verifier', async () => {
    const t2 = file('t2-full.cbor', signEnvelope(partial, E).envelope);
    const c = ceremonyOf(await fwseal('inspect', t2, '--previous', trust1, '--keys', keysDir, '--json'));
    expect(c.thresholds.map((t: Record<string, unknown>) => t.stillNeeded)).toEqual([0, 0]);
    expect(c.thresholds[1].keys.map((k: { name: string; state: string }) => [k.name, k.state])).toEqual([
      ['D-name', 'signed'],
      ['E-name', 'signed'],
    ]);
    expect(c.complete).toBe(true);
    expect(c.acceptedByDevices).toEqual({ ok: true, code: 0, error: 'OK' });
  });

  it('a version-1 bundle counts only its own root role; a release key signing it is outside-role', async () => {
    const t1 = file('t1-partial.cbor', makeTrust({ root: [A, B, C], rootThreshold: 2, ...RELEASE, signers: [A, R1] }));
    const c = ceremonyOf(await fwseal('inspect', t1, '--trust', t1, '--json'));
    expect(c.thresholds).toHaveLength(1);
    expect(c.thresholds[0]).toMatchObject({ of: 'self', step: 'T4', valid: 1, stillNeeded: 1 });
    expect(c.notCounted).toEqual([{ keyId: kid(R1), reason: 'outside-role', listedIn: { role: 'release', of: 'self', bundleVersion: 1 } }]);
    expect(c.acceptedByDevices.code).toBe(CODES.TRUST_THRESHOLD_NOT_MET);
  });

  it('with --revocations (the stored list), a revoked previous root key is revoked for T6', async () => {
    const rl = file('rl-b.cbor', makeRevocations({ version: 1, keyIds: [B.keyId], signers: [A, C] }));
    const t2 = file('t2-abde.cbor', v2([A, B, D, E]));
    const c = ceremonyOf(await fwseal('inspect', t2, '--trust', trust1, '--revocations', rl, '--json'));
    expect(c.thresholds[0]).toMatchObject({ step: 'T6', valid: 1, stillNeeded: 1 });
    expect(keyStates(c.thresholds[0])[kid(B)]).toBe('revoked');
    expect(c.thresholds[1]).toMatchObject({ step: 'T7', stillNeeded: 0 });
    expect(c.acceptedByDevices.code).toBe(CODES.ROTATION_NOT_AUTHORIZED);
  });
});

describe('inspect --trust: usage errors (exit 2, nothing on stdout)', () => {
  const t2 = file('t2-usage.cbor', v2([A, B, D]));
  const m = file('m-usage.cose', manifest([R1]));
  const t3 = file('t3-usage.cbor', makeTrust({ root: [F], rootThreshold: 1, ...RELEASE, signers: [F], version: 3 }));
  it.each([
    // --pub and --keys alone name the keys the file lists (issue 17); the other ceremony flags still want --trust.
    ['--revocations without --trust', ['inspect', m, '--revocations', trust1]],
    ['a rotation without the bundle it replaces', ['inspect', t2, '--trust', t2]],
    ['a rotation with --trust of another version', ['inspect', t3, '--trust', trust1]],
    ['--previous on a manifest', ['inspect', m, '--trust', trust1, '--previous', trust1]],
    ['--trust on a key file', ['inspect', uPub, '--trust', trust1]],
  ])('%s', async (_label, args) => {
    const r = await fwseal(...args);
    expect(r.status, r.err).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain(`(code ${CODES.USAGE})`);
  });
});

describe('trust verify: a rotation chain checked as a device checks it', () => {
  const full2 = file('c-v2.cbor', v2([A, B, D, E]));
  /** Version 3: root D, E, G (2 of 3), signed by D and E (both the current and its own threshold). */
  const full3 = file('c-v3.cbor', makeTrust({ root: [D, E, G], rootThreshold: 2, ...RELEASE, signers: [D, E], version: 3 }));
  const json = (r: CliRun) => JSON.parse(r.out) as Record<string, any>;

  it('a good 3-step chain is accepted (exit 0), one line per bundle with the key ids added and removed', async () => {
    const r = await fwseal('trust', 'verify', '--previous', trust1, full2, full3, '--json');
    expect(r.status, r.out + r.err).toBe(0);
    const j = json(r);
    expect(j).toMatchObject({ ok: true, code: 0, trustVersion: 3 });
    expect(j.steps.map((s: Record<string, unknown>) => [s.version, s.code])).toEqual([
      [1, 0],
      [2, 0],
      [3, 0],
    ]);
    expect(j.steps[1].added).toEqual({ root: [kid(D), kid(E)], release: [] });
    expect(j.steps[1].removed).toEqual({ root: [kid(A), kid(B), kid(C)], release: [] });
    expect(j.steps[2].added).toEqual({ root: [kid(G)], release: [] });
    const text = await fwseal('trust', 'verify', '--previous', trust1, full2, full3);
    expect(text.status).toBe(0);
    expect(text.out.trim().split('\n')).toHaveLength(4);
  });

  it('a chain that skips a version is refused with TRUST_VERSION_SKIP (exit 1)', async () => {
    const r = await fwseal('trust', 'verify', '--previous', trust1, full3);
    expect(r.status).toBe(1);
    expect(r.out).toContain(`TRUST_VERSION_SKIP (code ${CODES.TRUST_VERSION_SKIP})`);
  });

  it('a chain that goes backwards, or repeats a version with another bundle, is refused with TRUST_ROLLBACK', async () => {
    const back = json(await fwseal('trust', 'verify', '--previous', trust1, full2, trust1, '--json'));
    expect(back).toMatchObject({ ok: false, code: CODES.TRUST_ROLLBACK, refused: trust1 });
    const other2 = file('c-v2-other.cbor', makeTrust({ root: [D, F], rootThreshold: 2, ...RELEASE, signers: [A, B, D, F] }));
    const r = await fwseal('trust', 'verify', '--previous', trust1, full2, other2, '--json');
    expect(r.status).toBe(1);
    expect(json(r)).toMatchObject({ code: CODES.TRUST_ROLLBACK, refused: other2 });
    expect(json(r).steps).toHaveLength(3);
  });

  it('the identical bundle again is accepted as a device accepts it, marked identical (nothing changes)', async () => {
    const r = await fwseal('trust', 'verify', '--previous', trust1, full2, full2, '--json');
    expect(r.status).toBe(0);
    expect(json(r).steps.map((s: { identical?: boolean }) => s.identical ?? false)).toEqual([false, false, true]);
  });

  it('a step lacking the previous root threshold is refused with ROTATION_NOT_AUTHORIZED and the chain stops there', async () => {
    const weak2 = file('c-v2-weak.cbor', v2([A, D, E]));
    const r = await fwseal('trust', 'verify', '--previous', trust1, weak2, full3, '--json');
    expect(r.status).toBe(1);
    expect(json(r)).toMatchObject({ code: CODES.ROTATION_NOT_AUTHORIZED, refused: weak2 });
    expect(json(r).steps.map((s: { code: number }) => s.code)).toEqual([0, CODES.ROTATION_NOT_AUTHORIZED]);
  });

  it('a step signed by a root key the stored list revokes is refused (--revocations); without the list it passes', async () => {
    const rl = file('c-rl-b.cbor', makeRevocations({ version: 1, keyIds: [B.keyId], signers: [A, C] }));
    const r = await fwseal('trust', 'verify', '--previous', trust1, full2, '--revocations', rl);
    expect(r.status).toBe(1);
    expect(r.out).toContain(`ROTATION_NOT_AUTHORIZED (code ${CODES.ROTATION_NOT_AUTHORIZED})`);
    expect((await fwseal('trust', 'verify', '--previous', trust1, full2)).status).toBe(0);
  });

  it('the stored list must still verify under each new bundle, as on a device (SPEC.md §11.3)', async () => {
    const oldRoots = file('c-rl-old.cbor', makeRevocations({ version: 1, keyIds: [R3.keyId], signers: [A, B] }));
    const r = await fwseal('trust', 'verify', '--previous', trust1, full2, '--revocations', oldRoots, '--json');
    expect(json(r)).toMatchObject({ code: CODES.REVOCATION_THRESHOLD_NOT_MET, refused: full2 });
    const bothRoots = file('c-rl-both.cbor', makeRevocations({ version: 1, keyIds: [R3.keyId], signers: [A, B, D, E] }));
    expect((await fwseal('trust', 'verify', '--previous', trust1, full2, '--revocations', bothRoots)).status).toBe(0);
  });

  it('usage: no bundle after --previous, or a manifest in the chain', async () => {
    const none = await fwseal('trust', 'verify', '--previous', trust1);
    expect(none.status).toBe(2);
    expect(none.err).toContain(`(code ${CODES.USAGE})`);
    const wrong = await fwseal('trust', 'verify', '--previous', trust1, file('c-m.cose', manifest([R1])));
    expect(wrong.status).toBe(1);
    expect(wrong.out).toBe('');
    expect(wrong.err).toContain(`WRONG_KIND (code ${CODES.WRONG_KIND})`);
  });
});
