/**
 * Release and root keys on the host: Ed25519 key pairs, private keys encrypted at rest
 * (scrypt -> AES-256-GCM, node:crypto), files 0600, loose permissions refused.
 */
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign as nodeSign,
  randomBytes,
  scryptSync,
} from 'node:crypto';
import { lstatSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { isAcceptablePublicKey, isTrustableRoleKey, keyId } from '../device/index.js';
import { fromHex, toHex } from '../shared/bytes.js';
import { FwsealError } from './errors.js';
import { readFileLimited, writeFileAtomic, writeSecretFile } from './io.js';
import { defaultPassphraseSource, type PassphraseSource } from './passphrase.js';

export const KEY_FILE_MAX_BYTES = 4096;
/** scrypt cost: N = 2^15, r = 8, p = 1 (about 32 MiB and 0.1 s per unlock). */
const SCRYPT = Object.freeze({ N: 32768, r: 8, p: 1 });

export type PublicKeyInfo = { readonly name: string; readonly publicKey: Uint8Array; readonly keyId: Uint8Array };
export type SigningKey = PublicKeyInfo & { sign(message: Uint8Array): Uint8Array };

type PrivateKeyFile = {
  type: 'fwseal-private-key';
  version: 1;
  algorithm: 'Ed25519';
  name: string;
  keyId: string;
  publicKey: string;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  cipher: { name: 'aes-256-gcm'; iv: string; ciphertext: string; tag: string };
};

type PublicKeyFile = { type: 'fwseal-public-key'; version: 1; algorithm: 'Ed25519'; name: string; keyId: string; publicKey: string };

const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
const unb64 = (s: unknown): Buffer => {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new FwsealError('KEY_FORMAT', 'bad base64 field');
  return Buffer.from(s, 'base64');
};

/** The bytes the AEAD authenticates besides the seed: everything in the file but the cipher fields. */
function associatedData(f: Omit<PrivateKeyFile, 'cipher'>): Buffer {
  return Buffer.from(JSON.stringify([f.type, f.version, f.algorithm, f.name, f.keyId, f.publicKey, f.kdf.name, f.kdf.N, f.kdf.r, f.kdf.p, f.kdf.salt]));
}

function deriveKey(passphrase: string, salt: Uint8Array, kdf: { N: number; r: number; p: number }): Buffer {
  return scryptSync(passphrase.normalize('NFC'), salt, 32, { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r + 1024 * 1024 });
}

/** PKCS#8 DER prefix of an Ed25519 private key (RFC 8410 §7); the 32-byte seed follows. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A signing key from a raw 32-byte seed (tests, vectors, and keys held elsewhere). */
export function signingKeyFromSeed(name: string, seed: Uint8Array): SigningKey {
  if (seed.length !== 32) throw new FwsealError('KEY_FORMAT', 'an Ed25519 seed is 32 bytes');
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const x = createPublicKey(key).export({ format: 'jwk' }).x as string;
  return signerFromSeed(name, seed, new Uint8Array(Buffer.from(x, 'base64url')));
}

function signerFromSeed(name: string, seed: Uint8Array, publicKey: Uint8Array): SigningKey {
  const key = createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: Buffer.from(seed).toString('base64url'), x: Buffer.from(publicKey).toString('base64url') },
    format: 'jwk',
  });
  return Object.freeze({
    name,
    publicKey,
    keyId: keyId(publicKey),
    sign: (message: Uint8Array) => new Uint8Array(nodeSign(null, message, key)),
  });
}

export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** keygen: DIR/NAME.key (encrypted, 0600) and DIR/NAME.pub. Returns the public part. */
export function generateKey(
  name: string,
  dir: string,
  passphrases: PassphraseSource = defaultPassphraseSource,
): PublicKeyInfo & { keyPath: string; pubPath: string } {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  const seed = Buffer.from(jwk.d as string, 'base64url');
  const pub = new Uint8Array(Buffer.from(jwk.x as string, 'base64url'));
  try {
    return writeKeyPair(name, dir, seed, pub, passphrases, `new key ${name}`);
  } finally {
    seed.fill(0);
  }
}

/** The paths of key NAME in DIR, refused (USAGE, IO) before anything is asked or written when the name is bad or taken. */
export function keyPairPaths(name: string, dir: string, files: readonly ('key' | 'pub')[] = ['key', 'pub']): { keyPath: string; pubPath: string } {
  if (!NAME_PATTERN.test(name)) throw new FwsealError('USAGE', `key name must match ${NAME_PATTERN.source}`);
  const keyPath = join(dir, `${name}.key`);
  const pubPath = join(dir, `${name}.pub`);
  for (const f of files) {
    const path = f === 'key' ? keyPath : pubPath;
    if (nameTaken(path)) throw new FwsealError('IO', `${path} exists; refusing to overwrite a key`);
  }
  return { keyPath, pubPath };
}

