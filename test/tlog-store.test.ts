/**
 * The transparency log on disk (issue 19): appends, checkpoints, inclusion and consistency proofs
 * (RFC 9162 through shared/merkle.ts), tampering found by verify, and crash safety: a real child
 * process killed with SIGKILL between the two writes of an append (and after the commit) leaves a
 * log that verifies, without (and with) the entry, and that takes the next append.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { FwsealError } from '../host/errors.js';
import { nodeSha256 } from '../host/hash.js';
import { proveConsistency, proveInclusion, signCheckpoint, verifyConsistencyBundle, verifyInclusion, verifyLog } from '../host/tlog/log.js';
import { type NoteKey, parseCheckpoint, parseNote, SIG_ED25519 } from '../host/tlog/note.js';
import { appendEntries, initLog, readIndex } from '../host/tlog/store.js';
import { leafHash, merkleRoot } from '../shared/merkle.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';

const root = mkdtempSync(join(tmpdir(), 'fwseal-tlog-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const ORIGIN = 'example.com/fwseal-test-log';
const LOG = detKey('log key');
const LOG_NOTE_KEY: NoteKey = { name: ORIGIN, publicKey: LOG.publicKey, type: SIG_ED25519 };
const W = standardWorld();

/** Distinct signed manifests (counter i). */
const manifests = (count: number, from = 0) =>
  Array.from({ length: count }, (_, i) => makeManifestEnvelope(makeManifest(detBytes(64, `img ${from + i}`), { securityCounter: from + i + 1 }), [W.R1, W.R2]));

function newLog(): string {
  const dir = join(root, `log${n++}`);
  initLog(dir, ORIGIN, LOG);
  return dir;
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof FwsealError) return e.codeName;
    throw e;
  }
  return 'OK';
}

describe('appends, checkpoints and proofs', () => {
  it('the checkpoint root is the RFC 9162 root of the leaf hashes of the appended objects', () => {
    const dir = newLog();
    const objs = [W.envelope, W.trust, ...manifests(5)];
    const added = appendEntries(dir, objs);
    expect(added.map((a) => a.index)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    const { checkpoint, note } = signCheckpoint(dir, LOG);
    expect(checkpoint.size).toBe(7);
    expect(Buffer.from(checkpoint.root)).toEqual(
      Buffer.from(
        merkleRoot(
          nodeSha256,
          objs.map((o) => leafHash(nodeSha256, o)),
        ),
      ),
    );
    expect(parseCheckpoint(parseNote(note).text)).toMatchObject({ origin: ORIGIN, size: 7 });
    expect(verifyLog(dir)).toMatchObject({ size: 7, checkpoints: 1, newestCheckpoint: 7, uncommittedBytes: 0 });
  });

  it('every entry has an inclusion proof that verifies offline against the signed checkpoint, and only for its own object', () => {
    const dir = newLog();
    const objs = manifests(13);
    appendEntries(dir, objs);
    signCheckpoint(dir, LOG);
    for (let i = 0; i < objs.length; i++) {
      const bundle = JSON.parse(JSON.stringify(proveInclusion(dir, i)));
      expect(verifyInclusion(bundle, objs[i], LOG_NOTE_KEY).checkpoint.size).toBe(13);
      expect(codeOf(() => verifyInclusion(bundle, objs[(i + 1) % objs.length], LOG_NOTE_KEY))).toBe('LOG_INVALID');
    }
    const other: NoteKey = { ...LOG_NOTE_KEY, publicKey: detKey('not the log').publicKey };
    expect(codeOf(() => verifyInclusion(proveInclusion(dir, 0), objs[0], other))).toBe('BAD_SIGNATURE');
    const tampered = { ...proveInclusion(dir, 5), index: 4 };
    expect(codeOf(() => verifyInclusion(tampered, objs[5], LOG_NOTE_KEY))).toBe('LOG_INVALID');
  });

  it('an entry appended after the newest checkpoint has no proof until the next checkpoint', () => {
    const dir = newLog();
    appendEntries(dir, manifests(2));
    signCheckpoint(dir, LOG);
    appendEntries(dir, manifests(1, 2));
    expect(codeOf(() => proveInclusion(dir, 2))).toBe('NOT_FOUND');
    signCheckpoint(dir, LOG);
    expect(proveInclusion(dir, 2).size).toBe(3);
  });

  it('consistency proofs from every earlier checkpoint verify; one from a forked log does not', () => {
    const dir = newLog();
    const notes: string[] = [];
    for (let k = 0; k < 6; k++) {
      appendEntries(dir, manifests(k + 1, k * 10));
      notes.push(signCheckpoint(dir, LOG).note);
    }
    for (const old of notes) {
      const oldCp = parseCheckpoint(parseNote(old).text);
      const bundle = JSON.parse(JSON.stringify(proveConsistency(dir, oldCp)));
      expect(verifyConsistencyBundle(bundle, oldCp, LOG_NOTE_KEY).checkpoint.size).toBe(21);
    }
    // The same origin and key, other entries: a split view. The log refuses to prove it, the verifier too.
    const fork = newLog();
    appendEntries(fork, manifests(3, 500));
    const forkCp = parseCheckpoint(parseNote(signCheckpoint(fork, LOG).note).text);
    expect(codeOf(() => proveConsistency(dir, forkCp))).toBe('LOG_INVALID');
    const honest = proveConsistency(dir, parseCheckpoint(parseNote(notes[1]).text));
    expect(codeOf(() => verifyConsistencyBundle({ ...honest, oldSize: 3 }, forkCp, LOG_NOTE_KEY))).toBe('LOG_INVALID');
    // A rollback: the newer checkpoint given as the old one.
    const newest = parseCheckpoint(parseNote(notes[5]).text);
    const older = proveConsistency(fork, { ...forkCp });
    expect(codeOf(() => verifyConsistencyBundle(older, newest, LOG_NOTE_KEY))).toBe('LOG_INVALID');
  });
});

describe('tampering', () => {
  it('an edited record, a moved index entry or an edited checkpoint is LOG_INVALID or BAD_SIGNATURE', () => {
    const dir = newLog();
    appendEntries(dir, manifests(4));
    signCheckpoint(dir, LOG);
    const records = readFileSync(join(dir, 'records'));
    const edited = Buffer.from(records);
    edited[records.length - 3] ^= 1;
    writeFileSync(join(dir, 'records'), edited);
    expect(codeOf(() => verifyLog(dir))).toBe('LOG_INVALID');
    writeFileSync(join(dir, 'records'), records);
    expect(codeOf(() => verifyLog(dir))).toBe('OK');
    const cp = readFileSync(join(dir, 'checkpoint.note'), 'utf8');
    writeFileSync(join(dir, 'checkpoint.note'), cp.replace('\n4\n', '\n3\n'));
    expect(codeOf(() => verifyLog(dir))).toBe('BAD_SIGNATURE');
    writeFileSync(join(dir, 'checkpoint.note'), cp);
    // Entries removed from the end: the checkpoint of size 4 names a tree the log no longer has.
    truncateSync(join(dir, 'index'), 3 * 40);
    expect(codeOf(() => verifyLog(dir))).toBe('LOG_INVALID');
    expect(codeOf(() => signCheckpoint(dir, LOG))).toBe('LOG_INVALID');
  });

  it('signing with a key that is not the log key is refused (KEY_NOT_IN_TRUST)', () => {
    const dir = newLog();
    expect(codeOf(() => signCheckpoint(dir, detKey('someone else')))).toBe('KEY_NOT_IN_TRUST');
  });
});

const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** A child process appending one manifest with FWSEAL_TLOG_PAUSE=stage; resolves once it is paused there. */
async function pausedAppender(dir: string, stage: string, obj: Uint8Array): Promise<ChildProcess> {
  const script = join(root, `appender${n++}.ts`);
  const file = join(root, `obj${n++}.cose`);
  writeFileSync(file, obj);
  writeFileSync(
    script,
    `import { readFileSync } from 'node:fs';
import { appendEntries } from ${JSON.stringify(pathToFileURL(join(__dirname, '..', 'host', 'tlog', 'store.ts')).href)};
appendEntries(process.argv[2], [new Uint8Array(readFileSync(process.argv[3]))]);
`,
  );
  const child = spawn(process.execPath, ['--import', tsx, script, dir, file], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, FWSEAL_TLOG_PAUSE: stage },
  });
  const marker = join(dir, `paused-${stage}`);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  // Wait on events, not on time: the marker appears, or the child ended (then the test fails below).
  while (!existsSync(marker) && child.exitCode === null) await Promise.race([exited, new Promise((r) => setImmediate(r))]);
  expect(existsSync(marker), 'the appender reached its pause point').toBe(true);
  rmSync(marker);
  return child;
}

