/**
 * The flash the update agent writes (SPEC.md §11). Models NOR/NAND-like parts: erase works on
 * whole erase blocks and sets every byte to `erasedValue`; a program operation writes `writeAlign`-
 * aligned data onto erased bytes only (no write without erase); reads return what is there.
 *
 * Implementations: device/sim/flash.ts (in memory, with fault injection: power cut before the Nth
 * operation, torn writes, bit flips, bad blocks) and device/node/file-flash.ts (a file or block
 * device). A power cut surfaces as a thrown PowerCut: the caller's state machine stops wherever it
 * was, and a new agent boots over the same flash.
 */
export type FlashGeometry = {
  /** Total bytes. */
  readonly size: number;
  /** Erase granularity in bytes (a power of two, e.g. 4096). */
  readonly eraseBlockSize: number;
  /** Program granularity: write offsets and lengths are multiples of this (e.g. 4 or 8). */
  readonly writeAlign: number;
  /** The value of an erased byte (0xff on NOR). */
  readonly erasedValue: number;
};

export interface Flash extends FlashGeometry {
  read(offset: number, length: number): Uint8Array;
  /** Erase [offset, offset + length): both multiples of eraseBlockSize. */
  erase(offset: number, length: number): void;
  /** Program data at offset (aligned; every target byte must be erased). */
  write(offset: number, data: Uint8Array): void;
  /**
   * Optional: read target.length bytes at offset into target (as Zephyr's flash_read), same checks
   * as read(). Hot paths (chunk read-back, slot verification) use it to avoid a buffer per read.
   */
  readInto?(offset: number, target: Uint8Array): void;
}

/** `length` bytes at `offset`: into `scratch` when the flash can read into a buffer and it is large enough (valid until the next call), else a fresh copy. */
export function readScratch(flash: Flash, offset: number, length: number, scratch: Uint8Array): Uint8Array {
  if (flash.readInto === undefined || length > scratch.length) return flash.read(offset, length);
  const target = scratch.subarray(0, length);
  flash.readInto(offset, target);
  return target;
}

/** The power went away before or during a flash operation (simulation only). */
export class PowerCut extends Error {
  constructor(readonly operation: number) {
    super(`power cut at flash operation ${operation}`);
    this.name = 'PowerCut';
  }
}

/** A flash operation failed (bad block, misuse): carries a code from the 5xx group of shared/codes.ts. */
export class FlashError extends Error {
  constructor(
    readonly codeName: 'FLASH_MISALIGNED' | 'FLASH_OUT_OF_RANGE' | 'FLASH_NOT_ERASED' | 'FLASH_WRITE_FAILED' | 'FLASH_ERASE_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'FlashError';
  }
}

/** Equal bytes (flash contents, not secrets): four at a time when both views are aligned. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let i = 0;
  if (a.length >= 64 && ((a.byteOffset | b.byteOffset) & 3) === 0) {
    const words = a.length >>> 2;
    const x = new Uint32Array(a.buffer, a.byteOffset, words);
    const y = new Uint32Array(b.buffer, b.byteOffset, words);
    for (let j = 0; j < words; j++) if (x[j] !== y[j]) return false;
    i = words << 2;
  }
  for (; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function isErased(bytes: Uint8Array, erased: number): boolean {
  let i = 0;
  if (bytes.length >= 64 && (bytes.byteOffset & 3) === 0) {
    const words = bytes.length >>> 2;
    const w = new Uint32Array(bytes.buffer, bytes.byteOffset, words);
    const e = (erased * 0x01010101) >>> 0;
    for (let j = 0; j < words; j++) if (w[j] !== e) return false;
    i = words << 2;
  }
  for (; i < bytes.length; i++) if (bytes[i] !== erased) return false;
  return true;
}
