/** What every CLI command shares: argument parsing, output, progress, file helpers. */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { LIMITS } from '../../shared/limits.js';
import { FwsealError } from '../errors.js';
import { envelopeKind, notAnFwsealObject, OBJECT_NAMES, type ObjectKind } from '../inspect.js';
import { readFileLimited } from '../io.js';

export type Io = {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly stderrIsTty: boolean;
  /** Binary output on stdout (`sign --print-tbs`); absent where only text can be written. */
  readonly stdoutBytes?: (bytes: Uint8Array) => void;
  /** stdout is a terminal: binary output is refused there. */
  readonly stdoutIsTty?: boolean;
  /** Record one action in the audit trail (SPEC.md §15.6); absent when no audit log is configured. */
  readonly audit?: (event: AuditEvent) => void;
};

/** One audited action as a command reports it; the log adds time, actor, sequence and chain hash (§15.6). */
export type AuditEvent = {
  /** e.g. 'keygen', 'sign', 'attach', 'trust init', 'revoke', 'publish'. */
  readonly action: string;
  /** Hex key id of the key that signed or was created. */
  readonly keyId?: string;
  /** What was signed or written: 'manifest', 'trust-bundle', 'revocation-list', 'key', ... */
  readonly kind?: string;
  /** Hex SHA-256 of the object's payload (or of the file written). */
  readonly digest?: string;
  /** 'ok' or the error code name. */
  readonly result: string;
  /** The file written or changed, where there is one. */
  readonly file?: string;
};

export type Command = {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly options: NonNullable<ParseArgsConfig['options']>;
  run(args: Parsed, io: Io): Promise<number> | number;
};

export type Parsed = { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] };

export function parse(cmd: Command, argv: string[]): Parsed {
  // parseArgs keeps the last of a repeated single-value flag; a second value is more likely a mistake.
  for (const [name, spec] of Object.entries(cmd.options)) {
    if (spec.multiple || spec.type !== 'string') continue;
    const count = argv.filter((a) => a === `--${name}` || a.startsWith(`--${name}=`)).length;
    if (count > 1) throw new FwsealError('USAGE', `--${name} is given ${count} times (see fwseal ${cmd.name} --help)`);
  }
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { ...cmd.options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Parsed['values'], positionals };
  } catch (e) {
    throw new FwsealError('USAGE', `${(e as Error).message.split('\n')[0]} (see fwseal ${cmd.name} --help)`);
  }
}

export function str(p: Parsed, name: string, required: true): string;
export function str(p: Parsed, name: string, required?: boolean): string | undefined;
export function str(p: Parsed, name: string, required = false): string | undefined {
  const v = p.values[name];
  if (Array.isArray(v)) throw new FwsealError('USAGE', `--${name} is given more than once`);
  if (v === undefined || v === false) {
    if (required) throw new FwsealError('USAGE', `--${name} is required`);
    return undefined;
  }
  if (v === true) throw new FwsealError('USAGE', `--${name} needs a value`);
  return v;
}

export function list(p: Parsed, name: string): string[] {
  const v = p.values[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [String(v)];
}

/** A whole number flag, strictly decimal, within bounds. */
export function int(p: Parsed, name: string, min: number, max: number, fallback?: number): number {
  const v = str(p, name, fallback === undefined);
  if (v === undefined) return fallback as number;
  if (!/^\d{1,16}$/.test(v)) throw new FwsealError('USAGE', `--${name} must be a whole number`);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new FwsealError('USAGE', `--${name} must be between ${min} and ${max}`);
  return n;
}

export function onePositional(p: Parsed, what: string): string {
  if (p.positionals.length !== 1) throw new FwsealError('USAGE', `expected exactly one ${what}, got ${p.positionals.length}`);
  return p.positionals[0];
}

export function noPositionals(p: Parsed): void {
  if (p.positionals.length > 0) throw new FwsealError('USAGE', `unexpected argument ${p.positionals[0]}`);
}

/**
 * Read a file given where an fwseal object of `expected` kind belongs (null: any of the three).
 * SPEC.md §14 H8: a file that is no fwseal object, or a well-formed envelope of another kind, is a
 * USAGE error (exit 2); anything that starts like one goes to the verifier, which answers a code.
 */
export function readObjectFile(path: string, expected: ObjectKind | null): Uint8Array {
  const what = expected ? `an fwseal ${OBJECT_NAMES[expected]}` : 'an fwseal manifest, trust bundle or revocation list';
  const bytes = readFileLimited(path, LIMITS.maxEnvelopeBytes, expected ? OBJECT_NAMES[expected] : 'envelope', (head, size) => {
    const other = notAnFwsealObject(head, size);
    if (other !== null) throw new FwsealError('USAGE', `${path} is not ${what}: it is ${other}`);
  });
  const kind = expected ? envelopeKind(bytes) : null;
  // Another kind of fwseal object is what a device would refuse too (WRONG_KIND, §3): a rejection, named clearly.
  if (kind !== null && kind !== expected) throw new FwsealError('WRONG_KIND', `${path} is an fwseal ${OBJECT_NAMES[kind]}, not ${what}`);
  return bytes;
}

export function json(io: Io, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}

/** A progress bar on stderr, only when stderr is a terminal and the work is long. */
export function progress(io: Io, label: string, total: number): ((done: number, total: number) => void) | undefined {
  if (!io.stderrIsTty || total < 16 * 1024 * 1024) return undefined;
  let last = -1;
  return (done, all) => {
    const pct = Math.floor((done / all) * 100);
    if (pct === last) return;
    last = pct;
    const width = 30;
    const fill = Math.round((pct / 100) * width);
    io.stderr(
      `\r${label} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(pct).padStart(3)}% ${(done / 1048576).toFixed(0)}/${(all / 1048576).toFixed(0)} MiB` +
        (done >= all ? '\n' : ''),
    );
  };
}
