/**
 * The audit trail (SPEC.md §15.6): an append-only log of JSON lines, each chained to the one before
 * by SHA-256, written by the CLI (`--audit FILE`, FWSEAL_AUDIT_LOG) and by the OTA server (DATA/audit.log).
 * One module writes, reads and verifies it, so the writer never produces a line the verifier refuses.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, fsyncSync, linkSync, lstatSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { LIMITS } from '../shared/limits.js';
import { type AuditEvent } from './commands/common.js';
import { FwsealError } from './errors.js';
import { syncFolder } from './io.js';

/** Who acted, and how fwseal knows: 'os-user', 'FWSEAL_ACTOR', 'os-uid' on the host; 'api-token' or 'api-open' on the server. */
export type AuditActor = { readonly actor: string; readonly actorSource: string };

/** One line of the log, as written. */
export type AuditRecord = AuditActor &
  AuditEvent & {
    readonly seq: number;
    readonly time: string;
    readonly prev: string;
    readonly hash: string;
  };

/** What is wrong with the first bad line (SPEC.md §15.6). */
export type AuditFault = 'torn' | 'too-long' | 'not-json' | 'fields' | 'not-canonical' | 'hash' | 'seq' | 'prev' | 'head';

export type AuditVerdict =
  | { readonly ok: true; readonly count: number; readonly head: string }
  | { readonly ok: false; readonly line: number; readonly seq?: number; readonly fault: AuditFault; readonly count: number };

/** The hashed fields in their fixed order; `hash` follows them on the line and is not hashed (SPEC.md §15.6). */
const FIELDS = ['seq', 'time', 'actor', 'actorSource', 'action', 'keyId', 'kind', 'digest', 'file', 'result', 'prev'] as const;
const REQUIRED_TEXT = ['actor', 'actorSource', 'action', 'result'] as const;
const OPTIONAL_TEXT = ['keyId', 'kind', 'digest', 'file'] as const;
/** `prev` of line 1. */
export const AUDIT_GENESIS = '0'.repeat(64);
const HEX64 = /^[0-9a-f]{64}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** How long an append waits for another writer's lock before it gives up (IO). */
export const AUDIT_LOCK_WAIT_MS = 10_000;
/** A lock file that never got its pid written (its writer died between create and write) is stale after this. */
const EMPTY_LOCK_STALE_MS = 5_000;
const NEWLINE = 0x0a;

/** The exact bytes hashed: JSON.stringify of the fields in FIELDS order, absent optional ones left out, no spaces. */
export function canonicalAuditJson(r: Omit<AuditRecord, 'hash'>): string {
  const o: Record<string, unknown> = {};
  for (const k of FIELDS) if (r[k] !== undefined) o[k] = r[k];
  return JSON.stringify(o);
}

/** The line for a record (newline included) and its hash: the canonical JSON with `"hash"` added last. */
export function auditLine(r: Omit<AuditRecord, 'hash'>): { line: string; hash: string } {
  const canonical = canonicalAuditJson(r);
  const hash = sha256Hex(canonical);
  return { line: `${canonical.slice(0, -1)},"hash":"${hash}"}\n`, hash };
}

const sha256Hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const decoder = new TextDecoder('utf-8', { fatal: true });

/** One line (without its newline) checked on its own: shape, canonical form, own hash. Chain checks are the caller's. */
export function parseAuditLine(bytes: Uint8Array): { ok: true; record: AuditRecord } | { ok: false; fault: AuditFault; seq?: number } {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    return { ok: false, fault: 'not-json' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, fault: 'not-json' };
  const o = value as Record<string, unknown>;
  const seq = Number.isSafeInteger(o.seq) && (o.seq as number) >= 1 ? (o.seq as number) : undefined;
  const isHex = (v: unknown) => typeof v === 'string' && HEX64.test(v);
  const isTime = (v: unknown) => typeof v === 'string' && ISO_UTC.test(v) && !Number.isNaN(Date.parse(v));
  const shaped =
    seq !== undefined &&
    isTime(o.time) &&
    REQUIRED_TEXT.every((k) => typeof o[k] === 'string' && o[k] !== '') &&
    OPTIONAL_TEXT.every((k) => o[k] === undefined || typeof o[k] === 'string') &&
    isHex(o.prev) &&
    isHex(o.hash) &&
    Object.keys(o).every((k) => k === 'hash' || (FIELDS as readonly string[]).includes(k));
  if (!shaped) return { ok: false, fault: 'fields', ...(seq !== undefined ? { seq } : {}) };
  const record = o as AuditRecord;
  const canonical = canonicalAuditJson(record);
  // Byte for byte the line fwseal writes: no spaces, no reordered or repeated keys, the same escapes.
  if (Buffer.compare(Buffer.from(`${canonical.slice(0, -1)},"hash":"${record.hash}"}`, 'utf8'), bytes) !== 0) return { ok: false, fault: 'not-canonical', seq };
  if (sha256Hex(canonical) !== record.hash) return { ok: false, fault: 'hash', seq };
  return { ok: true, record };
}

