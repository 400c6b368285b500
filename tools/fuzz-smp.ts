/**
 * npm run fuzz (SMP part; issue 11): SMP offset/length/type abuse and random frames against an
 * in-process simulated device. The engine is test/support/smp-fuzz.ts (shared with
 * test/smp-fuzz.test.ts; tests may not import tools/). Standalone:
 *
 *   tsx tools/fuzz-smp.ts [--runs N] [--seed S] [--json]
 *
 * Exit status: 0 when every request was answered as SPEC.md §13.7 says, 1 on any failure, 2 on a
 * usage error.
 */
import { pathToFileURL } from 'node:url';
import { fuzzSmp } from '../test/support/smp-fuzz.js';

export type { SmpFuzzOptions, SmpFuzzReport } from '../test/support/smp-fuzz.js';
export { fuzzSmp };

const USAGE = 'usage: tsx tools/fuzz-smp.ts [--runs N] [--seed S] [--json]';

function parseArgs(argv: readonly string[]): { runs: number; seed: number; json: boolean } {
  const o = { runs: 2000, seed: 1, json: false };
  const int = (flag: string, v: string | undefined, max: number): number => {
    const n = v !== undefined && /^(0x[0-9a-f]+|\d+)$/i.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n > max) throw new Error(`${flag} needs an integer in 0..${max}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runs') o.runs = int(a, argv[++i], 2 ** 31 - 1);
    else if (a === '--seed') o.seed = int(a, argv[++i], 0xffffffff);
    else if (a === '--json') o.json = true;
    else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

async function main(argv: readonly string[]): Promise<number> {
  let o: ReturnType<typeof parseArgs>;
  try {
    o = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const t0 = Date.now();
  const report = await fuzzSmp({ runs: o.runs, seed: o.seed });
  if (o.json) process.stdout.write(`${JSON.stringify({ ...report, seconds: (Date.now() - t0) / 1000 })}\n`);
  else {
    process.stdout.write(`smp fuzz: ${report.cases} cases, seed ${o.seed}, ${report.failures.length} failures in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    for (const f of report.failures) process.stdout.write(`  ${f}\n`);
  }
  return report.failures.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`fuzz-smp: ${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
}
