/**
 * `fwseal hil run` itself (hil/cli.ts loads this module only when the command runs): start the rig,
 * run the matrix, print a line per finished case on stdout (every mode: a CI log shows progress as
 * it happens) with a live status line on a terminal's stderr, then the summary table and the reports.
 */
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type Io } from '../host/commands/common.js';
import { FwsealError } from '../host/errors.js';
import { writeFileAtomic } from '../host/io.js';
import { caseKey, caseLine, junitXml, summaryTable } from './report.js';
import { Rig } from './rig.js';
import { type CaseResult, runMatrix } from './runner.js';
import { loadScenarios, type Scenario } from './scenario.js';

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
  /** The built hil/device-main.js (hil/cli.ts finds it beside itself); default: the rig's own search. */
  readonly deviceMain?: string;
};

/** Frame lines kept per case in the JUnit excerpt (the full log is --logs). */
const EXCERPT_FRAMES = 40;
const EXCERPT_MAX_CHARS = 64 * 1024;

/** Reads each device's log files from where the previous case of that device ended. */
class LogTail {
  readonly #offsets = new Map<string, number>();
  constructor(private readonly dir: string) {}

  #next(name: string): string {
    const path = join(this.dir, name);
    if (!existsSync(path)) return '';
    const from = this.#offsets.get(name) ?? 0;
    const size = statSync(path).size;
    this.#offsets.set(name, size);
    if (size <= from) return '';
    const buf = Buffer.alloc(size - from);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, buf.length, from);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8');
  }

  /** The case's harness log (frame lines cut to the last few) and its device process log. */
  excerpt(device: number): string {
    const lines = this.#next(`dev-${device}.log`).split('\n').filter(Boolean);
    const isFrame = (l: string) => /^\S+ [<>] /.test(l);
    const frames = lines.filter(isFrame).length;
    let skip = Math.max(0, frames - EXCERPT_FRAMES);
    const kept = lines.filter((l) => !(isFrame(l) && skip-- > 0));
    const omitted = frames > EXCERPT_FRAMES ? [`(${frames - EXCERPT_FRAMES} earlier frame lines omitted: the full log is in --logs DIR)`] : [];
    const device_ = this.#next(`dev-${device}.device.log`).trimEnd();
    const text = [...omitted, ...kept, ...(device_ ? ['--- device process ---', device_] : [])].join('\n');
    return text.length > EXCERPT_MAX_CHARS ? `(cut to the last ${EXCERPT_MAX_CHARS} characters)\n${text.slice(-EXCERPT_MAX_CHARS)}` : text;
  }
}

/** The terminal's live view: one status line on stderr, redrawn each second and around each case line. */
function liveView(io: Io, scenarios: readonly Scenario[], slots: number, t0: number) {
  const done = new Map<number, number>();
  let finished = 0;
  const total = scenarios.length * slots;
  const draw = () => {
    const running = Array.from({ length: slots }, (_, d) => [d, scenarios[done.get(d) ?? 0]?.name] as const).filter(([, s]) => s !== undefined);
    const status = `[hil] ${finished}/${total} done, ${((Date.now() - t0) / 1000).toFixed(0)} s; running: ${running.map(([d, s]) => `dev ${d} ${s}`).join(', ')}`;
    io.stderr(`\r\x1b[K${status.slice(0, 159)}`);
  };
  const timer = io.stderrIsTty ? setInterval(draw, 1000) : null;
  timer?.unref();
  return {
    finished(r: CaseResult): void {
      done.set(r.device, (done.get(r.device) ?? 0) + 1);
      finished++;
      if (timer) io.stderr('\r\x1b[K');
      io.stdout(caseLine(r));
      if (timer && finished < total) draw();
    },
    stop(): void {
      if (timer) {
        clearInterval(timer);
        io.stderr('\r\x1b[K');
      }
    },
  };
}

function loadOrUsage(options: HilRunOptions, scenarioDir: string): Scenario[] {
  let scenarios: Scenario[];
  try {
    scenarios = loadScenarios(options.scenarios, scenarioDir);
  } catch (e) {
    // A scenario file that is refused is a usage error whatever was thrown (its path is in the message).
    if (e instanceof FwsealError) throw e;
    throw new FwsealError('USAGE', (e as Error).message);
  }
  if (scenarios.length === 0) throw new FwsealError('USAGE', 'no scenarios');
  return scenarios;
}

async function startRig(options: HilRunOptions, workDir: string, logsDir: string): Promise<Rig> {
  try {
    return await Rig.start({
      devices: options.devices,
      workDir,
      baud: options.baud,
      runtime: options.runtime ?? 'quickjs',
      logsDir,
      ...(options.port ? { port: options.port } : {}),
      ...(options.deviceMain ? { deviceMain: options.deviceMain } : {}),
    });
  } catch (e) {
    // A missing optional package (host/optional.ts) keeps its own code; the rest is the machine's (IO).
    if (e instanceof FwsealError) throw e;
    throw new FwsealError('IO', (e as Error).message);
  }
}

/** Run the matrix and write the reports; 0 when every case passed, 1 otherwise. */
export async function runHil(options: HilRunOptions, io: Io, scenarioDir: string): Promise<number> {
  const scenarios = loadOrUsage(options, scenarioDir);
  const workDir = options.workDir ?? mkdtempSync(join(tmpdir(), 'fwseal-hil-'));
  // Logs are always written (the JUnit excerpts come from them); --logs only says where they stay.
  const logsDir = options.logs ? resolve(options.logs) : join(workDir, 'logs');
  const started = new Date();
  const t0 = Date.now();
  try {
    const rig = await startRig(options, workDir, logsDir);
    const tail = new LogTail(logsDir);
    const logs = new Map<string, string>();
    const view = liveView(io, scenarios, rig.slots.length, t0);
    let results: CaseResult[];
    try {
      results = await runMatrix(rig, scenarios, (r) => {
        logs.set(caseKey(r), tail.excerpt(r.device));
        view.finished(r);
      });
    } finally {
      view.stop();
      await rig.stop();
    }
    const seconds = (Date.now() - t0) / 1000;
    if (options.junit) {
      const properties = {
        baud: String(options.baud),
        devices: String(rig.slots.length),
        target: options.port ?? `simulated (${options.runtime ?? 'quickjs'})`,
      };
      writeFileAtomic(options.junit, junitXml(results, { started, hostname: hostname(), seconds, logs, properties }));
    }
    io.stdout(summaryTable(results));
    const what = options.port ? 'board' : `simulated devices (verifier: ${options.runtime ?? 'quickjs'})`;
    io.stdout(`${scenarios.length} scenarios x ${rig.slots.length} ${what} at ${options.baud} baud in ${seconds.toFixed(1)} s\n`);
    return results.every((r) => r.passed) ? 0 : 1;
  } finally {
    if (options.workDir === undefined) rmSync(workDir, { recursive: true, force: true });
  }
}
