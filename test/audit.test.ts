/**
 * The audit trail (SPEC.md §15.6): the line format and its chain, `fwseal audit verify` naming the
 * first bad line of every kind of tampering, appends from parallel processes, the lock, and main()'s
 * `--audit FILE` / FWSEAL_AUDIT_LOG wiring. Codes and line numbers are asserted, never messages.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { AUDIT_GENESIS, type AuditRecord, appendAudit, auditLine, scanAuditLog } from '../host/audit.js';
import { main } from '../host/cli.js';
import { type Command, str } from '../host/commands/common.js';
import { signCmd } from '../host/commands/sign.js';
import { FwsealError } from '../host/errors.js';
import { CODES } from '../shared/codes.js';
import { runCli } from './support/cli-run.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'fwseal-audit-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

const WHO = { actor: 'alice', actorSource: 'os-user' };
const sha256 = (t: string) => createHash('sha256').update(t, 'utf8').digest('hex');

/** A log of `n` lines with varied events; its lines (without newlines) and head hash. */
function makeLog(n: number, dir = tempDir()): { log: string; lines: string[]; head: string } {
  const log = join(dir, 'audit.log');
  let head = AUDIT_GENESIS;
  for (let i = 1; i <= n; i++) {
    const r = appendAudit(log, WHO, {
      action: i % 2 ? 'sign' : 'keygen',
      keyId: (i % 16).toString(16).repeat(32),
      kind: 'manifest',
      digest: sha256(`object ${i}`),
      file: `release-${i}.cose`,
      result: i === 3 ? 'KEY_NOT_IN_TRUST' : 'ok',
    });
    head = r.hash;
  }
  return { log, lines: readFileSync(log, 'utf8').split('\n').slice(0, -1), head };
}

const save = (path: string, lines: string[], end = '\n') => writeFileSync(path, lines.join('\n') + end);

async function verifyCli(log: string, ...extra: string[]): Promise<{ status: number; body: any; err: string }> {
  const r = await runCli(['audit', 'verify', log, '--json', ...extra]);
  return { status: r.status, body: JSON.parse(r.out), err: r.err };
}

describe('the line format (SPEC.md §15.6)', () => {
  it('each line is the canonical JSON of its fields with its SHA-256 last; seq counts from 1 and prev chains to 64 zeros', () => {
    const { log, lines, head } = makeLog(5);
    expect(statSync(log).mode & 0o777).toBe(0o600);
    const records = lines.map((l) => JSON.parse(l) as AuditRecord);
    expect(Object.keys(records[0])).toEqual(['seq', 'time', 'actor', 'actorSource', 'action', 'keyId', 'kind', 'digest', 'file', 'result', 'prev', 'hash']);
    records.forEach((r, i) => {
      expect(r.seq).toBe(i + 1);
      expect(r.prev).toBe(i === 0 ? '0'.repeat(64) : records[i - 1].hash);
      expect(r.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      // The hashed bytes: the line without its `,"hash":"..."` member, as an auditor computes them.
      expect(sha256(lines[i].replace(/,"hash":"[0-9a-f]{64}"\}$/, '}'))).toBe(r.hash);
    });
    expect(scanAuditLog(log)).toEqual({ ok: true, count: 5, head });
    expect(head).toBe(records[4].hash);
  });

  it('the auditor recipe of SPEC.md §15.6 (sed + sha256sum, jq) recomputes every hash and link', () => {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    for (const file of ['plain.cose', 'naïve — “quoted” \\ "x"', 'ctl\u0001\ttab']) appendAudit(log, WHO, { action: 'attach', file, result: 'ok' });
    const script = `set -e; prev=${'0'.repeat(64)}
while IFS= read -r line; do
  want=$(printf '%s' "$line" | jq -r .hash)
  got=$(printf '%s' "$line" | sed -E 's/,"hash":"[0-9a-f]{64}"\\}$/}/' | sha256sum | cut -c1-64)
  viajq=$(printf '%s' "$line" | jq -cj 'del(.hash)' | sha256sum | cut -c1-64)
  [ "$(printf '%s' "$line" | jq -r .prev)" = "$prev" ] || { echo broken-link; exit 1; }
  [ "$got" = "$want" ] && [ "$viajq" = "$want" ] || { echo bad-hash; exit 1; }
  prev=$want
done < "$1"; echo "$prev"`;
    const r = spawnSync('bash', ['-c', script, 'recipe', log], { encoding: 'utf8' });
    expect(r.stdout.trim()).toBe((scanAuditLog(log) as { head: string }).head);
    expect(r.status).toBe(0);
  });
});

