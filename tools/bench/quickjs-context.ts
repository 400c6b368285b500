/**
 * What the measurement steps of the "quickjs" bench section (tools/bench/quickjs.ts) share: the
 * builds, the VM loaders, the section's rows and verdicts, and the timing helpers.
 */
import { type QuickJSVariantName, type VerifierVM } from '../../test/support/quickjs.js';
import { type BenchContext, MiB, type Row, type Samples, timeSync, type Verdict } from './common.js';
import { type Builds } from './quickjs-builds.js';

/** The noble builds need room for their tables (33 x 128 base-point multiples). */
export const BIG_LIMIT = 16 * MiB;

export const empty = (): Samples => ({ seconds: [], rssKiB: [] });

/** What every measurement step shares: the builds, the VM loaders and the section's rows and verdicts. */
export type QuickJsBench = {
  readonly ctx: BenchContext;
  readonly builds: Builds;
  readonly rows: Row[];
  readonly verdicts: Verdict[];
  /** A VM with our bundle / the noble-Ed25519 build. */
  readonly ours: (variant: QuickJSVariantName, memoryLimit?: number) => Promise<VerifierVM>;
  readonly noble: (variant: QuickJSVariantName, memoryLimit?: number) => Promise<VerifierVM>;
};

export const best = (s: Samples) => Math.min(...s.seconds);
export const timeEval = <T>(vm: VerifierVM, code: string): { seconds: number; value: T } => timeSync(() => vm.evalJson<T>(code));
export const findRow = (b: QuickJsBench, name: string) => b.rows.find((r) => r.name === name);
