/**
 * Role mistakes (SPEC.md §14 H2–H4, H9): `fwseal sign --trust` refuses a key outside the role that
 * signs the object (KEY_NOT_IN_TRUST, exit 2, nothing written), warns without --trust, and
 * `fwseal verify` names every signature it did not count and why, while the verdict stays the
 * device verifier's. In-process CLI runs; codes and reason tokens asserted, never message text.
 */
import { copyFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTrust, verifyManifest, verifyTrustUpdate } from '../device/index.js';
import { fromHex, toHex } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { encodeEnvelope, parseEnvelope } from '../shared/cose.js';
import { type CliWorld, expectOk, expectRejected, expectUsage, makeCliWorld } from './support/cli-world.js';

let w: CliWorld;
const ROOT_ABC = ['--root', 'A.pub', '--root', 'B.pub', '--root', 'C.pub', '--root-threshold', '2'];
const RELEASE_R123 = ['--release', 'R1.pub', '--release', 'R2.pub', '--release', 'R3.pub', '--release-threshold', '2'];
const json = (out: string) => JSON.parse(out) as Record<string, any>;

function signerKids(name: string): string[] {
  const env = parseEnvelope(w.bytes(name));
  if (!env.ok) throw new Error(env.error);
  return env.envelope.signatures.map((s) => toHex(s.kid));
}

/** Copy the unsigned manifest to `name` and sign it with each key (no --trust: whatever the role). */
async function manifestSignedBy(name: string, signers: string[]): Promise<void> {
  copyFileSync(w.path('m.cose'), w.path(name));
  for (const k of signers) expectOk(await w.run('sign', name, '--key', `${k}.key`));
}

beforeAll(async () => {
  w = await makeCliWorld(['A', 'B', 'C', 'R1', 'R2', 'R3', 'D', 'U'], {
    trust: [...ROOT_ABC, ...RELEASE_R123, '--sign', 'A.key', '--sign', 'B.key'],
    image: true,
  });
  expectOk(await w.run('revoke', '--trust', 'trust.cbor', '--version', '1', '--key', 'R2.pub', '--sign', 'A.key', '--out', 'rl-partial.cbor'));
  expectOk(await w.run('trust', 'init', ...ROOT_ABC, ...RELEASE_R123, '--sign', 'A.key', '--out', 't1-partial.cbor'));
  expectOk(
    await w.run(
      'trust',
      'rotate',
      '--previous',
      'trust.cbor',
      '--root',
      'D.pub',
      '--root-threshold',
      '1',
      ...RELEASE_R123,
      '--sign',
      'D.key',
      '--out',
      't2.cbor',
    ),
  );
});

afterAll(() => w?.close());

describe('sign --trust refuses a key outside the signing role (KEY_NOT_IN_TRUST, exit 2, nothing written)', () => {
  it.each([
    ['a root key on a manifest', 'm.cose', 'A'],
    ['a key in no role on a manifest', 'm.cose', 'U'],
    ['a release key on a revocation list', 'rl-partial.cbor', 'R1'],
    ['a key in no role on a revocation list', 'rl-partial.cbor', 'U'],
    ['a release key on a trust bundle', 't1-partial.cbor', 'R1'],
    ['a release key on a rotation (--trust = the bundle it replaces)', 't2.cbor', 'R1'],
  ])('%s', async (_label, file, key) => {
    const before = w.bytes(file);
    expectUsage(await w.run('sign', file, '--key', `${key}.key`, '--trust', 'trust.cbor'), 'KEY_NOT_IN_TRUST');
    expect(w.bytes(file)).toEqual(before);
  });

  it('a release key on a version-1 trust bundle is refused even without --trust (nothing else can count it)', async () => {
    const before = w.bytes('t1-partial.cbor');
    expectUsage(await w.run('sign', 't1-partial.cbor', '--key', 'R1.key'), 'KEY_NOT_IN_TRUST');
    expect(w.bytes('t1-partial.cbor')).toEqual(before);
  });

  it('the refusal comes before the passphrase is asked for', async () => {
    const saved = process.env.FWSEAL_PASSPHRASE;
    process.env.FWSEAL_PASSPHRASE = '';
    try {
      expectUsage(await w.run('sign', 'm.cose', '--key', 'A.key', '--trust', 'trust.cbor'), 'KEY_NOT_IN_TRUST');
    } finally {
      process.env.FWSEAL_PASSPHRASE = saved;
    }
  });

  it('the right roles sign without a warning: release on a manifest, root on a list, root on a bundle', async () => {
    copyFileSync(w.path('m.cose'), w.path('ok.cose'));
    copyFileSync(w.path('rl-partial.cbor'), w.path('ok-rl.cbor'));
    copyFileSync(w.path('t1-partial.cbor'), w.path('ok-t1.cbor'));
    for (const [file, key] of [
      ['ok.cose', 'R1'],
      ['ok-rl.cbor', 'B'],
      ['ok-t1.cbor', 'C'],
    ]) {
      const r = await w.run('sign', file, '--key', `${key}.key`, '--trust', 'trust.cbor', '--json');
      expectOk(r);
      expect(json(r.out)).toMatchObject({ added: true, roleChecked: true, warnings: [] });
      expect(r.err).toBe('');
    }
  });
});

