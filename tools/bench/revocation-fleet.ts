/**
 * The protocol-client fleet of the "revocation" section (tools/bench/revocation.ts), seen from the
 * bench process: revocation-devices.ts runs in one forked child (so the 1,000 clients do not share
 * an event loop with the monitor that times them), driven over the IPC channel. The child leaves
 * when told to, and by itself when the bench process disappears (IPC disconnect).
 */
import { type ChildProcess, fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What the child needs: broker, ids, the trust bundle every client was provisioned with, the reference topics. */
export type FleetStart = {
  readonly type: 'start';
  readonly url: string;
  readonly prefix: string;
  readonly group: string;
  readonly idPrefix: string;
  readonly count: number;
  /** The trust bundle envelope (base64): each client loads it as its factory trust. */
  readonly trust: string;
  /** The reference fan-out: a message on `refTopic` is echoed on `<echoPrefix>/<device>`. */
  readonly refTopic: string;
  readonly echoPrefix: string;
};

/** The child's counters: lists stored (and acknowledged), refused, announcements for another trust version, unreadable messages, echoes sent. */
export type FleetCounters = { stored: number; same: number; refused: number; otherTrust: number; malformed: number; echoes: number };

export type FleetReply =
  | { readonly type: 'ready'; readonly connected: number; readonly seconds: number }
  | { readonly type: 'counters'; readonly counters: FleetCounters }
  | { readonly type: 'error'; readonly message: string };

export type FleetCommand = FleetStart | { readonly type: 'counters' } | { readonly type: 'stop' };

const CHILD = join(dirname(fileURLToPath(import.meta.url)), 'revocation-devices.ts');

/** The forked child and its replies; `close()` ends it (SIGKILL if it does not leave within 10 s). */
export class ProtocolFleet {
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  #waiting: ((r: FleetReply) => void) | null = null;
  #err = '';

  private constructor() {
    // fork() keeps this process's execArgv: under tsx the child is loaded by tsx too.
    this.#child = fork(CHILD, [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    this.#child.stderr?.on('data', (d: Buffer) => {
      if (this.#err.length < 4096) this.#err += d.toString();
    });
    this.#exited = new Promise((resolve) => this.#child.once('exit', () => resolve()));
    this.#child.on('message', (m: FleetReply) => {
      const w = this.#waiting;
      this.#waiting = null;
      w?.(m);
    });
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** Fork the child and connect its `count` clients; resolves once all are subscribed and reported online. */
  static async start(start: Omit<FleetStart, 'type'>, timeoutMs = 120_000): Promise<{ fleet: ProtocolFleet; connectSeconds: number }> {
    const fleet = new ProtocolFleet();
    try {
      const r = await fleet.#ask({ type: 'start', ...start }, timeoutMs);
      if (r.type !== 'ready') throw new Error(`protocol fleet: ${r.type === 'error' ? r.message : r.type}`);
      return { fleet, connectSeconds: r.seconds };
    } catch (e) {
      await fleet.close();
      throw e;
    }
  }

  async counters(): Promise<FleetCounters> {
    const r = await this.#ask({ type: 'counters' }, 10_000);
    if (r.type !== 'counters') throw new Error(`protocol fleet: unexpected ${r.type}`);
    return r.counters;
  }

  /** One command, one reply (the bench never has two outstanding). */
  #ask(cmd: FleetCommand, timeoutMs: number): Promise<FleetReply> {
    return new Promise<FleetReply>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`protocol fleet: no reply to ${cmd.type} in ${timeoutMs / 1000} s ${this.#err.slice(-300)}`)), timeoutMs);
      const gone = () => reject(new Error(`protocol fleet exited: ${this.#err.slice(-300)}`));
      this.#child.once('exit', gone);
      this.#waiting = (r) => {
        clearTimeout(t);
        this.#child.off('exit', gone);
        resolve(r);
      };
      this.#child.send(cmd);
    });
  }

  /** Ask the child to disconnect its clients and leave; SIGKILL after 10 s. */
  async close(): Promise<void> {
    const c = this.#child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    if (c.connected) c.send({ type: 'stop' } satisfies FleetCommand);
    else c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await this.#exited;
    clearTimeout(t);
  }
}
