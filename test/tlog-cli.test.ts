/**
 * `fwseal log ...` end to end in-process (issue 19): init, append, checkpoint, prove, verify a proof
 * offline, cosign by witnesses and require K of them, consistency between checkpoints, show; the
 * exit status and `(code N)` of each refusal.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODES } from '../shared/codes.js';
import { type CliWorld, expectOk, expectRejected, expectUsage, makeCliWorld } from './support/cli-world.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';

const ORIGIN = 'example.com/acme-firmware';
let w: CliWorld;
const S = standardWorld();

beforeAll(async () => {
  w = await makeCliWorld(['logkey', 'w1', 'w2', 'other']);
  w.write('m.cose', S.envelope);
  w.write('trust.cbor', S.trust);
  for (let i = 0; i < 3; i++) w.write(`m${i}.cose`, makeManifestEnvelope(makeManifest(detBytes(64, `cli ${i}`), { securityCounter: 10 + i }), [S.R1, S.R2]));
  expectOk(await w.run('log', 'init', 'tlog', '--origin', ORIGIN, '--key', 'logkey.pub'));
  expectOk(await w.run('log', 'append', 'tlog', 'm.cose', 'trust.cbor'));
  expectOk(await w.run('log', 'checkpoint', 'tlog', '--key', 'logkey.key'));
  writeFileSync(w.path('first.note'), readFileSync(w.path('tlog/checkpoint.note')));
}, 60_000);
afterAll(() => w.close());

const verifyArgs = ['--log-key', 'logkey.pub', '--origin', ORIGIN];

describe('fwseal log', () => {
  it('append prints index and leaf hash; show lists kinds and signers', async () => {
    const r = await w.run('log', 'show', 'tlog', '--json');
    expectOk(r);
    const shown = JSON.parse(r.out);
    expect(shown).toMatchObject({ origin: ORIGIN, size: 2 });
    expect(shown.entries.map((e: { kind: string }) => e.kind)).toEqual(['manifest', 'trust-bundle']);
    expect(shown.entries[0].signers).toHaveLength(2);
    expect(shown.checkpoint).toMatch(new RegExp(`^${ORIGIN}\n2\n`));
  });

  it('prove --entry, then verify --proof offline with the log key: exit 0; another entry: LOG_INVALID, exit 1', async () => {
    expectOk(await w.run('log', 'prove', 'tlog', '--entry', 'm.cose', '--out', 'm.proof.json'));
    expectOk(await w.run('log', 'verify', '--proof', 'm.proof.json', '--entry', 'm.cose', ...verifyArgs));
    expectRejected(await w.run('log', 'verify', '--proof', 'm.proof.json', '--entry', 'trust.cbor', ...verifyArgs), 'LOG_INVALID');
    expectRejected(await w.run('log', 'verify', '--proof', 'm.proof.json', '--entry', 'm.cose', '--log-key', 'other.pub', '--origin', ORIGIN), 'BAD_SIGNATURE');
  });

  it('witnesses cosign a checkpoint; verify requires K of them (THRESHOLD_NOT_MET below K)', async () => {
    expectOk(await w.run('log', 'cosign', 'tlog/checkpoint.note', '--key', 'w1.key', '--log', 'tlog'));
    expectOk(await w.run('log', 'prove', 'tlog', '--index', '0', '--out', 'c.proof.json'));
    const witnesses = ['--witness', 'w1.pub', '--witness', 'w2.pub'];
    expectOk(await w.run('log', 'verify', '--proof', 'c.proof.json', '--entry', 'm.cose', ...verifyArgs, ...witnesses, '--witness-threshold', '1'));
    expectRejected(
      await w.run('log', 'verify', '--proof', 'c.proof.json', '--entry', 'm.cose', ...verifyArgs, ...witnesses, '--witness-threshold', '2'),
      'THRESHOLD_NOT_MET',
    );
    expectOk(await w.run('log', 'cosign', 'tlog/checkpoint.note', '--key', 'w2.key', '--log', 'tlog'));
    expectOk(await w.run('log', 'prove', 'tlog', '--index', '0', '--out', 'c2.proof.json'));
    const r = await w.run('log', 'verify', '--proof', 'c2.proof.json', '--entry', 'm.cose', ...verifyArgs, ...witnesses, '--json');
    expectOk(r);
    expect(JSON.parse(r.out)).toMatchObject({ valid: true, cosignatures: 2 });
    // The cosigned note still verifies as the log's own (the log key ignores the witness lines).
    expectOk(await w.run('log', 'verify', 'tlog'));
  });

  it('consistency from an old checkpoint to the newest verifies offline; a checkpoint of another log is a fork (exit 1)', async () => {
    expectOk(await w.run('log', 'append', 'tlog', 'm0.cose', 'm1.cose'));
    expectOk(await w.run('log', 'checkpoint', 'tlog', '--key', 'logkey.key'));
    expectOk(await w.run('log', 'consistency', 'tlog', '--from', 'first.note', '--out', 'step.json'));
    const r = await w.run('log', 'verify', '--consistency', 'step.json', '--from', 'first.note', ...verifyArgs, '--json');
    expectOk(r);
    expect(JSON.parse(r.out)).toMatchObject({ valid: true, oldSize: 2, newSize: 4 });
    // Another log with the same origin and key but other entries signs a checkpoint: a split view.
    expectOk(await w.run('log', 'init', 'fork', '--origin', ORIGIN, '--key', 'logkey.pub'));
    expectOk(await w.run('log', 'append', 'fork', 'm2.cose', 'm.cose'));
    expectOk(await w.run('log', 'checkpoint', 'fork', '--key', 'logkey.key'));
    expectRejected(await w.run('log', 'consistency', 'tlog', '--from', 'fork/checkpoint.note'), 'LOG_INVALID');
    expectRejected(await w.run('log', 'verify', '--consistency', 'step.json', '--from', 'fork/checkpoint.note', ...verifyArgs), 'LOG_INVALID');
  });

  it('verify DIR names a damaged log: LOG_INVALID (code 824), exit 1', async () => {
    expectOk(await w.run('log', 'init', 'bad', '--origin', ORIGIN, '--key', 'logkey.pub'));
    expectOk(await w.run('log', 'append', 'bad', 'm.cose'));
    const records = readFileSync(w.path('bad/records'));
    records[records.length - 1] ^= 0xff;
    writeFileSync(w.path('bad/records'), records);
    const r = await w.run('log', 'verify', 'bad');
    expectRejected(r, 'LOG_INVALID');
    expect(r.err).toContain(`(code ${CODES.LOG_INVALID})`);
  });

  it('refuses: a checkpoint by a key that is not the log key, a file that is not a signed object, an uncheckpointed entry', async () => {
    expectUsage(await w.run('log', 'checkpoint', 'tlog', '--key', 'other.key'), 'KEY_NOT_IN_TRUST');
    w.write('plain.txt', 'hello\n');
    expectUsage(await w.run('log', 'append', 'tlog', 'plain.txt'));
    expectUsage(await w.run('log', 'prove', 'tlog', '--index', '99'), 'NOT_FOUND');
    expectUsage(await w.run('log', 'prove', 'tlog'));
    expectUsage(await w.run('log', 'init', 'tlog', '--origin', ORIGIN, '--key', 'logkey.pub'), 'IO');
  });
});
