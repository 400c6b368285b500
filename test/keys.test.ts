/**
 * host/keys.ts in-process: key generation, encryption at rest, unlocking, and every way a key file
 * can be wrong. Passphrases come from a PassphraseSource function, never from the environment
 * (except for the one test of the default source). Codes are asserted, never message text.
 */
import { createDecipheriv, createPrivateKey, createPublicKey, scryptSync } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyId, verifyEd25519 } from '../device/index.js';
import { FwsealError } from '../host/errors.js';
import { generateKey, loadPublicKey, loadSigningKey, NAME_PATTERN, signingKeyFromSeed } from '../host/keys.js';
import { defaultPassphraseSource, type PassphraseSource } from '../host/passphrase.js';
import { toHex } from '../shared/bytes.js';
import { CODES, type CodeName } from '../shared/codes.js';

const PASS = 'correct horse battery staple';

type Call = { purpose: string; confirm: boolean };
/** A passphrase source that records how it was asked. */
function source(passphrase: string = PASS): PassphraseSource & { calls: Call[] } {
  const calls: Call[] = [];
  const fn = ((purpose: string, confirm: boolean) => {
    calls.push({ purpose, confirm });
    return passphrase;
  }) as PassphraseSource & { calls: Call[] };
  fn.calls = calls;
  return fn;
}

/** Run `f`, require an FwsealError, return it. */
function fwsealError(f: () => unknown): FwsealError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(FwsealError);
    return e as FwsealError;
  }
  throw new Error('expected an FwsealError, nothing was thrown');
}

function expectCode(f: () => unknown, name: CodeName): void {
  const e = fwsealError(f);
  expect(e.codeName).toBe(name);
  expect(e.code).toBe(CODES[name]);
}

type KeyFile = {
  type: string;
  version: number;
  algorithm: string;
  name: string;
  keyId: string;
  publicKey: string;
  kdf: { name: string; N: number; r: number; p: number; salt: string };
  cipher: { name: string; iv: string; ciphertext: string; tag: string };
};

const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as KeyFile;
const unb64 = (s: string) => Buffer.from(s, 'base64');

/**
 * Decrypt a key file independently of host/keys.ts, following the format it documents
 * (scrypt -> AES-256-GCM with a 16-byte tag, associated data = every non-cipher field in file order).
 * Used only to prove that the ciphertext really is the seed and that the seed is never written out.
 */
function independentDecrypt(f: KeyFile, passphrase: string): Buffer {
  const aad = Buffer.from(JSON.stringify([f.type, f.version, f.algorithm, f.name, f.keyId, f.publicKey, f.kdf.name, f.kdf.N, f.kdf.r, f.kdf.p, f.kdf.salt]));
  const key = scryptSync(passphrase.normalize('NFC'), unb64(f.kdf.salt), 32, {
    N: f.kdf.N,
    r: f.kdf.r,
    p: f.kdf.p,
    maxmem: 256 * f.kdf.N * f.kdf.r + 1024 * 1024,
  });
  const d = createDecipheriv('aes-256-gcm', key, unb64(f.cipher.iv), { authTagLength: 16 });
  d.setAAD(aad);
  d.setAuthTag(unb64(f.cipher.tag));
  return Buffer.concat([d.update(unb64(f.cipher.ciphertext)), d.final()]);
}

/** Every encoding of some bytes a careless writer might use. */
function encodings(b: Uint8Array): string[] {
  const buf = Buffer.from(b);
  return [buf.toString('hex'), buf.toString('hex').toUpperCase(), buf.toString('base64'), buf.toString('base64').replace(/=+$/, ''), buf.toString('base64url')];
}

