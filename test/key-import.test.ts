/**
 * `fwseal key import` and `fwseal key export-pub` (SPEC.md §15.5) against real openssl: keys made by
 * `openssl genpkey` become fwseal keys with the key id openssl's public key gives, other algorithms
 * and damaged files are refused with a code and nothing written, and a signature made by fwseal
 * verifies with `openssl pkeyutl -verify` over the Sig_structure bytes. Codes asserted, never text.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Point } from '@noble/ed25519';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { keyId, verifyEd25519 } from '../device/index.js';
import { FwsealError } from '../host/errors.js';
import { importKey } from '../host/key-import.js';
import { KEY_FILE_MAX_BYTES, loadPublicKey, loadSigningKey } from '../host/keys.js';
import { fromHex, toHex } from '../shared/bytes.js';
import { CODES, type CodeName } from '../shared/codes.js';
import { parseEnvelope, sigStructure } from '../shared/cose.js';
import { LIMITS } from '../shared/limits.js';
import { type CliRun, runCli } from './support/cli-run.js';
import { type CliWorld, expectOk, expectUsage, makeCliWorld, PASS } from './support/cli-world.js';

const PEM_PASS = 'pem passphrase from openssl';
let tmp: string;
let n = 0;

/** openssl, bounded; throws (with its stderr) on a non-zero exit. */
function ossl(...args: string[]): Buffer {
  return execFileSync('openssl', args, { timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A fresh folder for one import's output. */
function freshDir(): string {
  const d = join(tmp, `out${++n}`);
  mkdirSync(d);
  return d;
}

/** `openssl genpkey ARGS` into a new PEM file (0600, as openssl writes keys). */
function genpkey(name: string, ...args: string[]): string {
  const file = join(tmp, name);
  ossl('genpkey', ...args, '-out', file);
  return file;
}

/** The key id of a PEM key as openssl sees it: its SubjectPublicKeyInfo's last 32 bytes (RFC 8410 §4). */
function opensslKid(pem: string, ...passin: string[]): string {
  const spki = ossl('pkey', '-in', pem, ...passin, '-pubout', '-outform', 'DER');
  expect(spki.length).toBe(44);
  return toHex(keyId(new Uint8Array(spki.subarray(12))));
}

const io = (...argv: string[]): Promise<CliRun> => runCli(argv);
/** A fresh unencrypted Ed25519 PKCS#8 PEM to re-encrypt. */
const plainCopy = () => genpkey(`src${++n}.pem`, '-algorithm', 'ed25519');

/** Exit 2 and `(code N)` of `code` on stderr. */
function expectCode(r: CliRun, code: CodeName): void {
  expect(r.status, r.out + r.err).toBe(2);
  expect(r.err).toMatch(new RegExp(`\\b${code} \\(code ${CODES[code]}\\)`));
}

function fwsealError(f: () => unknown): FwsealError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FwsealError);
    return e as FwsealError;
  }
  throw new Error('expected an FwsealError');
}

let plain: string;
let encrypted: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'fwseal-key-import-'));
  process.env.FWSEAL_PASSPHRASE = PASS;
  plain = genpkey('plain.pem', '-algorithm', 'ed25519');
  encrypted = genpkey('enc.pem', '-algorithm', 'ed25519', '-aes-256-cbc', '-pass', `pass:${PEM_PASS}`);
});

