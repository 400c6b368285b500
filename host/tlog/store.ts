/**
 * The transparency log on disk (issue 19): an append-only sequence of signed objects (manifests,
 * trust bundles, revocation lists), each a leaf of an RFC 9162 tree (shared/merkle.ts), and the
 * checkpoints signed over it.
 *
 * DIR/log.json      origin and log public key (written once, atomically)
 * DIR/records       u32be length || object bytes, one per entry, in order
 * DIR/index         40 bytes per entry: u64be offset of its record || RFC 9162 leaf hash of the object
 * DIR/checkpoints/  SIZE.note, every checkpoint signed; DIR/checkpoint.note is the newest
 *
 * Crash safety: an append writes its records after the committed end of `records` and fsyncs, then
 * writes its index entries after the committed end of `index` and fsyncs. The index is the commit:
 * the tree size is the number of whole index entries. A crash (kill -9, power cut) before the index
 * write leaves bytes past the committed end of `records` that readers ignore and the next append
 * overwrites; a crash after it leaves the entry in. Either way the log verifies.
 */
import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { leafHash, MerkleAccumulator } from '../../shared/merkle.js';
import { FwsealError } from '../errors.js';
import { nodeSha256 } from '../hash.js';
import { syncFolder, writeFileAtomic } from '../io.js';
import { type PublicKeyInfo } from '../keys.js';
import { isKeyName, type NoteKey, SIG_ED25519 } from './note.js';
import { RecordReader } from './record-reader.js';
import { LogTree } from './tree.js';

export const INDEX_ENTRY_BYTES = 40;
/** The largest object a log takes: larger than any envelope the verifier accepts. */
export const MAX_RECORD_BYTES = 1024 * 1024;

export type LogConfig = { readonly origin: string; readonly logKey: NoteKey; readonly keyId: string };
type LogJson = { type: 'fwseal-log'; version: 1; origin: string; logKey: { name: string; keyId: string; publicKey: string } };

const invalid = (why: string) => new FwsealError('LOG_INVALID', why);
const errno = (e: unknown) => (e as NodeJS.ErrnoException).code ?? 'error';

/** Test hook (crash tests only): FWSEAL_TLOG_PAUSE=after-records|after-index makes an append stop there until killed. */
function pausePoint(stage: 'after-records' | 'after-index', dir: string): void {
  if (process.env.FWSEAL_TLOG_PAUSE !== stage) return;
  writeFileAtomic(join(dir, `paused-${stage}`), String(process.pid));
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 600_000);
}

/** DIR/log.json for a new log: origin (the checkpoint's first line and the log key's note name) and the log public key. */
export function initLog(dir: string, origin: string, logPub: PublicKeyInfo): LogConfig {
  if (!isKeyName(origin)) throw new FwsealError('USAGE', '--origin must be non-empty, without spaces or "+" (e.g. example.com/firmware-log)');
  try {
    mkdirSync(dir, { recursive: true });
    mkdirSync(join(dir, 'checkpoints'), { recursive: true });
  } catch (e) {
    throw new FwsealError('IO', `cannot create ${dir}: ${errno(e)}`);
  }
  const body: LogJson = {
    type: 'fwseal-log',
    version: 1,
    origin,
    logKey: { name: logPub.name, keyId: Buffer.from(logPub.keyId).toString('hex'), publicKey: Buffer.from(logPub.publicKey).toString('base64') },
  };
  writeFileAtomic(join(dir, 'log.json'), `${JSON.stringify(body, null, 2)}\n`, { replace: false });
  for (const f of ['records', 'index']) writeFileAtomic(join(dir, f), new Uint8Array(0), { replace: false });
  return readConfig(dir);
}

