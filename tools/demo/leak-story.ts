/**
 * Steps 16-18 of `npm run demo` (tools/demo.ts): a release key leaks mid-campaign, and the key
 * compromise drill (`fwseal incident revoke-key`, SPEC.md §12.9, §12.13) runs against the fleet of
 * the OTA story: revoke, publish, halt, re-sign with the remaining keys, restart the rollout, watch
 * every gateway enforce the list. Every step checks its outcome.
 */

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { boot } from '../../device/agent/boot.js';
import { type Layout } from '../../device/agent/layout.js';
import { codeName } from '../../shared/codes.js';
import { type Gateway } from './ota-story.js';
import { type DemoScript, waitUntil } from './script.js';

type DeviceView = { id: string; trustVersion: number | null; revocationVersion: number | null };
type CampaignView = { id: string; group: string; state: string; counts: Record<string, number>; devices: { id: string; state: string; code: number | null }[] };

const TERMINAL = new Set(['confirmed', 'rejected', 'failed']);
const getJson = async <T>(url: string): Promise<T> => (await fetch(url)).json() as Promise<T>;
const devicesOf = async (api: string) => (await getJson<{ devices: DeviceView[] }>(`${api}/api/devices`)).devices;

/** Steps 16-18: a fourth release key, the 1.6.0 campaign, the leak and the drill, the fleet after it. */
export async function leakStory(script: DemoScript, api: string, devices: Gateway[], layout: Layout): Promise<void> {
  await addReleaseKey(script, api, devices);
  const first = await campaignThenLeak(script, api);
  const next = await runDrill(script, api, devices.length);
  await fleetAfterDrill(script, api, devices, layout, first, next);
}

/** Step 16: trust bundle 2 replaces the revoked release key by a new one and reaches the gateways over MQTT. */
async function addReleaseKey(script: DemoScript, api: string, devices: Gateway[]): Promise<void> {
  const { fwseal } = script;
  script.say(`16. Key hygiene: R4 replaces the revoked R2 among the release keys. Two root keys sign trust
bundle version 2, and the server publishes it to the fleet (retained on fwseal/root): every gateway
checks it against the bundle it holds and stores it.`);
  await fwseal('keygen R4 --dir .', { exit: 0, step: 'keygen R4' });
  await fwseal(
    'trust rotate --previous trust.cbor --root A.pub --root B.pub --root C.pub --root-threshold 2 --release R1.pub --release R3.pub --release R4.pub --release-threshold 2 --sign A.key --sign B.key --out trust2.cbor',
    { exit: 0, step: 'trust rotate (R4 for R2)' },
  );
  await fwseal(`trust publish trust2.cbor --server ${api}`, { exit: 0, step: 'trust publish 2' });
  await waitUntil(async () => (await devicesOf(api)).every((d) => d.trustVersion === 2));
  console.log(`  ${devices.map((d) => d.id).join(', ')}: trust bundle version 2`);
}

/** Step 17: release 1.6.0 signed by R1 + R3 starts; the drill begins once the first gateway runs it. The campaign id. */
async function campaignThenLeak(script: DemoScript, api: string): Promise<string> {
  const { fwseal } = script;
  script.say(`17. Release 1.6.0 (counter 9), signed by R1 and R3, goes out in two waves. The first gateway has
just installed it when R1's private key turns up in a public repository.`);
  const image = Buffer.alloc(1 << 20);
  for (let i = 0; i < image.length; i += 32) createHash('sha256').update(`demo firmware 1.6.0 ${i}`).digest().copy(image, i);
  writeFileSync(join(script.dir, 'firmware-1.6.0.bin'), image);
  await fwseal('pack firmware-1.6.0.bin --device-class acme-gw --version 1.6.0 --counter 9 --out M3.cose', { exit: 0, step: 'pack 1.6.0' });
  await fwseal('sign M3.cose --key R1.key --trust trust2.cbor', { exit: 0, step: 'sign 1.6.0 R1' });
  await fwseal('sign M3.cose --key R3.key --trust trust2.cbor', { exit: 0, step: 'sign 1.6.0 R3' });
  // Step 14's downgrade campaign is still halted, and a group runs one campaign at a time.
  const halted = (await getJson<{ campaigns: CampaignView[] }>(`${api}/api/campaigns`)).campaigns.filter((c) => c.state === 'halted');
  for (const c of halted) await fwseal(`campaign abort ${c.id} --server ${api}`, { exit: 0, step: 'abort the downgrade campaign' });
  const id = (
    await fwseal(`campaign create --server ${api} --manifest M3.cose --image firmware-1.6.0.bin --group acme-gw --waves 34,100`, {
      exit: 0,
      step: 'campaign create 1.6.0',
    })
  ).trim();
  await waitUntil(async () => (await getJson<CampaignView>(`${api}/api/campaigns/${id}`)).counts.confirmed > 0);
  return id;
}

