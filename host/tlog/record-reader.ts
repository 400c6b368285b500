/**
 * Records of the log's `records` file read in order through one window (4 MiB, grown for a larger
 * record): a scan of a million entries costs a few hundred reads instead of two per entry (issue 19
 * item 6; `fwseal log verify`, `log checkpoint`, the monitor). The checks are those of
 * store.ts `readRecord`: a length of 1..max, a record that is whole.
 */
import { readSync } from 'node:fs';
import { FwsealError } from '../errors.js';

const WINDOW = 4 * 1024 * 1024;

export class RecordReader {
  private buf: Buffer;
  /** File offset of buf[0], and how many bytes of buf hold the file from there. */
  private at = 0;
  private held = 0;

  constructor(
    private readonly fd: number,
    private readonly maxRecordBytes: number,
  ) {
    this.buf = Buffer.allocUnsafe(WINDOW);
  }

  /** The object of record `i` at `offset` (a copy); LOG_INVALID if it is not whole or its length is impossible. */
  read(offset: number, i: number): Uint8Array {
    if (!this.has(offset, 4)) this.fill(offset, 4);
    if (!this.has(offset, 4)) throw new FwsealError('LOG_INVALID', `record ${i} is missing from the records file`);
    const length = this.buf.readUInt32BE(offset - this.at);
    if (length === 0 || length > this.maxRecordBytes) throw new FwsealError('LOG_INVALID', `record ${i} has an impossible length`);
    if (!this.has(offset, 4 + length)) this.fill(offset, 4 + length);
    if (!this.has(offset, 4 + length)) throw new FwsealError('LOG_INVALID', `record ${i} is cut short`);
    const from = offset - this.at + 4;
    return new Uint8Array(this.buf.subarray(from, from + length));
  }

  private has(offset: number, n: number): boolean {
    return offset >= this.at && offset + n <= this.at + this.held;
  }

  private fill(offset: number, need: number): void {
    if (need > this.buf.length) this.buf = Buffer.allocUnsafe(need);
    this.at = offset;
    this.held = 0;
    for (let got = -1; got !== 0 && this.held < this.buf.length; ) {
      got = readSync(this.fd, this.buf, this.held, this.buf.length - this.held, offset + this.held);
      this.held += got;
    }
  }
}
