/**
 * The transparency log as `fwseal serve --log DIR` hosts it (issue 19 item 1, SPEC.md §16): every
 * campaign's manifest envelope is appended once (the same envelope again is the entry it already
 * is), and with the log key the server signs a new checkpoint after appends, at most one per
 * interval. What it measures (M9: append → first signed checkpoint that includes the entry; the tree
 * size) goes to the server's metrics through `TlogObserver`.
 */
import { toHex } from '../../shared/bytes.js';
import { FwsealError } from '../errors.js';
import { nodeSha256 } from '../hash.js';
import { type SigningKey } from '../keys.js';
import { type KeptTree } from './attachment.js';
import { type ConsistencyBundle, type InclusionBundle, newestCheckpoint, proveConsistency, proveInclusion, signCheckpointFromTree } from './log.js';
import { appendEntries, type LogConfig, readConfig, readEntryAt, readIndexRange } from './store.js';
import { LogTree } from './tree.js';

/** What the served log reports: M9 per entry, and the tree size after each change. */
export interface TlogObserver {
  inclusion(seconds: number): void;
  size(entries: number): void;
}

export type ServedLogOptions = {
  readonly dir: string;
  /** The log key: the server signs checkpoints. Without it checkpoints come from `fwseal log checkpoint`. */
  readonly key?: SigningKey;
  /** At most one checkpoint per this many ms (default 1000). */
  readonly checkpointIntervalMs?: number;
  readonly observer?: TlogObserver;
  /** A checkpoint that could not be signed (the log stays as it is; the next append tries again). */
  readonly onError?: (e: unknown) => void;
};

/** GET /api/log/entries: at most this many entries, and about this many object bytes, a page. */
export const ENTRIES_PAGE_MAX = 100;
export const ENTRIES_PAGE_BYTES = 4 * 1024 * 1024;

export type LogEntry = { readonly index: number; readonly leafHash: string; readonly object: string };

export class ServedLog {
  readonly config: LogConfig;
  private readonly intervalMs: number;
  /** SHA-256 of each entry's object (hex) → its index, for GET /api/log/proof?entry=; filled up to `known`. */
  private readonly byDigest = new Map<string, number>();
  /**
   * The tree of the entries read so far (host/tlog/tree.ts): proofs and checkpoints in O(log n)
   * hashes, so a log of a million entries answers a device's proof request as fast as a small one.
   */
  private readonly tree = new LogTree();
  /** Entries appended here and not yet in a signed checkpoint, with when (M9). */
  private readonly pending: { index: number; at: number }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private lastSigned = 0;
  private closed = false;

  constructor(private readonly opts: ServedLogOptions) {
    this.config = readConfig(opts.dir);
    if (opts.key && !Buffer.from(opts.key.publicKey).equals(this.config.logKey.publicKey))
      throw new FwsealError('KEY_NOT_IN_TRUST', `--log-key ${opts.key.name} is not the key of log ${this.config.origin}`);
    this.intervalMs = opts.checkpointIntervalMs ?? 1000;
    this.catchUp();
    opts.observer?.size(this.known);
    // Entries appended while no server signed (fwseal log append, a crash before the checkpoint): signed now.
    if (opts.key && (newestCheckpoint(opts.dir, this.config)?.checkpoint.size ?? -1) < this.known) this.checkpoint();
  }

  get dir(): string {
    return this.opts.dir;
  }

  /** Entries this server knows: the size of its tree. */
  private get known(): number {
    return this.tree.size;
  }

  /**
   * Take in the entries appended since (by this server or another writer): only the index's tail is
   * read, and every new record is read back and checked against its leaf hash before the tree takes it.
   */
  private catchUp(): void {
    const tail = readIndexRange(this.opts.dir, this.known);
    tail.leaves.forEach((leaf, k) => {
      const i = this.known;
      this.byDigest.set(toHex(nodeSha256(readEntryAt(this.opts.dir, i, tail.offsets[k], leaf))), i);
      this.tree.push(leaf);
    });
  }

