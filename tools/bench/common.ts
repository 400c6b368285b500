/**
 * The benchmark framework: sections return rows; one table printer and one JSON writer for all.
 * Benchmarks report, they never gate: a missed goal is a FAIL line, not a non-zero exit.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, platform, release } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { writeFileAtomic } from '../../host/io.js';

export const MiB = 1024 * 1024;

export type BenchContext = {
  readonly repoRoot: string;
  /** A private temporary directory for this section; removed after the run (also on error). */
  readonly tmpDir: string;
  readonly sizeMiB: number;
  readonly runs: number;
  /** Progress lines (stderr), so stdout is only the table. */
  readonly log: (line: string) => void;
};

export type Row = {
  /** Short label, unique within its section. */
  readonly name: string;
  /** Bytes processed per run (for MB/s). */
  readonly bytes: number;
  /** Wall time of every run, seconds. */
  readonly seconds: readonly number[];
  readonly bestSeconds: number;
  readonly medianSeconds: number;
  /** Throughput of the best run, MB/s (10^6 bytes per second). */
  readonly mbPerSec: number;
  /** Baseline best time / this row's best time (>= 1 means faster than the baseline); null for the baseline itself or when not applicable. */
  readonly ratio: number | null;
  /** Peak resident set size of a child process, KiB (max over runs); null for in-process rows. */
  readonly peakRssKiB: number | null;
  readonly note?: string;
  /**
   * For rows whose headline figure is not a throughput (ms per call, bytes): that figure and its
   * unit, printed in a `value` column. Such rows have `bytes` 0 and a non-finite `mbPerSec`
   * (printed '-', null in the JSON); size rows, which time nothing, also have empty `seconds`.
   */
  readonly value?: number;
  readonly unit?: string;
};

export type Verdict = { readonly name: string; readonly goal: number; readonly value: number | null; readonly pass: boolean; readonly basis: string };

export type SectionResult = {
  readonly name: string;
  readonly title: string;
  readonly rows: readonly Row[];
  readonly verdicts: readonly Verdict[];
  readonly notes: readonly string[];
};

export type Section = { readonly name: string; run(ctx: BenchContext): Promise<SectionResult> | SectionResult };

// ---------- measuring ----------

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Let pending signal handlers (Ctrl-C cleanup) run between measurements; the measurements are synchronous. */
export function yieldToSignals(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Time one synchronous call, seconds. */
export function timeSync<T>(fn: () => T): { seconds: number; value: T } {
  const t0 = process.hrtime.bigint();
  const value = fn();
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, value };
}

export type Samples = { seconds: number[]; rssKiB: number[] };

export function row(name: string, bytes: number, samples: Samples, baselineBest: number | null, note?: string): Row {
  const best = Math.min(...samples.seconds);
  return {
    name,
    bytes,
    seconds: samples.seconds,
    bestSeconds: best,
    medianSeconds: median(samples.seconds),
    mbPerSec: bytes / best / 1e6,
    ratio: baselineBest === null ? null : baselineBest / best,
    peakRssKiB: samples.rssKiB.length ? Math.max(...samples.rssKiB) : null,
    ...(note ? { note } : {}),
  };
}

/** A row for a per-call time: `value` is the best run in ms; ratio as in `row` (baseline best / this best). */
export function msRow(name: string, samples: Samples, baselineBest: number | null, note?: string): Row {
  return { ...row(name, 0, samples, baselineBest, note), mbPerSec: NaN, value: Math.min(...samples.seconds) * 1000, unit: 'ms' };
}

/** A row that times nothing (a size, a memory figure): only `value` and `unit`. */
export function valueRow(name: string, value: number, unit: string, note?: string): Row {
  return {
    name,
    bytes: 0,
    seconds: [],
    bestSeconds: NaN,
    medianSeconds: NaN,
    mbPerSec: NaN,
    ratio: null,
    peakRssKiB: null,
    ...(note ? { note } : {}),
    value,
    unit,
  };
}

const GNU_TIME = '/usr/bin/time';

/**
 * Runs a child process to completion and measures its wall time and peak RSS. Peak RSS comes from
 * GNU time (-f %M, KiB) when present; otherwise Node children are started with a preload that
 * records process.resourceUsage().maxRSS at exit (non-Node children then report no RSS).
 */
export class ChildRunner {
  private readonly gnuTime: boolean;
  private readonly preload: string;
  private readonly rssFile: string;

  constructor(readonly tmpDir: string) {
    this.gnuTime = existsSync(GNU_TIME) && spawnSync(GNU_TIME, ['-f', '%M', 'true'], { encoding: 'utf8' }).status === 0;
    this.rssFile = join(tmpDir, 'peak-rss.txt');
    this.preload = join(tmpDir, 'rss-preload.cjs');
    if (!this.gnuTime) {
      writeFileSync(
        this.preload,
        `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(this.rssFile)}, String(process.resourceUsage().maxRSS)));\n`,
      );
    }
  }

