/**
 * `fwseal log init|append|checkpoint|prove|consistency|verify|show|cosign` (issue 19): the
 * transparency log of every signed object a release process made, with C2SP checkpoints.
 */
import { CODES } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { FwsealError } from '../errors.js';
import { envelopeKind } from '../inspect.js';
import { readFileLimited, writeFileAtomic } from '../io.js';
import { loadPublicKey, loadSigningKey } from '../keys.js';
import { logProofFor } from '../tlog/attachment.js';
import { readCheckpointArg, verifyOffline } from '../tlog/cli-support.js';
import { findEntry, newestCheckpoint, openCheckpoint, proveConsistency, proveInclusion, signCheckpoint, verifyLog } from '../tlog/log.js';
import { cosignNote, formatNote, NOTE_MAX_BYTES, parseNote } from '../tlog/note.js';
import { appendEntries, initLog, readConfig, readIndex, scanLog } from '../tlog/store.js';
import { type Command, type Io, int, json, onePositional, readObjectFile, str } from './common.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const VERDICTS = new Set(['LOG_INVALID', 'BAD_SIGNATURE', 'THRESHOLD_NOT_MET', 'MALFORMED']);

/** A log that does not verify is a verdict (exit 1, REJECTED), as for audit verify (SPEC.md §15.6). */
export function verdict(io: Io, cmd: string, asJson: boolean, run: () => number): number {
  try {
    return run();
  } catch (e) {
    if (!(e instanceof FwsealError) || !VERDICTS.has(e.codeName)) throw e;
    if (asJson) io.stdout(`${JSON.stringify({ ok: false, code: e.code, error: e.codeName, detail: e.message, exitStatus: 1 })}\n`);
    io.stderr(`fwseal ${cmd}: REJECTED ${e.codeName} (code ${CODES[e.codeName]}): ${e.message}\n`);
    return 1;
  }
}

/** A proof bundle: to --out FILE, and on stdout unless it went to a file without --json. */
function writeOut(io: Io, out: string | undefined, asJson: boolean, bundle: unknown): void {
  const text = `${JSON.stringify(bundle, null, 2)}\n`;
  if (out) writeFileAtomic(out, text);
  if (!out || asJson) io.stdout(text);
}

export const logInit: Command = {
  name: 'log init',
  summary: 'create a transparency log (a folder) for signed manifests, trust bundles and revocation lists',
  usage: `fwseal log init DIR --origin ORIGIN --key LOG.pub [--json]

Creates the log in DIR (a new or empty folder): its origin (the first line of every checkpoint and
the note name of the log key, e.g. example.com/acme-firmware) and the public key that signs its
checkpoints (an fwseal key; the private key stays where checkpoints are signed).

Examples:
  fwseal log init ./tlog --origin example.com/acme-firmware --key log-key.pub`,
  options: { origin: { type: 'string' }, key: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const dir = onePositional(p, 'DIR');
    const origin = str(p, 'origin', true);
    const cfg = initLog(dir, origin, loadPublicKey(str(p, 'key', true)));
    if (p.values.json) json(io, { dir, origin: cfg.origin, logKeyId: cfg.keyId });
    else io.stdout(`${dir}: transparency log ${cfg.origin}, log key ${cfg.keyId}\n`);
    return 0;
  },
};

export const logAppend: Command = {
  name: 'log append',
  summary: 'add signed objects to a transparency log (crash-safe, append-only)',
  usage: `fwseal log append DIR FILE... [--json]

Adds each FILE (an fwseal manifest, trust bundle or revocation list, as signed) as the next entry
of the log in DIR and prints its index and RFC 9162 leaf hash. The entry is in the log once the
command returns; it is in a checkpoint after the next fwseal log checkpoint.

Examples:
  fwseal log append ./tlog m.cose trust.cbor`,
  options: { json: { type: 'boolean' } },
  run(p, io) {
    const [dir, ...files] = p.positionals;
    if (dir === undefined || files.length === 0) throw new FwsealError('USAGE', 'expected DIR and at least one FILE');
    const objects = files.map((f) => {
      const bytes = readObjectFile(f, null);
      if (envelopeKind(bytes) === null) throw new FwsealError('USAGE', `${f} is not a signed fwseal manifest, trust bundle or revocation list`);
      return bytes;
    });
    const added = appendEntries(dir, objects);
    if (p.values.json) json(io, { entries: added.map((a, k) => ({ file: files[k], index: a.index, leafHash: hex(a.leafHash) })) });
    else for (const [k, a] of added.entries()) io.stdout(`${a.index} ${hex(a.leafHash)} ${files[k]}\n`);
    return 0;
  },
};

