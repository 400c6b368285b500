/**
 * The log proof attachment a release carries to a device whose trust bundle has a log policy
 * (SPEC.md §16.8, shared/log-proof.ts): the inclusion proof of the manifest envelope in the newest
 * signed checkpoint, that checkpoint's log signature and witness cosignatures (from
 * `checkpoint.note`), and a consistency proof from the checkpoint size the device stored. The
 * device checks every part (device/verify/log.ts); this builder only collects them.
 */
import { LIMITS } from '../../shared/limits.js';
import { type Cosignature, encodeLogProof } from '../../shared/log-proof.js';
import { FwsealError } from '../errors.js';
import { findEntry, proveInclusion } from './log.js';
import { type NoteSignature, noteKeyId, parseCheckpoint, parseNote, SIG_ED25519 } from './note.js';
import { indexTree, readConfig } from './store.js';
import { type LogTree } from './tree.js';

/** A cosignature/v1 line's bytes: u64 big-endian time, then the Ed25519 signature (SPEC.md §16.3). */
function cosignatureOf(s: NoteSignature): Cosignature | null {
  if (s.signature.length !== 72) return null;
  const time = Buffer.from(s.signature.subarray(0, 8)).readBigUInt64BE(0);
  if (time > BigInt(LIMITS.maxCounter)) return null;
  const keyId = Buffer.alloc(4);
  keyId.writeUInt32BE(s.keyId >>> 0, 0);
  return { keyId: new Uint8Array(keyId), time: Number(time), signature: s.signature.slice(8) };
}

/**
 * The encoded attachment for `envelope` (an entry of the log in `logDir`, found by its leaf hash),
 * with a consistency proof from `fromSize` when 0 < fromSize < the checkpoint's size. NOT_FOUND when
 * the entry is not in the newest signed checkpoint; LOG_INVALID when fromSize is larger than it (the
 * device saw a newer checkpoint than the log has: a rollback) or the checkpoint has extension lines
 * (the device rebuilds the text from origin, size and root only).
 */
/**
 * A tree kept in step with the log and its look-up of entries (`fwseal serve`, host/tlog/served.ts):
 * with it a proof costs O(log n) hashes; without, the index is read and the tree built per call.
 */
export type KeptTree = { readonly tree: LogTree; indexOf(obj: Uint8Array): number };

export async function logProofFor(logDir: string, envelope: Uint8Array, fromSize: number, kept?: KeptTree): Promise<Uint8Array> {
  if (!Number.isSafeInteger(fromSize) || fromSize < 0) throw new FwsealError('USAGE', 'the old checkpoint size is a whole number >= 0');
  const cfg = readConfig(logDir);
  const tree = kept?.tree ?? indexTree(logDir);
  const index = kept ? kept.indexOf(envelope) : findEntry(logDir, envelope);
  if (index < 0) throw new FwsealError('NOT_FOUND', 'the envelope is not an entry of the log');
  const inclusion = proveInclusion(logDir, index, tree); // NOT_FOUND until a checkpoint includes it; the log key's signature checked
  const note = parseNote(inclusion.checkpoint);
  const cp = parseCheckpoint(note.text);
  if (cp.extensions.length > 0) throw new FwsealError('LOG_INVALID', 'the checkpoint has extension lines, which a device does not rebuild');
  if (fromSize > cp.size) throw new FwsealError('LOG_INVALID', `the device saw a checkpoint of size ${fromSize}, the log's newest is ${cp.size}`);
  const logId = noteKeyId({ ...cfg.logKey, type: SIG_ED25519 });
  const logSig = note.signatures.find((s) => s.name === cfg.origin && s.keyId === logId);
  if (logSig?.signature.length !== 64) throw new FwsealError('LOG_INVALID', 'the checkpoint carries no signature of the log key');
  // Every cosignature the note holds, up to the bound a device reads: the device counts only the
  // witnesses its own policy lists.
  const cosignatures = note.signatures
    .filter((s) => s !== logSig)
    .map(cosignatureOf)
    .filter((c): c is Cosignature => c !== null)
    .slice(0, LIMITS.maxRoleKeys);
  const consistency = fromSize > 0 && fromSize < cp.size ? { fromSize, consistency: tree.consistency(fromSize, cp.size) } : {};
  return encodeLogProof({
    index,
    size: cp.size,
    root: cp.root,
    inclusion: inclusion.proof.map((h) => new Uint8Array(Buffer.from(h, 'hex'))),
    signature: logSig.signature,
    cosignatures,
    ...consistency,
  });
}
