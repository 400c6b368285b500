/**
 * What the OTA device client (SPEC.md §12.10) needs from its platform, as small interfaces: the MQTT
 * link, time and chance. The Node adapters live in device/node/ (mqtt.js, timers); tests drive the
 * client with fakes. Nothing here touches Node or the DOM.
 */
import { type Timer } from '../agent/pull.js';

/** One MQTT connection as the client uses it (SPEC.md §12.4). */
export interface OtaLink {
  /** MQTT 5: replies are routed by Response Topic and Correlation Data; 3.1.1: by payload key 3. */
  readonly v5: boolean;
  /** Fire and forget (a lost request is a retry; a lost status event is repeated by the next one). */
  publish(topic: string, payload: Uint8Array, qos: 0 | 1, reply?: { readonly topic: string; readonly correlation: Uint8Array }): void;
  subscribe(topics: readonly string[], qos: 0 | 1): Promise<void>;
  unsubscribe(topic: string): Promise<void>;
  /** Close: `graceful` sends DISCONNECT and waits; otherwise the socket is dropped (a reset). */
  close(graceful: boolean): Promise<void>;
}

/** Time and chance (backoff jitter, request ids), injected so tests can run on fake time. */
export interface OtaClock extends Timer {
  /** Run `fn` after `ms` milliseconds; the returned function cancels it. */
  after(ms: number, fn: () => void): () => void;
  /** Run `fn` once the work already queued is done (Node: setImmediate): requests made meanwhile go out together. */
  defer(fn: () => void): void;
}

/** A small event source (the client's `status` and `progress` events) without node:events. */
export class Listeners<A extends unknown[]> {
  readonly #fns = new Set<(...args: A) => void>();
  add(fn: (...args: A) => void): void {
    this.#fns.add(fn);
  }
  delete(fn: (...args: A) => void): void {
    this.#fns.delete(fn);
  }
  emit(...args: A): void {
    for (const fn of [...this.#fns]) fn(...args);
  }
  /** Resolves with the first arguments emitted from now on that `match` accepts. */
  next(match: (...args: A) => boolean): Promise<A> {
    return new Promise((resolve) => {
      const on = (...args: A) => {
        if (!match(...args)) return;
        this.delete(on);
        resolve(args);
      };
      this.add(on);
    });
  }
}
