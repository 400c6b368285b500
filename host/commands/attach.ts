/**
 * `fwseal attach` and `fwseal merge`: the host side of an offline signing ceremony (SPEC.md §15.4).
 */
import { loadTrust, sha256 } from '../../device/index.js';
import { toHex } from '../../shared/bytes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { LIMITS } from '../../shared/limits.js';
import { attachSignatures, type Incoming, keysFor, mergeCopies } from '../attach.js';
import { checkCovers, DETACHED_HEAD, decodeDetached } from '../detached.js';
import { FwsealError } from '../errors.js';
import { envelopeKind, notAnFwsealObject } from '../inspect.js';
import { readFileLimited, writeFileAtomic } from '../io.js';
import { loadPublicKeyFile, type PublicKeyInfo } from '../keys.js';
import { decodeSignerOutput } from '../signers/exec.js';
import { type Command, type Io, json, list, type Parsed, readObjectFile, str } from './common.js';

type Context = { pubs: PublicKeyInfo[]; trustBytes?: Uint8Array; trust: ReturnType<typeof loadTrust> | null };

function context(p: Parsed): Context {
  const pubs = list(p, 'pub').map(loadPublicKeyFile);
  const trustPath = str(p, 'trust');
  const trustBytes = trustPath === undefined ? undefined : readObjectFile(trustPath, 'trust-bundle');
  const trust = trustBytes === undefined ? null : loadTrust(trustBytes);
  if (trust && !trust.ok) throw FwsealError.from(trust, '--trust');
  return { pubs, trust, ...(trustBytes ? { trustBytes } : {}) };
}

/** SPEC.md §14 H8 for detached signatures: a file that is recognisably something else is a usage error. */
function notDetached(path: string): (head: Uint8Array, size: number) => void {
  return (head, size) => {
    if (DETACHED_HEAD.every((b, i) => head[i] === b)) return;
    const other = notAnFwsealObject(head, size) ?? (head[0] === 0xd8 && head[1] === 0x62 ? 'an fwseal envelope (merge combines envelopes)' : null);
    if (other !== null) throw new FwsealError('USAGE', `${path} is not an fwseal detached signature: it is ${other}`);
  };
}

/** Detached signature files (positionals after FILE), then `--raw SIG` paired in order with `--raw-pub KEY.pub`. */
function incoming(p: Parsed, payload: Uint8Array, kind: NonNullable<ReturnType<typeof envelopeKind>>): Incoming[] {
  const out: Incoming[] = [];
  for (const path of p.positionals.slice(1)) {
    const d = decodeDetached(readFileLimited(path, LIMITS.maxDetachedSignatureBytes, 'detached signature', notDetached(path)), path);
    checkCovers(d, kind, payload, path);
    out.push({ what: path, signature: d.signature });
  }
  const raws = list(p, 'raw');
  const rawPubs = list(p, 'raw-pub');
  if (raws.length !== rawPubs.length)
    throw new FwsealError('USAGE', `each --raw SIG needs its --raw-pub KEY.pub, in order (${raws.length} and ${rawPubs.length})`);
  raws.forEach((path, i) => {
    const signature = decodeSignerOutput(readFileLimited(path, LIMITS.maxSignerOutputBytes, 'raw signature'));
    if (!signature) throw new FwsealError('BAD_SIGNATURE', `${path} is not one Ed25519 signature (64 raw bytes, 128 hex digits or base64)`);
    out.push({ what: path, signature: { kid: loadPublicKeyFile(rawPubs[i]).keyId, signature } });
  });
  return out;
}

function runAttach(p: Parsed, io: Io): number {
  const file = p.positionals[0];
  if (file === undefined) throw new FwsealError('USAGE', 'expected FILE and the signatures to attach');
  const bytes = readObjectFile(file, null);
  const parsed = parseEnvelope(bytes);
  const kind = envelopeKind(bytes);
  if (!parsed.ok) throw FwsealError.from(parsed, `${file}: not a valid fwseal envelope`);
  if (kind === null) throw new FwsealError('WRONG_KIND', `${file}: not a manifest, trust bundle or revocation list`);
  const ctx = context(p);
  // The raw-signature keys count as --pub keys too: their signature is checked with them.
  const pubs = [...ctx.pubs, ...list(p, 'raw-pub').map(loadPublicKeyFile)];
  const sigs = incoming(p, parsed.envelope.payload, kind);
  if (sigs.length === 0) throw new FwsealError('USAGE', 'nothing to attach: give detached signature files or --raw SIG --raw-pub KEY.pub');
  const keys = keysFor(parsed.envelope.payload, pubs, ctx.trust?.ok ? ctx.trust.trust : null);
  const r = attachSignatures(bytes, sigs, keys, ctx.trustBytes);
  if (r.envelope !== bytes) writeFileAtomic(file, r.envelope);
  const digest = toHex(sha256(parsed.envelope.payload));
  for (const kid of r.added) io.audit?.({ action: 'attach', keyId: kid, kind, digest, file, result: 'ok' });
  for (const n of r.notes) io.stderr(`warning: ${n}\n`);
  if (p.values.json) json(io, { file, added: r.added, alreadyThere: r.alreadyThere, warnings: r.notes, bytes: r.envelope.length });
  else
    io.stdout(
      `${file}: attached ${r.added.length} signature(s)${r.alreadyThere.length ? `, ${r.alreadyThere.length} already there` : ''} (${r.envelope.length} bytes)\n`,
    );
  return 0;
}

