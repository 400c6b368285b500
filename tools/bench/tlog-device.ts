/**
 * Bench "tlog", the device side (issue 19 item 6): a release appended to the big log, checkpointed,
 * cosigned by 2 of 3 witnesses, and its log proof (with consistency from half the log) checked in
 * QuickJS and quickjs-ng by the device bundle, next to the manifest check of the same release:
 * ms per call (best of the runs), and the attachment's size.
 */

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../host/io.js';
import { logProofFor } from '../../host/tlog/attachment.js';
import { signCheckpointFromTree } from '../../host/tlog/log.js';
import { cosignNote, formatNote, parseNote } from '../../host/tlog/note.js';
import { appendEntries } from '../../host/tlog/store.js';
import { type LogTree } from '../../host/tlog/tree.js';
import { loadVerifierInQuickJS, QUICKJS_VARIANTS } from '../../test/support/quickjs.js';
import { logWorld } from '../../test/support/tlog-device-world.js';
import { type BenchContext, msRow, type Row, timeSync, valueRow } from './common.js';

const CALLS = 20;

/** The log world of the device tests, whose log key signs the bench's log. */
export const benchLogWorld = () => logWorld('bench');

export async function deviceProofRows(ctx: BenchContext, dir: string, tree: LogTree, L: ReturnType<typeof logWorld>): Promise<Row[]> {
  const envelope = L.release(1, 4096, 1 << 20);
  const stored = { size: Math.floor(tree.size / 2), root: tree.root(Math.floor(tree.size / 2)) };
  const [added] = appendEntries(dir, [envelope]);
  tree.push(added.leafHash);
  signCheckpointFromTree(dir, L.logKey, tree);
  const path = join(dir, 'checkpoint.note');
  const note = parseNote(readFileSync(path, 'utf8'));
  const cosigs = L.witnesses.slice(0, 2).map((k) => cosignNote(note.text, k, k.name, 1764000000));
  writeFileAtomic(path, formatNote({ text: note.text, signatures: [...note.signatures, ...cosigs] }));
  const proof = await logProofFor(dir, envelope, stored.size, { tree, indexOf: () => added.index });
  const rows: Row[] = [valueRow(`device log proof at ${tree.size} entries (2 cosignatures, consistency from ${stored.size})`, proof.length, 'B')];
  for (const variant of QUICKJS_VARIANTS) {
    ctx.log(`tlog: ${variant}: verifyLogProof vs verifyManifestWithTrust (${CALLS} calls each)`);
    const vm = await loadVerifierInQuickJS({ variant });
    try {
      vm.setBytes('trust', L.trust);
      vm.setBytes('envelope', envelope);
      vm.setBytes('proof', proof);
      vm.setBytes('root', stored.root);
      vm.evalJson(`(fwsealHarness.t = fwsealVerifier.loadTrust(fwsealHarness.slots.trust), fwsealHarness.t.ok)`);
      const log = `fwsealVerifier.verifyLogProof(fwsealHarness.slots.envelope, fwsealHarness.slots.proof, fwsealHarness.t.trust, { size: ${stored.size}, root: fwsealHarness.slots.root }).code`;
      const man = `fwsealVerifier.verifyManifestWithTrust(fwsealHarness.slots.envelope, fwsealHarness.t.trust, { deviceClass: 'acme-gw', counter: 7, trustVersion: 1 }).code`;
      const time = (code: string) => {
        const s: number[] = [];
        for (let i = 0; i < CALLS; i++) {
          const t = timeSync(() => vm.evalJson<number>(code));
          if (t.value !== 0) throw new Error(`${variant}: ${code.slice(15, 40)} answered code ${t.value}`);
          s.push(t.seconds);
        }
        return { seconds: s, rssKiB: [] };
      };
      const manifest = time(man);
      rows.push(msRow(`${variant}: verifyManifestWithTrust (2 signatures)`, manifest, null));
      rows.push(msRow(`${variant}: verifyLogProof (log key + 2 witnesses, consistency)`, time(log), Math.min(...manifest.seconds)));
    } finally {
      vm.dispose();
    }
  }
  return rows;
}
