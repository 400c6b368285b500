/**
 * `fwseal sign`: add one signature to a manifest, trust bundle or revocation list (SPEC.md §14
 * H1–H4), with a key file, a PKCS#11 token or an external signer (§15.1).
 */
import { bytesEqual, toHex } from '../../shared/bytes.js';
import { FwsealError } from '../errors.js';
import { writeFileAtomic } from '../io.js';
import { loadPublicKey, loadSigningKey } from '../keys.js';
import { checkSignerRole, signEnvelope } from '../sign.js';
import { type Command, json, onePositional, readObjectFile, str } from './common.js';

export const signCmd: Command = {
  name: 'sign',
  summary: 'add one signature to a manifest, trust bundle or revocation list (in place)',
  usage: `fwseal sign FILE --key KEY.key [--trust trust.cbor] [--json]

Adds a COSE_Signature by KEY to FILE, in place (atomically). Signers may work on different
machines in any order: signatures are kept sorted by key id. A signature already there by KEY is
checked: a valid one is kept (FILE unchanged), an invalid one is replaced (and reported).
--trust checks that KEY is in the role that signs FILE, and refuses it otherwise
(KEY_NOT_IN_TRUST): a manifest needs a release key of trust.cbor, a revocation list a root key of
trust.cbor, a trust bundle a root key of its own or, in a rotation, of trust.cbor = the bundle it
replaces. Without --trust, what cannot be checked is a warning on stderr.`,
  options: { key: { type: 'string' }, trust: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const file = onePositional(p, 'FILE');
    const keyPath = str(p, 'key', true);
    const trustPath = str(p, 'trust');
    const envelope = readObjectFile(file, null);
    const trust = trustPath === undefined ? undefined : readObjectFile(trustPath, 'trust-bundle');
    // The role is checked with the public half of the key file, before the passphrase is asked for.
    const claimed = loadPublicKey(keyPath);
    const role = checkSignerRole(envelope, claimed, trust);
    const key = loadSigningKey(keyPath);
    if (!bytesEqual(key.keyId, claimed.keyId)) throw new FwsealError('IO', `${keyPath} changed while it was read`);
    const r = signEnvelope(envelope, key, { knownKeys: role.knownKeys });
    if (r.envelope !== envelope) writeFileAtomic(file, r.envelope);
    const kid = toHex(key.keyId);
    const warnings = [
      ...role.notes,
      ...(r.removedInvalid > 0 ? [`${file} carried ${r.removedInvalid} invalid signature(s) by ${kid}; replaced by a valid one`] : []),
      ...(r.removedDuplicates > 0 ? [`removed ${r.removedDuplicates} repeated signature(s) so that each key id signs once`] : []),
    ];
    for (const w of warnings) io.stderr(`warning: ${w}\n`);
    if (p.values.json)
      json(io, {
        file,
        keyId: kid,
        added: r.added,
        removedInvalid: r.removedInvalid,
        removedDuplicates: r.removedDuplicates,
        roleChecked: role.checked,
        warnings,
        bytes: r.envelope.length,
      });
    else if (r.added)
      io.stdout(`signed ${file} with ${kid}${r.removedInvalid > 0 ? ', replacing an invalid signature by that key' : ''} (${r.envelope.length} bytes)\n`);
    else io.stdout(`${file} already carries a valid signature by ${kid}; ${r.envelope === envelope ? 'unchanged' : 'repeated signatures removed'}\n`);
    return 0;
  },
};
