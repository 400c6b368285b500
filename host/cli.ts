#!/usr/bin/env node
/**
 * The `fwseal` command. Exit status: 0 accepted / done, 1 rejected (a verdict: SPEC.md §9),
 * 2 usage, I/O or transport error (one line on stderr). With --json, a failure also prints the error
 * object on stdout (host/schemas/error.schema.json). Secrets are never printed.
 */
import { realpathSync } from 'node:fs';
import nodeModule from 'node:module';
import { userInfo } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type AuditActor } from './audit.js';
import { COMMAND_INDEX, type CommandEntry, entryOf } from './cli-index.js';
import { type Command, type Io } from './commands/common.js';

export { type ErrorObject, errorObject } from './cli-errors.js';

import { printError, printJsonError, processIo, wantsJson } from './cli-errors.js';
import { FwsealError } from './errors.js';

/**
 * Every command, as the index knows it (name, summary, options; `load()` for the rest). Commands are
 * loaded one at a time, when they run: see host/cli-index.ts.
 */
export const COMMANDS: readonly CommandEntry[] = COMMAND_INDEX;

/** Every Command loaded (tests, tools); the CLI itself never needs them all. */
export async function loadCommands(extra: readonly Command[] = []): Promise<Command[]> {
  const all = [...COMMAND_INDEX, ...extra.map(entryOf)];
  return Promise.all(all.map((e) => e.load(all)));
}

/**
 * Commands that create keys or sign (SPEC.md §15.6): with an audit log, a log that cannot be extended
 * refuses them before they run, and main() records their failures (a refused attempt is an event too).
 */
export const AUDITED_COMMANDS: ReadonlySet<string> = new Set([
  'keygen',
  'key import',
  'sign',
  'attach',
  'merge',
  'trust init',
  'trust rotate',
  'revoke',
  'trust publish',
  'incident revoke-key',
  'token create',
  'token revoke',
]);

/** The audit log of this run and who acts; `failureRecorded`: the command itself recorded a failure. */
type AuditTrail = { readonly log: string; readonly who: AuditActor; failureRecorded: boolean };

/**
 * `--audit FILE` / `--audit=FILE`, anywhere before a `--`, taken out of argv before the command parses
 * it; else FWSEAL_AUDIT_LOG (SPEC.md §15.6). Throws USAGE for a repeated or empty one.
 */
export function takeAuditOption(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): { argv: string[]; log: string | undefined } {
  const rest: string[] = [];
  const given: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (a !== '--audit' && !a.startsWith('--audit=')) {
      rest.push(a);
      continue;
    }
    const v = a === '--audit' ? argv[++i] : a.slice('--audit='.length);
    // A value that looks like a flag is more likely a forgotten FILE (use --audit=FILE for such a name).
    if (v === undefined || v === '' || (a === '--audit' && v.startsWith('-'))) throw new FwsealError('USAGE', '--audit needs a FILE');
    given.push(v);
  }
  if (given.length > 1) throw new FwsealError('USAGE', `--audit is given ${given.length} times`);
  return { argv: rest, log: given[0] ?? (env.FWSEAL_AUDIT_LOG || undefined) };
}

/** The actor of host commands (SPEC.md §15.6): FWSEAL_ACTOR (CI service accounts), else the OS user. */
export function hostActor(env: NodeJS.ProcessEnv = process.env): AuditActor {
  const forced = env.FWSEAL_ACTOR;
  if (forced !== undefined && forced !== '') {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    if (forced.length > 256 || /[\u0000-\u001f\u007f]/.test(forced)) throw new FwsealError('USAGE', 'FWSEAL_ACTOR must be at most 256 printable characters');
    return { actor: forced, actorSource: 'FWSEAL_ACTOR' };
  }
  try {
    const name = userInfo().username;
    if (name) return { actor: name, actorSource: 'os-user' };
  } catch {
    /* no passwd entry (containers): the uid says who */
  }
  return { actor: `uid:${process.getuid?.() ?? 'unknown'}`, actorSource: 'os-uid' };
}

