/**
 * Issue 14, item 7: a full signing ceremony through the CLI against the real components, every
 * step recorded in one audit log (SPEC.md §15):
 *   - two root keys generated inside a SoftHSM2 token, a third on an "air-gapped" copy (a file key
 *     in another folder) that signs detached;
 *   - two release keys held by an external signer (openssl), whose public halves arrive as PEM
 *     and are imported with `key import`;
 *   - attach, inspect (shows complete), verify (accepts), audit verify (the chain holds).
 */
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finalizePkcs11Modules } from '../host/signers/pkcs11-session.js';
import { type CliRun, runCli } from './support/cli-run.js';
import { type CliWorld, expectOk, makeCliWorld } from './support/cli-world.js';
import { makeSoftHsm, type SoftHsm } from './support/softhsm.js';

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
let w: CliWorld;
let hsm: SoftHsm;
const AUDIT = 'ceremony-audit.log';
/** fwseal with the ceremony's audit log. */
const fwseal = (...args: string[]): Promise<CliRun> => runCli(['--audit', AUDIT, ...args]);
const token = (object: string) => `pkcs11:token=root-hsm;object=${object}`;
const json = (r: CliRun) => {
  expectOk(r);
  return JSON.parse(r.out);
};

/** A release key that only the signing service (openssl) holds; fwseal gets its public PEM. */
function serviceKey(name: string): void {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, randomBytes(32)]), format: 'der', type: 'pkcs8' });
  mkdirSync(w.path('service'), { recursive: true });
  w.write(`service/${name}.pem`, key.export({ format: 'pem', type: 'pkcs8' }) as string);
  chmodSync(w.path(`service/${name}.pem`), 0o600);
  w.write(`${name}-pub.pem`, createPublicKey(key).export({ format: 'pem', type: 'spki' }) as string);
}

beforeAll(async () => {
  w = await makeCliWorld([]);
  hsm = makeSoftHsm([{ label: 'root-hsm', pin: '2468', soPin: '13579' }]);
  process.env.FWSEAL_PKCS11_PIN = '2468';
  process.env.FWSEAL_PKCS11_MODULE = hsm.module;
  process.env.FWSEAL_ACTOR = 'release-ceremony';
  serviceKey('REL1');
  serviceKey('REL2');
  w.write('kms-sign', `#!/bin/sh\nt=$(mktemp) || exit 1; trap 'rm -f "$t"' EXIT; cat > "$t"; openssl pkeyutl -sign -inkey "service/$1.pem" -rawin -in "$t"\n`);
  chmodSync(w.path('kms-sign'), 0o755);
  mkdirSync(w.path('airgap'));
});
afterAll(() => {
  delete process.env.FWSEAL_PKCS11_PIN;
  delete process.env.FWSEAL_PKCS11_MODULE;
  delete process.env.FWSEAL_ACTOR;
  hsm.close();
  w.close();
});

