/**
 * Multicast of blocks many devices want at once (SPEC.md §12.11): hold each block answer until the
 * coalesce window passes without another device asking for it (at most MULTICAST_HOLD_FACTOR
 * windows); two or more askers: publish it once on the campaign's data topic (the broker fans it
 * out), else reply as usual. A device that already has the block drops the copy as not outstanding.
 */
import { type Packet } from 'mqtt';
import { LIMITS } from '../../shared/limits.js';
import { type ReplyPublisher } from './reply-publisher.js';
import { type Answer, type Reply } from './requests.js';

/** After a block went out on a data topic, askers within this many coalesce windows get plain replies. */
const MULTICAST_QUIET_FACTOR = 50;
/** A block answer gathers askers for at most this many coalesce windows (and at most LIMITS.maxMulticastHoldMs). */
const MULTICAST_HOLD_FACTOR = 25;

/** The request a block answer belongs to: whose it is and when it arrived. */
export type Asking = { readonly packet: Packet; readonly device: string; readonly received: bigint };
type Asker = Asking & { readonly reply: Reply };
type Gathering = { campaign: string; block: number; data: Uint8Array; askers: Asker[]; first: number; last: number };

export class BlockMulticast {
  /** Block answers waiting one window for more devices that want the same block. */
  private readonly gathering = new Map<string, Gathering>();
  /** When each block last went out on a data topic: later askers of it get plain replies for a while. */
  private readonly multicastAt = new Map<string, number>();
  private closed = false;

  /** `windowMs`: the coalesce window (`--coalesce-ms`), above 0. */
  constructor(
    private readonly windowMs: number,
    private readonly publisher: ReplyPublisher,
  ) {}

  /** Hold the block answers of one request flagged multicast (`a.multicast`). */
  gather(a: Answer, q: Asking): void {
    const campaign = a.multicast!.campaign;
    const window = this.windowMs;
    const now = Date.now();
    for (const reply of a.replies) {
      const key = `${campaign}/${reply.block}`;
      // Stragglers of a block just multicast: a copy to each of them, not another copy to everybody.
      if (now - (this.multicastAt.get(key) ?? -Infinity) < MULTICAST_QUIET_FACTOR * window) {
        this.publisher.send([reply], q.packet, q.device, q.received);
        continue;
      }
      let g = this.gathering.get(key);
      if (!g) {
        g = { campaign, block: reply.block!, data: reply.data!, askers: [], first: now, last: now };
        this.gathering.set(key, g);
        const started = g;
        // Released once no new asker came for one window (a herd keeps it open), at most MULTICAST_HOLD_FACTOR windows.
        const hold = Math.min(MULTICAST_HOLD_FACTOR * window, LIMITS.maxMulticastHoldMs);
        const check = () => {
          const t = Date.now();
          const until = Math.min(started.last + window, started.first + hold);
          if (t >= until) this.release(key, started);
          else setTimeout(check, until - t).unref();
        };
        setTimeout(check, window).unref();
      }
      g.last = now;
      g.askers.push({ reply, packet: q.packet, device: q.device, received: q.received });
    }
  }

  private release(key: string, g: Gathering): void {
    if (this.gathering.get(key) === g) this.gathering.delete(key);
    if (this.closed) return;
    if (g.askers.length === 1) {
      const one = g.askers[0]!;
      this.publisher.send([one.reply], one.packet, one.device, one.received);
      return;
    }
    if (this.multicastAt.size >= LIMITS.blockCacheEntries * 16) this.multicastAt.clear();
    this.multicastAt.set(key, Date.now());
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
  }
}
