import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(__dirname, '..');
const tsx = join(root, 'node_modules/tsx/dist/cli.mjs');

describe('npm run demo', () => {
  it('runs the whole sign -> verify -> reject flow and every step behaves as it says', () => {
    const r = spawnSync(process.execPath, [tsx, join(root, 'tools/demo.ts')], {
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, FWSEAL_PASSPHRASE: '' },
    });
    expect(r.status, `${r.stderr}\n--- stdout (last 4000 characters) ---\n${r.stdout.slice(-4000)}`).toBe(0);
    expect(r.stdout).toMatch(/All \d+ steps behaved as described/);
    for (const code of ['THRESHOLD_NOT_MET', 'CHUNK_DIGEST_MISMATCH', 'ROLLBACK', 'WRONG_DEVICE_CLASS', 'REVOKED_KEY'])
      expect(r.stdout).toContain(`REJECTED ${code}`);
    // The key compromise drill (steps 16-18): list 2 published, the 1.6.0 rollout restarted, the whole fleet enforcing it.
    expect(r.stdout).toMatch(/done: revocation list version 2; \d+ campaign\(s\) halted, 1 restarted; 6\/6 online devices enforce it/);
    // It ends with the web console of the server it ran (SPEC.md §12.9 "Web console"); stdout is a pipe here, so it does not hold.
    expect(r.stdout.trimEnd().split('\n').slice(-2)[0]).toMatch(/^Web console: http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(r.stdout).not.toContain('Holding the server');
  });
});

/**
 * tools/demo/hold.ts run in a child, as the demo runs it: the test project may not import tools/
 * (layers, test/layering.test.ts), so a small script in a temp folder does, and prints what it got.
 */
function toolScript(dir: string, body: string): string {
  const file = join(dir, `s${Math.random().toString(36).slice(2)}.mts`);
  writeFileSync(file, `import { consoleLines, demoOptions, holdForConsole } from ${JSON.stringify(join(root, 'tools/demo/hold.ts'))};\n${body}\n`);
  return file;
}

describe('how long the demo holds its server for the console', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fwseal-demo-hold-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a minute on a terminal, 0 elsewhere; --hold SECONDS, --keep until Ctrl-C; a malformed command line refused; sign-in told when tokens are in play', () => {
    const file = toolScript(
      dir,
      `const opt = (argv: string[], tty: boolean) => { try { const o = demoOptions(argv, tty); return { ...o, holdSeconds: String(o.holdSeconds) }; } catch { return 'refused'; } };
console.log(JSON.stringify({
  tty: opt([], true), pipe: opt([], false), hold: opt(['--hold', '5'], false), zero: opt(['--hold', '0'], true), keep: opt(['--keep'], false),
  broker: opt(['--broker', 'mqtt://127.0.0.1:1883'], false),
  bad: [['--hold', '-1'], ['--hold', '1.5'], ['--hold', '86401'], ['--hold', '5', '--keep'], ['--bogus'], ['extra']].map((a) => opt(a, false)),
  open: consoleLines('http://127.0.0.1:8080'), tokens: consoleLines('https://fw.example:8443', 'tokens.json'),
}));`,
    );
    const r = spawnSync(process.execPath, [tsx, file], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout);
    expect(got.tty).toEqual({ holdSeconds: '60', help: false });
    expect(got.pipe).toEqual({ holdSeconds: '0', help: false });
    expect(got.hold.holdSeconds).toBe('5');
    expect(got.zero.holdSeconds).toBe('0');
    expect(got.keep.holdSeconds).toBe('Infinity');
    expect(got.broker).toEqual({ broker: 'mqtt://127.0.0.1:1883', holdSeconds: '0', help: false });
    expect(got.bad).toEqual(Array(6).fill('refused'));
    expect(got.open[0]).toBe('Web console: http://127.0.0.1:8080/');
    expect(got.open).toHaveLength(2);
    expect(got.tokens[0]).toBe('Web console: https://fw.example:8443/');
    expect(got.tokens[1]).toContain('fwseal token create NAME --role viewer --tokens tokens.json');
  }, 60_000);

  it('the demo refuses a malformed command line before doing anything (exit 2), and --help exits 0', () => {
    const demo = (...argv: string[]) => spawnSync(process.execPath, [tsx, join(root, 'tools/demo.ts'), ...argv], { encoding: 'utf8', timeout: 60_000 });
    expect(demo('--hold', 'soon').status).toBe(2);
    const help = demo('--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('--hold SECONDS');
    expect(help.stdout).not.toContain('fwseal demo'); // the usage only: no step ran
  }, 60_000);

  it('--keep holds until Ctrl-C, then stops cleanly (exit 0)', async () => {
    const child = spawn(process.execPath, [tsx, toolScript(dir, "await holdForConsole(['Web console: x'], Infinity);")], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('until Ctrl-C')) resolve();
      });
      child.on('exit', () => reject(new Error(`exited before holding: ${out}${err}`)));
    });
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(out).toContain('Stopping the server.');
  }, 60_000);
});