let dir: string;
let counter = 0;
/** A fresh folder for one test. */
function freshDir(): string {
  const d = join(dir, `t${++counter}`);
  mkdirSync(d);
  return d;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fwseal-keys-test-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('generateKey and loadSigningKey round trip', () => {
  it('signs with the unlocked key and the device verifier accepts the signature', () => {
    const d = freshDir();
    const gen = source();
    const k = generateKey('release-1', d, gen);
    expect(k.keyPath).toBe(join(d, 'release-1.key'));
    expect(k.pubPath).toBe(join(d, 'release-1.pub'));
    expect(k.name).toBe('release-1');
    expect(k.publicKey).toHaveLength(32);
    expect(toHex(k.keyId)).toBe(toHex(keyId(k.publicKey)));
    // A new key asks once, with confirmation.
    expect(gen.calls).toHaveLength(1);
    expect(gen.calls[0].confirm).toBe(true);

    const unlock = source();
    const signer = loadSigningKey(k.keyPath, unlock);
    expect(unlock.calls).toHaveLength(1);
    expect(unlock.calls[0].confirm).toBe(false);
    expect(toHex(signer.publicKey)).toBe(toHex(k.publicKey));
    expect(toHex(signer.keyId)).toBe(toHex(k.keyId));

    const message = new TextEncoder().encode('firmware manifest bytes');
    const sig = signer.sign(message);
    expect(sig).toHaveLength(64);
    expect(verifyEd25519(sig, message, k.publicKey)).toBe(true);
    // The check can fail: another message, another key, a flipped signature bit.
    expect(verifyEd25519(sig, new TextEncoder().encode('firmware manifest byteS'), k.publicKey)).toBe(false);
    const flipped = sig.slice();
    flipped[10] ^= 1;
    expect(verifyEd25519(flipped, message, k.publicKey)).toBe(false);
    const other = generateKey('release-2', d, source());
    expect(verifyEd25519(sig, message, other.publicKey)).toBe(false);
  });

  it('the public file and the public half of the private file name the same key', () => {
    const d = freshDir();
    const k = generateKey('root-a', d, source());
    for (const path of [k.pubPath, k.keyPath]) {
      const pub = loadPublicKey(path);
      expect(pub.name).toBe('root-a');
      expect(toHex(pub.publicKey)).toBe(toHex(k.publicKey));
      expect(toHex(pub.keyId)).toBe(toHex(k.keyId));
    }
  });

  it('the ciphertext is the encrypted Ed25519 seed of the public key (independent decryption)', () => {
    const d = freshDir();
    const k = generateKey('seedcheck', d, source());
    const file = readJson(k.keyPath);
    const seed = independentDecrypt(file, PASS);
    expect(seed).toHaveLength(32);
    const fromSeed = signingKeyFromSeed('x', seed);
    expect(toHex(fromSeed.publicKey)).toBe(toHex(k.publicKey));
    // Ed25519 is deterministic: the unlocked key and the seed sign identically.
    const msg = new TextEncoder().encode('same bytes');
    expect(toHex(loadSigningKey(k.keyPath, source()).sign(msg))).toBe(toHex(fromSeed.sign(msg)));
  });

  it('passphrases are compared after NFC normalisation', () => {
    const d = freshDir();
    const k = generateKey('nfc', d, source('caf\u00e9'));
    expect(toHex(loadSigningKey(k.keyPath, source('cafe\u0301')).publicKey)).toBe(toHex(k.publicKey));
    expectCode(() => loadSigningKey(k.keyPath, source('cafe')), 'WRONG_PASSPHRASE');
  });
});

describe('files on disk', () => {
  it('the private key file is 0600 whatever the umask; the public file is not writable by others', () => {
    const old = process.umask(0);
    try {
      const d = freshDir();
      const k = generateKey('mode', d, source());
      expect(statSync(k.keyPath).mode & 0o777).toBe(0o600);
      expect(statSync(k.pubPath).mode & 0o022).toBe(0);
      expect(statSync(k.keyPath).isFile()).toBe(true);
    } finally {
      process.umask(old);
    }
    const d2 = freshDir();
    const k2 = generateKey('mode2', d2, source());
    expect(statSync(k2.keyPath).mode & 0o777).toBe(0o600);
    // Only the two files, no temporary file left behind.
    expect(readdirSync(d2).sort()).toEqual(['mode2.key', 'mode2.pub']);
  });

  it('the key file holds exactly the documented fields, with the documented sizes', () => {
    const d = freshDir();
    const k = generateKey('fields', d, source());
    const f = readJson(k.keyPath);
    expect(Object.keys(f).sort()).toEqual(['algorithm', 'cipher', 'kdf', 'keyId', 'name', 'publicKey', 'type', 'version']);
    expect(Object.keys(f.kdf).sort()).toEqual(['N', 'name', 'p', 'r', 'salt']);
    expect(Object.keys(f.cipher).sort()).toEqual(['ciphertext', 'iv', 'name', 'tag']);
    expect(f.type).toBe('fwseal-private-key');
    expect(f.version).toBe(1);
    expect(f.algorithm).toBe('Ed25519');
    expect(f.name).toBe('fields');
    expect(f.keyId).toBe(toHex(k.keyId));
    expect(f.publicKey).toBe(toHex(k.publicKey));
    expect(f.kdf.name).toBe('scrypt');
    expect(f.kdf.N).toBeGreaterThanOrEqual(16384);
    expect(f.kdf.N & (f.kdf.N - 1)).toBe(0);
    expect(f.cipher.name).toBe('aes-256-gcm');
    expect(unb64(f.kdf.salt)).toHaveLength(16);
    expect(unb64(f.cipher.iv)).toHaveLength(12);
    expect(unb64(f.cipher.tag)).toHaveLength(16);
    expect(unb64(f.cipher.ciphertext)).toHaveLength(32);

    const pub = JSON.parse(readFileSync(k.pubPath, 'utf8')) as Record<string, unknown>;
    expect(Object.keys(pub).sort()).toEqual(['algorithm', 'keyId', 'name', 'publicKey', 'type', 'version']);
    expect(pub.type).toBe('fwseal-public-key');
    expect(pub.publicKey).toBe(toHex(k.publicKey));
  });

  it('the seed appears in neither file in any encoding', () => {
    const d = freshDir();
    const k = generateKey('noleak', d, source());
    const keyText = readFileSync(k.keyPath, 'utf8');
    const pubText = readFileSync(k.pubPath, 'utf8');
    const seed = independentDecrypt(JSON.parse(keyText) as KeyFile, PASS);
    // The PKCS#8 and JWK forms node:crypto would export are absent too.
    const pkcs8 = createPrivateKey({
      key: { kty: 'OKP', crv: 'Ed25519', d: seed.toString('base64url'), x: Buffer.from(k.publicKey).toString('base64url') },
      format: 'jwk',
    }).export({ format: 'der', type: 'pkcs8' });
    expect(createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' }).x).toBe(
      Buffer.from(k.publicKey).toString('base64url'),
    );
    for (const text of [keyText, pubText]) {
      for (const enc of [...encodings(seed), ...encodings(pkcs8)]) expect(text.includes(enc)).toBe(false);
    }
  });

  it('two keys made with the same passphrase differ in salt, iv and ciphertext', () => {
    const d = freshDir();
    const a = readJson(generateKey('same-a', d, source()).keyPath);
    const b = readJson(generateKey('same-b', d, source()).keyPath);
    expect(a.kdf.salt).not.toBe(b.kdf.salt);
    expect(a.cipher.iv).not.toBe(b.cipher.iv);
    expect(a.cipher.ciphertext).not.toBe(b.cipher.ciphertext);
    expect(a.cipher.tag).not.toBe(b.cipher.tag);
    expect(a.publicKey).not.toBe(b.publicKey);
  });

  it('keygen refuses to overwrite an existing key (IO) and leaves both files untouched', () => {
    const d = freshDir();
    const k = generateKey('once', d, source());
    const keyBefore = readFileSync(k.keyPath);
    const pubBefore = readFileSync(k.pubPath);
    expectCode(() => generateKey('once', d, source('another passphrase')), 'IO');
    expect(readFileSync(k.keyPath).equals(keyBefore)).toBe(true);
    expect(readFileSync(k.pubPath).equals(pubBefore)).toBe(true);
    // The old key still unlocks with the old passphrase.
    expect(toHex(loadSigningKey(k.keyPath, source()).keyId)).toBe(toHex(k.keyId));
  });

  it('keygen into a folder that does not exist is an IO error', () => {
    expectCode(() => generateKey('nowhere', join(dir, 'does', 'not', 'exist'), source()), 'IO');
  });

  it.each([
    ['empty', ''],
    ['leading dot', '.hidden'],
    ['leading dash', '-rf'],
    ['slash', 'a/b'],
    ['parent', '../escape'],
    ['space', 'a b'],
    ['65 characters', 'k'.repeat(65)],
    ['non-ASCII', 'schl\u00fcssel'],
    ['NUL', 'a\u0000b'],
    ['newline', 'a\nb'],
  ])('a bad key name (%s) is USAGE, asks no passphrase and writes nothing', (_label, name) => {
    const d = freshDir();
    const s = source();
    expectCode(() => generateKey(name, d, s), 'USAGE');
    expect(s.calls).toHaveLength(0);
    expect(readdirSync(d)).toEqual([]);
    expect(readdirSync(dir).some((n) => n.startsWith('escape'))).toBe(false);
  });

  it('names at the edge of the pattern are accepted', () => {
    const d = freshDir();
    for (const name of ['k'.repeat(64), 'a.b_c-D9', '0']) {
      expect(NAME_PATTERN.test(name)).toBe(true);
      const k = generateKey(name, d, source());
      expect(statSync(k.keyPath).isFile()).toBe(true);
    }
  });
});

describe('unlocking refuses', () => {
  let keyPath: string;
  let original: KeyFile;
  let otherPublic: { publicKey: string; keyId: string };

  beforeAll(() => {
    const d = freshDir();
    keyPath = generateKey('victim', d, source()).keyPath;
    original = readJson(keyPath);
    const other = generateKey('other', d, source());
    otherPublic = { publicKey: toHex(other.publicKey), keyId: toHex(other.keyId) };
  });

  /** Write a variant of the key file (mode 0600) and return its path. */
  function variant(content: string | Uint8Array): string {
    const d = freshDir();
    const p = join(d, 'variant.key');
    writeFileSync(p, content, { mode: 0o600 });
    chmodSync(p, 0o600);
    return p;
  }

  function mutated(mut: (f: KeyFile) => void): string {
    const f = structuredClone(original);
    mut(f);
    return variant(JSON.stringify(f, null, 2));
  }

  const flipB64 = (s: string, at = 0) => {
    const b = unb64(s);
    b[at] ^= 0x01;
    return b.toString('base64');
  };

  it('the untampered copy unlocks (so every refusal below is caused by its one change)', () => {
    const p = mutated(() => {});
    expect(toHex(loadSigningKey(p, source()).publicKey)).toBe(original.publicKey);
  });

  it('a wrong passphrase is WRONG_PASSPHRASE', () => {
    expectCode(() => loadSigningKey(keyPath, source('wrong horse battery staple')), 'WRONG_PASSPHRASE');
    expectCode(() => loadSigningKey(keyPath, source(`${PASS} `)), 'WRONG_PASSPHRASE');
  });

  it.each(['0640', '0604', '0660', '0606', '0644', '0701', '0610'])('mode %s is KEY_FILE_PERMISSIONS, before any passphrase is asked', (mode) => {
    const p = variant(readFileSync(keyPath));
    chmodSync(p, parseInt(mode, 8));
    const s = source();
    expectCode(() => loadSigningKey(p, s), 'KEY_FILE_PERMISSIONS');
    expect(s.calls).toHaveLength(0);
    chmodSync(p, 0o600);
    expect(toHex(loadSigningKey(p, source()).publicKey)).toBe(original.publicKey);
  });

  it('owner-only modes stricter than 0600 are accepted', () => {
    const p = variant(readFileSync(keyPath));
    chmodSync(p, 0o400);
    expect(toHex(loadSigningKey(p, source()).publicKey)).toBe(original.publicKey);
  });

  it('a missing key file is IO', () => {
    expectCode(() => loadSigningKey(join(dir, 'absent.key'), source()), 'IO');
  });

  const cases: [string, CodeName, (f: KeyFile) => void][] = [
    // The AEAD catches any change to the encrypted part or to what it authenticates.
    [
      'one ciphertext bit flipped',
      'WRONG_PASSPHRASE',
      (f) => {
        f.cipher.ciphertext = flipB64(f.cipher.ciphertext, 5);
      },
    ],
    [
      'the last ciphertext byte flipped',
      'WRONG_PASSPHRASE',
      (f) => {
        f.cipher.ciphertext = flipB64(f.cipher.ciphertext, 31);
      },
    ],
    [
      'ciphertext shortened to 31 bytes',
      'KEY_FORMAT',
      (f) => {
        f.cipher.ciphertext = unb64(f.cipher.ciphertext).subarray(0, 31).toString('base64');
      },
    ],
    [
      'one tag bit flipped',
      'WRONG_PASSPHRASE',
      (f) => {
        f.cipher.tag = flipB64(f.cipher.tag, 15);
      },
    ],
    [
      'one iv bit flipped',
      'WRONG_PASSPHRASE',
      (f) => {
        f.cipher.iv = flipB64(f.cipher.iv);
      },
    ],
    [
      'another salt',
      'WRONG_PASSPHRASE',
      (f) => {
        f.kdf.salt = flipB64(f.kdf.salt);
      },
    ],
    [
      'another valid scrypt N (authenticated)',
      'WRONG_PASSPHRASE',
      (f) => {
        f.kdf.N = f.kdf.N === 16384 ? 32768 : 16384;
      },
    ],
    [
      'the name changed (authenticated)',
      'WRONG_PASSPHRASE',
      (f) => {
        f.name = 'impostor';
      },
    ],
    [
      'publicKey and keyId both swapped for another key (authenticated)',
      'WRONG_PASSPHRASE',
      (f) => {
        f.publicKey = otherPublic.publicKey;
        f.keyId = otherPublic.keyId;
      },
    ],
    // Structure checks.
    [
      'publicKey changed, keyId kept',
      'KEY_FORMAT',
      (f) => {
        f.publicKey = otherPublic.publicKey;
      },
    ],
    [
      'publicKey not 32 bytes',
      'KEY_FORMAT',
      (f) => {
        f.publicKey = f.publicKey.slice(0, 62);
        f.keyId = toHex(keyId(Buffer.from(f.publicKey, 'hex')));
      },
    ],
    [
      'publicKey not hex',
      'KEY_FORMAT',
      (f) => {
        f.publicKey = `zz${f.publicKey.slice(2)}`;
      },
    ],
    [
      'keyId changed',
      'KEY_FORMAT',
      (f) => {
        f.keyId = '00'.repeat(16);
      },
    ],
    [
      'scrypt N huge (2^30)',
      'KEY_FORMAT',
      (f) => {
        f.kdf.N = 2 ** 30;
      },
    ],
    [
      'scrypt N huge (2^40)',
      'KEY_FORMAT',
      (f) => {
        f.kdf.N = 2 ** 40;
      },
    ],
    [
      'scrypt N not a power of two',
      'KEY_FORMAT',
      (f) => {
        f.kdf.N = 20000;
      },
    ],
    [
      'scrypt N below the floor',
      'KEY_FORMAT',
      (f) => {
        f.kdf.N = 1024;
      },
    ],
    [
      'scrypt N a string',
      'KEY_FORMAT',
      (f) => {
        (f.kdf as { N: unknown }).N = '32768';
      },
    ],
    [
      'scrypt N fractional',
      'KEY_FORMAT',
      (f) => {
        f.kdf.N = 32768.5;
      },
    ],
    [
      'scrypt r = 0',
      'KEY_FORMAT',
      (f) => {
        f.kdf.r = 0;
      },
    ],
    [
      'scrypt p = 17',
      'KEY_FORMAT',
      (f) => {
        f.kdf.p = 17;
      },
    ],
    [
      'another KDF',
      'KEY_FORMAT',
      (f) => {
        f.kdf.name = 'pbkdf2';
      },
    ],
    [
      'another cipher',
      'KEY_FORMAT',
      (f) => {
        f.cipher.name = 'aes-128-gcm';
      },
    ],
    [
      'no cipher',
      'KEY_FORMAT',
      (f) => {
        delete (f as Partial<KeyFile>).cipher;
      },
    ],
    [
      'no kdf',
      'KEY_FORMAT',
      (f) => {
        delete (f as Partial<KeyFile>).kdf;
      },
    ],
    [
      'salt not base64',
      'KEY_FORMAT',
      (f) => {
        f.kdf.salt = '!!not base64!!';
      },
    ],
    [
      'ciphertext not base64',
      'KEY_FORMAT',
      (f) => {
        f.cipher.ciphertext = 'a b c';
      },
    ],
    [
      'ciphertext not a string',
      'KEY_FORMAT',
      (f) => {
        (f.cipher as { ciphertext: unknown }).ciphertext = 42;
      },
    ],
    [
      'version 2',
      'KEY_FORMAT',
      (f) => {
        f.version = 2;
      },
    ],
    [
      'another algorithm',
      'KEY_FORMAT',
      (f) => {
        f.algorithm = 'Ed448';
      },
    ],
    [
      'a public key file type',
      'KEY_FORMAT',
      (f) => {
        f.type = 'fwseal-public-key';
      },
    ],
    // A GCM tag shorter than 16 bytes is a damaged file, not a key: it must never unlock.
    [
      'tag truncated to 12 bytes',
      'KEY_FORMAT',
      (f) => {
        f.cipher.tag = unb64(f.cipher.tag).subarray(0, 12).toString('base64');
      },
    ],
    [
      'tag truncated to 4 bytes',
      'KEY_FORMAT',
      (f) => {
        f.cipher.tag = unb64(f.cipher.tag).subarray(0, 4).toString('base64');
      },
    ],
  ];

  it.each(cases)('%s -> %s', (_label, code, mut) => {
    expectCode(() => loadSigningKey(mutated(mut), source()), code);
  });

  it.each([
    ['not JSON', 'this is not a key file\n'],
    ['truncated JSON', '{"type": "fwseal-private-key", "version": 1,'],
    ['a JSON array', '[1, 2, 3]'],
    ['JSON null', 'null'],
    ['a JSON string', '"fwseal-private-key"'],
    ['an empty file', ''],
    ['binary', Buffer.from([0xd8, 0x62, 0x84, 0x40, 0xa0, 0x41, 0x00, 0x80])],
  ] as [string, string | Uint8Array][])('%s -> KEY_FORMAT', (_label, content) => {
    expectCode(() => loadSigningKey(variant(content), source()), 'KEY_FORMAT');
  });

  it('a public key file (made 0600) is not a signing key: KEY_FORMAT', () => {
    const d = freshDir();
    const k = generateKey('pubonly', d, source());
    chmodSync(k.pubPath, 0o600);
    expectCode(() => loadSigningKey(k.pubPath, source()), 'KEY_FORMAT');
  });

  it('loadPublicKey refuses non-key files with KEY_FORMAT', () => {
    expectCode(() => loadPublicKey(variant('not json')), 'KEY_FORMAT');
    expectCode(() => loadPublicKey(variant(JSON.stringify({ type: 'something-else', version: 1, algorithm: 'Ed25519' }))), 'KEY_FORMAT');
    expectCode(
      () =>
        loadPublicKey(
          mutated((f) => {
            f.publicKey = otherPublic.publicKey;
          }),
        ),
      'KEY_FORMAT',
    );
    expectCode(() => loadPublicKey(join(dir, 'absent.pub')), 'IO');
  });
});

describe('the default passphrase source', () => {
  const saved = process.env.FWSEAL_PASSPHRASE;
  afterAll(() => {
    if (saved === undefined) delete process.env.FWSEAL_PASSPHRASE;
    else process.env.FWSEAL_PASSPHRASE = saved;
  });

  it('takes FWSEAL_PASSPHRASE, refuses an empty one with NO_PASSPHRASE', () => {
    process.env.FWSEAL_PASSPHRASE = 'from the environment';
    expect(defaultPassphraseSource('key X', false)).toBe('from the environment');
    const d = freshDir();
    const k = generateKey('envkey', d);
    expect(toHex(loadSigningKey(k.keyPath, source('from the environment')).keyId)).toBe(toHex(k.keyId));
    expect(toHex(loadSigningKey(k.keyPath).keyId)).toBe(toHex(k.keyId));
    process.env.FWSEAL_PASSPHRASE = '';
    expectCode(() => defaultPassphraseSource('key X', false), 'NO_PASSPHRASE');
    expectCode(() => loadSigningKey(k.keyPath), 'NO_PASSPHRASE');
  });
});