export const logCheckpoint: Command = {
  name: 'log checkpoint',
  summary: 'sign a checkpoint (C2SP tlog-checkpoint note) of a transparency log with its log key',
  usage: `fwseal log checkpoint DIR --key LOG.key [--json]

Checks the whole log, then signs a checkpoint of its current size with the log key (a C2SP signed
note: origin, size, base64 root hash; Ed25519 note signature) and keeps it as DIR/checkpoint.note
and DIR/checkpoints/SIZE.note. Refuses (LOG_INVALID) if the newest checkpoint it signed before does
not match the log: a log never signs two inconsistent checkpoints.

Examples:
  fwseal log checkpoint ./tlog --key log-key.key`,
  options: { key: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const dir = onePositional(p, 'DIR');
    readConfig(dir);
    const { note, checkpoint, path } = signCheckpoint(dir, loadSigningKey(str(p, 'key', true)));
    if (p.values.json) json(io, { origin: checkpoint.origin, size: checkpoint.size, root: hex(checkpoint.root), file: path, note });
    else io.stdout(note);
    return 0;
  },
};

export const logProve: Command = {
  name: 'log prove',
  summary: 'print the inclusion proof of an entry in the newest checkpoint of a transparency log',
  usage: `fwseal log prove DIR (--index N | --entry FILE) [--out PROOF.json] [--json]
    [--device-proof OUT.cbor [--from-size N]]

The RFC 9162 inclusion proof of entry N (or of the entry holding FILE) in the tree of the newest
signed checkpoint, with that checkpoint: a JSON bundle {type: fwseal-log-inclusion, index, size,
leafHash, proof, checkpoint} that fwseal log verify --proof checks offline.
--device-proof (with --entry) writes the log proof attachment a device checks (SPEC.md §16): the
proof, the checkpoint's log signature and witness cosignatures, and with --from-size N (the
checkpoint size the device stored) the consistency proof from it.

Examples:
  fwseal log prove ./tlog --entry m.cose --out m.proof.json
  fwseal log prove ./tlog --entry m.cose --device-proof m.logproof --from-size 41`,
  options: {
    index: { type: 'string' },
    entry: { type: 'string' },
    out: { type: 'string' },
    json: { type: 'boolean' },
    'device-proof': { type: 'string' },
    'from-size': { type: 'string' },
  },
  async run(p, io) {
    const dir = onePositional(p, 'DIR');
    const entry = str(p, 'entry');
    if ((entry === undefined) === (p.values.index === undefined)) throw new FwsealError('USAGE', 'give exactly one of --index N and --entry FILE');
    const deviceProof = str(p, 'device-proof');
    if (deviceProof !== undefined && entry === undefined) throw new FwsealError('USAGE', '--device-proof needs --entry FILE (the envelope the device holds)');
    if (deviceProof === undefined && p.values['from-size'] !== undefined) throw new FwsealError('USAGE', '--from-size goes with --device-proof');
    const fromSize = int(p, 'from-size', 0, Number.MAX_SAFE_INTEGER, 0);
    const object = entry !== undefined ? readObjectFile(entry, null) : undefined;
    const index = object !== undefined ? findEntry(dir, object) : int(p, 'index', 0, Number.MAX_SAFE_INTEGER);
    if (index < 0) throw new FwsealError('NOT_FOUND', `${entry} is not in the log`);
    const bundle = proveInclusion(dir, index);
    if (deviceProof !== undefined && object !== undefined) {
      const attachment = await logProofFor(dir, object, fromSize);
      writeFileAtomic(deviceProof, attachment);
      if (!str(p, 'out') && !p.values.json) {
        io.stdout(`wrote ${deviceProof}: entry ${index} in the checkpoint of size ${bundle.size} (${attachment.length} bytes)\n`);
        return 0;
      }
    }
    writeOut(io, str(p, 'out'), p.values.json === true, bundle);
    if (str(p, 'out') && !p.values.json) io.stderr(`entry ${index} in the checkpoint of size ${bundle.size}: ${bundle.proof.length} proof nodes\n`);
    return 0;
  },
};

