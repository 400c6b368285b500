/**
 * CLI ergonomics (issue 17 item 4): usage errors in fwseal's words with a "did you mean", every
 * --help ending with examples that parse, keygen --dir creating its folder, a public key where a
 * private one belongs (and the reverse) named as such, and inspect naming the keys a file lists.
 * Codes and exit status are asserted; text only where the text is the feature (the suggestion).
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../host/cli.js';
import { suggest, unknownCommand, withEnv } from '../host/commands/common.js';
import { CODES } from '../shared/codes.js';
import { runCli } from './support/cli-run.js';
import { type CliWorld, expectOk, expectUsage, makeCliWorld } from './support/cli-world.js';

/** What Node's parseArgs says; none of it may reach a user (issue 17). */
const NODE_TEXT = /Unknown option|positional argument starting|argument missing|argument is ambiguous|does not take an argument|ERR_PARSE_ARGS/;

/** Commands whose --help text another helper owns; each must still lack examples here, so the list cannot go stale. */
const EXAMPLES_PENDING = new Set<string>([]);

let world: CliWorld;
beforeAll(async () => {
  world = await makeCliWorld(['A', 'B', 'R1'], {
    trust: [
      '--root',
      'A.pub',
      '--root',
      'B.pub',
      '--root-threshold',
      '2',
      '--release',
      'R1.pub',
      '--release-threshold',
      '1',
      '--sign',
      'A.key',
      '--sign',
      'B.key',
    ],
    image: true,
  });
});
afterAll(() => world?.close());

/**
 * The fwseal command line in one example line, split the way a shell would (quotes kept together):
 * what follows `fwseal` up to a pipe, redirection, `)`, `;` or comment (`source <(fwseal completion bash)`).
 */
