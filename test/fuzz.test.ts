/**
 * The fuzzer in `npm test` (issue: fuzzing): 20,000 mutated and random envelopes, trust bundles,
 * revocation lists, images, chunks, proofs and wrongly typed arguments; none may crash, hang, return
 * a malformed result or be accepted. The long runs (`npm run fuzz -- --runs 1000000`) use the same
 * engine. A fuzzer that silently stops reaching the deep checks, or cannot fail, fails here too.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { bytesEqual, toHex } from '../shared/bytes.js';
import { CborTag, decodeCbor, encodeCbor } from '../shared/cbor.js';
import { CODES, fail } from '../shared/codes.js';
import { type Finding, type FuzzReport } from './support/fuzz/report.js';
import { Rng } from './support/fuzz/rng.js';
import { makeCase, runFuzz } from './support/fuzz/runner.js';
import { bytesTarget, legitimateInputs } from './support/fuzz/signed-object-target.js';
import { type FuzzTarget } from './support/fuzz/target.js';
import { defaultWorld } from './support/fuzz/world.js';

const SEED = 0x5eed;
const RUNS = 20_000;

function describeFindings(findings: readonly Finding[]): string {
  return findings.map((f) => `${f.kind} ${f.target} seed ${f.seed} case ${f.case} (${f.note}): ${f.message}\n  input ${f.inputHex.slice(0, 400)}`).join('\n');
}

describe(`fuzzing the verifier: ${RUNS} cases, seed ${SEED}`, () => {
  let report: FuzzReport;
  beforeAll(() => {
    report = runFuzz({ runs: RUNS, seed: SEED });
  }, 240_000);

  it('runs every case', () => {
    expect(report.runs).toBe(RUNS);
    expect(Object.values(report.byTarget).reduce((n, t) => n + t.runs, 0)).toBe(RUNS);
  });

  it('no input crashes the verifier', () => {
    expect(report.counts.crashes, describeFindings(report.crashes)).toBe(0);
  });

  it('no call hangs (every call returns within 1 s)', () => {
    expect(report.counts.hangs, describeFindings(report.hangs)).toBe(0);
    expect(report.slowestMs).toBeLessThan(1000);
  });

  it('every result is well formed: a known numeric code and error === codeName(code)', () => {
    expect(report.counts.badResults, describeFindings(report.badResults)).toBe(0);
  });

  it('no mutated input is accepted', () => {
    expect(report.counts.accepted, describeFindings(report.accepted)).toBe(0);
  });

  it('reaches every stage: decoder, envelope, schemas, signatures, policy and image checks', () => {
    const reached = new Set(Object.keys(report.byCode));
    const expected = [
      // CBOR decoder
      'MALFORMED',
      'TRUNCATED',
      'TRAILING_BYTES',
      'NON_DETERMINISTIC',
      'TOO_LARGE',
      'TOO_DEEP',
      'UNSUPPORTED_FORMAT',
      // envelope and payload schemas
      'BAD_HEADER',
      'WRONG_TYPE',
      'WRONG_KIND',
      'MISSING_FIELD',
      'UNKNOWN_KEY',
      'DUPLICATE_KEY',
      'BAD_VALUE',
      // signatures
      'UNSUPPORTED_ALGORITHM',
      'THRESHOLD_NOT_MET',
      'TRUST_THRESHOLD_NOT_MET',
      'ROTATION_NOT_AUTHORIZED',
      'REVOCATION_THRESHOLD_NOT_MET',
      // policy
      'ROLLBACK',
      'WRONG_DEVICE_CLASS',
      'REVOKED_KEY',
      'REVOKED_MANIFEST',
      'REVOCATION_ROLLBACK',
      'TRUST_ROLLBACK',
      'TRUST_VERSION_SKIP',
      'INVALID_STATE',
      'INVALID_ARGUMENT',
      // image
      'IMAGE_TOO_LONG',
      'IMAGE_TOO_SHORT',
      'CHUNK_DIGEST_MISMATCH',
      'MERKLE_ROOT_MISMATCH',
      'CHUNK_INDEX_OUT_OF_RANGE',
      'PROOF_INVALID',
      'DIGEST_PAGE_MISMATCH',
    ];
    expect(
      expected.filter((c) => !reached.has(c)),
      JSON.stringify(report.byCode),
    ).toEqual([]);
  });

  it('reaches the schema checks behind the decoder and the signature checks behind the schemas, for every signed-object target', () => {
    const schema = ['MISSING_FIELD', 'UNKNOWN_KEY', 'BAD_VALUE', 'WRONG_KIND', 'UNSUPPORTED_FORMAT', 'DUPLICATE_KEY'];
    const signature = Object.entries(CODES)
      .filter(([, n]) => n >= 200 && n < 300)
      .map(([name]) => name);
    for (const [name, t] of Object.entries(report.byTarget)) {
      if (name === 'imageVerifier' || name === 'chunk' || name === 'api-types') continue;
      const codes = Object.keys(t.codes);
      expect(codes.filter((c) => schema.includes(c)).length, `${name}: ${JSON.stringify(t.codes)}`).toBeGreaterThan(0);
      expect(codes.filter((c) => signature.includes(c)).length, `${name}: ${JSON.stringify(t.codes)}`).toBeGreaterThan(0);
    }
    // The deep checks are reached often, not by luck.
    const deep = schema.reduce((n, c) => n + (report.byCode[c] ?? 0), 0);
    expect(deep).toBeGreaterThan(RUNS / 50);
    expect(report.byCode.THRESHOLD_NOT_MET).toBeGreaterThan(RUNS / 100);
  });

  it('uses every mutator', () => {
    for (const op of [
      'flip1',
      'flipN',
      'byte',
      'head-set',
      'head-insert',
      'truncate',
      'extend',
      'splice',
      'duplicate',
      'delete',
      'nest',
      'nest-whole',
      'wrongType',
      'random',
      'substitute',
      'policy',
    ]) {
      expect(report.byMutator[op] ?? 0, op).toBeGreaterThan(20);
    }
    const structural = Object.entries(report.byMutator).filter(([op]) => op.startsWith('struct-'));
    expect(structural.length).toBeGreaterThanOrEqual(10);
    expect(structural.reduce((n, [, k]) => n + k, 0)).toBeGreaterThan(RUNS / 10);
  });
});

describe('the fuzzer is reproducible', () => {
  it('case n of seed s is the same input whatever ran before it', () => {
    const { targets, corpus } = defaultWorld();
    for (const n of [0, 1, 17, 4096, 999_999]) {
      const a = makeCase(SEED, n, targets, corpus);
      const b = makeCase(SEED, n, targets, corpus);
      expect(a.target.name).toBe(b.target.name);
      expect(toHex(a.fuzzCase.input)).toBe(toHex(b.fuzzCase.input));
      expect(a.fuzzCase.note).toBe(b.fuzzCase.note);
    }
    const other = makeCase(SEED + 1, 17, targets, corpus);
    expect(
      toHex(other.fuzzCase.input) === toHex(makeCase(SEED, 17, targets, corpus).fuzzCase.input) &&
        other.fuzzCase.note === makeCase(SEED, 17, targets, corpus).fuzzCase.note,
    ).toBe(false);
  });

  it('a run split into strided parts gives the same result as one run', () => {
    const whole = runFuzz({ runs: 400, seed: 7 });
    const parts = [0, 1].map((first) => runFuzz({ runs: 400, seed: 7, first, stride: 2 }));
    expect(parts[0].runs + parts[1].runs).toBe(400);
    const merged: Record<string, number> = {};
    for (const p of parts) for (const [c, n] of Object.entries(p.byCode)) merged[c] = (merged[c] ?? 0) + n;
    expect(merged).toEqual(whole.byCode);
  });

  it('the PRNG is sfc32 with independent streams per case, not Math.random', () => {
    const a = new Rng(1, 2);
    const b = new Rng(1, 2);
    const xs = Array.from({ length: 8 }, () => a.u32());
    expect(Array.from({ length: 8 }, () => b.u32())).toEqual(xs);
    expect(new Rng(1, 3).u32()).not.toBe(new Rng(1, 2).u32());
  });
});

describe('the fuzzer can fail', () => {
  const base = defaultWorld().corpus[0];
  const reject = () => fail('MALFORMED', 'broken target');

  it('reports a target that throws, with the seed, case and input to replay it', () => {
    const throwsOnShort: FuzzTarget = bytesTarget('throws', 1, { accept: [base] }, (b) => {
      if (b.length < base.length) throw new RangeError('index out of range');
      return reject();
    });
    const r = runFuzz({ runs: 300, seed: 3, targets: [throwsOnShort] });
    expect(r.counts.crashes).toBeGreaterThan(10);
    const f = r.crashes[0];
    expect(f.message).toContain('RangeError');
    expect(f.inputHex.length / 2).toBeLessThan(base.length);
    // The reported case replays to the same input.
    expect(toHex(makeCase(3, f.case, [throwsOnShort], [base]).fuzzCase.input)).toBe(f.inputHex);
  });

  it('reports a target that accepts everything, except the unchanged valid input', () => {
    const acceptsAll = bytesTarget('accepts-all', 1, { accept: [base] }, () => ({ ok: true, code: 0, error: 'OK' }));
    const r = runFuzz({ runs: 300, seed: 4, targets: [acceptsAll] });
    expect(r.counts.accepted).toBeGreaterThan(250);
    expect(r.counts.accepted + r.counts.legitAccepted).toBe(300);
    for (const f of r.accepted) expect(f.inputHex).not.toBe(toHex(base));
  });

  it('reports malformed results: unknown codes, names that do not match, non-objects', () => {
    const results: unknown[] = [
      { ok: false, code: 999, error: 'UNKNOWN_999' },
      { ok: false, code: CODES.TRUNCATED, error: 'MALFORMED' },
      { ok: false, code: '101', error: 'TRUNCATED' },
      { ok: true, code: 0 },
      undefined,
      false,
    ];
    let i = 0;
    const malformed = bytesTarget('malformed', 1, { accept: [base] }, () => results[i++ % results.length]);
    const r = runFuzz({ runs: 60, seed: 5, targets: [malformed] });
    expect(r.counts.badResults).toBe(60);
  });

  it('reports a call slower than the hang limit', () => {
    const slow = bytesTarget('slow', 1, { accept: [base] }, (b) => {
      if (b.length > base.length) for (const end = performance.now() + 30; performance.now() < end; );
      return reject();
    });
    const r = runFuzz({ runs: 100, seed: 6, targets: [slow], hangMs: 20 });
    expect(r.counts.hangs).toBeGreaterThan(0);
    expect(r.slowestMs).toBeGreaterThanOrEqual(20);
  });
});

describe('the acceptance oracle', () => {
  const envS = defaultWorld().corpus[0];
  const legit = legitimateInputs([envS]);
  const top = decodeCbor(envS);
  if (!top.ok || !(top.value instanceof CborTag)) throw new Error('fixture envelope does not decode');
  const [prot, unprot, payload, sigs] = top.value.value as [Uint8Array, Map<number, never>, Uint8Array, readonly (readonly unknown[])[]];
  const rebuild = (s: readonly unknown[], body = payload): Uint8Array => encodeCbor(new CborTag(98, [prot, unprot, body, s as never]));

  it('allows the valid input, and the same payload with all its signature entries (reordered, repeated, or next to extra entries)', () => {
    expect(bytesEqual(rebuild(sigs), envS)).toBe(true);
    expect(legit(envS)).toBe(true);
    expect(legit(rebuild([sigs[1], sigs[0]]))).toBe(true);
    expect(legit(rebuild([sigs[0], sigs[1], sigs[0]]))).toBe(true);
    // Unknown key ids are ignored, and a second entry by the same key counts once: still the same approval.
    const junk = [sigs[0][0], new Map([[4, new Uint8Array(16)]]), new Uint8Array(64)];
    const brokenCopy = [sigs[1][0], sigs[1][1], new Uint8Array(64)];
    expect(legit(rebuild([...sigs, junk]))).toBe(true);
    expect(legit(rebuild([brokenCopy, ...sigs]))).toBe(true);
  });

  it('counts anything else as a mutation that must be rejected', () => {
    const brokenCopy = [sigs[1][0], sigs[1][1], new Uint8Array(64)];
    expect(legit(rebuild(sigs, payload.subarray(1)))).toBe(false);
    expect(legit(rebuild([sigs[0]]))).toBe(false);
    expect(legit(rebuild([sigs[0], sigs[0]]))).toBe(false);
    expect(legit(rebuild([sigs[0], brokenCopy]))).toBe(false);
    expect(legit(envS.subarray(0, envS.length - 1))).toBe(false);
  });
});
