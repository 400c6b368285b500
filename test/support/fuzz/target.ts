/**
 * What a fuzz target is: something that builds one prepared call (a FuzzCase) from a PRNG stream
 * and the shared corpus of valid inputs. The targets themselves are grouped by input kind:
 * signed-object bytes (signed-object-target.ts), image streams, chunks, proofs and digest pages
 * (image-targets.ts), wrongly typed API arguments (api-target.ts).
 */
import { type Rng } from './rng.js';

/** One prepared call: what was fed, how to call, and whether acceptance would be legitimate. */
export type FuzzCase = {
  /** The mutated input (for the report: printed as hex). */
  readonly input: Uint8Array;
  /** Which argument was mutated, and how. */
  readonly note: string;
  /** The mutators applied, in order. */
  readonly ops: readonly string[];
  run(): unknown;
  /** Called only when the call accepted: true when the input is one this target may accept. */
  legit(): boolean;
};

export type FuzzTarget = {
  readonly name: string;
  /** Relative share of the runs. */
  readonly weight: number;
  make(rng: Rng, corpus: readonly Uint8Array[]): FuzzCase;
  /** null when the target's valid inputs are accepted as they are (checked once per world). */
  selfCheck?(): string | null;
};

/** Chunk and page indices of the wrong type or out of range: every API that takes an index must refuse them. */
export const WEIRD_INDEX: readonly unknown[] = [-1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 53), 2 ** 32, '0', null, undefined, 1n, [], {}];

/** A value as notes and findings print it (JSON.stringify alone loses bigints, NaN and typed arrays). */
export function describe(x: unknown): string {
  if (typeof x === 'bigint') return `${x}n`;
  if (typeof x === 'function') return 'function';
  if (x instanceof Map) return 'Map';
  if (ArrayBuffer.isView(x) || x instanceof ArrayBuffer) return (x as object).constructor.name;
  try {
    return JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)) ?? String(x);
  } catch {
    return String(x);
  }
}
