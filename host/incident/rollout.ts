/**
 * Restarting the rollouts a revocation halted (SPEC.md §12.9 "Campaigns and waves", §12.13): the
 * server halted every campaign whose manifest the new list refuses; a re-signed release goes out
 * again as a new campaign with the halted one's image (already stored on the server, by SHA-256),
 * group, waves, failure rate and block size. Devices that already run the release report it
 * confirmed without downloading (SPEC.md §12.3 step 1: the same payload, re-signed).
 */
import { type ApiTarget, apiRequest } from '../ota/api-client.js';
import { type ResignedRelease } from './resign.js';

/** The fields of GET /api/campaigns/<id> the drill reads (host/ota/campaigns.ts `detail`). */
export type CampaignRecord = {
  readonly id: string;
  readonly group: string;
  readonly version: string;
  readonly securityCounter: number;
  readonly state: string;
  readonly haltCode: number | null;
  readonly waves: number[];
  readonly abortFailureRate: number;
  readonly imageSha256: string;
  readonly imageSize: number;
  readonly chunkSize: number;
  readonly blockSize: number;
  readonly manifestSha256: string;
};

/** A halted campaign and the campaign that replaced it. */
export type Restarted = { readonly halted: CampaignRecord; readonly release: string; readonly campaign: CampaignRecord };

const ACTIVE = new Set(['running', 'paused', 'halted']);

/**
 * The campaigns the root of trust halted that still speak for their group: the group's newest
 * campaign not aborted (the one its announce topic names); an older one was superseded and stays.
 */
async function haltedHeads(t: ApiTarget): Promise<CampaignRecord[]> {
  const { campaigns } = await apiRequest<{ campaigns: CampaignRecord[] }>(t, 'GET', 'api/campaigns');
  const heads = new Map<string, CampaignRecord>();
  for (const c of campaigns) if (c.state !== 'aborted') heads.set(c.group, c); // listed in order of creation
  const halted = [...heads.values()].filter((c) => c.haltCode !== null);
  return Promise.all(halted.map((c) => apiRequest<CampaignRecord>(t, 'GET', `api/campaigns/${encodeURIComponent(c.id)}`)));
}

/**
 * Whether a halted campaign carried this release. The API names a campaign's manifest by the digest
 * of its envelope: the file as deployed matches it exactly; a file already re-signed elsewhere
 * matches by the signed fields the API shows (version, counter, image size, chunk size), and the
 * server checks the stored image against the manifest's Merkle root when the new campaign is created.
 */
function carries(c: CampaignRecord, r: ResignedRelease): boolean {
  if (c.manifestSha256 === r.envelopeSha256) return true;
  const m = r.manifest;
  return c.version === m.version && c.securityCounter === m.securityCounter && c.imageSize === m.imageSize && c.chunkSize === m.chunkSize;
}

/** A new campaign for `r` in place of `c`: abort `c` if it still holds its group (one active campaign per group), then create. */
async function restart(t: ApiTarget, c: CampaignRecord, r: ResignedRelease): Promise<CampaignRecord> {
  if (ACTIVE.has(c.state)) await apiRequest(t, 'POST', `api/campaigns/${encodeURIComponent(c.id)}/abort`);
  return apiRequest<CampaignRecord>(t, 'POST', 'api/campaigns', {
    json: {
      manifest: Buffer.from(r.resigned).toString('base64'),
      image: c.imageSha256,
      group: c.group,
      waves: c.waves,
      abortFailureRate: c.abortFailureRate,
      blockSize: c.blockSize,
    },
  });
}

/** Restart every halted campaign a re-signed release carries; the releases no halted campaign carried. */
export async function restartRollouts(
  t: ApiTarget,
  releases: readonly ResignedRelease[],
  onRestart: (r: Restarted) => void,
): Promise<{ restarted: Restarted[]; unmatched: string[] }> {
  const halted = await haltedHeads(t);
  const restarted: Restarted[] = [];
  const unmatched: string[] = [];
  for (const r of releases) {
    const mine = halted.filter((c) => carries(c, r) && !restarted.some((x) => x.halted.id === c.id));
    if (mine.length === 0) unmatched.push(r.path);
    for (const c of mine) {
      const done = { halted: c, release: r.path, campaign: await restart(t, c, r) };
      restarted.push(done);
      onRestart(done);
    }
  }
  return { restarted, unmatched };
}
