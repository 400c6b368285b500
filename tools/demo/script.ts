/**
 * The narration of `npm run demo` (tools/demo.ts): step titles, the `fwseal` commands it runs
 * in-process and prints like a terminal would, and the outcome of every step for the summary.
 */
import { join } from 'node:path';
import { main } from '../../host/cli.js';

export const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
export const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);

export type Outcome = { step: string; expected: string; got: string; ok: boolean };

/** The demo's folder and its outcomes; the methods are bound, so they can be taken apart. */
export class DemoScript {
  readonly outcomes: Outcome[] = [];

  constructor(readonly dir: string) {}

  /** A step: its first line as a heading, the rest as text. */
  readonly say = (text: string): void => {
    console.log(`\n${bold(`## ${text.split('\n')[0]}`)}`);
    for (const line of text.split('\n').slice(1)) console.log(line);
  };

  /** Run `fwseal ARGS` in the demo folder; print it like a terminal would; check the exit status. */
  readonly fwseal = async (args: string, expect: { exit: number; error?: string; step: string }): Promise<string> => {
    let out = '';
    const argv = demoArgv(args, this.dir);
    console.log(dim(`$ fwseal ${args}`));
    const exit = await main(argv, {
      stdout: (t) => {
        out += t;
        process.stdout.write(`  ${t.replace(/\n(?=.)/g, '\n  ')}`);
      },
      stderr: (t) => {
        out += t;
        process.stdout.write(dim(`  ${t.replace(/\n(?=.)/g, '\n  ')}`));
      },
      stderrIsTty: false,
    });
    const ok = exit === expect.exit && (expect.error === undefined || out.includes(expect.error));
    this.outcomes.push({
      step: expect.step,
      expected: expect.error ?? (expect.exit === 0 ? 'ok' : `exit ${expect.exit}`),
      got: exit === 0 ? 'ok' : (out.match(/REJECTED ([A-Z_]+)/)?.[1] ?? `exit ${exit}`),
      ok,
    });
    return out;
  };
}

/** Files the demo's commands name, by ending: these are the demo folder's files. */
const DEMO_FILE = /^[A-Za-z0-9_-][A-Za-z0-9._-]*\.(key|pub|cose|cbor|bin|json|sig|log)$/;

/**
 * A demo command line as argv: a bare file name (R1.key, sbom.json) or '.' becomes a path in the demo
 * folder; anything else stays as written, so a URL that ends in .json stays a URL (issue 17: it used
 * to be taken for a file: `uri: <tmpdir>/https:/sbom...`).
 */
export function demoArgv(args: string, dir: string): string[] {
  return args.split(' ').map((a) => (a === '.' || DEMO_FILE.test(a) ? join(dir, a) : a));
}

export async function waitUntil(check: () => Promise<boolean>, ms = 30_000, why?: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`demo: timed out${why ? `: ${await why()}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
