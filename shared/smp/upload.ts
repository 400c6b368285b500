/**
 * Upload chunks (SPEC.md §13.3, §13.7): the rules every chunk of an image upload or a group 64
 * envelope upload obeys on its own, and how many data bytes fit one chunk.
 */
import { encodeCbor } from '../cbor.js';
import { type CodeName } from '../codes.js';
import { schemaFail } from '../fields.js';
import { LIMITS } from '../limits.js';
import { type SmpCommand } from './messages.js';
import { SMP_HEADER_BYTES } from './packet.js';
import { MAX_U32 } from './payload-fields.js';

/** The fields of an upload chunk that its receiver reads (SPEC.md §13.3). */
export type UploadChunk = { readonly off: number; readonly data: Uint8Array; readonly len?: number; readonly sha?: Uint8Array };
/** Allowed upload lengths: `len` in minLen..maxLen; every byte of the upload lies below maxLen. */
export type UploadBounds = { readonly minLen: number; readonly maxLen: number };
export const IMAGE_UPLOAD_BOUNDS: UploadBounds = Object.freeze({ minLen: 0, maxLen: LIMITS.maxImageSize });
export const ENVELOPE_UPLOAD_BOUNDS: UploadBounds = Object.freeze({ minLen: 1, maxLen: LIMITS.maxEnvelopeBytes });

/**
 * The rules of SPEC.md §13.7 every upload chunk obeys on its own, before any upload state is
 * consulted: `off` and `len` are integers (WRONG_TYPE) in range (BAD_VALUE), `data` is bytes
 * (WRONG_TYPE), the first chunk (off 0) carries `len` (MISSING_FIELD), off + |data| <= len when
 * `len` is given (BAD_VALUE) and <= maxLen (TOO_LARGE). The first rule broken, or null. The codecs
 * apply it to what they parse and the receivers again to what they are handed (they may be called
 * without a codec), so no receiver ever sizes or indexes anything with an unchecked number.
 */
export function uploadChunkFault(
  chunk: { readonly off?: unknown; readonly data?: unknown; readonly len?: unknown },
  bounds: UploadBounds,
): { readonly name: Exclude<CodeName, 'OK'>; readonly detail: string } | null {
  const { off, data, len } = chunk;
  const fault = (name: Exclude<CodeName, 'OK'>, detail: string) => ({ name, detail });
  if (typeof off !== 'number' || !Number.isSafeInteger(off)) return fault('WRONG_TYPE', '"off" is not an integer');
  if (off < 0 || off > bounds.maxLen) return fault('BAD_VALUE', `"off" = ${off} is outside 0..${bounds.maxLen}`);
  if (!(data instanceof Uint8Array)) return fault('WRONG_TYPE', '"data" is not a byte string');
  if (len !== undefined) {
    if (typeof len !== 'number' || !Number.isSafeInteger(len)) return fault('WRONG_TYPE', '"len" is not an integer');
    if (len < bounds.minLen || len > bounds.maxLen) return fault('BAD_VALUE', `"len" = ${len} is outside ${bounds.minLen}..${bounds.maxLen}`);
  }
  if (off === 0 && len === undefined) return fault('MISSING_FIELD', 'the first chunk has no "len"');
  if (len !== undefined && off + data.length > len) return fault('BAD_VALUE', `chunk at ${off} of ${data.length} bytes runs past len ${len}`);
  if (off + data.length > bounds.maxLen) return fault('TOO_LARGE', `chunk at ${off} of ${data.length} bytes runs past ${bounds.maxLen}`);
  return null;
}

/** uploadChunkFault inside a codec: the first rule broken is thrown as a SchemaError. */
export function checkChunk(chunk: { readonly off: number; readonly data: Uint8Array; readonly len: number | undefined }, bounds: UploadBounds): void {
  const f = uploadChunkFault(chunk, bounds);
  if (f !== null) schemaFail(f.name, f.detail);
}

/**
 * The most data bytes one request of `cmd` can carry in one SMP packet (maxSmpPacketBytes) given its
 * other fields (data empty in `fields`): what an uploader puts in each chunk.
 */
export function chunkCapacity<Req extends { readonly data: Uint8Array }, Res>(cmd: SmpCommand<Req, Res>, fields: Req): number {
  const base = SMP_HEADER_BYTES + encodeCbor(cmd.request.encode({ ...fields, data: new Uint8Array(0) })).length - 1; // minus the empty bstr head
  const room = LIMITS.maxSmpPacketBytes - base;
  // A byte string head takes 1, 2, 3 or 5 bytes depending on the length (RFC 8949 §3).
  let best = 0;
  for (const [head, lo, hi] of [
    [1, 0, 23],
    [2, 24, 0xff],
    [3, 0x100, 0xffff],
    [5, 0x10000, MAX_U32],
  ] as const) {
    const d = Math.min(hi, room - head);
    if (d >= lo) best = Math.max(best, d);
  }
  return best;
}
