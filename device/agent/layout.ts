/**
 * The partition of one Flash used by the update agent and the boot agent (SPEC.md §11.1).
 *
 *   | state 0 | state 1 | manifest A | manifest B | trust 0 | trust 1 | revocations 0 | revocations 1 | progress | slot A | slot B |
 *
 * - state copies: one erase block each (device/agent/state-store.ts);
 * - manifest areas: [len u32 LE][envelope][pad], enough erase blocks for a largest envelope;
 * - trust areas and revocation areas: the same format, two of each: the state record names the one
 *   holding the current trust bundle / revocation list (and its digest); an update is written into
 *   the other one and then switched to by one state save (write-new-then-switch);
 * - progress: one writeAlign-sized word per chunk of the image being downloaded, written once;
 * - slots A and B: equal size, multiples of eraseBlockSize.
 * Every region starts on an erase-block boundary. Pure: no Node APIs.
 */
import { LIMITS } from '../../shared/limits.js';
import { type FlashGeometry } from './flash.js';

export type Region = { readonly offset: number; readonly size: number };

export type Layout = {
  readonly geometry: FlashGeometry;
  readonly state: readonly [Region, Region];
  readonly manifests: readonly [Region, Region];
  /** Two areas for the device's trust bundle (the state record names the current one). */
  readonly trustAreas: readonly [Region, Region];
  /** Two areas for the device's revocation list (the state record names the current one). */
  readonly revocationAreas: readonly [Region, Region];
  readonly progress: Region;
  readonly slots: readonly [Region, Region];
  /** Most chunks the progress area can track. */
  readonly maxChunks: number;
};

export type LayoutOptions = {
  /** Bytes per slot (a multiple of eraseBlockSize). Default: as large as the flash allows. */
  readonly slotSize?: number;
  /** Chunks the progress area tracks. Default: slotSize / LIMITS.minChunkSize. */
  readonly maxChunks?: number;
  /** Where the partition starts (a multiple of eraseBlockSize). Default 0. */
  readonly offset?: number;
};

/** Bytes a manifest area needs: the length word plus the largest envelope, rounded to writeAlign. */
export const MANIFEST_HEADER_BYTES = 4;

const isPow2 = (n: number): boolean => Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;
const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;

/** Compute and validate a layout; throws RangeError when the flash cannot hold it. */
export function createLayout(geometry: FlashGeometry, options: LayoutOptions = {}): Layout {
  const { size, eraseBlockSize: E, writeAlign: W, erasedValue } = geometry;
  if (!isPow2(E) || !isPow2(W) || W > E) throw new RangeError('eraseBlockSize and writeAlign must be powers of two, writeAlign <= eraseBlockSize');
  if (!Number.isSafeInteger(size) || size <= 0 || size % E !== 0) throw new RangeError('flash size must be a positive multiple of eraseBlockSize');
  if (!Number.isInteger(erasedValue) || erasedValue < 0 || erasedValue > 255) throw new RangeError('erasedValue must be a byte');
  const start = options.offset ?? 0;
  if (!Number.isSafeInteger(start) || start < 0 || start % E !== 0) throw new RangeError('offset must be a multiple of eraseBlockSize');

  const manifestSize = roundUp(MANIFEST_HEADER_BYTES + LIMITS.maxEnvelopeBytes, E);
  const fixed = 2 * E + 6 * manifestSize;
  const progressFor = (chunks: number): number => Math.max(E, roundUp(chunks * W, E));

  let slotSize = options.slotSize;
  if (slotSize === undefined) {
    // Largest slot that fits with its default progress area.
    const room = size - start - fixed;
    slotSize = Math.floor(room / 2 / E) * E;
    while (slotSize > 0 && fixed + progressFor(options.maxChunks ?? Math.ceil(slotSize / LIMITS.minChunkSize)) + 2 * slotSize > size - start) slotSize -= E;
  }
  if (!Number.isSafeInteger(slotSize) || slotSize <= 0 || slotSize % E !== 0) throw new RangeError('slotSize must be a positive multiple of eraseBlockSize');
  const maxChunks = options.maxChunks ?? Math.ceil(slotSize / LIMITS.minChunkSize);
  if (!Number.isSafeInteger(maxChunks) || maxChunks < 1) throw new RangeError('maxChunks must be a positive integer');
  const progressSize = progressFor(maxChunks);

  let at = start;
  const take = (n: number): Region => {
    const r = Object.freeze({ offset: at, size: n });
    at += n;
    return r;
  };
  const state = Object.freeze([take(E), take(E)] as const);
  const manifests = Object.freeze([take(manifestSize), take(manifestSize)] as const);
  const trustAreas = Object.freeze([take(manifestSize), take(manifestSize)] as const);
  const revocationAreas = Object.freeze([take(manifestSize), take(manifestSize)] as const);
  const progress = take(progressSize);
  const slots = Object.freeze([take(slotSize), take(slotSize)] as const);
  if (at > size) throw new RangeError(`layout needs ${at} bytes, the flash has ${size}`);
  return Object.freeze({
    geometry: Object.freeze({ size, eraseBlockSize: E, writeAlign: W, erasedValue }),
    state,
    manifests,
    trustAreas,
    revocationAreas,
    progress,
    slots,
    maxChunks,
  });
}

/** Bytes a layout with this slot size needs (for sizing a simulated flash). */
export function layoutBytes(eraseBlockSize: number, writeAlign: number, slotSize: number, maxChunks = Math.ceil(slotSize / LIMITS.minChunkSize)): number {
  const manifestSize = roundUp(MANIFEST_HEADER_BYTES + LIMITS.maxEnvelopeBytes, eraseBlockSize);
  return 2 * eraseBlockSize + 6 * manifestSize + Math.max(eraseBlockSize, roundUp(maxChunks * writeAlign, eraseBlockSize)) + 2 * slotSize;
}
