/** File I/O with the host's rules: bounded reads, atomic writes, secrets 0600. */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync, writeFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { FwsealError } from './errors.js';

/** Read a whole file, refusing one larger than `maxBytes` before reading it. */
export function readFileLimited(path: string, maxBytes: number, what: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new FwsealError('IO', `cannot open ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FwsealError('IO', `${what} ${path} is not a regular file`);
    if (st.size > maxBytes) throw new FwsealError('TOO_LARGE', `${what} ${path} is ${st.size} bytes; at most ${maxBytes} are accepted`);
    const buf = new Uint8Array(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return off === buf.length ? buf : buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/**
 * Write a file atomically: a temporary file in the same folder, fsync, rename. A crash leaves the
 * old file or the new one, never half of either.
 */
export function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o644): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(tmp, 'w', mode);
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    if (e instanceof FwsealError) throw e;
    throw new FwsealError('IO', `cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

/** Create a new secret file with mode 0600; refuses to replace an existing file. */
export function writeSecretFile(path: string, data: string): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FwsealError('IO', code === 'EEXIST' ? `${path} exists; refusing to overwrite a key` : `cannot create ${path}: ${code ?? 'error'}`);
  }
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function fileExists(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