async function kill9(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

describe('crash safety: kill -9 during an append', () => {
  it('killed after the records write, before the index (the commit): the log verifies without the entry, and the next append overwrites the tail', async () => {
    const dir = newLog();
    const before = manifests(3);
    appendEntries(dir, before);
    signCheckpoint(dir, LOG);
    const child = await pausedAppender(dir, 'after-records', manifests(1, 100)[0]);
    await kill9(child);
    const r = verifyLog(dir);
    expect(r).toMatchObject({ size: 3, newestCheckpoint: 3 });
    expect(r.uncommittedBytes).toBeGreaterThan(0);
    // The dead appender's lock is broken; the next append lands right after entry 2.
    const next = manifests(1, 200);
    expect(appendEntries(dir, next)[0].index).toBe(3);
    expect(verifyLog(dir)).toMatchObject({ size: 4, uncommittedBytes: 0 });
    signCheckpoint(dir, LOG);
    expect(verifyInclusion(proveInclusion(dir, 3), next[0], LOG_NOTE_KEY).checkpoint.size).toBe(4);
  }, 60_000);

  it('killed after the index write: the log verifies with the entry', async () => {
    const dir = newLog();
    appendEntries(dir, manifests(2));
    const obj = manifests(1, 300)[0];
    await kill9(await pausedAppender(dir, 'after-index', obj));
    expect(verifyLog(dir)).toMatchObject({ size: 3, uncommittedBytes: 0 });
    expect(Buffer.from(readIndex(dir).leaves[2])).toEqual(Buffer.from(leafHash(nodeSha256, obj)));
    expect(appendEntries(dir, manifests(1, 400))[0].index).toBe(3);
  }, 60_000);

  it('a torn index entry (a partial write) is not committed: the log verifies without it', () => {
    const dir = newLog();
    appendEntries(dir, manifests(3));
    truncateSync(join(dir, 'index'), 2 * 40 + 17);
    expect(verifyLog(dir)).toMatchObject({ size: 2, tornIndexBytes: 17 });
    expect(appendEntries(dir, manifests(1, 9))[0].index).toBe(2);
    expect(verifyLog(dir)).toMatchObject({ size: 3, tornIndexBytes: 0, uncommittedBytes: 0 });
  });
});
