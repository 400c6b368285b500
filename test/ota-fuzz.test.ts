/**
 * The OTA server fuzzer (test/support/ota-fuzz.ts; tools/fuzz-ota.ts runs it for `npm run fuzz`)
 * against a live `fwseal serve` (issue 11): a few hundred seeded cases of status-event and
 * reply-topic abuse break none of its invariants (SPEC.md §12.4, §12.9, §12.11).
 */
import { describe, expect, it } from 'vitest';
import { fuzzOtaServer } from './support/ota-fuzz.js';

describe('OTA server fuzzing', () => {
  it('300 cases of forged status events and steered replies: no counted forgery, no publish elsewhere, no crash', async () => {
    const r = await fuzzOtaServer({ runs: 300, seed: 1, deadlineMs: 90_000 });
    expect(r.failures).toEqual([]);
    expect(r.cases).toBe(300);
  }, 150_000);
});
