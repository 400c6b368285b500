/**
 * Reading the command line's log inputs: checkpoint notes, proof bundles, log and witness keys; and
 * `fwseal log verify --proof|--consistency`, the offline checks a device or a monitor makes (issue 19).
 */
import { type Io, int, json, list, type Parsed, readObjectFile, str } from '../commands/common.js';
import { FwsealError } from '../errors.js';
import { readFileLimited } from '../io.js';
import { loadPublicKey } from '../keys.js';
import { openCheckpoint, verifyConsistencyBundle, verifyInclusion } from './log.js';
import { NOTE_MAX_BYTES, type NoteKey, SIG_COSIGNATURE_V1, SIG_ED25519 } from './note.js';

const PROOF_MAX_BYTES = 256 * 1024;

/** A checkpoint note file's text (bounded; parsed by the caller). */
export function readCheckpointArg(path: string): string {
  return Buffer.from(readFileLimited(path, NOTE_MAX_BYTES, 'checkpoint')).toString('utf8');
}

/** A JSON proof bundle file; MALFORMED if it is not JSON. */
export function readJsonFile(path: string): unknown {
  const text = Buffer.from(readFileLimited(path, PROOF_MAX_BYTES, 'proof')).toString('utf8');
  try {
    return JSON.parse(text);
  } catch {
    throw new FwsealError('MALFORMED', `${path} is not a JSON proof`);
  }
}

/** The log key as a note key: the fwseal public key under the log's origin (tlog-checkpoint: key name = origin). */
export function logKeyArg(p: Parsed): NoteKey {
  const key = loadPublicKey(str(p, 'log-key', true));
  return { name: str(p, 'origin', true), publicKey: key.publicKey, type: SIG_ED25519 };
}

/** Witness keys (--witness W.pub, repeatable) as cosignature/v1 note keys named by their fwseal key names, and K. */
export function witnessArgs(p: Parsed): { witnesses: NoteKey[]; threshold: number } {
  const witnesses = list(p, 'witness').map((path) => {
    const k = loadPublicKey(path);
    return { name: k.name, publicKey: k.publicKey, type: SIG_COSIGNATURE_V1 } as NoteKey;
  });
  const threshold = int(p, 'witness-threshold', 0, witnesses.length, witnesses.length);
  return { witnesses, threshold };
}

/** `fwseal log verify --proof ... | --consistency ...`: 0 when the proof holds; throws the verdict otherwise. */
export function verifyOffline(p: Parsed, io: Io): number {
  const logKey = logKeyArg(p);
  const { witnesses, threshold } = witnessArgs(p);
  const proofPath = str(p, 'proof');
  if (proofPath !== undefined) {
    if (p.values.consistency !== undefined) throw new FwsealError('USAGE', 'give --proof or --consistency, not both');
    const entry = str(p, 'entry', true);
    const opened = verifyInclusion(readJsonFile(proofPath), readObjectFile(entry, null), logKey, witnesses, threshold);
    const cosigned = opened.signers.length - 1;
    if (p.values.json) json(io, { valid: true, entry, size: opened.checkpoint.size, cosignatures: cosigned });
    else io.stdout(`${entry}: in ${logKey.name} at size ${opened.checkpoint.size}; checkpoint signed by the log key and ${cosigned} witnesses: valid\n`);
    return 0;
  }
  const from = str(p, 'from', true);
  const old = openCheckpoint(readCheckpointArg(from), logKey).checkpoint;
  const opened = verifyConsistencyBundle(readJsonFile(str(p, 'consistency', true)), old, logKey, witnesses, threshold);
  if (p.values.json) json(io, { valid: true, oldSize: old.size, newSize: opened.checkpoint.size });
  else io.stdout(`${logKey.name}: size ${opened.checkpoint.size} is consistent with size ${old.size}: valid\n`);
  return 0;
}
