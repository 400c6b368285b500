/**
 * Child processes of the OTA benchmark (tools/bench/ota.ts): the built CLI started with a preload
 * that records its peak RSS and CPU at exit, brokers, polling with a deadline, and what /proc tells
 * about a running process. Everything started here is stopped by closeAll().
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Mosquitto, startMosquitto } from '../../test/support/mosquitto.js';

const CLK_TCK = 100;

export type Proc = { child: ChildProcess; out: string; err: string; exited: Promise<number | null>; rssFile: string; label: string };

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** utime + stime of a process, seconds (null when it is gone). */
export function cpuSeconds(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return null;
  }
}

export function vmHwmKiB(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The mosquitto process started with this broker's config (startMosquitto does not expose its pid). */
export function mosquittoPid(broker: Mosquitto): number | undefined {
  const conf = join(broker.dir, 'mosquitto.conf');
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(conf)) return Number(e);
    } catch {
      // gone
    }
  }
  return undefined;
}

/** The PostgreSQL server listening on `port` (its postmaster, found by its command line) and its backends (the postmaster's children). */
export function postgresPids(port: number): number[] {
  const procs: { pid: number; ppid: number; cmd: string }[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      procs.push({ pid: Number(e), ppid: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]), cmd: readFileSync(`/proc/${e}/cmdline`, 'utf8') });
    } catch {
      // gone
    }
  }
  const master = procs.find((p) => p.cmd.includes('/bin/postgres\0') && p.cmd.includes(`\0-p\0${port}\0`));
  return master ? [master.pid, ...procs.filter((p) => p.ppid === master.pid).map((p) => p.pid)] : [];
}

export async function getJson<T>(url: string): Promise<T> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status}`);
  return (await r.json()) as T;
}

export function fdLimit(): string {
  try {
    const m = readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/);
    return m ? `${m[1]} soft / ${m[2]} hard` : '?';
  } catch {
    return '?';
  }
}

export class BenchProcesses {
  private readonly procs = new Set<Proc>();
  private readonly brokers = new Set<Mosquitto>();
  private readonly preload: string;
  private seq = 0;

  /** `cli`: dist/host/cli.js; children's exit stats and the preload go to tmpDir. */
  constructor(
    private readonly cli: string,
    private readonly tmpDir: string,
  ) {
    this.preload = join(tmpDir, 'exit-stats.cjs');
    // Peak RSS and CPU of a Node child at exit (it may exit before we can read /proc).
    writeFileSync(
      this.preload,
      `process.on('exit', () => { const f = process.env.FWSEAL_BENCH_STATS; if (f) { const c = process.cpuUsage(); require('node:fs').writeFileSync(f, JSON.stringify({ maxRssKiB: process.resourceUsage().maxRSS, cpu: (c.user + c.system) / 1e6 })); } });\n`,
    );
  }

  /** `fwseal ARGS` in a child process (`env`: added to this process's environment). */
  start(label: string, args: string[], env: Readonly<Record<string, string>> = {}): Proc {
    const rssFile = join(this.tmpDir, `stats-${++this.seq}.json`);
    // FWSEAL_BENCH_CPU_PROF=DIR: a V8 CPU profile of every child (written when it exits) into DIR.
    const prof = process.env.FWSEAL_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FWSEAL_BENCH_CPU_PROF}`] : [];
    const child = spawn(process.execPath, [...prof, '--require', this.preload, this.cli, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env, FWSEAL_BENCH_STATS: rssFile },
    });
    const p: Proc = { child, out: '', err: '', rssFile, label, exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
    child.stdout!.on('data', (d: Buffer) => {
      p.out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      if (p.err.length < 1 << 20) p.err += d.toString();
    });
    this.procs.add(p);
    void p.exited.then(() => this.procs.delete(p));
    return p;
  }

  async stop(p: Proc, ms = 10_000): Promise<void> {
    if (p.child.exitCode !== null || p.child.signalCode !== null) return;
    p.child.kill('SIGTERM');
    const t = setTimeout(() => p.child.kill('SIGKILL'), ms);
    await p.exited;
    clearTimeout(t);
  }

  exitStats(p: Proc): { maxRssKiB: number; cpu: number } | null {
    try {
      return JSON.parse(readFileSync(p.rssFile, 'utf8')) as { maxRssKiB: number; cpu: number };
    } catch {
      return null;
    }
  }

  /** A mosquitto with persistence off (and `extra` config lines). */
  async broker(extra: string[] = []): Promise<Mosquitto> {
    const b = await startMosquitto({ persistence: false, extra });
    this.brokers.add(b);
    return b;
  }

  async stopBroker(b: Mosquitto): Promise<void> {
    await b.stop();
    this.brokers.delete(b);
  }

  async closeAll(): Promise<void> {
    for (const p of [...this.procs]) await this.stop(p, 5000);
    for (const b of [...this.brokers]) await b.stop();
  }
}

/** Poll `check` every `every` ms until it holds; fail after `ms`, or as soon as `alive` exits. */
export async function waitFor(what: string, ms: number, check: () => boolean | Promise<boolean>, every = 50, alive?: Proc): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (alive && alive.child.exitCode !== null)
      throw new Error(`${alive.label} exited with ${alive.child.exitCode} while waiting for ${what}: ${alive.err.slice(-500)}`);
    if (Date.now() > deadline) throw new Error(`timed out (${ms / 1000} s) waiting for ${what}`);
    await sleep(every);
  }
}
