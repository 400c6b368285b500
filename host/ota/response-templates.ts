/**
 * Manifest and digest page responses (SPEC.md §12.2) encoded once per campaign and page, not once per
 * request: every device of a campaign gets the same bytes but for its request id (key 2). A template
 * is the message encoded (and checked) by its encoder with request id 0; a response is the template
 * with the request id's deterministic CBOR head in place of that one byte, byte for byte what the
 * encoder makes for that id (test/ota-perf-responses.test.ts). Encoding and self-checking a page for
 * each of 200 devices was a tenth of serve's CPU in the delivery rows (tools/bench ota, profiled).
 */
import { bytesEqual } from '../../shared/bytes.js';
import { head as cborHead } from '../../shared/cbor.js';
import { FwsealError } from '../errors.js';

/** A response with request id 0 and where that id's byte is. */
export type ResponseTemplate = { readonly bytes: Uint8Array; readonly at: number };

/**
 * Bytes of all templates kept per instance (each at most a page response, ~4.5 KiB, or a manifest
 * response, maxEnvelopeBytes + ~100): not a wire limit, only this cache's memory. The least recently
 * used go first; a campaign's go when its assets are dropped (abort, halt by the root of trust).
 */
export const RESPONSE_TEMPLATE_BYTES = 8 << 20;

/** The template of `encode` (a response encoder over the request id): the one byte where ids 0 and 1 differ. */
export function templateOf(encode: (requestId: number) => Uint8Array): ResponseTemplate {
  const zero = encode(0);
  const one = encode(1);
  let at = 0;
  while (at < zero.length && zero[at] === one[at]) at++;
  // Deterministic CBOR: the ids 0 and 1 are the one-byte heads 0x00 and 0x01, and nothing else differs.
  if (zero.length !== one.length || zero[at] !== 0x00 || one[at] !== 0x01 || !bytesEqual(zero.subarray(at + 1), one.subarray(at + 1)))
    throw new FwsealError('INTERNAL', 'a response template does not differ in its request id alone');
  return { bytes: zero, at };
}

/** The template's response for `requestId` (a request id its parser accepted: 0..maxRequestId). */
export function withRequestId(t: ResponseTemplate, requestId: number): Uint8Array {
  const id = cborHead(0, requestId);
  // Every byte is written below; small sizes come from Node's pooled memory.
  const out = Buffer.allocUnsafe(t.bytes.length - 1 + id.length);
  out.set(t.bytes.subarray(0, t.at));
  out.set(id, t.at);
  out.set(t.bytes.subarray(t.at + 1), t.at + id.length);
  return out;
}

/** Templates by key (`campaign/...`), least recently used dropped first past `maxBytes`. */
export class ResponseTemplates {
  private readonly map = new Map<string, ResponseTemplate>();
  private bytes = 0;

  constructor(private readonly maxBytes = RESPONSE_TEMPLATE_BYTES) {}

  /** The template under `key`, made by `make` when absent. */
  get(key: string, make: () => ResponseTemplate): ResponseTemplate {
    const have = this.map.get(key);
    if (have) {
      this.map.delete(key); // most recently used last
      this.map.set(key, have);
      return have;
    }
    const t = make();
    this.map.set(key, t);
    this.bytes += t.bytes.length;
    for (const [k, old] of this.map) {
      if (this.bytes <= this.maxBytes || k === key) break;
      this.map.delete(k);
      this.bytes -= old.bytes.length;
    }
    return t;
  }

  /** Drop every template whose key starts with `prefix` (a campaign's: `id/`). */
  dropPrefix(prefix: string): void {
    for (const [k, t] of [...this.map]) {
      if (!k.startsWith(prefix)) continue;
      this.map.delete(k);
      this.bytes -= t.bytes.length;
    }
  }

  /** Templates kept now and their bytes (tests). */
  get size(): { entries: number; bytes: number } {
    return { entries: this.map.size, bytes: this.bytes };
  }
}