  /**
   * Append a signed object unless the log has it already (SPEC.md §16: idempotent, by SHA-256 of
   * the object). Appends are synchronous (host/tlog/store.ts), so the look-up and the append cannot
   * interleave with another in this process. Returns the entry's index.
   */
  recordEntry(obj: Uint8Array): number {
    this.catchUp();
    const digest = toHex(nodeSha256(obj));
    const had = this.byDigest.get(digest);
    if (had !== undefined) return had;
    const [added] = appendEntries(this.opts.dir, [obj]);
    this.catchUp();
    this.opts.observer?.size(this.known);
    if (this.opts.key) {
      this.pending.push({ index: added.index, at: Date.now() });
      this.schedule();
    }
    return added.index;
  }

  /** The next checkpoint, at most one per interval (batched: appends within it share one). */
  private schedule(): void {
    if (this.timer || this.closed) return;
    const wait = Math.max(0, this.lastSigned + this.intervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.checkpoint();
    }, wait);
  }

  /** Sign a checkpoint of the whole log now; every pending entry it includes observes M9. */
  private checkpoint(): void {
    if (!this.opts.key) return;
    try {
      this.catchUp();
      const { checkpoint } = signCheckpointFromTree(this.opts.dir, this.opts.key, this.tree);
      this.lastSigned = Date.now();
      const now = Date.now();
      // Shift before observing: `observer?.inclusion(shift())` would skip the shift without an observer.
      while (this.pending.length > 0 && this.pending[0].index < checkpoint.size) {
        const done = this.pending.shift() as { at: number };
        this.opts.observer?.inclusion((now - done.at) / 1000);
      }
    } catch (e) {
      this.opts.onError?.(e);
    }
  }

  /** This log's tree and entry look-up, for the device proofs of host/tlog/attachment.ts (SPEC.md §12.14). */
  keptTree(): KeptTree {
    return {
      tree: this.tree,
      indexOf: (obj) => {
        const digest = toHex(nodeSha256(obj));
        if (!this.byDigest.has(digest)) this.catchUp();
        return this.byDigest.get(digest) ?? -1;
      },
    };
  }

  /** The newest signed checkpoint note, or NOT_FOUND before the first. */
  checkpointNote(): string {
    const opened = newestCheckpoint(this.opts.dir, this.config);
    if (!opened) throw new FwsealError('NOT_FOUND', 'the log has no signed checkpoint yet');
    return opened.note;
  }

  /** The inclusion proof (as `fwseal log prove` writes it) of the entry whose object has this SHA-256. */
  proof(sha256Hex: string): InclusionBundle {
    if (!this.byDigest.has(sha256Hex)) this.catchUp();
    const index = this.byDigest.get(sha256Hex);
    if (index === undefined) throw new FwsealError('NOT_FOUND', 'no entry with that SHA-256 in the log');
    return proveInclusion(this.opts.dir, index, this.tree);
  }

  /** The consistency proof from the log's tree of size `from` to the newest signed checkpoint. */
  consistency(from: number): ConsistencyBundle {
    this.catchUp();
    if (from > this.known) throw new FwsealError('NOT_FOUND', `the log has ${this.known} entries, fewer than ${from}`);
    return proveConsistency(this.opts.dir, { origin: this.config.origin, size: from, root: this.tree.root(from), extensions: [] }, this.tree);
  }

  /** Entries start.. (at most `count`, and about ENTRIES_PAGE_BYTES of objects), each checked against its leaf hash. */
  entries(start: number, count: number): { size: number; entries: LogEntry[] } {
    const view = readIndexRange(this.opts.dir, start, count);
    const entries: LogEntry[] = [];
    let bytes = 0;
    for (let k = 0; k < view.leaves.length && (entries.length === 0 || bytes < ENTRIES_PAGE_BYTES); k++) {
      const obj = readEntryAt(this.opts.dir, start + k, view.offsets[k], view.leaves[k]);
      bytes += obj.length;
      entries.push({ index: start + k, leafHash: toHex(view.leaves[k]), object: Buffer.from(obj).toString('base64') });
    }
    return { size: view.size, entries };
  }

  /** Stop the timer; a checkpoint still owed for appended entries is signed now. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.length > 0) this.checkpoint();
  }
}
