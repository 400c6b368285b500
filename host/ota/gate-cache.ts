/**
 * A campaign's request gate (state, halt, rollout, and the devices excluded from it) read from the
 * store at most once per `gateCacheMs` per campaign on each instance (SPEC.md §12.9 "Request gate").
 * Every manifest, page and block request reads it: at a herd's peak that was one store query per
 * request (~40 µs on SQLite; a round trip on PostgreSQL, where the bounded request store calls then
 * answered tens of thousands of requests SERVER_BUSY at 10,000 devices: tools/bench ota, scale rows).
 * The instance's own changes (`updateCampaign`, `excludeDevice`) drop the entry at once; another
 * instance's change is seen within `gateCacheMs`. Concurrent reads of one campaign share one query. A
 * campaign that does not exist is not remembered, so made-up ids neither fill it nor hide a campaign
 * created meanwhile.
 */
import { LIMITS } from '../../shared/limits.js';
import { type CampaignGate } from './store.js';

export type GateRead = { readonly gate: CampaignGate; readonly excluded: ReadonlySet<string> };

type Entry = { readonly at: number; readonly value: Promise<GateRead | undefined> };

export class GateCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly read: (id: string) => Promise<GateRead | undefined>,
    /** Monotonic: a wall clock set back would keep an entry for as long as it went back. */
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** The gate of campaign `id`; with `device`, rollout 0 for a device excluded from it (its requests get CAMPAIGN_INACTIVE). */
  async get(id: string, device?: string): Promise<CampaignGate | undefined> {
    const now = this.now();
    let entry = this.entries.get(id);
    if (entry === undefined || now - entry.at >= LIMITS.gateCacheMs) entry = this.load(id, now);
    const v = await entry.value;
    if (v === undefined) return undefined;
    return device !== undefined && v.excluded.has(device) ? { ...v.gate, rollout: 0 } : v.gate;
  }

  /** After a change of campaign `id` on this instance: the next request reads it again. */
  invalidate(id: string): void {
    this.entries.delete(id);
  }

  private load(id: string, now: number): Entry {
    const entry: Entry = { at: now, value: this.read(id) };
    this.entries.delete(id); // re-inserted last: the map's order is the order of the reads
    this.entries.set(id, entry);
    if (this.entries.size > LIMITS.gateCacheEntries) this.entries.delete(this.entries.keys().next().value as string);
    const forget = () => {
      if (this.entries.get(id) === entry) this.entries.delete(id);
    };
    entry.value.then((v) => v === undefined && forget(), forget);
    return entry;
  }
}
