/**
 * PKCS#11 tokens (SPEC.md §15.2) against a real SoftHSM2: RFC 7512 URIs, keygen inside the token
 * (non-extractable), CKM_EDDSA signatures the device verifier accepts, and every failure a clear
 * code with nothing written. The PIN comes from FWSEAL_PKCS11_PIN, set for this test process.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyEd25519 } from '../device/index.js';
import { FwsealError } from '../host/errors.js';
import { loadPublicKey, loadSigningKey } from '../host/keys.js';
import { signEnvelope } from '../host/sign.js';
import { openSigner, parseKeyRef, publicKeyOf } from '../host/signers/index.js';
import { generatePkcs11Key, openPkcs11Signer, pkcs11PublicKey } from '../host/signers/pkcs11.js';
import {
  attributes,
  CK,
  finalizePkcs11Modules,
  findObjects,
  findToken,
  loadBinding,
  login,
  openModule,
  type Token,
  tokenSession,
  ulong,
} from '../host/signers/pkcs11-session.js';
import { parsePkcs11Uri } from '../host/signers/pkcs11-uri.js';
import { toHex } from '../shared/bytes.js';
import { type CodeName } from '../shared/codes.js';
import { parseEnvelope, sigStructure } from '../shared/cose.js';
import { type CliWorld, expectOk, expectRejected, expectUsage, makeCliWorld, PASS } from './support/cli-world.js';
import { makeSoftHsm, type SoftHsm } from './support/softhsm.js';

// Before anything below runs a pkcs11: call: importing the signers must not load the native package.
const requireCache = createRequire(import.meta.url).cache;
const nativeLoaded = () => Object.keys(requireCache).some((k) => k.includes(`${sep}pkcs11js${sep}`));
const nativeLoadedAtImport = nativeLoaded();

const TOKEN = { label: 'fwseal', pin: '1234', soPin: '5678' };
const SPARE = { label: 'spare', pin: '4321', soPin: '8765' };
const P256_OID = Buffer.from('06082a8648ce3d030107', 'hex');
const ED448_OID = Buffer.from('06032b6571', 'hex');
const ED25519_NAME = Buffer.concat([Buffer.from([0x13, 0x0c]), Buffer.from('edwards25519')]);

let hsm: SoftHsm;
let w: CliWorld;
let keygenJson: Record<string, string>;
const envBefore = { pin: process.env.FWSEAL_PKCS11_PIN, module: process.env.FWSEAL_PKCS11_MODULE };

const uri = (path: string): string => `pkcs11:${path}?module-path=${hsm.module}`;
const R1 = (): string => uri('token=fwseal;object=R1');

function expectCode(f: () => unknown, code: CodeName): FwsealError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FwsealError);
    expect((e as FwsealError).codeName, (e as Error).message).toBe(code);
    return e as FwsealError;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

/** The test's own view of the token, logged in, through the same module instance the code under test uses. */
function fwsealToken(rw = false): { t: Token; s: Buffer } {
  const t = findToken(openModule(hsm.module), parsePkcs11Uri('pkcs11:token=fwseal'));
  const s = tokenSession(t, rw);
  login(t, s, () => TOKEN.pin);
  return { t, s };
}

const labelled = (label: string) => {
  const { t, s } = fwsealToken();
  return findObjects(t, s, [{ type: CK.CKA_LABEL, value: Buffer.from(label) }]).length;
};

/** A key pair made straight through the module: curves fwseal refuses, and labels used twice. */
function makePair(mechanism: number, params: Buffer, label: string, id: number): void {
  const { t, s } = fwsealToken(true);
  const common = [
    { type: CK.CKA_TOKEN, value: true },
    { type: CK.CKA_LABEL, value: Buffer.from(label) },
    { type: CK.CKA_ID, value: Buffer.from([id]) },
  ];
  t.module.api.C_GenerateKeyPair(
    s,
    { mechanism },
    [...common, { type: CK.CKA_EC_PARAMS, value: params }, { type: CK.CKA_VERIFY, value: true }],
    [...common, { type: CK.CKA_PRIVATE, value: true }, { type: CK.CKA_SIGN, value: true }],
  );
}