export function readConfig(dir: string): LogConfig {
  let obj: LogJson;
  try {
    obj = JSON.parse(readFileSync(join(dir, 'log.json'), 'utf8'));
  } catch (e) {
    if (errno(e) === 'ENOENT') throw new FwsealError('NOT_FOUND', `${dir} is not a transparency log (no log.json; run fwseal log init)`);
    throw invalid(`${dir}/log.json does not parse`);
  }
  const pub = typeof obj?.logKey?.publicKey === 'string' ? Buffer.from(obj.logKey.publicKey, 'base64') : Buffer.alloc(0);
  if (obj?.type !== 'fwseal-log' || obj.version !== 1 || typeof obj.origin !== 'string' || !isKeyName(obj.origin) || pub.length !== 32)
    throw invalid(`${dir}/log.json is not an fwseal log description`);
  return { origin: obj.origin, logKey: { name: obj.origin, publicKey: new Uint8Array(pub), type: SIG_ED25519 }, keyId: String(obj.logKey.keyId) };
}

function readAll(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new FwsealError('IO', `cannot read ${path}: ${errno(e)}`);
  }
}

/** The committed entries: (offset, leaf hash) of every whole index entry. A torn last entry is not committed. */
export type IndexView = { readonly size: number; readonly offsets: readonly number[]; readonly leaves: readonly Uint8Array[]; readonly tornBytes: number };

export function readIndex(dir: string): IndexView {
  const buf = readAll(join(dir, 'index'));
  const size = Math.floor(buf.length / INDEX_ENTRY_BYTES);
  const offsets: number[] = new Array(size);
  const leaves: Uint8Array[] = new Array(size);
  for (let i = 0; i < size; i++) {
    const at = i * INDEX_ENTRY_BYTES;
    const off = buf.readBigUInt64BE(at);
    if (off > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`index entry ${i} has an impossible offset`);
    offsets[i] = Number(off);
    leaves[i] = new Uint8Array(buf.subarray(at + 8, at + INDEX_ENTRY_BYTES));
  }
  return { size, offsets, leaves, tornBytes: buf.length - size * INDEX_ENTRY_BYTES };
}

/** Index entries [start, start + count) (fewer at the end of the log): read from the tail only, at any log size. */
export function readIndexRange(dir: string, start: number, count = Number.MAX_SAFE_INTEGER): { size: number; offsets: number[]; leaves: Uint8Array[] } {
  const fd = openFile(join(dir, 'index'), constants.O_RDONLY);
  try {
    const size = Math.floor(fstatSync(fd).size / INDEX_ENTRY_BYTES);
    const n = Math.max(0, Math.min(count, size - start));
    const buf = Buffer.alloc(n * INDEX_ENTRY_BYTES);
    if (n > 0 && readSync(fd, buf, 0, buf.length, start * INDEX_ENTRY_BYTES) !== buf.length) throw invalid('the index changed while it was read');
    const offsets: number[] = [];
    const leaves: Uint8Array[] = [];
    for (let k = 0; k < n; k++) {
      const off = buf.readBigUInt64BE(k * INDEX_ENTRY_BYTES);
      if (off > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`index entry ${start + k} has an impossible offset`);
      offsets.push(Number(off));
      leaves.push(new Uint8Array(buf.subarray(k * INDEX_ENTRY_BYTES + 8, (k + 1) * INDEX_ENTRY_BYTES)));
    }
    return { size, offsets, leaves };
  } finally {
    closeSync(fd);
  }
}

/** The tree over the committed entries (host/tlog/tree.ts): one read of the index, n - 1 node hashes. */
export function indexTree(dir: string): LogTree {
  return LogTree.fromIndex(readAll(join(dir, 'index')), INDEX_ENTRY_BYTES, 8);
}

/** Read the object of entry `i` at `offset` from an open records file; LOG_INVALID if the record is not whole. */
export function readRecord(fd: number, offset: number, i: number): Uint8Array {
  const head = Buffer.alloc(4);
  if (readSync(fd, head, 0, 4, offset) !== 4) throw invalid(`record ${i} is missing from the records file`);
  const length = head.readUInt32BE(0);
  if (length === 0 || length > MAX_RECORD_BYTES) throw invalid(`record ${i} has an impossible length`);
  const body = Buffer.alloc(length);
  if (readSync(fd, body, 0, length, offset + 4) !== length) throw invalid(`record ${i} is cut short`);
  return new Uint8Array(body);
}

