/**
 * A real mosquitto for the OTA tests (Debian package `mosquitto`, installed by tools/setup.sh): each
 * broker gets a free loopback port, its own config and persistence folder under the OS temp dir, and
 * is stopped and removed by `stop()`. `kill()` / `start()` simulate a broker crash and restart on the
 * same port (persistence keeps retained messages and persistent sessions when `persistence` is set).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function mosquittoPath(): string {
  for (const p of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']) if (existsSync(p)) return p;
  throw new Error('mosquitto is not installed (run npm run setup)');
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
    const done = (v: boolean) => { c.destroy(); resolve(v); };
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
  writeFileSync(conf, [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    `persistence ${options.persistence === false ? 'false' : 'true'}`,
    `persistence_location ${dir}/`,
    `log_dest file ${logFile}`,
    'log_type error',
    'log_type warning',
    'log_type notice',
    ...(options.extra ?? []),
  ].join('\n') + '\n');
  let child: ChildProcess | null = null;
  const exited = () => new Promise<void>((resolve) => {
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
