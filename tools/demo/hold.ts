/**
 * The end of `npm run demo` (tools/demo.ts): the web console's address (SPEC.md §12.9 "Web console":
 * `/` on the server's HTTP listener), and the server and its fleet held up meanwhile so that a
 * newcomer can look at them in a browser. Held for a minute on a terminal, not at all elsewhere (the
 * test suite and CI run the demo with stdout not a terminal, and must not wait).
 */
import { parseArgs } from 'node:util';

export const DEMO_USAGE = `npm run demo -- [--broker URL] [--hold SECONDS | --keep]

Runs the whole fwseal flow in a temporary folder and checks every step. At the end it prints the web
console's address and keeps the update server and its six gateways up meanwhile:
  --hold SECONDS  for that long (0 to 86400). Default: 60 when stdout is a terminal, 0 otherwise
                  (a pipe, CI, the test suite). Ctrl-C ends it sooner.
  --keep          until Ctrl-C
  --broker URL    use this MQTT broker instead of an embedded one (MQTT 3.1.1)`;

export type DemoOptions = {
  readonly broker?: string;
  /** Seconds to hold the server at the end; Infinity with --keep. */
  readonly holdSeconds: number;
  readonly help: boolean;
};

/** The demo's command line; a malformed one throws (the demo prints the usage and exits 2). */
export function demoOptions(argv: readonly string[], stdoutIsTty: boolean): DemoOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: { broker: { type: 'string' }, hold: { type: 'string' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.keep && values.hold !== undefined) throw new Error('--keep and --hold exclude each other');
  if (values.hold !== undefined && !/^\d{1,5}$/.test(values.hold)) throw new Error('--hold takes whole seconds, 0 to 86400');
  const hold = values.hold === undefined ? (stdoutIsTty ? 60 : 0) : Number(values.hold);
  if (hold > 86_400) throw new Error('--hold takes whole seconds, 0 to 86400');
  return { ...(values.broker !== undefined ? { broker: values.broker } : {}), holdSeconds: values.keep ? Number.POSITIVE_INFINITY : hold, help: !!values.help };
}

/**
 * What to open, and how to get in: an API without tokens (this demo's, on the loopback) needs no
 * sign-in; one started with `--tokens FILE` asks the browser for a token of that file (viewer role or
 * above), which only `fwseal token create` ever prints.
 */
export function consoleLines(api: string, tokensFile?: string): string[] {
  const url = `${api}/`;
  if (!tokensFile) return [`Web console: ${url}`, '  (the demo server has no tokens file and listens on the loopback only: no sign-in)'];
  return [
    `Web console: ${url}`,
    `  sign in with an API token from ${tokensFile}; make one with: fwseal token create NAME --role viewer --tokens ${tokensFile}`,
  ];
}

/** Print the console's address and wait `seconds` (Infinity: until Ctrl-C); Ctrl-C or SIGTERM ends the wait early. */
export async function holdForConsole(lines: readonly string[], seconds: number): Promise<void> {
  for (const l of lines) console.log(l);
  if (seconds <= 0) return;
  const forever = seconds === Number.POSITIVE_INFINITY;
  console.log(forever ? 'Holding the server until Ctrl-C.' : `Holding the server for ${seconds} s (Ctrl-C ends it; --keep holds it until Ctrl-C).`);
  await new Promise<void>((resolve) => {
    // The interval keeps the process alive with --keep even if the server's sockets would not.
    const timer = forever ? setInterval(() => undefined, 3_600_000) : setTimeout(() => done(), seconds * 1000);
    const done = () => {
      clearTimeout(timer);
      clearInterval(timer);
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
  console.log('Stopping the server.');
}
