/**
 * Steps 10-15 of `npm run demo` (tools/demo.ts): the release goes out over MQTT to a fleet, in waves,
 * under attack. An embedded broker (or --broker URL), `fwseal serve` in-process, six simulated
 * gateways in RAM and an attacker client on the broker; every step checks its outcome. Steps 16-18
 * (tools/demo/leak-story.ts) then run the key compromise drill on the same fleet.
 */

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { createLayout, layoutBytes } from '../../device/agent/layout.js';
import { provision } from '../../device/agent/provision.js';
import { SimFlash } from '../../device/sim/flash.js';
import { fleetVerifier } from '../../host/hash.js';
import { OtaDevice } from '../../host/ota/device-client.js';
import { type EmbeddedBroker, startEmbeddedBroker } from '../../host/ota/embedded-broker.js';
import { OtaServer } from '../../host/ota/server.js';
import { codeName } from '../../shared/codes.js';
import { encodeBlockResponse, parseBlockRequest, requestedBlocks } from '../../shared/ota/messages.js';
import { topics } from '../../shared/ota/topics.js';
import { leakStory } from './leak-story.js';
import { type DemoScript, dim, waitUntil } from './script.js';

export type Gateway = { id: string; device: OtaDevice; flash: SimFlash };
/** A campaign as GET /api/campaigns/<id> shows it (the fields the demo reads). */
type CampaignView = { state: string; devices: { id: string; state: string; code: number | null }[] };

