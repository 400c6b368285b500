/**
 * Where key passphrases come from: FWSEAL_PASSPHRASE, or a prompt on the controlling terminal with
 * echo off. Never from a flag (it would land in shell history and `ps`), never printed.
 */

import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { FwsealError } from './errors.js';

export type PassphraseSource = (purpose: string, confirm: boolean) => string;

export function readTtyLine(prompt: string): string {
  let fd: number;
  try {
    fd = openSync('/dev/tty', 'r+');
  } catch {
    throw new FwsealError('NO_PASSPHRASE', 'no passphrase: set FWSEAL_PASSPHRASE or run on a terminal');
  }
  const stty = (arg: string) => {
    try {
      execFileSync('stty', [arg], { stdio: [fd, 'ignore', 'ignore'] });
    } catch {
      /* not a terminal that stty knows: the prompt still works, with echo */
    }
  };
  try {
    writeSync(fd, prompt);
    stty('-echo');
    const buf = Buffer.alloc(1);
    const bytes: number[] = [];
    while (bytes.length < 1024) {
      const n = readSync(fd, buf, 0, 1, null);
      if (n === 0 || buf[0] === 10 || buf[0] === 13) break;
      bytes.push(buf[0]);
    }
    return Buffer.from(bytes).toString('utf8');
  } finally {
    stty('echo');
    writeSync(fd, '\n');
    closeSync(fd);
  }
}

export const defaultPassphraseSource: PassphraseSource = (purpose, confirm) => {
  const env = process.env.FWSEAL_PASSPHRASE;
  if (env !== undefined) {
    if (env.length === 0) throw new FwsealError('NO_PASSPHRASE', 'FWSEAL_PASSPHRASE is empty');
    return env;
  }
  const first = readTtyLine(`Passphrase for ${purpose}: `);
  if (first.length === 0) throw new FwsealError('NO_PASSPHRASE', 'empty passphrase');
  if (confirm && readTtyLine('Repeat passphrase: ') !== first) throw new FwsealError('WRONG_PASSPHRASE', 'passphrases differ');
  return first;
};
