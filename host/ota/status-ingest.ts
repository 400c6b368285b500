/**
 * Status events in, wave steps out (SPEC.md §12.9 "Status ingest", "Campaigns and waves"): only the
 * events that count (`ingestStatus`) reach the waves, the rest are counted by reason. An event that
 * may end a wave (a device online, or at an end state) brings the next step of the wave engine
 * forward; the engine also runs every tick. The store is asynchronous: one device's events are
 * ingested one after the other, in arrival order, and wave steps never overlap on one instance.
 * Events are never dropped for being too many: past `maxStatusBacklog` not yet in the store, the
 * server stops reading from the broker (`admit`) until half of them are in, so a slow store makes the
 * broker hold the messages instead (SPEC.md §12.9 "Status ingest", backpressure).
 */
import { LIMITS } from '../../shared/limits.js';
import { parseStatusEvent } from '../../shared/ota/status.js';
import { ingestStatus } from './campaigns.js';
import { asServerLog, errorFields, type LogTarget, logTimeouts, logWaveStep, type ServerLog } from './log.js';
import { type Metrics } from './metrics.js';
import { type CampaignRow, type OtaStore } from './store.js';
import { advance } from './waves.js';

/** Wave steps triggered by status events are at least this far apart (the periodic tick runs regardless). */
const MIN_TICK_GAP_MS = 100;
/**
 * ... and at least this many times as long as the last step took: a step reads every status and device
 * row of each running campaign, and at 10,000 devices steps 100 ms apart took a fifth of the server's
 * CPU (profiled); this keeps the wave engine's share under about 1 / (1 + TICK_COST_FACTOR).
 */
export const TICK_COST_FACTOR = 10;

export type StatusIngestParts = {
  readonly store: OtaStore;
  readonly metrics: Metrics;
  /** Devices known from `online` events before a new one is ignored. */
  readonly maxDevices: number;
  /** Events received and not yet in the store before the server stops reading (default LIMITS.maxStatusBacklog). */
  readonly maxBacklog?: number;
  /** Republish a campaign's announcement after a wave step changed it. */
  readonly announce: (row: CampaignRow) => Promise<void>;
  /** Events (log.ts): the wave steps, and why a status event was ignored (debug). */
  readonly log: LogTarget;
};

export class StatusIngest {
  private tickTimer: NodeJS.Timeout | null = null;
  private tickPending = false;
  private lastTick = 0;
  /** How long the last wave step took (ms). */
  private lastStepMs = 0;
  private closed = false;
  /** The last event of each device still being ingested: the next one of that device waits for it. */
  private readonly inFlight = new Map<string, Promise<void>>();
  /** The wave step running now, and whether another was asked for meanwhile (it runs right after). */
  private ticking: Promise<void> | null = null;
  private tickAgain = false;
  /** Events received and not yet settled (in the store, ignored, or failed). */
  private backlog = 0;
  /** Readers held by `admit` while the backlog is over its bound: released once it is down to half. */
  private held: (() => void)[] = [];
  private readonly maxBacklog: number;

  private readonly log: ServerLog;

  constructor(private readonly parts: StatusIngestParts) {
    this.log = asServerLog(parts.log);
    this.maxBacklog = parts.maxBacklog ?? LIMITS.maxStatusBacklog;
  }

  /** Events received and not yet settled. */
  get pending(): number {
    return this.backlog;
  }

  /**
   * Called for every MQTT message once it was handed over (mqtt.js handleMessage): `next` lets the
   * client read the next packet (and acknowledge this one). Held while the backlog is over its
   * bound, so the broker keeps what the store cannot take yet; every held reader goes on at half.
   */
  admit(next: () => void): void {
    if (this.backlog < this.maxBacklog || this.closed) next();
    else this.held.push(next);
  }

  private settledOne(): void {
    this.backlog--;
    if (this.held.length > 0 && (this.backlog <= this.maxBacklog >> 1 || this.closed)) this.releaseHeld();
  }

