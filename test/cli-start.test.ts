/**
 * The command index and what is built on it (issue 17): the index agrees with the Command objects it
 * loads, `fwseal help CMD` prints what `fwseal CMD --help` prints, `fwseal completion bash|zsh|fish`
 * offers every command and flag, and a `verify` or `--help` of the built CLI loads none of the
 * modules it does not use (the cold-start work; timings are the bench's, section `cli`).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMAND_INDEX } from '../host/cli-index.js';
import { type Command } from '../host/commands/common.js';
import { bashScript, fishScript, zshScript } from '../host/completion.js';
import { pack } from '../host/pack.js';
import { signEnvelope } from '../host/sign.js';
import { CODES } from '../shared/codes.js';
import { runCli } from './support/cli-run.js';
import { detKey, makeTrust } from './support/fixtures.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'fwseal-cli-start-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const isCommand = (v: unknown): v is Command =>
  !!v && typeof v === 'object' && typeof (v as Command).name === 'string' && typeof (v as Command).run === 'function';

describe('the command index', () => {
  it('matches every Command it loads: name, summary and flags', async () => {
    for (const e of COMMAND_INDEX) {
      const c = await e.load(COMMAND_INDEX);
      expect({ name: c.name, summary: c.summary, options: c.options }, e.name).toEqual({ name: e.name, summary: e.summary, options: e.options });
    }
  });

  it('lists every command that host/commands/*.ts exports', async () => {
    const exported = new Set<string>();
    for (const f of readdirSync(join(ROOT, 'host/commands')).filter((n) => n.endsWith('.ts'))) {
      const m = (await import(pathToFileURL(join(ROOT, 'host/commands', f)).href)) as Record<string, unknown>;
      for (const v of Object.values(m)) for (const c of Array.isArray(v) ? v : [v]) if (isCommand(c)) exported.add(c.name);
    }
    expect(exported.size).toBeGreaterThan(30);
    expect([...exported].filter((n) => !COMMAND_INDEX.some((e) => e.name === n))).toEqual([]);
  });
});

describe('fwseal help CMD', () => {
  it('prints exactly what fwseal CMD --help prints, for every command and group', async () => {
    const names = [...COMMAND_INDEX.map((e) => e.name), ...new Set(COMMAND_INDEX.filter((e) => e.name.includes(' ')).map((e) => e.name.split(' ')[0]))];
    for (const name of names) {
      const words = name.split(' ');
      const viaHelp = await runCli(['help', ...words]);
      const viaFlag = await runCli([...words, '--help']);
      expect(viaFlag.status, name).toBe(0);
      expect(viaFlag.out.length, name).toBeGreaterThan(20);
      expect(viaHelp, name).toEqual(viaFlag);
    }
  });

  it('is a usage error for an unknown command, as the command itself would be', async () => {
    const r = await runCli(['help', 'no-such-command']);
    expect(r.status).toBe(2);
    expect(r.out).toBe('');
    const overview = await runCli(['help']);
    expect(overview.status).toBe(0);
    for (const e of COMMAND_INDEX) expect(overview.out).toContain(`  ${e.name}  `);
  });
});

/** COMPREPLY of the bash script for the words typed so far (the last one is being completed). */
function bashComplete(script: string, words: string[]): string[] {
  const file = join(dir, 'completion.bash');
  writeFileSync(file, script);
  const quoted = words.map((w) => `'${w}'`).join(' ');
  const r = spawnSync('bash', ['-c', `source '${file}'; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _fwseal; printf '%s\\n' "\${COMPREPLY[@]}"`], {
    encoding: 'utf8',
  });
  expect(r.status === 0 || r.status === 1, r.stderr).toBe(true);
  return r.stdout.split('\n').filter(Boolean);
}

describe('fwseal completion', () => {
  it('bash: the script parses (bash -n), and completes commands, subcommands and flags', async () => {
    const r = await runCli(['completion', 'bash']);
    expect(r.status).toBe(0);
    expect(r.out).toBe(bashScript(COMMAND_INDEX));
    const file = join(dir, 'syntax.bash');
    writeFileSync(file, r.out);
    const syntax = spawnSync('bash', ['-n', file], { encoding: 'utf8' });
    expect(syntax.status, syntax.stderr).toBe(0);
    const top = bashComplete(r.out, ['fwseal', '']);
    for (const e of COMMAND_INDEX) expect(top, e.name).toContain(e.name.split(' ')[0]);
    expect(bashComplete(r.out, ['fwseal', 've'])).toEqual(['verify']);
    expect(bashComplete(r.out, ['fwseal', 'trust', '']).sort()).toEqual(['init', 'publish', 'rotate', 'verify']);
    expect(bashComplete(r.out, ['fwseal', 'pack', 'fw.bin', '--chunk'])).toEqual(['--chunk-size']);
    expect(bashComplete(r.out, ['fwseal', 'trust', 'init', '--root-t'])).toEqual(['--root-threshold']);
    // A flag value is a file name (readline's default completion): no flags offered there.
    expect(bashComplete(r.out, ['fwseal', 'verify', '--trust', ''])).toEqual([]);
    for (const e of COMMAND_INDEX) {
      const flags = bashComplete(r.out, ['fwseal', ...e.name.split(' '), '--']);
      expect(flags.sort(), e.name).toEqual([...Object.keys(e.options), 'help'].map((o) => `--${o}`).sort());
    }
  });

  it('zsh and fish: every command and flag is in the script (syntax-checked where the shell is installed)', async () => {
    for (const [shell, script, check] of [
      ['zsh', zshScript(COMMAND_INDEX), ['-n']],
      ['fish', fishScript(COMMAND_INDEX), ['--no-execute']],
    ] as const) {
      const r = await runCli(['completion', shell]);
      expect(r.status).toBe(0);
      expect(r.out).toBe(script);
      for (const e of COMMAND_INDEX) {
        for (const w of e.name.split(' ')) expect(script, e.name).toContain(w);
        for (const o of Object.keys(e.options)) expect(script, `${e.name} --${o}`).toMatch(shell === 'fish' ? `-l ${o}` : `--${o}`);
      }
      const file = join(dir, `syntax.${shell}`);
      writeFileSync(file, script);
      const syntax = spawnSync(shell, [...check, file], { encoding: 'utf8' });
      // ENOENT: the shell is not installed on this machine; the string checks above still ran.
      if (syntax.error === undefined) expect(syntax.status, syntax.stderr).toBe(0);
      else expect((syntax.error as NodeJS.ErrnoException).code).toBe('ENOENT');
    }
  });

  it('refuses an unknown or missing shell (USAGE)', async () => {
    for (const argv of [['completion', 'tcsh'], ['completion']]) {
      const r = await runCli(argv);
      expect(r.status).toBe(2);
      expect(r.err).toContain(`(code ${CODES.USAGE})`);
      expect(r.out).toBe('');
    }
  });
});

