/**
 * Fakes for the OTA device client's ports (device/ota/ports.ts): a hand-driven clock and an
 * in-memory link that records what the client publishes, so a test runs the client with no broker
 * and no real time.
 */
import { type OtaClock, type OtaLink } from '../../device/ota/ports.js';

/** Time that moves only when the test says; timers fire in order; chance is always 0. */
export class ManualClock implements OtaClock {
  #now = 0;
  #timers: { at: number; fn: () => void }[] = [];
  now = () => this.#now;
  random = () => 0;
  sleep = (ms: number) => new Promise<void>((resolve) => this.after(ms, resolve));
  after(ms: number, fn: () => void): () => void {
    const t = { at: this.#now + ms, fn };
    this.#timers.push(t);
    return () => {
      this.#timers = this.#timers.filter((x) => x !== t);
    };
  }
  defer(fn: () => void): void {
    this.after(0, fn);
  }
  /** Move time forward, firing due timers (and letting their promise chains run) one by one. */
  async advance(ms: number): Promise<void> {
    const until = this.#now + ms;
    for (;;) {
      await settle();
      const due = this.#timers.filter((t) => t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = due.at;
      due.fn();
    }
    this.#now = until;
    await settle();
  }
}

export const settle = async () => {
  for (let i = 0; i < 50; i++) await Promise.resolve();
};

/** An MQTT 3.1.1 link that keeps every publish and every subscription. */
export function memoryLink() {
  const published: { topic: string; payload: Uint8Array }[] = [];
  const subscribed: string[][] = [];
  const link: OtaLink = {
    v5: false,
    publish: (topic, payload) => void published.push({ topic, payload }),
    subscribe: async (topics) => void subscribed.push([...topics]),
    unsubscribe: async () => undefined,
    close: async () => undefined,
  };
  return { link, published, subscribed };
}
