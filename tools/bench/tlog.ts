/**
 * The transparency log at scale (issue 19 item 6): a log of FWSEAL_BENCH_TLOG_ENTRIES entries
 * (default 1,000,000) of 400-byte objects (the size of a small signed manifest).
 * - append throughput, in batches (one commit per 1,000 entries, as a server that batches) and one by
 *   one (two fsyncs per entry, as `fwseal log append` of one file), each against writing the same
 *   bytes to a plain file with the same fsyncs in the same run;
 * - bytes on disk per entry;
 * - the tree: built from the index (what `fwseal serve` does at start, and what every CLI proof costs),
 *   then inclusion and consistency proofs from it, and a checkpoint signed from it against one signed
 *   after a scan of every record (`fwseal log checkpoint`);
 * - proof sizes at the full size.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { type SigningKey } from '../../host/keys.js';
import { proveConsistency, proveInclusion, signCheckpoint, signCheckpointFromTree } from '../../host/tlog/log.js';
import { appendEntries, indexTree, initLog } from '../../host/tlog/store.js';
import { type LogTree } from '../../host/tlog/tree.js';
import { LOG_ORIGIN } from '../../test/support/tlog-device-world.js';
import { type BenchContext, msRow, type Row, row, type Section, type SectionResult, timeSync, type Verdict, valueRow } from './common.js';
import { benchLogWorld, deviceProofRows } from './tlog-device.js';

const ENTRY_BYTES = 400;
const BATCH = 1000;
const SINGLES = 500;

/** `count` distinct objects: random bytes stamped with their number. */
function objects(first: number, count: number): Uint8Array[] {
  const block = randomBytes(count * ENTRY_BYTES);
  return Array.from({ length: count }, (_, k) => {
    const o = block.subarray(k * ENTRY_BYTES, (k + 1) * ENTRY_BYTES);
    o.writeUInt32BE(first + k, 0);
    return o;
  });
}

/** The reference: the same record bytes (u32 length || object) written to a plain file with the same fsyncs. */
function rawAppend(path: string, batches: Uint8Array[][], fsyncsPerBatch: number): number {
  const fd = openSync(path, 'w');
  try {
    return timeSync(() => {
      let at = 0;
      for (const b of batches) {
        const buf = Buffer.alloc(b.length * (4 + ENTRY_BYTES));
        b.forEach((o, k) => {
          buf.writeUInt32BE(o.length, k * (4 + ENTRY_BYTES));
          buf.set(o, k * (4 + ENTRY_BYTES) + 4);
        });
        at += writeSync(fd, buf, 0, buf.length, at);
        for (let f = 0; f < fsyncsPerBatch; f++) fsyncSync(fd);
      }
    }).seconds;
  } finally {
    closeSync(fd);
  }
}

function appendRows(ctx: BenchContext, dir: string, n: number): Row[] {
  ctx.log(`tlog: appending ${n} entries in batches of ${BATCH}`);
  let logSeconds = 0;
  let rawSeconds = 0;
  for (let first = 0; first < n; first += BATCH * 50) {
    // 50 batches at a time: the reference writes the same batches right after, so both see the same disk.
    const batches = Array.from({ length: Math.min(50, Math.ceil((n - first) / BATCH)) }, (_, b) =>
      objects(first + b * BATCH, Math.min(BATCH, n - first - b * BATCH)),
    );
    logSeconds += timeSync(() => batches.map((b) => appendEntries(dir, b))).seconds;
    rawSeconds += rawAppend(join(ctx.tmpDir, 'raw'), batches, 2);
  }
  ctx.log(`tlog: ${SINGLES} single appends`);
  const singles = Array.from({ length: SINGLES }, (_, k) => objects(n + k, 1));
  const single = timeSync(() => singles.map((b) => appendEntries(dir, b))).seconds;
  const singleRaw = rawAppend(join(ctx.tmpDir, 'raw'), singles, 2);
  rmSync(join(ctx.tmpDir, 'raw'), { force: true });
  const rate = (count: number, s: number) => count / s;
  return [
    row(
      'plain file, batches of 1,000 (2 fsyncs each)',
      n * ENTRY_BYTES,
      { seconds: [rawSeconds], rssKiB: [] },
      null,
      `${Math.round(rate(n, rawSeconds))} entries/s`,
    ),
    row(`log append, batches of 1,000`, n * ENTRY_BYTES, { seconds: [logSeconds], rssKiB: [] }, rawSeconds, `${Math.round(rate(n, logSeconds))} entries/s`),
    row('plain file, one entry at a time', SINGLES * ENTRY_BYTES, { seconds: [singleRaw], rssKiB: [] }, null, `${Math.round(SINGLES / singleRaw)} entries/s`),
    row('log append, one entry at a time', SINGLES * ENTRY_BYTES, { seconds: [single], rssKiB: [] }, singleRaw, `${Math.round(SINGLES / single)} entries/s`),
  ];
}

