/**
 * The OTA client's clock on Node (device/ota/ports.ts): performance.now, unref'd timers (a pending
 * time-out never keeps a process alive), setImmediate for request batching, Math.random for jitter
 * and request ids (not security relevant: nothing is secret or guessed from them).
 */
import { type OtaClock } from '../ota/ports.js';

export const nodeClock: OtaClock = Object.freeze({
  now: () => performance.now(),
  sleep: (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref()),
  random: () => Math.random(),
  after(ms: number, fn: () => void): () => void {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
  defer: (fn: () => void) => void setImmediate(fn),
});
