/**
 * The OTA benchmark's client fleets seen from the bench process: a pool of forked children
 * (ota-fleet-child.ts) that live for a whole phase, so their code is warm from the second round on,
 * and their CPU is neither the bench process's nor on one core. A round puts `count` clients in
 * them (split evenly): protocol devices (delivery rows) or raw fan-out subscribers (the reference),
 * so both sides of the ratio pay the same client cost.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { addStats, emptyStats, type LightStats } from './ota-light.js';

/** Clients per forked child, at most (one process holds this many connections comfortably). */
export const PER_CHILD = 2500;

type Common = {
  readonly type: 'start';
  readonly round: number;
  readonly url: string;
  readonly idPrefix: string;
  readonly first: number;
  readonly count: number;
};
export type ChildStart =
  | (Common & { readonly mode: 'light'; readonly prefix: string; readonly group: string; readonly timeoutMs: number; readonly window: number })
  | (Common & { readonly mode: 'raw'; readonly topic: string; readonly bytes: number });

export type ChildCommand = ChildStart | { readonly type: 'stats' | 'end' | 'stop' };
export type ChildReply =
  | { readonly type: 'ready'; readonly round: number; readonly connected: number; readonly seconds: number }
  | { readonly type: 'done' | 'stats'; readonly round: number; readonly stats: LightStats }
  | { readonly type: 'ended'; readonly round: number }
  | { readonly type: 'error'; readonly message: string };

/** What a round is told: a child's start without the split and the round number (Omit over each member of the union). */
export type RoundSpec = ChildStart extends infer S ? (S extends ChildStart ? Omit<S, 'type' | 'first' | 'round'> : never) : never;

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'ota-fleet-child.ts');

/** One forked child: replies are queued until asked for, by type. */
class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<void>;
  readonly #queue: ChildReply[] = [];
  #waiter: (() => void) | null = null;
  err = '';

  constructor() {
    // fork() keeps this process's execArgv: under tsx the child is loaded by tsx too. FWSEAL_BENCH_CPU_PROF=DIR: a V8 CPU profile of each child.
    const dir = process.env.FWSEAL_BENCH_CPU_PROF;
    const prof = dir ? { execArgv: [...process.execArgv, '--cpu-prof', `--cpu-prof-dir=${dir}`] } : {};
    this.proc = fork(CHILD, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], ...prof });
    this.proc.stderr?.on('data', (d: Buffer) => {
      this.err = (this.err + d.toString()).slice(-8192);
    });
    this.exited = new Promise((resolve) => this.proc.once('exit', () => resolve()));
    this.proc.on('message', (m: ChildReply) => {
      this.#queue.push(m);
      this.#waiter?.();
    });
  }

  /** The next reply of `type` for `round` (-1: any), within `ms`; an error reply fails. */
  async next<T extends ChildReply['type']>(type: T, round: number, ms: number): Promise<Extract<ChildReply, { type: T }>> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.#queue.findIndex((r) => r.type === 'error' || (r.type === type && (round < 0 || r.round === round)));
      if (i >= 0) {
        const r = this.#queue.splice(i, 1)[0]!;
        if (r.type === 'error') throw new Error(`bench fleet child: ${r.message}`);
        return r as Extract<ChildReply, { type: T }>;
      }
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) throw new Error(`bench fleet child exited: ${this.err.slice(-1500)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`bench fleet child: no ${type} in ${ms / 1000} s ${this.err.slice(-300)}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 1000));
        this.#waiter = () => {
          clearTimeout(t);
          r();
        };
      });
      this.#waiter = null;
    }
  }

  send(cmd: ChildCommand): void {
    if (this.proc.connected) this.proc.send(cmd);
  }

  async close(): Promise<void> {
    const c = this.proc;
    if (c.exitCode !== null || c.signalCode !== null) return;
    if (c.connected) c.send({ type: 'stop' });
    else c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(t);
  }
}

/** One round of clients over the pool's children. */
export type Round = {
  readonly connectSeconds: number;
  /** Every client finished: the summed counters (fails after `ms`). */
  done(ms: number): Promise<LightStats>;
  /** The counters so far. */
  stats(): Promise<LightStats>;
  /** Disconnect the round's clients. */
  end(): Promise<void>;
};

export class ClientPool {
  #round = 0;

  private constructor(private readonly children: readonly Child[]) {}

  /** Enough children for `clients` clients (at most PER_CHILD each), and at least `min`. */
  static create(clients: number, min = 1): ClientPool {
    return new ClientPool(Array.from({ length: Math.max(min, Math.ceil(clients / PER_CHILD)) }, () => new Child()));
  }

  get pids(): number[] {
    return this.children.map((c) => c.proc.pid).filter((p): p is number => p !== undefined);
  }

  /** Connect `spec.count` clients, split over the children (each connects its share, all at once). */
  async round(spec: RoundSpec, timeoutMs = 180_000): Promise<Round> {
    const id = ++this.#round;
    const n = this.children.length;
    const t0 = performance.now();
    await Promise.all(
      this.children.map((c, k) => {
        const first = Math.floor((spec.count * k) / n);
        c.send({ ...spec, type: 'start', round: id, first, count: Math.floor((spec.count * (k + 1)) / n) - first } as ChildStart);
        return c.next('ready', id, timeoutMs);
      }),
    );
    const sum = (all: { stats: LightStats }[]) => all.reduce((a, r) => addStats(a, r.stats), emptyStats());
    return {
      connectSeconds: (performance.now() - t0) / 1000,
      done: async (ms) => sum(await Promise.all(this.children.map((c) => c.next('done', id, ms)))),
      stats: async () =>
        sum(
          await Promise.all(
            this.children.map((c) => {
              c.send({ type: 'stats' });
              return c.next('stats', -1, 10_000);
            }),
          ),
        ),
      end: async () => {
        await Promise.all(
          this.children.map((c) => {
            c.send({ type: 'end' });
            return c.next('ended', -1, 30_000);
          }),
        );
      },
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.children.map((c) => c.close()));
  }
}
