import { toHex } from '../../shared/bytes.js';
import { FwsealError } from '../errors.js';
import { makeKeyFolder } from '../key-import.js';
import { generateKey, keyPairPaths, NAME_PATTERN, writePublicKeyFile } from '../keys.js';
import { defaultPassphraseSource } from '../passphrase.js';
import { generatePkcs11Key, undoPkcs11Keygen } from '../signers/pkcs11.js';
import { type Command, type Io, json, onePositional, type Parsed, str } from './common.js';

/**
 * keygen --pkcs11 (SPEC.md §15.2): the pair is made inside the token and only DIR/NAME.pub is written.
 * NAME.pub is refused before the token is touched, and a pair whose NAME.pub cannot be written is
 * removed from the token again: nothing or everything.
 */
function keygenInToken(p: Parsed, io: Io, name: string, uri: string): number {
  const { pubPath } = keyPairPaths(name, str(p, 'dir') ?? '.', ['pub']);
  const k = generatePkcs11Key(uri, name, str(p, 'module'));
  try {
    makeKeyFolder(str(p, 'dir') ?? '.');
    writePublicKeyFile(pubPath, name, k.publicKey);
  } catch (e) {
    undoPkcs11Keygen(k);
    throw e;
  }
  io.audit?.({ action: 'keygen', keyId: toHex(k.keyId), kind: 'pkcs11-key', file: pubPath, result: 'ok' });
  if (p.values.json) json(io, { name, keyId: toHex(k.keyId), publicKey: toHex(k.publicKey), publicKeyFile: pubPath, pkcs11: uri });
  else io.stdout(`${toHex(k.keyId)}\n`);
  io.stderr(`wrote ${pubPath}; the private key stays in the token (sensitive, not extractable)\n`);
  return 0;
}

export const keygen: Command = {
  name: 'keygen',
  summary: 'create an Ed25519 key pair (private key encrypted, 0600, or inside a PKCS#11 token)',
  usage: `fwseal keygen NAME [--dir DIR] [--json]
fwseal keygen NAME --pkcs11 "pkcs11:token=LABEL;object=LABEL" [--module PATH] [--dir DIR] [--json]

Writes DIR/NAME.key (encrypted with a passphrase: scrypt + AES-256-GCM, mode 0600) and DIR/NAME.pub,
and prints the key id. The passphrase comes from FWSEAL_PASSPHRASE or a prompt on the terminal.
Refuses to overwrite an existing key. DIR is created (mode 0700, missing parents too) when it does
not exist.

With --pkcs11 the key pair is generated inside the token (CKM_EC_EDWARDS_KEY_PAIR_GEN; the private
key sensitive and not extractable, labelled with the URI's object) and only DIR/NAME.pub is written.
The PKCS#11 module is the URI's module-path, else --module, else FWSEAL_PKCS11_MODULE; the PIN comes
from FWSEAL_PKCS11_PIN or a prompt on the terminal, never from the URI or a flag.

Examples:
  fwseal keygen R1 --dir keys
  fwseal keygen ROOT1 --pkcs11 "pkcs11:token=fwseal;object=ROOT1" --module /usr/lib/softhsm/libsofthsm2.so --dir keys`,
  options: { dir: { type: 'string' }, json: { type: 'boolean' }, pkcs11: { type: 'string' }, module: { type: 'string' } },
  run(p, io) {
    const name = onePositional(p, 'key NAME');
    const uri = str(p, 'pkcs11');
    if (uri !== undefined) return keygenInToken(p, io, name, uri);
    if (str(p, 'module') !== undefined) throw new FwsealError('USAGE', '--module goes with --pkcs11');
    if (!NAME_PATTERN.test(name)) throw new FwsealError('USAGE', `key name must match ${NAME_PATTERN.source}`);
    const dir = str(p, 'dir') ?? '.';
    // The folder once the passphrase is known: a refused or missing passphrase leaves nothing behind.
    const k = generateKey(name, dir, (purpose, confirm) => {
      const passphrase = defaultPassphraseSource(purpose, confirm);
      makeKeyFolder(dir);
      return passphrase;
    });
    io.audit?.({ action: 'keygen', keyId: toHex(k.keyId), kind: 'key', file: k.keyPath, result: 'ok' });
    if (p.values.json) json(io, { name, keyId: toHex(k.keyId), publicKey: toHex(k.publicKey), privateKeyFile: k.keyPath, publicKeyFile: k.pubPath });
    else io.stdout(`${toHex(k.keyId)}\n`);
    io.stderr(`wrote ${k.keyPath} (0600, encrypted) and ${k.pubPath}\n`);
    return 0;
  },
};
