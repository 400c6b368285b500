/**
 * A real transparency log (host/tlog: init, append, checkpoint, cosign) and a format-2 trust bundle
 * whose log policy names its key and witnesses: the ground of the device log policy tests (issue 19
 * item 3, SPEC.md §16). Each world has its own folder under the OS temp directory.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../host/io.js';
import { type SigningKey } from '../../host/keys.js';
import { logProofFor } from '../../host/tlog/attachment.js';
import { signCheckpoint } from '../../host/tlog/log.js';
import { cosignNote, formatNote, parseNote } from '../../host/tlog/note.js';
import { appendEntries, initLog } from '../../host/tlog/store.js';
import { encodeTrustBundle, type LogPolicy } from '../../shared/trust.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, signWith, standardWorld } from './fixtures.js';

export const LOG_ORIGIN = 'example.com/acme-firmware';

/**
 * The standard world's trust bundle (root A, B, C and release R1–R3, 2 of 3 each; signed by A and B),
 * with the log policy `log` (format 2) or without one (format 1).
 */
export function worldBundle(w: ReturnType<typeof standardWorld>, log?: LogPolicy, version = 1): Uint8Array {
  return signWith(
    encodeTrustBundle({
      version,
      root: { threshold: 2, keys: [w.A, w.B, w.C].map((k) => k.publicKey) },
      release: { threshold: 2, keys: [w.R1, w.R2, w.R3].map((k) => k.publicKey) },
      ...(log ? { log } : {}),
    }),
    [w.A, w.B],
  );
}

/** Log key, three witnesses W1–W3 (2 of 3 required), and the standard world's roles. */
export function logWorld(label: string, witnessThreshold = 2) {
  const w = standardWorld();
  const logKey = detKey(`${label}-log`);
  const witnesses = ['W1', 'W2', 'W3'].map((n) => detKey(`${label}-${n}`));
  const policy: LogPolicy = {
    origin: LOG_ORIGIN,
    logKey: logKey.publicKey,
    witnessThreshold,
    witnesses: witnesses.map((k) => ({ name: k.name, key: k.publicKey })),
  };
  const bundle = (log: LogPolicy | undefined, version = 1) => worldBundle(w, log, version);
  /** Manifest envelope number i (security counter 10 + i), signed by R1 + R2. */
  const release = (i: number, chunkSize = 512, size = 4 * 512) =>
    makeManifestEnvelope(makeManifest(detBytes(size, `${label} image ${i}`), { version: `2.0.${i}`, securityCounter: 10 + i, chunkSize }), [w.R1, w.R2]);
  return { w, logKey, witnesses, policy, trust: bundle(policy), bundle, release };
}

/** A log folder of `origin`, signed by `logKey`, with helpers that append, sign, cosign and prove. */
export function openLog(logKey: SigningKey, origin = LOG_ORIGIN) {
  const root = mkdtempSync(join(tmpdir(), 'fwseal-tlog-device-'));
  const dir = join(root, 'log');
  initLog(dir, origin, logKey);
  return {
    dir,
    append: (...objects: Uint8Array[]) => appendEntries(dir, objects),
    checkpoint: () => signCheckpoint(dir, logKey).checkpoint,
    /** Add cosignature/v1 lines of `keys` to the newest checkpoint (as `fwseal log cosign`). */
    cosign(keys: readonly SigningKey[], time = 1764000000) {
      const path = join(dir, 'checkpoint.note');
      const note = parseNote(readFileSync(path, 'utf8'));
      const sigs = keys.map((k) => cosignNote(note.text, k, k.name, time));
      writeFileAtomic(path, formatNote({ text: note.text, signatures: [...note.signatures, ...sigs] }));
    },
    prove: (envelope: Uint8Array, fromSize = 0) => logProofFor(dir, envelope, fromSize),
    close: () => rmSync(root, { recursive: true, force: true }),
  };
}
export type OpenLog = ReturnType<typeof openLog>;