  get rssMethod(): string {
    return this.gnuTime ? 'GNU time -f %M' : 'process.resourceUsage().maxRSS preload (node children only)';
  }

  /** Run `cmd args` once. Without GNU time, peak RSS is known only when `cmd` is process.execPath. */
  run(
    cmd: string,
    args: readonly string[],
    opts: { cwd?: string } = {},
  ): { seconds: number; rssKiB: number | null; status: number | null; stdout: string; stderr: string } {
    rmSync(this.rssFile, { force: true });
    let file = cmd;
    let argv = [...args];
    if (this.gnuTime) {
      file = GNU_TIME;
      argv = ['-f', '%M', '-o', this.rssFile, '--', cmd, ...args];
    } else if (cmd === process.execPath) {
      argv = ['--require', this.preload, ...args];
    }
    const t0 = process.hrtime.bigint();
    const r = spawnSync(file, argv, { cwd: opts.cwd, encoding: 'utf8', maxBuffer: 64 * MiB, stdio: ['ignore', 'pipe', 'pipe'] });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    if (r.error) throw r.error;
    let rssKiB: number | null = null;
    if (existsSync(this.rssFile)) {
      // GNU time writes "Command exited with non-zero status N" before %M on failure: take the last number.
      const nums = readFileSync(this.rssFile, 'utf8').match(/\d+/g);
      if (nums) rssKiB = Number(nums[nums.length - 1]);
    }
    return { seconds, rssKiB, status: r.status, stdout: r.stdout, stderr: r.stderr };
  }
}

// ---------- reporting ----------

const fmt = {
  s: (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '-'),
  mbs: (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-'),
  ratio: (x: number | null) => (x === null ? '-' : x.toFixed(2)),
  rss: (k: number | null) => (k === null ? '-' : (k / 1024).toFixed(1)),
  value: (v: number, unit: string) => `${Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1)} ${unit}`,
};

/** A plain aligned table of every section's rows, then each section's notes and verdict lines. */
export function renderTable(results: readonly SectionResult[]): string {
  // The `value` column appears only when some row has a unit, so throughput-only tables are unchanged.
  const withValue = results.some((sec) => sec.rows.some((r) => r.unit !== undefined));
  const header = ['section', 'row', 'MiB', 'best s', 'median s', 'MB/s', 'ratio', 'peak RSS MiB', ...(withValue ? ['value'] : [])];
  const right = [false, false, true, true, true, true, true, true, true];
  const lines: string[][] = [header];
  for (const sec of results) {
    for (const r of sec.rows) {
      const mib = r.unit !== undefined && r.bytes === 0 ? '-' : String(Math.round((r.bytes / MiB) * 10) / 10);
      const line = [sec.name, r.name, mib, fmt.s(r.bestSeconds), fmt.s(r.medianSeconds), fmt.mbs(r.mbPerSec), fmt.ratio(r.ratio), fmt.rss(r.peakRssKiB)];
      if (withValue) line.push(r.unit === undefined || r.value === undefined ? '' : fmt.value(r.value, r.unit));
      lines.push(line);
    }
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i].length)));
  const fmtLine = (l: string[]) =>
    l
      .map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const out = [fmtLine(lines[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.slice(1).map(fmtLine)];
  for (const sec of results) {
    out.push('');
    out.push(`[${sec.name}] ${sec.title}`);
    for (const n of sec.notes) out.push(`  ${n}`);
    if (sec.verdicts.length) {
      const goals = [...new Set(sec.verdicts.map((v) => v.goal))];
      for (const g of goals) {
        const vs = sec.verdicts.filter((v) => v.goal === g);
        out.push(`goal >= ${g}: ${vs.map((v) => `${v.name} ${v.pass ? 'PASS' : 'FAIL'}`).join(', ')}`);
        for (const v of vs) out.push(`  ${v.name}: ratio ${fmt.ratio(v.value)} (${v.basis})`);
      }
    }
  }
  return `${out.join('\n')}\n`;
}

export function writeJson(path: string, config: Record<string, unknown>, results: readonly SectionResult[]): void {
  const doc = {
    tool: 'fwseal bench',
    date: new Date().toISOString(),
    host: { node: process.version, platform: `${platform()} ${release()}`, cpu: cpus()[0]?.model ?? 'unknown', cpus: cpus().length },
    config,
    sections: results,
  };
  mkdirSync(dirname(path), { recursive: true });
  writeFileAtomic(path, `${JSON.stringify(doc, null, 2)}\n`);
}

/** .ts files under root/dirs modified after `since` (ms), relative to root. */
export function newerSources(root: string, dirs: readonly string[], since: number): string[] {
  const out: string[] = [];
  for (const d of dirs) {
    for (const e of readdirSync(join(root, d), { withFileTypes: true, recursive: true })) {
      if (!e.isFile() || !e.name.endsWith('.ts')) continue;
      const full = join(e.parentPath, e.name);
      if (statSync(full).mtimeMs > since) out.push(relative(root, full));
    }
  }
  return out;
}
