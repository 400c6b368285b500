/**
 * Section "pack-verify": `fwseal pack` and `fwseal verify` throughput on one random image, as a
 * ratio against `sha256sum` of the same file in the same run (goal >= 0.9 for both).
 *
 * Rows: sha256sum (baseline, child process), pack and verify in-process (host pack() and
 * verifyFiles() given the digest table, which a matching image does not read: SPEC.md §14 H14) and end to end through the built CLI (node dist/host/cli.js).
 * Rounds are interleaved (every row once per round) so drift hits all rows alike; each row reports
 * best and median of its runs, and the ratio is baseline best / row best. The CLI rows are also run
 * on an image 1/8 the size to show that peak RSS does not grow with the image.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { pack } from '../../host/pack.js';
import { signEnvelope } from '../../host/sign.js';
import { verifyFiles } from '../../host/verify.js';
import { detKey, makeTrust } from '../../test/support/fixtures.js';
import {
  type BenchContext,
  ChildRunner,
  MiB,
  newerSources,
  type Row,
  row,
  type Samples,
  type Section,
  type SectionResult,
  timeSync,
  type Verdict,
  yieldToSignals,
} from './common.js';

const GOAL = 0.9;
const BLOCK = 16 * MiB;
const DEVICE_CLASS = 'bench-gw';
const CREATED = 1764000000;

function writeRandomFile(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  try {
    const buf = Buffer.allocUnsafe(Math.min(BLOCK, bytes));
    for (let done = 0; done < bytes; ) {
      const n = Math.min(buf.length, bytes - done);
      randomFillSync(buf, 0, n);
      for (let o = 0; o < n; ) o += writeSync(fd, buf, o, n - o);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** Read the whole file once so every measured run starts with it in the page cache. */
function warm(path: string): void {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(BLOCK);
    while (readSync(fd, buf, 0, buf.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

/** The CLI as built; built here only when missing (others may be rebuilding it concurrently). */
function findCli(ctx: BenchContext): { path: string | null; note: string } {
  const path = join(ctx.repoRoot, 'dist/host/cli.js');
  if (!existsSync(path)) {
    ctx.log('dist/host/cli.js missing: running npx tsup');
    const r = spawnSync('npx', ['tsup'], { cwd: ctx.repoRoot, stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0 || !existsSync(path)) return { path: null, note: 'CLI rows skipped: dist/host/cli.js missing and npx tsup failed' };
    return { path, note: `CLI: dist/host/cli.js (built by this run)` };
  }
  const built = statSync(path).mtimeMs;
  const newer = newerSources(ctx.repoRoot, ['host', 'device', 'shared'], built);
  const stale = newer.length
    ? `; STALE: ${newer.length} source file(s) changed since (e.g. ${newer.slice(0, 3).join(', ')}), so CLI rows may not match the in-process rows`
    : '';
  return { path, note: `CLI: dist/host/cli.js as found (built ${new Date(built).toISOString()})${stale}` };
}

type Image = { path: string; bytes: number; signed: string; digests: string };
type RoundSamples = { sha: Samples; packIn: Samples; packCli: Samples; verifyIn: Samples; verifyCli: Samples };

const empty = (): Samples => ({ seconds: [], rssKiB: [] });

/** What every step shares: the trust, the release keys, the pack options and the child runner. */
type Bench = {
  readonly ctx: BenchContext;
  readonly cli: { path: string | null; note: string };
  readonly runner: ChildRunner;
  readonly trust: Uint8Array;
  readonly trustPath: string;
  readonly signers: readonly ReturnType<typeof detKey>[];
  readonly packOpts: { deviceClass: string; version: string; securityCounter: number; created: number };
  readonly state: { deviceClass: string; counter: number };
};

export const packVerify: Section = {
  name: 'pack-verify',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const notes: string[] = [
      `load average at start ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')} on this machine (other work inflates times and can skew ratios)`,
    ];
    const b = setUp(ctx);
    notes.push(b.cli.note);
    notes.push(`peak RSS: ${b.runner.rssMethod}; in-process rows share the bench process and report none`);

    const size = ctx.sizeMiB * MiB;
    const big = prepare(b, 'image', size);
    const s = await measureRounds(b, big);
    const base = Math.min(...s.sha.seconds);
    const rows: Row[] = [
      row('sha256sum (baseline)', size, s.sha, null),
      row('pack in-process', size, s.packIn, base),
      ...(b.cli.path ? [row('pack CLI', size, s.packCli, base)] : []),
      row('verify in-process', size, s.verifyIn, base),
      ...(b.cli.path ? [row('verify CLI', size, s.verifyCli, base)] : []),
    ];
    if (b.cli.path && ctx.sizeMiB >= 8) await measureMemory(b, rows, notes);

    // Verdicts: the user-facing commands end to end when the CLI ran, else the in-process calls.
    const pick = (cliName: string, inName: string): Verdict['basis'] => (b.cli.path ? cliName : inName);
    const verdict = (name: string, rowName: string): Verdict => {
      const r = rows.find((x) => x.name === rowName);
      const value = r?.ratio ?? null;
      return { name, goal: GOAL, value, pass: value !== null && value >= GOAL, basis: `${rowName}, best of ${ctx.runs} vs sha256sum best of ${ctx.runs}` };
    };
    const verdicts = [verdict('pack', pick('pack CLI', 'pack in-process')), verdict('verify', pick('verify CLI', 'verify in-process'))];
    notes.push(
      `load average at end ${loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}`,
    );
    notes.push(
      `image ${ctx.sizeMiB} MiB random, page cache warm, 4096-byte chunks, ${ctx.runs} interleaved rounds; MB/s = 10^6 bytes/s of the best run; ratio = sha256sum best / row best`,
    );
    return { name: 'pack-verify', title: `pack and verify throughput vs sha256sum (${ctx.sizeMiB} MiB image)`, rows, verdicts, notes };
  },
};

function setUp(ctx: BenchContext): Bench {
  const cli = findCli(ctx);
  const runner = new ChildRunner(ctx.tmpDir);
  // Trust: root A,B,C (2 of 3) signed by A+B; release R1,R2,R3 (2 of 3); manifests signed by R1+R2.
  const [A, B, C] = ['A', 'B', 'C'].map(detKey);
  const [R1, R2, R3] = ['R1', 'R2', 'R3'].map(detKey);
  const trust = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2, R3], releaseThreshold: 2, signers: [A, B] });
  const trustPath = join(ctx.tmpDir, 'trust.cbor');
  writeFileSync(trustPath, trust);
  const state = { deviceClass: DEVICE_CLASS, counter: 0 };
  const packOpts = { deviceClass: DEVICE_CLASS, version: '1.0.0', securityCounter: 1, created: CREATED };
  return { ctx, cli, runner, trust, trustPath, signers: [R1, R2], packOpts, state };
}

