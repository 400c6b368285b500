/**
 * A real PostgreSQL 15 for the tests of the PostgreSQL store (Debian package `postgresql`, installed by
 * tools/setup.sh): a cluster made with initdb in a folder under the OS temp dir, owned by the
 * `postgres` user when the tests run as root (PostgreSQL refuses to run as root), listening on a free
 * loopback port only, with a random superuser password (scram-sha-256 over TCP). `database()` creates
 * an empty database and returns its URL (no password in it: the password is in `env`, as PGPASSWORD);
 * `stop()` stops the server and removes the folder. Durability is off (fsync), tests only.
 * `onePostgres()` is the one server of a test file, started when a test first needs it.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './mosquitto.js';

const BIN = '/usr/lib/postgresql/15/bin';
const USER = 'postgres';

export type Postgres = {
  readonly port: number;
  /** PGPASSWORD for a client (a child `fwseal serve`): the URLs never carry it. */
  readonly env: Readonly<Record<string, string>>;
  /** A new, empty database; its URL. */
  database(): Promise<string>;
  /** A client on database `url` with the superuser's password (for checks a test makes directly). */
  client(url: string): Promise<pg.Client>;
  /** Stop the server (immediate) and remove its folder. */
  stop(): Promise<void>;
  /** The server's log so far (for failure messages). */
  log(): string;
};

export function postgresInstalled(): boolean {
  return existsSync(join(BIN, 'initdb')) && existsSync(join(BIN, 'pg_ctl'));
}

/** The uid and gid of `postgres` from /etc/passwd (the package creates that user). */
function postgresIds(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${USER}:`));
  if (!line) throw new Error('no postgres user: install the Debian package postgresql (npm run setup)');
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** Run a PostgreSQL program as `postgres` when we are root (runuser), else as ourselves. */
function pgRun(dir: string, program: string, args: string[]): void {
  const root = process.getuid?.() === 0;
  const [cmd, argv] = root ? ['runuser', ['-u', USER, '--', join(BIN, program), ...args]] : [join(BIN, program), args];
  execFileSync(cmd, argv, { cwd: dir, stdio: 'pipe', timeout: 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } });
}

export async function startPostgres(): Promise<Postgres> {
  if (!postgresInstalled()) throw new Error('PostgreSQL 15 is not installed (run npm run setup)');
  const dir = mkdtempSync(join(tmpdir(), 'fwseal-pg-'));
  const password = randomBytes(18).toString('base64url');
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  writeFileSync(join(dir, 'pw'), password, { mode: 0o600 });
  if (process.getuid?.() === 0) {
    const { uid, gid } = postgresIds();
    chownSync(dir, uid, gid);
    chownSync(join(dir, 'pw'), uid, gid);
  }
  const port = await freePort();
  try {
    pgRun(dir, 'initdb', [
      '-D',
      data,
      '-U',
      USER,
      `--pwfile=${join(dir, 'pw')}`,
      '--auth-host=scram-sha-256',
      '--auth-local=peer',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    const opts = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off -c synchronous_commit=off -c max_connections=200`;
    pgRun(dir, 'pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '60', '-o', opts, 'start']);
  } catch (e) {
    const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start: ${(e as Error).message}\n${log}`);
  }
  const urlOf = (db: string) => `postgres://${USER}@127.0.0.1:${port}/${db}`;
  const client = async (url: string) => {
    // Fields, not a connection string: its parsed (absent) password would override this one.
    const u = new URL(url);
    const c = new pg.Client({ host: u.hostname, port: Number(u.port), user: decodeURIComponent(u.username), database: u.pathname.slice(1), password });
    await c.connect();
    return c;
  };
  let n = 0;
  return {
    port,
    env: { PGPASSWORD: password },
    async database() {
      const name = `fwseal_${process.pid}_${++n}`;
      const c = await client(urlOf('postgres'));
      try {
        await c.query(`CREATE DATABASE ${name}`);
      } finally {
        await c.end();
      }
      return urlOf(name);
    },
    client,
    async stop() {
      try {
        pgRun(dir, 'pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } catch {
        /* already down */
      }
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
  };
}

/** One PostgreSQL for a test file: started on the first `get()`, stopped by `stop()` (afterAll; nothing when never started). */
export type SharedPostgres = { get(): Promise<Postgres>; stop(): Promise<void> };

/**
 * The one server of a test file. `get()` also sets PGPASSWORD in this process, as `fwseal serve` gets
 * it (never in the URL): an in-process store or server (openStore, OtaServer.start) reads it there.
 */
export function onePostgres(): SharedPostgres {
  let started: Promise<Postgres> | null = null;
  return {
    get: () =>
      (started ??= startPostgres().then((p) => {
        process.env.PGPASSWORD = p.env.PGPASSWORD;
        return p;
      })),
    async stop() {
      const p = await started?.catch(() => null);
      await p?.stop();
    },
  };
}
