/**
 * The root-of-trust channel on the device (SPEC.md §12.13): the retained root announcement names the
 * fleet's newest trust bundle and revocation list; the device walks its trust bundle up one version
 * at a time (root requests for the versions between), then stores the list, all through the update
 * agent's power-fail-safe `updateTrust` / `updateRevocations` (T1–T7, R1–R5: nothing here decides
 * what to trust). A refusal is counted (`stats().rootRefused`) and logged, never thrown: a rogue
 * publisher on the root topic can at most be ignored.
 *
 * One announcement is handled at a time, and the newest one wins: a walk in progress stops at its
 * next step when another announcement arrives. The campaign flow waits for `idle()` before it acts
 * on an announcement or accepts a manifest, so a device that comes back online enforces the list
 * before it looks at a campaign (its retained root announcement arrives first, §12.13).
 */
import { bytesEqual } from '../../shared/bytes.js';
import { CODES, type Failure } from '../../shared/codes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { parseRootAnnouncement, type RootAnnouncement, type RootResponse } from '../../shared/ota/root.js';
import { parseRevocationList, parseTrustBundle } from '../../shared/trust.js';
import { type UpdateAgent } from '../agent/agent.js';
import { type Flash } from '../agent/flash.js';
import { type Layout } from '../agent/layout.js';
import { loadTrustStore, type TrustStore } from '../agent/slot.js';
import { type Verifier } from '../verifier.js';
import { type OtaPullOptions, retryDelay } from './campaign.js';
import { type OtaClock } from './ports.js';
import { type OtaStats, type Requests } from './requests.js';

type Sha256 = (data: Uint8Array) => Uint8Array;

/** A trust bundle or revocation list the agent refused: reported in `online` (SPEC.md §12.2 keys 8 and 17). */
export type RootRefusal = { readonly code: number; readonly stage: 'trust' | 'revocation' };

/** What the root channel uses of the device client (device/ota/client.ts). */
export interface RootHost {
  readonly agent: UpdateAgent;
  readonly requests: Requests;
  readonly counters: OtaStats;
  readonly clock: OtaClock;
  readonly pull: OtaPullOptions;
  readonly verifier: Verifier;
  stopped(): boolean;
  log(line: string): void;
  /** The agent just stored a trust bundle (`trustChanged`) or a list: check the download in progress at once (§12.13 step 4). */
  recheck(trustChanged: boolean): void;
  /**
   * An announcement changed what the device enforces: report `online` (step 3), look at campaigns
   * again. `refused`: the agent refused a bundle or list of it; `online` carries the code (M8, §12.2 key 17).
   */
  rootChanged(refused?: RootRefusal): void;
}

/** A trust bundle and the list to store with it when the kept one does not verify under it. */
type Bundle = { readonly trust: Uint8Array; readonly revocations?: Uint8Array };

/** Codes of `updateTrust` when the kept list does not verify under the new bundle (then the bundle's list goes along). */
const LIST_CODES: ReadonlySet<number> = new Set([CODES.REVOCATION_THRESHOLD_NOT_MET, CODES.REVOCATION_ROLLBACK]);

export class RootKeeper {
  /** The newest announcement not yet handled. */
  #next: RootAnnouncement | null = null;
  #work: Promise<void> | null = null;

  constructor(private readonly h: RootHost) {}

  /** A message on `<prefix>/root`. An empty payload (a cleared retained topic) changes nothing. */
  onAnnouncement(payload: Uint8Array): void {
    if (payload.length === 0) return;
    const p = parseRootAnnouncement(payload);
    if (!p.ok) return void this.h.counters.malformed++;
    this.#next = p.value;
    if (this.#work === null) this.#work = this.#drain();
  }

  /** Resolves once no announcement is being handled (set synchronously by `onAnnouncement`). */
  idle(): Promise<void> {
    return this.#work ?? Promise.resolve();
  }

  async #drain(): Promise<void> {
    await null; // let the assignment of #work happen before the finally below clears it
    try {
      for (let a = this.#next; a !== null && !this.h.stopped(); a = this.#next) {
        this.#next = null;
        await this.#apply(a);
      }
    } catch (e) {
      this.h.log(`root update error: ${(e as Error).message}`);
    } finally {
      this.#work = null;
    }
  }

