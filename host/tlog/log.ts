/**
 * What the transparency log does with its storage (issue 19): sign checkpoints, verify the whole
 * log, and make and check inclusion and consistency proofs. The Merkle work is shared/merkle.ts
 * (RFC 9162 §2.1.3, §2.1.4); the notes are host/tlog/note.ts (C2SP signed-note, tlog-checkpoint).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { toHex } from '../../shared/bytes.js';
import { constantTimeEqual, leafHash, rootFromInclusionProof, verifyConsistency } from '../../shared/merkle.js';
import { FwsealError } from '../errors.js';
import { nodeSha256 } from '../hash.js';
import { type SigningKey } from '../keys.js';
import { type Checkpoint, checkpointText, formatNote, type NoteKey, parseCheckpoint, parseNote, signNote, type Verified, verifyNote } from './note.js';
import { checkpointFiles, indexTree, type LogConfig, readConfig, readIndex, saveCheckpoint, scanLog } from './store.js';
import { type LogTree } from './tree.js';

const invalid = (why: string) => new FwsealError('LOG_INVALID', why);
const hex = (b: Uint8Array) => toHex(b);
const unhex = (s: unknown, what: string): Uint8Array => {
  if (typeof s !== 'string' || !/^([0-9a-f]{2})*$/.test(s)) throw new FwsealError('MALFORMED', `${what} is not hex`);
  return new Uint8Array(Buffer.from(s, 'hex'));
};

/** A signed checkpoint opened with the log key: its fields and every known key that signed it. */
export type OpenedCheckpoint = { readonly note: string; readonly checkpoint: Checkpoint; readonly signers: readonly Verified[] };

/**
 * Open a checkpoint note: it must be a tlog-checkpoint, carry a valid signature of the log key (named
 * by the origin) and, from `witnesses`, at least `threshold` valid cosignatures.
 */
export function openCheckpoint(note: string, logKey: NoteKey, witnesses: readonly NoteKey[] = [], threshold = 0): OpenedCheckpoint {
  const parsed = parseNote(note);
  const checkpoint = parseCheckpoint(parsed.text);
  if (checkpoint.origin !== logKey.name) throw invalid(`the checkpoint is of log ${JSON.stringify(checkpoint.origin)}, not ${JSON.stringify(logKey.name)}`);
  const signers = verifyNote(parsed, [logKey, ...witnesses]);
  if (!signers.some((v) => v.key === logKey)) throw new FwsealError('BAD_SIGNATURE', 'the checkpoint carries no signature of the log key');
  const cosigned = signers.filter((v) => v.key !== logKey).length;
  if (cosigned < threshold) throw new FwsealError('THRESHOLD_NOT_MET', `the checkpoint has ${cosigned} of the ${threshold} witness cosignatures required`);
  return { note, checkpoint, signers };
}

/**
 * Sign a checkpoint of the whole log with the log key and keep it. A log must never sign a checkpoint
 * inconsistent with one it signed (tlog-checkpoint §Signatures): the newest saved one is checked
 * against the log first (its root must be the log's root at its size).
 */
export function signCheckpoint(dir: string, key: SigningKey): { note: string; checkpoint: Checkpoint; path: string } {
  const cfg = readConfig(dir);
  if (!Buffer.from(key.publicKey).equals(cfg.logKey.publicKey))
    throw new FwsealError('KEY_NOT_IN_TRUST', `key ${key.name} is not the key of log ${cfg.origin}`);
  const previous = checkpointFiles(dir).at(-1);
  const size = readIndex(dir).size;
  const scan = scanLog(dir, [size, ...(previous ? [previous.size] : [])]);
  if (previous) {
    const old = openCheckpoint(readFileSync(previous.path, 'utf8'), cfg.logKey).checkpoint;
    if (old.size > size || !constantTimeEqual(old.root, scan.rootAt(old.size)))
      throw invalid(`checkpoint ${previous.path} does not match the log: refusing to sign a fork`);
  }
  const checkpoint: Checkpoint = { origin: cfg.origin, size, root: scan.rootAt(size), extensions: [] };
  const text = checkpointText(checkpoint);
  const note = formatNote({ text, signatures: [signNote(text, key, cfg.origin)] });
  return { note, checkpoint, path: saveCheckpoint(dir, size, note) };
}

/**
 * Sign a checkpoint of `tree`, a tree the caller keeps in step with the log (`fwseal serve`: every
 * entry it holds was read back and checked against its leaf hash). The same refusal of a fork as
 * signCheckpoint, in O(log n) hashes instead of a scan of every record.
 */
