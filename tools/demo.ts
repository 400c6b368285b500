/**
 * `npm run demo`: the whole fwseal flow in a temporary folder, explained step by step.
 * Every step runs the real `fwseal` command (in-process) and checks its outcome; the demo exits 1
 * if any step does not behave as described. It ends with the web console's address, the server and
 * its fleet held up for a minute on a terminal (tools/demo/hold.ts; `--keep`, `--hold SECONDS`).
 */

import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consoleLines, DEMO_USAGE, type DemoOptions, demoOptions, holdForConsole } from './demo/hold.js';
import { type DemoFleet, otaStory } from './demo/ota-story.js';
import { bold, DemoScript } from './demo/script.js';

async function run(opts: DemoOptions, script: DemoScript): Promise<void> {
  const { say, fwseal, dir } = script;
  // The demo's keys are throwaway: a fixed passphrase keeps it non-interactive. Real keys get a
  // passphrase from FWSEAL_PASSPHRASE (e.g. from a secret store) or a prompt on the terminal.
  process.env.FWSEAL_PASSPHRASE = 'demo passphrase, not for real keys';
  // Every key, signature, attach, trust bundle, revocation and publish below goes to one audit log.
  process.env.FWSEAL_AUDIT_LOG = join(dir, 'audit.log');
  process.env.FWSEAL_ACTOR = 'demo';
  console.log(`${bold('fwseal demo')} — working in ${dir}`);

  say(`1. Keys: three root keys (who may change trust) and three release keys (who may ship firmware).
Private keys are encrypted at rest (scrypt + AES-256-GCM) in files with mode 0600; the command
prints the key id, the first 16 bytes of SHA-256 over the public key.`);
  for (const k of ['A', 'B', 'C', 'R1', 'R2', 'R3']) await fwseal(`keygen ${k} --dir .`, { exit: 0, step: `keygen ${k}` });

  say(`2. Root of trust: any 2 of the 3 root keys, any 2 of the 3 release keys.
This trust bundle is what a factory provisions into every device.`);
  await fwseal(
    'trust init --root A.pub --root B.pub --root C.pub --root-threshold 2 --release R1.pub --release R2.pub --release R3.pub --release-threshold 2 --sign A.key --sign B.key --out trust.cbor',
    { exit: 0, step: 'trust init 2-of-3' },
  );

  say(`3. Pack a firmware image: 1 MiB split into 4 KiB chunks, hashed into an RFC 9162 Merkle tree.
The manifest holds only the root, so it stays a few hundred bytes whatever the image size.`);
  const image = Buffer.alloc(1 << 20);
  for (let i = 0; i < image.length; i += 32) createHash('sha256').update(`demo firmware ${i}`).digest().copy(image, i);
  writeFileSync(join(dir, 'firmware.bin'), image);
  writeFileSync(join(dir, 'sbom.json'), JSON.stringify({ bomFormat: 'CycloneDX', specVersion: '1.5', components: [] }));
  await fwseal(
    'pack firmware.bin --device-class acme-gw --version 1.4.2 --counter 7 --sbom sbom.json --sbom-uri https://sbom.acme.example/gw/1.4.2.cdx.json --out M.cose',
    { exit: 0, step: 'pack' },
  );

  say(`4. Release keys sign on their own machines, in any order. One signature is not enough.`);
  await fwseal('sign M.cose --key R1.key', { exit: 0, step: 'sign R1' });
  await fwseal('verify M.cose --image firmware.bin --trust trust.cbor', { exit: 1, error: 'THRESHOLD_NOT_MET', step: '1 of 2 signatures' });

  say(`5. R2's holder signs offline, on a machine that never sees M.cose's home: only a detached
signature comes back, and attach checks it against the payload, the key and its role. The ceremony
is then complete, and the device verifier (the same code that runs on devices) accepts the manifest
and streams the image chunk by chunk against the signed root.`);
  await fwseal('sign M.cose --key R2.key --detached R2.sig', { exit: 0, step: 'sign R2 detached' });
  await fwseal('attach M.cose R2.sig --trust trust.cbor', { exit: 0, step: 'attach R2' });
  await fwseal('inspect M.cose --trust trust.cbor --keys .', { exit: 0, step: 'ceremony status' });
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
  const story = await otaStory(script, image, opts.broker);
  fleet = story;

  say(`19. The audit trail: every key, signature, attach, revocation list and publish above is one
JSON line (who, what, which key, which object, the result), chained to the line before by SHA-256:
an edited, removed, inserted or reordered line is found and named.`);
  await fwseal('audit verify audit.log', { exit: 0, step: 'audit log verifies' });

  printSummary(script, size);
  console.log('');
  await holdForConsole(consoleLines(story.api), opts.holdSeconds);
}

/** Every step's outcome; exit status 1 if any did not behave as described. */
function printSummary({ say, outcomes }: DemoScript, manifestSize: number): void {
  say(`Summary (manifest with 3 signatures and an SBOM: ${manifestSize} bytes)`);
  const width = Math.max(...outcomes.map((o) => o.step.length));
  for (const o of outcomes) console.log(`  ${o.ok ? 'ok  ' : 'FAIL'}  ${o.step.padEnd(width)}  expected ${o.expected.padEnd(22)} got ${o.got}`);
  const failed = outcomes.filter((o) => !o.ok).length;
  console.log(failed === 0 ? `\nAll ${outcomes.length} steps behaved as described.` : `\n${failed} step(s) did not behave as described.`);
  process.exitCode = failed === 0 ? 0 : 1;
}

/** The broker, server and gateways of steps 10-18, up until the demo ends. */
let fleet: DemoFleet | undefined;

function start(): void {
  let opts: DemoOptions;
  try {
    opts = demoOptions(process.argv.slice(2), !!process.stdout.isTTY);
  } catch (e) {
    console.error(`demo: ${(e as Error).message}\n\n${DEMO_USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (opts.help) {
    console.log(DEMO_USAGE);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'fwseal-demo-'));
  run(opts, new DemoScript(dir))
    .catch((e) => {
      console.error('demo failed:', e);
      process.exitCode = 1;
    })
    .finally(async () => {
      await fleet?.close();
      rmSync(dir, { recursive: true, force: true });
    });
}

start();