beforeAll(async () => {
  hsm = makeSoftHsm([TOKEN, SPARE]);
  process.env.FWSEAL_PKCS11_PIN = TOKEN.pin;
  delete process.env.FWSEAL_PKCS11_MODULE;
  w = await makeCliWorld(['A', 'B', 'R2'], { image: true });
  const r = await w.run('keygen', 'R1', '--pkcs11', 'pkcs11:token=fwseal;object=R1', '--module', hsm.module, '--json');
  expectOk(r);
  keygenJson = JSON.parse(r.out);
  const roles = ['--root', 'A.pub', '--root', 'B.pub', '--root-threshold', '2', '--release', 'R1.pub', '--release', 'R2.pub', '--release-threshold', '2'];
  expectOk(await w.run('trust', 'init', ...roles, '--sign', 'A.key', '--sign', 'B.key', '--out', 'trust.cbor'));
  makePair(0x1040, P256_OID, 'P256', 0x25); // CKM_EC_KEY_PAIR_GEN: an ECDSA P-256 pair
  makePair(CK.CKM_EC_EDWARDS_KEY_PAIR_GEN, ED448_OID, 'ED448', 0x44);
  makePair(CK.CKM_EC_EDWARDS_KEY_PAIR_GEN, ED25519_NAME, 'BYNAME', 0x13);
  makePair(CK.CKM_EC_EDWARDS_KEY_PAIR_GEN, Buffer.from('06032b6570', 'hex'), 'dup', 0xd1);
  makePair(CK.CKM_EC_EDWARDS_KEY_PAIR_GEN, Buffer.from('06032b6570', 'hex'), 'dup', 0xd2);
});

afterAll(() => {
  finalizePkcs11Modules();
  w?.close();
  hsm?.close();
  for (const [name, v] of [
    ['FWSEAL_PKCS11_PIN', envBefore.pin],
    ['FWSEAL_PKCS11_MODULE', envBefore.module],
  ] as const) {
    if (v === undefined) delete process.env[name];
    else process.env[name] = v;
  }
});