/** The lines of an open log, read in chunks; a line longer than the limit is reported, never buffered whole. */
function* rawLines(fd: number): Generator<{ bytes: Uint8Array; complete: boolean; tooLong: boolean }> {
  const chunk = Buffer.alloc(65536);
  let parts: Buffer[] = [];
  let size = 0;
  let tooLong = false;
  let pos = 0;
  for (;;) {
    const n = readSync(fd, chunk, 0, chunk.length, pos);
    if (n === 0) break;
    pos += n;
    const view = chunk.subarray(0, n);
    for (let start = 0; start < n; ) {
      const nl = view.indexOf(NEWLINE, start);
      const piece = view.subarray(start, nl < 0 ? n : nl);
      // A line of maxAuditLineBytes or more before its newline cannot fit (the newline counts, §15.6).
      if (!tooLong && size + piece.length >= LIMITS.maxAuditLineBytes) {
        tooLong = true;
        parts = [];
      }
      if (!tooLong) {
        parts.push(Buffer.from(piece));
        size += piece.length;
      }
      if (nl < 0) break;
      yield { bytes: Buffer.concat(parts), complete: true, tooLong };
      parts = [];
      size = 0;
      tooLong = false;
      start = nl + 1;
    }
  }
  if (size > 0 || tooLong) yield { bytes: Buffer.concat(parts), complete: false, tooLong };
}

function openForReading(path: string): number {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    throw new FwsealError('IO', `cannot open the audit log ${path}: ${errno(e)}`);
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd);
    throw new FwsealError('IO', `the audit log ${path} is not a regular file`);
  }
  return fd;
}

/**
 * Check a whole log (SPEC.md §15.6): every line whole, well-formed, canonical, with its own hash, seq
 * one more than the line before and prev = that line's hash. The first bad line is named. `head`: a
 * hash recorded earlier that the log must still contain (it ends at it or extends it). `visit` sees
 * every line that parses, bad chain or not (for `audit show`).
 */
export function scanAuditLog(path: string, opts: { head?: string; visit?: (r: AuditRecord, line: number) => void } = {}): AuditVerdict {
  const fd = openForReading(path);
  let bad: AuditVerdict | null = null;
  let count = 0;
  let prev = AUDIT_GENESIS;
  let sawHead = opts.head === AUDIT_GENESIS;
  try {
    let line = 0;
    for (const raw of rawLines(fd)) {
      line++;
      const parsed: ReturnType<typeof parseAuditLine> = raw.tooLong
        ? { ok: false, fault: 'too-long' }
        : !raw.complete
          ? { ok: false, fault: 'torn' }
          : parseAuditLine(raw.bytes);
      if (parsed.ok) opts.visit?.(parsed.record, line);
      if (bad) continue;
      const fault = !parsed.ok ? parsed.fault : parsed.record.seq !== line ? 'seq' : parsed.record.prev !== prev ? 'prev' : null;
      if (fault) {
        const seq = parsed.ok ? parsed.record.seq : parsed.seq;
        bad = { ok: false, line, fault, count, ...(seq !== undefined ? { seq } : {}) };
        if (!opts.visit) break;
        continue;
      }
      count = line;
      prev = (parsed as { record: AuditRecord }).record.hash;
      if (prev === opts.head) sawHead = true;
    }
  } finally {
    closeSync(fd);
  }
  if (bad) return bad;
  // Lines removed from the end leave a shorter valid chain: only a head recorded elsewhere shows it.
  if (opts.head !== undefined && !sawHead) return { ok: false, line: count + 1, fault: 'head', count };
  return { ok: true, count, head: prev };
}

