/**
 * The HIL harness end to end, through the real rig: socat pseudo-terminal pairs, simulated devices
 * as separate processes (update agent + boot agent on a file flash), serialport on the harness side,
 * the link emulator in real time. A short suite (2 devices, 4 scenarios, one with a reset
 * mid-upload); the full matrix is `npm run hil`. Outcomes are asserted by code and in the JUnit XML.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultScenarioDir, HIL_COMMANDS } from '../hil/cli.js';
import { provisionDevice } from '../hil/provision.js';
import { makeRelease, makeTrust } from '../hil/world.js';
import { main } from '../host/cli.js';
import { CODES } from '../shared/codes.js';

// socat is a test requirement (tools/setup.sh installs it): missing, the suite fails here, not silently.
beforeAll(() => {
  execFileSync('socat', ['-V'], { stdio: 'ignore' });
});

const tmp = mkdtempSync(join(tmpdir(), 'fwseal-hil-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function hil(args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(
    ['hil', 'run', ...args],
    {
      stdout: (t) => {
        stdout += t;
      },
      stderr: (t) => {
        stderr += t;
      },
      stderrIsTty: false,
    },
    HIL_COMMANDS,
  );
  return { code, stdout, stderr };
}

/** Testcases of a JUnit file: name -> failure message (null when it passed). */
function testcases(xml: string): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const m of xml.matchAll(/<testcase [^>]*name="([^"]+)"[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const failure = m[3]?.match(/<failure message="([^"]*)"/);
    out.set(m[1], failure ? failure[1] : null);
  }
  return out;
}