  private releaseHeld(): void {
    const held = this.held;
    this.held = [];
    for (const next of held) next();
  }

  /** Run the wave engine every `tickMs` from now on. */
  start(tickMs: number): void {
    this.tickTimer = setInterval(() => void this.tick(), tickMs);
    this.tickTimer.unref();
  }

  /** A status event that arrived on the status topic of `device`; settles once it is ingested. */
  receive(payload: Buffer, device: string): Promise<void> {
    const { metrics } = this.parts;
    if (payload.length > LIMITS.maxOtaMessageBytes) return Promise.resolve(metrics.malformedMessage('oversize'));
    const p = parseStatusEvent(payload);
    if (!p.ok || p.value.device !== device) return Promise.resolve(metrics.malformedMessage('status'));
    const event = p.value;
    this.parts.metrics.statusEvents++;
    this.backlog++;
    // An `online` and the events after it, or two steps of one download, are applied in the order they came.
    const before = this.inFlight.get(device);
    const run = async () => {
      const r = await ingestStatus(this.parts.store, event, this.parts.maxDevices);
      if (!r.counted) {
        this.log.debug(
          'status.ignored',
          { device, campaign: event.campaign ?? null, state: event.state, reason: r.reason },
          `status of ${device} ignored: ${r.reason}`,
        );
        return metrics.ignoredStatus(r.reason);
      }
      // M4 and M8 from the devices (SPEC.md §12.9 "Metrics"): only an event that counted, so a replay or a forgery adds nothing.
      metrics.deviceReport(event);
      if (event.state === 'online' || r.terminal) this.scheduleTick();
    };
    const done = (before ? before.then(run) : run()).catch((e) =>
      this.log.error('status.dropped', { device, ...errorFields(e) }, `status of ${device} dropped`),
    );
    this.inFlight.set(device, done);
    void done.then(() => {
      this.settledOne();
      if (this.inFlight.get(device) === done) this.inFlight.delete(device);
    });
    return done;
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
      void this.tick();
    };
    const wait = this.lastTick + Math.max(MIN_TICK_GAP_MS, TICK_COST_FACTOR * this.lastStepMs) - Date.now();
    if (wait <= 0) setImmediate(run);
    else setTimeout(run, wait).unref();
  }

  /**
   * Advance every running campaign one step, one campaign after the other; republish what changed.
   * Settles when the step (and one asked for while it ran) is done; never two at once.
   */
  tick(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.ticking) {
      this.tickAgain = true;
      return this.ticking;
    }
    const run = async () => {
      do {
        this.tickAgain = false;
        await this.step();
      } while (this.tickAgain && !this.closed);
      this.ticking = null;
    };
    this.ticking = run();
    return this.ticking;
  }

  private async step(): Promise<void> {
    this.lastTick = Date.now();
    try {
      await this.stepAll();
    } finally {
      this.lastStepMs = Date.now() - this.lastTick;
    }
  }

  private async stepAll(): Promise<void> {
    try {
      for (const row of await this.parts.store.campaigns('running')) {
        if (this.closed) return;
        const changed = await advance(this.parts.store, row.id, Date.now(), (ids) => logTimeouts(this.log, row, ids));
        // The engine halts a running campaign only by the failure-rate rule (waves.ts).
        if (changed?.state === 'halted') this.parts.metrics.campaignHalted('failure_rate');
        if (changed) {
          void this.parts.announce(changed);
          await logWaveStep(this.log, this.parts.store, row, changed);
        }
      }
    } catch (e) {
      this.log.error('wave-engine.failed', errorFields(e), 'wave engine step failed');
    }
  }

  close(): void {
    this.closed = true;
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.releaseHeld();
  }

  /** Settles when the events being ingested and the running wave step are done (before the store closes). */
  async settled(): Promise<void> {
    await Promise.all([...this.inFlight.values(), this.ticking]);
  }
}
