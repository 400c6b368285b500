/**
 * The OTA device client (SPEC.md §12.3, §12.10, §12.13): an UpdateAgent driven over an MQTT link. It
 * keeps its root of trust current from the retained root announcement (device/ota/root.ts), learns
 * campaigns from the retained group announcement, runs one campaign at a time (device/ota/
 * campaign.ts: manifest first, then the windowed pull, install, trial boot, confirm), and reports
 * every step as a status event. Pure: the link, time and chance are injected (device/ota/ports.ts);
 * device/node/mqtt-link.ts connects it to mqtt.js.
 *
 * Never throws on bad input from the broker: undecodable or unexpected messages are counted
 * (`stats().malformed`) and dropped. Trust never depends on MQTT: every chunk is checked against its
 * proven digest page before it is written, so a rogue publisher can only cost a re-fetch.
 */
import { bytesEqual } from '../../shared/bytes.js';
import { ok, type Result } from '../../shared/codes.js';
import { type Announcement, parseAnnouncement } from '../../shared/ota/messages.js';
import { encodeStatusEvent, type StatusEvent } from '../../shared/ota/status.js';
import { rolloutBucket, topics } from '../../shared/ota/topics.js';
import { UpdateAgent } from '../agent/agent.js';
import { boot } from '../agent/boot.js';
import { type Flash } from '../agent/flash.js';
import { type Layout } from '../agent/layout.js';
import { type Verifier } from '../verifier.js';
import { type CampaignHost, type OtaPhase, type OtaPullOptions, runCampaign, type StatusReport } from './campaign.js';
import { announcedInstalled, payloadInstalled } from './installed.js';
import { Outcomes } from './outcomes.js';
import { Listeners, type OtaClock, type OtaLink } from './ports.js';
import { type OtaStats, Requests, type Run } from './requests.js';
import { enforcedRoot, type RootHost, RootKeeper, type RootRefusal } from './root.js';

export type { OtaPhase, OtaPullOptions } from './campaign.js';
export type { OtaStats } from './requests.js';

export type OtaClientOptions = {
  readonly id: string;
  readonly group: string;
  readonly prefix?: string;
  readonly flash: Flash;
  readonly layout: Layout;
  /** Factory trust bundle and revocation list (the ones stored on flash take precedence). */
  readonly trust: Uint8Array;
  readonly revocations?: Uint8Array;
  readonly verifier: Verifier;
  readonly maxTrialBoots: number;
  readonly pull?: OtaPullOptions;
  /** Confirm a trial image as soon as it boots (default true). */
  readonly autoConfirm?: boolean;
  /** Listen on the campaign's data topic while downloading and flag block requests for multicast (default true; §12.11). */
  readonly multicast?: boolean;
  readonly log?: (line: string) => void;
  /** Called for every status event, from before the first announcement can arrive. */
  readonly onStatus?: (e: StatusEvent) => void;
};

export type OtaState = {
  readonly slot: 0 | 1 | null;
  readonly version?: string;
  readonly counter: number | null;
  readonly phase: OtaPhase;
  readonly lastStatus?: StatusEvent;
};

type Events = { status: [StatusEvent]; progress: [number, number] };

export class OtaClient implements CampaignHost, RootHost {
  readonly id: string;
  readonly group: string;
  readonly prefix: string;
  readonly agent: UpdateAgent;
  readonly verifier: Verifier;
  readonly requests: Requests;
  readonly counters: OtaStats = { requests: 0, blocksReceived: 0, rejected: 0, timeouts: 0, malformed: 0, rootRefused: 0 };
  readonly pull: OtaPullOptions;
  phase: OtaPhase = 'idle';
  readonly #o: OtaClientOptions;
  readonly #announceTopic: string;
  readonly #replyTopic: string;
  readonly #rootTopic: string;
  readonly #root: RootKeeper = new RootKeeper(this);
  readonly #events: { [K in keyof Events]: Listeners<Events[K]> } = { status: new Listeners(), progress: new Listeners() };
  #slot: 0 | 1 | null = null;
  #version: string | undefined;
  #counter: number | null = null;
  #lastStatus: StatusEvent | undefined;
  #stopped = false;
  /** The standing announcement (null: none or withdrawn). */
  #latest: Announcement | null = null;
  #run: Run | null = null;
  #loop: Promise<void> | null = null;
  readonly #outcomes = new Outcomes();