/** Step 18: the drill, as the CLI runs it; the id of the campaign that restarts the rollout. */
async function runDrill(script: DemoScript, api: string, fleet: number): Promise<string> {
  script.say(`18. The drill, one command: revoke R1 in revocation list 2 (carrying list 1 forward), signed by
two root keys; publish it, and the server halts every campaign signed by R1; re-sign 1.6.0 with R4
(R3 + R4 meet the threshold again) and restart its rollout with the same image, group and waves;
then watch until every online gateway enforces list 2, each one's time from publication measured.`);
  const out = await script.fwseal(
    `incident revoke-key --key R1.pub --trust trust2.cbor --previous RL.cbor --sign A.key --sign C.key --out RL2.cbor --resign M3.cose --release-key R4.key --server ${api}`,
    { exit: 0, step: 'incident revoke-key R1' },
  );
  const enforcing = out.match(/(\d+)\/(\d+) online devices enforce it/);
  script.outcomes.push({
    step: 'every gateway enforces list 2',
    expected: `${fleet}/${fleet}`,
    got: enforcing ? `${enforcing[1]}/${enforcing[2]}` : 'no',
    ok: enforcing?.[1] === String(fleet) && enforcing[2] === String(fleet),
  });
  const next = out.match(/restarted: campaign (\S+)/)?.[1];
  if (!next) throw new Error('demo: the drill restarted no campaign');
  await waitUntil(async () => (await getJson<CampaignView>(`${api}/api/campaigns/${next}`)).state === 'completed');
  await script.fwseal(`campaign status ${next} --server ${api}`, { exit: 0, step: 're-signed 1.6.0 rollout' });
  return next;
}

/** The fleet after the drill: release, list, and how each gateway went through both campaigns. */
async function fleetAfterDrill(script: DemoScript, api: string, devices: Gateway[], layout: Layout, first: string, next: string): Promise<void> {
  script.say(`The fleet after the drill: a gateway that installed 1.6.0 signed by R1 keeps running it (its
image is checked byte for byte at every boot; only its signer was revoked, SPEC §11.4) until an update
replaces it; those caught downloading it stopped at once; all report 1.6.0 from the re-signed campaign.`);
  const before = await getJson<CampaignView>(`${api}/api/campaigns/${first}`);
  const after = await getJson<CampaignView>(`${api}/api/campaigns/${next}`);
  const lists = new Map((await devicesOf(api)).map((d) => [d.id, d.revocationVersion]));
  console.log(`  ${'DEVICE'.padEnd(7)} ${'VERSION'.padEnd(8)} ${'LIST'.padEnd(5)} ${'R1-SIGNED CAMPAIGN'.padEnd(24)} ${'RE-SIGNED'.padEnd(10)} BOOT`);
  const trust = readFileSync(join(script.dir, 'trust.cbor'));
  let flagged = 0;
  let fine = 0;
  for (const d of devices) {
    // The boot agent's verdict on each gateway's flash as it is now (the stored trust bundle and list).
    const b = boot(d.flash, layout, trust, { maxTrialBoots: 2 });
    if (b.code === 0 && b.version === '1.6.0') fine++;
    if (b.revokedSigners) flagged++;
    const x = before.devices.find((y) => y.id === d.id);
    // A gateway still fetching when the campaign was halted stopped there: its last report stays.
    const old = !x ? '-' : x.code ? `${x.state} ${codeName(x.code)}` : TERMINAL.has(x.state) ? x.state : `${x.state}, stopped`;
    const now = after.devices.find((y) => y.id === d.id)?.state ?? '-';
    const bootText = b.code === 0 ? `1.6.0${b.revokedSigners ? ', signer revoked, kept' : ''}` : codeName(b.code);
    console.log(
      `  ${d.id.padEnd(7)} ${String(d.device.state().version).padEnd(8)} ${String(lists.get(d.id)).padEnd(5)} ${old.padEnd(24)} ${now.padEnd(10)} ${bootText}`,
    );
  }
  const all = devices.every((d) => d.device.state().version === '1.6.0' && lists.get(d.id) === 2) && after.counts.confirmed === devices.length;
  script.outcomes.push({ step: 'every gateway on re-signed 1.6.0', expected: 'ok', got: all ? 'ok' : 'no', ok: all });
  script.outcomes.push({
    step: 'R1-signed install keeps booting',
    expected: 'revokedSigners >= 1',
    got: `${flagged} flagged, ${fine}/${devices.length} boot 1.6.0`,
    ok: flagged >= 1 && fine === devices.length,
  });
}
