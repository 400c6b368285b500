/**
 * Fuzz targets for the device's log proof check (SPEC.md §16.8 L1–L7): a two-entry log whose
 * checkpoint the log key signed and one of two listed witnesses cosigned (K = 1), the manifest at
 * index 0, and a device that stored the checkpoint of size 1, so an accepted proof needs its
 * consistency part too. Every mutation of the attachment (and of the envelope it proves) must be
 * refused with a code: a checkpoint text the device rebuilds, a signature, a cosignature, a path,
 * a consistency proof, each fails on its own.
 */
import { loadTrust, type VerifiedTrust, verifyLogProof } from '../../../device/index.js';
import { nodeSha256 } from '../../../host/hash.js';
import { checkpointText, cosignNote, signNote } from '../../../host/tlog/note.js';
import { bytesEqual } from '../../../shared/bytes.js';
import { encodeLogProof, type LogProof, parseLogProof } from '../../../shared/log-proof.js';
import { leafHash, nodeHash } from '../../../shared/merkle.js';
import { encodeTrustBundle } from '../../../shared/trust.js';
import { detKey, signWith } from '../fixtures.js';
import { mutate } from './mutators.js';
import { type FuzzTarget } from './target.js';

const ORIGIN = 'fuzz.example/log';

export function logProofTargets(envelope: Uint8Array, other: Uint8Array): FuzzTarget[] {
  const [A, R, L, W1, W2, W3] = ['A', 'R', 'L', 'W1', 'W2', 'W3'].map((n) => detKey(`fuzz-log-${n}`));
  const trustBytes = signWith(
    encodeTrustBundle({
      version: 1,
      root: { threshold: 1, keys: [A.publicKey] },
      release: { threshold: 1, keys: [R.publicKey] },
      log: { origin: ORIGIN, logKey: L.publicKey, witnessThreshold: 1, witnesses: [W1, W2].map((w) => ({ name: w.name, key: w.publicKey })) },
    }),
    [A],
  );
  const loaded = loadTrust(trustBytes);
  if (!loaded.ok) throw new Error(`fuzz fixture: log trust ${loaded.error}`);
  const trust: VerifiedTrust = loaded.trust;
  const [l0, l1] = [envelope, other].map((o) => leafHash(nodeSha256, o));
  const root = nodeHash(nodeSha256, l0, l1);
  const text = checkpointText({ origin: ORIGIN, size: 2, root, extensions: [] });
  const cosign = (w: typeof W1) => {
    const s = cosignNote(text, w, w.name, 1764000000);
    const id = new Uint8Array(4);
    new DataView(id.buffer).setUint32(0, s.keyId >>> 0);
    return { keyId: id, time: 1764000000, signature: s.signature.slice(8) };
  };
  const proof = (over: Partial<LogProof>) =>
    encodeLogProof({
      index: 0,
      size: 2,
      root,
      inclusion: [l1],
      signature: signNote(text, L, ORIGIN).signature,
      cosignatures: [cosign(W1)],
      fromSize: 1,
      consistency: [l1],
      ...over,
    });
  const stored = { size: 1, root: l0 };
  const good = proof({});
  // Validly built, refused by policy: an unlisted witness only (206), no consistency part (312),
  // the log key's signature by another key (205), a proof of the other entry (310).
  const refuse = [
    proof({ cosignatures: [cosign(W3)] }),
    proof({ fromSize: undefined, consistency: undefined }),
    proof({ signature: signNote(text, W3, ORIGIN).signature }),
    proof({ index: 1, inclusion: [l0] }),
  ];
  const call = (b: Uint8Array) => verifyLogProof(envelope, b, trust, stored);
  return [
    {
      name: 'logProof/L',
      weight: 6,
      selfCheck: () => (call(good).ok ? null : 'logProof/L: the valid proof is refused'),
      make(rng, corpus) {
        const r = rng.u32() / 0x100000000;
        const m = r < 0.04 ? { bytes: rng.pick(refuse), ops: ['policy'] } : mutate(rng, r < 0.1 ? rng.pick(refuse) : good, corpus);
        return { input: m.bytes, note: m.ops.join('+'), ops: m.ops, run: () => call(m.bytes), legit: () => legitimate(m.bytes, good) };
      },
    },
  ];
}

/**
 * The acceptance oracle: the proof as built, or one with the same checkpoint, paths and log signature
 * whose cosignatures still include the needed one unchanged (extra entries are ignored or count once,
 * SPEC.md §16.8 L5; the fuzzer cannot forge a signature). Anything else accepted is a finding.
 */
function legitimate(input: Uint8Array, good: Uint8Array): boolean {
  if (bytesEqual(input, good)) return true;
  const a = parseLogProof(input);
  const g = parseLogProof(good);
  if (!a.ok || !g.ok) return false;
  const [x, y] = [a.value, g.value];
  const same = (p: readonly Uint8Array[] | undefined, q: readonly Uint8Array[] | undefined) =>
    (p ?? []).length === (q ?? []).length && (p ?? []).every((n, i) => bytesEqual(n, (q ?? [])[i]));
  return (
    x.index === y.index &&
    x.size === y.size &&
    x.fromSize === y.fromSize &&
    bytesEqual(x.root, y.root) &&
    bytesEqual(x.signature, y.signature) &&
    same(x.inclusion, y.inclusion) &&
    same(x.consistency, y.consistency) &&
    y.cosignatures.every((c) => x.cosignatures.some((d) => bytesEqual(c.keyId, d.keyId) && c.time === d.time && bytesEqual(c.signature, d.signature)))
  );
}