describe('sign without --trust warns and still signs', () => {
  it('a root key on a manifest: a warning on stderr, roleChecked false, the signature added', async () => {
    copyFileSync(w.path('m.cose'), w.path('warn.cose'));
    const r = await w.run('sign', 'warn.cose', '--key', 'A.key', '--json');
    expectOk(r);
    expect(json(r.out)).toMatchObject({ added: true, roleChecked: false });
    expect(json(r.out).warnings.length).toBeGreaterThan(0);
    expect(r.err).toMatch(/^warning: /);
    expect(signerKids('warn.cose')).toEqual([w.kids.A]);
  });

  it('any key on a revocation list: a warning', async () => {
    copyFileSync(w.path('rl-partial.cbor'), w.path('warn-rl.cbor'));
    const r = await w.run('sign', 'warn-rl.cbor', '--key', 'B.key', '--json');
    expectOk(r);
    expect(json(r.out)).toMatchObject({ added: true, roleChecked: false });
    expect(r.err).toMatch(/^warning: /);
  });

  it('a root key of the bundle itself needs no --trust: no warning', async () => {
    copyFileSync(w.path('t2.cbor'), w.path('t2-own.cbor'));
    const r = await w.run('sign', 't2-own.cbor', '--key', 'D.key', '--json');
    expectOk(r);
    expect(json(r.out)).toMatchObject({ added: false, roleChecked: true });
  });
});

describe('sign of a rotation: --trust is the bundle it replaces', () => {
  it('a root key of the replaced bundle signs; two of them complete the rotation for devices', async () => {
    copyFileSync(w.path('t2.cbor'), w.path('t2-rot.cbor'));
    for (const k of ['A', 'C']) {
      const r = await w.run('sign', 't2-rot.cbor', '--key', `${k}.key`, '--trust', 'trust.cbor', '--json');
      expectOk(r);
      expect(json(r.out)).toMatchObject({ added: true, roleChecked: true });
      expect(r.err).toBe('');
    }
    const current = loadTrust(w.bytes('trust.cbor'));
    if (!current.ok) throw new Error(current.error);
    expect(verifyTrustUpdate(w.bytes('t2-rot.cbor'), current.trust).ok).toBe(true);
  });

  it('without --trust a root key of the replaced bundle is a warning (signed, roleChecked false)', async () => {
    copyFileSync(w.path('t2.cbor'), w.path('t2-warn.cbor'));
    const r = await w.run('sign', 't2-warn.cbor', '--key', 'A.key', '--json');
    expectOk(r);
    expect(json(r.out)).toMatchObject({ added: true, roleChecked: false });
    expect(r.err).toMatch(/^warning: /);
  });

  it('--trust that is neither the replaced bundle nor the bundle itself is USAGE', async () => {
    // Another version-2 bundle (other roots) cannot be what t2 replaces.
    expectOk(
      await w.run(
        'trust',
        'rotate',
        '--previous',
        'trust.cbor',
        '--root',
        'U.pub',
        '--root-threshold',
        '1',
        ...RELEASE_R123,
        '--sign',
        'U.key',
        '--sign',
        'A.key',
        '--sign',
        'B.key',
        '--out',
        't2-other.cbor',
      ),
    );
    const before = w.bytes('t2.cbor');
    expectUsage(await w.run('sign', 't2.cbor', '--key', 'A.key', '--trust', 't2-other.cbor'));
    expect(w.bytes('t2.cbor')).toEqual(before);
  });

  it('--trust = the bundle itself: only its own root keys', async () => {
    copyFileSync(w.path('t2.cbor'), w.path('t2-self.cbor'));
    expectUsage(await w.run('sign', 't2-self.cbor', '--key', 'A.key', '--trust', 't2.cbor'), 'KEY_NOT_IN_TRUST');
  });

  it('a --trust that is itself not signed by its root threshold is a rejection (exit 1)', async () => {
    expectRejected(await w.run('sign', 'm.cose', '--key', 'R1.key', '--trust', 't1-partial.cbor'), 'TRUST_THRESHOLD_NOT_MET');
  });
});