/** The last line of an open log, checked on its own; null for an empty log. A torn or bad last line is AUDIT_LOG_INVALID. */
function lastRecord(fd: number, path: string): AuditRecord | null {
  const size = fstatSync(fd).size;
  if (size === 0) return null;
  const width = Math.min(size, LIMITS.maxAuditLineBytes + 1);
  const tail = Buffer.alloc(width);
  let got = 0;
  while (got < width) {
    const n = readSync(fd, tail, got, width - got, size - width + got);
    if (n === 0) break;
    got += n;
  }
  const invalid = (why: string) => new FwsealError('AUDIT_LOG_INVALID', `${path}: ${why}; the log is not extended (see fwseal audit verify)`);
  // A crash in the middle of an append leaves a line without its newline: never chain past damage.
  if (got !== width || tail[width - 1] !== NEWLINE) throw invalid('the last line is torn');
  const before = tail.lastIndexOf(NEWLINE, width - 2);
  if (before < 0 && width < size) throw invalid('the last line is too long');
  const parsed = parseAuditLine(tail.subarray(before + 1, width - 1));
  if (!parsed.ok) throw invalid(`the last line is bad (${parsed.fault})`);
  return parsed.record;
}

/** Throws AUDIT_LOG_INVALID when an append to `path` would be refused; a missing log is fine (it is created). */
export function checkAuditTail(path: string): void {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    if (errno(e) === 'ENOENT') return;
    throw new FwsealError('IO', `cannot open the audit log ${path}: ${errno(e)}`);
  }
  try {
    if (!fstatSync(fd).isFile()) throw new FwsealError('IO', `the audit log ${path} is not a regular file`);
    lastRecord(fd, path);
  } finally {
    closeSync(fd);
  }
}

export type AppendOptions = { readonly lockWaitMs?: number; readonly now?: Date };

/**
 * Append one line (SPEC.md §15.6): under the log's lock, read the last line, write the new one with
 * O_APPEND in one write() call, fsync, unlock. The log is created 0600 and never truncated or rewritten.
 */
export function appendAudit(path: string, who: AuditActor, event: AuditEvent, opts: AppendOptions = {}): AuditRecord {
  for (const [k, v] of [
    ['actor', who.actor],
    ['actorSource', who.actorSource],
    ['action', event.action],
    ['result', event.result],
  ])
    if (typeof v !== 'string' || v === '') throw new FwsealError('INTERNAL', `audit record without ${k}`);
  const lock = acquireLock(`${path}.lock`, opts.lockWaitMs ?? AUDIT_LOCK_WAIT_MS);
  try {
    const { fd, created } = openForAppend(path);
    try {
      const last = lastRecord(fd, path);
      const base = {
        seq: last ? last.seq + 1 : 1,
        time: (opts.now ?? new Date()).toISOString(),
        actor: who.actor,
        actorSource: who.actorSource,
        action: event.action,
        ...(event.keyId !== undefined ? { keyId: event.keyId } : {}),
        ...(event.kind !== undefined ? { kind: event.kind } : {}),
        ...(event.digest !== undefined ? { digest: event.digest } : {}),
        ...(event.file !== undefined ? { file: event.file } : {}),
        result: event.result,
        prev: last ? last.hash : AUDIT_GENESIS,
      };
      const { line, hash } = auditLine(base);
      const bytes = Buffer.from(line, 'utf8');
      if (bytes.length > LIMITS.maxAuditLineBytes) throw new FwsealError('USAGE', `audit record of ${bytes.length} bytes; at most ${LIMITS.maxAuditLineBytes}`);
      lock.assertHeld();
      // One write() of at most 4 KiB with O_APPEND: other writers wait on the lock; readers see whole lines or a torn tail.
      const n = writeSync(fd, bytes);
      if (n !== bytes.length) throw new FwsealError('IO', `short write to the audit log ${path}`);
      fsyncSync(fd);
      if (created) syncFolder(dirname(path));
      return { ...base, hash };
    } finally {
      closeSync(fd);
    }
  } finally {
    lock.release();
  }
}

