/**
 * The CLI writes stdout and stderr straight to fds 1 and 2 (host/cli-errors.ts processIo), without
 * creating process.stdout (issue 17: that stream loads `net` for a pipe). A descriptor that is
 * non-blocking and full answers EAGAIN; the rest must then go through the process's stream, in order,
 * with nothing lost. Here a child writes 1 MiB of numbered lines to a non-blocking FIFO that nobody
 * reads until it has written everything.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const TSX = join(ROOT, 'node_modules/tsx/dist/cli.mjs');
const LINES = 16_384; // 64 bytes each: 1 MiB, far more than a pipe holds (64 KiB)
const line = (i: number) => `${String(i).padStart(10, '0')} ${'x'.repeat(52)}\n`;
const dir = mkdtempSync(join(tmpdir(), 'fwseal-cli-io-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SCRIPT = `
import { processIo } from ${JSON.stringify(join(ROOT, 'host/cli-errors.ts'))};
const io = processIo();
const line = ${line.toString()};
for (let i = 0; i < ${LINES}; i++) io.stdout(line(i));
io.stderr('written\\n');
`;

describe('processIo on a full non-blocking pipe', () => {
  it('hands the rest to the stream on EAGAIN: every line arrives, in order, and the child exits 0', async () => {
    const fifo = join(dir, 'out');
    execFileSync('mkfifo', [fifo]);
    // Two open file descriptions: ours to read and the child's to write, both non-blocking. (Node makes
    // a pipe stdout blocking once it creates process.stdout; that must not block our reads.)
    const fd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const out = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    const child = spawn(process.execPath, [TSX, '-e', SCRIPT], { stdio: ['ignore', out, 'pipe'] });
    closeSync(out); // the child's copy is the only writer left: its exit is our end of file
    let stderr = '';
    child.stderr?.on('data', (d) => {
      stderr += d;
    });
    const exit = new Promise<number | null>((resolve) => child.on('exit', resolve));
    // Nothing is read until the child says every write returned: the pipe is full long before.
    for (let i = 0; i < 600 && !stderr.includes('written') && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(65536);
    for (let i = 0; i < 20_000; i++) {
      let got = -1;
      try {
        got = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      }
      if (got === 0) break; // end of file: the child closed its end
      if (got > 0) chunks.push(Buffer.from(buf.subarray(0, got)));
      else await new Promise((r) => setTimeout(r, 5));
    }
    closeSync(fd);
    expect(stderr).toBe('written\n');
    expect(await exit).toBe(0);
    const text = Buffer.concat(chunks).toString();
    expect(text.length).toBe(LINES * 64);
    expect(text).toBe(Array.from({ length: LINES }, (_, i) => line(i)).join(''));
  }, 60_000);
});
