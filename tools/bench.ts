/**
 * `npm run bench`: fwseal benchmarks. Not a timed test: it prints a table and writes JSON
 * (default bench-results/bench.json) and exits 0 whether or not a goal is met; it exits non-zero
 * only when a benchmark could not run (bad flags, a crash, a rejected verification).
 *
 *   tsx tools/bench.ts [--size-mb N] [--runs N] [--json-out PATH] [--only SECTION[,SECTION]]
 *
 * Each section (tools/bench/*.ts) returns rows; add new sections to SECTIONS.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cliBench } from './bench/cli.js';
import { renderTable, type Section, type SectionResult, writeJson } from './bench/common.js';
import { hilBench } from './bench/hil.js';
import { ota } from './bench/ota.js';
import { packVerify } from './bench/pack-verify.js';
import { powercut } from './bench/powercut.js';
import { quickjsBench } from './bench/quickjs.js';
import { revocation } from './bench/revocation.js';
import { signing } from './bench/signing.js';
import { tlogBench } from './bench/tlog.js';

const SECTIONS: readonly Section[] = [packVerify, cliBench, quickjsBench, powercut, ota, revocation, hilBench, signing, tlogBench];

const USAGE = `usage: tsx tools/bench.ts [--size-mb N] [--runs N] [--json-out PATH] [--only SECTION[,SECTION]]
  --size-mb N     image size in MiB (default 256)
  --runs N        runs per row, best and median reported (default 3; revocation: one list published per run)
  --json-out PATH JSON results (default bench-results/bench.json)
  --only LIST     sections to run (${SECTIONS.map((s) => s.name).join(', ')})`;

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function positiveInt(value: string | undefined, flag: string, dflt: number): number {
  if (value === undefined) return dflt;
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    process.stderr.write(`bench: ${flag} must be a whole number >= 1\n${USAGE}\n`);
    process.exit(2);
  }
  return Number(value);
}

/**
 * The measurements are synchronous, so a signal handler cannot run mid-measurement, and tsx
 * SIGKILLs a child that does not answer SIGINT within 60 ms. A small detached watcher removes the
 * temporary directory once this process is gone, however it ended; it then exits by itself.
 */
function startReaper(dir: string): void {
  const code = `const [pid, dir] = process.argv.slice(1);
const t = setInterval(() => { try { process.kill(Number(pid), 0); } catch { clearInterval(t); require('node:fs').rmSync(dir, { recursive: true, force: true }); } }, 500);`;
  try {
    spawn(process.execPath, ['-e', code, String(process.pid), dir], { detached: true, stdio: 'ignore' }).unref();
  } catch {
    // Best effort: the normal cleanup below still runs on success and on error.
  }
}

async function main(): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        'size-mb': { type: 'string' },
        runs: { type: 'string' },
        'json-out': { type: 'string' },
        only: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const sizeMiB = positiveInt(values['size-mb'] as string | undefined, '--size-mb', 256);
  const runs = positiveInt(values.runs as string | undefined, '--runs', 3);
  const jsonOut = resolve((values['json-out'] as string | undefined) ?? join(repoRoot, 'bench-results/bench.json'));
  const only =
    typeof values.only === 'string'
      ? values.only
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : null;
  const unknown = only?.filter((n) => !SECTIONS.some((s) => s.name === n)) ?? [];
  if (unknown.length) {
    process.stderr.write(`bench: unknown section ${unknown.join(', ')}\n${USAGE}\n`);
    return 2;
  }
  const selected = SECTIONS.filter((s) => !only || only.includes(s.name));

  const tmpRoot = mkdtempSync(join(tmpdir(), 'fwseal-bench-'));
  startReaper(tmpRoot);
  const cleanup = () => rmSync(tmpRoot, { recursive: true, force: true });
  const onSignal = (sig: NodeJS.Signals) => {
    cleanup();
    process.stderr.write(`bench: interrupted (${sig}); temporary files removed\n`);
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

  const results: SectionResult[] = [];
  try {
    for (const section of selected) {
      const tmpDir = join(tmpRoot, section.name);
      mkdirSync(tmpDir);
      log(`section ${section.name}`);
      try {
        results.push(await section.run({ repoRoot, tmpDir, sizeMiB, runs, log }));
      } finally {
        rmSync(tmpDir, { recursive: true, force: true });
      }
    }
  } finally {
    cleanup();
  }
  process.stdout.write(renderTable(results));
  writeJson(jsonOut, { sizeMiB, runs, sections: selected.map((s) => s.name) }, results);
  process.stdout.write(`\nwrote ${jsonOut}\n`);
  return 0;
}

main().then(
  (status) => process.exit(status),
  (e: unknown) => {
    process.stderr.write(`bench: failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