function openFile(path: string, flags: number): number {
  try {
    return openSync(path, flags | constants.O_NOFOLLOW);
  } catch (e) {
    throw new FwsealError('IO', `cannot open ${path}: ${errno(e)}`);
  }
}

/** The object of entry `index`, checked against its leaf hash. */
export function readEntry(dir: string, view: IndexView, index: number): Uint8Array {
  if (!Number.isSafeInteger(index) || index < 0 || index >= view.size) throw new FwsealError('NOT_FOUND', `the log has no entry ${index} (size ${view.size})`);
  return readEntryAt(dir, index, view.offsets[index], view.leaves[index]);
}

/** The object of entry `index` whose record is at `offset`, checked against its leaf hash. */
export function readEntryAt(dir: string, index: number, offset: number, leaf: Uint8Array): Uint8Array {
  const fd = openFile(join(dir, 'records'), constants.O_RDONLY);
  try {
    const obj = readRecord(fd, offset, index);
    if (!Buffer.from(leafHash(nodeSha256, obj)).equals(leaf)) throw invalid(`record ${index} does not match its leaf hash`);
    return obj;
  } finally {
    closeSync(fd);
  }
}

/** One writer at a time: an O_EXCL lock file holding the pid; a lock whose process is gone is broken. */
function lock(dir: string): () => void {
  const path = join(dir, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => unlinkSync(path);
    } catch (e) {
      if (errno(e) !== 'EEXIST') throw new FwsealError('IO', `cannot lock ${path}: ${errno(e)}`);
    }
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    let alive = Number.isSafeInteger(pid) && pid > 0;
    try {
      if (alive) process.kill(pid, 0);
    } catch (e) {
      alive = errno(e) === 'EPERM';
    }
    if (alive) throw new FwsealError('IO', `the log is locked by process ${pid} (${path})`);
    unlinkSync(path);
  }
  throw new FwsealError('IO', `cannot lock ${path}`);
}