/** A random image, warm in the page cache, with its verify inputs: packed and signed in-process with two release keys. */
function prepare(b: Bench, name: string, bytes: number): Image {
  const { ctx } = b;
  const path = join(ctx.tmpDir, `${name}.bin`);
  ctx.log(`writing ${bytes / MiB} MiB random image ${path}`);
  writeRandomFile(path, bytes);
  warm(path);
  const packed = pack({ imagePath: path, ...b.packOpts });
  let env = packed.envelope;
  for (const k of b.signers) env = signEnvelope(env, k).envelope;
  const signed = join(ctx.tmpDir, `${name}.signed.cose`);
  const digests = join(ctx.tmpDir, `${name}.signed.digests`);
  writeFileSync(signed, env);
  writeFileSync(digests, packed.digestTable);
  return { path, bytes, signed, digests };
}

function cliArgs(b: Bench, img: Image, tag: string): { pack: string[]; verify: string[] } {
  const dir = b.ctx.tmpDir;
  return {
    pack: [
      b.cli.path as string,
      'pack',
      img.path,
      '--device-class',
      DEVICE_CLASS,
      '--version',
      '1.0.0',
      '--counter',
      '1',
      '--created',
      String(CREATED),
      '--out',
      join(dir, `${tag}.cli.cose`),
      '--digests',
      join(dir, `${tag}.cli.digests`),
    ],
    verify: [b.cli.path as string, 'verify', img.signed, '--trust', b.trustPath, '--image', img.path, '--digests', img.digests, '--device-class', DEVICE_CLASS],
  };
}

function runCli(b: Bench, label: string, args: string[], s: Samples): void {
  const r = b.runner.run(process.execPath, args);
  if (r.status !== 0) throw new Error(`${label} exited ${r.status}: ${(r.stderr || r.stdout).trim()}`);
  s.seconds.push(r.seconds);
  if (r.rssKiB !== null) s.rssKiB.push(r.rssKiB);
}

