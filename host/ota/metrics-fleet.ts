/**
 * The fleet-wide part of /metrics (SPEC.md §12.9 "Metrics"): campaigns, devices and the root of trust
 * as the store has them. Read once per scrape, one store call after the other, and shown by gauges
 * whose samples are computed from that read, so every instance sharing the store shows the same
 * values and one scrape is one view of the store.
 */

import { type Registry } from 'prom-client';
import { codeName } from '../../shared/codes.js';
import { countedHistogram, derivedGauge, type Sample } from './metrics-prom.js';
import { type TrustAgeReader, type TrustAges } from './metrics-trust.js';
import { type Histogram, PROPAGATION_BUCKETS, type RootVersions } from './root-store.js';
import { type CampaignState, type DeviceCampaignState, type OtaStore, type UnexpectedReleases } from './store.js';

/**
 * A device counts as online for fwseal_revocation_enforcing_ratio when it reported within this
 * window (24 h): MQTT tells the servers of no disconnects, and a device reports `online` at every
 * connect and after every change of its root of trust (SPEC.md §12.13).
 */
export const ONLINE_WINDOW_MS = 24 * 3600 * 1000;

/** Every campaign state, shown from the start (0, not a missing series). */
const CAMPAIGN_STATES: readonly CampaignState[] = ['running', 'paused', 'halted', 'completed', 'aborted'];

/** What one scrape read from the store. */
export type FleetFigures = {
  readonly stateCounts: readonly { campaign: string; state: DeviceCampaignState; n: number }[];
  readonly rejections: readonly { code: number; n: number }[];
  readonly devicesSeen: number;
  readonly campaigns: readonly { state: CampaignState; n: number }[];
  readonly unexpected: UnexpectedReleases;
  readonly published: RootVersions;
  readonly trustSeen: readonly { v: number | null; n: number }[];
  readonly revocationSeen: readonly { v: number | null; n: number }[];
  readonly enforcing: { readonly online: number; readonly enforcing: number };
  readonly propagation: Histogram;
  readonly trust: TrustAges;
};

/** The store's figures, read one after the other in the order they are shown. */
export async function readFleet(store: OtaStore, now: number, trust: TrustAgeReader): Promise<FleetFigures> {
  const stateCounts = await store.stateCounts();
  const rejections = await store.rejections();
  const devicesSeen = await store.deviceCount();
  const campaigns = await store.campaignCounts();
  const unexpected = await store.unexpectedReleases();
  const published = await store.root.versions();
  const trustSeen = await store.root.trustVersionsSeen();
  const revocationSeen = await store.root.revocationVersions();
  const enforcing = await store.root.enforcing(published.list, now - ONLINE_WINDOW_MS);
  const propagation = await store.root.propagation();
  const ages = trust.read(await store.root.trustChain(), now);
  return { stateCounts, rejections, devicesSeen, campaigns, unexpected, published, trustSeen, revocationSeen, enforcing, propagation, trust: ages };
}

/** M2 from the rows: accepted and later passed; failed may come before the check, a timed-out or excluded device may never have made it. */
function verifications(f: FleetFigures): Sample[] {
  let pass = 0;
  let reject = 0;
  for (const c of f.stateCounts) {
    if (c.state === 'rejected') reject += c.n;
    else if (c.state !== 'failed' && c.state !== 'timed-out' && c.state !== 'excluded') pass += c.n;
  }
  return [
    [{ result: 'pass' }, pass],
    [{ result: 'reject' }, reject],
  ];
}

function byState(f: FleetFigures): Sample[] {
  const n = new Map(f.campaigns.map((c) => [c.state, c.n]));
  return CAMPAIGN_STATES.map((state) => [{ state }, n.get(state) ?? 0]);
}

const byVersion = (rows: readonly { v: number | null; n: number }[]): Sample[] => rows.map((r) => [{ version: r.v === null ? 'unknown' : String(r.v) }, r.n]);

