/** The asynchronous windowed pull (SPEC.md §12.3, §12.7) on a virtual clock with fake async transports. */
import { describe, expect, it } from 'vitest';
import { type UpdateAgent } from '../device/agent/agent.js';
import { PowerCut } from '../device/agent/flash.js';
import { type AsyncTransport, type PullOptions, pullDownload, type Timer } from '../device/agent/pull.js';
import { concatBytes } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { pageLeafRange } from '../shared/merkle.js';
import { agentWorld } from './support/agent-world.js';

// 300 chunks of 512 bytes: 3 digest pages.
const N = 300;
const { v2, v2Image, leaves, proofs, device } = agentWorld('pull', N);

/**
 * A virtual clock: sleep(ms) resolves when run() advances time to it. run() lets every microtask
 * settle (a macrotask turn), then wakes the earliest sleeper, until the awaited promise settles.
 */
class VirtualTimer implements Timer {
  t = 0;
  /** Every sleep the code under test asked for (timeouts and backoffs). */
  readonly sleeps: number[] = [];
  #seq = 0;
  #queue: { at: number; seq: number; wake: () => void }[] = [];
  constructor(readonly rand: () => number = () => 0.5) {}
  now() {
    return this.t;
  }
  random() {
    return this.rand();
  }
  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    return this.after(ms);
  }
  /** A wake-up not recorded in `sleeps` (used by the fake transports for reply latency). */
  after(ms: number): Promise<void> {
    return new Promise((wake) => this.#queue.push({ at: this.t + ms, seq: this.#seq++, wake }));
  }
  async run<T>(p: Promise<T>): Promise<T> {
    let settled = false;
    p.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    for (;;) {
      await new Promise((r) => setImmediate(r));
      if (settled) return p;
      if (this.#queue.length === 0) throw new Error('deadlock: nothing to wake');
      this.#queue.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const next = this.#queue.shift()!;
      this.t = Math.max(this.t, next.at);
      next.wake();
    }
  }
}

type Fake = AsyncTransport & { blocks: number[]; pages: number[]; maxInFlight: number };

/**
 * An async transport over the v2 image. Replies after a latency that varies by index (so they arrive
 * out of order); `lose(index, attempt)` drops a reply for good, `corrupt(index, attempt)` flips a bit.
 */
function transport(
  timer: VirtualTimer,
  opts: { lose?: (i: number, n: number) => boolean; corrupt?: (i: number, n: number) => boolean; nothing?: boolean } = {},
): Fake {
  const attempts = new Map<number, number>();
  let inFlight = 0;
  const fake: Fake = {
    blocks: [],
    pages: [],
    maxInFlight: 0,
    async requestPage(page) {
      fake.pages.push(page);
      inFlight++;
      fake.maxInFlight = Math.max(fake.maxInFlight, inFlight);
      await timer.after(20);
      inFlight--;
      if (opts.nothing) return null;
      const { start, end } = pageLeafRange(page, leaves.length);
      return { leaves: concatBytes(...leaves.slice(start, end)), proof: concatBytes(...proofs[page]) };
    },
    requestBlock(index) {
      const n = (attempts.get(index) ?? 0) + 1;
      attempts.set(index, n);
      fake.blocks.push(index);
      if (opts.lose?.(index, n)) return new Promise<never>(() => {});
      inFlight++;
      fake.maxInFlight = Math.max(fake.maxInFlight, inFlight);
      return timer.after(5 + ((index * 7) % 13)).then(() => {
        inFlight--;
        if (opts.nothing) return null;
        const bytes = v2Image.slice(index * 512, (index + 1) * 512);
        if (opts.corrupt?.(index, n)) bytes[7] ^= 0x80;
        return bytes;
      });
    },
  };
  return fake;
}

function pull(agent: UpdateAgent, t: Fake, timer: VirtualTimer, options?: PullOptions) {
  return timer.run(pullDownload(agent, t, timer, options));
}

/** A provisioned device with the v2 download begun, and a virtual timer. */
function begin() {
  const agent = device().agent();
  agent.beginUpdate(v2);
  return { agent, timer: new VirtualTimer() };
}

describe('pullDownload', () => {
  for (const window of [1, 8]) {
    it(`downloads every block with window ${window}, never more than ${window} requests in flight`, async () => {
      const d = device();
      const agent = d.agent();
      expect(agent.beginUpdate(v2).ok).toBe(true);
      const timer = new VirtualTimer();
      const t = transport(timer);
      const r = await pull(agent, t, timer, { window });
      expect(r.ok).toBe(true);
      expect(r.ok && r.requests).toBe(N + 3);
      expect(r.ok && r.timeouts).toBe(0);
      expect(t.blocks.length).toBe(N);
      expect(new Set(t.blocks).size).toBe(N);
      expect(t.pages).toEqual([0, 1, 2]);
      expect(t.maxInFlight).toBe(window);
      expect(agent.missingChunks()).toEqual([]);
      expect(agent.finishDownload().ok).toBe(true);
    });
  }

  it('retries lost replies after a timeout and completes', async () => {
    const { agent, timer } = begin();
    const t = transport(timer, { lose: (i, n) => (i % 50 === 3 && n <= 2) || (i === 200 && n === 1) });
    const r = await pull(agent, t, timer, { window: 4, timeoutMs: 1000 });
    expect(r.ok).toBe(true);
    const lost = [3, 53, 103, 153, 203, 253].length * 2 + 1;
    expect(r.ok && r.timeouts).toBe(lost);
    expect(t.blocks.length).toBe(N + lost);
    expect(t.maxInFlight).toBeLessThanOrEqual(4);
    expect(agent.finishDownload().ok).toBe(true);
  });

  it('rejects a tampered block from a rogue publisher and fetches it again', async () => {
    const { agent, timer } = begin();
    const t = transport(timer, { corrupt: (i, n) => i === 221 && n === 1 });
    const r = await pull(agent, t, timer);
    expect(r.ok && r.rejected).toBe(1);
    expect(t.blocks.filter((i) => i === 221).length).toBe(2);
    expect(agent.finishDownload().ok).toBe(true);
  });

  it('gives up with the verification code when every attempt is tampered', async () => {
    const { agent, timer } = begin();
    const t = transport(timer, { corrupt: (i) => i === 10 });
    const r = await pull(agent, t, timer, { maxAttempts: 3 });
    expect(r.code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
    expect(t.blocks.filter((i) => i === 10).length).toBe(3);
    expect(agent.missingChunks()).toContain(10);
  });

  it('backs off exponentially with full jitter, within bounds', async () => {
    const d = device();
    const agent = d.agent();
    agent.beginUpdate(v2);
    const draws = [0.9, 0.25, 0.999, 0.5, 0.0, 0.75, 0.6];
    let k = 0;
    const timer = new VirtualTimer(() => draws[k++ % draws.length]);
    const t = transport(timer, { lose: (i) => i === 0 });
    const opts = { window: 1, timeoutMs: 777, baseBackoffMs: 1000, maxBackoffMs: 10_000, maxAttempts: 7 };
    const r = await pull(agent, t, timer, opts);
    expect(r.code).toBe(CODES.TRANSPORT_TIMEOUT);
    const backoffs = timer.sleeps.filter((ms) => ms !== 777);
    expect(backoffs.length).toBe(6);
    backoffs.forEach((ms, a) => {
      const ceiling = Math.min(10_000, 1000 * 2 ** a);
      expect(ms).toBeGreaterThanOrEqual(0);
      expect(ms).toBeLessThan(ceiling);
      expect(ms).toBeCloseTo(draws[a] * ceiling, 6);
    });
    // The ceiling doubles and is capped: 1, 2, 4, 8, 10, 10 s.
    expect(backoffs.map((_ms, a) => Math.min(10_000, 1000 * 2 ** a))).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000]);

    // With a constant draw the delays grow.
    const d2 = device();
    const agent2 = d2.agent();
    agent2.beginUpdate(v2);
    const timer2 = new VirtualTimer(() => 0.5);
    await pull(agent2, transport(timer2, { lose: (i) => i === 0 }), timer2, { ...opts, maxBackoffMs: 60_000, maxAttempts: 5 });
    expect(timer2.sleeps.filter((ms) => ms !== 777)).toEqual([500, 1000, 2000, 4000]);
  });

  it('reports TRANSPORT_TIMEOUT when every request is lost, after maxAttempts', async () => {
    const { agent, timer } = begin();
    const t = transport(timer, { lose: () => true });
    const r = await pull(agent, t, timer, { window: 8, maxAttempts: 4 });
    expect(r.code).toBe(CODES.TRANSPORT_TIMEOUT);
    // Each of the first 8 blocks was tried at most 4 times; no block past the window was asked for.
    for (const i of new Set(t.blocks)) expect(t.blocks.filter((b) => b === i).length).toBeLessThanOrEqual(4);
    expect(t.blocks.filter((b) => b === 0).length).toBe(4);
    expect(Math.max(...t.blocks)).toBeLessThan(8);
    expect(agent.missingChunks().length).toBe(N);
  });

  it('reports TRANSPORT_UNAVAILABLE when every reply is an error, and TRANSPORT_TIMEOUT past the budget', async () => {
    const { agent, timer } = begin();
    expect((await pull(agent, transport(timer, { nothing: true }), timer, { maxAttempts: 2 })).code).toBe(CODES.TRANSPORT_UNAVAILABLE);
    const timer2 = new VirtualTimer();
    const r = await pull(agent, transport(timer2), timer2, { window: 1, budgetMs: 100 });
    expect(r.code).toBe(CODES.TRANSPORT_TIMEOUT);
    expect(agent.missingChunks().length).toBeGreaterThan(0);
  });

  it('resumes after a power cut: fetches fewer blocks than a restart would', async () => {
    const d = device();
    d.agent().beginUpdate(v2);
    d.flash.setFaults({ powerCutBeforeOp: 150 });
    const timer = new VirtualTimer();
    await expect(pull(d.agent(), transport(timer), timer)).rejects.toBeInstanceOf(PowerCut);
    d.flash.setFaults({});
    const agent = d.agent(); // a reset: a new agent over the same flash
    const begun = agent.beginUpdate(v2);
    expect(begun.ok && begun.resumed).toBe(true);
    const timer2 = new VirtualTimer();
    const t = transport(timer2);
    const r = await pull(agent, t, timer2);
    expect(r.ok).toBe(true);
    expect(t.blocks.length).toBeGreaterThan(0);
    expect(t.blocks.length).toBeLessThan(N);
    expect(agent.finishDownload().ok).toBe(true);
  });
});

