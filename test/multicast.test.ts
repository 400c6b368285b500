/**
 * BlockMulticast (host/ota/multicast.ts, SPEC.md §12.11) with fake publishers and a fake clock: a
 * model broker counts the copies it would send (one per plain reply, one per listener for a copy on
 * the data topic) and which asker got its block how. Multicast must never cost much more than plain
 * replies, with one instance or two behind a shared subscription, and a herd must still share one copy.
 */
import { type Packet } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AUDIENCE_MS, Audience, BlockMulticast, MAX_AUDIENCE } from '../host/ota/multicast.js';
import { type ReplyPublisher } from '../host/ota/reply-publisher.js';
import { type Answer } from '../host/ota/requests.js';

const WINDOW = 20; // the default --coalesce-ms
const CAMPAIGN = 'c1';
const PACKET = {} as Packet;

/** One block request's answer, flagged multicast, as requests.ts makes it (the payload is not looked at here). */
function answerFor(blocks: readonly number[]): Answer {
  const replies = blocks.map((block) => ({ payload: new Uint8Array(1), block, bytes: 4, data: new Uint8Array(4) }));
  return { replies, malformed: false, kind: 'block', multicast: { campaign: CAMPAIGN } };
}

/**
 * The broker as far as block bytes go: `listeners` devices on the data topic. Each asked block is
 * identified by its request's `received` stamp; `got` counts how often each one was answered.
 */
class World {
  copies = 0;
  multicasts: number[] = [];
  replies = 0;
  readonly got = new Map<bigint, number>();
  readonly instances: BlockMulticast[];
  private stamp = 0n;
  private rng = 12345;

  constructor(
    readonly listeners: number,
    count = 1,
  ) {
    this.instances = Array.from({ length: count }, () => new BlockMulticast(WINDOW, this.publisher()));
  }

  private publisher(): ReplyPublisher {
    const fake = {
      send: (replies: Answer['replies'], _p: Packet, _d: string, received: bigint | null) => {
        this.copies += replies.length;
        this.replies += replies.length;
        this.got.set(received!, (this.got.get(received!) ?? 0) + replies.length);
      },
      multicast: (_c: string, block: number, _data: Uint8Array, received: readonly bigint[]) => {
        this.copies += this.listeners;
        this.multicasts.push(block);
        for (const r of received) this.got.set(r, (this.got.get(r) ?? 0) + 1);
      },
    };
    return fake as unknown as ReplyPublisher;
  }

  /** A shared subscription hands each request to any instance (a fixed pseudo-random sequence here). */
  private pick(): BlockMulticast {
    this.rng = (this.rng * 1103515245 + 12345) % 2147483648;
    return this.instances[(this.rng >>> 16) % this.instances.length]!;
  }

  /** Device `d` asks for one block; returns the stamp of its request. */
  ask(d: number, block: number): bigint {
    const received = ++this.stamp;
    this.got.set(received, 0);
    this.pick().gather(answerFor([block]), { packet: PACKET, device: `d-${d}`, received });
    return received;
  }

  /** Every gathering released. */
  settle(): void {
    vi.advanceTimersByTime(2000);
  }

  /** Every request answered exactly once, by a reply or a copy on the data topic. */
  eachAnsweredOnce(): void {
    expect([...this.got.values()].filter((n) => n !== 1)).toEqual([]);
  }

  close(): void {
    for (const m of this.instances) m.close();
  }
}

/** A world whose one instance saw its `listeners` devices ask for the campaign's pages: all of them are its audience. */
function downloading(listeners: number): World {
  const w = new World(listeners);
  for (let d = 0; d < listeners; d++) w.instances[0]!.saw(CAMPAIGN, `d-${d}`);
  return w;
}

/** `n` devices ask for `block` 2 ms apart: a herd (within one window of each other, well within the hold). */
function herd(w: World, block: number, n: number, first = 0): void {
  for (let d = first; d < first + n; d++) {
    w.ask(d, block);
    vi.advanceTimersByTime(2);
  }
}