export function signCheckpointFromTree(dir: string, key: SigningKey, tree: LogTree): { note: string; checkpoint: Checkpoint; path: string } {
  const cfg = readConfig(dir);
  if (!Buffer.from(key.publicKey).equals(cfg.logKey.publicKey))
    throw new FwsealError('KEY_NOT_IN_TRUST', `key ${key.name} is not the key of log ${cfg.origin}`);
  const previous = newestCheckpoint(dir, cfg)?.checkpoint;
  if (previous && (previous.size > tree.size || !constantTimeEqual(previous.root, tree.root(previous.size))))
    throw invalid(`the newest checkpoint (size ${previous.size}) does not match the log: refusing to sign a fork`);
  const checkpoint: Checkpoint = { origin: cfg.origin, size: tree.size, root: tree.root(), extensions: [] };
  const text = checkpointText(checkpoint);
  const note = formatNote({ text, signatures: [signNote(text, key, cfg.origin)] });
  return { note, checkpoint, path: saveCheckpoint(dir, tree.size, note) };
}

export type LogReport = {
  readonly origin: string;
  readonly size: number;
  readonly root: string;
  readonly checkpoints: number;
  readonly newestCheckpoint: number | null;
  readonly uncommittedBytes: number;
  readonly tornIndexBytes: number;
};

/** Verify the log on disk: every record against its leaf hash, every saved checkpoint (signature, root at its size). */
export function verifyLog(dir: string, visit?: (i: number, obj: Uint8Array) => void): LogReport {
  const cfg = readConfig(dir);
  const saved = checkpointFiles(dir);
  const size = readIndex(dir).size;
  for (const c of saved) if (c.size > size) throw invalid(`checkpoint ${c.path} is of size ${c.size}, larger than the log (${size})`);
  const scan = scanLog(dir, [size, ...saved.map((c) => c.size)], visit);
  const notes = [...saved.map((c) => c.path), ...(saved.length ? [join(dir, 'checkpoint.note')] : [])];
  for (const path of notes) {
    const { checkpoint } = openCheckpoint(readFileSync(path, 'utf8'), cfg.logKey);
    if (checkpoint.size > scan.size || !constantTimeEqual(checkpoint.root, scan.rootAt(checkpoint.size)))
      throw invalid(`checkpoint ${path} does not match the log at size ${checkpoint.size}`);
  }
  return {
    origin: cfg.origin,
    size: scan.size,
    root: hex(scan.rootAt(size)),
    checkpoints: saved.length,
    newestCheckpoint: saved.at(-1)?.size ?? null,
    uncommittedBytes: scan.uncommittedBytes,
    tornIndexBytes: scan.tornIndexBytes,
  };
}

/** The newest signed checkpoint of the log (checked), or null before the first. */
export function newestCheckpoint(dir: string, cfg: LogConfig = readConfig(dir)): OpenedCheckpoint | null {
  let note: string;
  try {
    note = readFileSync(join(dir, 'checkpoint.note'), 'utf8');
  } catch {
    return null;
  }
  return openCheckpoint(note, cfg.logKey);
}

/** An inclusion proof with the checkpoint it leads to: what a release carries (issue 19 item 2). */
export type InclusionBundle = {
  readonly type: 'fwseal-log-inclusion';
  readonly version: 1;
  readonly index: number;
  readonly size: number;
  readonly leafHash: string;
  readonly proof: readonly string[];
  readonly checkpoint: string;
};

/** RFC 9162 §2.1.3.1 PATH(index, D[size]) for entry `index`, against the newest signed checkpoint. */
export function proveInclusion(dir: string, index: number, tree: LogTree = indexTree(dir)): InclusionBundle {
  const opened = newestCheckpoint(dir);
  if (!opened) throw new FwsealError('NOT_FOUND', 'the log has no signed checkpoint yet (fwseal log checkpoint)');
  const { size } = opened.checkpoint;
  if (!Number.isSafeInteger(index) || index < 0 || index >= tree.size) throw new FwsealError('NOT_FOUND', `the log has no entry ${index} (size ${tree.size})`);
  if (index >= size) throw new FwsealError('NOT_FOUND', `entry ${index} is not in the newest checkpoint yet (size ${size}; fwseal log checkpoint)`);
  // The proof must lead to the signed root: a log whose index was changed since is refused here.
  if (size > tree.size || !constantTimeEqual(tree.root(size), opened.checkpoint.root))
    throw invalid('the index does not give the root of the newest checkpoint');
  const proof = tree.inclusion(index, size);
  return { type: 'fwseal-log-inclusion', version: 1, index, size, leafHash: hex(tree.leaf(index)), proof: proof.map(hex), checkpoint: opened.note };
}

