/**
 * Keys brought from elsewhere and public keys handed to other tools (SPEC.md §15.5): an Ed25519 key
 * in a PEM file (PKCS#8, RFC 5208 / RFC 5958, encrypted or not; SubjectPublicKeyInfo, RFC 5280) becomes
 * an fwseal key pair, and an fwseal public key becomes a SubjectPublicKeyInfo PEM (RFC 8410 §4) that
 * openssl, imgtool and cosign read. node:crypto parses and decrypts; the strict framing around it
 * (one PEM block, canonical base64, one DER item, the algorithm identifier) is checked here first,
 * because OpenSSL ignores bytes after the key.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign as nodeSign } from 'node:crypto';
import { mkdirSync, statSync } from 'node:fs';
import { isTrustableRoleKey, verifyEd25519 } from '../device/index.js';
import { bytesEqual } from '../shared/bytes.js';
import { LIMITS } from '../shared/limits.js';
import { FwsealError } from './errors.js';
import { readFileLimited } from './io.js';
import { KEY_FILE_MAX_BYTES, keyPairPaths, writeKeyPair, writePublicKeyFile } from './keys.js';
import { defaultPassphraseSource, type PassphraseSource, readTtyLine } from './passphrase.js';

/** id-Ed25519, OID 1.3.101.112, DER-encoded (RFC 8410 §3). */
const ED25519_OID = Uint8Array.of(0x06, 0x03, 0x2b, 0x65, 0x70);
/** PKCS#8 of an Ed25519 key as node:crypto exports it: this prefix, then the 32-byte seed (RFC 8410 §7). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
/** SubjectPublicKeyInfo of an Ed25519 key: this prefix, then the 32-byte public key (RFC 8410 §4). */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Signed and verified once per import (checkedPublicKey). */
const SELF_TEST = new TextEncoder().encode('fwseal key import: the public key belongs to the private key');

/** PEM labels of key formats that are never Ed25519: refused as UNSUPPORTED_KEY, not as a damaged file. */
const OTHER_ALGORITHM_LABELS = new Set(['RSA PRIVATE KEY', 'RSA PUBLIC KEY', 'EC PRIVATE KEY', 'DSA PRIVATE KEY', 'EC PARAMETERS', 'DH PARAMETERS']);

const DER = { INTEGER: 0x02, BIT_STRING: 0x03, OCTET_STRING: 0x04, SEQUENCE: 0x30 } as const;

type Tlv = { readonly tag: number; readonly body: Uint8Array; readonly end: number };

const badFormat = (path: string, what: string) => new FwsealError('KEY_FORMAT', `${path}: ${what}`);

/** One DER item at `at`: low tag numbers and minimal definite lengths only (X.690 §10.1). */
function readTlv(buf: Uint8Array, at: number, path: string): Tlv {
  if (at + 2 > buf.length) throw badFormat(path, 'DER item truncated');
  const tag = buf[at];
  if ((tag & 0x1f) === 0x1f) throw badFormat(path, 'DER tag form not used by keys');
  let len = buf[at + 1];
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 2 || start + n > buf.length) throw badFormat(path, 'DER length not definite or too long');
    len = 0;
    for (let i = 0; i < n; i++) len = (len << 8) | buf[start + i];
    if (len < 0x80 || (n === 2 && len < 0x100)) throw badFormat(path, 'DER length not minimal');
    start += n;
  }
  if (start + len > buf.length) throw badFormat(path, 'DER item runs past the end');
  return { tag, body: buf.subarray(start, start + len), end: start + len };
}

/** The items inside a constructed DER body, in order. */
function derChildren(body: Uint8Array, path: string): Tlv[] {
  const out: Tlv[] = [];
  for (let at = 0; at < body.length; ) {
    const item = readTlv(body, at, path);
    out.push(item);
    at = item.end;
  }
  return out;
}

/** The whole DER input as one SEQUENCE: nothing after it, which OpenSSL would silently ignore. */
function topSequence(der: Uint8Array, path: string): Tlv[] {
  const top = readTlv(der, 0, path);
  if (top.tag !== DER.SEQUENCE || top.end !== der.length) throw badFormat(path, 'not exactly one DER structure');
  return derChildren(top.body, path);
}

