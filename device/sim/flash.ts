/**
 * SimFlash: an in-memory Flash (device/agent/flash.ts) with fault injection, for tests and the
 * update-agent simulator. Pure TypeScript, no Node APIs (it may run inside QuickJS).
 *
 * Order of events for every erase/write call:
 *   1. the operation is counted (`operations` and `totalOperations` both go up by one), even if it
 *      will turn out to be misuse; so a power cut "before op N" happens regardless of what op N is;
 *   2. if the power is already off (an earlier PowerCut since the last setFaults), or
 *      `powerCutBeforeOp === operations`, PowerCut is thrown and nothing changes; the flash then
 *      stays powered off (every later erase/write throws PowerCut) until setFaults() is called;
 *   3. the arguments are validated (shared checks below, also used by device/node/file-flash.ts):
 *      range -> FLASH_OUT_OF_RANGE, alignment -> FLASH_MISALIGNED, write onto a byte that is not
 *      erasedValue -> FLASH_NOT_ERASED; nothing changes on misuse;
 *   4. if the range touches a bad block: a write lands garbled in the bad blocks (correctly
 *      elsewhere) and throws FLASH_WRITE_FAILED; an erase erases the good blocks only and throws
 *      FLASH_ERASE_FAILED;
 *   5. if this is the torn op: the first floor(fraction * length) bytes of the range are written /
 *      erased, then PowerCut is thrown (and the power stays off, as in 2);
 *   6. otherwise the operation is applied in full.
 * Reads are not operations: they are never counted and never affected by faults (they still
 * throw FLASH_OUT_OF_RANGE for a range outside the flash).
 */
import { type Flash, FlashError, type FlashGeometry, PowerCut } from '../agent/flash.js';

export type FaultPlan = {
  /** Throw PowerCut instead of performing operation number N (1-based count of erase+write operations since the plan was set). */
  readonly powerCutBeforeOp?: number;
  /** Operation N is torn: for a write only the first floor(fraction * length) bytes land; for an erase only the first floor(fraction * length) bytes of the range are erased; then PowerCut is thrown. */
  readonly tornOp?: { readonly op: number; readonly fraction: number };
  /** Erase blocks (by index) whose writes and erases fail with FlashError FLASH_WRITE_FAILED / FLASH_ERASE_FAILED (the bytes are left partly garbled for writes). */
  readonly badBlocks?: readonly number[];
};

const isPow2 = (n: number): boolean => Number.isSafeInteger(n) && n > 0 && (n & (n - 1)) === 0;

/** Throws RangeError unless the geometry is usable: powers of two, writeAlign <= eraseBlockSize, size a positive multiple of eraseBlockSize, erasedValue a byte. */
export function validateGeometry(g: FlashGeometry): void {
  if (!isPow2(g.eraseBlockSize)) throw new RangeError(`eraseBlockSize must be a power of two: ${g.eraseBlockSize}`);
  if (!isPow2(g.writeAlign)) throw new RangeError(`writeAlign must be a power of two: ${g.writeAlign}`);
  if (g.writeAlign > g.eraseBlockSize) throw new RangeError(`writeAlign ${g.writeAlign} exceeds eraseBlockSize ${g.eraseBlockSize}`);
  if (!Number.isSafeInteger(g.size) || g.size <= 0 || g.size % g.eraseBlockSize !== 0) {
    throw new RangeError(`size must be a positive multiple of eraseBlockSize: ${g.size}`);
  }
  if (!Number.isInteger(g.erasedValue) || g.erasedValue < 0 || g.erasedValue > 255) {
    throw new RangeError(`erasedValue must be 0..255: ${g.erasedValue}`);
  }
}

/** [offset, offset + length) must be integers inside [0, size) (length 0 allowed at offset <= size), else FLASH_OUT_OF_RANGE. */
export function checkRange(g: FlashGeometry, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > g.size) {
    throw new FlashError('FLASH_OUT_OF_RANGE', `range [${offset}, +${length}) outside flash of ${g.size} bytes`);
  }
}

