/**
 * Memory of a QuickJS runtime, as these builds count it (read before trusting a limit): the WASM
 * builds have no malloc_usable_size, so QuickJS's allocator accounts every live block as 8 bytes
 * (its MALLOC_OVERHEAD) whatever its real size, and `setMemoryLimit(n)` refuses an allocation when
 * `8 * live blocks + requested size > n`. It therefore bounds the number of live allocations and
 * the largest single one, not bytes: ten live 100 KB typed arrays fit under a "128 KB" limit.
 * The byte figure is QuickJS's own estimate of live memory, `memory_used_size` of
 * JS_ComputeMemoryUsage (objects, shapes, atoms, strings, bytecode, array buffer contents), read
 * with a VM's `memory()` and sampled during a run by `measurePeak` from the interrupt handler.
 */
import { type QuickJSRuntime } from 'quickjs-emscripten-core';
export type MemorySample = {
  /** QuickJS's estimate of live bytes (memory_used_size of JS_ComputeMemoryUsage). */
  readonly usedBytes: number;
  /** Live malloc blocks (malloc_count). */
  readonly blocks: number;
  /** What the runtime's limit is compared with: 8 bytes per live block in these builds (malloc_size). */
  readonly accountedBytes: number;
  /** The limit set with setMemoryLimit (0 or -1: none). */
  readonly limit: number;
};

/** Parse JS_DumpMemoryUsage's text (the same numbers as computeMemoryUsage, without allocating in the VM). */
export function parseMemoryDump(dump: string): MemorySample {
  const num = (re: RegExp, i: number): number => {
    const m = re.exec(dump);
    return m ? Number(m[i]) : 0;
  };
  return {
    usedBytes: num(/^memory used\s+(\d+)\s+(\d+)/m, 2),
    blocks: num(/^memory allocated\s+(\d+)\s+(\d+)/m, 1),
    accountedBytes: num(/^memory allocated\s+(\d+)\s+(\d+)/m, 2),
    limit: num(/malloc limit: (-?\d+)/, 1),
  };
}

export type PeakOptions = {
  /** Interrupt the run (InternalError: interrupted) as soon as a sample exceeds this many used bytes. */
  readonly interruptAboveUsedBytes?: number;
};

export type PeakReport<T> = {
  readonly result: T;
  readonly before: MemorySample;
  readonly after: MemorySample;
  /** Highest usedBytes and blocks seen (before, at every interrupt poll, after). */
  readonly peakUsedBytes: number;
  readonly peakBlocks: number;
  /** Interrupt polls sampled (QuickJS polls about every 10,000 calls and back-jumps). */
  readonly samples: number;
  readonly interrupted: boolean;
  readonly ms: number;
};

/** Run `fn` (which calls into the VM of `runtime`) while sampling `memory()` at every interrupt poll. */
export function measurePeak<T>(runtime: QuickJSRuntime, memory: () => MemorySample, fn: () => T, opts: PeakOptions = {}): PeakReport<T> {
  const before = memory();
  let peakUsedBytes = before.usedBytes;
  let peakBlocks = before.blocks;
  let samples = 0;
  let interrupted = false;
  runtime.setInterruptHandler(() => {
    const s = memory();
    samples++;
    if (s.usedBytes > peakUsedBytes) peakUsedBytes = s.usedBytes;
    if (s.blocks > peakBlocks) peakBlocks = s.blocks;
    if (opts.interruptAboveUsedBytes !== undefined && s.usedBytes > opts.interruptAboveUsedBytes) interrupted = true;
    return interrupted;
  });
  const t0 = performance.now();
  let result: T;
  try {
    result = fn();
  } catch (e) {
    if (!interrupted) throw e;
    throw new Error(`interrupted: QuickJS used ${peakUsedBytes} bytes, above ${opts.interruptAboveUsedBytes} (${String(e)})`);
  } finally {
    runtime.removeInterruptHandler();
  }
  const ms = performance.now() - t0;
  const after = memory();
  peakUsedBytes = Math.max(peakUsedBytes, after.usedBytes);
  peakBlocks = Math.max(peakBlocks, after.blocks);
  return { result, before, after, peakUsedBytes, peakBlocks, samples, interrupted, ms };
}

/**
 * The smallest runtime.setMemoryLimit (in the builds' own accounting, see above) for which
 * `run(limit)` succeeds, by bisection between `low` (fails) and `high` (succeeds), to `step` bytes.
 */
export async function smallestMemoryLimit(run: (limit: number) => Promise<boolean>, low: number, high: number, step = 256): Promise<number> {
  if (!(await run(high))) throw new Error(`the run fails even with a limit of ${high}`);
  while (high - low > step) {
    const mid = Math.floor((low + high) / 2);
    if (await run(mid)) high = mid;
    else low = mid;
  }
  return high;
}