/** The algorithm identifier must name Ed25519 (RFC 8410 §3): anything else is UNSUPPORTED_KEY. */
function requireEd25519(alg: Tlv | undefined, path: string): void {
  if (alg?.tag !== DER.SEQUENCE || derChildren(alg.body, path).length === 0) throw badFormat(path, 'no algorithm identifier');
  // The first item is the OID, compared whole (tag, length, value): a longer OID differs in its length byte.
  if (!bytesEqual(alg.body.subarray(0, ED25519_OID.length), ED25519_OID)) {
    throw new FwsealError('UNSUPPORTED_KEY', `${path} holds a key that is not Ed25519; fwseal signs with Ed25519 only`);
  }
}

export type PemBlock = { readonly label: string; readonly der: Buffer };

/**
 * The one PEM block of a key file (RFC 7468): nothing but white space around it, canonical base64
 * inside. A second block, text before or after it, or a damaged body is KEY_FORMAT.
 */
export function readPem(bytes: Uint8Array, path: string): PemBlock {
  const text = Buffer.from(bytes).toString('latin1');
  const labels = [...text.matchAll(/-----BEGIN ([A-Z0-9 ]{1,40})-----/g)].map((l) => l[1]);
  if (labels.length === 0) throw badFormat(path, 'not a PEM file');
  // An RSA, EC or DSA file (even `openssl ecparam -genkey`, two blocks) is named for what it is.
  if (labels.some((l) => OTHER_ALGORITHM_LABELS.has(l)))
    throw new FwsealError('UNSUPPORTED_KEY', `${path} holds an RSA, EC or DSA key; fwseal signs with Ed25519 only`);
  if (labels.length > 1 || text.split('-----BEGIN').length > 2) throw badFormat(path, 'more than one PEM block; put one key in a file');
  const m = /^\s*-----BEGIN ([A-Z0-9 ]{1,40})-----\r?\n([A-Za-z0-9+/=\r\n]*)-----END ([A-Z0-9 ]{1,40})-----\s*$/.exec(text);
  if (m === null || m[1] !== m[3]) throw badFormat(path, 'damaged PEM block, or text around it');
  const b64 = m[2].replace(/\r?\n/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) throw badFormat(path, 'damaged base64 in the PEM block');
  const der = Buffer.from(b64, 'base64');
  if (der.length === 0 || der.toString('base64') !== b64) throw badFormat(path, 'damaged base64 in the PEM block');
  return { label: m[1], der };
}

/** What a PEM key file holds, once checked: a private key (its seed, which the caller wipes) or only a public key. */
export type DecodedKey =
  | { readonly kind: 'private'; readonly seed: Buffer; readonly publicKey: Uint8Array }
  | { readonly kind: 'public'; readonly publicKey: Uint8Array };

/** The 32-byte public key of an Ed25519 KeyObject; small-order and non-canonical keys are UNSUPPORTED_KEY (SPEC.md §7 P3, P4). */
function publicKeyOf(key: KeyObject, path: string): Uint8Array {
  const spki = key.export({ format: 'der', type: 'spki' });
  if (spki.length !== 44 || !spki.subarray(0, 12).equals(SPKI_ED25519_PREFIX)) throw badFormat(path, 'unexpected public key encoding');
  const pub = new Uint8Array(spki.subarray(12));
  if (!isTrustableRoleKey(pub))
    throw new FwsealError('UNSUPPORTED_KEY', `${path}: not an Ed25519 public key that devices accept (small order or not canonical)`);
  return pub;
}

/** A private KeyObject's seed, taken from node's own PKCS#8 export (bytes, so it can be wiped; a JWK would leave it in a string). */
function seedOf(key: KeyObject, path: string): Buffer {
  const der = key.export({ format: 'der', type: 'pkcs8' });
  try {
    if (der.length !== 48 || !der.subarray(0, 16).equals(PKCS8_ED25519_PREFIX)) throw badFormat(path, 'unexpected private key encoding');
    return Buffer.from(der.subarray(16));
  } finally {
    der.fill(0);
  }
}

/**
 * Decode a PEM key file. `pemPassphrase` is asked only for an encrypted PKCS#8 file whose framing
 * checked out; a key that does not decrypt with it is WRONG_PASSPHRASE.
 */
