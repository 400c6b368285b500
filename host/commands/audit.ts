/**
 * `fwseal audit verify` and `fwseal audit show` (SPEC.md §15.6): check an audit log's hash chain and
 * name its first bad line; list its entries. A damaged log is a rejection (exit 1), printed here,
 * because main() would give AUDIT_LOG_INVALID, a host code, exit 2.
 */
import { CODES } from '../../shared/codes.js';
import { type AuditFault, type AuditRecord, type AuditVerdict, scanAuditLog } from '../audit.js';
import { FwsealError } from '../errors.js';
import { type Command, type Io, json, onePositional, str } from './common.js';

const FAULTS: Record<AuditFault, string> = {
  torn: 'the last line is torn (no newline): a write did not complete',
  'too-long': 'the line is longer than an audit line may be',
  'not-json': 'the line is not a JSON object',
  fields: 'a field is missing, unknown or of the wrong form',
  'not-canonical': 'the line is not in the form fwseal writes (spacing, key order, escapes)',
  hash: 'the hash does not match the fields: the line was edited',
  seq: 'seq is not one more than the line before: a line was removed, inserted or moved',
  prev: 'prev is not the hash of the line before: a line was removed, inserted or moved',
  head: 'the log does not reach the recorded head: lines were removed from its end (or it is another log)',
};

/** Print the first bad line as a rejection and answer 1 (SPEC.md §15.6). */
function rejected(io: Io, cmd: string, log: string, v: Extract<AuditVerdict, { ok: false }>): number {
  const where = `line ${v.line}${v.seq !== undefined ? ` (seq ${v.seq})` : ''}`;
  io.stderr(`fwseal ${cmd}: REJECTED AUDIT_LOG_INVALID (code ${CODES.AUDIT_LOG_INVALID}): ${log} ${where}: ${FAULTS[v.fault]}\n`);
  return 1;
}

function badLine(v: Extract<AuditVerdict, { ok: false }>): Record<string, unknown> {
  return { error: 'AUDIT_LOG_INVALID', code: CODES.AUDIT_LOG_INVALID, line: v.line, ...(v.seq !== undefined ? { seq: v.seq } : {}), fault: v.fault };
}

export const auditVerify: Command = {
  name: 'audit verify',
  summary: "check an audit log's hash chain; name the first bad line",
  usage: `fwseal audit verify LOG [--head HEX] [--json]

Checks every line of LOG: whole, in the form fwseal writes, its hash over its fields, seq one more
than the line before and prev the hash of the line before. Any edited, removed, inserted or moved
line, a torn last line or a line that is not JSON: exit 1, AUDIT_LOG_INVALID (code 820), naming the
first bad line (line number and seq). Else exit 0 with the number of entries and the head hash.
Record the head hash elsewhere: lines removed from the end leave a valid shorter log, which only
--head HEX (a head recorded earlier; the log must end at it or extend it) detects.

Examples:
  fwseal audit verify audit.log
  fwseal audit verify audit.log --head 3f1c9a0b2d4e6f8071a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b0c2d4e6`,
  options: { head: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const log = onePositional(p, 'LOG');
    const head = str(p, 'head')?.toLowerCase();
    if (head !== undefined && !/^[0-9a-f]{64}$/.test(head)) throw new FwsealError('USAGE', '--head must be a SHA-256 hash: 64 hex digits');
    const v = scanAuditLog(log, head !== undefined ? { head } : {});
    if (!v.ok) {
      if (p.values.json) json(io, { file: log, valid: false, validLines: v.count, ...badLine(v) });
      return rejected(io, 'audit verify', log, v);
    }
    if (p.values.json) json(io, { file: log, valid: true, count: v.count, head: v.head });
    else io.stdout(`${log}: ${v.count} entries, chain valid; head ${v.head}\n`);
    return 0;
  },
};

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is escaped
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
/** Text from the log as the terminal shows it: control characters escaped, never interpreted. */
const shown = (t: string): string => (CONTROL.test(t) ? JSON.stringify(t) : t);

function textLine(r: AuditRecord): string {
  const extra = [
    r.kind !== undefined ? `kind=${shown(r.kind)}` : '',
    r.keyId !== undefined ? `key=${shown(r.keyId)}` : '',
    r.digest !== undefined ? `digest=${shown(r.digest)}` : '',
    r.file !== undefined ? `file=${shown(r.file)}` : '',
  ].filter(Boolean);
  return `${r.seq} ${r.time} ${shown(r.actor)} (${shown(r.actorSource)}) ${shown(r.action)} ${shown(r.result)}${extra.length ? ` ${extra.join(' ')}` : ''}\n`;
}

export const auditShow: Command = {
  name: 'audit show',
  summary: 'list the entries of an audit log (and check its chain)',
  usage: `fwseal audit show LOG [--action ACTION] [--since ISO-TIME] [--json]

Lists the entries of LOG, oldest first: seq, time, actor (and how it was known), action, result,
then kind, key id, digest and file where present. --action keeps one action ('sign', 'keygen',
'campaign abort', ...); --since keeps entries at or after a time (2026-01-31 or
2026-01-31T12:00:00Z). The chain is checked as by fwseal audit verify: a damaged log is still
listed (every line that parses), then refused with AUDIT_LOG_INVALID (code 820, exit 1).

Examples:
  fwseal audit show audit.log --action sign --since 2026-01-01T00:00:00Z`,
  options: { action: { type: 'string' }, since: { type: 'string' }, json: { type: 'boolean' } },
  run(p, io) {
    const log = onePositional(p, 'LOG');
    const action = str(p, 'action');
    const since = str(p, 'since');
    const sinceMs = since === undefined ? undefined : Date.parse(since);
    if (since !== undefined && (!/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(since) || Number.isNaN(sinceMs)))
      throw new FwsealError('USAGE', '--since must be an ISO 8601 date or time, e.g. 2026-01-31T12:00:00Z');
    const entries: AuditRecord[] = [];
    const v = scanAuditLog(log, {
      visit: (r) => {
        if (action !== undefined && r.action !== action) return;
        if (sinceMs !== undefined && Date.parse(r.time) < sinceMs) return;
        if (p.values.json) entries.push(r);
        else io.stdout(textLine(r));
      },
    });
    if (p.values.json) json(io, { file: log, valid: v.ok, ...(v.ok ? { count: v.count, head: v.head } : badLine(v)), entries });
    else if (v.ok) io.stderr(`${v.count} entries, chain valid; head ${v.head}\n`);
    return v.ok ? 0 : rejected(io, 'audit show', log, v);
  },
};
