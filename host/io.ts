/** File I/O with the host's rules: bounded reads, atomic writes, secrets 0600 (SPEC.md §14). */
import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, fsyncSync, linkSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { FwsealError } from './errors.js';

/** How many bytes of a file a `precheck` sees: enough to recognise a file type by its start. */
export const FILE_HEAD_BYTES = 16;

/**
 * Read a whole file, refusing one larger than `maxBytes` before reading it. `precheck` sees the first
 * bytes and the size before the size limit applies, so a caller can say what a file is before
 * calling it too large (SPEC.md §14, H8).
 */
export function readFileLimited(path: string, maxBytes: number, what: string, precheck?: (head: Uint8Array, size: number) => void): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new FwsealError('IO', `cannot open ${what} ${path}: ${errno(e)}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FwsealError('IO', `${what} ${path} is not a regular file`);
    if (precheck) precheck(readAt(fd, Math.min(st.size, FILE_HEAD_BYTES)), st.size);
    if (st.size > maxBytes) throw new FwsealError('TOO_LARGE', `${what} ${path} is ${st.size} bytes; at most ${maxBytes} are accepted`);
    return readAt(fd, st.size);
  } finally {
    closeSync(fd);
  }
}

function readAt(fd: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  let off = 0;
  while (off < buf.length) {
    const n = readSync(fd, buf, off, buf.length - off, off);
    if (n === 0) break;
    off += n;
  }
  return off === buf.length ? buf : buf.subarray(0, off);
}

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? 'error';
}

export type WriteOptions = {
  /** Permission bits of the new file (before the umask): 0644 by default, 0600 for secrets. */
  readonly mode?: number;
  /** false: refuse when `path` exists (any file, a symlink too); the old file is never touched. */
  readonly replace?: boolean;
};

/**
 * The one way the host writes a file (SPEC.md §14, H5–H7). The bytes go to a new file with a random
 * name beside the target, created with O_CREAT|O_EXCL|O_NOFOLLOW (a planted file or symlink of that
 * name makes the open fail, nothing is written through it), then fsync, then rename over the target
 * (or link, when `replace` is false: atomic "create unless it exists"), then fsync of the folder. A
 * crash leaves the old file or the new one, never half of either; a symlink at the target is replaced
 * by the new file, never written through. Every failure removes the temporary file and is IO.
 */
export function writeFileAtomic(path: string, data: Uint8Array | string, options: WriteOptions | number = {}): void {
  const { mode = 0o644, replace = true } = typeof options === 'number' ? { mode: options } : options;
  const folder = dirname(path);
  const tmp = join(folder, `.${basename(path)}.${randomBytes(8).toString('hex')}.tmp`);
  let created = false;
  try {
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    created = true;
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (replace) renameSync(tmp, path);
    else {
      linkSync(tmp, path); // EEXIST when anything, even a dangling symlink, has the name
      unlinkSync(tmp);
    }
    created = false;
    syncFolder(folder);
  } catch (e) {
    // Only a file this call created is removed: a name that existed belongs to someone else.
    if (created) {
      try {
        unlinkSync(tmp);
      } catch {
        /* already gone */
      }
    }
    if (e instanceof FwsealError) throw e;
    const code = errno(e);
    if (code === 'EEXIST' && !replace) throw new FwsealError('IO', `${path} exists; refusing to overwrite it`);
    throw new FwsealError('IO', `cannot write ${path}: ${code}`);
  }
}

/** fsync a folder so that a rename in it survives a crash; file systems that cannot are tolerated. */
export function syncFolder(folder: string): void {
  let fd: number;
  try {
    fd = openSync(folder, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (e) {
    throw new FwsealError('IO', `cannot open folder ${folder}: ${errno(e)}`);
  }
  try {
    fsyncSync(fd);
  } catch (e) {
    if (!['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR'].includes(errno(e))) throw new FwsealError('IO', `cannot sync folder ${folder}: ${errno(e)}`);
  } finally {
    closeSync(fd);
  }
}

/** Create a new secret file, mode 0600, atomically; refuses to replace an existing file. */
export function writeSecretFile(path: string, data: string): void {
  writeFileAtomic(path, data, { mode: 0o600, replace: false });
}

/** Flags of a new file that nothing already at its name (file or symlink) can redirect (SPEC.md §14 H5). */
export const NEW_FILE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

export function fileExists(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
