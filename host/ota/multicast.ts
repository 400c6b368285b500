/**
 * Multicast of blocks many devices want at once (SPEC.md §12.11): hold each block answer until the
 * coalesce window passes without another device asking for it (at most MULTICAST_HOLD_FACTOR
 * windows). A copy on the campaign's data topic reaches every device listening there, a reply only
 * its asker, so the held answers go out once on the data topic only when they pay for it: two or more
 * askers, and at least MULTICAST_MIN_SHARE of the devices this instance saw downloading the campaign
 * lately (its audience). Else each asker gets its reply. A device that already has the block drops
 * the copy as not outstanding.
 */
import { type Packet } from 'mqtt';
import { LIMITS } from '../../shared/limits.js';
import { type ReplyPublisher } from './reply-publisher.js';
import { type Answer, type Reply } from './requests.js';

/** After a block went out on a data topic, askers within this many coalesce windows get plain replies (doubled per MULTICAST_QUIET_DOUBLINGS). */
const MULTICAST_QUIET_FACTOR = 50;
/** A block answer gathers askers for at most this many coalesce windows (and at most LIMITS.maxMulticastHoldMs). */
const MULTICAST_HOLD_FACTOR = 25;
/**
 * A gathering goes out on the data topic only if it holds at least this share of the campaign's
 * audience: a copy for every listener then costs at most 1 / share plain replies per asker (SPEC.md §12.11).
 */
export const MULTICAST_MIN_SHARE = 0.5;
/**
 * A device that asked for a campaign's blocks or pages within this long counts as downloading it (and
 * listening on its data topic): twice a device's 5 s request time-out, within which a device still
 * downloading asks again (unless it waits out a backoff).
 */
export const AUDIENCE_MS = 10_000;
/**
 * Most (campaign, device) pairs one instance tracks for its audience estimate, the least recently seen
 * dropped first (measured ~170 bytes each with 30-byte ids: ~11 MiB at the bound).
 */
export const MAX_AUDIENCE = LIMITS.maxMulticastAudience;
/**
 * A block multicast again less than twice its quiet period after the last time is asked by a trickle,
 * not a new herd: its quiet period doubles, at most this many times (50 windows x 64 = 64 s by default).
 */
const MULTICAST_QUIET_DOUBLINGS = 6;
/** Blocks whose last multicast is remembered (the least recently multicast forgotten first). */
const MULTICAST_MEMORY = LIMITS.blockCacheEntries * 16;

/** The request a block answer belongs to: whose it is and when it arrived. */
export type Asking = { readonly packet: Packet; readonly device: string; readonly received: bigint };
type Asker = Asking & { readonly reply: Reply };
type Gathering = { campaign: string; block: number; data: Uint8Array; askers: Asker[]; first: number; last: number; waiting?: boolean };
/** A block's last multicast and how many times in a row its quiet period doubled. */
type Sent = { at: number; doublings: number };

/**
 * Distinct devices per campaign seen asking within AUDIENCE_MS (SPEC.md §12.11): this instance's
 * estimate of who listens on the data topic. With several instances behind a shared subscription each
 * sees its own share of the devices and of the askers, so the ratio between them holds on each.
 */
export class Audience {
  /** `campaign/device` -> last seen (ms); Map order is least recently seen first (re-inserted when seen). */
  private readonly seen = new Map<string, { readonly campaign: string; at: number }>();
  private readonly counts = new Map<string, number>();

  constructor(
    private readonly horizonMs: number = AUDIENCE_MS,
    private readonly max: number = MAX_AUDIENCE,
  ) {}

  saw(campaign: string, device: string, now: number): void {
    // Ids are [A-Za-z0-9_-] (§12.1): '/' cannot make two pairs one key.
    const key = `${campaign}/${device}`;
    const had = this.seen.get(key);
    if (had) {
      this.seen.delete(key);
      had.at = now;
      this.seen.set(key, had);
    } else {
      this.seen.set(key, { campaign, at: now });
      this.counts.set(campaign, (this.counts.get(campaign) ?? 0) + 1);
    }
    this.prune(now);
  }

  /** Devices of `campaign` seen within the horizon. */
  size(campaign: string, now: number): number {
    this.prune(now);
    return this.counts.get(campaign) ?? 0;
  }

  /** Pairs tracked over all campaigns (at most `max`). */
  get tracked(): number {
    return this.seen.size;
  }

  private prune(now: number): void {
    for (const [key, e] of this.seen) {
      if (now - e.at < this.horizonMs && this.seen.size <= this.max) return;
      this.seen.delete(key);
      const left = (this.counts.get(e.campaign) ?? 1) - 1;
      if (left > 0) this.counts.set(e.campaign, left);
      else this.counts.delete(e.campaign);
    }
  }

  clear(): void {
    this.seen.clear();
    this.counts.clear();
  }
}

export class BlockMulticast {
  /** Block answers waiting one window for more devices that want the same block. */
  private readonly gathering = new Map<string, Gathering>();
  /** When each block last went out on a data topic: later askers of it get plain replies for a while. */
  private readonly multicastAt = new Map<string, Sent>();
  private readonly audience = new Audience();
  private closed = false;