/** Blocks of `cpb` chunks: block b is chunks b*cpb .. b*cpb+cpb-1 concatenated (the last block shorter). */
function blockTransport(timer: VirtualTimer, cpb: number, opts: { alter?: (block: number, attempt: number, bytes: Uint8Array) => Uint8Array } = {}): Fake {
  const attempts = new Map<number, number>();
  const fake: Fake = {
    blocks: [],
    pages: [],
    maxInFlight: 0,
    async requestPage(page) {
      fake.pages.push(page);
      await timer.after(20);
      const { start, end } = pageLeafRange(page, leaves.length);
      return { leaves: concatBytes(...leaves.slice(start, end)), proof: concatBytes(...proofs[page]) };
    },
    async requestBlock(index) {
      const n = (attempts.get(index) ?? 0) + 1;
      attempts.set(index, n);
      fake.blocks.push(index);
      await timer.after(5 + ((index * 7) % 13));
      const bytes = v2Image.slice(index * cpb * 512, (index + 1) * cpb * 512);
      return opts.alter ? opts.alter(index, n, bytes) : bytes;
    },
  };
  return fake;
}

describe('pullDownload with several chunks per block', () => {
  it('writes a block of 4 chunks, each checked against its leaf, one request per block', async () => {
    const { agent, timer } = begin();
    const t = blockTransport(timer, 4);
    const r = await pull(agent, t, timer, { chunksPerBlock: 4, chunkSize: 512 });
    expect(r.ok).toBe(true);
    expect(t.blocks.length).toBe(N / 4);
    expect(new Set(t.blocks).size).toBe(N / 4);
    expect(r.ok && r.requests).toBe(N / 4 + 3);
    expect(agent.missingChunks()).toEqual([]);
    expect(agent.finishDownload().ok).toBe(true);
  });

  it('re-fetches a block with one tampered chunk; its good chunks before it are kept', async () => {
    const { agent, timer } = begin();
    const t = blockTransport(timer, 4, {
      alter: (b, n, bytes) => {
        if (b === 10 && n === 1) bytes[512 * 2 + 9] ^= 1;
        return bytes;
      },
    });
    const r = await pull(agent, t, timer, { chunksPerBlock: 4, chunkSize: 512, window: 1 });
    expect(r.ok && r.rejected).toBe(1);
    expect(t.blocks.filter((b) => b === 10).length).toBe(2);
    expect(agent.finishDownload().ok).toBe(true);
  });

  it('accepts a short last block (300 chunks in blocks of 8: the last has 4)', async () => {
    const { agent, timer } = begin();
    const lengths = new Map<number, number>();
    const t = blockTransport(timer, 8, {
      alter: (b, _n, bytes) => {
        lengths.set(b, bytes.length);
        return bytes;
      },
    });
    const r = await pull(agent, t, timer, { chunksPerBlock: 8, chunkSize: 512 });
    expect(r.ok).toBe(true);
    expect(t.blocks.length).toBe(Math.ceil(N / 8));
    expect(lengths.get(Math.ceil(N / 8) - 1)).toBe((N % 8) * 512);
    expect(agent.finishDownload().ok).toBe(true);
  });

  it('rejects a truncated block (fetched again), and gives up with a verification code when it stays truncated', async () => {
    const { agent, timer } = begin();
    const t = blockTransport(timer, 4, { alter: (b, n, bytes) => (b === 5 && n === 1 ? bytes.slice(0, bytes.length - 100) : bytes) });
    const r = await pull(agent, t, timer, { chunksPerBlock: 4, chunkSize: 512 });
    expect(r.ok && r.rejected).toBe(1);
    expect(t.blocks.filter((b) => b === 5).length).toBe(2);
    expect(agent.finishDownload().ok).toBe(true);

    const d2 = device();
    const agent2 = d2.agent();
    agent2.beginUpdate(v2);
    const timer2 = new VirtualTimer();
    const t2 = blockTransport(timer2, 4, { alter: (b, _n, bytes) => (b === 7 ? bytes.slice(0, 1024) : bytes) });
    const r2 = await pull(agent2, t2, timer2, { chunksPerBlock: 4, chunkSize: 512, maxAttempts: 3 });
    expect(r2.ok).toBe(false);
    expect(r2.code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
    expect(t2.blocks.filter((b) => b === 7).length).toBe(3);
    // The two chunks that did arrive whole were checked and written; the missing two were not.
    expect(agent2.missingChunks()).toEqual(expect.arrayContaining([30, 31]));
    expect(agent2.missingChunks()).not.toContain(28);
  });
});