describe('fwseal audit verify names the first bad line (AUDIT_LOG_INVALID, exit 1)', () => {
  const N = 6;
  const forged = (lines: string[], seq: number) => {
    const prev = (JSON.parse(lines[seq - 2]) as AuditRecord).hash;
    return auditLine({ seq, time: '2026-01-01T00:00:00.000Z', actor: 'mallory', actorSource: 'os-user', action: 'sign', result: 'ok', prev }).line.trimEnd();
  };
  const cases: [string, (l: string[]) => string[], number, string, number | undefined][] = [
    ['an edited field', (l) => l.map((x, i) => (i === 2 ? x.replace('"actor":"alice"', '"actor":"bob"') : x)), 3, 'hash', 3],
    ['a removed middle line', (l) => l.filter((_, i) => i !== 2), 3, 'seq', 4],
    ['an inserted line, its own hash recomputed', (l) => [...l.slice(0, 2), forged(l, 3), ...l.slice(2)], 4, 'seq', 3],
    ['two lines swapped', (l) => [l[0], l[1], l[3], l[2], ...l.slice(4)], 3, 'seq', 4],
    ['a line that is not JSON', (l) => l.map((x, i) => (i === 4 ? x.slice(0, 40) : x)), 5, 'not-json', undefined],
    ['a line re-encoded with spaces', (l) => l.map((x, i) => (i === 1 ? JSON.stringify(JSON.parse(x), null, 1).replace(/\n/g, '') : x)), 2, 'not-canonical', 2],
    ['a renumbered line (seq edited and its hash recomputed)', (l) => l.map((x, i) => (i === 3 ? renumbered(x, 9) : x)), 4, 'seq', 9],
  ];

  it.each(cases)('%s', async (_name, tamper, line, fault, seq) => {
    const { log, lines } = makeLog(N);
    save(log, tamper(lines));
    expect(scanAuditLog(log)).toMatchObject({ ok: false, line, fault });
    const r = await verifyCli(log);
    expect(r.status).toBe(1);
    expect(r.err).toContain(`(code ${CODES.AUDIT_LOG_INVALID})`);
    expect(r.body).toMatchObject({ valid: false, code: CODES.AUDIT_LOG_INVALID, line, fault, validLines: line - 1 });
    expect(r.body.seq).toBe(seq);
  });

  it('a truncated last line (a crash mid-write) is torn; the next append refuses to chain past it', async () => {
    const { log, lines } = makeLog(N);
    save(log, [...lines.slice(0, -1), lines[N - 1].slice(0, 50)], '');
    const before = readFileSync(log);
    expect((await verifyCli(log)).body).toMatchObject({ line: N, fault: 'torn' });
    let err: unknown;
    try {
      appendAudit(log, WHO, { action: 'sign', result: 'ok' });
    } catch (e) {
      err = e;
    }
    expect((err as FwsealError).codeName).toBe('AUDIT_LOG_INVALID');
    expect(readFileSync(log)).toEqual(before);
  });

  it('a removed last line leaves a valid log: only --head (recorded earlier) detects it, naming the first missing line', async () => {
    const { log, lines, head } = makeLog(N);
    save(log, lines.slice(0, -1));
    const plain = await verifyCli(log);
    expect(plain).toMatchObject({ status: 0, body: { valid: true, count: N - 1 } });
    const r = await verifyCli(log, '--head', head.toUpperCase());
    expect(r.status).toBe(1);
    expect(r.err).toContain(`(code ${CODES.AUDIT_LOG_INVALID})`);
    expect(r.body).toMatchObject({ line: N, fault: 'head' });
  });

  it('--head of an earlier line is accepted (the log extends it); a bad --head is USAGE', async () => {
    const { log, lines, head } = makeLog(N);
    expect(await verifyCli(log, '--head', (JSON.parse(lines[2]) as AuditRecord).hash)).toMatchObject({ status: 0, body: { count: N, head } });
    const bad = await runCli(['audit', 'verify', log, '--head', 'abc']);
    expect(bad.status).toBe(2);
    expect(bad.err).toContain(`(code ${CODES.USAGE})`);
  });

  it('a missing log is IO (exit 2), an empty log is valid with the zero head', async () => {
    const dir = tempDir();
    const missing = await runCli(['audit', 'verify', join(dir, 'none.log')]);
    expect(missing.status).toBe(2);
    expect(missing.err).toContain(`(code ${CODES.IO})`);
    writeFileSync(join(dir, 'empty.log'), '');
    expect(await verifyCli(join(dir, 'empty.log'))).toMatchObject({ status: 0, body: { count: 0, head: AUDIT_GENESIS } });
  });
});