describe('RFC 7512 pkcs11: URIs', () => {
  it('parses the RFC 7512 §3 examples fwseal accepts', () => {
    expect(parsePkcs11Uri('pkcs11:')).toEqual({});
    expect(parsePkcs11Uri('pkcs11:object=my-pubkey;type=public')).toEqual({ object: 'my-pubkey', type: 'public' });
    const full = parsePkcs11Uri(
      'pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=',
    );
    expect(full).toMatchObject({
      token: 'The Software PKCS#11 Softtoken',
      manufacturer: 'Snake Oil, Inc.',
      model: '1.0',
      object: 'my-certificate',
      serial: '',
    });
    expect(toHex(full.id as Uint8Array)).toBe('69953e5cf4bdec91');
    expect(parsePkcs11Uri('pkcs11:object=my-sign-key;type=private?module-name=mypkcs11')).toMatchObject({ moduleName: 'mypkcs11', type: 'private' });
    expect(parsePkcs11Uri('pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1').modulePath).toBe('/mnt/libmypkcs11.so.1');
    expect(parsePkcs11Uri('pkcs11:slot-description=Sun%20Metaslot').slotDescription).toBe('Sun Metaslot');
    expect(parsePkcs11Uri('pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;library-version=1.23')).toEqual({
      libraryManufacturer: 'Snake Oil, Inc.',
      libraryDescription: 'Soft Token Library',
      libraryVersion: { major: 1, minor: 23 },
    });
    const joe = parsePkcs11Uri('pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;id=%01%02%03%Ba%dd%Ca%fe%04%05%06');
    expect(joe.token).toBe('My token% created by Joe');
    expect(joe.libraryVersion).toEqual({ major: 3, minor: 0 });
    expect(toHex(joe.id as Uint8Array)).toBe('010203baddcafe040506');
    expect(parsePkcs11Uri('pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert').token).toBe('A name with a substring %;');
    expect(parsePkcs11Uri('pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert').token).toBe(
      'Name with a small A with acute: \u00e1',
    );
  });

  it('takes the reserved characters RFC 7512 §2.3 allows unencoded, and slot-id', () => {
    expect(parsePkcs11Uri("pkcs11:token=:[]@!$'()*+,=&;slot-id=7").token).toBe(":[]@!$'()*+,=&");
    expect(parsePkcs11Uri('pkcs11:slot-id=7').slotId).toBe(7n);
    expect(parsePkcs11Uri('pkcs11:object=R1?module-path=/opt/a|b/lib?.so').modulePath).toBe('/opt/a|b/lib?.so');
  });

  it.each([
    ['pin-value', 'pkcs11:token=fwseal;object=R1?pin-value=123456'],
    ['pin-source', 'pkcs11:token=fwseal;object=R1?pin-source=file:/etc/pin'],
    ['an unknown path attribute', 'pkcs11:token=fwseal;vendor-aaa=x'],
    ['an unknown query attribute', 'pkcs11:token=fwseal?module-pth=/x.so'],
    ['a path attribute given twice', 'pkcs11:object=a;object=a'],
    ['a query attribute given twice', 'pkcs11:?module-path=/a.so&module-path=/a.so'],
    ['module-path and module-name together', 'pkcs11:?module-path=/a.so&module-name=a'],
    ['a module-name with a folder', 'pkcs11:?module-name=..%2Fevil'],
    ['a bad percent escape', 'pkcs11:token=a%G1'],
    ['a truncated percent escape', 'pkcs11:token=a%4'],
    ['a raw space', 'pkcs11:token=a b'],
    ['a fragment', 'pkcs11:token=a#b'],
    ['an empty attribute', 'pkcs11:token=a;;object=b'],
    ['an attribute without =', 'pkcs11:token'],
    ['a type fwseal does not know', 'pkcs11:type=key'],
    ['a three-part library-version', 'pkcs11:library-version=1.2.3'],
    ['a slot-id that is not decimal', 'pkcs11:slot-id=0x1'],
    ['a label that is not UTF-8', 'pkcs11:token=%FF'],
    ['another scheme', 'pkcs12:token=a'],
  ])('refuses %s (USAGE)', (_what, text) => {
    expectCode(() => parsePkcs11Uri(text), 'USAGE');
  });

  it('names pin-value without its value: a PIN never reaches a message', () => {
    expect(expectCode(() => parsePkcs11Uri('pkcs11:object=R1?pin-value=s3cr3t-pin'), 'USAGE').message).not.toContain('s3cr3t-pin');
    expect(expectCode(() => parsePkcs11Uri('pkcs11:object=R1?s3cr3t-pin'), 'USAGE').message).not.toContain('s3cr3t-pin');
  });
});