/**
 * Write DIR/NAME.key (the seed encrypted with a new passphrase, 0600) and DIR/NAME.pub: keygen and
 * `key import`. The caller wipes `seed`. Neither file is ever replaced (SPEC.md §14 H6).
 */
export function writeKeyPair(
  name: string,
  dir: string,
  seed: Uint8Array,
  pub: Uint8Array,
  passphrases: PassphraseSource,
  purpose: string,
): PublicKeyInfo & { keyPath: string; pubPath: string } {
  const { keyPath, pubPath } = keyPairPaths(name, dir);
  if (seed.length !== 32 || !isAcceptablePublicKey(pub)) throw new FwsealError('KEY_FORMAT', 'not an acceptable Ed25519 key pair');
  // Before the passphrase is asked for; the writes below refuse an existing name again, atomically.
  const passphrase = passphrases(purpose, true);
  const kid = keyId(pub);
  const salt = randomBytes(16);
  const iv = randomBytes(12);
  const header = {
    type: 'fwseal-private-key' as const,
    version: 1 as const,
    algorithm: 'Ed25519' as const,
    name,
    keyId: toHex(kid),
    publicKey: toHex(pub),
    kdf: { name: 'scrypt' as const, ...SCRYPT, salt: b64(salt) },
  };
  const cipher = createCipheriv('aes-256-gcm', deriveKey(passphrase, salt, SCRYPT), iv);
  cipher.setAAD(associatedData(header));
  const ciphertext = Buffer.concat([cipher.update(seed), cipher.final()]);
  const file: PrivateKeyFile = { ...header, cipher: { name: 'aes-256-gcm', iv: b64(iv), ciphertext: b64(ciphertext), tag: b64(cipher.getAuthTag()) } };
  writeSecretFile(keyPath, `${JSON.stringify(file, null, 2)}\n`);
  try {
    writePublicKeyFile(pubPath, name, pub);
  } catch (e) {
    unlinkSync(keyPath); // the key this call just created: no private key without its public file
    throw e;
  }
  return { name, publicKey: pub, keyId: kid, keyPath, pubPath };
}

/** NAME.pub for a key held elsewhere (a token, a signing service) or written by writeKeyPair; never replaces a file. */
export function writePublicKeyFile(pubPath: string, name: string, pub: Uint8Array): PublicKeyInfo {
  if (!NAME_PATTERN.test(name)) throw new FwsealError('USAGE', `key name must match ${NAME_PATTERN.source}`);
  if (!isTrustableRoleKey(pub)) throw new FwsealError('UNSUPPORTED_KEY', 'not an acceptable Ed25519 public key');
  const kid = keyId(pub);
  const pubFile: PublicKeyFile = { type: 'fwseal-public-key', version: 1, algorithm: 'Ed25519', name, keyId: toHex(kid), publicKey: toHex(pub) };
  writeFileAtomic(pubPath, `${JSON.stringify(pubFile, null, 2)}\n`, { replace: false });
  return { name, publicKey: pub, keyId: kid };
}

