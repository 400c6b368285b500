/**
 * `fwseal sign`: add one signature to a manifest, trust bundle or revocation list (SPEC.md §14
 * H1–H4) with a key file, a PKCS#11 token or an external signer (§15.1–15.3); or write it as a
 * detached signature for an offline ceremony (§15.4); or print the bytes to be signed.
 */
import { sha256 } from '../../device/index.js';
import { toHex } from '../../shared/bytes.js';
import { parseEnvelope, sigStructure } from '../../shared/cose.js';
import { detachedFor, encodeDetached } from '../detached.js';
import { FwsealError } from '../errors.js';
import { envelopeKind } from '../inspect.js';
import { writeFileAtomic } from '../io.js';
import { type SigningKey } from '../keys.js';
import { checkSignMetricsFile, recordSignRun, type SignRun } from '../metrics-file.js';
import { checkSignerRole, signEnvelope } from '../sign.js';
import { describeKeyRef, openSigner, parseKeyRef, publicKeyOf } from '../signers/index.js';
import { type Command, type Io, json, onePositional, type Parsed, readObjectFile, str } from './common.js';

/** `--print-tbs`: the Sig_structure (§3), the same for every signer of this file. */
function printTbs(p: Parsed, io: Io, envelope: Uint8Array): number {
  const extra = ['key', 'pub', 'trust', 'detached', 'json', 'metrics-file'].find((o) => p.values[o] !== undefined);
  if (extra) throw new FwsealError('USAGE', `--print-tbs takes no --${extra}`);
  const parsed = parseEnvelope(envelope);
  if (!parsed.ok) throw FwsealError.from(parsed, 'cannot sign: not a valid fwseal envelope');
  const tbs = sigStructure(parsed.envelope.payload);
  if (p.values.hex) {
    io.stdout(`${toHex(tbs)}\n`);
    return 0;
  }
  if (!io.stdoutBytes || io.stdoutIsTty) throw new FwsealError('USAGE', '--print-tbs writes binary: redirect stdout to a file, or add --hex');
  io.stdoutBytes(tbs);
  return 0;
}

function warnings(file: string, kid: string, notes: readonly string[], r?: { removedInvalid: number; removedDuplicates: number }): string[] {
  return [
    ...notes,
    ...(r && r.removedInvalid > 0 ? [`${file} carried ${r.removedInvalid} invalid signature(s) by ${kid}; replaced by a valid one`] : []),
    ...(r && r.removedDuplicates > 0 ? [`removed ${r.removedDuplicates} repeated signature(s) so that each key id signs once`] : []),
  ];
}

/** The signer as this run uses it: its time is recorded for --metrics-file (M3), the signature's own check included. */
function timed(key: SigningKey, run: { seconds?: number }): SigningKey {
  return Object.freeze({
    ...key,
    sign(message: Uint8Array): Uint8Array {
      const started = performance.now();
      try {
        return key.sign(message);
      } finally {
        run.seconds = (run.seconds ?? 0) + (performance.now() - started) / 1000;
      }
    },
  });
}

/**
 * `--metrics-file F` (SPEC.md §14, M3): the file is checked before anything is signed, and this run
 * added to it afterwards, ok or refused with its code (a USAGE mistake is not counted). A file that
 * cannot be written then is a warning: the signature is made, and the exit status stays the signing's.
 */
function run(p: Parsed, io: Io): number {
  const file = onePositional(p, 'FILE');
  const metricsFile = str(p, 'metrics-file');
  if (metricsFile === undefined || p.values['print-tbs']) return sign(p, io, file, {});
  checkSignMetricsFile(metricsFile);
  const signRun: { seconds?: number; refused?: string } = {};
  let signing = true;
  try {
    return sign(p, io, file, signRun);
  } catch (e) {
    signRun.refused = e instanceof FwsealError ? e.codeName : 'INTERNAL';
    signing = signRun.refused !== 'USAGE'; // a command line mistake is no signing run
    throw e;
  } finally {
    try {
      if (signing) recordSignRun(metricsFile, signRun as SignRun);
    } catch (e) {
      io.stderr(`warning: --metrics-file ${metricsFile} not updated: ${(e as Error).message}\n`);
    }
  }
}