/** The gateways' flash: 4 KiB erase blocks, two 2 MiB slots. */
const E = 4096;
const SLOT_SIZE = 2 << 20;
const geometry = { size: layoutBytes(E, 8, SLOT_SIZE), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
const layout = createLayout(geometry, { slotSize: SLOT_SIZE });

/** The fleet left running after the story: the server's HTTP address, and how to stop it all. */
export type DemoFleet = { readonly api: string; close(): Promise<void> };

/**
 * Steps 10-18: the release goes out over MQTT to a fleet, in waves, under attack; then a release key
 * leaks. The broker, the server and the gateways stay up for the web console until `close()`; on a
 * failure they are stopped here.
 */
export async function otaStory(script: DemoScript, factoryImage: Buffer, broker?: string): Promise<DemoFleet> {
  const delivery = await Delivery.start(script, broker);
  const devices: Gateway[] = [];
  const attacker = await mqtt.connectAsync(delivery.url, { clientId: 'demo-attacker', reconnectPeriod: 0 });
  const close = async () => {
    await attacker.endAsync(true);
    await Promise.allSettled(devices.map((d) => d.device.stop()));
    await delivery.server.close();
    await delivery.embedded?.close();
  };
  try {
    await startGateways(script, delivery, factoryImage, devices);
    const next = await packNextRelease(script);
    const id = await campaignUnderAttack(script, delivery, attacker, devices, next);
    const downgrade = await downgradeCampaign(script, delivery);
    await showFleet(script, delivery, devices, id, downgrade);
    await leakStory(script, delivery.api, devices, layout);
  } catch (e) {
    await close();
    throw e;
  }
  return { api: delivery.api, close }; // step 13 restarts the server on the same address
}

/** Step 10: the broker and the update server, which can stop and start again on the same address. */
class Delivery {
  server!: OtaServer;
  api = '';
  private port = 0;

  private constructor(
    private readonly dir: string,
    readonly url: string,
    readonly embedded: EmbeddedBroker | null,
  ) {}

  static async start(script: DemoScript, external?: string): Promise<Delivery> {
    script.say(`10. Delivery: ${external ? `the MQTT broker at ${external}` : 'an embedded MQTT broker (aedes, MQTT 3.1.1) on a loopback port'}, and the update server
(\`fwseal serve\`): it answers device requests, keeps campaigns and device states in SQLite and
serves an HTTP API. It refuses any campaign whose manifest does not verify against the fleet trust.`);
    const embedded = external ? null : await startEmbeddedBroker();
    const d = new Delivery(script.dir, external ?? embedded!.url, embedded);
    d.server = await d.startServer();
    d.api = d.server.address()!.url;
    console.log(dim(`$ fwseal serve --broker ${d.url} --data serve --trust trust.cbor --revocations RL.cbor --http 127.0.0.1:0 --mqtt-version 4`));
    console.log(`  HTTP API on ${d.api}`);
    return d;
  }

  async startServer(): Promise<OtaServer> {
    const s = await OtaServer.start({
      mqtt: { url: this.url, options: { protocolVersion: 4, clientId: 'demo-serve', reconnectPeriod: 500 } },
      dataDir: join(this.dir, 'serve'),
      trust: readFileSync(join(this.dir, 'trust.cbor')),
      revocations: readFileSync(join(this.dir, 'RL.cbor')),
      http: { host: '127.0.0.1', port: this.port },
      tickMs: 200,
    });
    this.port = s.address()!.port; // the restarted server keeps the address
    return s;
  }
}

/** Step 11: six gateways provisioned with the factory release, online. */
async function startGateways(script: DemoScript, delivery: Delivery, factoryImage: Buffer, devices: Gateway[]): Promise<void> {
  script.say(`11. Six gateways of group acme-gw leave the factory with release 1.4.2 (counter 7) and the
trust bundle; each connects, subscribes to its group's announcements and reports itself online.`);
  const verifier = fleetVerifier();
  const trust = readFileSync(join(script.dir, 'trust.cbor'));
  const revocations = readFileSync(join(script.dir, 'RL.cbor'));
  const factory = readFileSync(join(script.dir, 'M.cose'));
  for (let i = 1; i <= 6; i++) {
    const flash = new SimFlash(geometry);
    const p = provision(flash, layout, { deviceClass: 'acme-gw', trust, revocations, envelope: factory, image: factoryImage, verifier });
    if (!p.ok) throw new Error(`provision: ${p.error}`);
    const device = await OtaDevice.start({
      id: `gw-${i}`,
      group: 'acme-gw',
      flash,
      layout,
      trust,
      revocations,
      verifier,
      maxTrialBoots: 2,
      mqtt: { url: delivery.url, options: { protocolVersion: 4, clientId: `demo-gw-${i}`, reconnectPeriod: 500 } },
      // gw-3 (the one under attack in step 13) asks for one block at a time, so every request it
      // makes after the server stops is for a block whose digest page it already holds.
      pull: { timeoutMs: 2000, baseBackoffMs: 100, maxBackoffMs: 1000, retryBaseMs: 200, retryMaxMs: 1000, ...(i === 3 ? { window: 1 } : {}) },
    });
    devices.push({ id: `gw-${i}`, device, flash });
  }
  await waitUntil(async () => ((await (await fetch(`${delivery.api}/api/devices`)).json()) as { devices: unknown[] }).devices.length === 6);
  console.log(`  ${devices.map((d) => `${d.id} ${d.device.state().version}`).join(', ')}: online`);
}

/** Step 12: release 1.5.0, packed and signed; its image. */
async function packNextRelease(script: DemoScript): Promise<Buffer> {
  const { fwseal } = script;
  script.say(`12. Release 1.5.0 (counter 8): packed, signed by R1 and R3 (R2 is revoked).`);
  const next = Buffer.alloc(1 << 20);
  for (let i = 0; i < next.length; i += 32) createHash('sha256').update(`demo firmware 1.5.0 ${i}`).digest().copy(next, i);
  writeFileSync(join(script.dir, 'firmware-1.5.0.bin'), next);
  await fwseal('pack firmware-1.5.0.bin --device-class acme-gw --version 1.5.0 --counter 8 --out M2.cose', { exit: 0, step: 'pack 1.5.0' });
  await fwseal('sign M2.cose --key R1.key', { exit: 0, step: 'sign 1.5.0 R1' });
  await fwseal('sign M2.cose --key R3.key', { exit: 0, step: 'sign 1.5.0 R3' });
  return next;
}

/** What step 13's attacker has done so far. */
type Attack = { forged: number; seen: number; down: Promise<void> | null; back: Promise<OtaServer> | null };

/**
 * Step 13's attacker, on gw-3's request topic: at the first block request the update server stops;
 * two requests get forged blocks, then the server starts again.
 */
function attackGw3(attacker: MqttClient, delivery: Delivery, next: Buffer): Attack {
  const a: Attack = { forged: 0, seen: 0, down: null, back: null };
  attacker.on('message', (_t, payload) => {
    a.seen++;
    const r = parseBlockRequest(payload);
    if (!r.ok) return;
    if (!a.down) {
      console.log('  [update server stops]');
      a.down = delivery.server.close(); // it answers nothing from here on
    }
    if (a.forged >= 2) return;
    // Answer at once: the server is already deaf, and a late answer would find the request expired.
    const block = requestedBlocks(r.value)[0]!;
    const data = Uint8Array.from(next.subarray(block * 65536, (block + 1) * 65536));
    data[1234] ^= 0x5a;
    a.forged++;
    console.log(`  [attacker answers gw-3's request for block ${block} with a forged block]`);
    void attacker
      .publishAsync(
        r.value.replyTopic ?? topics.reply('fwseal', 'gw-3'),
        Buffer.from(encodeBlockResponse({ campaign: r.value.campaign, requestId: r.value.requestId, block, data })),
        { qos: 0 },
      )
      .catch(() => undefined);
    if (a.forged === 2) {
      a.back = a.down
        .then(() => delivery.startServer())
        .then((s) => {
          console.log('  [update server back, state from SQLite]');
          delivery.server = s;
          return s;
        });
    }
  });
  return a;
}

/** Step 13: the campaign in two waves while the server goes down and an attacker forges blocks; the campaign id. */
async function campaignUnderAttack(script: DemoScript, delivery: Delivery, attacker: MqttClient, devices: Gateway[], next: Buffer): Promise<string> {
  const { fwseal } = script;
  const api = delivery.api;
  script.say(`13. The campaign: wave 1 is a third of the group, wave 2 the rest once wave 1 succeeded.
Trouble on the way: the update server goes down just as gw-3 starts fetching blocks, and an attacker
on the broker answers gw-3's requests with forged blocks. gw-3 checks every chunk against the signed
Merkle root and rejects them; the server comes back (campaigns and device states are in SQLite), and
gw-3 fetches those blocks again and completes.`);
  const a = attackGw3(attacker, delivery, next);
  await attacker.subscribeAsync('fwseal/campaign/+/req/gw-3', { qos: 0 });
  const out = await fwseal(`campaign create --server ${api} --manifest M2.cose --image firmware-1.5.0.bin --group acme-gw --waves 34,100`, {
    exit: 0,
    step: 'campaign create (waves 34,100)',
  });
  const id = out.trim();
  await waitUntil(
    async () => a.back !== null,
    60_000,
    async () => {
      const c = await fetch(`${api}/api/campaigns/${id}`)
        .then((r) => r.json())
        .catch((e: Error) => `API: ${e.message}`);
      return `attacker saw ${a.seen}, connected ${attacker.connected}; forged ${a.forged}, server ${a.down ? 'stopped' : 'up'}; devices ${JSON.stringify(devices.map((d) => ({ id: d.id, ...d.device.state(), ...d.device.stats() })))}; campaign ${JSON.stringify(c)}`;
    },
  );
  await a.back;
  await fwseal(`campaign status ${id} --watch --server ${api}`, { exit: 0, step: 'campaign completed in waves' });
  const gw3 = devices[2]!.device.stats();
  script.outcomes.push({
    step: 'forged block rejected, refetched',
    expected: 'rejected >= 1',
    got: `forged ${a.forged}, rejected ${gw3.rejected}`,
    ok: a.forged > 0 && gw3.rejected > 0,
  });
  console.log(`  attacker forged ${a.forged} block(s) for gw-3; gw-3 rejected ${gw3.rejected} and installed 1.5.0 anyway`);
  return id;
}

/** Step 14: a replayed downgrade campaign, refused by every gateway (ROLLBACK) and halted; the campaign. */
async function downgradeCampaign(script: DemoScript, delivery: Delivery): Promise<CampaignView> {
  const { fwseal } = script;
  const api = delivery.api;
  script.say(`14. A downgrade: someone replays the 1.4.2 release (counter 7) as a new campaign. The server
accepts it (it is validly signed), but every gateway now runs counter 8 and refuses it (ROLLBACK);
the failure rate passes the threshold and the campaign halts.`);
  const downgrade = (
    await fwseal(`campaign create --server ${api} --manifest M.cose --image firmware.bin --group acme-gw --waves 100 --abort-failure-rate 0.05`, {
      exit: 0,
      step: 'downgrade campaign create',
    })
  ).trim();
  await fwseal(`campaign status ${downgrade} --watch --server ${api}`, { exit: 1, step: 'downgrade campaign halted' });
  const dd = (await (await fetch(`${api}/api/campaigns/${downgrade}`)).json()) as CampaignView;
  const rollbacks = dd.devices.filter((d) => d.state === 'rejected' && d.code === 300).length;
  script.outcomes.push({
    step: 'downgrade refused by the fleet',
    expected: 'ROLLBACK, halted',
    got: `${rollbacks} ROLLBACK, ${dd.state}`,
    ok: rollbacks > 0 && dd.state === 'halted',
  });
  return dd;
}

/** Step 15: every gateway's version and counter, and its outcome in both campaigns. */
async function showFleet(script: DemoScript, delivery: Delivery, devices: Gateway[], id: string, dd: CampaignView): Promise<void> {
  script.say(`15. The fleet`);
  const c1 = (await (await fetch(`${delivery.api}/api/campaigns/${id}`)).json()) as { devices: { id: string; state: string }[] };
  console.log(
    `  ${'DEVICE'.padEnd(7)} ${'VERSION'.padEnd(8)} ${'COUNTER'.padEnd(8)} ${'1.5.0 CAMPAIGN'.padEnd(15)} ${'DOWNGRADE'.padEnd(18)} FORGED BLOCKS REJECTED`,
  );
  for (const d of devices) {
    const st = d.device.state();
    const a = c1.devices.find((x) => x.id === d.id)?.state ?? '-';
    const b = dd.devices.find((x) => x.id === d.id);
    const bText = b ? (b.code ? `${b.state} ${codeName(b.code)}` : b.state) : '-';
    console.log(
      `  ${d.id.padEnd(7)} ${String(st.version).padEnd(8)} ${String(st.counter).padEnd(8)} ${a.padEnd(15)} ${bText.padEnd(18)} ${d.device.stats().rejected}`,
    );
  }
  const all = devices.every((d) => d.device.state().version === '1.5.0' && d.device.state().counter === 8);
  script.outcomes.push({ step: 'every gateway on 1.5.0, counter 8', expected: 'ok', got: all ? 'ok' : 'no', ok: all });
}