describe('a release-signing ceremony', () => {
  it('creates the keys: two in the token, one air-gapped, two release keys imported from the signing service', async () => {
    expectOk(await fwseal('keygen', 'ROOT1', '--pkcs11', token('ROOT1')));
    expectOk(await fwseal('keygen', 'ROOT2', '--pkcs11', token('ROOT2')));
    expectOk(await fwseal('keygen', 'ROOT3', '--dir', 'airgap'));
    expectOk(await fwseal('key', 'import', 'REL1-pub.pem', '--name', 'REL1'));
    expectOk(await fwseal('key', 'import', 'REL2-pub.pem', '--name', 'REL2'));
    // Only public halves here: the token and the service keep the private keys.
    expect(() => readFileSync(w.path('ROOT1.key'))).toThrow();
    expect(() => readFileSync(w.path('REL1.key'))).toThrow();
  });

  it('signs the root of trust with the token, then detached on the air-gapped copy, and attaches', async () => {
    const roles = ['--root', 'ROOT1.pub', '--root', 'ROOT2.pub', '--root', 'airgap/ROOT3.pub', '--root-threshold', '3'];
    const release = ['--release', 'REL1.pub', '--release', 'REL2.pub', '--release-threshold', '2'];
    expectOk(await fwseal('trust', 'init', ...roles, ...release, '--sign', token('ROOT1'), '--sign', token('ROOT2'), '--out', 'trust.cbor'));
    const before = json(await fwseal('inspect', 'trust.cbor', '--trust', 'trust.cbor', '--keys', '.', '--pub', 'airgap/ROOT3.pub', '--json')).ceremony;
    expect(before.complete).toBe(false);
    expect(before.thresholds[0].stillNeeded).toBe(1);
    // The air-gapped machine gets a copy of the file and gives back only a signature.
    w.write('airgap/trust.cbor', w.bytes('trust.cbor'));
    expectOk(await fwseal('sign', 'airgap/trust.cbor', '--key', 'airgap/ROOT3.key', '--detached', 'airgap/ROOT3.sig'));
    expectOk(await fwseal('attach', 'trust.cbor', 'airgap/ROOT3.sig'));
    const after = json(await fwseal('inspect', 'trust.cbor', '--trust', 'trust.cbor', '--json')).ceremony;
    expect(after).toMatchObject({ complete: true, acceptedByDevices: { ok: true } });
    expectOk(await fwseal('verify', 'trust.cbor'));
  });

  it('signs a release through the external signer and verifies it as a device would', async () => {
    w.write('image.bin', randomBytes(40_000));
    expectOk(await fwseal('pack', 'image.bin', '--device-class', 'acme-gw', '--version', '2.0.0', '--counter', '5', '--out', 'M.cose'));
    expectOk(await fwseal('sign', 'M.cose', '--key', 'exec:./kms-sign REL1', '--pub', 'REL1.pub', '--trust', 'trust.cbor'));
    const half = json(await fwseal('inspect', 'M.cose', '--trust', 'trust.cbor', '--json')).ceremony;
    expect(half).toMatchObject({ complete: false, acceptedByDevices: { ok: false, error: 'THRESHOLD_NOT_MET' } });
    expectOk(await fwseal('sign', 'M.cose', '--key', 'exec:./kms-sign REL2', '--pub', 'REL2.pub', '--trust', 'trust.cbor'));
    const done = json(await fwseal('inspect', 'M.cose', '--trust', 'trust.cbor', '--json')).ceremony;
    expect(done).toMatchObject({ complete: true, acceptedByDevices: { ok: true } });
    expectOk(await fwseal('verify', 'M.cose', '--trust', 'trust.cbor', '--image', 'image.bin'));
  });

  it('signs with a token key through sign --key, and refuses a wrong PIN without writing or printing it', async () => {
    expectOk(await fwseal('revoke', '--trust', 'trust.cbor', '--version', '1', '--kid', '00'.repeat(16), '--sign', token('ROOT1'), '--out', 'RL.cbor'));
    const before = w.bytes('RL.cbor');
    finalizePkcs11Modules(); // a new session: the next signature needs the PIN again
    process.env.FWSEAL_PKCS11_PIN = '9999';
    try {
      const r = await fwseal('sign', 'RL.cbor', '--key', `${token('ROOT2')}?module-path=${hsm.module}`, '--trust', 'trust.cbor');
      expect(r.status).toBe(2);
      expect(r.err).toMatch(/PIN_INCORRECT \(code 814\)/);
      expect(r.err).not.toContain('9999');
    } finally {
      process.env.FWSEAL_PKCS11_PIN = '2468';
    }
    expect(w.bytes('RL.cbor')).toEqual(before);
    expectOk(await fwseal('sign', 'RL.cbor', '--key', token('ROOT2'), '--trust', 'trust.cbor'));
    expectOk(await fwseal('sign', 'RL.cbor', '--key', 'airgap/ROOT3.key', '--trust', 'trust.cbor'));
    expectOk(await fwseal('verify', 'RL.cbor', '--trust', 'trust.cbor'));
  });

  it('leaves an audit log that verifies and names every step', async () => {
    const v = json(await runCli(['audit', 'verify', AUDIT, '--json']));
    expect(v.valid).toBe(true);
    const lines = readFileSync(join(w.dir, AUDIT), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.action)).toEqual([
      'keygen',
      'keygen',
      'keygen',
      'key import',
      'key import',
      'trust init',
      'trust init',
      'sign --detached',
      'attach',
      'sign',
      'sign',
      'revoke',
      'sign',
      'sign',
      'sign',
    ]);
    // The refused attempt is in the log too, with its code.
    expect(lines.filter((l) => l.action === 'sign').map((l) => l.result)).toEqual(['ok', 'ok', 'PIN_INCORRECT', 'ok', 'ok']);
    expect(new Set(lines.map((l) => l.actor))).toEqual(new Set(['release-ceremony']));
    expect(lines.filter((l) => l.action === 'trust init').every((l) => l.result === 'incomplete')).toBe(true);
    expect(lines.find((l) => l.action === 'revoke')).toMatchObject({ kind: 'revocation-list', result: 'incomplete' });
    // With the head written down, a removed last line is found.
    const head = v.head as string;
    w.write(AUDIT, `${readFileSync(join(w.dir, AUDIT), 'utf8').trim().split('\n').slice(0, -1).join('\n')}\n`);
    const cut = await runCli(['audit', 'verify', AUDIT, '--head', head]);
    expect(cut.status).toBe(1);
    expect(cut.out + cut.err).toMatch(/AUDIT_LOG_INVALID \(code 820\)/);
  });
});