export function decodeKeyPem(bytes: Uint8Array, path: string, pemPassphrase: () => string): DecodedKey {
  const { label, der } = readPem(bytes, path);
  try {
    if (label === 'PUBLIC KEY') {
      const [alg, bits, ...rest] = topSequence(der, path);
      requireEd25519(alg, path);
      if (bits?.tag !== DER.BIT_STRING || rest.length > 0) throw badFormat(path, 'not a SubjectPublicKeyInfo');
      return {
        kind: 'public',
        publicKey: publicKeyOf(
          parsed(() => createPublicKey({ key: der, format: 'der', type: 'spki' }), path),
          path,
        ),
      };
    }
    let key: KeyObject;
    if (label === 'PRIVATE KEY') {
      const [version, alg, octets] = topSequence(der, path);
      if (version?.tag !== DER.INTEGER || octets?.tag !== DER.OCTET_STRING) throw badFormat(path, 'not a PKCS#8 private key');
      requireEd25519(alg, path);
      key = parsed(() => createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }), path);
    } else if (label === 'ENCRYPTED PRIVATE KEY') {
      const [scheme, ciphertext, ...rest] = topSequence(der, path);
      if (scheme?.tag !== DER.SEQUENCE || ciphertext?.tag !== DER.OCTET_STRING || rest.length > 0) throw badFormat(path, 'not an encrypted PKCS#8 key');
      checkKdfCost(scheme.body, path);
      key = decrypt(der, pemPassphrase(), path);
    } else {
      throw badFormat(path, `a PEM "${label}" block is not a key fwseal imports (PRIVATE KEY, ENCRYPTED PRIVATE KEY or PUBLIC KEY)`);
    }
    if (key.asymmetricKeyType !== 'ed25519')
      throw new FwsealError('UNSUPPORTED_KEY', `${path} holds a ${key.asymmetricKeyType} key; fwseal signs with Ed25519 only`);
    const publicKey = checkedPublicKey(key, path);
    return { kind: 'private', seed: seedOf(key, path), publicKey };
  } finally {
    der.fill(0); // the DER of a plain PKCS#8 file is the seed in the clear
  }
}

/**
 * SPEC.md §15.5: before a passphrase is tried, every INTEGER in the encryption scheme (PBKDF2 and
 * PBES1 iteration counts, scrypt's N, r and p, key lengths) must be at most
 * LIMITS.maxImportKdfIterations, so that a crafted file cannot keep the import busy for hours.
 */
function checkKdfCost(body: Uint8Array, path: string, depth = 0): void {
  if (depth > 6) throw badFormat(path, 'encryption parameters nested too deeply');
  for (const item of derChildren(body, path)) {
    if (item.tag === DER.SEQUENCE) checkKdfCost(item.body, path, depth + 1);
    if (item.tag !== DER.INTEGER) continue;
    const value = item.body.length > 4 ? Number.POSITIVE_INFINITY : item.body.reduce((n, b) => n * 256 + b, 0);
    if (value > LIMITS.maxImportKdfIterations)
      throw badFormat(
        path,
        `encryption parameter ${value === Number.POSITIVE_INFINITY ? 'above 2^32' : value} exceeds ${LIMITS.maxImportKdfIterations}: re-encrypt the key with usual settings (openssl pkcs8 -topk8 -v2 aes-256-cbc)`,
      );
  }
}

/** node:crypto's parse, with its errors as KEY_FORMAT. */
function parsed(f: () => KeyObject, path: string): KeyObject {
  try {
    return f();
  } catch {
    throw badFormat(path, 'damaged key');
  }
}

function decrypt(der: Buffer, passphrase: string, path: string): KeyObject {
  try {
    return createPrivateKey({ key: der, format: 'der', type: 'pkcs8', passphrase });
  } catch (e) {
    // An encryption scheme OpenSSL does not offer is the file's problem; every other failure after a
    // well-framed EncryptedPrivateKeyInfo is the passphrase (a CBC pad that happens to check out
    // decrypts to garbage, which then fails to parse: also the passphrase).
    if (/UNSUPPORTED|UNKNOWN/.test(String((e as NodeJS.ErrnoException).code))) throw badFormat(path, 'encryption scheme not supported');
    throw new FwsealError('WRONG_PASSPHRASE', `cannot decrypt ${path}: wrong passphrase or damaged file`);
  }
}

/**
 * The public key OpenSSL derived, proven to belong to the private key by the device's own Ed25519
 * (SPEC.md §7) over a test message: NAME.pub and NAME.key describe one key, not two.
 */
function checkedPublicKey(key: KeyObject, path: string): Uint8Array {
  const pub = publicKeyOf(createPublicKey(key), path);
  if (!verifyEd25519(new Uint8Array(nodeSign(null, SELF_TEST, key)), SELF_TEST, pub))
    throw badFormat(path, 'the public key does not belong to the private key');
  return pub;
}

/**
 * The passphrase of an encrypted PEM file: FWSEAL_IMPORT_PASSPHRASE, else a no-echo prompt on the
 * terminal. Never FWSEAL_PASSPHRASE: that one encrypts the new fwseal key file.
 */