/** Campaigns and devices (M2, M8 by code, M10). */
function registerCampaignFigures(r: Registry, read: () => FleetFigures | null): void {
  const gauge = (name: string, help: string, labels: readonly string[], samples: (f: FleetFigures) => readonly Sample[]) =>
    derivedGauge(r, name, help, labels, read, samples);
  gauge('fwseal_manifest_verifications', 'Manifest verifications reported by devices, by result.', ['result'], verifications);
  gauge('fwseal_rejections', 'Devices that rejected a campaign manifest, by code.', ['code'], (f) =>
    f.rejections.map((x) => [{ code: codeName(x.code ?? 0) }, x.n]),
  );
  gauge('fwseal_campaign_devices', 'Devices per campaign and state.', ['campaign', 'state'], (f) =>
    f.stateCounts.map((c) => [{ campaign: c.campaign, state: c.state }, c.n]),
  );
  gauge('fwseal_devices_seen', 'Devices that reported online.', [], (f) => [[{}, f.devicesSeen]]);
  gauge('fwseal_campaigns', 'Campaigns by state.', ['state'], byState);
  gauge(
    'fwseal_unexpected_releases',
    'Devices on a release no campaign carried and not the one they were first seen with (not_in_history), or one only campaigns halted by the root of trust carried (not_release_role); 0 in a healthy fleet.',
    ['reason'],
    (f) => [
      [{ reason: 'not_in_history' }, f.unexpected.notInHistory],
      [{ reason: 'not_release_role' }, f.unexpected.notReleaseRole],
    ],
  );
}

/** The root of trust (SPEC.md §12.13): what the servers publish, what devices acknowledged and how fast (M6), and key ages (M5). */
function registerRootFigures(r: Registry, read: () => FleetFigures | null): void {
  const gauge = (name: string, help: string, labels: readonly string[], samples: (f: FleetFigures) => readonly Sample[]) =>
    derivedGauge(r, name, help, labels, read, samples);
  gauge('fwseal_root_trust_version', 'The newest trust bundle version the servers publish.', [], (f) => [[{}, f.published.trust]]);
  gauge('fwseal_root_revocation_version', 'The newest revocation list version the servers publish (0: none).', [], (f) => [[{}, f.published.list]]);
  gauge('fwseal_trust_version', 'Known devices by the trust bundle version they last reported.', ['version'], (f) => byVersion(f.trustSeen));
  gauge('fwseal_revocation_version', 'Known devices by the revocation list version they last acknowledged.', ['version'], (f) => byVersion(f.revocationSeen));
  gauge('fwseal_devices_online', 'Devices that reported within the online window (24 h).', [], (f) => [[{}, f.enforcing.online]]);
  gauge('fwseal_revocation_enforcing_ratio', 'Online devices that acknowledged the published revocation list, over online devices.', [], (f) => [
    [{}, f.enforcing.online === 0 ? Number.NaN : f.enforcing.enforcing / f.enforcing.online],
  ]);
  gauge('fwseal_revocations_pending', 'Online devices (24 h) that have not yet acknowledged the published revocation list.', [], (f) => [
    [{}, f.enforcing.online - f.enforcing.enforcing],
  ]);
  countedHistogram(
    r,
    'fwseal_revocation_propagation_seconds',
    "Revocation list published to each device's first acknowledgement of it, one observation per device and list.",
    PROPAGATION_BUCKETS,
    () => read()?.propagation ?? null,
  );
  gauge('fwseal_trust_bundle_age_seconds', 'Time since the trust bundle in force was stored.', [], (f) =>
    f.trust.bundleSeconds === null ? [] : [[{}, f.trust.bundleSeconds]],
  );
  gauge(
    'fwseal_trust_key_age_seconds',
    'Time since each key of the trust bundle in force first appeared in the stored chain, by key id prefix and role.',
    ['key', 'role'],
    (f) => f.trust.keys.map((k) => [{ key: k.key, role: k.role }, k.seconds]),
  );
}

/** Register the fleet-wide metrics; `read` gives the figures of the scrape under way. */
export function registerFleetMetrics(r: Registry, read: () => FleetFigures | null): void {
  registerCampaignFigures(r, read);
  registerRootFigures(r, read);
}
