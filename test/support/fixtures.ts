/**
 * Deterministic fixtures for tests, the fuzzer and the demo: keys from labels, trust bundles,
 * revocation lists and signed manifests built with the real host code.
 */
import { createHash } from 'node:crypto';
import { LeafHasher, nodeSha256 } from '../../host/hash.js';
import { type SigningKey, signingKeyFromSeed } from '../../host/keys.js';
import { signEnvelope } from '../../host/sign.js';
import { encodeEnvelope } from '../../shared/cose.js';
import { encodeManifest, type Manifest } from '../../shared/manifest.js';
import { merkleRoot } from '../../shared/merkle.js';
import { encodeRevocationList, encodeTrustBundle } from '../../shared/trust.js';

export function sha256(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(data).digest());
}

/** The same label always gives the same key. */
export function detKey(label: string): SigningKey {
  return signingKeyFromSeed(label, sha256(`fwseal test key ${label}`));
}

/** Deterministic pseudo-random bytes (SHA-256 in counter mode). */
export function detBytes(length: number, seed: string): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0, block = 0; i < length; block++) {
    const h = sha256(`${seed}/${block}`);
    out.set(h.subarray(0, Math.min(32, length - i)), i);
    i += 32;
  }
  return out;
}

export function signWith(payload: Uint8Array, keys: readonly SigningKey[]): Uint8Array {
  let env = encodeEnvelope({ payload, signatures: [] });
  for (const k of keys) env = signEnvelope(env, k).envelope;
  return env;
}

export type TrustSpec = {
  root: readonly SigningKey[];
  rootThreshold: number;
  release: readonly SigningKey[];
  releaseThreshold: number;
  signers: readonly SigningKey[];
  version?: number;
};

export function makeTrust(spec: TrustSpec): Uint8Array {
  const payload = encodeTrustBundle({
    version: spec.version ?? 1,
    root: { threshold: spec.rootThreshold, keys: spec.root.map((k) => k.publicKey) },
    release: { threshold: spec.releaseThreshold, keys: spec.release.map((k) => k.publicKey) },
  });
  return signWith(payload, spec.signers);
}

export function makeRevocations(opts: { version: number; keyIds?: Uint8Array[]; manifests?: Uint8Array[]; signers: readonly SigningKey[] }): Uint8Array {
  return signWith(encodeRevocationList({ version: opts.version, keyIds: opts.keyIds ?? [], manifests: opts.manifests ?? [] }), opts.signers);
}

/** Leaf hashes of an in-memory image (concatenated) and its Merkle root. */
export function imageTree(image: Uint8Array, chunkSize: number): { leaves: Uint8Array[]; root: Uint8Array } {
  const hasher = new LeafHasher(chunkSize);
  const leaves: Uint8Array[] = [];
  for (let o = 0; o < image.length; o += chunkSize) leaves.push(new Uint8Array(hasher.leaf(image.subarray(o, o + chunkSize))));
  return { leaves, root: new Uint8Array(merkleRoot(nodeSha256, leaves)) };
}

export function makeManifest(image: Uint8Array, fields: Partial<Manifest> = {}): Manifest {
  const chunkSize = fields.chunkSize ?? 4096;
  return {
    deviceClass: 'acme-gw',
    version: '1.4.2',
    securityCounter: 7,
    imageSize: image.length,
    chunkSize,
    merkleRoot: imageTree(image, chunkSize).root,
    created: 1764000000,
    ...fields,
  };
}

export function makeManifestEnvelope(manifest: Manifest, signers: readonly SigningKey[]): Uint8Array {
  return signWith(encodeManifest(manifest), signers);
}

/** The standard world: root A,B,C (2 of 3), release R1,R2,R3 (2 of 3), a 100 KB image, a manifest signed by R1+R2. */
export function standardWorld() {
  const [A, B, C] = ['A', 'B', 'C'].map(detKey);
  const [R1, R2, R3] = ['R1', 'R2', 'R3'].map(detKey);
  const trust = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2, R3], releaseThreshold: 2, signers: [A, B] });
  const image = detBytes(100_000, 'standard image');
  const manifest = makeManifest(image);
  const envelope = makeManifestEnvelope(manifest, [R1, R2]);
  const state = { deviceClass: 'acme-gw', counter: 7 };
  return { A, B, C, R1, R2, R3, trust, image, manifest, envelope, state };
}