describe('fwseal hil run (socat ptys, device processes)', () => {
  it('runs 4 scenarios on 2 simulated devices; end states by code; JUnit has one passing testcase per scenario x device', async () => {
    const junit = join(tmp, 'short.xml');
    const logs = join(tmp, 'logs');
    const r = await hil([
      '--devices',
      '2',
      '--scenarios',
      'good-update,tampered-chunk,wrong-device-class,reset-mid-upload-resume',
      '--baud',
      '460800',
      '--junit',
      junit,
      '--logs',
      logs,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const cases = testcases(readFileSync(junit, 'utf8'));
    expect([...cases.keys()].sort()).toEqual(
      ['good-update', 'reset-mid-upload-resume', 'tampered-chunk', 'wrong-device-class'].flatMap((s) => [`${s} [dev 0]`, `${s} [dev 1]`]).sort(),
    );
    expect([...cases.values()].every((f) => f === null)).toBe(true);
    // The summary table reports the codes the devices answered over the link.
    const row = (name: string, dev: number) =>
      r.stdout
        .split('\n')
        .find((l) => l.startsWith(`${name} `) && l.split(/\s+/)[1] === String(dev))
        ?.split(/\s+/) ?? [];
    for (const dev of [0, 1]) {
      expect(row('good-update', dev).slice(2, 8)).toEqual(['PASS', '1', '2.0.0', '2', '0', 'idle']);
      expect(row('tampered-chunk', dev)[6]).toBe(String(CODES.CHUNK_DIGEST_MISMATCH));
      expect(row('wrong-device-class', dev)[6]).toBe(String(CODES.WRONG_DEVICE_CLASS));
      expect(row('reset-mid-upload-resume', dev).slice(2, 7)).toEqual(['PASS', '1', '2.0.0', '2', '0']);
      // The device was reset mid-upload, and the upload resumed from what the flash held.
      const log = readFileSync(join(logs, `dev-${dev}.log`), 'utf8');
      expect(log).toMatch(/device process \d+: power cut/);
      expect(log).toMatch(/skipped \(already on the device\)/);
      expect(readFileSync(join(logs, `dev-${dev}.device.log`), 'utf8')).toMatch(/resumed from flash/);
    }
    expect(r.stdout).toMatch(/8 passed, 0 failed, 0 skipped/);
    // A line per finished case on stdout before the table (stderr is not a terminal here: no live view).
    const caseLines = r.stdout.split('\n').filter((l) => /^PASS +\S+ \[dev [01]\] \d+\.\d s$/.test(l));
    expect(caseLines).toHaveLength(8);
    expect(r.stdout.indexOf(caseLines[0])).toBeLessThan(r.stdout.indexOf('scenario  '));
    // JUnit (Ant/Jenkins): valid against the Jenkins schema, with timestamp, hostname, errors, the
    // run's wall time (the time printed under the table, not a sum of parallel cases) and each case's log.
    expect(spawnSync('xmllint', ['--noout', '--schema', join(__dirname, 'vectors/junit/junit-10.xsd'), junit], { encoding: 'utf8' }).status).toBe(0);
    const xml = readFileSync(junit, 'utf8');
    const suite = xml.match(/<testsuite [^>]*>/)?.[0] ?? '';
    expect(suite).toMatch(/ errors="0" /);
    expect(suite).toMatch(/ timestamp="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d" hostname="[^"]+"/);
    const wall = Number(r.stdout.match(/at 460800 baud in (\d+\.\d) s/)?.[1]);
    expect(Math.abs(Number(suite.match(/ time="([\d.]+)"/)?.[1]) - wall)).toBeLessThanOrEqual(0.06);
    for (const m of xml.matchAll(/<testcase [^>]*name="([^"]+) \[dev \d\]"[^>]*>([\s\S]*?)<\/testcase>/g))
      expect(m[2], m[1]).toMatch(new RegExp(`<system-out>[\\s\\S]*scenario ${m[1]}: start[\\s\\S]*--- device process ---`));
  });

  it('a failing expectation exits 1 and gives a JUnit failure with expected and actual', async () => {
    const good = JSON.parse(readFileSync(join(defaultScenarioDir(), 'wrong-device-class.json'), 'utf8'));
    const path = join(tmp, 'expects-too-much.json');
    writeFileSync(path, JSON.stringify({ ...good, name: 'expects-too-much', expect: { ...good.expect, version: '9.9.9', code: 'OK' } }));
    const junit = join(tmp, 'fail.xml');
    const r = await hil(['--devices', '1', '--scenarios', path, '--baud', '460800', '--junit', junit, '--runtime', 'node']);
    expect(r.code).toBe(1);
    const xml = readFileSync(junit, 'utf8');
    expect(xml).toMatch(/<testsuite name="fwseal-hil" tests="1" failures="1"/);
    const failure = testcases(xml).get('expects-too-much [dev 0]');
    expect(failure).toContain('version: expected &quot;9.9.9&quot;, got &quot;1.0.0&quot;');
    expect(failure).toContain(`code: expected 0 (OK), got ${CODES.WRONG_DEVICE_CLASS} (WRONG_DEVICE_CLASS)`);
    expect(r.stdout).toMatch(/0 passed, 1 failed/);
    expect(r.stdout).toMatch(/^FAIL {2}expects-too-much \[dev 0\] \d+\.\d s: version: expected "9\.9\.9"/m);
  });

  it('rejects an unknown scenario and an unavailable runtime as usage errors, a port that is not there as IO', async () => {
    for (const [args, name] of [
      [['--scenarios', 'no-such-scenario'], 'USAGE'],
      [['--runtime', 'wasm'], 'USAGE'],
      [['--port', join(tmp, 'no-such-port'), '--scenarios', 'good-update'], 'IO'],
    ] as const) {
      const r = await hil([...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${name} (code ${CODES[name]})`);
    }
  });

  it('--port drives a board it did not start: scenarios run over that port, power-cut scenarios are skipped', async () => {
    // The "board": a device process on one end of a socat pair, restarted by this test when it resets.
    const dir = join(tmp, 'board');
    const trust = makeTrust({ root: ['A', 'B', 'C'], rootThreshold: 2, release: ['R1', 'R2', 'R3'], releaseThreshold: 2 });
    const factory = makeRelease({ version: '1.0.0', counter: 1, signers: ['R1', 'R2'], deviceClass: 'hil-board', imageSize: 16384, chunkSize: 1024 });
    expect(provisionDevice(dir, { deviceClass: 'hil-board', trust, envelope: factory.envelope, image: factory.image }).ok).toBe(true);
    const host = join(tmp, 'board-host');
    const board = join(tmp, 'board-dev');
    const socat = spawn('socat', [`pty,raw,echo=0,link=${host}`, `pty,raw,echo=0,link=${board}`], { stdio: 'ignore' });
    let device: ChildProcess | null = null;
    let stopped = false;
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const start = () => {
      device = spawn(process.execPath, ['--import', tsx, join(__dirname, '..', 'hil', 'device-main.ts'), '--dir', dir, '--port', board, '--runtime', 'node'], {
        stdio: 'ignore',
      });
      device.once('exit', () => {
        if (!stopped) start();
      });
    };
    try {
      for (let i = 0; i < 100 && !(existsSync(host) && existsSync(board)); i++) await new Promise((r) => setTimeout(r, 20));
      start();
      const junit = join(tmp, 'port.xml');
      const r = await hil(['--port', host, '--scenarios', 'wrong-device-class,good-update,power-cut-mid-write', '--baud', '460800', '--junit', junit]);
      expect(r.stdout).toMatch(/2 passed, 0 failed, 1 skipped/);
      expect(r.code).toBe(0);
      expect(readFileSync(junit, 'utf8')).toMatch(/name="power-cut-mid-write \[dev 0\]"[^>]*>\s*<skipped message="power cuts need a simulated device"/);
    } finally {
      stopped = true;
      (device as ChildProcess | null)?.kill('SIGKILL');
      socat.kill('SIGKILL');
    }
  });
});
