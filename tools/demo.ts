/**
 * `npm run demo`: the whole fwseal flow in a temporary folder, explained step by step.
 * Every step runs the real `fwseal` command (in-process) and checks its outcome; the demo exits 1
 * if any step does not behave as described.
 */
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import mqtt from 'mqtt';
import { main } from '../host/cli.js';
import { fleetVerifier } from '../host/hash.js';
import { startEmbeddedBroker } from '../host/ota/embedded-broker.js';
import { OtaDevice } from '../host/ota/device-client.js';
import { OtaServer } from '../host/ota/server.js';
import { encodeBlockResponse, parseBlockRequest, requestedBlocks, topics } from '../shared/ota.js';
import { codeName } from '../shared/codes.js';
import { provision } from '../device/agent/agent.js';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { SimFlash } from '../device/sim/flash.js';

const dir = mkdtempSync(join(tmpdir(), 'fwseal-demo-'));
const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const dim = (s: string) => (process.stdout.isTTY ? `\x1b[2m${s}\x1b[0m` : s);
const outcomes: { step: string; expected: string; got: string; ok: boolean }[] = [];

function say(text: string): void {
  console.log('\n' + bold('## ' + text.split('\n')[0]));
  for (const line of text.split('\n').slice(1)) console.log(line);
}

/** Run `fwseal ARGS` in the demo folder; print it like a terminal would; check the exit status. */
async function fwseal(args: string, expect: { exit: number; error?: string; step: string }): Promise<string> {
  let out = '';
  const argv = args.split(' ').map((a) => (a.endsWith('.key') || a.endsWith('.pub') || a.endsWith('.cose') || a.endsWith('.cbor') || a.endsWith('.bin') || a.endsWith('.json') || a === '.' ? join(dir, a) : a));
  console.log(dim(`$ fwseal ${args}`));
  const exit = await main(argv, {
    stdout: (t) => { out += t; process.stdout.write('  ' + t.replace(/\n(?=.)/g, '\n  ')); },
    stderr: (t) => { out += t; process.stdout.write(dim('  ' + t.replace(/\n(?=.)/g, '\n  '))); },
    stderrIsTty: false,
  });
  const ok = exit === expect.exit && (expect.error === undefined || out.includes(expect.error));
  outcomes.push({ step: expect.step, expected: expect.error ?? (expect.exit === 0 ? 'ok' : `exit ${expect.exit}`), got: exit === 0 ? 'ok' : (out.match(/REJECTED ([A-Z_]+)/)?.[1] ?? `exit ${exit}`), ok });
  return out;
}