/** Erase arguments: range first, then both offset and length multiples of eraseBlockSize. */
export function checkErase(g: FlashGeometry, offset: number, length: number): void {
  checkRange(g, offset, length);
  if (offset % g.eraseBlockSize !== 0 || length % g.eraseBlockSize !== 0) {
    throw new FlashError('FLASH_MISALIGNED', `erase [${offset}, +${length}) not aligned to ${g.eraseBlockSize}`);
  }
}

/** Write arguments: range first, then both offset and length multiples of writeAlign. */
export function checkWrite(g: FlashGeometry, offset: number, length: number): void {
  checkRange(g, offset, length);
  if (offset % g.writeAlign !== 0 || length % g.writeAlign !== 0) {
    throw new FlashError('FLASH_MISALIGNED', `write [${offset}, +${length}) not aligned to ${g.writeAlign}`);
  }
}

/** `current` holds the target bytes of a write at `offset`: every one must be erasedValue, else FLASH_NOT_ERASED. */
export function checkErased(g: FlashGeometry, offset: number, current: Uint8Array): void {
  let i = 0;
  if (current.length >= 64 && (current.byteOffset & 3) === 0) {
    // Word by word while every word is erased; the byte loop below names the first bad byte.
    const words = current.length >>> 2;
    const w = new Uint32Array(current.buffer, current.byteOffset, words);
    const e = (g.erasedValue * 0x01010101) >>> 0;
    let j = 0;
    while (j < words && w[j] === e) j++;
    i = j << 2;
  }
  for (; i < current.length; i++) {
    if (current[i] !== g.erasedValue) {
      throw new FlashError('FLASH_NOT_ERASED', `write onto byte ${offset + i} which is not erased`);
    }
  }
}

export class SimFlash implements Flash {
  readonly size: number;
  readonly eraseBlockSize: number;
  readonly writeAlign: number;
  readonly erasedValue: number;
  #mem: Uint8Array;
  #faults: FaultPlan = {};
  #bad = new Set<number>();
  #ops = 0;
  #total = 0;
  #off = false;

  constructor(geometry: FlashGeometry, faults: FaultPlan = {}, initial?: Uint8Array) {
    validateGeometry(geometry);
    this.size = geometry.size;
    this.eraseBlockSize = geometry.eraseBlockSize;
    this.writeAlign = geometry.writeAlign;
    this.erasedValue = geometry.erasedValue;
    if (initial !== undefined) {
      if (!(initial instanceof Uint8Array) || initial.length !== this.size) {
        throw new RangeError(`initial contents must be a Uint8Array of ${this.size} bytes`);
      }
      this.#mem = initial.slice();
    } else {
      this.#mem = new Uint8Array(this.size).fill(this.erasedValue);
    }
    this.setFaults(faults);
  }

  read(offset: number, length: number): Uint8Array {
    checkRange(this, offset, length);
    return this.#mem.slice(offset, offset + length);
  }