  /** §12.13 steps 1–3: walk the trust chain, store the list, report when anything changed. */
  async #apply(a: RootAnnouncement): Promise<void> {
    const h = this.h;
    const s = h.agent.status();
    if (!s.ok) return h.log(`root: ${s.error}`);
    const own = s.state;
    let trustChanged = false;
    if (a.trustVersion > own.trustVersion) trustChanged = await this.#walk(a, own.trustVersion);
    else if (!(own.trustDigest && bytesEqual(own.trustDigest, h.verifier.sha256(a.trust)))) this.#storeTrust(a.trustVersion, a); // the same version only for the same bundle (T5)
    if (h.stopped()) return;
    const listChanged = a.revocations !== undefined && this.#storeList(a.revocations);
    if (trustChanged || listChanged) h.rootChanged();
  }

  /** Trust bundles own+1 .. V in turn: the ones between by root request, V from the announcement. */
  async #walk(a: RootAnnouncement, own: number): Promise<boolean> {
    let changed = false;
    for (let v = own + 1; v <= a.trustVersion; v++) {
      const got = v === a.trustVersion ? a : await this.#fetch(v);
      if (this.h.stopped() || this.#next !== null) break; // stopped, or a newer announcement walks on
      if (typeof got === 'number') {
        this.h.log(`root: trust bundle ${v} not received: ${got}; the walk stops until the next announcement`);
        break;
      }
      const r = this.#storeTrust(v, got);
      if (!r) break;
      changed ||= r.changed;
    }
    return changed;
  }

  /** Root requests for trust bundle `version`, with the manifest requests' time-out and backoff, up to `maxAttempts`. */
  async #fetch(version: number): Promise<RootResponse | number> {
    const h = this.h;
    let code: number = CODES.TRANSPORT_TIMEOUT;
    for (let attempt = 0; attempt < (h.pull.maxAttempts ?? 5) && !h.stopped() && this.#next === null; attempt++) {
      if (attempt > 0) await h.clock.sleep(retryDelay(h.clock, h.pull, attempt - 1));
      const got = await h.requests.root(version, h.pull.timeoutMs ?? 5000);
      if (typeof got !== 'number') return got;
      code = got;
      if (code === CODES.UNKNOWN_TRUST_VERSION) break; // the server does not hold it: asking again will not help
    }
    return code;
  }

  /** `updateTrust`, then with the bundle's list when the kept list does not verify under it; null when refused. */
  #storeTrust(version: number, b: Bundle): { changed: boolean } | null {
    const agent = this.h.agent;
    let r = agent.updateTrust(b.trust);
    if (!r.ok && LIST_CODES.has(r.code) && b.revocations !== undefined) r = agent.updateTrust(b.trust, b.revocations);
    if (!r.ok) return this.#refused('trust', `trust bundle ${version}`, r);
    if (r.changed) this.h.recheck(true);
    return { changed: r.changed };
  }

  /** `updateRevocations` (the list the device keeps already: nothing to do); whether it changed. */
  #storeList(list: Uint8Array): boolean {
    const h = this.h;
    const s = h.agent.status();
    if (s.ok && s.state.revocationDigest && bytesEqual(s.state.revocationDigest, h.verifier.sha256(list))) return false;
    const r = h.agent.updateRevocations(list);
    if (!r.ok) {
      this.#refused('revocation', 'revocation list', r);
      return false;
    }
    if (r.changed) h.recheck(false);
    return r.changed;
  }

  /** A verdict (1xx–4xx) is counted and reported in `online` (its code and stage); a flash error (5xx) is only logged. */
  #refused(stage: RootRefusal['stage'], what: string, r: Failure): null {
    this.h.log(`root: ${what} refused: ${r.error}${r.detail ? ` (${r.detail})` : ''}`);
    if (r.code >= 500) return null;
    this.h.counters.rootRefused++;
    this.h.rootChanged({ code: r.code, stage });
    return null;
  }
}

/** The root of trust a device reports in `online` (SPEC.md §12.2 keys 12–14). */
export type EnforcedRoot = { readonly trustVersion?: number; readonly revocationVersion?: number; readonly revocationDigest?: Uint8Array };

/**
 * The trust bundle version, revocation list version (0: none) and SHA-256 of the list's PAYLOAD
 * (the digest the verifier gives a list, independent of who signed it) in force: the ones stored on
 * flash that the state names, else the factory values. Empty when the state cannot be read.
 */
export function enforcedRoot(agent: UpdateAgent, flash: Flash, layout: Layout, factory: TrustStore, sha256: Sha256): EnforcedRoot {
  const s = agent.status();
  if (!s.ok) return {};
  const st = loadTrustStore(sha256, flash, layout, s.state, factory);
  if (!st.ok) return {};
  const t = parseEnvelope(st.store.trust);
  const bundle = t.ok ? parseTrustBundle(t.envelope.payload) : null;
  const trustVersion = bundle?.ok ? bundle.value.version : s.state.trustVersion;
  const trust = trustVersion >= 1 ? { trustVersion } : {};
  const stored = st.store.revocations === undefined ? null : parseEnvelope(st.store.revocations);
  if (!stored?.ok) return { ...trust, revocationVersion: s.state.revocationVersion };
  const list = parseRevocationList(stored.envelope.payload);
  return {
    ...trust,
    revocationVersion: list.ok ? list.value.version : s.state.revocationVersion,
    revocationDigest: sha256(stored.envelope.payload),
  };
}