function exampleArgv(line: string): string[] {
  const m = line.match(/(?:^|[\s(])fwseal\s+([^|;)#<>]*)/);
  expect(m, `${line}: no fwseal command in it`).not.toBeNull();
  return [...m![1].matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((w) => w[1] ?? w[2] ?? w[3]);
}

/** The examples at the end of a usage text: `Examples:` then indented lines, `\` continuations joined. */
function examplesOf(usage: string): string[] | null {
  const at = usage.lastIndexOf('\nExamples:\n');
  if (at < 0) return null;
  return usage
    .slice(at + '\nExamples:\n'.length)
    .replace(/\\\n\s+/g, '')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => l.trim());
}

describe('usage errors in fwseal words, with a suggestion', () => {
  it('an unknown flag is USAGE and names the nearest flag', async () => {
    const r = await world.run('pack', 'image.bin', '--chunksize', '4096', '--out', 'x.cose');
    expectUsage(r);
    expect(r.err).toContain('--chunk-size?');
    expect(r.err).not.toMatch(NODE_TEXT);
  });

  it('a flag without its value, a value given to a switch, a flag where a value belongs: USAGE, never Node text', async () => {
    for (const argv of [
      ['pack', 'image.bin', '--out'],
      ['verify', 'm.cose', '--json=yes'],
      ['pack', 'image.bin', '--out', '--json'],
      ['verify', 'm.cose', '-x'],
    ]) {
      const r = await runCli(argv);
      expect(r.status, argv.join(' ')).toBe(2);
      expect(r.err).toContain(`(code ${CODES.USAGE})`);
      expect(r.err).not.toMatch(NODE_TEXT);
    }
  });

  it('every command answers an unknown flag with USAGE in its own words', async () => {
    for (const c of COMMANDS) {
      const r = await runCli([...c.name.split(' '), '--no-such-flag-anywhere']);
      expect(r.status, c.name).toBe(2);
      expect(r.err, c.name).toContain(`(code ${CODES.USAGE})`);
      expect(r.err, c.name).not.toMatch(NODE_TEXT);
    }
  });

  it('suggest: typos, swaps and unique prefixes find the flag; far words find nothing', () => {
    const flags = ['chunk-size', 'counter', 'created', 'device-class', 'out', 'json'];
    expect(suggest('chunksize', flags)).toBe('chunk-size');
    expect(suggest('chnuk-size', flags)).toBe('chunk-size');
    expect(suggest('device-clas', flags)).toBe('device-class');
    expect(suggest('chunk', flags)).toBe('chunk-size');
    expect(suggest('jsno', flags)).toBe('json');
    expect(suggest('zebra', flags)).toBeUndefined();
    expect(suggest('c', flags)).toBeUndefined();
  });

  it('an unknown command is USAGE with the nearest command or subcommand', () => {
    const names = COMMANDS.map((c) => c.name);
    const e1 = unknownCommand(['verfy', 'm.cose'], names);
    expect(e1.codeName).toBe('USAGE');
    expect(e1.message).toContain('verify?');
    expect(unknownCommand(['trust', 'inti'], names).message).toContain('trust init?');
    expect(unknownCommand(['campain', 'status'], names).message).toContain('campaign?');
    expect(unknownCommand(['xyzzy'], names).message).not.toContain('did you mean');
  });
});

describe('every --help ends with one or two examples that parse', () => {
  it('each command: Examples last, each one a command line its parser accepts', async () => {
    for (const c of COMMANDS) {
      const help = await runCli([...c.name.split(' '), '--help']);
      expect(help.status, c.name).toBe(0);
      const examples = examplesOf(help.out);
      if (EXAMPLES_PENDING.has(c.name)) {
        expect(examples, `${c.name} has examples now: remove it from EXAMPLES_PENDING`).toBeNull();
        continue;
      }
      expect(examples, `${c.name} --help has no Examples: section at its end`).not.toBeNull();
      expect(examples!.length, c.name).toBeGreaterThanOrEqual(1);
      expect(examples!.length, c.name).toBeLessThanOrEqual(2);
      for (const line of examples!) {
        const argv = exampleArgv(line);
        expect(argv.slice(0, c.name.split(' ').length).join(' '), line).toBe(c.name);
        // --help after the example: the parser checks every flag, nothing runs.
        const r = await runCli([...argv, '--help']);
        expect(r.status, `${line}\n${r.err}`).toBe(0);
      }
    }
  });
});

describe('keygen --dir', () => {
  it('creates the folder and its missing parents, mode 0700', async () => {
    const base = mkdtempSync(join(tmpdir(), 'fwseal-keydir-'));
    try {
      const dir = join(base, 'new', 'keys');
      expectOk(await runCli(['keygen', 'K1', '--dir', dir]));
      expect(existsSync(join(dir, 'K1.key'))).toBe(true);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(join(base, 'new')).mode & 0o777).toBe(0o700);
      // A second key in the existing folder: the folder is used as it is.
      expectOk(await runCli(['keygen', 'K2', '--dir', dir]));
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });

  it('creates nothing when the key cannot be made (no passphrase, bad name)', async () => {
    const base = mkdtempSync(join(tmpdir(), 'fwseal-keydir-'));
    const saved = process.env.FWSEAL_PASSPHRASE;
    try {
      expectUsage(await runCli(['keygen', 'bad/name', '--dir', join(base, 'a')]));
      expect(existsSync(join(base, 'a'))).toBe(false);
      process.env.FWSEAL_PASSPHRASE = '';
      expectUsage(await runCli(['keygen', 'K3', '--dir', join(base, 'b')]), 'NO_PASSPHRASE');
      expect(existsSync(join(base, 'b'))).toBe(false);
    } finally {
      process.env.FWSEAL_PASSPHRASE = saved;
      rmSync(base, { recursive: true, force: true });
    }
  });
});

describe('a key of the wrong kind is named as such (KEY_FORMAT), before any permission check', () => {
  it('a .pub given to sign --key', async () => {
    expectUsage(await world.run('sign', 'm.cose', '--key', 'R1.pub'), 'KEY_FORMAT');
  });

  it('a .key given where a public key belongs: trust init --root, revoke --key, attach --pub', async () => {
    const init = ['trust', 'init', '--root', 'A.key', '--root-threshold', '1', '--release', 'R1.pub', '--release-threshold', '1', '--sign', 'A.key'];
    expectUsage(await world.run(...init, '--out', 't2.cbor'), 'KEY_FORMAT');
    expect(existsSync(world.path('t2.cbor'))).toBe(false);
    const revoke = ['revoke', '--trust', 'trust.cbor', '--version', '1', '--key', 'R1.key', '--sign', 'A.key', '--sign', 'B.key', '--out', 'rl.cbor'];
    expectUsage(await world.run(...revoke), 'KEY_FORMAT');
    expectUsage(await world.run('attach', 'm.cose', '--raw', '00', '--raw-pub', 'R1.key'), 'KEY_FORMAT');
  });
});

describe('inspect names the keys a file lists', () => {
  it('trust.cbor --keys DIR: each role key with its .pub name; without: ids only; --json unchanged', async () => {
    const plain = await world.run('inspect', 'trust.cbor');
    expectOk(plain);
    expect(plain.out).not.toMatch(/^\s*name: /m);
    const named = await world.run('inspect', 'trust.cbor', '--keys', '.');
    expectOk(named);
    for (const [name, kid] of Object.entries(world.kids)) expect(named.out).toMatch(new RegExp(`keyId: ${kid}\n\\s*name: ${name}\n`));
    const one = await world.run('inspect', 'trust.cbor', '--pub', 'A.pub');
    expect(one.out).toMatch(/^\s*name: A$/m);
    expect(one.out).not.toMatch(/^\s*name: R1$/m);
    const asJson = await world.run('inspect', 'trust.cbor', '--keys', '.', '--json');
    expect(JSON.parse(asJson.out)).toEqual(JSON.parse((await world.run('inspect', 'trust.cbor', '--json')).out));
  });

  it('a revocation list --keys DIR: each revoked key id with its name', async () => {
    expectOk(
      await world.run('revoke', '--trust', 'trust.cbor', '--version', '1', '--key', 'R1.pub', '--sign', 'A.key', '--sign', 'B.key', '--out', 'rl1.cbor'),
    );
    const named = await world.run('inspect', 'rl1.cbor', '--keys', '.');
    expectOk(named);
    expect(named.out).toContain(`${world.kids.R1} (R1)`);
    expect((await world.run('inspect', 'rl1.cbor')).out).not.toContain('(R1)');
  });

  it('--revocations without --trust is still USAGE', async () => {
    expectUsage(await world.run('inspect', 'trust.cbor', '--revocations', 'trust.cbor'));
  });
});

describe('FWSEAL_BROKER, FWSEAL_TRUST, FWSEAL_PREFIX', () => {
  it('withEnv: a flag given wins, then a non-empty variable, else nothing; only the flags asked for', () => {
    const env = { FWSEAL_BROKER: 'mqtt://env:1883', FWSEAL_TRUST: 'env.cbor', FWSEAL_PREFIX: '' };
    const p = withEnv({ values: { broker: 'mqtt://flag:1883' }, positionals: [] }, ['broker', 'trust', 'prefix'], env);
    expect(p.values).toEqual({ broker: 'mqtt://flag:1883', trust: 'env.cbor' });
    expect(withEnv({ values: {}, positionals: [] }, ['trust'], env).values).toEqual({ trust: 'env.cbor' });
  });
});

describe('an unknown command or subcommand', () => {
  it('is USAGE with the nearest command named', async () => {
    const cmd = await runCli(['verfy', 'x.cose']);
    expect(cmd.status).toBe(2);
    expect(cmd.err).toContain('(code 800)');
    expect(cmd.err).toContain('did you mean verify?');
    const sub = await runCli(['trust', 'inti']);
    expect(sub.status).toBe(2);
    expect(sub.err).toContain('(code 800)');
    expect(sub.err).toContain('did you mean trust init?');
  });
});