function sign(p: Parsed, io: Io, file: string, signRun: { seconds?: number }): number {
  const envelope = readObjectFile(file, null);
  if (p.values['print-tbs']) return printTbs(p, io, envelope);
  if (p.values.hex) throw new FwsealError('USAGE', '--hex goes with --print-tbs');
  const ref = parseKeyRef(str(p, 'key', true), str(p, 'pub'));
  const trustPath = str(p, 'trust');
  const detachedPath = str(p, 'detached');
  const trust = trustPath === undefined ? undefined : readObjectFile(trustPath, 'trust-bundle');
  // H2: the role is checked with the public key (file, token or --pub) before a passphrase or PIN is asked for.
  const claimed = publicKeyOf(ref);
  const role = checkSignerRole(envelope, claimed, trust);
  const key = timed(openSigner(ref, claimed), signRun);
  const kid = toHex(key.keyId);
  const parsed = parseEnvelope(envelope);
  if (!parsed.ok) throw FwsealError.from(parsed, 'cannot sign');
  const payload = parsed.envelope.payload;
  const kind = envelopeKind(envelope) ?? 'manifest';
  const audit = { keyId: kid, kind, digest: toHex(sha256(payload)), result: 'ok' };
  if (detachedPath !== undefined) {
    // §15.4: FILE is left untouched; the signature goes to its own file with the payload digest it covers.
    const signature = key.sign(sigStructure(payload));
    writeFileAtomic(detachedPath, encodeDetached(detachedFor(kind, payload, { kid: key.keyId, signature })));
    io.audit?.({ action: 'sign --detached', ...audit, file: detachedPath });
    for (const w of role.notes) io.stderr(`warning: ${w}\n`);
    if (p.values.json) json(io, { file, detached: detachedPath, keyId: kid, key: describeKeyRef(ref), roleChecked: role.checked, warnings: role.notes });
    else io.stdout(`wrote ${detachedPath}: detached signature by ${kid} over ${file} (attach it with: fwseal attach ${file} ${detachedPath})\n`);
    return 0;
  }
  const r = signEnvelope(envelope, key, { knownKeys: role.knownKeys });
  if (r.envelope !== envelope) writeFileAtomic(file, r.envelope);
  io.audit?.({ action: 'sign', ...audit, file, result: r.added ? 'ok' : 'unchanged' });
  const notes = warnings(file, kid, role.notes, r);
  for (const w of notes) io.stderr(`warning: ${w}\n`);
  if (p.values.json)
    json(io, {
      file,
      keyId: kid,
      added: r.added,
      removedInvalid: r.removedInvalid,
      removedDuplicates: r.removedDuplicates,
      roleChecked: role.checked,
      warnings: notes,
      bytes: r.envelope.length,
    });
  else if (r.added)
    io.stdout(`signed ${file} with ${kid}${r.removedInvalid > 0 ? ', replacing an invalid signature by that key' : ''} (${r.envelope.length} bytes)\n`);
  else io.stdout(`${file} already carries a valid signature by ${kid}; ${r.envelope === envelope ? 'unchanged' : 'repeated signatures removed'}\n`);
  return 0;
}

export const signCmd: Command = {
  name: 'sign',
  summary: 'add one signature to a manifest, trust bundle or revocation list (in place, or detached)',
  usage: `fwseal sign FILE --key KEY [--pub KEY.pub] [--trust trust.cbor] [--detached OUT.sig] [--metrics-file F.prom] [--json]
fwseal sign FILE --print-tbs [--hex]

Adds a COSE_Signature by KEY to FILE, in place (atomically). Signers may work on different
machines in any order: signatures are kept sorted by key id. A signature already there by KEY is
checked: a valid one is kept (FILE unchanged), an invalid one is replaced (and reported).
KEY is one of (SPEC.md §15.1):
  NAME.key                      an fwseal key file (passphrase: FWSEAL_PASSPHRASE or a prompt)
  "pkcs11:token=T;object=R1?module-path=/usr/lib/softhsm/libsofthsm2.so"
                                a key in a PKCS#11 token (PIN: FWSEAL_PKCS11_PIN or a prompt;
                                module: module-path, or FWSEAL_PKCS11_MODULE)
  "exec:CMD ARGS"               an external signer: gets the bytes to sign on stdin, prints the
                                64-byte signature (raw, hex or base64); needs --pub KEY.pub
                                (time limit: FWSEAL_SIGNER_TIMEOUT seconds, default 30)
Every signature is checked against the key's public key before anything is written.
--trust checks that KEY is in the role that signs FILE, and refuses it otherwise
(KEY_NOT_IN_TRUST): a manifest needs a release key of trust.cbor, a revocation list a root key of
trust.cbor, a trust bundle a root key of its own or, in a rotation, of trust.cbor = the bundle it
replaces. Without --trust, what cannot be checked is a warning on stderr.
--detached OUT.sig leaves FILE untouched and writes only the signature, with the payload digest
it covers; carry it back and add it with 'fwseal attach FILE OUT.sig'.
--metrics-file F.prom adds this run to F (Prometheus text for node_exporter's textfile collector,
atomically): fwseal_sign_duration_seconds (the signer's time) and fwseal_signatures_total{result,code}.
--print-tbs writes the exact bytes to be signed (binary; --hex for hex) for tools that sign
elsewhere; add their raw signature with 'fwseal attach FILE --raw SIG --pub KEY.pub'.

Examples:
  fwseal sign M.cose --key keys/R1.key --trust trust.cbor
  fwseal sign M.cose --key keys/R2.key --detached R2.sig`,
  options: {
    key: { type: 'string' },
    pub: { type: 'string' },
    trust: { type: 'string' },
    detached: { type: 'string' },
    'metrics-file': { type: 'string' },
    'print-tbs': { type: 'boolean' },
    hex: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  run,
};
