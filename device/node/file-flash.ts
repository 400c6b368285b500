/**
 * FileFlash: a Flash (device/agent/flash.ts) over a file or block device, with the same strict
 * semantics as SimFlash (the checks are shared: device/sim/flash.ts). No fault injection: erase and
 * write are applied in full and fsync'ed before returning. Node-only (this folder is the only place
 * in device/ allowed Node APIs).
 */
import { closeSync, constants, existsSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { type Flash, type FlashGeometry } from '../agent/flash.js';
import { checkErase, checkErased, checkRange, checkWrite, validateGeometry } from '../sim/flash.js';

const CHUNK = 1 << 20;

export class FileFlash implements Flash {
  readonly size: number;
  readonly eraseBlockSize: number;
  readonly writeAlign: number;
  readonly erasedValue: number;
  #fd: number | undefined;

  /** Use openFileFlash(). `fd` is an open read/write descriptor, owned by this object from now on. */
  constructor(fd: number, geometry: FlashGeometry) {
    this.size = geometry.size;
    this.eraseBlockSize = geometry.eraseBlockSize;
    this.writeAlign = geometry.writeAlign;
    this.erasedValue = geometry.erasedValue;
    this.#fd = fd;
  }

  read(offset: number, length: number): Uint8Array {
    checkRange(this, offset, length);
    return this.#pread(offset, length, new Uint8Array(length));
  }

  readInto(offset: number, target: Uint8Array): void {
    checkRange(this, offset, target.length);
    this.#pread(offset, target.length, target);
  }

  erase(offset: number, length: number): void {
    checkErase(this, offset, length);
    const fd = this.#handle();
    const fill = new Uint8Array(Math.min(length, CHUNK)).fill(this.erasedValue);
    for (let at = offset; at < offset + length; at += fill.length) {
      this.#pwrite(fd, fill.subarray(0, Math.min(fill.length, offset + length - at)), at);
    }
    fsyncSync(fd);
  }

  write(offset: number, data: Uint8Array): void {
    checkWrite(this, offset, data.length);
    checkErased(this, offset, this.#pread(offset, data.length));
    const fd = this.#handle();
    this.#pwrite(fd, data, offset);
    fsyncSync(fd);
  }

  /** Close the file; further calls throw. Idempotent. */
  close(): void {
    if (this.#fd !== undefined) {
      const fd = this.#fd;
      this.#fd = undefined;
      closeSync(fd);
    }
  }

  #handle(): number {
    if (this.#fd === undefined) throw new Error('FileFlash is closed');
    return this.#fd;
  }

  #pread(offset: number, length: number, out: Uint8Array = new Uint8Array(length)): Uint8Array {
    const fd = this.#handle();
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n === 0) throw new Error(`short read at ${offset + done}`);
      done += n;
    }
    return out;
  }

  #pwrite(fd: number, data: Uint8Array, offset: number): void {
    let done = 0;
    while (done < data.length) done += writeSync(fd, data, done, data.length - done, offset + done);
  }
}

/**
 * Open `path` as flash of `geometry`. With `create`, a missing file is created filled with
 * erasedValue. A regular file must be exactly `geometry.size` bytes (RangeError otherwise); a
 * block device is taken at its word. RangeError on a bad geometry.
 */
export function openFileFlash(path: string, geometry: FlashGeometry, options: { create?: boolean } = {}): FileFlash {
  validateGeometry(geometry);
  if (options.create && !existsSync(path)) {
    let fd: number | undefined;
    try {
      fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o644);
      const fill = new Uint8Array(Math.min(geometry.size, CHUNK)).fill(geometry.erasedValue);
      for (let at = 0; at < geometry.size; at += fill.length) {
        const part = fill.subarray(0, Math.min(fill.length, geometry.size - at));
        let done = 0;
        while (done < part.length) done += writeSync(fd, part, done, part.length - done, at + done);
      }
      fsyncSync(fd);
    } catch (e) {
      // Another process may have created it in between: fall through to the normal open.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  const fd = openSync(path, 'r+');
  try {
    const st = fstatSync(fd);
    if (st.isFile() && st.size !== geometry.size) {
      throw new RangeError(`${path} is ${st.size} bytes, geometry says ${geometry.size}`);
    }
    if (!st.isFile() && !st.isBlockDevice()) throw new RangeError(`${path} is neither a regular file nor a block device`);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return new FileFlash(fd, geometry);
}