describe('keygen --pkcs11 (the key pair is made inside the token)', () => {
  it('writes only NAME.pub, whose key id is the token key', () => {
    expect(keygenJson.keyId).toBe(toHex(loadPublicKey(w.path('R1.pub')).keyId));
    expect(keygenJson.keyId).toBe(toHex(pkcs11PublicKey(R1()).keyId));
    expect(existsSync(w.path('R1.key'))).toBe(false);
  });

  it('the private key is sensitive, not extractable, private, Ed25519, and its value cannot be read', () => {
    const { t, s } = fwsealToken();
    const [priv] = findObjects(t, s, [
      { type: CK.CKA_CLASS, value: CK.CKO_PRIVATE_KEY },
      { type: CK.CKA_LABEL, value: Buffer.from('R1') },
    ]);
    const [sensitive, extractable, isPrivate, keyType, value] = attributes(t, s, priv, [
      CK.CKA_SENSITIVE,
      CK.CKA_EXTRACTABLE,
      CK.CKA_PRIVATE,
      CK.CKA_KEY_TYPE,
      0x11, // CKA_VALUE
    ]);
    expect([sensitive?.[0], extractable?.[0], isPrivate?.[0]]).toEqual([1, 0, 1]);
    expect(ulong(keyType)).toBe(CK.CKK_EC_EDWARDS);
    expect(value).toBeNull();
  });

  it('refuses a label the token already holds (CONFLICT), writing nothing', async () => {
    expectUsage(await w.run('keygen', 'R1b', '--pkcs11', uri('token=fwseal;object=R1')), 'CONFLICT');
    expect(existsSync(w.path('R1b.pub'))).toBe(false);
  });

  it('refuses an existing NAME.pub before it touches the token', async () => {
    w.write('R9.pub', 'taken');
    // IO, not PKCS11_MODULE: the module is not even loaded.
    expectUsage(await w.run('keygen', 'R9', '--pkcs11', 'pkcs11:token=fwseal;object=R9?module-path=/nonexistent/libnope.so'), 'IO');
    expectUsage(await w.run('keygen', 'R9', '--pkcs11', uri('token=fwseal;object=R9')), 'IO');
    expect(labelled('R9')).toBe(0);
    expect(w.bytes('R9.pub')).toEqual(new Uint8Array(Buffer.from('taken')));
  });

  it('removes the new pair from the token when NAME.pub cannot be written', async () => {
    // --dir under a regular file: the folder cannot be made, which keygen finds only after the pair was made.
    w.write('plain-file', 'x');
    expectUsage(await w.run('keygen', 'R8', '--pkcs11', uri('token=fwseal;object=R8'), '--dir', w.path('plain-file/keys')), 'IO');
    expect(labelled('R8')).toBe(0);
  });

  it.each([
    ['a missing token', (): string => uri('token=nope;object=R7'), 'TOKEN_NOT_FOUND'],
    ['a module that does not load', (): string => 'pkcs11:token=fwseal;object=R7?module-path=/nonexistent/libnope.so', 'PKCS11_MODULE'],
    ['pin-value in the URI', (): string => `${uri('token=fwseal;object=R7')}&pin-value=1234`, 'USAGE'],
    ['a URI without object', (): string => uri('token=fwseal'), 'USAGE'],
    ['no module at all', (): string => 'pkcs11:token=fwseal;object=R7', 'USAGE'],
  ] as const)('%s: a clear code, exit 2, nothing written', async (_what, make, code) => {
    expectUsage(await w.run('keygen', 'R7', '--pkcs11', make()), code);
    expect(existsSync(w.path('R7.pub'))).toBe(false);
  });

  it('a wrong PIN: PIN_INCORRECT, exit 2, nothing written, and the PIN is not in the message', async () => {
    finalizePkcs11Modules(); // logged out: the next call must log in
    process.env.FWSEAL_PKCS11_PIN = '9876-wrong';
    try {
      const r = await w.run('keygen', 'R7', '--pkcs11', uri('token=fwseal;object=R7'));
      expectUsage(r, 'PIN_INCORRECT');
      expect(r.err).not.toContain('9876-wrong');
    } finally {
      process.env.FWSEAL_PKCS11_PIN = TOKEN.pin;
    }
    expect(existsSync(w.path('R7.pub'))).toBe(false);
    expect(labelled('R7')).toBe(0);
  });

  it('--module belongs to --pkcs11', async () => {
    expectUsage(await w.run('keygen', 'R6', '--module', hsm.module));
  });

  it('takes the id from the URI, and refuses an id the token already holds', () => {
    const k = generatePkcs11Key(uri('token=fwseal;object=R5;id=%52%05'), 'R5');
    expect(toHex(pkcs11PublicKey(uri('token=fwseal;id=%52%05')).keyId)).toBe(toHex(k.keyId));
    expectCode(() => generatePkcs11Key(uri('token=fwseal;object=R5b;id=%52%05'), 'R5b'), 'CONFLICT');
  });
});

