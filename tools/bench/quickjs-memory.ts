/**
 * Bench "quickjs", memory: the 128 KB flow of test/quickjs.test.ts with QuickJS's own figures, and
 * the smallest setMemoryLimit that runs it (and its signature part, also in the noble build).
 */

import { type QuickJSVariantName, type VerifierVM } from '../../test/support/quickjs.js';
import { flowSource, type flowWorld, loadFlowInputs } from '../../test/support/quickjs-flow.js';
import { smallestMemoryLimit } from '../../test/support/quickjs-memory.js';
import { MiB, row, valueRow, yieldToSignals } from './common.js';
import { BIG_LIMIT, type QuickJsBench } from './quickjs-context.js';

export const FLOW_LIMIT = 128 * 1024;

const FLOW_OK = JSON.stringify({ loadTrust: 0, verifyRevocations: 0, verifyManifest: 0, signers: 2, image: 0 });
const SIG_PART_OK = JSON.stringify({ loadTrust: 0, verifyRevocations: 0, verifyManifest: 0, signers: 2 });

// ---------- memory: the 128 KB flow ----------

type Loader = (v: QuickJSVariantName, limit?: number) => Promise<VerifierVM>;

/** One run of the flow (or its signature part) under a memory limit: true when every step passed. */
async function runFlow(flow: ReturnType<typeof flowWorld>, load: Loader, variant: QuickJSVariantName, limit: number, withImage: boolean): Promise<boolean> {
  let vm: VerifierVM | undefined;
  try {
    vm = await load(variant, limit);
    loadFlowInputs(vm, flow);
    return JSON.stringify(vm.evalJson(flowSource({ withImage }))) === (withImage ? FLOW_OK : SIG_PART_OK);
  } catch {
    return false;
  } finally {
    vm?.dispose();
  }
}

/** The smallest memory limit `run` passes with, bisected between low and high (or up to BIG_LIMIT). */
async function smallest(label: string, run: (limit: number) => Promise<boolean>, low: number, high: number, step: number): Promise<string> {
  await yieldToSignals();
  if (await run(low)) return `<= ${low}`;
  if (!(await run(high))) {
    if (!(await run(BIG_LIMIT))) throw new Error(`${label}: fails even with setMemoryLimit(${BIG_LIMIT})`);
    return String(await smallestMemoryLimit(run, high, BIG_LIMIT, step));
  }
  return String(await smallestMemoryLimit(run, low, high, step));
}

export async function measureFlowMemory(b: QuickJsBench, variant: QuickJSVariantName, flow: ReturnType<typeof flowWorld>): Promise<void> {
  const { ctx, rows } = b;
  ctx.log(`${variant}: the 128 KB flow (peak heap, smallest memory limit)`);
  for (const [which, load, limit] of [
    ['ours', b.ours, FLOW_LIMIT],
    ['noble', b.noble, BIG_LIMIT],
  ] as const) {
    await yieldToSignals();
    const vm = await load(variant, limit);
    try {
      loadFlowInputs(vm, flow);
      const base = vm.memory();
      const p = vm.measurePeak(() => vm.evalJson(flowSource()));
      if (JSON.stringify(p.result) !== FLOW_OK) throw new Error(`${variant} ${which}: the 128 KB flow failed: ${JSON.stringify(p.result)}`);
      const tag = `${variant} flow, ${which === 'ours' ? 'ours' : 'noble-Ed25519 build'}`;
      const limitNote = `setMemoryLimit(${limit})`;
      rows.push(
        row(
          `${tag}`,
          MiB,
          { seconds: [p.ms / 1000], rssKiB: [] },
          null,
          `one run under ${limitNote}: trust, revocations, 3-sig manifest, 1 MiB in 4 KiB pieces`,
        ),
      );
      rows.push(
        valueRow(
          `${tag}: bundle loaded`,
          vm.afterBundle.usedBytes,
          'B',
          `QuickJS memory_used_size after evaluating the bundle; ${vm.afterBundle.blocks} live blocks = ${vm.afterBundle.accountedBytes} B accounted`,
        ),
      );
      rows.push(valueRow(`${tag}: peak used`, p.peakUsedBytes, 'B', `QuickJS memory_used_size, max over ${p.samples} interrupt samples`));
      rows.push(valueRow(`${tag}: peak over inputs`, p.peakUsedBytes - base.usedBytes, 'B', 'peak used minus used once bundle and inputs were loaded'));
      rows.push(valueRow(`${tag}: peak accounted`, 8 * p.peakBlocks, 'B', `${p.peakBlocks} live blocks x 8 B, what setMemoryLimit compares`));
    } finally {
      vm.dispose();
    }
  }
  const full = await smallest(`${variant} flow`, (l) => runFlow(flow, b.ours, variant, l, true), 16 * 1024, FLOW_LIMIT, 512);
  rows.push(
    valueRow(
      `${variant} flow, ours: smallest limit`,
      Number(full.replace('<= ', '')),
      'B',
      `smallest setMemoryLimit (512 B steps) for the whole flow${full.startsWith('<=') ? ' (or lower)' : ''}`,
    ),
  );
  for (const [which, load] of [
    ['ours', b.ours],
    ['noble', b.noble],
  ] as const) {
    const sig = await smallest(`${variant} ${which} signatures`, (l) => runFlow(flow, load, variant, l, false), 16 * 1024, FLOW_LIMIT, 512);
    rows.push(
      valueRow(
        `${variant} signatures only, ${which}: smallest limit`,
        Number(sig.replace('<= ', '')),
        'B',
        `trust + revocations + 3-sig manifest, no image${which === 'noble' ? ', noble-Ed25519 build' : ''}${sig.startsWith('<=') ? ' (or lower)' : ''}`,
      ),
    );
  }
}
