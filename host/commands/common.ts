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
  const options = { ...cmd.options, help: { type: 'boolean' as const, short: 'h' } };
  // Every problem parseArgs would find, found first and said in fwseal's words (issue 17: never Node's text).
  checkFlags(cmd.name, options, argv);
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return { values: values as Parsed['values'], positionals };
  } catch {
    throw new FwsealError('USAGE', `the command line does not parse (see fwseal ${cmd.name} --help)`);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** The flags in `argv` (up to `--`) against `options`: unknown ones (with a suggestion), values missing or not taken. */
function checkFlags(cmdName: string, options: Options, argv: readonly string[]): void {
  const see = `(see fwseal ${cmdName} --help)`;
  const shorts = new Map(Object.entries(options).flatMap(([name, spec]) => (spec.short ? [[spec.short, name] as const] : [])));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return;
    if (!a.startsWith('-') || a === '-') continue;
    const eq = a.indexOf('=');
    const long = a.startsWith('--');
    const name = long ? a.slice(2, eq < 0 ? undefined : eq) : (shorts.get(a.slice(1, 2)) ?? '');
    const spec = options[name];
    if (!spec || (!long && a.length > 2)) {
      const typed = long ? a.slice(2, eq < 0 ? undefined : eq) : a.slice(1);
      throw new FwsealError('USAGE', `unknown flag ${long ? '--' : '-'}${typed}${didYouMean(typed, Object.keys(options), '--')} ${see}`);
    }
    if (spec.type === 'boolean') {
      if (long && eq >= 0) throw new FwsealError('USAGE', `--${name} takes no value ${see}`);
      continue;
    }
    if (long && eq >= 0) continue;
    const value = argv[i + 1];
    if (value === undefined) throw new FwsealError('USAGE', `--${name} needs a value ${see}`);
    // A value that looks like a flag is more likely a forgotten value (parseArgs refuses it too).
    if (value.startsWith('-') && value !== '-')
      throw new FwsealError('USAGE', `--${name} needs a value, not ${value} (write --${name}=${value} for such a value) ${see}`);
    i++;
  }
}

/**
 * The candidate nearest to a mistyped `word`, if one is near enough: edit distance (adjacent swaps
 * count as one) at most 1 for short words, 2 from 5 characters, 3 from 9; or the only candidate
 * that starts with `word` (3 characters or more). Ties go to the first candidate.
 */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  const limit = w.length >= 9 ? 3 : w.length >= 5 ? 2 : 1;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  if (best !== undefined) return best;
  const prefixed = candidates.filter((c) => w.length >= 3 && c.toLowerCase().startsWith(w));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}

/** ' (did you mean --chunk-size?)', or '' when nothing is near (suggest). */
export function didYouMean(word: string, candidates: readonly string[], prefix = ''): string {
  const s = suggest(word, candidates);
  return s === undefined ? '' : ` (did you mean ${prefix}${s}?)`;
}

/** Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) rows[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2][j - 2] + 1);
      rows[i][j] = d;
    }
  }
  return rows[a.length][b.length];
}

/**
 * The USAGE error for a command line that names no command (host/cli.ts): with the nearest command
 * name, or the nearest subcommand of a group, when one is near (suggest).
 */
export function unknownCommand(argv: readonly string[], names: readonly string[]): FwsealError {
  const typed = argv.slice(0, 2).join(' ');
  const group = names.filter((n) => n.startsWith(`${argv[0]} `));
  const hint =
    group.length > 0 && argv[1] !== undefined
      ? didYouMean(`${argv[0]} ${argv[1]}`, group)
      : didYouMean(argv[0] ?? '', [...new Set(names.map((n) => n.split(' ')[0]))]) || didYouMean(typed, names);
  return new FwsealError('USAGE', `unknown command '${typed}'${hint}; run fwseal --help for the list`);
}

/**
 * The environment variables that stand in for a flag of the MQTT commands (serve, device run --broker,
 * fleet-sim): a flag given wins, then the variable (an empty one counts as unset), else nothing.
 * No configuration file is ever read (README "Environment").
 */
export const FLAG_ENV = Object.freeze({ broker: 'FWSEAL_BROKER', trust: 'FWSEAL_TRUST', prefix: 'FWSEAL_PREFIX' });
export type EnvFlag = keyof typeof FLAG_ENV;

export const FLAG_ENV_USAGE = `--broker, --trust and --prefix default to FWSEAL_BROKER, FWSEAL_TRUST and FWSEAL_PREFIX (a flag
given wins; an empty variable counts as unset; no configuration file is read).`;

/** `p` with each of `flags` not given taken from its variable (FLAG_ENV). */
export function withEnv(p: Parsed, flags: readonly EnvFlag[], env: NodeJS.ProcessEnv = process.env): Parsed {
  const values = { ...p.values };
  for (const f of flags) {
    const v = env[FLAG_ENV[f]];
    if (values[f] === undefined && v !== undefined && v !== '') values[f] = v;
  }
  return { values, positionals: p.positionals };
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
  if (total < 16 * 1024 * 1024 || !io.stderrIsTty) return undefined; // short work first: the TTY check creates process.stderr
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