  readInto(offset: number, target: Uint8Array): void {
    checkRange(this, offset, target.length);
    target.set(this.#mem.subarray(offset, offset + target.length));
  }

  erase(offset: number, length: number): void {
    const op = this.#begin();
    checkErase(this, offset, length);
    const bad = this.#badIn(offset, length);
    if (bad.length > 0) {
      for (let b = offset; b < offset + length; b += this.eraseBlockSize) {
        if (!this.#bad.has(b / this.eraseBlockSize)) this.#mem.fill(this.erasedValue, b, b + this.eraseBlockSize);
      }
      throw new FlashError('FLASH_ERASE_FAILED', `erase failed in bad block(s) ${bad.join(', ')}`);
    }
    const torn = this.#faults.tornOp;
    if (torn !== undefined && torn.op === op) {
      this.#mem.fill(this.erasedValue, offset, offset + Math.floor(torn.fraction * length));
      this.#off = true;
      throw new PowerCut(op);
    }
    this.#mem.fill(this.erasedValue, offset, offset + length);
  }

  write(offset: number, data: Uint8Array): void {
    const op = this.#begin();
    checkWrite(this, offset, data.length);
    checkErased(this, offset, this.#mem.subarray(offset, offset + data.length));
    const bad = this.#badIn(offset, data.length);
    if (bad.length > 0) {
      for (let i = 0; i < data.length; i++) {
        const inBad = this.#bad.has(Math.floor((offset + i) / this.eraseBlockSize));
        // Garbled: every other byte in a bad block is corrupted, the rest land.
        this.#mem[offset + i] = inBad && i % 2 === 0 ? data[i] ^ 0xa5 : data[i];
      }
      throw new FlashError('FLASH_WRITE_FAILED', `write failed in bad block(s) ${bad.join(', ')}`);
    }
    const torn = this.#faults.tornOp;
    if (torn !== undefined && torn.op === op) {
      this.#mem.set(data.subarray(0, Math.floor(torn.fraction * data.length)), offset);
      this.#off = true;
      throw new PowerCut(op);
    }
    this.#mem.set(data, offset);
  }

  /** erase+write operations attempted since the last setFaults (the counter powerCutBeforeOp refers to). */
  get operations(): number {
    return this.#ops;
  }

  /** All erase+write operations ever attempted. */
  get totalOperations(): number {
    return this.#total;
  }

  /** False after a PowerCut until the next setFaults (every erase/write then throws PowerCut). */
  get powered(): boolean {
    return !this.#off;
  }

  /** Replace the fault plan, reset `operations` to 0 and restore power (e.g. setFaults({})). RangeError on a malformed plan. */
  setFaults(plan: FaultPlan): void {
    const posInt = (n: number): boolean => Number.isSafeInteger(n) && n >= 1;
    if (plan.powerCutBeforeOp !== undefined && !posInt(plan.powerCutBeforeOp)) {
      throw new RangeError(`powerCutBeforeOp must be a positive integer: ${plan.powerCutBeforeOp}`);
    }
    if (plan.tornOp !== undefined) {
      const { op, fraction } = plan.tornOp;
      if (!posInt(op)) throw new RangeError(`tornOp.op must be a positive integer: ${op}`);
      if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`tornOp.fraction must be in 0..1: ${fraction}`);
    }
    const blocks = this.size / this.eraseBlockSize;
    for (const b of plan.badBlocks ?? []) {
      if (!Number.isInteger(b) || b < 0 || b >= blocks) throw new RangeError(`bad block index out of range: ${b}`);
    }
    this.#faults = { ...plan, ...(plan.tornOp ? { tornOp: { ...plan.tornOp } } : {}) };
    this.#bad = new Set(plan.badBlocks ?? []);
    this.#ops = 0;
    this.#off = false;
  }

  /** Flip one bit (simulated decay / radiation) without counting an operation. RangeError if offset or bit (0..7) is out of range. */
  flipBit(offset: number, bit: number): void {
    if (!Number.isInteger(offset) || offset < 0 || offset >= this.size) throw new RangeError(`offset out of range: ${offset}`);
    if (!Number.isInteger(bit) || bit < 0 || bit > 7) throw new RangeError(`bit must be 0..7: ${bit}`);
    this.#mem[offset] ^= 1 << bit;
  }

  /** A copy of the whole contents. */
  snapshot(): Uint8Array {
    return this.#mem.slice();
  }

  /** Count the operation, then apply a pending or scheduled power cut. */
  #begin(): number {
    this.#total++;
    const op = ++this.#ops;
    if (this.#off || this.#faults.powerCutBeforeOp === op) {
      this.#off = true;
      throw new PowerCut(op);
    }
    return op;
  }

  #badIn(offset: number, length: number): number[] {
    const out: number[] = [];
    if (this.#bad.size === 0 || length === 0) return out;
    const first = Math.floor(offset / this.eraseBlockSize);
    const last = Math.floor((offset + length - 1) / this.eraseBlockSize);
    for (let b = first; b <= last; b++) if (this.#bad.has(b)) out.push(b);
    return out;
  }
}