/** 100 askers of `block` in bursts of 4 every 120 ms: spread over 3 s, longer than the 1 s quiet period. */
function spread(w: World, block: number): void {
  for (let burst = 0; burst < 25; burst++) {
    for (let k = 0; k < 4; k++) w.ask(burst * 4 + k, block);
    vi.advanceTimersByTime(120);
  }
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('BlockMulticast: a copy on the data topic only when it pays (SPEC.md §12.11)', () => {
  it('wave start: 100 devices asking for a block within the hold share one copy, no plain reply', () => {
    const w = new World(100);
    herd(w, 0, 100);
    w.settle();
    expect([w.multicasts, w.replies, w.copies]).toEqual([[0], 0, 100]);
    w.eachAnsweredOnce();
    w.close();
  });

  it('askers of a block spread over 3 s while 100 devices download get plain replies, never a copy for everybody', () => {
    const w = new World(100);
    herd(w, 0, 100); // the wave start: all 100 are downloading
    w.settle();
    const before = w.copies;
    spread(w, 1);
    w.settle();
    // The old rule sent block 1 to all 100 listeners again after each 1 s quiet period (3 times here).
    expect(w.multicasts.filter((b) => b === 1)).toEqual([]);
    expect(w.copies - before).toBe(100);
    w.eachAnsweredOnce();
    w.close();
  });

  it('two instances behind a shared subscription: a herd costs at most two copies per device, spread askers no more than plain replies', () => {
    const w = new World(100, 2);
    herd(w, 0, 100);
    w.settle();
    // Each instance sends its own copy (it cannot know of the other): at most 2 x the 100 replies.
    expect(w.multicasts).toEqual([0, 0]);
    expect(w.copies).toBeLessThanOrEqual(2 * 100);
    const before = w.copies;
    spread(w, 1);
    w.settle();
    expect(w.multicasts.filter((b) => b === 1)).toEqual([]);
    expect(w.copies - before).toBe(100);
    w.eachAnsweredOnce();
    w.close();
  });

  it('a gathering that is a small share of the devices seen downloading (pages or blocks) is answered with plain replies', () => {
    const w = downloading(100);
    expect(w.instances[0]!.audienceOf(CAMPAIGN)).toBe(100);
    herd(w, 4, 10);
    w.settle();
    expect([w.multicasts, w.replies]).toEqual([[], 10]);
    // Half of them at once: one copy is worth it.
    herd(w, 5, 50, 10);
    w.settle();
    expect([w.multicasts, w.replies]).toEqual([[5], 10]);
    w.eachAnsweredOnce();
    w.close();
  });

  it('a herd a busy server hears in groups farther apart than a window, within the hold, shares one copy', () => {
    const w = downloading(100);
    herd(w, 3, 30); // 30 of the 100: too few for a copy on their own
    vi.advanceTimersByTime(200); // ten windows without an asker
    herd(w, 3, 40, 30);
    w.settle();
    // Released at the first quiet window, the 30 and then the 40 each went out as plain replies (70 of them).
    expect([w.multicasts, w.replies, w.copies]).toEqual([[3], 0, 100]);
    w.eachAnsweredOnce();
    w.close();
  });

  it('a herd that looked small at first goes out one window after its last asker once a copy pays, not at the end of the hold', () => {
    const w = downloading(100);
    herd(w, 3, 100); // 10 askers at the first look, then the rest: 200 ms in all
    vi.advanceTimersByTime(WINDOW);
    expect([w.multicasts, w.replies]).toEqual([[3], 0]);
    w.eachAnsweredOnce();
    w.close();
  });

  // 100: at one asker per window, the 50 a copy needs would take longer than the hold. 4: a device out
  // of step with a small fleet is not held for the others (one asker is no sign of a herd).
  it.each([100, 4])('a lone asker among %i devices downloading other blocks is answered after one window, as before', (devices) => {
    const w = downloading(devices);
    w.ask(0, 9);
    vi.advanceTimersByTime(WINDOW);
    expect([w.multicasts, w.replies]).toEqual([[], 1]);
    w.eachAnsweredOnce();
    w.close();
  });

  it('a lone asker gets a plain reply; two askers of a block nobody else downloads share a copy', () => {
    const w = new World(2);
    w.ask(0, 7);
    w.settle();
    expect([w.multicasts, w.replies]).toEqual([[], 1]);
    w.ask(0, 8);
    w.ask(1, 8);
    w.settle();
    expect([w.multicasts, w.replies]).toEqual([[8], 1]);
    w.eachAnsweredOnce();
    w.close();
  });

  it("a block a few devices keep asking for: each copy soon after the last doubles the block's quiet period, so copies grow with the log of the time", () => {
    // Four devices asking together every 250 ms for 20 s: the share rule alone would send a copy
    // after every 1 s quiet period (about 16); listeners this instance does not see would pay for each.
    const w = new World(4);
    for (let t = 0; t < 80; t++) {
      for (let d = 0; d < 4; d++) w.ask(d, 3);
      vi.advanceTimersByTime(250);
    }
    w.settle();
    // Quiet periods 1, 2, 4, 8 s: copies at about 0, 1, 3, 7.5 and 16 s.
    expect(w.multicasts.length).toBeGreaterThanOrEqual(2);
    expect(w.multicasts.length).toBeLessThanOrEqual(5);
    w.eachAnsweredOnce();
    w.close();
  });

  it('a new wave after a pause: the quiet period and the audience start again, and its herd shares one copy', () => {
    const w = new World(100);
    herd(w, 0, 100);
    w.settle();
    vi.advanceTimersByTime(5 * 60_000);
    // The first wave's devices finished long ago (they left the data topic); a wave of 40 new ones.
    expect(w.instances[0]!.audienceOf(CAMPAIGN)).toBe(0);
    herd(w, 0, 40, 100);
    w.settle();
    expect([w.multicasts, w.replies]).toEqual([[0, 0], 0]);
    w.eachAnsweredOnce();
    w.close();
  });

  it('after close nothing is published, held answers included', () => {
    const w = new World(10);
    herd(w, 0, 10);
    w.close();
    w.settle();
    expect([w.multicasts, w.replies]).toEqual([[], 0]);
  });
});

describe('Audience: the devices seen downloading a campaign, bounded', () => {
  it('counts distinct devices per campaign within the horizon, and forgets them after it', () => {
    const a = new Audience(1000, 100);
    a.saw('c1', 'x', 0);
    a.saw('c1', 'x', 10);
    a.saw('c1', 'y', 20);
    a.saw('c2', 'x', 30);
    expect([a.size('c1', 40), a.size('c2', 40), a.size('c3', 40), a.tracked]).toEqual([2, 1, 0, 3]);
    // 'x' of c1 was seen again at 10: still there at 1005, 'y' too; at 1015 only the later ones.
    expect([a.size('c1', 1005), a.size('c1', 1015), a.size('c1', 1025), a.size('c2', 1025)]).toEqual([2, 1, 0, 1]);
    expect([a.size('c2', 1030), a.tracked]).toEqual([0, 0]);
  });

  it('holds at most its bound, dropping the least recently seen first', () => {
    const a = new Audience(1000, 100);
    for (let i = 0; i < 250; i++) a.saw(i % 2 ? 'c1' : 'c2', `d${i}`, 0);
    expect(a.tracked).toBe(100);
    expect(a.size('c1', 0) + a.size('c2', 0)).toBe(100);
    a.saw('c2', 'd10', 1); // one of the dropped ones again: the oldest kept one makes room
    expect([a.tracked, a.size('c1', 1) + a.size('c2', 1)]).toEqual([100, 100]);
  });

  it("BlockMulticast's audience stays within MAX_AUDIENCE however many devices ask within AUDIENCE_MS", () => {
    const m = new BlockMulticast(WINDOW, {} as ReplyPublisher);
    for (let i = 0; i < MAX_AUDIENCE + 5000; i++) m.saw(CAMPAIGN, `d-${i}`);
    expect(m.audienceOf(CAMPAIGN)).toBe(MAX_AUDIENCE);
    vi.advanceTimersByTime(AUDIENCE_MS);
    expect(m.audienceOf(CAMPAIGN)).toBe(0);
    m.close();
  });
});