describe('signing with a token key (CKM_EDDSA)', () => {
  it('a signature verifies with the device verifier over the Sig_structure', () => {
    const signer = openPkcs11Signer(R1());
    const env = parseEnvelope(w.bytes('m.cose'));
    if (!env.ok) throw new Error(env.error);
    const message = sigStructure(env.envelope.payload);
    for (let i = 0; i < 3; i++) expect(verifyEd25519(signer.sign(message), message, signer.publicKey)).toBe(true);
    expect(toHex(signer.keyId)).toBe(keygenJson.keyId);
    expect(nativeLoaded()).toBe(true); // the import-time check above can see the package
  });

  it('signEnvelope with the token key gives a manifest that fwseal verify accepts (and without it, refuses)', async () => {
    const ref = parseKeyRef(R1());
    const token = openSigner(ref, publicKeyOf(ref));
    const r2 = loadSigningKey(w.path('R2.key'), () => PASS);
    w.write('r2-only.cose', signEnvelope(w.bytes('m.cose'), r2).envelope);
    expectRejected(await w.run('verify', 'r2-only.cose', '--trust', 'trust.cbor'), 'THRESHOLD_NOT_MET');
    w.write('signed.cose', signEnvelope(w.bytes('r2-only.cose'), token).envelope);
    expectOk(await w.run('verify', 'signed.cose', '--trust', 'trust.cbor'));
  });

  it('reads the public key without the PIN, and asks for it once per token login', () => {
    finalizePkcs11Modules();
    expect(toHex(pkcs11PublicKey(R1(), () => expect.fail('asked for a PIN')).keyId)).toBe(keygenJson.keyId);
    let asked = 0;
    const pins = () => {
      asked++;
      return TOKEN.pin;
    };
    openPkcs11Signer(R1(), pins);
    openPkcs11Signer(uri('token=fwseal;object=BYNAME'), pins);
    expect(asked).toBe(1);
  });

  it('accepts the curve named "edwards25519" in CKA_EC_PARAMS', () => {
    const signer = openPkcs11Signer(uri('token=fwseal;object=BYNAME'));
    const m = new Uint8Array([1, 2, 3]);
    expect(verifyEd25519(signer.sign(m), m, signer.publicKey)).toBe(true);
  });

  it('finds the module by FWSEAL_PKCS11_MODULE and by module-name (p11-kit), and the token by library attributes', () => {
    process.env.FWSEAL_PKCS11_MODULE = hsm.module;
    try {
      expect(toHex(pkcs11PublicKey('pkcs11:token=fwseal;object=R1').keyId)).toBe(keygenJson.keyId);
    } finally {
      delete process.env.FWSEAL_PKCS11_MODULE;
    }
    expect(toHex(pkcs11PublicKey('pkcs11:token=fwseal;object=R1?module-name=softhsm2').keyId)).toBe(keygenJson.keyId);
    expect(toHex(pkcs11PublicKey(uri('library-manufacturer=SoftHSM;token=fwseal;object=R1')).keyId)).toBe(keygenJson.keyId);
    expectCode(() => pkcs11PublicKey(uri('library-manufacturer=Acme;token=fwseal;object=R1')), 'TOKEN_NOT_FOUND');
  });
});

