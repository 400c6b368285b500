/**
 * `fwseal log monitor --log URL` (issue 19 item 4; SPEC.md §16.5): the monitor over a log
 * served by `fwseal serve --log`, read through the HTTP API with FWSEAL_SERVER_TOKEN as every API
 * client. The server's word is taken for nothing: the newest checkpoint must open with the log key
 * (pinned, else the one GET /api/log names), the consistency proof from the checkpoint seen last is
 * verified here, and the entries are hashed here into the root the checkpoint signs.
 */
import { leafHash, merkleRoot } from '../../shared/merkle.js';
import { FwsealError } from '../errors.js';
import { nodeSha256 } from '../hash.js';
import { type ApiTarget, apiRequest } from '../ota/api-client.js';
import { openCheckpoint, verifyConsistencyBundle } from './log.js';
import { examineRange, type MonitorOptions, type MonitorReport, policyOf } from './monitor.js';
import { type NoteKey, SIG_ED25519 } from './note.js';
import { ENTRIES_PAGE_MAX, type LogEntry } from './served.js';

type LogInfo = { origin: string; logKey: { publicKey: string } };
type EntriesPage = { size: number; entries: LogEntry[] };

const invalid = (why: string) => new FwsealError('LOG_INVALID', why);

/** The objects 0..size-1, page by page; each must be the entry its index says. */
async function readObjects(target: ApiTarget, size: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  while (out.length < size) {
    const page = await apiRequest<EntriesPage>(target, 'GET', `api/log/entries?start=${out.length}&count=${Math.min(ENTRIES_PAGE_MAX, size - out.length)}`);
    if (!Array.isArray(page?.entries) || page.entries.length === 0) throw invalid(`the server gave no entry ${out.length} of the ${size} its checkpoint signs`);
    for (const e of page.entries.slice(0, size - out.length)) {
      if (e.index !== out.length || typeof e.object !== 'string') throw invalid(`the server gave entry ${e.index} for entry ${out.length}`);
      out.push(new Uint8Array(Buffer.from(e.object, 'base64')));
    }
  }
  return out;
}

/** Monitor the log served at `target` from `opts.since` to its newest signed checkpoint (the same report as a folder's). */
export async function monitorServed(target: ApiTarget, opts: MonitorOptions): Promise<MonitorReport> {
  const policy = policyOf(opts);
  const info = await apiRequest<LogInfo>(target, 'GET', 'api/log');
  if (typeof info?.origin !== 'string' || typeof info.logKey?.publicKey !== 'string') throw new FwsealError('MALFORMED', 'GET /api/log did not describe a log');
  const logKey: NoteKey = opts.logKey ?? { name: info.origin, publicKey: new Uint8Array(Buffer.from(info.logKey.publicKey, 'base64')), type: SIG_ED25519 };
  const old =
    opts.since !== undefined ? openCheckpoint(opts.since, logKey).checkpoint : { origin: logKey.name, size: 0, root: new Uint8Array(32), extensions: [] };
  // From size 0 the proof is empty: the answer is then only the newest checkpoint, opened with the log key.
  const step = await apiRequest<unknown>(target, 'GET', `api/log/consistency?from=${old.size}`);
  const newest = verifyConsistencyBundle(step, old, logKey);
  const to = newest.checkpoint;
  const objects = await readObjects(target, to.size);
  const leaves = objects.map((o) => leafHash(nodeSha256, o));
  if (!Buffer.from(merkleRoot(nodeSha256, leaves)).equals(to.root))
    throw invalid(`the served entries do not give the root of the checkpoint of size ${to.size}`);
  const examined = examineRange(old.size, to.size, (i) => objects[i], policy);
  return { origin: to.origin, fromSize: old.size, toSize: to.size, checkpoint: newest.note, ...examined };
}