async function run(): Promise<void> {
  // The demo's keys are throwaway: a fixed passphrase keeps it non-interactive. Real keys get a
  // passphrase from FWSEAL_PASSPHRASE (e.g. from a secret store) or a prompt on the terminal.
  process.env.FWSEAL_PASSPHRASE = 'demo passphrase, not for real keys';
  console.log(bold('fwseal demo') + ` — working in ${dir}`);

  say(`1. Keys: three root keys (who may change trust) and three release keys (who may ship firmware).
Private keys are encrypted at rest (scrypt + AES-256-GCM) in files with mode 0600; the command
prints the key id, the first 16 bytes of SHA-256 over the public key.`);
  for (const k of ['A', 'B', 'C', 'R1', 'R2', 'R3']) await fwseal(`keygen ${k} --dir .`, { exit: 0, step: `keygen ${k}` });

  say(`2. Root of trust: any 2 of the 3 root keys, any 2 of the 3 release keys.
This trust bundle is what a factory provisions into every device.`);
  await fwseal('trust init --root A.pub --root B.pub --root C.pub --root-threshold 2 --release R1.pub --release R2.pub --release R3.pub --release-threshold 2 --sign A.key --sign B.key --out trust.cbor', { exit: 0, step: 'trust init 2-of-3' });

  say(`3. Pack a firmware image: 1 MiB split into 4 KiB chunks, hashed into an RFC 9162 Merkle tree.
The manifest holds only the root, so it stays a few hundred bytes whatever the image size.`);
  const image = Buffer.alloc(1 << 20);
  for (let i = 0; i < image.length; i += 32) createHash('sha256').update(`demo firmware ${i}`).digest().copy(image, i);
  writeFileSync(join(dir, 'firmware.bin'), image);
  writeFileSync(join(dir, 'sbom.json'), JSON.stringify({ bomFormat: 'CycloneDX', specVersion: '1.5', components: [] }));
  await fwseal('pack firmware.bin --device-class acme-gw --version 1.4.2 --counter 7 --sbom sbom.json --sbom-uri https://sbom.acme.example/gw/1.4.2.cdx.json --out M.cose', { exit: 0, step: 'pack' });

  say(`4. Release keys sign on their own machines, in any order. One signature is not enough.`);
  await fwseal('sign M.cose --key R1.key', { exit: 0, step: 'sign R1' });
  await fwseal('verify M.cose --image firmware.bin --trust trust.cbor', { exit: 1, error: 'THRESHOLD_NOT_MET', step: '1 of 2 signatures' });

  say(`5. A second release key signs: the device verifier (the same code that runs on devices)
accepts the manifest, then streams the image chunk by chunk against the signed root.`);
  await fwseal('sign M.cose --key R2.key', { exit: 0, step: 'sign R2' });
  await fwseal('verify M.cose --image firmware.bin --trust trust.cbor --device-class acme-gw --counter 7', { exit: 0, step: '2 of 2 signatures' });
  await fwseal('inspect M.cose', { exit: 0, step: 'inspect' });

  say(`6. An attacker flips one bit in the image: the chunk that holds it is named as soon as it is read.`);
  const tampered = Buffer.from(image);
  tampered[600_000] ^= 0x01;
  writeFileSync(join(dir, 'tampered.bin'), tampered);
  await fwseal('verify M.cose --image tampered.bin --trust trust.cbor', { exit: 1, error: 'CHUNK_DIGEST_MISMATCH', step: 'tampered image' });

  say(`7. Anti-rollback: a device that already runs security counter 8 refuses this release (counter 7).`);
  await fwseal('verify M.cose --image firmware.bin --trust trust.cbor --counter 8', { exit: 1, error: 'ROLLBACK', step: 'downgrade' });

  say(`8. Other hardware: a manifest for acme-gw is refused by an acme-sensor.`);
  await fwseal('verify M.cose --trust trust.cbor --device-class acme-sensor', { exit: 1, error: 'WRONG_DEVICE_CLASS', step: 'wrong device class' });

  say(`9. R2's key leaks: two root keys revoke it. Its signature no longer counts, so the release
falls below its 2-of-3 threshold until another release key signs it.`);
  await fwseal('revoke --trust trust.cbor --key R2.pub --version 1 --sign A.key --sign C.key --out RL.cbor', { exit: 0, step: 'revoke R2' });
  await fwseal('verify M.cose --image firmware.bin --trust trust.cbor --revocations RL.cbor', { exit: 1, error: 'REVOKED_KEY', step: 'revoked signer' });
  await fwseal('sign M.cose --key R3.key', { exit: 0, step: 'sign R3' });
  await fwseal('verify M.cose --image firmware.bin --trust trust.cbor --revocations RL.cbor', { exit: 0, step: 'R1 + R3 after revocation' });

  const size = readFileSync(join(dir, 'M.cose')).length;
  await otaStory(image);

  say(`Summary (manifest with 3 signatures and an SBOM: ${size} bytes)`);
  const width = Math.max(...outcomes.map((o) => o.step.length));
  for (const o of outcomes) console.log(`  ${o.ok ? 'ok  ' : 'FAIL'}  ${o.step.padEnd(width)}  expected ${o.expected.padEnd(22)} got ${o.got}`);
  const failed = outcomes.filter((o) => !o.ok).length;
  console.log(failed === 0 ? `\nAll ${outcomes.length} steps behaved as described.` : `\n${failed} step(s) did not behave as described.`);
  process.exitCode = failed === 0 ? 0 : 1;
}