describe('failures are clear codes', () => {
  it('a wrong PIN is PIN_INCORRECT and the message does not carry it', () => {
    finalizePkcs11Modules();
    expect(expectCode(() => openPkcs11Signer(R1(), () => '0000-wrong'), 'PIN_INCORRECT').message).not.toContain('0000-wrong');
    expectCode(() => openPkcs11Signer(R1(), () => 'ab'), 'PIN_INCORRECT'); // CKR_PIN_LEN_RANGE
  });

  it('an empty FWSEAL_PKCS11_PIN is NO_PASSPHRASE', () => {
    finalizePkcs11Modules();
    process.env.FWSEAL_PKCS11_PIN = '';
    try {
      expectCode(() => openPkcs11Signer(R1()), 'NO_PASSPHRASE');
    } finally {
      process.env.FWSEAL_PKCS11_PIN = TOKEN.pin;
    }
  });

  it('a missing token is TOKEN_NOT_FOUND; several matching tokens are USAGE', () => {
    expectCode(() => pkcs11PublicKey(uri('token=nope;object=R1')), 'TOKEN_NOT_FOUND');
    expectCode(() => openPkcs11Signer(uri('token=nope;object=R1')), 'TOKEN_NOT_FOUND');
    expectCode(() => pkcs11PublicKey(uri('object=R1')), 'USAGE');
    expect(toHex(pkcs11PublicKey(uri('model=SoftHSM%20v2;token=fwseal;object=R1')).keyId)).toBe(keygenJson.keyId);
  });

  it('a missing object is KEY_NOT_FOUND; two under one label are KEY_NOT_FOUND until id= picks one', () => {
    expectCode(() => pkcs11PublicKey(uri('token=fwseal;object=nothing')), 'KEY_NOT_FOUND');
    expectCode(() => openPkcs11Signer(uri('token=fwseal;object=nothing')), 'KEY_NOT_FOUND');
    expectCode(() => pkcs11PublicKey(uri('token=fwseal;object=dup')), 'KEY_NOT_FOUND');
    expectCode(() => openPkcs11Signer(uri('token=fwseal;object=dup')), 'KEY_NOT_FOUND');
    const one = openPkcs11Signer(uri('token=fwseal;object=dup;id=%D2'));
    expect(toHex(pkcs11PublicKey(uri('token=fwseal;object=dup;id=%D2')).keyId)).toBe(toHex(one.keyId));
  });

  it.each([
    ['an ECDSA P-256 key', 'P256'],
    ['an Ed448 key', 'ED448'],
  ])('%s is UNSUPPORTED_KEY, for the public key and for signing', (_what, label) => {
    expectCode(() => pkcs11PublicKey(uri(`token=fwseal;object=${label}`)), 'UNSUPPORTED_KEY');
    expectCode(() => openPkcs11Signer(uri(`token=fwseal;object=${label}`)), 'UNSUPPORTED_KEY');
  });

  it('a URI naming a certificate, or no key, is USAGE', () => {
    expectCode(() => pkcs11PublicKey(uri('token=fwseal;object=R1;type=cert')), 'USAGE');
    expectCode(() => openPkcs11Signer(uri('token=fwseal')), 'USAGE');
  });

  it('a module that does not load, or does not initialise, is PKCS11_MODULE', () => {
    writeFileSync(w.path('not-a-module.so'), 'not an ELF file');
    expectCode(() => pkcs11PublicKey(`pkcs11:token=fwseal;object=R1?module-path=${w.path('not-a-module.so')}`), 'PKCS11_MODULE');
    expectCode(() => pkcs11PublicKey('pkcs11:token=fwseal;object=R1?module-path=/nonexistent/libnope.so'), 'PKCS11_MODULE');
    expectCode(() => pkcs11PublicKey('pkcs11:token=fwseal;object=R1?module-name=no-such-module'), 'PKCS11_MODULE');
    finalizePkcs11Modules();
    const conf = process.env.SOFTHSM2_CONF;
    process.env.SOFTHSM2_CONF = join(hsm.dir, 'missing.conf'); // SoftHSM2's C_Initialize fails without its configuration
    try {
      expectCode(() => pkcs11PublicKey(R1()), 'PKCS11_MODULE');
    } finally {
      process.env.SOFTHSM2_CONF = conf;
    }
    expect(toHex(pkcs11PublicKey(R1()).keyId)).toBe(keygenJson.keyId);
  });

  it('a missing pkcs11js package is PKCS11_MODULE, and importing the signers did not load it', () => {
    expectCode(() => loadBinding('pkcs11js-not-installed'), 'PKCS11_MODULE');
    expect(nativeLoadedAtImport).toBe(false);
  });
});
