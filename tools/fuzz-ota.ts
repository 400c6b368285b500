/**
 * tsx tools/fuzz-ota.ts [--runs N] [--seed S] [--deadline-ms MS]
 *
 * Status-event and reply-topic abuse against a live `fwseal serve` (issue 11): the engine is
 * test/support/ota-fuzz.ts (beside the verifier's fuzz engine; tests import it there, since nothing
 * imports tools/). Prints `{ cases, failures }` as JSON; exit status 1 when any invariant broke,
 * 2 on a usage error. `fuzzOtaServer` is exported for `npm run fuzz`.
 */
import { pathToFileURL } from 'node:url';
import { fuzzOtaServer } from '../test/support/ota-fuzz.js';

export { fuzzOtaServer, type OtaFuzzOptions, type OtaFuzzResult } from '../test/support/ota-fuzz.js';

async function main(argv: readonly string[]): Promise<number> {
  const o = { runs: 1000, seed: 1, deadlineMs: 300_000 };
  for (let i = 0; i < argv.length; i += 2) {
    const key = ({ '--runs': 'runs', '--seed': 'seed', '--deadline-ms': 'deadlineMs' } as const)[argv[i] as '--runs'];
    const v = Number(argv[i + 1]);
    if (!key || !Number.isSafeInteger(v) || v < 0 || v > 0xffffffff) {
      process.stderr.write('usage: tsx tools/fuzz-ota.ts [--runs N] [--seed S] [--deadline-ms MS]\n');
      return 2;
    }
    o[key] = v;
  }
  const r = await fuzzOtaServer(o);
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  return r.failures.length === 0 ? 0 : 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) main(process.argv.slice(2)).then((code) => process.exit(code));
