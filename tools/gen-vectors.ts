/**
 * Regenerates (or, with --check, verifies) test/vectors/fwseal/manifest-vectors.json from its fixed
 * seed. The generator lives in test/support/manifest-vectors.ts (tests import it; nothing imports tools/).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { generateVectors, stableJson, VECTORS_PATH, type VectorFile } from '../test/support/manifest-vectors.js';

{
  const text = stableJson(generateVectors());
  const count = (JSON.parse(text) as VectorFile).cases.length;
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(VECTORS_PATH, 'utf8');
    } catch {
      // missing: reported below
    }
    if (current !== text) {
      console.error(`${VECTORS_PATH} is not what tools/gen-vectors.ts generates; run: npx tsx tools/gen-vectors.ts`);
      process.exit(1);
    }
    console.log(`${VECTORS_PATH}: ${count} cases, up to date`);
  } else {
    mkdirSync(dirname(VECTORS_PATH), { recursive: true });
    writeFileSync(VECTORS_PATH, text);
    console.log(`wrote ${VECTORS_PATH}: ${count} cases, ${text.length} bytes`);
  }
}