function writeAt(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

export type Appended = { readonly index: number; readonly leafHash: Uint8Array };

/**
 * Append objects as new entries (see the file comment for the two writes and why a crash between
 * them leaves a log that verifies). Returns each entry's index and leaf hash.
 */
export function appendEntries(dir: string, objects: readonly Uint8Array[]): Appended[] {
  readConfig(dir);
  for (const o of objects) if (o.length === 0 || o.length > MAX_RECORD_BYTES) throw new FwsealError('TOO_LARGE', 'an entry is empty or larger than 1 MiB');
  const unlock = lock(dir);
  const records = openFile(join(dir, 'records'), constants.O_RDWR);
  const index = openFile(join(dir, 'index'), constants.O_RDWR);
  try {
    // Only the last whole index entry is read: an append costs the same at any log size.
    const size = Math.floor(fstatSync(index).size / INDEX_ENTRY_BYTES);
    let end = 0;
    if (size > 0) {
      const lastEntry = Buffer.alloc(INDEX_ENTRY_BYTES);
      readSync(index, lastEntry, 0, INDEX_ENTRY_BYTES, (size - 1) * INDEX_ENTRY_BYTES);
      const offset = Number(lastEntry.readBigUInt64BE(0));
      end = offset + 4 + readRecord(records, offset, size - 1).length;
    }
    if (fstatSync(records).size < end) throw invalid('the records file is shorter than its index says');
    const entries = Buffer.alloc(objects.length * INDEX_ENTRY_BYTES);
    const out: Appended[] = [];
    const chunks: Buffer[] = [];
    let at = end;
    objects.forEach((o, k) => {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(o.length, 0);
      chunks.push(head, Buffer.from(o));
      const lh = leafHash(nodeSha256, o);
      entries.writeBigUInt64BE(BigInt(at), k * INDEX_ENTRY_BYTES);
      entries.set(lh, k * INDEX_ENTRY_BYTES + 8);
      out.push({ index: size + k, leafHash: lh });
      at += 4 + o.length;
    });
    // Write 1: the records, after the committed end (overwriting what a crashed append left there).
    writeAt(records, Buffer.concat(chunks), end);
    ftruncateSync(records, at);
    fsyncSync(records);
    pausePoint('after-records', dir);
    // Write 2, the commit: the index entries, after the last whole entry.
    writeAt(index, entries, size * INDEX_ENTRY_BYTES);
    ftruncateSync(index, (size + objects.length) * INDEX_ENTRY_BYTES);
    fsyncSync(index);
    pausePoint('after-index', dir);
    return out;
  } finally {
    closeSync(records);
    closeSync(index);
    unlock();
  }
}

export type LogScan = {
  readonly size: number;
  readonly uncommittedBytes: number;
  readonly tornIndexBytes: number;
  readonly rootAt: (size: number) => Uint8Array;
};

/**
 * Read every committed record, check it against its leaf hash and its offset against the one before
 * (records are contiguous), and keep the RFC 9162 root at each size in `sizes`. LOG_INVALID on the
 * first entry that does not check. `visit` sees each entry's object.
 */
export function scanLog(dir: string, sizes: readonly number[], visit?: (i: number, obj: Uint8Array) => void): LogScan {
  const view = readIndex(dir);
  const fd = openFile(join(dir, 'records'), constants.O_RDONLY);
  const acc = new MerkleAccumulator(nodeSha256);
  const roots = new Map<number, Uint8Array>();
  const want = new Set(sizes);
  let end = 0;
  try {
    const reader = new RecordReader(fd, MAX_RECORD_BYTES);
    if (want.has(0)) roots.set(0, acc.root());
    for (let i = 0; i < view.size; i++) {
      if (view.offsets[i] !== end) throw invalid(`index entry ${i} does not point right after record ${i - 1}`);
      const obj = reader.read(end, i);
      if (!Buffer.from(leafHash(nodeSha256, obj)).equals(view.leaves[i])) throw invalid(`record ${i} does not match its leaf hash`);
      visit?.(i, obj);
      acc.push(view.leaves[i]);
      if (want.has(i + 1)) roots.set(i + 1, acc.root());
      end += 4 + obj.length;
    }
    const fileSize = fstatSync(fd).size;
    return {
      size: view.size,
      uncommittedBytes: fileSize - end,
      tornIndexBytes: view.tornBytes,
      rootAt: (n) => {
        const r = roots.get(n);
        if (!r) throw new FwsealError('INTERNAL', `no root kept for size ${n}`);
        return r;
      },
    };
  } finally {
    closeSync(fd);
  }
}

/** The saved checkpoints: checkpoints/SIZE.note, by size. */
export function checkpointFiles(dir: string): { size: number; path: string }[] {
  let names: string[];
  try {
    names = readdirSync(join(dir, 'checkpoints'));
  } catch (e) {
    throw new FwsealError('IO', `cannot list ${dir}/checkpoints: ${errno(e)}`);
  }
  return names
    .filter((n) => /^(0|[1-9][0-9]*)\.note$/.test(n))
    .map((n) => ({ size: Number(n.slice(0, -5)), path: join(dir, 'checkpoints', n) }))
    .sort((a, b) => a.size - b.size);
}

/** Keep a signed checkpoint: checkpoints/SIZE.note, and checkpoint.note when it is the newest. */
export function saveCheckpoint(dir: string, size: number, note: string): string {
  const path = join(dir, 'checkpoints', `${size}.note`);
  writeFileAtomic(path, note);
  const newest = checkpointFiles(dir).at(-1);
  if (!newest || newest.size <= size) writeFileAtomic(join(dir, 'checkpoint.note'), note);
  syncFolder(dir);
  return path;
}