function openForAppend(path: string): { fd: number; created: boolean } {
  const flags = constants.O_RDWR | constants.O_APPEND | constants.O_NOFOLLOW;
  try {
    return { fd: openSync(path, flags | constants.O_CREAT | constants.O_EXCL, 0o600), created: true };
  } catch (e) {
    if (errno(e) !== 'EEXIST') throw new FwsealError('IO', `cannot create the audit log ${path}: ${errno(e)}`);
  }
  try {
    const fd = openSync(path, flags);
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      throw new FwsealError('IO', `the audit log ${path} is not a regular file`);
    }
    return { fd, created: false };
  } catch (e) {
    if (e instanceof FwsealError) throw e;
    throw new FwsealError('IO', `cannot open the audit log ${path}: ${errno(e)}`);
  }
}

type Holder = { pid?: number; ino: number; ageMs: number };
type Lock = { assertHeld(): void; release(): void };

/** An O_EXCL lock file beside the log holding the writer's pid; a lock whose pid is gone is broken (SPEC.md §15.6). */
function acquireLock(lockPath: string, waitMs: number): Lock {
  const deadline = Date.now() + waitMs;
  for (let attempt = 0; ; attempt++) {
    let fd: number | null = null;
    try {
      fd = openSync(lockPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      writeSync(fd, `${process.pid}\n`);
      return heldLock(lockPath, fd);
    } catch (e) {
      if (fd !== null) closeSync(fd);
      if (errno(e) !== 'EEXIST') throw new FwsealError('IO', `cannot lock the audit log (${lockPath}): ${errno(e)}`);
    }
    const holder = readHolder(lockPath);
    if (holder === null) continue; // released in between
    if (isStale(holder)) breakStale(lockPath, holder);
    else if (Date.now() > deadline) throw new FwsealError('IO', `the audit log is locked by process ${holder.pid ?? '?'} (${lockPath})`);
    else sleep(Math.min(25, 1 + attempt) + Math.random() * 3);
  }
}

function heldLock(lockPath: string, fd: number): Lock {
  const ino = fstatSync(fd).ino;
  const ours = () => {
    try {
      return lstatSync(lockPath).ino === ino;
    } catch {
      return false;
    }
  };
  return {
    assertHeld: () => {
      if (!ours()) throw new FwsealError('IO', `lost the audit log lock ${lockPath}`);
    },
    release: () => {
      if (ours()) unlinkSync(lockPath);
      closeSync(fd);
    },
  };
}

function readHolder(path: string): Holder | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch {
    return null;
  }
  try {
    const st = fstatSync(fd);
    const buf = Buffer.alloc(16);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const m = /^(\d{1,10})\n$/.exec(buf.subarray(0, n).toString('latin1'));
    return { ...(m ? { pid: Number(m[1]) } : {}), ino: st.ino, ageMs: Date.now() - st.mtimeMs };
  } finally {
    closeSync(fd);
  }
}

function isStale(h: Holder): boolean {
  if (h.pid === undefined) return h.ageMs > EMPTY_LOCK_STALE_MS;
  // Appends are synchronous: a lock naming this process is left over from an earlier process with its pid.
  if (h.pid === process.pid) return true;
  try {
    process.kill(h.pid, 0);
    return false;
  } catch (e) {
    return errno(e) !== 'EPERM'; // ESRCH: no such process
  }
}

/**
 * Move the stale lock aside under a unique name and look at it there: if it is a fresh lock taken in
 * between (another inode or pid), link it back under its name, so its holder keeps it.
 */
function breakStale(lockPath: string, seen: Holder): void {
  const aside = `${lockPath}.${randomBytes(6).toString('hex')}.stale`;
  try {
    renameSync(lockPath, aside);
  } catch {
    return; // broken or released by someone else
  }
  const moved = readHolder(aside);
  if (moved && (moved.ino !== seen.ino || moved.pid !== seen.pid)) {
    try {
      linkSync(aside, lockPath);
    } catch {
      /* a new lock took the name; its holder and that one's are told apart by assertHeld */
    }
  }
  unlinkSync(aside);
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function sleep(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? 'error';
}
