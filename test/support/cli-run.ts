/** Run `fwseal ARGS` in-process (main() from host/cli.ts) and collect its output; write test inputs. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../host/cli.js';
import { type Command } from '../../host/commands/common.js';

export type CliRun = { status: number; out: string; err: string; bytes: Uint8Array };

export async function runCli(argv: readonly string[], extra: readonly Command[] = []): Promise<CliRun> {
  let out = '';
  let err = '';
  const chunks: Uint8Array[] = [];
  const status = await main(
    [...argv],
    {
      stdout: (t) => {
        out += t;
      },
      stderr: (t) => {
        err += t;
      },
      stderrIsTty: false,
      stdoutBytes: (b) => {
        chunks.push(b.slice());
      },
    },
    extra,
  );
  return { status, out, err, bytes: new Uint8Array(Buffer.concat(chunks)) };
}

/** A writer of files under `dir`: `file(name, bytes)` returns the path. */
export function fileWriter(dir: string): (name: string, bytes: Uint8Array) => string {
  return (name, bytes) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };
}