/** A line with another seq and its own hash recomputed: a forger who knows the format. */
function renumbered(line: string, seq: number): string {
  const { hash: _drop, ...rest } = JSON.parse(line) as AuditRecord;
  return auditLine({ ...rest, seq }).line.trimEnd();
}

describe('fwseal audit show', () => {
  it('lists entries, filtered by --action and --since, as text and JSON; control characters are escaped', async () => {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    appendAudit(log, WHO, { action: 'keygen', keyId: 'ab'.repeat(16), result: 'ok' }, { now: new Date('2026-01-01T00:00:00Z') });
    appendAudit(log, WHO, { action: 'sign', file: 'evil\u001b[31m.cose', result: 'ok' }, { now: new Date('2026-02-01T00:00:00Z') });
    appendAudit(log, WHO, { action: 'sign', result: 'BAD_SIGNATURE' }, { now: new Date('2026-03-01T00:00:00Z') });
    const text = await runCli(['audit', 'show', log]);
    expect(text.status).toBe(0);
    expect(text.out.trim().split('\n')).toHaveLength(3);
    expect(text.out).not.toContain('\u001b');
    expect(text.out).toContain('file="evil\\u001b[31m.cose"');
    const signs = JSON.parse((await runCli(['audit', 'show', log, '--json', '--action', 'sign'])).out);
    expect(signs.entries.map((e: AuditRecord) => e.seq)).toEqual([2, 3]);
    expect(signs).toMatchObject({ valid: true, count: 3 });
    const later = JSON.parse((await runCli(['audit', 'show', log, '--json', '--since', '2026-02-15'])).out);
    expect(later.entries.map((e: AuditRecord) => e.result)).toEqual(['BAD_SIGNATURE']);
    expect((await runCli(['audit', 'show', log, '--since', 'yesterday'])).status).toBe(2);
  });

  it('a damaged log is listed and then refused (exit 1, code 820)', async () => {
    const { log, lines } = makeLog(4);
    save(
      log,
      lines.filter((_, i) => i !== 1),
    );
    const r = await runCli(['audit', 'show', log, '--json']);
    expect(r.status).toBe(1);
    expect(r.err).toContain(`(code ${CODES.AUDIT_LOG_INVALID})`);
    expect(JSON.parse(r.out)).toMatchObject({ valid: false, line: 2, fault: 'seq' });
    expect(JSON.parse(r.out).entries).toHaveLength(3);
  });
});

