/**
 * `fwseal` as a child process (the sources through tsx), for the tests that need a real process: a
 * signal, an environment read only at start (NODE_EXTRA_CA_CERTS, PGPASSWORD), a crash. Shared by
 * test/api-access.test.ts, test/serve-logs.test.ts and test/exit-codes.test.ts. `startServeChild`
 * resolves once `fwseal serve` printed its HTTP API line on stdout (host/commands/serve.ts) and keeps
 * its stderr; `stop()` is SIGTERM (a clean stop), `kill()` SIGKILL (a crash); both wait for the exit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const CLI = join(ROOT, 'host', 'cli.ts');

/** `fwseal ARGV` as a process with only PATH and `env` in its environment. */
export function fwsealProcess(argv: readonly string[], env: Readonly<Record<string, string>> = {}): ChildProcess {
  return spawn(process.execPath, ['--import', TSX, CLI, ...argv], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
  });
}

/** `fwseal ARGV` run to its end: exit status, stdout and stderr. */
export function runFwsealProcess(
  argv: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<{ status: number | null; out: string; err: string }> {
  return new Promise((ok) => {
    const child = fwsealProcess(argv, env);
    let out = '';
    let err = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
    });
    child.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.once('close', (status) => ok({ status, out, err }));
  });
}

export type ServeChild = {
  /** The HTTP API's base URL as the server printed it (http or https). */
  readonly url: string;
  readonly port: number;
  /** stdout and stderr so far. */
  out(): string;
  err(): string;
  /** SIGTERM and wait: the exit code (null when a signal ended it). */
  stop(): Promise<number | null>;
  /** SIGKILL (a crash) unless already gone, and wait. */
  kill(): Promise<void>;
};

export type ServeChildOptions = {
  /** Its environment besides PATH (nothing else of this process's is passed on). */
  readonly env?: Readonly<Record<string, string>>;
  /** Where the kill is registered for afterAll, before the start is awaited: a child that never listens is killed too. */
  readonly cleanups?: (() => unknown)[];
};

/** `fwseal serve ARGS` as a child process; resolves when it listens, rejects when it exits first (with its stderr). */
export async function startServeChild(args: readonly string[], opts: ServeChildOptions = {}): Promise<ServeChild> {
  const child = fwsealProcess(['serve', ...args], opts.env);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const running = () => child.exitCode === null && child.signalCode === null;
  const kill = async () => {
    if (running()) child.kill('SIGKILL');
    await exited;
  };
  opts.cleanups?.push(kill);
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const url = await new Promise<string>((ok, fail) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      // The space after the URL: a line that arrived in pieces is not read before the URL is whole.
      const m = out.match(/HTTP API on (https?:\/\/\S+) /);
      if (m) ok(m[1]!);
    });
    child.once('exit', (code) => fail(new Error(`serve exited with ${code}: ${err}`)));
  });
  return {
    url,
    port: Number(new URL(url).port),
    out: () => out,
    err: () => err,
    stop: () => {
      if (running()) child.kill('SIGTERM');
      return exited;
    },
    kill,
  };
}
