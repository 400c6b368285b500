/**
 * The simulated device's flash with power cuts (hil/device.ts): the rig arms a cut before, or torn
 * in the middle of, the Nth erase/write from now: the faults of the power-cut sweep (SPEC.md §11.5)
 * on a device behind a serial line.
 */
import { type Flash } from '../device/agent/flash.js';

/** A Flash that cuts the power at an armed operation (before it, or half-way through it). */
export class FaultFlash implements Flash {
  readonly size: number;
  readonly eraseBlockSize: number;
  readonly writeAlign: number;
  readonly erasedValue: number;
  #countdown = 0;
  #torn = false;

  constructor(
    private readonly inner: Flash,
    private readonly cut: () => never,
  ) {
    ({ size: this.size, eraseBlockSize: this.eraseBlockSize, writeAlign: this.writeAlign, erasedValue: this.erasedValue } = inner);
  }

  /** Cut at the `op`-th erase/write from now (1 = the next one). */
  arm(op: number, torn: boolean): void {
    this.#countdown = op;
    this.#torn = torn;
  }

  disarm(): void {
    this.#countdown = 0;
  }

  read(offset: number, length: number): Uint8Array {
    return this.inner.read(offset, length);
  }

  erase(offset: number, length: number): void {
    if (this.#due()) {
      const E = this.eraseBlockSize;
      const half = Math.floor(length / 2 / E) * E;
      if (this.#torn && half > 0) this.inner.erase(offset, half);
      this.cut();
    }
    this.inner.erase(offset, length);
  }

  write(offset: number, data: Uint8Array): void {
    if (this.#due()) {
      const W = this.writeAlign;
      const half = Math.floor(data.length / 2 / W) * W;
      if (this.#torn && half > 0) this.inner.write(offset, data.subarray(0, half));
      this.cut();
    }
    this.inner.write(offset, data);
  }

  #due(): boolean {
    if (this.#countdown <= 0) return false;
    return --this.#countdown === 0;
  }
}