/** Modules resolved by node while running the built CLI with `args` (a resolve hook writes each URL to a file). */
function modulesLoaded(args: string[]): { status: number | null; urls: string[] } {
  const log = join(dir, `resolved-${Math.random().toString(36).slice(2)}.txt`);
  const hook = join(dir, 'hook.mjs');
  writeFileSync(
    hook,
    `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const r = await next(specifier, context);
  appendFileSync(${JSON.stringify(log)}, r.url + '\\n');
  return r;
}`,
  );
  const register = join(dir, 'register.mjs');
  writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hook).href)});\n`);
  const r = spawnSync(process.execPath, ['--import', pathToFileURL(register).href, join(ROOT, 'dist/host/cli.js'), ...args], { encoding: 'utf8' });
  let urls: string[] = [];
  try {
    urls = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  } catch {
    urls = [];
  }
  return { status: r.status, urls };
}

const HEAVY = ['mqtt', 'pino', 'prom-client', 'pg', 'better-sqlite3', 'aedes', 'serialport', 'quickjs'];

describe('the built CLI loads what the command uses', () => {
  const verify = ['verify', join(dir, 'fw.cose'), '--trust', join(dir, 'trust.cbor'), '--image', join(dir, 'fw.bin')];
  beforeAll(() => {
    const [A, B, C, R1, R2] = ['A', 'B', 'C', 'R1', 'R2'].map(detKey);
    writeFileSync(join(dir, 'trust.cbor'), makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2], releaseThreshold: 2, signers: [A, B] }));
    writeFileSync(join(dir, 'fw.bin'), Buffer.alloc(100_000, 7));
    const packed = pack({ imagePath: join(dir, 'fw.bin'), deviceClass: 'gw', version: '1.0.0', securityCounter: 1, created: 1764000000 });
    writeFileSync(join(dir, 'fw.cose'), signEnvelope(signEnvelope(packed.envelope, R1).envelope, R2).envelope);
  });

  it('--help and verify load no broker, logging, metrics or database module', () => {
    for (const args of [['--help'], verify]) {
      const r = modulesLoaded(args);
      expect(r.status, args[0]).toBe(0);
      expect(
        r.urls.some((u) => u.includes('/dist/host/cli.js')),
        args[0],
      ).toBe(true);
      expect(
        r.urls.filter((u) => HEAVY.some((h) => u.includes(`/node_modules/${h}`))),
        args[0],
      ).toEqual([]);
      // The hook sees chunks loaded by import() too: verify's own file is there (so the check can fail).
      if (args[0] === 'verify') expect(r.urls.some((u) => u.endsWith('/dist/host/commands/verify.js'))).toBe(true);
    }
  });

  it('verify is one file of its own: the CLI, its two chunks, the command and the one FwsealError (tsup.config.ts)', () => {
    const r = modulesLoaded(verify);
    expect(r.status).toBe(0);
    const ours = [...new Set(r.urls.filter((u) => u.includes('/dist/')).map((u) => u.slice(u.indexOf('/dist/') + 1)))];
    // No pack, key, ceremony or parser chunk beside it: each module costs the ESM loader ~2 ms.
    expect(ours.filter((u) => !/^dist\/chunk-[A-Z0-9]+\.js$/.test(u)).sort()).toEqual([
      'dist/host/cli.js',
      'dist/host/commands/verify.js',
      'dist/host/errors.js',
    ]);
    expect(ours.length).toBeLessThanOrEqual(5);
    expect(r.urls.filter((u) => u.startsWith('node:') && ['child_process', 'net', 'dgram'].includes(u.slice(5)))).toEqual([]);
  });

  it('an error thrown in the one-file verify command is coded (one FwsealError class), not INTERNAL', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'dist/host/cli.js'), 'verify', join(dir, 'fw.cose'), '--trust', join(dir, 'missing.cbor')], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`(code ${CODES.IO})`);
  });
});

describe('the verify command module', () => {
  it('brings its own argument parser, which the index hands to the CLI', async () => {
    const m = await import('../host/commands/verify.js');
    const entry = COMMAND_INDEX.find((e) => e.name === 'verify');
    expect(typeof m.parse).toBe('function');
    expect(await entry?.parser()).toBe(m.parse);
  });
});
