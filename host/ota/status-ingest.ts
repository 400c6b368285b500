/**
 * Status events in, wave steps out (SPEC.md §12.9 "Status ingest", "Campaigns and waves"): only the
 * events that count (`ingestStatus`) reach the waves, the rest are counted by reason. An event that
 * may end a wave (a device online, or at an end state) brings the next step of the wave engine
 * forward; the engine also runs every tick.
 */
import { LIMITS } from '../../shared/limits.js';
import { parseStatusEvent } from '../../shared/ota/status.js';
import { advance, ingestStatus } from './campaigns.js';
import { type Metrics } from './metrics.js';
import { type CampaignRow, type Store } from './store.js';

/** Wave steps triggered by status events are at least this far apart (the periodic tick runs regardless). */
const MIN_TICK_GAP_MS = 100;

export type StatusIngestParts = {
  readonly store: Store;
  readonly metrics: Metrics;
  /** Devices known from `online` events before a new one is ignored. */
  readonly maxDevices: number;
  /** Republish a campaign's announcement after a wave step changed it. */
  readonly announce: (row: CampaignRow) => Promise<void>;
  readonly log: (line: string) => void;
};

export class StatusIngest {
  private tickTimer: NodeJS.Timeout | null = null;
  private tickPending = false;
  private lastTick = 0;
  private closed = false;

  constructor(private readonly parts: StatusIngestParts) {}

  /** Run the wave engine every `tickMs` from now on. */
  start(tickMs: number): void {
    this.tickTimer = setInterval(() => this.tick(), tickMs);
    this.tickTimer.unref();
  }

  /** A status event that arrived on the status topic of `device`. */
  receive(payload: Buffer, device: string): void {
    const { metrics } = this.parts;
    if (payload.length > LIMITS.maxOtaMessageBytes) return metrics.malformedMessage('oversize');
    const p = parseStatusEvent(payload);
    if (!p.ok || p.value.device !== device) return metrics.malformedMessage('status');
    const r = ingestStatus(this.parts.store, p.value, this.parts.maxDevices);
    if (!r.counted) return metrics.ignoredStatus(r.reason);
    if (p.value.state === 'online' || r.terminal) this.scheduleTick();
  }

  /**
   * A wave step soon after a device reached an end state, at most one per MIN_TICK_GAP_MS: a step
   * reads every status of the campaign, so one per confirmation would make a campaign O(devices^2).
   */
  scheduleTick(): void {
    if (this.tickPending || this.closed) return;
    this.tickPending = true;
    const run = () => {
      this.tickPending = false;
      this.tick();
    };
    const wait = this.lastTick + MIN_TICK_GAP_MS - Date.now();
    if (wait <= 0) setImmediate(run);
    else setTimeout(run, wait).unref();
  }

  /** Advance every running campaign one step; republish what changed. */
  tick(): void {
    if (this.closed) return;
    this.lastTick = Date.now();
    try {
      for (const row of this.parts.store.campaigns('running')) {
        const changed = advance(this.parts.store, row.id);
        if (changed) {
          this.parts.log(`campaign ${changed.id}: ${changed.state}, wave ${changed.wave + 1}`);
          void this.parts.announce(changed);
        }
      }
    } catch (e) {
      this.parts.log(`wave engine: ${(e as Error).message}`);
    }
  }

  close(): void {
    this.closed = true;
    if (this.tickTimer) clearInterval(this.tickTimer);
  }
}
