/**
 * Bench "quickjs", SHA-256 MB/s: our bundle's `sha256` vs @noble/hashes in the same VM, on 1 MiB and
 * as 256 inputs of 4097 bytes (the per-chunk leaf hash), and node:crypto in Node for scale.
 */
import { createHash } from 'node:crypto';
import { nodeSha256 } from '../../host/hash.js';
import { type QuickJSVariantName } from '../../test/support/quickjs.js';
import { xorshift32Bytes } from '../../test/support/quickjs-harness.js';
import { MiB, row, timeSync, yieldToSignals } from './common.js';
import { best, empty, findRow, type QuickJsBench, timeEval } from './quickjs-context.js';

const SHA_GOAL = 2;
const SHA_BYTES = MiB;
const LEAF_INPUT = 4097;
const LEAF_COUNT = 256;
const SHA_SEED = 0x0bad_5eed;

const hexOf = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

// ---------- SHA-256 MB/s ----------

export type ShaInputs = { readonly shaInput: Uint8Array; readonly leafInput: Uint8Array; readonly want: { one: string; last: string } };

/** 1 MiB and 256 inputs of 4097 bytes, with their node:crypto digests (the VMs make the same bytes themselves). */
export function shaInputs(): ShaInputs {
  const shaInput = xorshift32Bytes(SHA_SEED, SHA_BYTES, SHA_BYTES);
  const leafInput = xorshift32Bytes(SHA_SEED + 1, LEAF_INPUT * LEAF_COUNT, LEAF_INPUT * LEAF_COUNT);
  const want = { one: hexOf(nodeSha256(shaInput)), last: hexOf(nodeSha256(leafInput.subarray((LEAF_COUNT - 1) * LEAF_INPUT))) };
  return { shaInput, leafInput, want };
}

export async function measureSha256InVm(b: QuickJsBench, variant: QuickJSVariantName, sha: ShaInputs, nobleRefSource: string): Promise<void> {
  const { ctx, rows } = b;
  const { want } = sha;
  ctx.log(`${variant}: SHA-256 of 1 MiB in the VM, ours vs @noble/hashes (${ctx.runs} runs; slow)`);
  const vm = await b.ours(variant);
  try {
    vm.evalJson(`${nobleRefSource}\n;undefined`);
    vm.evalJson(`(function () { var H = fwsealHarness;
      H.slots.one = new Uint8Array(${SHA_BYTES}); H.xorshift32Fill(${SHA_SEED}, H.slots.one);
      H.slots.leaves = new Uint8Array(${LEAF_INPUT * LEAF_COUNT}); H.xorshift32Fill(${SHA_SEED + 1}, H.slots.leaves);
      fwsealVerifier.sha256(H.slots.leaves.subarray(0, ${LEAF_INPUT})); nobleRef.sha256(H.slots.leaves.subarray(0, ${LEAF_INPUT})); })()`);
    const fns = { ours: 'fwsealVerifier.sha256', noble: 'nobleRef.sha256' } as const;
    const s = { ours: { one: empty(), leaves: empty() }, noble: { one: empty(), leaves: empty() } };
    for (let r = 0; r < ctx.runs; r++) {
      for (const which of ['noble', 'ours'] as const) {
        await yieldToSignals();
        const one = timeEval<string>(vm, `fwsealHarness.toHex(${fns[which]}(fwsealHarness.slots.one))`);
        if (one.value !== want.one) throw new Error(`${variant} ${which} sha256 of 1 MiB differs from node:crypto`);
        s[which].one.seconds.push(one.seconds);
        await yieldToSignals();
        const leaves = timeEval<string>(
          vm,
          `(function () { var b = fwsealHarness.slots.leaves, h = ${fns[which]}, d;
          for (var i = 0; i < ${LEAF_COUNT}; i++) d = h(b.subarray(i * ${LEAF_INPUT}, (i + 1) * ${LEAF_INPUT}));
          return fwsealHarness.toHex(d); })()`,
        );
        if (leaves.value !== want.last) throw new Error(`${variant} ${which} sha256 of 4097-byte inputs differs from node:crypto`);
        s[which].leaves.seconds.push(leaves.seconds);
      }
    }
    const leafBytes = LEAF_INPUT * LEAF_COUNT;
    rows.push(row(`${variant} sha256 1 MiB, noble`, SHA_BYTES, s.noble.one, null, '@noble/hashes sha256, one call'));
    rows.push(row(`${variant} sha256 1 MiB, ours`, SHA_BYTES, s.ours.one, best(s.noble.one), 'fwsealVerifier.sha256, one call'));
    rows.push(row(`${variant} sha256 256x4097 B, noble`, leafBytes, s.noble.leaves, null, '256 calls of 4097 bytes'));
    rows.push(row(`${variant} sha256 256x4097 B, ours`, leafBytes, s.ours.leaves, best(s.noble.leaves), '256 calls of 4097 bytes'));
    for (const [label, name] of [
      ['1 MiB', `${variant} sha256 1 MiB, ours`],
      ['256x4097 B', `${variant} sha256 256x4097 B, ours`],
    ] as const) {
      const value = findRow(b, name)?.ratio ?? null;
      b.verdicts.push({
        name: `sha256 ${label} (${variant})`,
        goal: SHA_GOAL,
        value,
        pass: value !== null && value >= SHA_GOAL,
        basis: `noble best / ours best in the same VM, ${ctx.runs} runs each`,
      });
    }
  } finally {
    vm.dispose();
  }
}

/** node:crypto, for scale: enough repetitions per run to time well. */
export async function measureNodeSha256(b: QuickJsBench, sha: ShaInputs): Promise<void> {
  const { ctx, rows } = b;
  const { shaInput, leafInput } = sha;
  const reps = 64;
  const one = empty();
  const leaves = empty();
  for (let r = 0; r < ctx.runs; r++) {
    await yieldToSignals();
    one.seconds.push(
      timeSync(() => {
        for (let i = 0; i < reps; i++) createHash('sha256').update(shaInput).digest();
      }).seconds,
    );
    leaves.seconds.push(
      timeSync(() => {
        for (let i = 0; i < reps; i++)
          for (let j = 0; j < LEAF_COUNT; j++)
            createHash('sha256')
              .update(leafInput.subarray(j * LEAF_INPUT, (j + 1) * LEAF_INPUT))
              .digest();
      }).seconds,
    );
  }
  rows.push(row('node sha256 1 MiB, node:crypto', reps * SHA_BYTES, one, null, `in Node, ${reps} x 1 MiB per run, for scale`));
  rows.push(row('node sha256 256x4097 B, node:crypto', reps * LEAF_INPUT * LEAF_COUNT, leaves, null, `in Node, ${reps} x 256 x 4097 B per run, for scale`));
}