/** Interleaved rounds: sha256sum, pack in-process and CLI, verify in-process and CLI, once each per round. */
async function measureRounds(b: Bench, big: Image): Promise<RoundSamples> {
  const { ctx, cli } = b;
  const bigCli = cliArgs(b, big, 'image');
  const s: RoundSamples = { sha: empty(), packIn: empty(), packCli: empty(), verifyIn: empty(), verifyCli: empty() };
  for (let round = 1; round <= ctx.runs; round++) {
    await yieldToSignals();
    ctx.log(`round ${round}/${ctx.runs}`);
    const sha = b.runner.run('sha256sum', [big.path]);
    if (sha.status !== 0) throw new Error(`sha256sum exited ${sha.status}: ${sha.stderr.trim()}`);
    s.sha.seconds.push(sha.seconds);
    if (sha.rssKiB !== null) s.sha.rssKiB.push(sha.rssKiB);

    s.packIn.seconds.push(timeSync(() => pack({ imagePath: big.path, ...b.packOpts })).seconds);
    if (cli.path) runCli(b, 'fwseal pack', bigCli.pack, s.packCli);

    const v = timeSync(() =>
      verifyFiles({ envelope: readFileSync(big.signed), trust: b.trust, state: b.state, imagePath: big.path, digestsPath: big.digests }),
    );
    if (!v.value.result.ok) throw new Error(`in-process verify rejected: ${v.value.result.error} ${v.value.result.detail ?? ''}`);
    // SPEC.md §14 H14: a matching image is accepted without reading the table beside it.
    if (v.value.usedDigestTable) throw new Error('in-process verify read the digest table for a matching image');
    s.verifyIn.seconds.push(v.seconds);
    if (cli.path) runCli(b, 'fwseal verify', bigCli.verify, s.verifyCli);
  }
  if (cli.path && !readFileSync(join(ctx.tmpDir, 'image.cli.digests')).equals(readFileSync(big.digests))) {
    throw new Error('CLI pack and in-process pack produced different digest tables');
  }
  return s;
}

/** Memory: the same CLI runs on an image 1/8 the size; peak RSS should not follow the image. */
async function measureMemory(b: Bench, rows: Row[], notes: string[]): Promise<void> {
  const { ctx } = b;
  const size = ctx.sizeMiB * MiB;
  const small = prepare(b, 'small', Math.floor((ctx.sizeMiB / 8) * MiB));
  const smallCli = cliArgs(b, small, 'small');
  const sp = empty();
  const sv = empty();
  for (let round = 0; round < ctx.runs; round++) {
    await yieldToSignals();
    runCli(b, 'fwseal pack (small)', smallCli.pack, sp);
    runCli(b, 'fwseal verify (small)', smallCli.verify, sv);
  }
  const note = 'RSS scaling check; no baseline';
  const rp = row('pack CLI (1/8 image)', small.bytes, sp, null, note);
  const rv = row('verify CLI (1/8 image)', small.bytes, sv, null, note);
  rows.push(rp, rv);
  const packBig = rows.find((r) => r.name === 'pack CLI');
  const verifyBig = rows.find((r) => r.name === 'verify CLI');
  const extraImageMiB = (size - small.bytes) / MiB;
  const delta = (a: Row | undefined, z: Row) => {
    if (a?.peakRssKiB == null || z.peakRssKiB == null) return 'n/a';
    const grow = (a.peakRssKiB - z.peakRssKiB) / 1024;
    return `${(z.peakRssKiB / 1024).toFixed(1)} -> ${(a.peakRssKiB / 1024).toFixed(1)} MiB: +${grow.toFixed(1)} MiB for +${extraImageMiB} MiB of image (${((grow / extraImageMiB) * 100).toFixed(1)}%)`;
  };
  notes.push(`memory (flat = ~0%; a 4096-byte-chunk digest table alone is 0.8% of the image):`);
  notes.push(`  peak RSS pack CLI   ${small.bytes / MiB} -> ${ctx.sizeMiB} MiB image: ${delta(packBig, rp)}`);
  notes.push(`  peak RSS verify CLI ${small.bytes / MiB} -> ${ctx.sizeMiB} MiB image: ${delta(verifyBig, rv)}`);
}