export const logConsistency: Command = {
  name: 'log consistency',
  summary: 'print the consistency proof from an older checkpoint (or size) to the newest of a transparency log',
  usage: `fwseal log consistency DIR --from OLD.note|SIZE [--out PROOF.json] [--json]

The RFC 9162 consistency proof from the tree of OLD.note (a checkpoint seen before; it must carry the
log key's signature) or of size SIZE, to the tree of the newest signed checkpoint, with that
checkpoint. LOG_INVALID (exit 1) when OLD.note is not consistent with the log: a fork.

Examples:
  fwseal log consistency ./tlog --from last-seen.note --out step.json`,
  options: { from: { type: 'string' }, out: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const dir = onePositional(p, 'DIR');
    const from = str(p, 'from', true);
    return verdict(io, 'log consistency', p.values.json === true, () => {
      const cfg = readConfig(dir);
      const old = /^\d{1,16}$/.test(from) ? sizeCheckpoint(dir, Number(from)) : openCheckpoint(readCheckpointArg(from), cfg.logKey).checkpoint;
      const bundle = proveConsistency(dir, old);
      writeOut(io, str(p, 'out'), p.values.json === true, bundle);
      return 0;
    });
  },
};

/** The checkpoint fields of the log's own tree at `size` (consistency --from SIZE). */
function sizeCheckpoint(dir: string, size: number) {
  const n = readIndex(dir).size;
  if (size > n) throw new FwsealError('USAGE', `--from ${size} is larger than the log (${n})`);
  return { origin: readConfig(dir).origin, size, root: scanLog(dir, [size]).rootAt(size), extensions: [] };
}

export const logVerify: Command = {
  name: 'log verify',
  summary: 'check a transparency log on disk, or an inclusion or consistency proof offline',
  usage: `fwseal log verify DIR [--json]
fwseal log verify --proof PROOF.json --entry FILE --log-key LOG.pub --origin ORIGIN [--witness W.pub]... [--witness-threshold K] [--json]
fwseal log verify --consistency STEP.json --from OLD.note --log-key LOG.pub --origin ORIGIN [--witness W.pub]... [--witness-threshold K] [--json]

DIR: every record against its leaf hash, the index, every checkpoint kept (log signature, root at
its size). Bytes a crashed append left after the last committed entry are reported, not an error.
--proof: the checkpoint carries the log key's signature (and K valid cosignatures of the witness
keys), and the proof leads from FILE's leaf hash to its root. --consistency: the new checkpoint is
signed and an append-only extension of OLD.note. A failure is LOG_INVALID, BAD_SIGNATURE or
THRESHOLD_NOT_MET: exit 1.

Examples:
  fwseal log verify ./tlog
  fwseal log verify --proof m.proof.json --entry m.cose --log-key log-key.pub --origin example.com/acme-firmware`,
  options: {
    proof: { type: 'string' },
    consistency: { type: 'string' },
    entry: { type: 'string' },
    from: { type: 'string' },
    'log-key': { type: 'string' },
    origin: { type: 'string' },
    witness: { type: 'string', multiple: true },
    'witness-threshold': { type: 'string' },
    json: { type: 'boolean' },
  },
  run(p, io) {
    const asJson = p.values.json === true;
    if (p.values.proof !== undefined || p.values.consistency !== undefined) return verdict(io, 'log verify', asJson, () => verifyOffline(p, io));
    const dir = onePositional(p, 'DIR');
    return verdict(io, 'log verify', asJson, () => {
      const r = verifyLog(dir);
      if (asJson) json(io, { valid: true, ...r });
      else {
        io.stdout(`${dir}: ${r.origin}, ${r.size} entries, root ${r.root}; ${r.checkpoints} checkpoints, newest of size ${r.newestCheckpoint ?? '-'}: valid\n`);
        if (r.uncommittedBytes > 0 || r.tornIndexBytes > 0)
          io.stderr(`note: ${r.uncommittedBytes} record bytes and ${r.tornIndexBytes} index bytes of an append that did not complete are ignored\n`);
      }
      return 0;
    });
  },
};

