#!/usr/bin/env node
/**
 * `fwseal hil run`: the HIL harness as a CLI command. This file is also an entry point: the fwseal
 * CLI (host/cli.ts `main`) with the hil commands added, so `fwseal hil run` works without host/
 * importing hil/ (ARCHITECTURE.md layering).
 */
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runIfEntryPoint } from '../host/cli.js';
import { type Command, type Io, int, noPositionals, str } from '../host/commands/common.js';
import { FwsealError } from '../host/errors.js';
import { writeFileAtomic } from '../host/io.js';
import { junitXml, summaryTable } from './report.js';
import { Rig } from './rig.js';
import { runMatrix } from './runner.js';
import { loadScenarios } from './scenario.js';

const here = dirname(fileURLToPath(import.meta.url));
/** hil/scenarios beside the source, or beside the built file (dist/hil -> hil/scenarios). */
export function defaultScenarioDir(): string {
  for (const d of [join(here, 'scenarios'), join(here, '..', '..', 'hil', 'scenarios')]) {
    try {
      realpathSync(d);
      return d;
    } catch {
      /* next */
    }
  }
  return join(here, 'scenarios');
}

export type HilRunOptions = {
  readonly devices: number;
  readonly scenarios?: string;
  readonly junit?: string;
  readonly baud: number;
  readonly port?: string;
  readonly logs?: string;
  readonly workDir?: string;
  /** Verifier of the simulated devices: the device bundle in QuickJS (default) or Node. */
  readonly runtime?: 'quickjs' | 'node';
};

export const hilRun: Command = {
  name: 'hil run',
  summary: 'run HIL scenarios on simulated devices (socat ptys) or a real board; JUnit XML',
  usage: `fwseal hil run [--devices N] [--scenarios NAME,...|DIR] [--junit FILE] [--baud N] [--port PATH]
    [--runtime node|quickjs] [--logs DIR] [--work DIR]

Starts N simulated devices (default 2), each a separate process on its own socat pty pair running
the update agent and boot agent on a file flash, and runs every scenario (default: all of
hil/scenarios) on every device through the link emulator at --baud (default 115200). --port PATH
drives one real board instead (scenarios with power cuts are skipped). Each scenario asserts the
device's end state over the link (fwseal status). --junit writes one testcase per scenario x device;
--logs writes per-device logs of frames and state transitions. Exit 1 when any case fails.
--runtime: where the simulated devices verify: quickjs (default: the device bundle
dist/device/fwseal-verifier.js inside QuickJS; needs npm run build) or node (the same code in Node).`,
  options: {
    devices: { type: 'string' },
    scenarios: { type: 'string' },
    junit: { type: 'string' },
    baud: { type: 'string' },
    port: { type: 'string' },
    runtime: { type: 'string' },
    logs: { type: 'string' },
    work: { type: 'string' },
  },
  async run(p, io) {
    noPositionals(p);
    const runtime = str(p, 'runtime') ?? 'quickjs';
    if (runtime !== 'node' && runtime !== 'quickjs') throw new FwsealError('USAGE', `--runtime must be quickjs or node, not ${runtime}`);
    const options: HilRunOptions = {
      runtime,
      devices: int(p, 'devices', 1, 64, 2),
      baud: int(p, 'baud', 1200, 4_000_000, 115200),
      ...optional('scenarios', str(p, 'scenarios')),
      ...optional('junit', str(p, 'junit')),
      ...optional('port', str(p, 'port')),
      ...optional('logs', str(p, 'logs')),
      ...optional('workDir', str(p, 'work')),
    };
    return runHil(options, io);
  },
};

function optional<K extends string>(key: K, v: string | undefined): { [P in K]?: string } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: string };
}

/** Run the matrix and write the reports; 0 when every case passed, 1 otherwise. */
export async function runHil(options: HilRunOptions, io: Io): Promise<number> {
  let scenarios: ReturnType<typeof loadScenarios>;
  try {
    scenarios = loadScenarios(options.scenarios, defaultScenarioDir());
  } catch (e) {
    throw new FwsealError('USAGE', (e as Error).message);
  }
  if (scenarios.length === 0) throw new FwsealError('USAGE', 'no scenarios');
  const workDir = options.workDir ?? mkdtempSync(join(tmpdir(), 'fwseal-hil-'));
  const t0 = Date.now();
  let rig: Rig;
  try {
    rig = await Rig.start({
      devices: options.devices,
      workDir,
      baud: options.baud,
      runtime: options.runtime ?? 'quickjs',
      ...(options.port ? { port: options.port } : {}),
      ...(options.logs ? { logsDir: resolve(options.logs) } : {}),
    });
  } catch (e) {
    // A missing optional package (host/optional.ts) keeps its own code.
    if (e instanceof FwsealError) throw e;
    throw new FwsealError('IO', (e as Error).message);
  }
  try {
    const results = await runMatrix(rig, scenarios, (r) => {
      if (io.stderrIsTty) io.stderr(`${r.passed ? 'pass' : 'FAIL'} ${r.scenario} [dev ${r.device}] ${r.seconds.toFixed(1)} s\n`);
    });
    if (options.junit) writeFileAtomic(options.junit, junitXml(results));
    io.stdout(summaryTable(results));
    io.stdout(
      `${scenarios.length} scenarios x ${rig.slots.length} ${options.port ? 'board' : `simulated devices (verifier: ${options.runtime ?? 'quickjs'})`} at ${options.baud} baud in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`,
    );
    return results.every((r) => r.passed) ? 0 : 1;
  } finally {
    await rig.stop();
    if (options.workDir === undefined) rmSync(workDir, { recursive: true, force: true });
  }
}

export const HIL_COMMANDS: readonly Command[] = [hilRun];

runIfEntryPoint(import.meta.url, HIL_COMMANDS);
