#!/usr/bin/env node
/**
 * The `fwseal` command. Exit status: 0 accepted / done, 1 rejected (a verification code),
 * 2 usage or I/O error (one line on stderr). Secrets are never printed.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { codeName } from '../shared/codes.js';
import { type Command, type Io, parse } from './commands/common.js';
import { deviceProvision, deviceRun } from './commands/device.js';
import { fleetSim } from './commands/fleet.js';
import { incidentRevokeKey } from './commands/incident.js';
import { keygen } from './commands/keys.js';
import { OTA_COMMANDS } from './commands/ota.js';
import { devicePowercutSweep } from './commands/powercut-sweep.js';
import { inspectCmd, packCmd, verifyCmd } from './commands/release.js';
import { signCmd } from './commands/sign.js';
import { revoke, trustInit, trustRotate } from './commands/trust.js';
import { exitStatusFor, FwsealError } from './errors.js';

export const COMMANDS: readonly Command[] = [
  keygen,
  trustInit,
  trustRotate,
  packCmd,
  signCmd,
  verifyCmd,
  revoke,
  inspectCmd,
  deviceProvision,
  deviceRun,
  devicePowercutSweep,
  ...OTA_COMMANDS,
  incidentRevokeKey,
  fleetSim,
];

function overview(commands: readonly Command[]): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `fwseal: sign firmware on the host, verify it on the device

usage: fwseal COMMAND [options]   (fwseal COMMAND --help for details)

${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Exit status: 0 ok/accepted, 1 rejected, 2 usage or I/O error.
`;
}

function findCommand(argv: string[], commands: readonly Command[]): { cmd: Command; rest: string[] } | null {
  for (const c of commands) {
    const words = c.name.split(' ');
    if (words.every((w, i) => argv[i] === w)) return { cmd: c, rest: argv.slice(words.length) };
  }
  return null;
}

/** `extra`: commands added by another entry point (hil/cli.ts adds `hil run`; host/ never imports hil/). */
export async function main(argv: string[], io: Io, extra: readonly Command[] = []): Promise<number> {
  const commands: readonly Command[] = extra.length === 0 ? COMMANDS : [...COMMANDS, ...extra];
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
    io.stderr(`fwseal ${argv[0]}: USAGE (code 800): expected a subcommand: ${group.map((c) => c.name.split(' ')[1]).join(', ')}\n`);
    return 2;
  }
  if (!found) {
    io.stderr(`fwseal: unknown command '${argv.slice(0, 2).join(' ')}' (USAGE). Run fwseal --help.\n`);
    return 2;
  }
  const { cmd, rest } = found;
  try {
    const parsed = parse(cmd, rest);
    if (parsed.values.help) {
      io.stdout(`${cmd.usage}\n`);
      return 0;
    }
    return await cmd.run(parsed, io);
  } catch (e) {
    if (e instanceof FwsealError) {
      const status = exitStatusFor(e.code);
      io.stderr(`fwseal ${cmd.name}: ${status === 1 ? 'REJECTED ' : ''}${e.codeName} (code ${e.code}): ${e.message}\n`);
      return status;
    }
    io.stderr(`fwseal ${cmd.name}: ${codeName(899)}: ${(e as Error).message}\n`);
    return 2;
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
  if (!entry) return;
  const io: Io = { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t), stderrIsTty: !!process.stderr.isTTY };
  main(process.argv.slice(2), io, extra).then(
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