describe('verify names the signatures it did not count, and why (H9)', () => {
  beforeAll(async () => {
    // R1, R2 valid release; A root (wrong role); U in no role; R3 with a bogus signature.
    await manifestSignedBy('mixed.cose', ['R1', 'R2', 'A', 'U']);
    const env = parseEnvelope(w.bytes('mixed.cose'));
    if (!env.ok) throw new Error(env.error);
    w.write(
      'mixed.cose',
      encodeEnvelope({
        payload: env.envelope.payload,
        signatures: [...env.envelope.signatures, { kid: fromHex(w.kids.R3) as Uint8Array, signature: new Uint8Array(64).fill(9) }],
      }),
    );
    copyFileSync(w.path('rl-partial.cbor'), w.path('rl.cbor'));
    expectOk(await w.run('sign', 'rl.cbor', '--key', 'B.key', '--trust', 'trust.cbor'));
  });

  const reasons = (out: Record<string, any>) =>
    Object.fromEntries((out.ignoredSignatures as { keyId: string; reason: string }[]).map((g) => [g.keyId, g.reason]));

  it('accepted: unknown kid, wrong role and invalid are named in --json and in the text', async () => {
    const r = await w.run('verify', 'mixed.cose', '--trust', 'trust.cbor', '--json');
    expectOk(r);
    const out = json(r.out);
    expect(out).toMatchObject({ ok: true, code: 0 });
    expect(reasons(out)).toEqual({ [w.kids.A]: 'wrong-role', [w.kids.U]: 'unknown-kid', [w.kids.R3]: 'invalid' });
    const text = await w.run('verify', 'mixed.cose', '--trust', 'trust.cbor');
    expectOk(text);
    for (const reason of ['wrong-role', 'unknown-kid', 'invalid']) expect(text.out).toContain(`(${reason})`);
  });

  it("with R2 revoked: REVOKED_KEY, and R2 is named as revoked; the verdict is the device verifier's", async () => {
    const r = await w.run('verify', 'mixed.cose', '--trust', 'trust.cbor', '--revocations', 'rl.cbor', '--json');
    expect(r.status).toBe(1);
    const out = json(r.out);
    expect(out).toMatchObject({ ok: false, code: CODES.REVOKED_KEY, error: 'REVOKED_KEY' });
    expect(reasons(out)).toEqual({ [w.kids.A]: 'wrong-role', [w.kids.U]: 'unknown-kid', [w.kids.R3]: 'invalid', [w.kids.R2]: 'revoked' });
    const device = verifyManifest(w.bytes('mixed.cose'), w.bytes('trust.cbor'), { deviceClass: 'acme-gw', counter: 0, revocations: w.bytes('rl.cbor') });
    expect(device.code).toBe(out.code);
    expectRejected(await w.run('verify', 'mixed.cose', '--trust', 'trust.cbor', '--revocations', 'rl.cbor'), 'REVOKED_KEY');
  });

  it('a manifest whose every signature counts names none', async () => {
    await manifestSignedBy('clean.cose', ['R1', 'R3']);
    const out = json((await w.run('verify', 'clean.cose', '--trust', 'trust.cbor', '--json')).out);
    expect(out).toMatchObject({ ok: true, ignoredSignatures: [] });
  });

  it('sign --trust on a manifest notes signatures already there that no device counts', async () => {
    copyFileSync(w.path('mixed.cose'), w.path('mixed-note.cose'));
    const r = await w.run('sign', 'mixed-note.cose', '--key', 'R1.key', '--trust', 'trust.cbor', '--json');
    expectOk(r);
    expect(json(r.out).warnings).toHaveLength(2); // A (a root key) and U (no role); R3 is a release key
  });
});
