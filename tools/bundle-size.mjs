// Where the device bundle's bytes go (issue 19, SPEC.md §10 budget): builds the IIFE file exactly as
// tools/build-device.mjs does (its esbuild options and its ESM-to-IIFE wrapping; in memory, dist/
// untouched) plus a source map, and attributes every output byte to the input file the map says it
// came from (bytes no input maps to, such as esbuild's helpers and the wrapper, go to "(generated)").
//
// Per input file it prints:
//   bytes   minified bytes in the output
//   alone   gzip -9 of that file's output bytes on their own (no shared dictionary: usually more than it adds)
//   margin  total gzip minus gzip of the output with that file's bytes cut out: what the file costs
//           given everything else is there (usually less; the margins do not add up to the total)
//   share   total gzip split in proportion to `alone`: these add up to the total (give or take
//           rounding), so this is the column to quote as a byte-by-module breakdown
// Cutting a file's bytes out leaves invalid JavaScript; only its compressed size is measured.
//
//   node tools/bundle-size.mjs [--entry device/bundle.ts] [--json] [--by dir]
// `--by dir` sums the rows per folder (device/crypto, shared, ...).

import { relative, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { deviceBuildOptions, iifeFromEsm } from './build-device.mjs';

const arg = (name, fallback) => (process.argv.includes(name) ? process.argv[process.argv.indexOf(name) + 1] : fallback);
const gz = (bytes) => gzipSync(bytes, { level: 9 }).length;

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decodes one source-map "mappings" segment (base64 VLQ, the ECMA-426 source map format) into its numbers. */
function decodeSegment(segment) {
  const values = [];
  let value = 0;
  let shift = 0;
  for (const ch of segment) {
    const digit = B64.indexOf(ch);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
      continue;
    }
    values.push(value & 1 ? -(value >>> 1) : value >>> 1);
    value = 0;
    shift = 0;
  }
  return values;
}

/** For each byte of `code`, the index of its source in `map.sources`, or -1 where nothing maps. */
function ownerOfEachByte(code, map) {
  const owner = new Int32Array(code.length).fill(-1);
  const lineStarts = [0];
  for (let i = 0; i < code.length; i++) if (code[i] === 0x0a) lineStarts.push(i + 1);
  lineStarts.push(code.length);
  const marks = []; // [output offset, source index or -1]
  let source = 0;
  map.mappings.split(';').forEach((line, lineNo) => {
    let column = 0;
    for (const segment of line.split(',')) {
      if (!segment) continue;
      const v = decodeSegment(segment);
      column += v[0];
      if (v.length >= 4) source += v[1];
      // A mark past its line's end belongs to text the wrapper cut (the ESM export clause).
      const at = lineStarts[lineNo] + column;
      if (at < lineStarts[lineNo + 1]) marks.push([at, v.length >= 4 ? source : -1]);
    }
  });
  // Columns count UTF-16 units and offsets count bytes; the bundle is ASCII (esbuild escapes the rest).
  for (let m = 0; m < marks.length; m++) {
    const end = m + 1 < marks.length ? marks[m + 1][0] : code.length;
    owner.fill(marks[m][1], marks[m][0], end);
  }
  return owner;
}

async function measure(entry) {
  const result = await build({
    ...deviceBuildOptions(entry),
    format: 'esm',
    outdir: 'bundle-size.out',
    sourcemap: 'external',
    write: false,
  });
  const js = new TextEncoder().encode(iifeFromEsm(result.outputFiles.find((f) => f.path.endsWith('.js')).text));
  const map = JSON.parse(result.outputFiles.find((f) => f.path.endsWith('.map')).text);
  map.mappings = `;${map.mappings}`; // the wrapper's first line
  const owner = ownerOfEachByte(js, map);
  const total = gz(js);
  const name = (i) => (i < 0 ? '(generated)' : relative('.', resolve('bundle-size.out', map.sources[i])));
  const indices = [...new Set(owner)];
  const rows = indices.map((i) => {
    const own = js.filter((_, k) => owner[k] === i);
    const rest = js.filter((_, k) => owner[k] !== i);
    return { file: name(i), bytes: own.length, alone: gz(own), margin: total - gz(rest) };
  });
  const aloneSum = rows.reduce((s, r) => s + r.alone, 0);
  for (const r of rows) r.share = Math.round((total * r.alone) / aloneSum);
  rows.sort((a, b) => b.share - a.share);
  return { bytes: js.length, gzip: total, rows };
}

function byDir(rows) {
  const dirs = new Map();
  for (const r of rows) {
    const d = r.file.includes('/') ? r.file.slice(0, r.file.lastIndexOf('/')) : r.file;
    const acc = dirs.get(d) ?? { file: d, bytes: 0, alone: 0, margin: 0, share: 0 };
    for (const k of ['bytes', 'alone', 'margin', 'share']) acc[k] += r[k];
    dirs.set(d, acc);
  }
  return [...dirs.values()].sort((a, b) => b.share - a.share);
}

const report = await measure(arg('--entry', 'device/bundle.ts'));
if (process.argv.includes('--by')) report.rows = byDir(report.rows);
if (process.argv.includes('--json')) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const width = Math.max(...report.rows.map((r) => r.file.length), 5);
  const line = (f, ...n) => console.log(`${f.padEnd(width)} ${n.map((x) => String(x).padStart(7)).join(' ')}`);
  line('file', 'bytes', 'alone', 'margin', 'share');
  for (const r of report.rows) line(r.file, r.bytes, r.alone, r.margin, r.share);
  line('total', report.bytes, '', '', report.gzip);
}