/** Steps 10-15: the release goes out over MQTT to a fleet, in waves, under attack. */
async function otaStory(factoryImage: Buffer): Promise<void> {
  const brokerArg = process.argv.indexOf('--broker');
  const external = brokerArg > 0 ? process.argv[brokerArg + 1] : undefined;
  say(`10. Delivery: ${external ? `the MQTT broker at ${external}` : 'an embedded MQTT broker (aedes, MQTT 3.1.1) on a loopback port'}, and the update server
(\`fwseal serve\`): it answers device requests, keeps campaigns and device states in SQLite and
serves an HTTP API. It refuses any campaign whose manifest does not verify against the fleet trust.`);
  const embedded = external ? null : await startEmbeddedBroker();
  const url = external ?? embedded!.url;
  let port = 0;
  const startServer = async () => {
    const s = await OtaServer.start({
      mqtt: { url, options: { protocolVersion: 4, clientId: 'demo-serve', reconnectPeriod: 500 } },
      dataDir: join(dir, 'serve'), trust: readFileSync(join(dir, 'trust.cbor')), revocations: readFileSync(join(dir, 'RL.cbor')),
      http: { host: '127.0.0.1', port }, tickMs: 200,
    });
    port = s.address()!.port; // the restarted server keeps the address
    return s;
  };
  let server = await startServer();
  const api = server.address()!.url;
  console.log(dim(`$ fwseal serve --broker ${url} --data serve --trust trust.cbor --revocations RL.cbor --http 127.0.0.1:0 --mqtt-version 4`));
  console.log(`  HTTP API on ${api}`);
  const devices: { id: string; device: OtaDevice; flash: SimFlash }[] = [];
  const attacker = await mqtt.connectAsync(url, { clientId: 'demo-attacker', reconnectPeriod: 0 });
  try {
    say(`11. Six gateways of group acme-gw leave the factory with release 1.4.2 (counter 7) and the
trust bundle; each connects, subscribes to its group's announcements and reports itself online.`);
    const E = 4096;
    const slotSize = 2 << 20;
    const geometry = { size: layoutBytes(E, 8, slotSize), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
    const layout = createLayout(geometry, { slotSize });
    const verifier = fleetVerifier();
    const trust = readFileSync(join(dir, 'trust.cbor'));
    const revocations = readFileSync(join(dir, 'RL.cbor'));
    const factory = readFileSync(join(dir, 'M.cose'));
    for (let i = 1; i <= 6; i++) {
      const flash = new SimFlash(geometry);
      const p = provision(flash, layout, { deviceClass: 'acme-gw', trust, revocations, envelope: factory, image: factoryImage, verifier });
      if (!p.ok) throw new Error(`provision: ${p.error}`);
      const device = await OtaDevice.start({
        id: `gw-${i}`, group: 'acme-gw', flash, layout, trust, revocations, verifier, maxTrialBoots: 2,
        mqtt: { url, options: { protocolVersion: 4, clientId: `demo-gw-${i}`, reconnectPeriod: 500 } },
        // gw-3 (the one under attack in step 13) asks for one block at a time, so every request it
        // makes after the server stops is for a block whose digest page it already holds.
        pull: { timeoutMs: 2000, baseBackoffMs: 100, maxBackoffMs: 1000, retryBaseMs: 200, retryMaxMs: 1000, ...(i === 3 ? { window: 1 } : {}) },
      });
      devices.push({ id: `gw-${i}`, device, flash });
    }
    await waitUntil(async () => ((await (await fetch(`${api}/api/devices`)).json()) as { devices: unknown[] }).devices.length === 6);
    console.log(`  ${devices.map((d) => `${d.id} ${d.device.state().version}`).join(', ')}: online`);

    say(`12. Release 1.5.0 (counter 8): packed, signed by R1 and R3 (R2 is revoked).`);
    const next = Buffer.alloc(1 << 20);
    for (let i = 0; i < next.length; i += 32) createHash('sha256').update(`demo firmware 1.5.0 ${i}`).digest().copy(next, i);
    writeFileSync(join(dir, 'firmware-1.5.0.bin'), next);
    await fwseal('pack firmware-1.5.0.bin --device-class acme-gw --version 1.5.0 --counter 8 --out M2.cose', { exit: 0, step: 'pack 1.5.0' });
    await fwseal('sign M2.cose --key R1.key', { exit: 0, step: 'sign 1.5.0 R1' });
    await fwseal('sign M2.cose --key R3.key', { exit: 0, step: 'sign 1.5.0 R3' });

    say(`13. The campaign: wave 1 is a third of the group, wave 2 the rest once wave 1 succeeded.
Trouble on the way: the update server goes down just as gw-3 starts fetching blocks, and an attacker
on the broker answers gw-3's requests with forged blocks. gw-3 checks every chunk against the signed
Merkle root and rejects them; the server comes back (campaigns and device states are in SQLite), and
gw-3 fetches those blocks again and completes.`);
    let forged = 0;
    let down: Promise<void> | null = null;
    let back: Promise<OtaServer> | null = null;
    let seen = 0;
    attacker.on('message', (_t, payload) => {
      seen++;
      const r = parseBlockRequest(payload);
      if (!r.ok) return;
      if (!down) {
        console.log('  [update server stops]');
        down = server.close(); // it answers nothing from here on
      }
      if (forged >= 2) return;
      // Answer at once: the server is already deaf, and a late answer would find the request expired.
      const block = requestedBlocks(r.value)[0]!;
      const data = Uint8Array.from(next.subarray(block * 65536, (block + 1) * 65536));
      data[1234] ^= 0x5a;
      forged++;
      console.log(`  [attacker answers gw-3's request for block ${block} with a forged block]`);
      void attacker.publishAsync(r.value.replyTopic ?? topics.reply('fwseal', 'gw-3'), Buffer.from(encodeBlockResponse({ campaign: r.value.campaign, requestId: r.value.requestId, block, data })), { qos: 0 }).catch(() => undefined);
      if (forged === 2) {
        back = down.then(startServer).then((s) => {
          console.log('  [update server back, state from SQLite]');
          return (server = s);
        });
      }
    });
    await attacker.subscribeAsync('fwseal/campaign/+/req/gw-3', { qos: 0 });
    const out = await fwseal(`campaign create --server ${api} --manifest M2.cose --image firmware-1.5.0.bin --group acme-gw --waves 34,100`, { exit: 0, step: 'campaign create (waves 34,100)' });
    const id = out.trim();
    await waitUntil(async () => back !== null, 60_000, async () => {
      const c = await fetch(`${api}/api/campaigns/${id}`).then((r) => r.json()).catch((e: Error) => `API: ${e.message}`);
      return `attacker saw ${seen}, connected ${attacker.connected}; forged ${forged}, server ${down ? 'stopped' : 'up'}; devices ${JSON.stringify(devices.map((d) => ({ id: d.id, ...d.device.state(), ...d.device.stats() })))}; campaign ${JSON.stringify(c)}`;
    });
    await back;
    await fwseal(`campaign status ${id} --watch --server ${api}`, { exit: 0, step: 'campaign completed in waves' });
    const gw3 = devices[2]!.device.stats();
    outcomes.push({ step: 'forged block rejected, refetched', expected: 'rejected >= 1', got: `forged ${forged}, rejected ${gw3.rejected}`, ok: forged > 0 && gw3.rejected > 0 });
    console.log(`  attacker forged ${forged} block(s) for gw-3; gw-3 rejected ${gw3.rejected} and installed 1.5.0 anyway`);

    say(`14. A downgrade: someone replays the 1.4.2 release (counter 7) as a new campaign. The server
accepts it (it is validly signed), but every gateway now runs counter 8 and refuses it (ROLLBACK);
the failure rate passes the threshold and the campaign halts.`);
    const downgrade = (await fwseal(`campaign create --server ${api} --manifest M.cose --image firmware.bin --group acme-gw --waves 100 --abort-failure-rate 0.05`, { exit: 0, step: 'downgrade campaign create' })).trim();
    await fwseal(`campaign status ${downgrade} --watch --server ${api}`, { exit: 0, step: 'downgrade campaign halted' });
    const dd = (await (await fetch(`${api}/api/campaigns/${downgrade}`)).json()) as { state: string; devices: { id: string; state: string; code: number | null }[] };
    const rollbacks = dd.devices.filter((d) => d.state === 'rejected' && d.code === 300).length;
    outcomes.push({ step: 'downgrade refused by the fleet', expected: 'ROLLBACK, halted', got: `${rollbacks} ROLLBACK, ${dd.state}`, ok: rollbacks > 0 && dd.state === 'halted' });

    say(`15. The fleet`);
    const c1 = (await (await fetch(`${api}/api/campaigns/${id}`)).json()) as { devices: { id: string; state: string }[] };
    console.log(`  ${'DEVICE'.padEnd(7)} ${'VERSION'.padEnd(8)} ${'COUNTER'.padEnd(8)} ${'1.5.0 CAMPAIGN'.padEnd(15)} ${'DOWNGRADE'.padEnd(18)} FORGED BLOCKS REJECTED`);
    for (const d of devices) {
      const st = d.device.state();
      const a = c1.devices.find((x) => x.id === d.id)?.state ?? '-';
      const b = dd.devices.find((x) => x.id === d.id);
      const bText = b ? (b.code ? `${b.state} ${codeName(b.code)}` : b.state) : '-';
      console.log(`  ${d.id.padEnd(7)} ${String(st.version).padEnd(8)} ${String(st.counter).padEnd(8)} ${a.padEnd(15)} ${bText.padEnd(18)} ${d.device.stats().rejected}`);
    }
    const all = devices.every((d) => d.device.state().version === '1.5.0' && d.device.state().counter === 8);
    outcomes.push({ step: 'every gateway on 1.5.0, counter 8', expected: 'ok', got: all ? 'ok' : 'no', ok: all });
  } finally {
    await attacker.endAsync(true);
    await Promise.allSettled(devices.map((d) => d.device.stop()));
    await server.close();
    await embedded?.close();
  }
}

async function waitUntil(check: () => Promise<boolean>, ms = 30_000, why?: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`demo: timed out${why ? `: ${await why()}` : ''}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

run()
  .catch((e) => {
    console.error('demo failed:', e);
    process.exitCode = 1;
  })
  .finally(() => rmSync(dir, { recursive: true, force: true }));