export const attachCmd: Command = {
  name: 'attach',
  summary: 'add signatures made elsewhere (detached or raw) to a manifest, trust bundle or revocation list',
  usage: `fwseal attach FILE SIG1.sig [SIG2.sig ...] [--raw SIG --raw-pub KEY.pub ...] [--trust trust.cbor]
    [--pub KEY.pub ...] [--json]

Adds each detached signature ('fwseal sign FILE --key K --detached SIG') to FILE, in place.
Each must cover FILE's payload (else PAYLOAD_MISMATCH) and verify with the key of its key id
(else BAD_SIGNATURE); keys come from --trust, from FILE itself when it is a trust bundle, and from
--pub files. --raw takes a bare 64-byte signature over the bytes 'fwseal sign FILE --print-tbs'
wrote (raw, hex or base64), with the public key it claims in --raw-pub (paired in order).
--trust checks each signer's role as 'fwseal sign --trust' does. One bad signature refuses the
whole command: FILE is written once, only when every signature passed.

Examples:
  fwseal attach M.cose R2.sig --trust trust.cbor
  fwseal attach M.cose --raw r3-signature.b64 --raw-pub R3.pub --trust trust.cbor`,
  options: {
    raw: { type: 'string', multiple: true },
    'raw-pub': { type: 'string', multiple: true },
    pub: { type: 'string', multiple: true },
    trust: { type: 'string' },
    json: { type: 'boolean' },
  },
  run: runAttach,
};

function runMerge(p: Parsed, io: Io): number {
  const [out, ...inputs] = p.positionals;
  if (out === undefined || inputs.length < 2) throw new FwsealError('USAGE', 'expected OUT and at least two copies to merge');
  const copies = inputs.map((what) => ({ what, bytes: readObjectFile(what, null) }));
  const ctx = context(p);
  const first = parseEnvelope(copies[0].bytes);
  if (!first.ok) throw FwsealError.from(first, `${inputs[0]}: not a valid fwseal envelope`);
  const keys = keysFor(first.envelope.payload, ctx.pubs, ctx.trust?.ok ? ctx.trust.trust : null);
  const r = mergeCopies(copies, keys);
  writeFileAtomic(out, r.envelope);
  io.audit?.({ action: 'merge', kind: envelopeKind(r.envelope) ?? 'unknown', digest: toHex(sha256(first.envelope.payload)), file: out, result: 'ok' });
  for (const kid of r.unchecked)
    io.stderr(`warning: the signature by ${kid} was not checked (no --pub or --trust key for it); every copy carried the same one\n`);
  if (r.droppedInvalid > 0) io.stderr(`warning: dropped ${r.droppedInvalid} invalid signature(s)\n`);
  if (p.values.json) json(io, { out, signatures: r.kept, droppedInvalid: r.droppedInvalid, unchecked: r.unchecked, bytes: r.envelope.length });
  else io.stdout(`wrote ${out}: ${r.kept} signature(s) from ${inputs.length} copies (${r.envelope.length} bytes)\n`);
  return 0;
}

export const mergeCmd: Command = {
  name: 'merge',
  summary: 'combine copies of one object signed in parallel (union of valid signatures)',
  usage: `fwseal merge OUT A.cose B.cose [C.cose ...] [--trust trust.cbor] [--pub KEY.pub ...] [--json]

Every copy must carry the same payload (else PAYLOAD_MISMATCH). OUT gets one signature per key
id: where the key is known (--trust, --pub, or the trust bundle's own keys) the valid one, and
invalid ones are dropped; a key id with no known key is kept only when every copy carries the
same signature (else DUPLICATE_KEY), and named on stderr as not checked. Check OUT with
'fwseal inspect OUT --trust trust.cbor' or 'fwseal verify'.

Examples:
  fwseal merge M.cose copy-r1.cose copy-r2.cose --trust trust.cbor`,
  options: { pub: { type: 'string', multiple: true }, trust: { type: 'string' }, json: { type: 'boolean' } },
  run: runMerge,
};
