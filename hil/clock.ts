/**
 * Time for the harness: one Scheduler interface with a real implementation (timers) and a virtual
 * one (tests and the bench run on it: deterministic and as fast as the CPU allows), in the spirit of
 * the Timer that device/agent/pull.ts takes. Plus a seeded random source, so a fault pattern is
 * reproducible from its seed.
 */

export interface Scheduler {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  /** Run `fn` once after `delayMs` (>= 0); returns a function that cancels it. */
  setTimer(delayMs: number, fn: () => void): () => void;
}

/** Wall-clock scheduler (performance.now and setTimeout; Node clamps timers to >= 1 ms). */
export const realScheduler: Scheduler = Object.freeze({
  now: () => performance.now(),
  setTimer(delayMs: number, fn: () => void) {
    const t = setTimeout(fn, Math.max(0, delayMs));
    return () => clearTimeout(t);
  },
});

type Task = { readonly at: number; readonly seq: number; readonly fn: () => void; cancelled: boolean };

/**
 * A virtual clock: time moves only in advance()/runUntilIdle(), which run the due tasks in time
 * order (ties in the order they were set), including tasks those tasks set.
 */
export class VirtualClock implements Scheduler {
  private time: number;
  private seq = 0;
  private readonly tasks: Task[] = [];

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimer(delayMs: number, fn: () => void): () => void {
    const task: Task = { at: this.time + Math.max(0, delayMs), seq: this.seq++, fn, cancelled: false };
    // Binary insertion keeps the list sorted by (at, seq).
    let lo = 0;
    let hi = this.tasks.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.tasks[mid].at <= task.at) lo = mid + 1;
      else hi = mid;
    }
    this.tasks.splice(lo, 0, task);
    return () => {
      task.cancelled = true;
    };
  }

  /** Tasks set and not yet run or cancelled. */
  get pending(): number {
    return this.tasks.filter((t) => !t.cancelled).length;
  }

  /** Move time forward by `ms`, running every task due on the way. */
  advance(ms: number): void {
    this.runTo(this.time + Math.max(0, ms));
  }

  /** Run the next task (moving time to it); false when none is set. */
  step(): boolean {
    const next = this.nextTask();
    if (next === undefined) return false;
    this.runTo(next.at);
    return true;
  }

  /**
   * Settle `promise` by running tasks one at a time and letting the promise reactions they cause
   * run in between (a macrotask turn, not wall-clock time). Rejects when no task is left while the
   * promise is still pending (a deadlock), or after `limitMs` of virtual time.
   */
  async settle<T>(promise: Promise<T>, limitMs = Number.POSITIVE_INFINITY): Promise<T> {
    let settled = false;
    promise.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    const end = this.time + limitMs;
    const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
    await turn();
    while (!settled) {
      const next = this.nextTask();
      if (next === undefined) throw new Error('deadlock: the promise is pending and no timer is set');
      if (next.at > end) throw new Error(`not settled within ${limitMs} ms of virtual time`);
      this.runTo(next.at);
      await turn();
    }
    return promise;
  }

  /** Run tasks until none is left or `limitMs` of virtual time has passed; returns the time advanced. */
  runUntilIdle(limitMs = Number.POSITIVE_INFINITY): number {
    const start = this.time;
    const end = start + limitMs;
    for (;;) {
      const next = this.nextTask();
      if (next === undefined || next.at > end) break;
      this.runTo(next.at);
    }
    if (Number.isFinite(end) && this.nextTask() !== undefined) this.time = end;
    return this.time - start;
  }

  private nextTask(): Task | undefined {
    while (this.tasks.length > 0 && this.tasks[0].cancelled) this.tasks.shift();
    return this.tasks[0];
  }

  private runTo(target: number): void {
    for (;;) {
      const next = this.nextTask();
      if (next === undefined || next.at > target) break;
      this.tasks.shift();
      this.time = next.at;
      next.fn();
    }
    this.time = Math.max(this.time, target);
  }
}

/**
 * A seeded uniform random source in [0, 1): SplitMix32 (a 32-bit variant of SplitMix64's mixer),
 * good enough for fault injection and cheap; the same seed gives the same faults.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
    return z / 4294967296;
  };
}