function proofRows(ctx: BenchContext, dir: string, key: SigningKey, size: number): { rows: Row[]; verdicts: Verdict[]; tree: LogTree } {
  ctx.log('tlog: tree from the index');
  const built = timeSync(() => indexTree(dir));
  const tree = built.value;
  const rows: Row[] = [msRow(`tree from the index (${tree.size} entries)`, { seconds: [built.seconds], rssKiB: [] }, null)];
  ctx.log('tlog: checkpoints');
  const scan = timeSync(() => signCheckpoint(dir, key)).seconds;
  rows.push(msRow('checkpoint after a scan of every record (fwseal log checkpoint)', { seconds: [scan], rssKiB: [] }, null));
  const fromTree = timeSync(() => signCheckpointFromTree(dir, key, tree)).seconds;
  rows.push(msRow('checkpoint from the tree (fwseal serve)', { seconds: [fromTree], rssKiB: [] }, scan));
  const picks = Array.from({ length: 2000 }, (_, k) => Math.floor(((k + 0.5) / 2000) * size));
  const inclusion = timeSync(() => picks.map((i) => proveInclusion(dir, i, tree))).seconds;
  rows.push(msRow('inclusion proof from the tree (+ checkpoint read)', { seconds: [inclusion / picks.length], rssKiB: [] }, null));
  const root = (m: number) => tree.root(m);
  const consistency = timeSync(() =>
    picks.slice(1).map((m) => proveConsistency(dir, { origin: key.name, size: m, root: root(m), extensions: [] }, tree)),
  ).seconds;
  rows.push(msRow('consistency proof from the tree', { seconds: [consistency / (picks.length - 1)], rssKiB: [] }, null));
  const cold = timeSync(() => proveInclusion(dir, Math.floor(size / 2))).seconds;
  rows.push(msRow('inclusion proof, cold (fwseal log prove: index read + tree)', { seconds: [cold], rssKiB: [] }, null));
  const inc = proveInclusion(dir, size - 1, tree);
  const con = proveConsistency(dir, { origin: key.name, size: 1, root: tree.root(1), extensions: [] }, tree);
  rows.push(
    valueRow(
      `inclusion proof at ${size} entries`,
      inc.proof.length * 32,
      'B',
      `${inc.proof.length} nodes; JSON bundle with checkpoint ${JSON.stringify(inc).length} B`,
    ),
  );
  rows.push(valueRow(`consistency proof 1 → ${size}`, con.proof.length * 32, 'B', `${con.proof.length} nodes`));
  const verdicts: Verdict[] = [
    { name: 'tlog: checkpoint from the tree vs a full scan', goal: 10, value: scan / fromTree, pass: scan / fromTree >= 10, basis: 'scan time / tree time' },
  ];
  return { rows, verdicts, tree };
}

export const tlogBench: Section = {
  name: 'tlog',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const n = Number(process.env.FWSEAL_BENCH_TLOG_ENTRIES ?? 1_000_000);
    const dir = join(ctx.tmpDir, 'log');
    const world = benchLogWorld();
    const key = world.logKey;
    initLog(dir, LOG_ORIGIN, key);
    const rows = appendRows(ctx, dir, n);
    const size = n + SINGLES;
    const disk = statSync(join(dir, 'records')).size + statSync(join(dir, 'index')).size;
    rows.push(valueRow('bytes on disk per entry (records + index)', disk / size, 'B', `${(disk / 1e6).toFixed(1)} MB for ${size} entries of ${ENTRY_BYTES} B`));
    const proofs = proofRows(ctx, dir, key, size);
    rows.push(...proofs.rows);
    rows.push(...(await deviceProofRows(ctx, dir, proofs.tree, world)));
    return {
      name: 'tlog',
      title: `Transparency log: ${size} entries of ${ENTRY_BYTES} B`,
      rows,
      verdicts: proofs.verdicts,
      notes: ['Ratios: the plain file (same bytes, same fsyncs) / the log; checkpoint from the tree: scan / tree.'],
    };
  },
};
