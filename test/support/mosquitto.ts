/**
 * A real mosquitto for the OTA tests (Debian package `mosquitto`, installed by tools/setup.sh): each
 * broker gets a free loopback port, its own config and persistence folder under the OS temp dir, and
 * is stopped and removed by `stop()`. `kill()` / `start()` simulate a broker crash and restart on the
 * same port (persistence keeps retained messages and persistent sessions when `persistence` is set).
 * With `auth`, anonymous clients are refused and the broker enforces an ACL file with per-user
 * passwords: `fleetAuth` builds one from the shipped ops/mosquitto/fwseal.acl (SPEC.md §12.12).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function mosquittoPath(): string {
  for (const p of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']) if (existsSync(p)) return p;
  throw new Error('mosquitto is not installed (run npm run setup)');
}

function mosquittoPasswdPath(): string {
  for (const p of ['/usr/bin/mosquitto_passwd', '/usr/local/bin/mosquitto_passwd', '/usr/sbin/mosquitto_passwd']) if (existsSync(p)) return p;
  throw new Error('mosquitto_passwd is not installed (Debian package mosquitto; run npm run setup)');
}

/** The ACL file a deployment installs (SPEC.md §12.12). */
export const FWSEAL_ACL_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'ops', 'mosquitto', 'fwseal.acl');
/** The OTA servers' broker username in that file. */
export const SERVER_USERNAME = 'fwseal.server';

export type MosquittoAuth = {
  /** username -> password; hashed into the broker's password file with `mosquitto_passwd -U`. */
  readonly users: Readonly<Record<string, string>>;
  /** The ACL file's text. */
  readonly acl: string;
};

export type Credentials = { readonly username: string; readonly password: string };

/**
 * Broker auth for a fleet as a deployment sets it up: the shipped ACL file, one section per device
 * (its group's announce topic and the data topics), a password per device and one for the servers,
 * plus `extra` ACL lines (test-only users such as a privileged observer, who also get passwords).
 */
export function fleetAuth(devices: readonly { id: string; group: string }[], extra: { users?: readonly string[]; acl?: string } = {}) {
  const password = (user: string) => `pw-${user}-${Math.random().toString(36).slice(2, 10)}`;
  const users: Record<string, string> = { [SERVER_USERNAME]: password(SERVER_USERNAME) };
  const sections: string[] = [];
  for (const d of devices) {
    users[d.id] = password(d.id);
    sections.push(`user ${d.id}`, `topic read fwseal/group/${d.group}/announce`, 'topic read fwseal/campaign/+/data', '');
  }
  for (const u of extra.users ?? []) users[u] = password(u);
  const acl = `${[readFileSync(FWSEAL_ACL_PATH, 'utf8'), '', ...sections, extra.acl ?? ''].join('\n')}\n`;
  const credentials = (username: string): Credentials => {
    const p = users[username];
    if (p === undefined) throw new Error(`no broker user ${username}`);
    return { username, password: p };
  };
  return { auth: { users, acl } satisfies MosquittoAuth, credentials };
}

/** A free TCP port on 127.0.0.1 (bound and released; the caller binds it right away). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection({ host: '127.0.0.1', port });
    const done = (v: boolean) => {
      c.destroy();
      resolve(v);
    };
    c.once('connect', () => done(true));
    c.once('error', () => done(false));
    c.setTimeout(500, () => done(false));
  });
}

export type MosquittoOptions = {
  /** Keep retained messages and sessions across kill()/start() (default true). */
  readonly persistence?: boolean;
  /** Extra mosquitto.conf lines (e.g. `message_size_limit 131072`, `max_queued_messages 1000`). */
  readonly extra?: readonly string[];
  /** Passwords and an ACL file instead of anonymous access. */
  readonly auth?: MosquittoAuth;
};

export type Mosquitto = {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  /** Start (again) on the same port. */
  start(): Promise<void>;
  /** SIGKILL: a crash; nothing is flushed. */
  kill(): Promise<void>;
  /** SIGTERM, wait, remove the temp folder. */
  stop(): Promise<void>;
  /** The broker's log so far (for failure messages). */
  log(): string;
};

export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'fwseal-mosquitto-'));
  const conf = join(dir, 'mosquitto.conf');
  const logFile = join(dir, 'mosquitto.log');
  const access = ['allow_anonymous true'];
  if (options.auth) {
    const passwd = join(dir, 'passwd');
    const acl = join(dir, 'fwseal.acl');
    // Readable by the broker: started as root, mosquitto drops to its own user before it reads them.
    chmodSync(dir, 0o711);
    writeFileSync(
      passwd,
      Object.entries(options.auth.users)
        .map(([u, p]) => `${u}:${p}\n`)
        .join(''),
      { mode: 0o644 },
    );
    execFileSync(mosquittoPasswdPath(), ['-U', passwd], { stdio: 'pipe', timeout: 30_000 });
    writeFileSync(acl, options.auth.acl, { mode: 0o644 });
    access.splice(0, 1, 'allow_anonymous false', `password_file ${passwd}`, `acl_file ${acl}`);
  }
  writeFileSync(
    conf,
    `${[
      `listener ${port} 127.0.0.1`,
      ...access,
      `persistence ${options.persistence === false ? 'false' : 'true'}`,
      `persistence_location ${dir}/`,
      `log_dest file ${logFile}`,
      'log_type error',
      'log_type warning',
      'log_type notice',
      ...(options.extra ?? []),
    ].join('\n')}\n`,
  );
  let child: ChildProcess | null = null;
  const exited = () =>
    new Promise<void>((resolve) => {
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
    });
  const broker: Mosquitto = {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    dir,
    async start() {
      if (child && child.exitCode === null && child.signalCode === null) return;
      child = spawn(mosquittoPath(), ['-c', conf], { stdio: 'ignore' });
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        if (child.exitCode !== null) throw new Error(`mosquitto exited with ${child.exitCode}: ${broker.log()}`);
        if (await canConnect(port)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`mosquitto did not listen on ${port} within 10 s`);
    },
    async kill() {
      if (!child) return;
      child.kill('SIGKILL');
      await exited();
    },
    async stop() {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child?.kill('SIGKILL'), 5000);
        await exited();
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
  };
  await broker.start();
  return broker;
}
