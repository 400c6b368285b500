/**
 * The proofs of RFC 9162 §2.1.3.1 (PATH) and §2.1.4.1 (PROOF) built from subtree roots the caller
 * supplies: shared/merkle.ts reads them off the levels of a tree it hashes (digest pages), the
 * transparency log off its cache of subtree roots (host/tlog/tree.ts). One construction for both.
 * Pure TypeScript, no hashing here.
 */

/**
 * MTH(D[start:end]) for a node of the RFC 9162 tree: the ranges the proofs of §2.1.3.1 and §2.1.4.1
 * ask for are always nodes (an aligned start, a power-of-two size or the tree's right edge). The
 * caller decides where the hashes come from: the levels below, or a log's cache of subtree roots
 * (host/tlog/tree.ts), so one proof construction serves digest pages and the transparency log.
 */
export type SubtreeRoots = (start: number, end: number) => Uint8Array;

/** Largest power of two strictly smaller than n (n >= 2), the split point of RFC 9162 §2.1.1. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** RFC 9162 §2.1.3.1 PATH(index, D[size]) from subtree roots; 0 <= index < size (the caller checks). */
export function inclusionPathFrom(roots: SubtreeRoots, size: number, index: number): Uint8Array[] {
  // Split top-down as §2.1.1 does; PATH lists the sibling subtrees leaf first, so reverse at the end.
  const topDown: Uint8Array[] = [];
  let start = 0;
  let end = size;
  while (end - start > 1) {
    const k = splitPoint(end - start);
    if (index < start + k) {
      topDown.push(roots(start + k, end));
      end = start + k;
    } else {
      topDown.push(roots(start, start + k));
      start += k;
    }
  }
  return topDown.reverse();
}

/** RFC 9162 §2.1.4.1 PROOF(oldSize, D[size]) from subtree roots; 0 < oldSize <= size (the caller checks). */
export function consistencyPathFrom(roots: SubtreeRoots, size: number, oldSize: number): Uint8Array[] {
  // SUBPROOF over D[start:end]; nodes are collected top-down and reversed at the end, because
  // SUBPROOF(...) : MTH(sibling) puts the sibling after the deeper nodes.
  const topDown: Uint8Array[] = [];
  let m = oldSize;
  let start = 0;
  let end = size;
  let complete = true; // the b flag of §2.1.4.1: D[start:start+m] is the whole old tree
  while (m !== end - start) {
    const k = splitPoint(end - start);
    if (m <= k) {
      topDown.push(roots(start + k, end));
      end = start + k;
    } else {
      topDown.push(roots(start, start + k));
      start += k;
      m -= k;
      complete = false;
    }
  }
  if (!complete) topDown.push(roots(start, end));
  return topDown.reverse();
}