describe('concurrent writers and the lock', () => {
  it('six processes appending 25 lines each leave 150 whole lines, every seq once, a valid chain, none lost', async () => {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const writer = join(dir, 'writer.ts');
    writeFileSync(
      writer,
      `import { appendAudit } from ${JSON.stringify(pathToFileURL(join(__dirname, '..', 'host', 'audit.ts')).href)};
const [log, name] = process.argv.slice(2);
for (let i = 0; i < 25; i++) appendAudit(log, { actor: name, actorSource: 'FWSEAL_ACTOR' }, { action: 'sign', file: name + '-' + i, result: 'ok' });
`,
    );
    const runs = Array.from(
      { length: 6 },
      (_, w) =>
        new Promise<number | null>((resolve) => {
          const child = spawn(process.execPath, ['--import', tsx, writer, log, `w${w}`], { stdio: ['ignore', 'ignore', 'inherit'] });
          child.on('exit', (code) => resolve(code));
        }),
    );
    expect(await Promise.all(runs)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(scanAuditLog(log)).toMatchObject({ ok: true, count: 150 });
    const records: AuditRecord[] = [];
    scanAuditLog(log, { visit: (r) => records.push(r) });
    expect(records.map((r) => r.seq)).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
    const files = records.map((r) => r.file).sort();
    const expected = Array.from({ length: 6 }, (_, w) => Array.from({ length: 25 }, (_, i) => `w${w}-${i}`)).flat();
    expect(files).toEqual(expected.sort());
    expect(existsSync(`${log}.lock`)).toBe(false);
  });

  it('a lock left by a process that is gone (or never written, and old) is broken; the append goes through', () => {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(`${log}.lock`, `${gone}\n`);
    expect(appendAudit(log, WHO, { action: 'sign', result: 'ok' }).seq).toBe(1);
    expect(existsSync(`${log}.lock`)).toBe(false);
    writeFileSync(`${log}.lock`, '');
    utimesSync(`${log}.lock`, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    expect(appendAudit(log, WHO, { action: 'sign', result: 'ok' }).seq).toBe(2);
    expect(scanAuditLog(log)).toMatchObject({ ok: true, count: 2 });
  });

  it('a lock held by a live process is waited for, then the append gives up with IO; the lock and the log are left alone', () => {
    const { log, lines } = makeLog(2);
    writeFileSync(`${log}.lock`, `${process.ppid}\n`);
    let err: unknown;
    try {
      appendAudit(log, WHO, { action: 'sign', result: 'ok' }, { lockWaitMs: 30 });
    } catch (e) {
      err = e;
    }
    expect((err as FwsealError).codeName).toBe('IO');
    expect(readFileSync(`${log}.lock`, 'utf8')).toBe(`${process.ppid}\n`);
    expect(readFileSync(log, 'utf8')).toBe(`${lines.join('\n')}\n`);
  });
});

describe('main(): --audit FILE and FWSEAL_AUDIT_LOG', () => {
  const seen: { audit: boolean }[] = [];
  const probe: Command = {
    name: 'audit-probe',
    summary: 'test command that records one event',
    usage: 'audit-probe [--file F]',
    options: { file: { type: 'string' } },
    run(p, io) {
      seen.push({ audit: io.audit !== undefined });
      io.audit?.({ action: 'probe', keyId: 'cd'.repeat(16), kind: 'manifest', digest: sha256('probe'), file: str(p, 'file'), result: 'ok' });
      return 0;
    },
  };
  const io = () => {
    const out = { out: '', err: '' };
    return {
      out,
      io: { stdout: (t: string) => void (out.out += t), stderr: (t: string) => void (out.err += t), stderrIsTty: false },
    };
  };
  const records = (log: string): AuditRecord[] =>
    readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));

  it('a command that records an event and a refused audited command: two lines, the second with the code name; verify passes', async () => {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    vi.stubEnv('FWSEAL_ACTOR', '');
    const a = io();
    expect(await main(['audit-probe', '--audit', log, '--file', 'M.cose'], a.io, [probe])).toBe(0);
    const b = io();
    const status = await main(['--audit', log, 'sign', join(dir, 'missing.cose'), '--key', join(dir, 'missing.key')], b.io, [probe]);
    const code = Number(/\(code (\d+)\)/.exec(b.out.err)?.[1]);
    expect(status).toBe(2);
    const [first, second] = records(log);
    expect(first).toMatchObject({ seq: 1, action: 'probe', file: 'M.cose', result: 'ok', actorSource: 'os-user' });
    expect(second).toMatchObject({ seq: 2, action: 'sign', actorSource: 'os-user' });
    expect(CODES[second.result as keyof typeof CODES]).toBe(code);
    expect(Object.keys(second)).toEqual(['seq', 'time', 'actor', 'actorSource', 'action', 'result', 'prev', 'hash']);
    expect((await runCli(['audit', 'verify', log])).status).toBe(0);
  });

  it('--audit=FILE anywhere and FWSEAL_AUDIT_LOG work alike; FWSEAL_ACTOR names the actor; no log, no io.audit', async () => {
    const dir = tempDir();
    const log = join(dir, 'audit.log');
    vi.stubEnv('FWSEAL_ACTOR', 'ci-release-bot');
    expect(await main(['audit-probe', '--file', 'a', `--audit=${log}`], io().io, [probe])).toBe(0);
    vi.stubEnv('FWSEAL_AUDIT_LOG', log);
    expect(await main(['audit-probe', '--file', 'b'], io().io, [probe])).toBe(0);
    vi.stubEnv('FWSEAL_AUDIT_LOG', '');
    seen.length = 0;
    expect(await main(['audit-probe', '--file', 'c'], io().io, [probe])).toBe(0);
    expect(seen).toEqual([{ audit: false }]);
    expect(records(log).map((r) => [r.file, r.actor, r.actorSource])).toEqual([
      ['a', 'ci-release-bot', 'FWSEAL_ACTOR'],
      ['b', 'ci-release-bot', 'FWSEAL_ACTOR'],
    ]);
    expect(scanAuditLog(log)).toMatchObject({ ok: true, count: 2 });
  });

  it('a failure the command recorded itself is not recorded twice', async () => {
    const log = join(tempDir(), 'audit.log');
    vi.spyOn(signCmd, 'run').mockImplementation((_p, cio) => {
      cio.audit?.({ action: 'sign', keyId: 'ef'.repeat(16), result: 'KEY_NOT_IN_TRUST' });
      throw new FwsealError('KEY_NOT_IN_TRUST', 'not a release key');
    });
    expect(await main(['sign', 'M.cose', '--key', 'K.key', '--audit', log], io().io)).toBe(2);
    expect(records(log).map((r) => [r.action, r.result, r.keyId])).toEqual([['sign', 'KEY_NOT_IN_TRUST', 'ef'.repeat(16)]]);
  });

  it('an audit log that cannot be extended refuses an audited command before it runs (code 820)', async () => {
    const { log, lines } = makeLog(2);
    save(log, [lines[0], lines[1].slice(0, 30)], '');
    const run = vi.spyOn(signCmd, 'run');
    const r = io();
    expect(await main(['sign', 'M.cose', '--key', 'K.key', '--audit', log], r.io)).toBe(2);
    expect(r.out.err).toContain(`(code ${CODES.AUDIT_LOG_INVALID})`);
    expect(run).not.toHaveBeenCalled();
  });

  it('--audit without a FILE, or twice, is USAGE', async () => {
    for (const argv of [
      ['audit-probe', '--audit'],
      ['audit-probe', '--audit', '--file'],
      ['--audit=a', 'audit-probe', '--audit=b'],
    ]) {
      const r = io();
      expect(await main(argv, r.io, [probe])).toBe(2);
      expect(r.out.err).toContain(`(code ${CODES.USAGE})`);
    }
  });
});
