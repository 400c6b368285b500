/**
 * External signers (SPEC.md §15.3): `--key "exec:CMD ARGS"` with `--pub`, around a real
 * `openssl pkeyutl` holding the key. A signer that fails, hangs, prints something else or signs
 * with another key is refused with its code and nothing is written.
 */
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { chmodSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePublicKeyFile } from '../host/keys.js';
import { decodeSignerOutput, parseExecCommand, signerTimeoutMs } from '../host/signers/exec.js';
import { toHex } from '../shared/bytes.js';
import { parseEnvelope } from '../shared/cose.js';
import { type CliWorld, expectOk, expectUsage, makeCliWorld } from './support/cli-world.js';

let w: CliWorld;
let kmsKid = '';
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** An Ed25519 key as openssl's PEM file, and its fwseal .pub: the key fwseal never sees. */
function opensslKey(name: string): string {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, randomBytes(32)]), format: 'der', type: 'pkcs8' });
  w.write(`${name}.pem`, key.export({ format: 'pem', type: 'pkcs8' }) as string);
  chmodSync(w.path(`${name}.pem`), 0o600);
  const x = createPublicKey(key).export({ format: 'jwk' }).x as string;
  return toHex(writePublicKeyFile(w.path(`${name}.pub`), name, new Uint8Array(Buffer.from(x, 'base64url'))).keyId);
}

function script(name: string, body: string): string {
  w.write(name, `#!/bin/sh\n${body}\n`);
  chmodSync(w.path(name), 0o755);
  return w.path(name);
}

const signatures = () => {
  const e = parseEnvelope(w.bytes('m.cose'));
  if (!e.ok) throw new Error(e.error);
  return e.envelope.signatures.map((s) => toHex(s.kid));
};

beforeAll(async () => {
  w = await makeCliWorld(['A', 'R2']);
  kmsKid = opensslKey('KMS1');
  opensslKey('OTHER');
  opensslKey('ROOTB');
  // openssl's one-shot Ed25519 signing needs a file of known size, so the wrapper spools stdin.
  const spool = 't=$(mktemp) || exit 1; trap \'rm -f "$t"\' EXIT; cat > "$t"';
  script('openssl-sign', `${spool}; openssl pkeyutl -sign -inkey "$1" -rawin -in "$t"`);
  script('openssl-sign-b64', `${spool}; openssl pkeyutl -sign -inkey "$1" -rawin -in "$t" | base64 -w0`);
  script('fail', 'echo "KMS: access denied" >&2; exit 3');
  script('hang', 'sleep 30');
  script('chatty', 'echo "here is your signature"');
  script('kid-echo', 'cat >/dev/null; printf %s "$FWSEAL_KEY_ID" >&2; exit 4');
  expectOk(
    await w.run(
      'trust',
      'init',
      ...['--root', 'A.pub', '--root', 'ROOTB.pub', '--root-threshold', '2', '--release', 'KMS1.pub', '--release', 'R2.pub', '--release-threshold', '2'],
      ...['--sign', 'A.key', '--sign', 'exec:./openssl-sign ROOTB.pem', '--sign-pub', 'ROOTB.pub', '--out', 'trust.cbor'],
    ),
  );
});
afterAll(() => w.close());

describe('exec: command line and output forms', () => {
  it('splits words and quotes without a shell', () => {
    expect(parseExecCommand(`./kms sign --key 'a b' "c \\"d\\"" e\\ f`)).toEqual(['./kms', 'sign', '--key', 'a b', 'c "d"', 'e f']);
    expect(() => parseExecCommand(`./kms 'open`)).toThrow();
    expect(() => parseExecCommand('   ')).toThrow();
  });
  it('reads raw, hex and base64 signatures and nothing else', () => {
    const sig = new Uint8Array(64).map((_, i) => i);
    expect(decodeSignerOutput(sig)).toEqual(sig);
    expect(decodeSignerOutput(Buffer.from(`${toHex(sig)}\n`))).toEqual(sig);
    expect(decodeSignerOutput(Buffer.from(`${Buffer.from(sig).toString('base64')}\n`))).toEqual(sig);
    expect(decodeSignerOutput(Buffer.from(Buffer.from(sig).toString('base64url')))).toEqual(sig);
    expect(decodeSignerOutput(new Uint8Array(65))).toBeNull();
    expect(decodeSignerOutput(Buffer.from(toHex(sig).slice(2)))).toBeNull();
  });
  it('takes its time limit from FWSEAL_SIGNER_TIMEOUT, bounded', () => {
    expect(signerTimeoutMs({})).toBe(30000);
    expect(signerTimeoutMs({ FWSEAL_SIGNER_TIMEOUT: '2' })).toBe(2000);
    for (const bad of ['0', '601', '1.5', 'x']) expect(() => signerTimeoutMs({ FWSEAL_SIGNER_TIMEOUT: bad })).toThrow();
  });
});

