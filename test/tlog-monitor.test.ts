/**
 * `fwseal log monitor` (issue 19 item 4): from the checkpoint seen last, the log is proven consistent,
 * every new entry is listed per signing key, and exit 1 names what the owner did not expect: a key
 * not in the trust bundle, a revoked key, a device class not expected, a forked log.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toHex } from '../shared/bytes.js';
import { type CliWorld, expectOk, expectRejected, makeCliWorld } from './support/cli-world.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeRevocations, standardWorld } from './support/fixtures.js';

const ORIGIN = 'example.com/monitored';
const S = standardWorld();
const X = detKey('not a release key');
let w: CliWorld;
let k = 0;
const manifest = (signers: Parameters<typeof makeManifestEnvelope>[1], fields: Parameters<typeof makeManifest>[1] = {}) =>
  w.write(`m${k++}.cose`, makeManifestEnvelope(makeManifest(detBytes(64, `monitor ${k}`), { securityCounter: 20 + k, ...fields }), signers));

async function appendAndCheckpoint(dir: string, ...files: string[]): Promise<void> {
  expectOk(await w.run('log', 'append', dir, ...files));
  expectOk(await w.run('log', 'checkpoint', dir, '--key', 'logkey.key'));
}

const monitor = (...extra: string[]) => w.run('log', 'monitor', '--log', 'tlog', '--trust', 'trust.cbor', ...extra);

beforeAll(async () => {
  w = await makeCliWorld(['logkey', 'other']);
  w.write('trust.cbor', S.trust);
  w.write('rl.cbor', makeRevocations({ version: 1, keyIds: [S.R3.keyId], signers: [S.A, S.B] }));
  expectOk(await w.run('log', 'init', 'tlog', '--origin', ORIGIN, '--key', 'logkey.pub'));
  await appendAndCheckpoint('tlog', manifest([S.R1, S.R2]), 'trust.cbor');
}, 60_000);
afterAll(() => w.close());

describe('fwseal log monitor', () => {
  it('lists every entry per signing key and saves the checkpoint it reached (exit 0)', async () => {
    const r = await monitor('--save', 'seen.note', '--json');
    expectOk(r);
    const report = JSON.parse(r.out);
    expect(report).toMatchObject({ origin: ORIGIN, fromSize: 0, toSize: 2, findings: [] });
    expect(report.byKey[toHex(S.R1.keyId)]).toEqual([0]);
    expect(report.byKey[toHex(S.A.keyId)]).toEqual([1]);
    expect(report.entries.map((e: { kind: string }) => e.kind)).toEqual(['manifest', 'trust-bundle']);
    expect(readFileSync(w.path('seen.note'), 'utf8')).toBe(readFileSync(w.path('tlog/checkpoint.note'), 'utf8'));
  });

  it('a manifest signed by a key the trust bundle does not list: KEY_NOT_IN_TRUST, exit 1, only new entries examined', async () => {
    await appendAndCheckpoint('tlog', manifest([X, S.R1]));
    const r = await monitor('--since', 'seen.note', '--save', 'seen.note', '--json');
    expectRejected(r, 'KEY_NOT_IN_TRUST');
    const report = JSON.parse(r.out);
    expect(report).toMatchObject({ fromSize: 2, toSize: 3 });
    expect(report.findings).toEqual([{ index: 2, error: 'KEY_NOT_IN_TRUST', code: 806, keyId: toHex(X.keyId) }]);
    // Not saved after findings: the next run looks at the entry again.
    expect(readFileSync(w.path('seen.note'), 'utf8')).toMatch(new RegExp(`^${ORIGIN}\n2\n`));
  });

  it('a signature by a revoked key: REVOKED_KEY; a release for another device class: WRONG_DEVICE_CLASS', async () => {
    w.write('seen3.note', readFileSync(w.path('tlog/checkpoint.note')));
    await appendAndCheckpoint('tlog', manifest([S.R3, S.R1]), manifest([S.R1, S.R2], { deviceClass: 'other-board' }));
    const r = await monitor('--since', 'seen3.note', '--revocations', 'rl.cbor', '--device-class', 'acme-gw', '--json');
    expectRejected(r, 'REVOKED_KEY');
    expect(JSON.parse(r.out).findings.map((f: { index: number; error: string }) => [f.index, f.error])).toEqual([
      [3, 'REVOKED_KEY'],
      [4, 'WRONG_DEVICE_CLASS'],
    ]);
    w.write('seen5.note', readFileSync(w.path('tlog/checkpoint.note')));
    expectOk(await monitor('--since', 'seen5.note', '--revocations', 'rl.cbor', '--device-class', 'acme-gw'));
  });

  it('a checkpoint seen from a fork of the log (same origin and key, other entries): LOG_INVALID, exit 1', async () => {
    expectOk(await w.run('log', 'init', 'fork', '--origin', ORIGIN, '--key', 'logkey.pub'));
    await appendAndCheckpoint('fork', manifest([S.R1, S.R2]));
    expectRejected(await monitor('--since', 'fork/checkpoint.note'), 'LOG_INVALID');
    // A pinned log key that is not the log's: its checkpoints do not open.
    expectRejected(await monitor('--log-key', 'other.pub'), 'BAD_SIGNATURE');
  });
});
