/**
 * The server's audit trail (SPEC.md §15.6): every state-changing API call (campaign create, pause,
 * resume, abort, root publish, image upload) is one line in DATA/audit.log, refused calls too, in the
 * format of host/audit.ts, under the name of the token that made the call; `GET /api/audit?after=SEQ&limit=N`
 * pages through it, read-only.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { LIMITS } from '../../shared/limits.js';
import { type AuditActor, type AuditFault, type AuditRecord, appendAudit, checkAuditTail, parseAuditLine } from '../audit.js';
import { FwsealError } from '../errors.js';
import { ApiError } from './campaigns.js';
import { type Caller } from './tokens.js';

export const AUDIT_PAGE_DEFAULT = 100;
/** At most this many lines per page: 1000 x maxAuditLineBytes = 4 MiB. */
export const AUDIT_PAGE_MAX = 1000;

/** What a call fills in as it learns it (the digest of a body, the campaign it made). */
export type AuditDetails = { kind?: string; digest?: string; file?: string };

/**
 * The actor of one API call (SPEC.md §15.6): the name of the token that made it, or `api` /
 * `api-open` when the API has no tokens (an open API knows no caller). Per call, not per server: each
 * named token is its own actor.
 */
export function actorOf(caller: Caller): AuditActor {
  return { actor: caller.name, actorSource: caller.source };
}

export class ServerAudit {
  readonly path: string;
  private readonly pager: AuditPager;

  constructor(
    dataDir: string,
    private readonly log: (line: string) => void,
  ) {
    this.path = join(dataDir, 'audit.log');
    // A log that cannot be extended (a torn last line) stops the start, not the first campaign action.
    checkAuditTail(this.path);
    this.pager = new AuditPager(this.path);
  }

  /**
   * Run one state-changing call of `caller` and record it: 'ok' or the code it failed with. A log that
   * cannot be extended refuses the call before it runs (AUDIT_LOG_INVALID), so no action goes unrecorded.
   */
  async record<T>(action: string, caller: Caller, details: AuditDetails, run: (details: AuditDetails) => Promise<T>): Promise<T> {
    checkAuditTail(this.path);
    let value: T;
    try {
      value = await run(details);
    } catch (e) {
      this.append(action, caller, details, e instanceof FwsealError ? e.codeName : 'INTERNAL');
      throw e;
    }
    this.append(action, caller, details, 'ok');
    return value;
  }

  /**
   * A state-changing call refused before it ran because the token's role is too low (403 FORBIDDEN):
   * recorded with the token's name, since the caller is known and revocable and a token trying more
   * than its role allows is what an auditor looks for. 401s are not recorded: an unauthenticated
   * caller could fill the disk (SPEC.md §15.6).
   */
  refused(action: string, caller: Caller, details: AuditDetails, e: FwsealError): void {
    this.append(action, caller, details, e.codeName);
  }

  private append(action: string, caller: Caller, details: AuditDetails, result: string): void {
    try {
      appendAudit(this.path, actorOf(caller), { action, ...details, result });
    } catch (e) {
      // The call has happened: its answer stands; the operator learns of the gap from the server log.
      this.log(`audit log: '${action}' (${result}) not recorded: ${e instanceof FwsealError ? e.codeName : 'INTERNAL'}: ${(e as Error).message}`);
    }
  }

  /** `GET /api/audit?after=SEQ&limit=N`: the lines after line SEQ (= seq in a valid log), at most N. */
  page(query: URLSearchParams): AuditPage {
    const number = (name: string, fallback: number, min: number, max: number): number => {
      const v = query.get(name);
      if (v === null) return fallback;
      const n = /^\d{1,15}$/.test(v) ? Number(v) : Number.NaN;
      if (!(n >= min && n <= max)) throw new ApiError(400, 'BAD_VALUE', `${name} must be a whole number from ${min} to ${max}`);
      return n;
    };
    return this.pager.page(number('after', 0, 0, Number.MAX_SAFE_INTEGER), number('limit', AUDIT_PAGE_DEFAULT, 1, AUDIT_PAGE_MAX));
  }
}

/** One page: each line parsed, or `{ line, invalid }` for a line that is not one (its fault, §15.6). */
export type AuditPage = { entries: (AuditRecord | { line: number; invalid: AuditFault })[]; next: number; more: boolean };

const NEWLINE = 0x0a;

/**
 * Pages of a log by line number. The start of every line seen is kept, so a page reads only its own
 * lines and each new byte of the log is scanned once. Chain checks are the reader's (`audit verify`).
 */
export class AuditPager {
  private starts: number[] = [0];
  private scanned = 0;
  constructor(readonly path: string) {}

  page(after: number, limit: number): AuditPage {
    let fd: number;
    try {
      fd = openSync(this.path, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], next: after, more: false };
      throw new FwsealError('IO', `cannot open the audit log: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
    try {
      const size = fstatSync(fd).size;
      this.index(fd, size);
      const complete = this.starts.length - 1;
      const total = complete + (this.starts[complete] < size ? 1 : 0);
      const entries: AuditPage['entries'] = [];
      for (let line = after + 1; line <= Math.min(total, after + limit); line++) entries.push(this.entry(fd, line, size));
      const next = after + entries.length;
      return { entries, next, more: next < total };
    } finally {
      closeSync(fd);
    }
  }

  private index(fd: number, size: number): void {
    if (size < this.scanned) {
      // Not this log any more (replaced by hand): index it afresh.
      this.starts = [0];
      this.scanned = 0;
    }
    const chunk = Buffer.alloc(65536);
    while (this.scanned < size) {
      const n = readSync(fd, chunk, 0, Math.min(chunk.length, size - this.scanned), this.scanned);
      if (n === 0) break;
      const view = chunk.subarray(0, n);
      for (let i = view.indexOf(NEWLINE); i >= 0; i = view.indexOf(NEWLINE, i + 1)) this.starts.push(this.scanned + i + 1);
      this.scanned += n;
    }
  }

  private entry(fd: number, line: number, size: number): AuditPage['entries'][number] {
    const start = this.starts[line - 1];
    const whole = line < this.starts.length;
    const end = whole ? this.starts[line] - 1 : size;
    if (end - start + 1 > LIMITS.maxAuditLineBytes) return { line, invalid: 'too-long' };
    if (!whole) return { line, invalid: 'torn' };
    const bytes = Buffer.alloc(end - start);
    let got = 0;
    while (got < bytes.length) {
      const n = readSync(fd, bytes, got, bytes.length - got, start + got);
      if (n === 0) break;
      got += n;
    }
    const parsed = parseAuditLine(bytes.subarray(0, got));
    return parsed.ok ? parsed.record : { line, invalid: parsed.fault };
  }
}
