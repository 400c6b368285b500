/**
 * Campaigns under a changed root of trust (SPEC.md §12.13, §12.9 "Campaigns and waves"): when the
 * server stores a new revocation list or trust bundle (or starts with one), every campaign still
 * served is verified again; one whose manifest no longer verifies is halted with the verifier's code,
 * its announcement withdrawn and its requests answered CAMPAIGN_INACTIVE, on every instance (the code
 * is in the store). A device that joins later is never offered a release the fleet's root now refuses.
 */
import { codeName } from '../../shared/codes.js';
import { type CampaignMetrics } from './metrics.js';
import { type RootOfTrust } from './root-of-trust.js';
import { type CampaignRow, type OtaStore } from './store.js';

export type Halted = { readonly row: CampaignRow; readonly code: number; readonly error: string };

/**
 * Verify every campaign not aborted and not yet halted by the root; halt those that fail. One campaign
 * after the other (each halt is one atomic store step); the verdicts are the root of trust's as it is
 * when each manifest is checked. `metrics` counts each halt (`revoked`).
 */
export async function recheckCampaigns(store: OtaStore, root: RootOfTrust, metrics?: CampaignMetrics): Promise<Halted[]> {
  const halted: Halted[] = [];
  const verdicts = new Map<string, Awaited<ReturnType<RootOfTrust['checkManifest']>>['verdict']>();
  for (const c of await store.campaigns()) {
    if (c.state === 'aborted' || c.halt_code !== null) continue;
    const key = c.manifest_sha.toString('hex');
    let v = verdicts.get(key);
    if (!v) {
      v = (await root.checkManifest(new Uint8Array(c.manifest))).verdict;
      verdicts.set(key, v);
    }
    if (v.ok) continue;
    const code = v.code;
    const row = await haltByRoot(store, c.id, code, metrics);
    if (row) halted.push({ row, code, error: v.error });
  }
  return halted;
}

/**
 * Halt one campaign with the verifier's code: running, paused and halted ones become `halted`; a
 * completed one keeps its state (its group may have a newer campaign) but is served no more. Null
 * when another instance got there first or the campaign was aborted meanwhile. Either halt, the
 * withdrawal of a completed release included, counts in fwseal_campaign_halts_total{reason="revoked"}.
 */
export async function haltByRoot(store: OtaStore, id: string, code: number, metrics?: CampaignMetrics): Promise<CampaignRow | null> {
  const row = await store.updateCampaign(id, (r) => {
    if (r.state === 'aborted' || r.halt_code !== null) return null;
    return r.state === 'completed' ? { halt_code: code } : { state: 'halted', halt_code: code };
  });
  // A campaign event (SPEC.md §12.9 "Campaign events"): the server's own halt, with its reason.
  const detail = `the manifest fails ${codeName(code)} (code ${code}) under the root of trust`;
  if (row) await store.recordEvent({ campaign: id, at: Date.now(), action: 'halt', actor: 'server', detail });
  if (row) metrics?.campaignHalted('revoked');
  return row;
}

/** The campaign a group's retained announcement names: its newest one not aborted (what a (re)connect republishes). */
export async function groupHead(store: OtaStore, group: string): Promise<CampaignRow | undefined> {
  let head: CampaignRow | undefined;
  for (const row of await store.campaigns()) if (row.grp === group && row.state !== 'aborted') head = row; // ordered by creation
  return head;
}
