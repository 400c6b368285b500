/**
 * `fwseal key import` and `fwseal key export-pub` (SPEC.md §15.5): keys made by openssl, a KMS or
 * an HSM become fwseal keys, and fwseal public keys go to openssl, imgtool and cosign users.
 */
import { toHex } from '../../shared/bytes.js';
import { FwsealError } from '../errors.js';
import { writeFileAtomic } from '../io.js';
import { importKey, publicKeyPem } from '../key-import.js';
import { loadPublicKey } from '../keys.js';
import { type Command, json, onePositional, str } from './common.js';

export const keyImport: Command = {
  name: 'key import',
  summary: 'import an Ed25519 PEM key (PKCS#8, encrypted or not, or a public key) as an fwseal key',
  usage: `fwseal key import FILE --name NAME [--dir DIR] [--json]

FILE is one PEM block holding an Ed25519 key (openssl genpkey -algorithm ed25519 [-aes-256-cbc]):
  -----BEGIN PRIVATE KEY-----            PKCS#8 (RFC 8410)
  -----BEGIN ENCRYPTED PRIVATE KEY-----  PKCS#8, encrypted; its passphrase comes from
                                         FWSEAL_IMPORT_PASSPHRASE or a prompt on the terminal
  -----BEGIN PUBLIC KEY-----             SubjectPublicKeyInfo: only DIR/NAME.pub is written (a key
                                         kept in a KMS or HSM, for --pub and trust init)
A private key becomes DIR/NAME.key (encrypted with a new passphrase from FWSEAL_PASSPHRASE or a
prompt: scrypt + AES-256-GCM, mode 0600) and DIR/NAME.pub; prints the key id. Other algorithms are
UNSUPPORTED_KEY; an existing NAME.key or NAME.pub is never replaced. Remove FILE afterwards
(shred -u FILE): the key now lives in NAME.key.

Examples:
  fwseal key import hsm-release.pem --name R4 --dir keys
  fwseal key import r5-public.pem --name R5 --dir keys`,
  options: { name: { type: 'string' }, dir: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const file = onePositional(p, 'PEM FILE');
    const name = str(p, 'name', true);
    const r = importKey(file, name, { dir: str(p, 'dir') ?? '.' });
    const kid = toHex(r.keyId);
    const warnings = r.sourceExposed
      ? [`${file} holds a private key that group or others can read or write: it may be copied already; remove it now (shred -u ${file})`]
      : [];
    for (const w of warnings) io.stderr(`warning: ${w}\n`);
    io.audit?.({ action: 'key import', keyId: kid, kind: 'key', result: 'ok', file: r.keyPath ?? r.pubPath });
    if (p.values.json) {
      json(io, { name, keyId: kid, publicKey: toHex(r.publicKey), privateKeyFile: r.keyPath ?? null, publicKeyFile: r.pubPath, warnings });
    } else io.stdout(`${kid}\n`);
    if (r.keyPath) io.stderr(`wrote ${r.keyPath} (0600, encrypted) and ${r.pubPath}; remove ${file} once you have checked the key id (shred -u ${file})\n`);
    else io.stderr(`wrote ${r.pubPath} (public key only)\n`);
    return 0;
  },
};

export const keyExportPub: Command = {
  name: 'key export-pub',
  summary: 'print the public key of an fwseal key as SubjectPublicKeyInfo PEM (or raw hex)',
  usage: `fwseal key export-pub NAME.pub (--pem | --raw) [--out FILE] [--json]

Prints the public key of NAME.pub (or of NAME.key: its public half, no passphrase needed):
  --pem  SubjectPublicKeyInfo PEM (RFC 8410), as \`openssl pkey -pubout\` writes it; openssl, imgtool
         and cosign read it. Check an fwseal signature with openssl over the COSE Sig_structure:
         openssl pkeyutl -verify -pubin -inkey NAME.pem -rawin -in tbs.bin -sigfile sig.bin
  --raw  the 32-byte Ed25519 public key in hex
--out FILE writes it to a new file instead (an existing FILE is refused).

Examples:
  fwseal key export-pub keys/R1.pub --pem --out R1.pem
  fwseal key export-pub keys/R1.pub --raw`,
  options: { pem: { type: 'boolean' }, raw: { type: 'boolean' }, out: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const path = onePositional(p, 'NAME.pub');
    if (p.values.pem === p.values.raw) throw new FwsealError('USAGE', 'give one output format: --pem (SubjectPublicKeyInfo PEM) or --raw (hex)');
    const out = str(p, 'out');
    const key = loadPublicKey(path);
    const format = p.values.pem ? 'pem' : 'raw';
    const text = format === 'pem' ? publicKeyPem(key.publicKey) : `${toHex(key.publicKey)}\n`;
    // A new file only: a typo such as --out R1.key must not replace a key (SPEC.md §14 H6).
    if (out !== undefined) writeFileAtomic(out, text, { replace: false });
    const kid = toHex(key.keyId);
    if (p.values.json) json(io, { name: key.name, keyId: kid, publicKey: toHex(key.publicKey), format, ...(out === undefined ? { text } : { file: out }) });
    else if (out === undefined) io.stdout(text);
    else {
      io.stdout(`${kid}\n`);
      io.stderr(`wrote ${out}\n`);
    }
    return 0;
  },
};