function overview(commands: readonly CommandEntry[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `fwseal: sign firmware on the host, verify it on the device

usage: fwseal COMMAND [options]   (fwseal help COMMAND, or fwseal COMMAND --help, for details)

${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Exit status: 0 ok/accepted, 1 rejected, 2 usage, I/O or transport error. With --json, a failure
also prints {"ok":false,"code":N,"error":"NAME","detail":"...","exitStatus":S} on stdout; every
--json output is described by a JSON Schema in host/schemas/.
`;
}

function findCommand(argv: readonly string[], commands: readonly CommandEntry[]): { entry: CommandEntry; rest: string[] } | null {
  for (const c of commands) {
    const words = c.name.split(' ');
    if (words.every((w, i) => argv[i] === w)) return { entry: c, rest: argv.slice(words.length) };
  }
  return null;
}

/** `extra`: commands added by another entry point (hil/cli.ts adds `hil run`; host/ never imports hil/). */
export async function main(args: string[], io: Io, extra: readonly Command[] = []): Promise<number> {
  const commands: readonly CommandEntry[] = extra.length === 0 ? COMMAND_INDEX : [...COMMAND_INDEX, ...extra.map(entryOf)];
  let argv: string[];
  let trail: AuditTrail | null;
  try {
    const taken = takeAuditOption(args);
    argv = taken.argv;
    trail = taken.log === undefined ? null : { log: taken.log, who: hostActor(), failureRecorded: false };
  } catch (e) {
    io.stderr(`fwseal: USAGE (code 800): ${(e as Error).message}\n`);
    const named = findCommand(args, commands);
    if (named && wantsJson(named.entry, named.rest)) printJsonError(io, e);
    return 2;
  }
  // `fwseal help CMD` is `fwseal CMD --help`, word for word (issue 17).
  if (argv[0] === 'help' && argv.length > 1) argv = [...argv.slice(1), '--help'];
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    (argv.length === 0 ? io.stderr : io.stdout)(overview(commands));
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === '--version') {
    io.stdout('fwseal 0.1.0\n');
    return 0;
  }
  const found = findCommand(argv, commands);
  if (!found && argv.length >= 1 && commands.some((c) => c.name.startsWith(`${argv[0]} `))) {
    // A command group (`fwseal trust`): list its subcommands.
    const group = commands.filter((c) => c.name.startsWith(`${argv[0]} `));
    const help = argv.includes('--help') || argv.includes('-h');
    if (help) {
      io.stdout(`usage:\n${group.map((c) => `  fwseal ${c.name}  ${c.summary}`).join('\n')}\n`);
      return 0;
    }
    if (argv[1] !== undefined && !argv[1].startsWith('-')) return unknown(argv, commands, io); // `trust inti`: did you mean `trust init`?
    io.stderr(`fwseal ${argv[0]}: USAGE (code 800): expected a subcommand: ${group.map((c) => c.name.split(' ')[1]).join(', ')}\n`);
    return 2;
  }
  if (!found) return unknown(argv, commands, io);
  return runCommand(found.entry, commands, found.rest, io, trail);
}

/** An unknown command or subcommand: USAGE, with the nearest name (the parser helpers load only on this path). */
async function unknown(argv: readonly string[], commands: readonly { name: string }[], io: Io): Promise<number> {
  const { unknownCommand } = await import('./commands/common.js');
  io.stderr(
    `fwseal: USAGE (code 800): ${
      unknownCommand(
        argv,
        commands.map((c) => c.name),
      ).message
    }\n`,
  );
  return 2;
}

async function runCommand(entry: CommandEntry, all: readonly CommandEntry[], rest: string[], io: Io, trail: AuditTrail | null): Promise<number> {
  const audited = trail !== null && AUDITED_COMMANDS.has(entry.name);
  const asJson = wantsJson(entry, rest);
  let logUsable = true;
  // Only a run with an audit log pays for loading the audit code.
  const audit = trail ? await import('./audit.js') : null;
  try {
    // The argument parser comes with the command's chunk (it pulls in the file readers), not before.
    const [cmd, parse] = await Promise.all([entry.load(all), entry.parser()]);
    const parsed = parse(cmd, rest);
    if (parsed.values.help) {
      io.stdout(`${cmd.usage}\n`);
      return 0;
    }
    // A log that cannot be extended refuses the action before any key is used (SPEC.md §15.6).
    if (audited && audit) {
      logUsable = false;
      audit.checkAuditTail(trail.log);
      logUsable = true;
    }
    return await cmd.run(parsed, trail && audit ? auditingIo(io, trail, audit.appendAudit) : io);
  } catch (e) {
    const status = printError(io, entry.name, e);
    if (asJson) printJsonError(io, e);
    if (audited && audit && logUsable && !trail.failureRecorded) recordFailure(io, entry.name, trail, e, audit.appendAudit);
    return status;
  }
}

type Append = typeof import('./audit.js').appendAudit;

function auditingIo(io: Io, trail: AuditTrail, append: Append): Io {
  return {
    ...io,
    audit: (event) => {
      append(trail.log, trail.who, event);
      if (event.result !== 'ok') trail.failureRecorded = true;
    },
  };
}

/** One line for a failed audited command, unless the log itself is what failed (SPEC.md §15.6). */
function recordFailure(io: Io, name: string, trail: AuditTrail, e: unknown, append: Append): void {
  const result = e instanceof FwsealError ? e.codeName : 'INTERNAL';
  if (result === 'AUDIT_LOG_INVALID') return;
  try {
    append(trail.log, trail.who, { action: name, result });
  } catch (x) {
    printError(io, name, x);
  }
}

/**
 * Run the CLI on process.argv when `moduleUrl` (the caller's import.meta.url) is the script node was
 * started with; `extra` adds commands (hil/cli.ts adds `hil run`).
 */
export function runIfEntryPoint(moduleUrl: string, extra: readonly Command[] = []): void {
  let entry = false;
  try {
    entry = process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    entry = false;
  }
  if (entry) runCli(extra);
}

/** The CLI on process.argv, its exit status in process.exitCode (the package's bin, hil/bin.cts, calls this). */
export function runCli(extra: readonly Command[] = []): void {
  // V8's code cache for the modules loaded from here on (Node >= 22.1; absent in Node 20: skipped).
  (nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();
  main(process.argv.slice(2), processIo(), extra).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`fwseal: INTERNAL: ${(e as Error).message}\n`);
      process.exitCode = 2;
    },
  );
}

runIfEntryPoint(import.meta.url);
