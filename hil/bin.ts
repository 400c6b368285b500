#!/usr/bin/env node
/**
 * The `fwseal` binary (package.json `bin`), built as CommonJS (dist/hil/bin.cjs) so that it starts
 * without the ES module loader. `fwseal verify ...` (the deploy gate's command, run per release)
 * loads only that command, one CommonJS file (host/verify-main.ts); every other command line, and a
 * verify with an audit log (`--audit`, FWSEAL_AUDIT_LOG: the whole CLI checks those), starts the
 * whole CLI with the hil commands (hil/cli.ts). Issue 17: the one-command start saves about half of
 * `fwseal verify`'s cold start (tools/bench cli); its output is the whole CLI's byte for byte
 * (test/verify-main.test.ts).
 */
import { join } from 'node:path';

const args = process.argv.slice(2);
const audited = !!process.env.FWSEAL_AUDIT_LOG || args.some((a) => a === '--audit' || a.startsWith('--audit='));
// `fwseal help verify ...` is `fwseal verify ... --help` (SPEC.md §14 H13), so it starts the same way.
const verifyArgs = args[0] === 'verify' ? args.slice(1) : args[0] === 'help' && args[1] === 'verify' ? [...args.slice(2), '--help'] : null;
if (verifyArgs && !audited) {
  // Not a literal path: the bundler leaves it to Node's require at run time, beside this file.
  (require(join(__dirname, '..', 'host', 'verify-main.cjs')) as { runVerify(args: string[]): void }).runVerify(verifyArgs);
} else {
  import('./cli.js').then(
    (cli) => cli.runFwseal(),
    (e: Error) => {
      process.stderr.write(`fwseal: INTERNAL: ${e.message}\n`);
      process.exitCode = 2;
    },
  );
}