/** Anything at `path`, a dangling symlink included. */
function nameTaken(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function parseJson(bytes: Uint8Array, path: string): Record<string, unknown> {
  try {
    const v = JSON.parse(Buffer.from(bytes).toString('utf8'));
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    /* fall through */
  }
  throw new FwsealError('KEY_FORMAT', `${path} is not an fwseal key file`);
}

function checkPublicPart(obj: Record<string, unknown>, path: string): PublicKeyInfo {
  if (obj.algorithm !== 'Ed25519' || obj.version !== 1) throw new FwsealError('KEY_FORMAT', `${path}: unsupported key file version or algorithm`);
  const pub = typeof obj.publicKey === 'string' ? fromHex(obj.publicKey) : null;
  if (pub?.length !== 32 || !isTrustableRoleKey(pub)) throw new FwsealError('KEY_FORMAT', `${path}: invalid Ed25519 public key`);
  const kid = keyId(pub);
  if (obj.keyId !== toHex(kid)) throw new FwsealError('KEY_FORMAT', `${path}: key id does not match the public key`);
  return { name: typeof obj.name === 'string' ? obj.name : path, publicKey: pub, keyId: kid };
}

/** Load a public key from a .pub file (or the public half of a .key file). */
export function loadPublicKey(path: string): PublicKeyInfo {
  const obj = parseJson(readFileLimited(path, KEY_FILE_MAX_BYTES, 'key file'), path);
  if (obj.type !== 'fwseal-public-key' && obj.type !== 'fwseal-private-key') throw new FwsealError('KEY_FORMAT', `${path} is not an fwseal key file`);
  return checkPublicPart(obj, path);
}

/**
 * A public key where only a public key belongs (trust init --root/--release, revoke --key, attach --pub,
 * incident --key): a private key file there is named as such (KEY_FORMAT), so .key files stay where they sign.
 */
export function loadPublicKeyFile(path: string): PublicKeyInfo {
  const obj = parseJson(readFileLimited(path, KEY_FILE_MAX_BYTES, 'key file'), path);
  if (obj.type === 'fwseal-private-key') throw new FwsealError('KEY_FORMAT', `${path} is a private key file; give its public key file (NAME.pub) here`);
  if (obj.type !== 'fwseal-public-key') throw new FwsealError('KEY_FORMAT', `${path} is not an fwseal public key file`);
  return checkPublicPart(obj, path);
}

/** `obj` of `path` is an fwseal public key file: named as such (KEY_FORMAT) where a private key is wanted. */
function refusePublicKeyFile(obj: Record<string, unknown> | null, path: string): void {
  if (obj?.type === 'fwseal-public-key') throw new FwsealError('KEY_FORMAT', `${path} is a public key file; a private key file (NAME.key) signs`);
}

function tryParseJson(bytes: Uint8Array, path: string): Record<string, unknown> | null {
  try {
    return parseJson(bytes, path);
  } catch {
    return null;
  }
}

/** Unlock a private key file. Refuses files that group or others can read or write. */
export function loadSigningKey(path: string, passphrases: PassphraseSource = defaultPassphraseSource): SigningKey {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (e) {
    throw new FwsealError('IO', `cannot open key file ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const bytes = readFileLimited(path, KEY_FILE_MAX_BYTES, 'key file');
  // Before the mode: a .pub (0644 by design) given to --key is the wrong kind of key, not a permissions problem (issue 17).
  refusePublicKeyFile(tryParseJson(bytes, path), path);
  if ((mode & 0o077) !== 0) {
    throw new FwsealError('KEY_FILE_PERMISSIONS', `${path} has mode ${(mode & 0o777).toString(8)}; private keys must be 0600 (chmod 600 ${path})`);
  }
  const obj = parseJson(bytes, path);
  if (obj.type !== 'fwseal-private-key') throw new FwsealError('KEY_FORMAT', `${path} is not a private key file`);
  const pub = checkPublicPart(obj, path);
  const kdf = obj.kdf as PrivateKeyFile['kdf'] | undefined;
  const cipherFields = obj.cipher as PrivateKeyFile['cipher'] | undefined;
  if (kdf?.name !== 'scrypt' || !cipherFields || cipherFields.name !== 'aes-256-gcm') throw new FwsealError('KEY_FORMAT', `${path}: unsupported encryption`);
  // Bounded so that a hand-edited file cannot make the tool allocate more than 256 MiB.
  for (const [v, lo, hi] of [
    [kdf.N, 16384, 1 << 18],
    [kdf.r, 1, 16],
    [kdf.p, 1, 4],
  ] as const) {
    if (!Number.isInteger(v) || v < lo || v > hi) throw new FwsealError('KEY_FORMAT', `${path}: scrypt parameters out of range`);
  }
  if (128 * kdf.N * kdf.r > 256 * 1024 * 1024) throw new FwsealError('KEY_FORMAT', `${path}: scrypt parameters need too much memory`);
  if ((kdf.N & (kdf.N - 1)) !== 0) throw new FwsealError('KEY_FORMAT', `${path}: scrypt N is not a power of two`);
  const salt = unb64(kdf.salt);
  const iv = unb64(cipherFields.iv);
  const tag = unb64(cipherFields.tag);
  const ciphertext = unb64(cipherFields.ciphertext);
  // Exact sizes before anything is derived: a truncated GCM tag must never authenticate.
  if (salt.length !== 16 || iv.length !== 12 || tag.length !== 16 || ciphertext.length !== 32) throw new FwsealError('KEY_FORMAT', `${path}: damaged key file`);
  const passphrase = passphrases(`key ${pub.name}`, false);
  const header = {
    type: 'fwseal-private-key' as const,
    version: 1 as const,
    algorithm: 'Ed25519' as const,
    name: String(obj.name),
    keyId: String(obj.keyId),
    publicKey: String(obj.publicKey),
    kdf,
  };
  let derived: Buffer;
  try {
    derived = deriveKey(passphrase, salt, kdf);
  } catch {
    throw new FwsealError('KEY_FORMAT', `${path}: scrypt parameters cannot be used on this machine`);
  }
  let seed: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', derived, iv, { authTagLength: 16 });
    decipher.setAAD(associatedData(header));
    decipher.setAuthTag(tag);
    seed = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
  } catch {
    throw new FwsealError('WRONG_PASSPHRASE', `cannot unlock ${path}: wrong passphrase or damaged file`);
  }
  if (seed.length !== 32) throw new FwsealError('KEY_FORMAT', `${path}: damaged key`);
  const signer = signerFromSeed(pub.name, seed, pub.publicKey);
  seed.fill(0);
  return signer;
}
