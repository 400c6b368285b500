import { toHex } from '../../shared/bytes.js';
import { generateKey } from '../keys.js';
import { type Command, json, onePositional, str } from './common.js';

export const keygen: Command = {
  name: 'keygen',
  summary: 'create an Ed25519 key pair (private key encrypted, 0600)',
  usage: `fwseal keygen NAME [--dir DIR] [--json]

Writes DIR/NAME.key (encrypted with a passphrase: scrypt + AES-256-GCM, mode 0600) and DIR/NAME.pub,
and prints the key id. The passphrase comes from FWSEAL_PASSPHRASE or a prompt on the terminal.
Refuses to overwrite an existing key.`,
  options: { dir: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const name = onePositional(p, 'key NAME');
    const k = generateKey(name, str(p, 'dir') ?? '.');
    if (p.values.json) json(io, { name, keyId: toHex(k.keyId), publicKey: toHex(k.publicKey), privateKeyFile: k.keyPath, publicKeyFile: k.pubPath });
    else io.stdout(`${toHex(k.keyId)}\n`);
    io.stderr(`wrote ${k.keyPath} (0600, encrypted) and ${k.pubPath}\n`);
    return 0;
  },
};