export const logShow: Command = {
  name: 'log show',
  summary: 'list the entries of a transparency log: index, kind, leaf hash, signing key ids',
  usage: `fwseal log show DIR [--json]

Lists every entry (checked against its leaf hash): index, kind (manifest, trust-bundle,
revocation-list), RFC 9162 leaf hash, size in bytes and the key ids that signed it; then the newest
checkpoint.

Examples:
  fwseal log show ./tlog --json`,
  options: { json: { type: 'boolean' } },
  run(p, io) {
    const dir = onePositional(p, 'DIR');
    const entries: Record<string, unknown>[] = [];
    const r = verifyLog(dir, (index, obj) => {
      const env = parseEnvelope(obj);
      const signers = env.ok ? env.envelope.signatures.map((s) => hex(s.kid)) : [];
      const e = { index, kind: envelopeKind(obj) ?? 'unknown', leafHash: hex(readIndex(dir).leaves[index] ?? new Uint8Array(0)), bytes: obj.length, signers };
      if (p.values.json) entries.push(e);
      else io.stdout(`${e.index} ${e.kind} ${e.leafHash} ${e.bytes} B signed by ${signers.join(',') || '-'}\n`);
    });
    const newest = newestCheckpoint(dir);
    if (p.values.json) json(io, { ...r, entries, checkpoint: newest?.note ?? null });
    else io.stderr(`${r.size} entries; newest checkpoint: ${newest ? `size ${newest.checkpoint.size}` : 'none'}\n`);
    return 0;
  },
};

export const logCosign: Command = {
  name: 'log cosign',
  summary: 'add a witness cosignature (C2SP tlog-cosignature, Ed25519) to a checkpoint after checking it against the log',
  usage: `fwseal log cosign NOTE --key WITNESS.key --log DIR [--name NAME] [--json]

As a witness: opens NOTE (a checkpoint) with the log key of the log in DIR, checks that its root is
the log's root at its size, then adds an Ed25519 cosignature/v1 line (key type 0x04, with the time)
under NAME (default: the witness key's name) and writes NOTE back. Verifiers require K of these
(fwseal log verify --witness W.pub --witness-threshold K).

Examples:
  fwseal log cosign ./tlog/checkpoint.note --key witness-1.key --log ./tlog`,
  options: { key: { type: 'string' }, log: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const notePath = onePositional(p, 'NOTE');
    const dir = str(p, 'log', true);
    const cfg = readConfig(dir);
    const text = readFileLimited(notePath, NOTE_MAX_BYTES, 'checkpoint');
    const opened = openCheckpoint(Buffer.from(text).toString('utf8'), cfg.logKey);
    const { size, root } = opened.checkpoint;
    const ours = sizeCheckpoint(dir, size);
    if (!Buffer.from(ours.root).equals(root)) throw new FwsealError('LOG_INVALID', `the checkpoint of size ${size} does not match the log: not cosigned`);
    const key = loadSigningKey(str(p, 'key', true));
    const note = parseNote(opened.note);
    const sig = cosignNote(note.text, key, str(p, 'name') ?? key.name, Math.floor(Date.now() / 1000));
    const others = note.signatures.filter((s) => !(s.name === sig.name && s.keyId === sig.keyId));
    writeFileAtomic(notePath, formatNote({ text: note.text, signatures: [...others, sig] }));
    if (p.values.json) json(io, { file: notePath, witness: sig.name, size });
    else io.stdout(`${notePath}: cosigned by ${sig.name} at size ${size}\n`);
    return 0;
  },
};

/** `log monitor` is in ./log-monitor.ts. */
export const LOG_COMMANDS: readonly Command[] = [logInit, logAppend, logCheckpoint, logProve, logConsistency, logVerify, logShow, logCosign];
