/**
 * The CLI faces of the device log policy (issue 19 item 3, SPEC.md §16): `fwseal trust init|rotate
 * --log-key --log-origin --witness --witness-threshold` writes a format-2 bundle (rotate keeps the
 * policy unless --drop-log-policy), `fwseal inspect` shows the policy (and its JSON validates), and
 * `fwseal log prove --device-proof` writes the attachment a device accepts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTrust, verifyLogProof } from '../device/index.js';
import { CODES } from '../shared/codes.js';
import { parseLogProof } from '../shared/log-proof.js';
import { type CliWorld, expectOk, expectUsage, makeCliWorld } from './support/cli-world.js';
import { detBytes } from './support/fixtures.js';

const ORIGIN = 'example.com/acme-firmware';
const SCHEMAS = join(__dirname, '..', 'host', 'schemas');
let w: CliWorld;
const roles = ['--root', 'A.pub', '--root-threshold', '1', '--release', 'R.pub', '--release-threshold', '1', '--sign', 'A.key'];
const policy = ['--log-key', 'logkey.pub', '--log-origin', ORIGIN, '--witness', 'w1.pub', '--witness', 'w2.pub', '--witness-threshold', '1'];

beforeAll(async () => {
  w = await makeCliWorld(['A', 'R', 'logkey', 'w1', 'w2'], { image: true });
  expectOk(await w.run('trust', 'init', ...roles, ...policy, '--out', 'trust.cbor'));
  expectOk(await w.run('sign', 'm.cose', '--key', 'R.key'));
  expectOk(await w.run('log', 'init', 'tlog', '--origin', ORIGIN, '--key', 'logkey.pub'));
  expectOk(await w.run('log', 'append', 'tlog', 'm.cose'));
  expectOk(await w.run('log', 'checkpoint', 'tlog', '--key', 'logkey.key'));
  expectOk(await w.run('log', 'cosign', 'tlog/checkpoint.note', '--key', 'w2.key', '--log', 'tlog'));
}, 60_000);
afterAll(() => w.close());

const trustOf = (file: string) => {
  const t = loadTrust(w.bytes(file));
  if (!t.ok) throw new Error(t.error);
  return t.trust;
};

describe('trust bundles with a log policy (CLI)', () => {
  it('trust init writes the policy; inspect shows it, and its JSON validates against inspect.schema.json', async () => {
    expect(trustOf('trust.cbor').bundle.log).toMatchObject({ origin: ORIGIN, witnessThreshold: 1, witnesses: [{ name: 'w1' }, { name: 'w2' }] });
    const r = await w.run('inspect', 'trust.cbor', '--json');
    expectOk(r);
    const shown = JSON.parse(r.out);
    expect(shown.log).toMatchObject({ origin: ORIGIN, witnessThreshold: 1, witnesses: [{ name: 'w1' }, { name: 'w2' }] });
    const ajv = new Ajv2020({ allErrors: true, strict: true });
    for (const f of readdirSync(SCHEMAS).filter((n) => n.endsWith('.schema.json'))) ajv.addSchema(JSON.parse(readFileSync(join(SCHEMAS, f), 'utf8')));
    const validate = ajv.getSchema('inspect.schema.json')!;
    expect(validate(shown), JSON.stringify(validate.errors)).toBe(true);
    expect(validate({ ...shown, log: { ...shown.log, extra: 1 } })).toBe(false);
    const text = await w.run('inspect', 'trust.cbor');
    expect(text.out).toContain(`origin: ${ORIGIN}`);
  });

  it('trust rotate keeps the policy; --drop-log-policy removes it (a format-1 bundle again)', async () => {
    expectOk(await w.run('trust', 'rotate', '--previous', 'trust.cbor', ...roles, '--out', 't2.cbor'));
    expect(trustOf('t2.cbor').bundle.log?.origin).toBe(ORIGIN);
    expectOk(await w.run('trust', 'rotate', '--previous', 'trust.cbor', ...roles, '--drop-log-policy', '--out', 't3.cbor'));
    expect(trustOf('t3.cbor').bundle.log).toBeUndefined();
  });

  it('policy flags that do not fit: USAGE, nothing written', async () => {
    expectUsage(await w.run('trust', 'init', ...roles, '--witness', 'w1.pub', '--out', 'x.cbor'));
    expectUsage(await w.run('trust', 'init', ...roles, '--log-key', 'logkey.pub', '--log-origin', 'a b', '--out', 'x.cbor'));
    expectUsage(await w.run('trust', 'init', ...roles, ...policy.slice(0, 8), '--witness-threshold', '3', '--out', 'x.cbor'));
    expectUsage(await w.run('trust', 'init', ...roles, '--log-key', 'logkey.pub', '--out', 'x.cbor'));
    expect(readdirSync(w.dir)).not.toContain('x.cbor');
  });
});

describe('fwseal log prove --device-proof', () => {
  it('writes the attachment a device with the policy accepts; --json still prints the inclusion bundle', async () => {
    expectOk(await w.run('log', 'prove', 'tlog', '--entry', 'm.cose', '--device-proof', 'm.logproof'));
    const r = verifyLogProof(w.bytes('m.cose'), w.bytes('m.logproof'), trustOf('trust.cbor'));
    expect(r.ok, JSON.stringify(r)).toBe(true);
    const j = await w.run('log', 'prove', 'tlog', '--entry', 'm.cose', '--device-proof', 'm2.logproof', '--json');
    expectOk(j);
    expect(JSON.parse(j.out)).toMatchObject({ type: 'fwseal-log-inclusion', index: 0, size: 1 });
    expect(Buffer.from(w.bytes('m2.logproof')).equals(Buffer.from(w.bytes('m.logproof')))).toBe(true);
  });

  it('--from-size adds the consistency proof; above the checkpoint it is LOG_INVALID; misuse is USAGE', async () => {
    expectOk(await w.run('log', 'append', 'tlog', 'trust.cbor'));
    expectOk(await w.run('log', 'checkpoint', 'tlog', '--key', 'logkey.key'));
    expectOk(await w.run('log', 'prove', 'tlog', '--entry', 'm.cose', '--device-proof', 'm3.logproof', '--from-size', '1'));
    const p = parseLogProof(w.bytes('m3.logproof'));
    expect(p.ok && [p.value.size, p.value.fromSize]).toEqual([2, 1]);
    expectUsage(await w.run('log', 'prove', 'tlog', '--entry', 'm.cose', '--device-proof', 'x', '--from-size', '3'), 'LOG_INVALID');
    expectUsage(await w.run('log', 'prove', 'tlog', '--index', '0', '--device-proof', 'x'));
    expectUsage(await w.run('log', 'prove', 'tlog', '--entry', 'm.cose', '--from-size', '1'));
  });
});

describe('fwseal device run --log-proof (a gateway under a log policy, from local files)', () => {
  it('without the attachment the update is LOG_PROOF_MISSING (exit 1, nothing installed); with it the update installs', async () => {
    w.write('factory.bin', detBytes(12_000, 'factory image'));
    expectOk(
      await w.run('pack', 'factory.bin', '--device-class', 'acme-gw', '--version', '0.9.0', '--counter', '0', '--chunk-size', '4096', '--out', 'factory.cose'),
    );
    expectOk(await w.run('sign', 'factory.cose', '--key', 'R.key'));
    expectOk(
      await w.run(
        'device',
        'provision',
        '--state',
        'gw',
        '--trust',
        'trust.cbor',
        '--device-class',
        'acme-gw',
        '--manifest',
        'factory.cose',
        '--image',
        'factory.bin',
      ),
    );
    const base = ['device', 'run', '--state', 'gw', '--trust', 'trust.cbor', '--update', 'm.cose', '--image', 'image.bin', '--json'];
    const missing = await w.run(...base);
    expect(missing.status).toBe(1);
    expect(JSON.parse(missing.out)).toMatchObject({ ok: false, code: CODES.LOG_PROOF_MISSING, state: { pending: false } });
    // The newest checkpoint (earlier cases may have signed one) gets the one witness cosignature the policy needs.
    expectOk(await w.run('log', 'cosign', 'tlog/checkpoint.note', '--key', 'w1.key', '--log', 'tlog'));
    expectOk(await w.run('log', 'prove', 'tlog', '--entry', 'm.cose', '--device-proof', 'gw.logproof'));
    const installed = await w.run(...base, '--log-proof', 'gw.logproof');
    expectOk(installed);
    expect(JSON.parse(installed.out)).toMatchObject({ ok: true, state: { pending: true } });
    expectUsage(
      await w.run(
        'device',
        'run',
        '--broker',
        'mqtt://127.0.0.1:1',
        '--id',
        'x',
        '--group',
        'g',
        '--trust',
        'trust.cbor',
        '--device-class',
        'acme-gw',
        '--state',
        'gw',
        '--log-proof',
        'gw.logproof',
      ),
    );
  });
});
