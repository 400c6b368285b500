/**
 * How the CLI reports a failed command (exit status, the stderr line, the `--json` error object) and
 * the process's Io. Shared by the whole CLI (host/cli.ts) and the one-command start of `fwseal verify`
 * (host/verify-main.ts), so both print exactly the same thing.
 */
import { writeSync } from 'node:fs';
import { codeName } from '../shared/codes.js';
import { type Command, type Io } from './commands/common.js';
import { exitStatusFor, FwsealError } from './errors.js';

/**
 * `--json` given to a command that takes it (before any `--`): its failures are JSON on stdout too.
 * Looked up in the raw arguments, so a command line that does not parse (USAGE) still gets one.
 */
export function wantsJson(cmd: Pick<Command, 'options'>, rest: readonly string[]): boolean {
  if (!('json' in cmd.options)) return false;
  const end = rest.indexOf('--');
  return (end < 0 ? rest : rest.slice(0, end)).includes('--json');
}

/** What a failed command prints on stdout with --json (host/schemas/error.schema.json); one line, so NDJSON streams stay parseable. */
export type ErrorObject = { readonly ok: false; readonly code: number; readonly error: string; readonly detail: string; readonly exitStatus: 1 | 2 };

export function errorObject(e: unknown): ErrorObject {
  if (e instanceof FwsealError) return { ok: false, code: e.code, error: e.codeName, detail: e.message, exitStatus: exitStatusFor(e.code) };
  return { ok: false, code: 899, error: codeName(899), detail: e instanceof Error ? e.message : String(e), exitStatus: 2 };
}

export function printJsonError(io: Io, e: unknown): void {
  io.stdout(`${JSON.stringify(errorObject(e))}\n`);
}

/** The one stderr line of a failed command; returns its exit status (1 a verdict, 2 anything else). */
export function printError(io: Io, name: string, e: unknown): 1 | 2 {
  if (e instanceof FwsealError) {
    const status = exitStatusFor(e.code);
    io.stderr(`fwseal ${name}: ${status === 1 ? 'REJECTED ' : ''}${e.codeName} (code ${e.code}): ${e.message}\n`);
    return status;
  }
  io.stderr(`fwseal ${name}: ${codeName(899)} (code 899): ${(e as Error).message}\n`);
  return 2;
}

/**
 * Writes to fd 1 or 2 directly (fs.writeSync), not through process.stdout / process.stderr: creating
 * those streams loads `net` and the pipe machinery when the output is a pipe, ~3 ms of every cold
 * start (issue 17; tools/bench cli). Writes stay synchronous and in order. A non-blocking descriptor
 * that is full (EAGAIN) hands the rest, and every later write, to the process's stream, which waits
 * for the reader, so nothing is lost or reordered.
 */
function directWriter(fd: 1 | 2): (data: string | Uint8Array) => void {
  let stream: NodeJS.WriteStream | undefined;
  const viaStream = () => (stream ??= fd === 1 ? process.stdout : process.stderr);
  return (data) => {
    if (stream) {
      stream.write(data);
      return;
    }
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    let done = 0;
    try {
      while (done < bytes.length) done += writeSync(fd, bytes, done);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      viaStream().write(bytes.subarray(done));
    }
  };
}

/** The Io of this process: its stdout and stderr (written directly; the TTY checks create the streams only when asked). */
export function processIo(): Io {
  const out = directWriter(1);
  const err = directWriter(2);
  return {
    stdout: out,
    stderr: err,
    get stderrIsTty() {
      return !!process.stderr.isTTY;
    },
    stdoutBytes: out,
    get stdoutIsTty() {
      return !!process.stdout.isTTY;
    },
  };
}
