/**
 * Log proof requests (SPEC.md §12.2, §12.5; issue 19 item 2): a device whose trust bundle requires
 * transparency-log proof asks for the attachment that proves the campaign's manifest envelope is in
 * the log `fwseal serve --log DIR` hosts (SPEC.md §16.7), with consistency from the checkpoint size
 * it stored. The server builds it from the log on disk (host/tlog/attachment.ts) and never looks
 * inside: the device checks every part. No log, or the entry not yet in a signed checkpoint:
 * LOG_PROOF_UNAVAILABLE (the device retries: the next checkpoint is at most one interval away); a
 * device that stored a checkpoint larger than the log's newest: LOG_CHECKPOINT_BEHIND.
 *
 * Building a proof reads the log's index (hundreds of ms at 100,000 entries) and the request queue
 * answers one request at a time, so proofs are kept: a fleet asks for the same manifest from the
 * same few stored sizes, and one build serves them all until the newest checkpoint changes.
 */
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { toHex } from '../../shared/bytes.js';
import { CODES } from '../../shared/codes.js';
import { encodeLogProofResponse } from '../../shared/ota/log-proof.js';
import { FwsealError } from '../errors.js';
import { nodeSha256 } from '../hash.js';
import { type KeptTree, logProofFor } from '../tlog/attachment.js';
import { newestCheckpoint } from '../tlog/log.js';
import { readConfig } from '../tlog/store.js';
import { type OtaStore } from './store.js';

/** The log a server hosts, as the proof builder needs it. */
export type LogProofSource = { readonly dir: string; keptTree?(): KeptTree };

/** Proofs (or the code of a failed build) kept per log, for this many (manifest, stored size) pairs. */
const KEPT_PROOFS = 64;

type Kept = { readonly checkpoint: string; readonly answer: Promise<Uint8Array | number> };
type Served = { readonly dir: string; readonly tree?: KeptTree; readonly kept: Map<string, Kept> };

/** The served log of each server, by its store (one store per server instance). */
const sources = new WeakMap<object, Served>();

/** Serve log proofs from `log` to the devices of the server whose store this is (`fwseal serve --log`). */
export function serveLogProofs(store: OtaStore, log: LogProofSource | null): void {
  if (log) sources.set(store, { dir: log.dir, ...(log.keptTree ? { tree: log.keptTree() } : {}), kept: new Map() });
  else sources.delete(store);
}

/** What answers one log proof request: the response payload, or the error reply's code. */
export type LogProofAnswer = { readonly payload: Uint8Array } | { readonly code: number };

/** Which newest checkpoint a kept proof was built against: `checkpoint.note` as the file system sees it (rewritten atomically, SPEC.md §16.2). */
function checkpointStamp(dir: string): string {
  try {
    const s = statSync(join(dir, 'checkpoint.note'), { bigint: true });
    return `${s.ino}:${s.mtimeNs}:${s.size}`;
  } catch {
    return 'none';
  }
}

/** The attachment, or the code to answer, for `envelope` from `fromSize`. Other failures are thrown. */
async function build(dir: string, envelope: Uint8Array, fromSize: number, tree?: KeptTree): Promise<Uint8Array | number> {
  try {
    return await logProofFor(dir, envelope, fromSize, tree);
  } catch (e) {
    if (e instanceof FwsealError && e.codeName === 'NOT_FOUND') return CODES.LOG_PROOF_UNAVAILABLE;
    // LOG_INVALID is also a log that does not read as fwseal writes it: only a device ahead of the newest checkpoint is BEHIND.
    if (e instanceof FwsealError && e.codeName === 'LOG_INVALID' && (newestCheckpoint(dir, readConfig(dir))?.checkpoint.size ?? 0) < fromSize)
      return CODES.LOG_CHECKPOINT_BEHIND;
    throw e;
  }
}

/**
 * The proof of `envelope` (the campaign's manifest, byte for byte as stored) with consistency from
 * `fromSize`, built once per newest checkpoint. A build that throws (I/O, a log that does not
 * verify) is not kept: the request queue answers it SERVER_BUSY and logs it, and the next asks again.
 */
export async function answerLogProof(
  store: OtaStore,
  ids: { readonly campaign: string; readonly requestId: number },
  envelope: Uint8Array,
  fromSize: number,
): Promise<LogProofAnswer> {
  const log = sources.get(store);
  if (!log) return { code: CODES.LOG_PROOF_UNAVAILABLE };
  const key = `${toHex(nodeSha256(envelope))}/${fromSize}`;
  const checkpoint = checkpointStamp(log.dir);
  let kept = log.kept.get(key);
  if (kept?.checkpoint !== checkpoint) {
    kept = { checkpoint, answer: build(log.dir, envelope, fromSize, log.tree) };
    log.kept.delete(key);
    log.kept.set(key, kept);
    if (log.kept.size > KEPT_PROOFS) log.kept.delete(log.kept.keys().next().value as string);
    kept.answer.catch(() => log.kept.get(key) === kept && log.kept.delete(key));
  }
  const got = await kept.answer;
  return typeof got === 'number' ? { code: got } : { payload: encodeLogProofResponse({ ...ids, proof: got }) };
}
