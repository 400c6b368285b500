/**
 * The SMP fuzzer in `npm test` (issue 11, SPEC.md §13.7): a few hundred cases of offset/length/type
 * abuse, lying packets and random frames against an in-process simulated device; every request is
 * answered, nothing throws, no handler fails, nothing large is allocated, echo works after each case.
 * Long runs: `npm run fuzz` (tools/fuzz-smp.ts, same engine). A fuzzer that stops reaching the
 * checks, or cannot fail, fails here too.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createVerifier } from '../device/index.js';
import { nodeSha256 } from '../host/hash.js';
import { fuzzSmp, type SmpFuzzReport } from './support/smp-fuzz.js';

const SEED = 0x5eed;
const RUNS = 300;

describe(`fuzzing the simulated device over SMP: ${RUNS} cases, seed ${SEED}`, () => {
  let report: SmpFuzzReport;
  beforeAll(async () => {
    report = await fuzzSmp({ runs: RUNS, seed: SEED });
  }, 120_000);

  it('every request is answered and the device keeps serving', () => {
    expect(report.cases).toBe(RUNS);
    expect(report.failures).toEqual([]);
  });

  it('reaches the checks: every kind of refusal, accepted envelopes and unsupported commands', () => {
    for (const key of [
      'ok',
      'rc 3 BAD_VALUE',
      'rc 3 WRONG_TYPE',
      'rc 3 MISSING_FIELD',
      'rc 3 TOO_LARGE',
      'rc 3 DUPLICATE_KEY',
      'rc 3 TRAILING_BYTES',
      'rc 9 TRUNCATED',
      'rc 8',
      'rc 2 SLOT_TOO_SMALL',
      'envelope code 0',
      'sent garbage',
    ]) {
      expect(report.coverage[key] ?? 0, key).toBeGreaterThan(0);
    }
  });

  it('can fail: a device whose verifier throws is reported (handler failed), with the seed and case', async () => {
    const broken = {
      ...createVerifier({ sha256: nodeSha256 }),
      verifyTrustUpdate: () => {
        throw new Error('broken verifier');
      },
    };
    const r = await fuzzSmp({ runs: 60, seed: SEED, verifier: broken });
    expect(r.failures.length).toBeGreaterThan(0);
    expect(r.failures[0]).toMatch(new RegExp(`^seed ${SEED} case \\d+: handler failed`));
  }, 120_000);

  it('refuses a misuse of its own options', async () => {
    await expect(fuzzSmp({ runs: -1, seed: 1 })).rejects.toThrow(RangeError);
    await expect(fuzzSmp({ runs: 1, seed: 2 ** 32 })).rejects.toThrow(RangeError);
  });
});