  /** `windowMs`: the coalesce window (`--coalesce-ms`), above 0. */
  constructor(
    private readonly windowMs: number,
    private readonly publisher: ReplyPublisher,
  ) {}

  /**
   * A device asked for one of the campaign's pages or blocks: it is downloading, so it listens on the
   * data topic (SPEC.md §12.11). `gather` counts its own askers; other requests are reported here.
   */
  saw(campaign: string, device: string): void {
    this.audience.saw(campaign, device, Date.now());
  }

  /** Devices this instance counts as listening on the campaign's data topic now. */
  audienceOf(campaign: string): number {
    return this.audience.size(campaign, Date.now());
  }

  /** Hold the block answers of one request flagged multicast (`a.multicast`). */
  gather(a: Answer, q: Asking): void {
    const campaign = a.multicast!.campaign;
    const window = this.windowMs;
    const now = Date.now();
    this.audience.saw(campaign, q.device, now);
    for (const reply of a.replies) {
      const key = `${campaign}/${reply.block}`;
      // Stragglers of a block just multicast: a copy to each of them, not another copy to everybody.
      const sent = this.multicastAt.get(key);
      if (sent && now - sent.at < this.quietMs(sent)) {
        this.publisher.send([reply], q.packet, q.device, q.received);
        continue;
      }
      let g = this.gathering.get(key);
      if (!g) {
        g = { campaign, block: reply.block!, data: reply.data!, askers: [], first: now, last: now };
        this.gathering.set(key, g);
        const started = g;
        // Released once no new asker came for one window (a herd keeps it open), at most the hold. A gathering too
        // small for a copy whose askers came fast enough to make one within the hold (mayWait, decided at the first
        // look) waits instead, looked at every window, until the hold ends or the whole audience asked (§12.11).
        const check = () => {
          const t = Date.now();
          const end = started.first + this.holdMs;
          started.waiting ??= this.mayWait(started, t);
          const until = started.waiting && !this.allAsked(started, t) ? Math.min(t + window, end) : Math.min(started.last + window, end);
          if (t >= until) this.release(key, started);
          else setTimeout(check, until - t).unref();
        };
        setTimeout(check, window).unref();
      }
      g.last = now;
      g.askers.push({ reply, packet: q.packet, device: q.device, received: q.received });
    }
  }

  /** How long a block answer gathers askers at most: MULTICAST_HOLD_FACTOR windows, at most LIMITS.maxMulticastHoldMs. */
  private get holdMs(): number {
    return Math.min(MULTICAST_HOLD_FACTOR * this.windowMs, LIMITS.maxMulticastHoldMs);
  }

  private allAsked(g: Gathering, now: number): boolean {
    return g.askers.length >= this.audience.size(g.campaign, now);
  }

  /**
   * At its first look (one window after its first asker), a gathering too small for a copy, with
   * devices of the audience yet to ask, whose askers (two or more) came fast enough that at that rate
   * a copy pays within the hold: it waits until the hold ends or every device of the audience asked.
   * A server busy with a herd hears its requests in bursts farther apart than a window, and the later
   * bursts join the copy (§12.11). A lone asker and a trickle are answered as before.
   */
  private mayWait(g: Gathering, now: number): boolean {
    const need = Math.max(2, MULTICAST_MIN_SHARE * this.audience.size(g.campaign, now));
    const n = g.askers.length;
    // One asker in its first window is no sign of a herd: a device out of step with a small fleet would wait every hold.
    if (n < 2 || n >= need || this.allAsked(g, now)) return false;
    return (n * this.holdMs) / Math.max(now - g.first, this.windowMs) >= need;
  }

  private quietMs(s: Sent): number {
    return MULTICAST_QUIET_FACTOR * this.windowMs * 2 ** s.doublings;
  }

  private release(key: string, g: Gathering): void {
    if (this.gathering.get(key) === g) this.gathering.delete(key);
    if (this.closed) return;
    const now = Date.now();
    // One copy per listener against one reply per asker: the data topic only when the askers are a large share of the listeners (§12.11).
    const n = g.askers.length;
    if (n < 2 || n < MULTICAST_MIN_SHARE * this.audience.size(g.campaign, now)) {
      for (const one of g.askers) this.publisher.send([one.reply], one.packet, one.device, one.received);
      return;
    }
    const prev = this.multicastAt.get(key);
    const again = prev !== undefined && now - prev.at < 2 * this.quietMs(prev);
    const doublings = again ? Math.min(prev.doublings + 1, MULTICAST_QUIET_DOUBLINGS) : 0;
    this.multicastAt.delete(key);
    if (this.multicastAt.size >= MULTICAST_MEMORY) this.multicastAt.delete(this.multicastAt.keys().next().value!);
    this.multicastAt.set(key, { at: now, doublings });
    this.publisher.multicast(
      g.campaign,
      g.block,
      g.data,
      g.askers.map((x) => x.received),
    );
  }

  close(): void {
    this.closed = true;
    this.gathering.clear();
    this.multicastAt.clear();
    this.audience.clear();
  }
}
