/**
 * Talking to a `fwseal hil device` child process from a test: its stdout as it comes, and one SMP
 * client session on its pty (or any serial line) per command, as mcumgr opens one per command.
 */
import { type ChildProcess } from 'node:child_process';
import { SerialPort } from 'serialport';
import { realScheduler } from '../../hil/clock.js';
import { SmpClient } from '../../hil/smp-endpoint.js';

/** A child's stdout from its start: `waitFor(re)` resolves with the first match, also of text already seen, and rejects if the child exits first. */
export function childLines(child: ChildProcess): { text(): string; waitFor(re: RegExp): Promise<RegExpMatchArray> } {
  let text = '';
  const waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  child.stdout?.on('data', (c: Buffer) => {
    text += c.toString('utf8');
    for (const w of waiters.splice(0)) {
      const m = text.match(w.re);
      if (m) w.resolve(m);
      else waiters.push(w);
    }
  });
  return {
    text: () => text,
    waitFor: (re) =>
      new Promise((resolve, reject) => {
        const m = text.match(re);
        if (m) return resolve(m);
        waiters.push({ re, resolve });
        child.once('exit', (code) => reject(new Error(`exited ${code} before ${re}: ${text}`)));
      }),
  };
}

/** One client session on the serial line at `path`, opened and closed around `fn`; `opened` collects the port for a test's cleanup. */
export async function smpSession<T>(path: string, fn: (client: SmpClient) => Promise<T>, opened?: SerialPort[]): Promise<T> {
  const sp = await new Promise<SerialPort>((res, rej) => {
    const p = new SerialPort({ path, baudRate: 115200 }, (e) => (e ? rej(e) : res(p)));
  });
  opened?.push(sp);
  const end = {
    write: (b: Uint8Array) => void sp.write(Buffer.from(b)),
    onData: (l: (c: Uint8Array) => void) => {
      const f = (c: Buffer) => l(new Uint8Array(c));
      sp.on('data', f);
      return () => sp.off('data', f);
    },
  };
  const client = new SmpClient(end, realScheduler, { timeoutMs: 5000 });
  try {
    return await fn(client);
  } finally {
    client.close();
    await new Promise<void>((r) => sp.close(() => r()));
  }
}
