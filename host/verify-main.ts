/**
 * `fwseal verify` started on its own: the package's bin (hil/bin.cts) hands a `verify` command line
 * here, built as one CommonJS file (dist/host/verify-main.cjs), instead of starting the whole CLI.
 * A deploy gate runs `fwseal verify` per release, and the ES module loader, the command index and
 * the CLI's chunks cost about half of its cold start (issue 17; tools/bench cli). It runs the same
 * command, parser and error printing as host/cli.ts main() does for `verify`, so the output and exit
 * status are the same byte for byte (test/verify-main.test.ts); a command line with an audit log
 * goes through the whole CLI.
 */
import { printError, printJsonError, processIo, wantsJson } from './cli-errors.js';
import { type Io } from './commands/common.js';
import { parse, verifyCmd } from './commands/verify.js';

/** Runs `fwseal verify ARGS`; resolves to the exit status (0 accepted, 1 rejected, 2 usage or I/O). */
export async function verifyMain(args: string[], io: Io): Promise<number> {
  try {
    const parsed = parse(verifyCmd, args);
    if (parsed.values.help) {
      io.stdout(`${verifyCmd.usage}\n`);
      return 0;
    }
    return await verifyCmd.run(parsed, io);
  } catch (e) {
    const status = printError(io, verifyCmd.name, e);
    if (wantsJson(verifyCmd, args)) printJsonError(io, e);
    return status;
  }
}

/** `fwseal verify ARGS` in this process, the exit status in process.exitCode. */
export function runVerify(args: string[]): void {
  verifyMain(args, processIo()).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`fwseal: INTERNAL: ${(e as Error).message}\n`);
      process.exitCode = 2;
    },
  );
}