describe('sign --key exec:', () => {
  it('trust init signed through an external root signer is complete', async () => {
    expectOk(await w.run('verify', 'trust.cbor'));
  });
  it('signs a manifest with openssl as the signing service (raw and base64 output)', async () => {
    w.write('image.bin', new Uint8Array(5000).fill(7));
    expectOk(
      await w.run('pack', 'image.bin', '--device-class', 'acme-gw', '--version', '1.0.0', '--counter', '1', '--created', '1764000000', '--out', 'm.cose'),
    );
    expectOk(await w.run('sign', 'm.cose', '--key', 'exec:./openssl-sign KMS1.pem', '--pub', 'KMS1.pub', '--trust', 'trust.cbor'));
    expect(signatures()).toEqual([kmsKid]);
    expectOk(await w.run('sign', 'm.cose', '--key', 'R2.key', '--trust', 'trust.cbor'));
    expectOk(await w.run('verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'image.bin'));
    w.write('m-b64.cose', w.bytes('m.cose'));
    expectOk(await w.run('sign', 'm-b64.cose', '--key', 'exec:./openssl-sign-b64 KMS1.pem', '--pub', 'KMS1.pub', '--detached', 'kms.sig'));
  });
  it('refuses a failing, hanging, chatty or lying signer, and writes nothing', async () => {
    w.write('m2.cose', w.bytes('m.cose'));
    expectOk(
      await w.run('pack', 'image.bin', '--device-class', 'acme-gw', '--version', '1.0.1', '--counter', '2', '--created', '1764000000', '--out', 'm2.cose'),
    );
    const before = toHex(w.bytes('m2.cose'));
    process.env.FWSEAL_SIGNER_TIMEOUT = '1';
    try {
      expectUsage(await w.run('sign', 'm2.cose', '--key', 'exec:./fail', '--pub', 'KMS1.pub'), 'SIGNER_FAILED');
      expectUsage(await w.run('sign', 'm2.cose', '--key', 'exec:./hang', '--pub', 'KMS1.pub'), 'SIGNER_TIMEOUT');
      expectUsage(await w.run('sign', 'm2.cose', '--key', 'exec:./chatty', '--pub', 'KMS1.pub'), 'SIGNER_FAILED');
      expectUsage(await w.run('sign', 'm2.cose', '--key', 'exec:./no-such-signer', '--pub', 'KMS1.pub'), 'SIGNER_FAILED');
      expectUsage(await w.run('sign', 'm2.cose', '--key', 'exec:./openssl-sign OTHER.pem', '--pub', 'KMS1.pub'), 'BAD_SIGNATURE');
      expectUsage(
        await w.run('sign', 'm2.cose', '--key', 'exec:./openssl-sign KMS1.pem', '--pub', 'KMS1.pub', '--detached', 'x.sig', '--trust', 'nope.cbor'),
        'IO',
      );
      expectUsage(await w.run('sign', 'm2.cose', '--key', 'exec:./openssl-sign KMS1.pem'));
      expectUsage(await w.run('sign', 'm2.cose', '--key', 'R2.key', '--pub', 'R2.pub'));
      expectUsage(await w.run('sign', 'm2.cose', '--key', 'exec:./openssl-sign OTHER.pem', '--pub', 'KMS1.pub', '--detached', 'x.sig'), 'BAD_SIGNATURE');
    } finally {
      delete process.env.FWSEAL_SIGNER_TIMEOUT;
    }
    expect(toHex(w.bytes('m2.cose'))).toBe(before);
    expect(() => w.bytes('x.sig')).toThrow();
  });
  it('tells the signer which key it is asked for', async () => {
    const r = await w.run('sign', 'm2.cose', '--key', 'exec:./kid-echo', '--pub', 'KMS1.pub');
    expectUsage(r, 'SIGNER_FAILED');
    expect(r.err).toContain(kmsKid);
  });
  it('pairs exec: root signers with --sign-pub in order', async () => {
    const r = await w.run(
      'revoke',
      '--trust',
      'trust.cbor',
      '--version',
      '1',
      '--key',
      'R2.pub',
      '--sign',
      'exec:./openssl-sign ROOTB.pem',
      '--sign',
      'A.key',
      '--out',
      'rl.cbor',
    );
    expectUsage(r);
    expectOk(
      await w.run(
        'revoke',
        ...['--trust', 'trust.cbor', '--version', '1', '--key', 'R2.pub'],
        ...['--sign', 'exec:./openssl-sign ROOTB.pem', '--sign', 'A.key', '--sign-pub', 'ROOTB.pub', '--out', 'rl.cbor'],
      ),
    );
    expectOk(await w.run('verify', 'rl.cbor', '--trust', 'trust.cbor'));
  });
});