  /** Validates the ids and prefix (RangeError from the topic builders) before anything is sent. */
  constructor(
    o: OtaClientOptions,
    readonly link: OtaLink,
    readonly clock: OtaClock,
  ) {
    this.#o = o;
    this.id = o.id;
    this.group = o.group;
    this.prefix = o.prefix ?? 'fwseal';
    this.#announceTopic = topics.announce(this.prefix, o.group);
    this.#replyTopic = topics.reply(this.prefix, o.id);
    this.#rootTopic = topics.root(this.prefix);
    this.verifier = o.verifier;
    this.pull = o.pull ?? {};
    this.agent = new UpdateAgent({
      flash: o.flash,
      layout: o.layout,
      trust: o.trust,
      verifier: o.verifier,
      ...(o.revocations ? { revocations: o.revocations } : {}),
    });
    this.requests = new Requests(link, clock, { prefix: this.prefix, device: o.id, replyTopic: this.#replyTopic }, this.counters, () => this.#stopped);
    if (o.onStatus) this.#events.status.add(o.onStatus);
  }

  /**
   * Boot, subscribe to the root announcement, the group announcement and the reply topic, report
   * `online`. One SUBSCRIBE, root topic first: brokers send retained messages in the order of the
   * filters, so the root of trust is in hand before any campaign is looked at (SPEC.md §12.13).
   */
  async start(): Promise<void> {
    this.boot();
    await this.link.subscribe([this.#rootTopic, this.#announceTopic, this.#replyTopic], 1);
    this.connected();
  }

  on<K extends keyof Events>(event: K, fn: (...args: Events[K]) => void): this {
    this.#events[event].add(fn);
    return this;
  }

  off<K extends keyof Events>(event: K, fn: (...args: Events[K]) => void): this {
    this.#events[event].delete(fn);
    return this;
  }

  stats(): OtaStats {
    return { ...this.counters };
  }

  state(): OtaState {
    return {
      slot: this.#slot,
      ...(this.#version !== undefined ? { version: this.#version } : {}),
      counter: this.#counter,
      phase: this.phase,
      ...(this.#lastStatus ? { lastStatus: this.#lastStatus } : {}),
    };
  }

  /** Resolves with the first status event (published from now on) that `match` accepts. */
  waitFor(match: (e: StatusEvent) => boolean): Promise<StatusEvent> {
    return this.#events.status.next(match).then(([e]) => e);
  }

  /** Graceful: stop any pull, wait (at most 2 s) for the campaign loop, close the link. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#abortRun();
    if (this.#loop) await Promise.race([this.#loop, this.clock.sleep(2000)]);
    this.#stopped = true;
    this.phase = 'stopped';
    this.#abortRun();
    await this.link.close(true).catch(() => undefined);
  }

  /** Abrupt (a reset): drop the connection without a word and never touch the flash again. */
  crash(): void {
    this.#stopped = true;
    this.phase = 'stopped';
    this.#abortRun();
    void this.link.close(false).catch(() => undefined);
  }

  /** Confirm a trial image by hand (autoConfirm false). */
  confirm(): Result<{ counter: number }> {
    const c = this.agent.confirm();
    if (!c.ok) return c;
    this.boot();
    const campaign = this.#run?.campaign ?? this.#latest?.campaign;
    if (campaign) this.status({ campaign, device: this.id, state: 'confirmed' });
    return ok({ counter: c.counter });
  }

  stopped(): boolean {
    return this.#stopped;
  }

  // ---- boot, state and status ----

  boot(): void {
    const o = this.#o;
    const b = boot(o.flash, o.layout, o.trust, {
      maxTrialBoots: o.maxTrialBoots,
      verifier: this.verifier,
      ...(o.revocations ? { revocations: o.revocations } : {}),
    });
    this.#slot = b.slot;
    this.#version = b.version;
    this.#counter = b.counter;
    this.log(`boot: slot ${b.slot} ${b.version ?? ''}${b.trial ? ' on trial' : ''} (${b.error})`);
    if (!b.trial) return;
    this.phase = 'trial';
    if (o.autoConfirm === false) return;
    const c = this.agent.confirm();
    if (c.ok) {
      this.#counter = c.counter;
      this.phase = 'idle';
    } else this.log(`confirm: ${c.error}${c.detail ? ` (${c.detail})` : ''}`);
  }

  /** Whether an envelope's manifest digest (payload) is the installed one (e.g. the same manifest re-signed). */
  payloadInstalled(envelope: Uint8Array): boolean {
    return payloadInstalled(this.agent, this.verifier.sha256, envelope);
  }

  /** (Re)connected: report `online` with the release and root of trust in force (§12.2, §12.13), and a root object just `refused` (keys 8, 17). */
  connected(refused?: RootRefusal): void {
    if (this.#stopped) return;
    const o = this.#o;
    this.#publishStatus({
      ...refused,
      device: this.id,
      state: 'online',
      group: this.group,
      ...(this.#version !== undefined ? { version: this.#version } : {}),
      ...(this.#counter !== null ? { counter: this.#counter } : {}),
      ...enforcedRoot(this.agent, o.flash, o.layout, { trust: o.trust, ...(o.revocations ? { revocations: o.revocations } : {}) }, this.verifier.sha256),
    });
  }

  rootIdle(): Promise<void> {
    return this.#root.idle();
  }

  /**
   * The agent stored a trust bundle or list (§12.13 step 4): a rotation forgets refusals (new keys may
   * sign them); a download in progress the stored objects no longer carry stops, reported `rejected`.
   */
  recheck(trustChanged: boolean): void {
    if (trustChanged) this.#outcomes.forgetRefusals();
    const run = this.#run;
    if (!run || run.aborted || (this.phase !== 'downloading' && this.phase !== 'waiting')) return;
    const c = this.agent.checkDownload();
    if (c.ok || c.code >= 500) return; // a flash error shows up in the pull itself
    this.refused(run.announcement.manifestDigest, c.code);
    this.terminal(run.announcement, 'rejected', c.code, { stage: 'manifest' });
    this.#abortRun();
  }

  /** A root announcement changed what the device enforces, or was refused: report `online`, look at the announcement again. */
  rootChanged(refused?: RootRefusal): void {
    this.connected(refused);
    this.#kick();
  }

  status(e: StatusEvent): void {
    this.#lastStatus = e;
    this.log(`${e.campaign ?? ''} ${e.state}${e.done !== undefined ? ` ${e.done}/${e.total}` : ''}${e.code !== undefined ? ` code ${e.code}` : ''}`);
    this.#publishStatus(e);
    this.#events.status.emit(e);
  }

  progress(done: number, total: number): void {
    this.#events.progress.emit(done, total);
  }

  terminal(a: Announcement, state: 'confirmed' | 'rejected' | 'failed', code?: number, report?: StatusReport): void {
    this.#outcomes.finish(a.campaign, state);
    this.status({ campaign: a.campaign, device: this.id, state, ...(code !== undefined ? { code } : {}), ...report });
  }

  refused(manifestDigest: Uint8Array, code: number): void {
    this.#outcomes.refuse(manifestDigest, code);
  }

  #publishStatus(e: StatusEvent): void {
    if (this.#stopped) return;
    this.link.publish(topics.status(this.prefix, this.id), encodeStatusEvent(e), 1);
  }

  log(line: string): void {
    this.#o.log?.(`${this.id}: ${line}`);
  }

  // ---- incoming messages ----

  /** A message from the broker (the adapter calls this for every PUBLISH it receives). */
  receive(topic: string, payload: Uint8Array): void {
    if (this.#stopped) return;
    try {
      if (topic === this.#rootTopic) this.#root.onAnnouncement(payload);
      else if (topic === this.#announceTopic) this.#hold(payload);
      else if (topic === this.#replyTopic) this.requests.onReply(payload, this.#run, (code) => this.#final(code));
      else if (this.requests.dataTopic !== null && topic === this.requests.dataTopic) this.requests.onData(payload);
      else if (topic.startsWith(`${this.prefix}/campaign/`) && topic.endsWith('/data'))
        return; // a data topic just left: late copies
      else this.counters.malformed++;
    } catch (e) {
      // Never let a message take the device down; a bug shows up in the log and the counter.
      this.counters.malformed++;
      this.log(`message handler error: ${(e as Error).message}`);
    }
  }

  #final(code: number): void {
    if (!this.#run) return;
    this.#run.finalCode = code;
    this.#abortRun();
  }

  /** SPEC.md §12.13 Order: campaign announcements, withdrawals too, wait while a root announcement is handled (a download it revokes is reported rejected first). */
  #hold(payload: Uint8Array): void {
    const act = () => this.#onAnnouncement(payload);
    const logError = (e: Error) => this.log(`announcement: ${e.message}`);
    void this.rootIdle().then(act).catch(logError);
  }

  #onAnnouncement(payload: Uint8Array): void {
    if (payload.length === 0) {
      this.#latest = null; // withdrawn (campaign aborted)
      this.#abortRun();
      return;
    }
    const p = parseAnnouncement(payload);
    if (!p.ok) return void this.counters.malformed++;
    const a = p.value;
    this.#latest = a;
    const run = this.#run;
    if (run && (run.campaign !== a.campaign || !bytesEqual(run.announcement.manifestDigest, a.manifestDigest) || !this.#eligible(a))) this.#abortRun();
    this.#kick();
  }

  /** Subscribe to (or leave) the data topic of `campaign` (SPEC.md §12.11); false when off or failed. */
  listenData(campaign: string | null): Promise<boolean> {
    return this.requests.listen(campaign === null || this.#o.multicast === false ? null : topics.data(this.prefix, campaign), this.#o.multicast !== false);
  }

  #abortRun(): void {
    const run = this.#run;
    if (!run || run.aborted) return;
    run.aborted = true;
    // Wake every waiter: the agent view then throws in the pull's continuation.
    this.requests.abortAll();
    run.wake();
  }

  // ---- campaigns ----

  #eligible(a: Announcement): boolean {
    return rolloutBucket(this.verifier.sha256, a.campaign, this.id) < a.rollout;
  }

  #kick(): void {
    if (this.#loop || this.#stopped) return;
    this.#loop = (async () => {
      await null; // let the assignment happen before the finally below can clear it
      try {
        for (;;) {
          await this.#root.idle(); // a root update first: the campaign is judged under what it stores
          const a = this.#latest;
          if (!a || this.#stopped || !this.#actionable(a)) break;
          const run: Run = { campaign: a.campaign, announcement: a, aborted: false, finalCode: null, wake: () => {} };
          this.#run = run;
          await runCampaign(this, run, a);
          // Another announcement arrived meanwhile: look at it; else wait for the next one.
          if (this.#latest === a) break;
        }
      } catch (e) {
        this.log(`campaign loop error: ${(e as Error).message}`);
      } finally {
        this.#loop = null;
        this.#run = null;
        if (this.phase !== 'stopped' && this.phase !== 'trial') this.phase = 'idle';
      }
      if (this.#latest && !this.#stopped && this.#actionable(this.#latest)) this.#kick();
    })();
  }

  /** Whether an announcement asks something of this device (also reports `confirmed` / `rejected` once). */
  #actionable(a: Announcement): boolean {
    if (this.#outcomes.finished(a.campaign)) return false;
    if (announcedInstalled(this.agent, this.#o.flash, this.#o.layout, this.verifier.sha256, a.manifestDigest)) {
      this.terminal(a, 'confirmed');
      return false;
    }
    const refused = this.#outcomes.refusal(a.manifestDigest);
    if (refused !== undefined) {
      this.terminal(a, 'rejected', refused, { stage: 'manifest' });
      return false;
    }
    if (!this.#eligible(a)) {
      this.phase = 'waiting';
      return false;
    }
    return true;
  }
}
