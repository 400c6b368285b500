/**
 * How the CLI reports a failed command (exit status, the stderr line, the `--json` error object) and
 * the process's Io. Shared by the whole CLI (host/cli.ts) and the one-command start of `fwseal verify`
 * (host/verify-main.ts), so both print exactly the same thing.
 */
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

/** The Io of this process: its stdout and stderr. */
export function processIo(): Io {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    stderrIsTty: !!process.stderr.isTTY,
    stdoutBytes: (b) => process.stdout.write(b),
    stdoutIsTty: !!process.stdout.isTTY,
  };
}
