/**
 * The fuzzers' PRNG: sfc32 (Doty-Humphrey's Small Fast Counter), seeded through splitmix32 from
 * (seed, case), so case n of seed s draws the same numbers on every machine and in any worker.
 * Also used by the SMP and OTA abuse fuzzers (test/support/smp-fuzz.ts, ota-fuzz.ts).
 */

function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** One independent stream per (seed, case). */
  constructor(seed: number, stream = 0) {
    const s = splitmix32(seed >>> 0);
    const t = splitmix32(s ^ (stream >>> 0));
    const u = splitmix32(t ^ Math.floor(stream / 0x100000000));
    this.a = s;
    this.b = t;
    this.c = u;
    this.d = 1;
    for (let i = 0; i < 15; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (n <= 1) return 0;
    return n <= 0x100000000 ? Math.floor((this.u32() / 0x100000000) * n) : Math.floor(((this.u32() * 0x100000000 + this.u32()) / 2 ** 64) * n);
  }

  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  weighted<T>(items: readonly (readonly [T, number])[]): T {
    let total = 0;
    for (const [, w] of items) total += w;
    let r = (this.u32() / 0x100000000) * total;
    for (const [item, w] of items) {
      if (r < w) return item;
      r -= w;
    }
    return items[items.length - 1][0];
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = this.u32();
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (v >>> (8 * j)) & 0xff;
    }
    return out;
  }

  /** Small lengths are the interesting ones: mostly 1..16, sometimes up to `max`. */
  length(max: number): number {
    return this.chance(0.7) ? this.range(1, Math.min(16, max)) : this.range(1, Math.max(1, max));
  }
}