export const importPassphraseSource: PassphraseSource = (purpose) => {
  const env = process.env.FWSEAL_IMPORT_PASSPHRASE;
  if (env !== undefined) {
    if (env.length === 0) throw new FwsealError('NO_PASSPHRASE', 'FWSEAL_IMPORT_PASSPHRASE is empty');
    return env;
  }
  const typed = readTtyLine(`Passphrase of ${purpose}: `);
  if (typed.length === 0) throw new FwsealError('NO_PASSPHRASE', 'empty passphrase');
  return typed;
};

export type ImportOptions = {
  readonly dir?: string;
  /** The passphrase of an encrypted PEM file (importPassphraseSource by default). */
  readonly pemPassphrase?: PassphraseSource;
  /** The passphrase of the new fwseal key file (FWSEAL_PASSPHRASE or a prompt by default). */
  readonly passphrases?: PassphraseSource;
};

export type ImportResult = {
  readonly name: string;
  readonly keyId: Uint8Array;
  readonly publicKey: Uint8Array;
  /** Absent when the PEM file held only a public key. */
  readonly keyPath?: string;
  readonly pubPath: string;
  /** The source file holds a private key and group or others may read or write it. */
  readonly sourceExposed: boolean;
};

/**
 * The key folder DIR, created when missing with its missing parents, mode 0700 (issue 17: keygen
 * and key import --dir on a fresh checkout). An existing folder is left as it is.
 */
export function makeKeyFolder(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new FwsealError('IO', `cannot create the key folder ${dir}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/**
 * `fwseal key import`: a PEM file into DIR/NAME.key (encrypted, 0600) and DIR/NAME.pub, or only
 * NAME.pub for a public key (a key held in a KMS or HSM); DIR is created (0700) when missing. Nothing
 * is asked or written when NAME is taken; the seed is wiped once the key file is written.
 */
export function importKey(file: string, name: string, options: ImportOptions = {}): ImportResult {
  const dir = options.dir ?? '.';
  const { pubPath } = keyPairPaths(name, dir); // USAGE / IO before any passphrase (SPEC.md §14 H6)
  // An oversize file is no Ed25519 key (an encrypted one is under 300 bytes): KEY_FORMAT, exit 2, not a device rejection.
  const bytes = readFileLimited(file, KEY_FILE_MAX_BYTES, 'PEM key file', (_head, size) => {
    if (size > KEY_FILE_MAX_BYTES) throw badFormat(file, `${size} bytes is larger than any Ed25519 PEM key (at most ${KEY_FILE_MAX_BYTES})`);
  });
  let decoded: DecodedKey;
  try {
    decoded = decodeKeyPem(bytes, file, () => (options.pemPassphrase ?? importPassphraseSource)(file, false));
  } finally {
    bytes.fill(0);
  }
  if (decoded.kind === 'public') {
    makeKeyFolder(dir);
    const info = writePublicKeyFile(pubPath, name, decoded.publicKey);
    return { name, keyId: info.keyId, publicKey: info.publicKey, pubPath, sourceExposed: false };
  }
  // The folder once the new passphrase is known, as keygen does: a refused passphrase leaves nothing behind.
  const passphrases = options.passphrases ?? defaultPassphraseSource;
  const thenFolder: PassphraseSource = (purpose, confirm) => {
    const passphrase = passphrases(purpose, confirm);
    makeKeyFolder(dir);
    return passphrase;
  };
  try {
    const written = writeKeyPair(name, dir, decoded.seed, decoded.publicKey, thenFolder, `imported key ${name}`);
    return { name, keyId: written.keyId, publicKey: written.publicKey, keyPath: written.keyPath, pubPath, sourceExposed: exposed(file) };
  } finally {
    decoded.seed.fill(0);
  }
}

function exposed(file: string): boolean {
  try {
    return (statSync(file).mode & 0o077) !== 0;
  } catch {
    return false;
  }
}

/** The SubjectPublicKeyInfo PEM of an Ed25519 public key (RFC 8410 §4, RFC 7468 §13), as `openssl pkey -pubout` writes it. */
export function publicKeyPem(publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new FwsealError('KEY_FORMAT', 'an Ed25519 public key is 32 bytes');
  const b64 = Buffer.concat([SPKI_ED25519_PREFIX, publicKey]).toString('base64');
  return `-----BEGIN PUBLIC KEY-----\n${(b64.match(/.{1,64}/g) ?? []).join('\n')}\n-----END PUBLIC KEY-----\n`;
}
