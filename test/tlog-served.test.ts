/**
 * The log as `fwseal serve` keeps it (host/tlog/served.ts) with its in-memory tree: entries another
 * writer appends are taken in from the index's tail and checked against their records; proofs and
 * checkpoints come from the tree and agree with the CLI's (which rebuilds from the files); a
 * checkpoint is never signed over a log that no longer matches the newest one (a fork).
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { keyId } from '../device/index.js';
import { type SigningKey } from '../host/keys.js';
import { newestCheckpoint, proveConsistency, proveInclusion, verifyInclusion } from '../host/tlog/log.js';
import { ServedLog } from '../host/tlog/served.js';
import { appendEntries, indexTree, initLog } from '../host/tlog/store.js';

const ORIGIN = 'served.example/log';
function memoryKey(): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pub = new Uint8Array(Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url'));
  return { name: ORIGIN, publicKey: pub, keyId: keyId(pub), sign: (m) => new Uint8Array(sign(null, m, privateKey)) };
}
const obj = (i: number) => new Uint8Array(Buffer.from(`object ${i} `.repeat(3)));
const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as { codeName?: string }).codeName;
  }
  return 'no error';
};

let root: string;
let dir: string;
let key: SigningKey;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'fwseal-served-'));
  dir = join(root, 'log');
  key = memoryKey();
  initLog(dir, ORIGIN, key);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('ServedLog with its tree', () => {
  it('takes in entries another writer appended, and its proofs and checkpoints match the files', () => {
    appendEntries(dir, [obj(0), obj(1), obj(2)]);
    const served = new ServedLog({ dir, key, checkpointIntervalMs: 10 });
    expect(newestCheckpoint(dir)?.checkpoint.size).toBe(3);
    appendEntries(dir, [obj(3), obj(4)]);
    expect(served.recordEntry(obj(5))).toBe(5);
    expect(served.recordEntry(obj(3))).toBe(3);
    served.close();
    const opened = newestCheckpoint(dir);
    expect(opened?.checkpoint.size).toBe(6);
    expect(Buffer.from(opened?.checkpoint.root ?? []).equals(Buffer.from(indexTree(dir).root()))).toBe(true);
    const digest = (o: Uint8Array) => createHash('sha256').update(o).digest('hex');
    const fromServer = served.proof(digest(obj(4)));
    expect(fromServer).toEqual(proveInclusion(dir, 4));
    const logKey = { name: ORIGIN, publicKey: key.publicKey, type: 1 as const };
    expect(opened?.checkpoint.origin).toBe(ORIGIN);
    expect(verifyInclusion(JSON.parse(JSON.stringify(fromServer)), obj(4), logKey).checkpoint.size).toBe(6);
    const old = { origin: ORIGIN, size: 3, root: indexTree(dir).root(3), extensions: [] };
    expect(served.consistency(3)).toEqual(proveConsistency(dir, old));
  });

  it('refuses an entry whose record does not match its leaf hash (LOG_INVALID), and signs nothing over it', () => {
    appendEntries(dir, [obj(0)]);
    const served = new ServedLog({ dir, key, checkpointIntervalMs: 10 });
    appendEntries(dir, [obj(1)]);
    // Another writer's record changed after its commit: the byte after the 4-byte length of record 1.
    const records = join(dir, 'records');
    const at = 4 + obj(0).length + 4;
    const fd = openSync(records, 'r+');
    writeSync(fd, Buffer.from([readFileSync(records)[at] ^ 1]), 0, 1, at);
    closeSync(fd);
    expect(codeOf(() => served.recordEntry(obj(2)))).toBe('LOG_INVALID');
    served.close();
    expect(newestCheckpoint(dir)?.checkpoint.size).toBe(1);
  });

  it('does not sign a checkpoint over a log that forked from its newest checkpoint (LOG_INVALID)', () => {
    appendEntries(dir, [obj(0), obj(1)]);
    const errors: unknown[] = [];
    const other = new ServedLog({ dir, key, checkpointIntervalMs: 10 });
    other.close();
    // A second log with other entries, whose newest checkpoint is copied over this one's.
    const forkDir = join(root, 'fork');
    initLog(forkDir, ORIGIN, key);
    appendEntries(forkDir, [obj(0), obj(9)]);
    new ServedLog({ dir: forkDir, key }).close();
    const note = readFileSync(join(forkDir, 'checkpoint.note'));
    const fd = openSync(join(dir, 'checkpoint.note'), 'w');
    writeSync(fd, note);
    closeSync(fd);
    const served = new ServedLog({ dir, key, checkpointIntervalMs: 10, onError: (e) => errors.push(e) });
    served.recordEntry(obj(2));
    served.close();
    expect(errors.map((e) => (e as { codeName?: string }).codeName)).toEqual(['LOG_INVALID']);
  });
});