afterEach(() => {
  delete process.env.FWSEAL_IMPORT_PASSPHRASE;
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

describe('key import: openssl Ed25519 keys become fwseal keys', () => {
  it('a PKCS#8 PEM gives NAME.key (0600) and NAME.pub with the key id of openssl pkey -pubout', async () => {
    const dir = freshDir();
    const r = await io('key', 'import', plain, '--name', 'P1', '--dir', dir);
    expect(r.status, r.err).toBe(0);
    expect(r.out.trim()).toBe(opensslKid(plain));
    expect(statSync(join(dir, 'P1.key')).mode & 0o777).toBe(0o600);
    expect(toHex(loadPublicKey(join(dir, 'P1.pub')).keyId)).toBe(opensslKid(plain));
    // The new key file unlocks with FWSEAL_PASSPHRASE and signs as the openssl key does.
    const key = loadSigningKey(join(dir, 'P1.key'), () => PASS);
    const msg = new TextEncoder().encode('imported');
    expect(verifyEd25519(key.sign(msg), msg, key.publicKey)).toBe(true);
  });

  it('an encrypted PKCS#8 PEM is decrypted with FWSEAL_IMPORT_PASSPHRASE, and the new file is encrypted with FWSEAL_PASSPHRASE', async () => {
    process.env.FWSEAL_IMPORT_PASSPHRASE = PEM_PASS;
    const dir = freshDir();
    const r = await io('key', 'import', encrypted, '--name', 'E1', '--dir', dir, '--json');
    expect(r.status, r.err).toBe(0);
    const out = JSON.parse(r.out);
    expect(out.keyId).toBe(opensslKid(encrypted, '-passin', `pass:${PEM_PASS}`));
    expect(out.privateKeyFile).toBe(join(dir, 'E1.key'));
    expect(loadSigningKey(join(dir, 'E1.key'), () => PASS).keyId).toEqual(loadPublicKey(join(dir, 'E1.pub')).keyId);
    expect(fwsealError(() => loadSigningKey(join(dir, 'E1.key'), () => PEM_PASS)).codeName).toBe('WRONG_PASSPHRASE');
  });

  it('a wrong PEM passphrase is WRONG_PASSPHRASE, nothing written', async () => {
    process.env.FWSEAL_IMPORT_PASSPHRASE = 'not the passphrase';
    const dir = freshDir();
    expectCode(await io('key', 'import', encrypted, '--name', 'E2', '--dir', dir), 'WRONG_PASSPHRASE');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('an encrypted PEM whose KDF asks for more than maxImportKdfIterations is KEY_FORMAT before any passphrase', async () => {
    const costly = join(tmp, 'costly.pem');
    ossl(
      'pkcs8',
      '-topk8',
      '-in',
      plainCopy(),
      '-v2',
      'aes-256-cbc',
      '-iter',
      String(LIMITS.maxImportKdfIterations + 1),
      '-passout',
      `pass:${PEM_PASS}`,
      '-out',
      costly,
    );
    const usual = join(tmp, 'usual.pem');
    ossl('pkcs8', '-topk8', '-in', plainCopy(), '-v2', 'aes-256-cbc', '-iter', '100000', '-passout', `pass:${PEM_PASS}`, '-out', usual);
    // The right passphrase: without the cost check the import would go through.
    process.env.FWSEAL_IMPORT_PASSPHRASE = PEM_PASS;
    const dir = freshDir();
    expectCode(await io('key', 'import', costly, '--name', 'K1', '--dir', dir), 'KEY_FORMAT');
    expect(readdirSync(dir)).toEqual([]);
    expect((await io('key', 'import', usual, '--name', 'K2', '--dir', dir)).status).toBe(0);
  });

  it('an empty FWSEAL_IMPORT_PASSPHRASE is NO_PASSPHRASE', async () => {
    process.env.FWSEAL_IMPORT_PASSPHRASE = '';
    const dir = freshDir();
    expectCode(await io('key', 'import', encrypted, '--name', 'E3', '--dir', dir), 'NO_PASSPHRASE');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('a public key PEM (a KMS or HSM key) gives only NAME.pub, with the key id openssl computes', async () => {
    const pub = join(tmp, 'pub.pem');
    writeFileSync(pub, ossl('pkey', '-in', plain, '-pubout'));
    const dir = freshDir();
    const r = await io('key', 'import', pub, '--name', 'K1', '--dir', dir, '--json');
    expect(r.status, r.err).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ keyId: opensslKid(plain), privateKeyFile: null });
    expect(readdirSync(dir)).toEqual(['K1.pub']);
  });

  it('a group-readable private PEM is imported with a warning on stderr; a 0600 one without', async () => {
    const loose = genpkey('loose.pem', '-algorithm', 'ed25519');
    chmodSync(loose, 0o644);
    const warned = await io('key', 'import', loose, '--name', 'L1', '--dir', freshDir());
    expect(warned.status, warned.err).toBe(0);
    expect(warned.err).toMatch(/^warning: /m);
    chmodSync(loose, 0o600);
    const quiet = await io('key', 'import', loose, '--name', 'L2', '--dir', freshDir());
    expect(quiet.status, quiet.err).toBe(0);
    expect(quiet.err).not.toMatch(/^warning: /m);
  });
});

describe('key import refuses, with a code and nothing written', () => {
  /** Import `file` into a fresh folder: the code, and the folder still empty. */
  async function refused(file: string, code: CodeName): Promise<void> {
    const dir = freshDir();
    expectCode(await io('key', 'import', file, '--name', 'X', '--dir', dir), code);
    expect(readdirSync(dir)).toEqual([]);
  }
  const write = (name: string, data: string | Uint8Array) => {
    const p = join(tmp, name);
    writeFileSync(p, data, { mode: 0o600 });
    return p;
  };
  const text = (p: string) => readFileSync(p, 'latin1');

  it.each([
    ['RSA', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']],
    ['P-256', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']],
    ['X25519', ['-algorithm', 'X25519']],
    ['Ed448', ['-algorithm', 'ED448']],
  ])('a %s PKCS#8 key is UNSUPPORTED_KEY', async (alg, args) => {
    await refused(genpkey(`${alg}.pem`, ...args), 'UNSUPPORTED_KEY');
  });

  it('an encrypted P-256 key is UNSUPPORTED_KEY once decrypted; its public key too', async () => {
    process.env.FWSEAL_IMPORT_PASSPHRASE = PEM_PASS;
    const ec = genpkey('ec-enc.pem', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-aes-256-cbc', '-pass', `pass:${PEM_PASS}`);
    await refused(ec, 'UNSUPPORTED_KEY');
    await refused(write('ec-pub.pem', ossl('pkey', '-in', ec, '-passin', `pass:${PEM_PASS}`, '-pubout')), 'UNSUPPORTED_KEY');
  });

  it('traditional RSA and EC PEM files (openssl genrsa -traditional, ecparam -genkey) are UNSUPPORTED_KEY', async () => {
    await refused(write('rsa-trad.pem', ossl('genrsa', '-traditional', '2048')), 'UNSUPPORTED_KEY');
    await refused(write('ec-trad.pem', ossl('ecparam', '-name', 'prime256v1', '-genkey')), 'UNSUPPORTED_KEY');
  });

  it('small-order, mixed-order and non-canonical public keys are UNSUPPORTED_KEY (trust bundles refuse them)', async () => {
    const spki = (hex: string) =>
      `-----BEGIN PUBLIC KEY-----\n${Buffer.from(`302a300506032b6570032100${hex}`, 'hex').toString('base64')}\n-----END PUBLIC KEY-----\n`;
    const good = new Uint8Array(ossl('pkey', '-in', plain, '-pubout', '-outform', 'DER').subarray(12));
    // The good key plus a point of order 2: its secret would sign under two key ids (SPEC.md §7 P5).
    const mixed = Point.fromBytes(good)
      .add(Point.fromBytes(fromHex(`ec${'ff'.repeat(30)}7f`) as Uint8Array))
      .toBytes();
    // Control: the same framing around the good key imports.
    expect((await io('key', 'import', write('good-spki.pem', spki(toHex(good))), '--name', 'G', '--dir', freshDir())).status).toBe(0);
    await refused(write('identity.pem', spki(`01${'00'.repeat(31)}`)), 'UNSUPPORTED_KEY');
    await refused(write('mixed.pem', spki(toHex(mixed))), 'UNSUPPORTED_KEY');
    await refused(write('noncanon.pem', spki(`${'ff'.repeat(31)}7f`)), 'UNSUPPORTED_KEY');
  });

  it('not PEM, two keys in one file, text after or before the block, a damaged body, another label: KEY_FORMAT', async () => {
    const other = genpkey('other.pem', '-algorithm', 'ed25519');
    const body = text(plain).split('\n')[1];
    await refused(write('notpem.pem', 'just some text\n'), 'KEY_FORMAT');
    await refused(write('two.pem', text(plain) + text(other)), 'KEY_FORMAT');
    await refused(write('trailing.pem', `${text(plain)}garbage\n`), 'KEY_FORMAT');
    await refused(write('leading.pem', `note: my key\n${text(plain)}`), 'KEY_FORMAT');
    await refused(write('truncated.pem', text(plain).replace(body, body.slice(0, 40))), 'KEY_FORMAT');
    await refused(write('badchar.pem', text(plain).replace(body, `${body.slice(0, 10)}!${body.slice(11)}`)), 'KEY_FORMAT');
    await refused(write('mismatch.pem', text(plain).replace('END PRIVATE KEY', 'END PUBLIC KEY')), 'KEY_FORMAT');
    await refused(write('cert.pem', text(plain).replaceAll('PRIVATE KEY', 'CERTIFICATE')), 'KEY_FORMAT');
    await refused(write('openssh.pem', text(plain).replaceAll('PRIVATE KEY', 'OPENSSH PRIVATE KEY')), 'KEY_FORMAT');
    await refused(write('priv-as-pub.pem', text(plain).replaceAll('PRIVATE KEY', 'PUBLIC KEY')), 'KEY_FORMAT');
  });

  it('a DER key with a byte after it is KEY_FORMAT, though OpenSSL would read the key and ignore the byte', async () => {
    const der = Buffer.concat([Buffer.from(text(plain).split('\n')[1], 'base64'), Buffer.of(0)]);
    await refused(write('der-trailing.pem', `-----BEGIN PRIVATE KEY-----\n${der.toString('base64')}\n-----END PRIVATE KEY-----\n`), 'KEY_FORMAT');
  });

  it(`a file over ${KEY_FILE_MAX_BYTES} bytes is KEY_FORMAT; a missing file is IO`, async () => {
    await refused(write('huge.pem', `${text(plain)}${' '.repeat(KEY_FILE_MAX_BYTES)}`), 'KEY_FORMAT');
    await refused(join(tmp, 'no-such.pem'), 'IO');
  });

  it('an existing NAME.key or NAME.pub is IO before any passphrase is asked', () => {
    const asked: string[] = [];
    const source = (what: string) => () => {
      asked.push(what);
      return PASS;
    };
    for (const taken of ['T.key', 'T.pub']) {
      const dir = freshDir();
      writeFileSync(join(dir, taken), 'someone else');
      const e = fwsealError(() => importKey(encrypted, 'T', { dir, pemPassphrase: source('pem'), passphrases: source('new') }));
      expect(e.codeName).toBe('IO');
      expect(readdirSync(dir)).toEqual([taken]);
      expect(readFileSync(join(dir, taken), 'utf8')).toBe('someone else');
    }
    expect(asked).toEqual([]);
  });

  it('a bad key name or no --name is USAGE', async () => {
    expectUsage(await io('key', 'import', plain, '--name', '../up', '--dir', freshDir()));
    expectUsage(await io('key', 'import', plain, '--dir', freshDir()));
  });

  it('without FWSEAL_IMPORT_PASSPHRASE and no terminal, an encrypted PEM is NO_PASSPHRASE: FWSEAL_PASSPHRASE is not used for it', () => {
    // A child in a new session (setsid) has no controlling terminal, so the prompt cannot open /dev/tty.
    const dir = freshDir();
    const script = join(tmp, 'import-child.ts');
    const module = pathToFileURL(resolve(__dirname, '../host/key-import.ts')).href;
    writeFileSync(
      script,
      `import { importKey } from ${JSON.stringify(module)};
try { importKey(${JSON.stringify(encrypted)}, 'C1', { dir: ${JSON.stringify(dir)} }); console.log('imported'); }
catch (e) { console.log(e.codeName ?? String(e)); }\n`,
    );
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const env: NodeJS.ProcessEnv = { ...process.env, FWSEAL_PASSPHRASE: PEM_PASS };
    delete env.FWSEAL_IMPORT_PASSPHRASE;
    const r = spawnSync('setsid', ['-w', process.execPath, '--import', tsx, script], {
      env,
      timeout: 60_000,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(r.stdout.trim(), r.stderr).toBe('NO_PASSPHRASE');
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe('key export-pub', () => {
  let dir: string;
  beforeAll(async () => {
    dir = freshDir();
    expect((await io('key', 'import', plain, '--name', 'X1', '--dir', dir)).status).toBe(0);
  });

  it('--pem prints the same SubjectPublicKeyInfo PEM as openssl pkey -pubout, from NAME.pub and from NAME.key (no passphrase)', async () => {
    const expected = ossl('pkey', '-in', plain, '-pubout').toString('latin1');
    expect((await io('key', 'export-pub', join(dir, 'X1.pub'), '--pem')).out).toBe(expected);
    process.env.FWSEAL_PASSPHRASE = 'a wrong passphrase: asking for one would fail';
    try {
      const r = await io('key', 'export-pub', join(dir, 'X1.key'), '--pem');
      expect(r.status, r.err).toBe(0);
      expect(r.out).toBe(expected);
    } finally {
      process.env.FWSEAL_PASSPHRASE = PASS;
    }
  });

  it('--raw prints the 32-byte key in hex; --json carries key id and text', async () => {
    const pub = loadPublicKey(join(dir, 'X1.pub'));
    expect((await io('key', 'export-pub', join(dir, 'X1.pub'), '--raw')).out).toBe(`${toHex(pub.publicKey)}\n`);
    const j = JSON.parse((await io('key', 'export-pub', join(dir, 'X1.pub'), '--pem', '--json')).out);
    expect(j).toMatchObject({ keyId: toHex(pub.keyId), format: 'pem', text: ossl('pkey', '-in', plain, '-pubout').toString('latin1') });
  });

  it('no format, or both, is USAGE naming the formats', async () => {
    expectUsage(await io('key', 'export-pub', join(dir, 'X1.pub')));
    expectUsage(await io('key', 'export-pub', join(dir, 'X1.pub'), '--pem', '--raw'));
  });

  it('--out writes a new file that openssl reads; an existing file is IO and stays as it was', async () => {
    const out = join(dir, 'X1.pem');
    expectOk(await io('key', 'export-pub', join(dir, 'X1.pub'), '--pem', '--out', out));
    expect(ossl('pkey', '-pubin', '-in', out, '-outform', 'DER').subarray(12)).toEqual(Buffer.from(loadPublicKey(join(dir, 'X1.pub')).publicKey));
    const before = readFileSync(join(dir, 'X1.key'));
    expectCode(await io('key', 'export-pub', join(dir, 'X1.pub'), '--pem', '--out', join(dir, 'X1.key')), 'IO');
    expect(readFileSync(join(dir, 'X1.key'))).toEqual(before);
  });

  it('a file that is not an fwseal key is KEY_FORMAT', async () => {
    expectCode(await io('key', 'export-pub', plain, '--pem'), 'KEY_FORMAT');
  });
});

describe('round trip: openssl key -> fwseal signature -> openssl pkeyutl -verify', () => {
  let w: CliWorld;
  beforeAll(async () => {
    w = await makeCliWorld(['A'], { image: true });
    process.env.FWSEAL_IMPORT_PASSPHRASE = PEM_PASS;
    expectOk(await io('key', 'import', encrypted, '--name', 'R4'));
    delete process.env.FWSEAL_IMPORT_PASSPHRASE;
    const trust = ['trust', 'init', '--root', 'A.pub', '--root-threshold', '1', '--release', 'R4.pub', '--release-threshold', '1', '--sign', 'A.key'];
    expectOk(await w.run(...trust, '--out', 'trust.cbor'));
    expectOk(await w.run('sign', 'm.cose', '--key', 'R4.key', '--trust', 'trust.cbor'));
    expectOk(await io('key', 'export-pub', 'R4.pub', '--pem', '--out', 'R4.pem'));
  });
  afterAll(() => w?.close());

  /** The manifest's Sig_structure and R4's signature, as files for openssl. */
  function tbsAndSig(): { tbs: Uint8Array; sig: Uint8Array } {
    const env = parseEnvelope(w.bytes('m.cose'));
    if (!env.ok) throw new Error(env.error);
    expect(env.envelope.signatures).toHaveLength(1);
    return { tbs: sigStructure(env.envelope.payload), sig: env.envelope.signatures[0].signature };
  }

  /** `openssl pkeyutl -verify` of `sig` over `tbs` with R4.pem: its exit status and output. */
  function opensslVerify(tbs: Uint8Array, sig: Uint8Array): { status: number | null; out: string } {
    w.write('tbs.bin', tbs);
    w.write('sig.bin', sig);
    const r = spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', 'R4.pem', '-rawin', '-in', 'tbs.bin', '-sigfile', 'sig.bin'], {
      cwd: w.dir,
      timeout: 30_000,
      encoding: 'utf8',
    });
    return { status: r.status, out: r.stdout + r.stderr };
  }

  it('the manifest signed with the imported key verifies with fwseal and with openssl pkeyutl', async () => {
    expectOk(await w.run('verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'image.bin'));
    const { tbs, sig } = tbsAndSig();
    const r = opensslVerify(tbs, sig);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/Signature Verified Successfully/);
  });

  it('a flipped byte in the signature or in the signed bytes fails openssl', () => {
    const { tbs, sig } = tbsAndSig();
    const badSig = sig.slice();
    badSig[10] ^= 0x01;
    const badTbs = tbs.slice();
    badTbs[badTbs.length - 1] ^= 0x80;
    for (const [t, s] of [
      [tbs, badSig],
      [badTbs, sig],
    ]) {
      const r = opensslVerify(t, s);
      expect(r.status, r.out).not.toBe(0);
      expect(r.out).not.toMatch(/Verified Successfully/);
    }
  });

  it('openssl signing the same bytes with the original PEM gives the byte-identical signature (one key, Ed25519 is deterministic)', () => {
    const { tbs, sig } = tbsAndSig();
    w.write('tbs.bin', tbs);
    const theirs = ossl('pkeyutl', '-sign', '-inkey', encrypted, '-passin', `pass:${PEM_PASS}`, '-rawin', '-in', join(w.dir, 'tbs.bin'));
    expect(new Uint8Array(theirs)).toEqual(sig);
  });
});