/** The index of the first entry whose object is `obj` (by leaf hash), or -1. */
export function findEntry(dir: string, obj: Uint8Array): number {
  const lh = Buffer.from(leafHash(nodeSha256, obj));
  return readIndex(dir).leaves.findIndex((l) => lh.equals(l));
}

/**
 * Check an inclusion bundle offline, as a device or a monitor would: the checkpoint opens with the
 * log key (and `threshold` of `witnesses`), the object's leaf hash is the bundle's, and the proof
 * leads from it to the checkpoint's root (RFC 9162 §2.1.3.2). LOG_INVALID for a proof that does not.
 */
export function verifyInclusion(bundle: unknown, obj: Uint8Array, logKey: NoteKey, witnesses: readonly NoteKey[] = [], threshold = 0): OpenedCheckpoint {
  const b = bundle as Partial<InclusionBundle> | null;
  if (b?.type !== 'fwseal-log-inclusion' || b.version !== 1 || typeof b.checkpoint !== 'string' || !Array.isArray(b.proof))
    throw new FwsealError('MALFORMED', 'not an fwseal log inclusion proof');
  const opened = openCheckpoint(b.checkpoint, logKey, witnesses, threshold);
  const lh = leafHash(nodeSha256, obj);
  if (b.leafHash !== hex(lh)) throw invalid('the proof is for another entry');
  if (b.size !== opened.checkpoint.size || typeof b.index !== 'number') throw invalid('the proof is not for the tree of its checkpoint');
  const root = rootFromInclusionProof(
    nodeSha256,
    b.index,
    b.size,
    lh,
    b.proof.map((p) => unhex(p, 'a proof node')),
  );
  if (root === null || !constantTimeEqual(root, opened.checkpoint.root)) throw invalid('the inclusion proof does not lead to the checkpoint root');
  return opened;
}

export type ConsistencyBundle = {
  readonly type: 'fwseal-log-consistency';
  readonly version: 1;
  readonly oldSize: number;
  readonly newSize: number;
  readonly proof: readonly string[];
  readonly checkpoint: string;
};

/**
 * RFC 9162 §2.1.4.1 PROOF(oldSize, D[newSize]) from a checkpoint the caller saw to the newest
 * signed one. The old checkpoint's root must be the log's at its size: a log that cannot prove it
 * forked (LOG_INVALID), and saying so is the point of the proof.
 */
export function proveConsistency(dir: string, old: Checkpoint, tree: LogTree = indexTree(dir)): ConsistencyBundle {
  const opened = newestCheckpoint(dir);
  if (!opened) throw new FwsealError('NOT_FOUND', 'the log has no signed checkpoint yet (fwseal log checkpoint)');
  const { size } = opened.checkpoint;
  if (old.size > size) throw invalid(`the old checkpoint (size ${old.size}) is larger than the newest (size ${size}): the log was rolled back`);
  if (size > tree.size || !constantTimeEqual(tree.root(size), opened.checkpoint.root))
    throw invalid('the index does not give the root of the newest checkpoint');
  const proof = tree.consistency(old.size, size);
  if (old.size > 0 && !verifyConsistency(nodeSha256, old.size, size, old.root, opened.checkpoint.root, proof))
    throw invalid(`the log is not consistent with the checkpoint of size ${old.size}: a fork`);
  return { type: 'fwseal-log-consistency', version: 1, oldSize: old.size, newSize: size, proof: proof.map(hex), checkpoint: opened.note };
}

/** Check a consistency bundle from a checkpoint `old` (already trusted) to the bundle's, which must open with the log key. */
export function verifyConsistencyBundle(
  bundle: unknown,
  old: Checkpoint,
  logKey: NoteKey,
  witnesses: readonly NoteKey[] = [],
  threshold = 0,
): OpenedCheckpoint {
  const b = bundle as Partial<ConsistencyBundle> | null;
  if (b?.type !== 'fwseal-log-consistency' || b.version !== 1 || typeof b.checkpoint !== 'string' || !Array.isArray(b.proof))
    throw new FwsealError('MALFORMED', 'not an fwseal log consistency proof');
  const opened = openCheckpoint(b.checkpoint, logKey, witnesses, threshold);
  const next = opened.checkpoint;
  if (b.oldSize !== old.size || b.newSize !== next.size) throw invalid('the consistency proof is not between these two checkpoints');
  if (old.size > next.size) throw invalid('the new checkpoint is smaller than the old one: a rollback');
  const proof = b.proof.map((p) => unhex(p, 'a proof node'));
  const ok = old.size === 0 ? proof.length === 0 : verifyConsistency(nodeSha256, old.size, next.size, old.root, next.root, proof);
  if (!ok) throw invalid(`the checkpoint of size ${next.size} is not consistent with the one of size ${old.size}: a fork`);
  return opened;
}
