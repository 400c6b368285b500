/**
 * The signed material of a HIL scenario, built with the real host code: keys from labels (the same
 * label always gives the same key, so a scenario file names keys, not key files), trust bundles,
 * revocation lists, releases (image + signed manifest) and the update bundle (shared/bundle.ts) that
 * carries a release over SMP image upload. A team's own release (`M.cose` + image file) becomes a
 * `Release` too (`releaseFromFiles`), so it travels in the same bundle.
 */
import { createHash } from 'node:crypto';
import { LeafHasher, nodeSha256 } from '../host/hash.js';
import { type SigningKey, signingKeyFromSeed } from '../host/keys.js';
import { signPayload } from '../host/sign.js';
import { bundleLayout, encodeBundleHeader } from '../shared/bundle.js';
import { fail, ok, type Result } from '../shared/codes.js';
import { parseEnvelope } from '../shared/cose.js';
import { encodeManifest, type Manifest, parseManifest } from '../shared/manifest.js';
import { merkleRoot, pageProofs } from '../shared/merkle.js';
import { encodeRevocationList, encodeTrustBundle, parseTrustBundle } from '../shared/trust.js';

const sha256 = (data: Uint8Array | string): Uint8Array => new Uint8Array(createHash('sha256').update(data).digest());

const keys = new Map<string, SigningKey>();
/** A deterministic Ed25519 key named `label`. */
export function hilKey(label: string): SigningKey {
  let k = keys.get(label);
  if (k === undefined) {
    k = signingKeyFromSeed(label, sha256(`fwseal hil key ${label}`));
    keys.set(label, k);
  }
  return k;
}

/** Deterministic pseudo-random bytes (SHA-256 in counter mode). */
export function detBytes(length: number, seed: string): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0, block = 0; i < length; block++, i += 32) out.set(sha256(`${seed}/${block}`).subarray(0, Math.min(32, length - i)), i);
  return out;
}

export type TrustSpec = {
  readonly version?: number;
  readonly root: readonly string[];
  readonly rootThreshold: number;
  readonly release: readonly string[];
  readonly releaseThreshold: number;
  /** Who signs the bundle (default: the root keys). */
  readonly signers?: readonly string[];
};

export function makeTrust(spec: TrustSpec): Uint8Array {
  const payload = encodeTrustBundle({
    version: spec.version ?? 1,
    root: { threshold: spec.rootThreshold, keys: spec.root.map((l) => hilKey(l).publicKey) },
    release: { threshold: spec.releaseThreshold, keys: spec.release.map((l) => hilKey(l).publicKey) },
  });
  return signPayload(payload, (spec.signers ?? spec.root).map(hilKey));
}

export type RevocationSpec = { readonly version: number; readonly keys?: readonly string[]; readonly signers: readonly string[] };

export function makeRevocations(spec: RevocationSpec): Uint8Array {
  return signPayload(
    encodeRevocationList({ version: spec.version, keyIds: (spec.keys ?? []).map((l) => hilKey(l).keyId), manifests: [] }),
    spec.signers.map(hilKey),
  );
}

export type ReleaseSpec = {
  readonly version: string;
  readonly counter: number;
  readonly signers: readonly string[];
  readonly deviceClass: string;
  readonly imageSize?: number;
  readonly chunkSize?: number;
};

export type Release = { readonly manifest: Manifest; readonly envelope: Uint8Array; readonly image: Uint8Array; readonly leaves: Uint8Array[] };

function leavesOf(image: Uint8Array, chunkSize: number): Uint8Array[] {
  const hasher = new LeafHasher(chunkSize);
  const leaves: Uint8Array[] = [];
  for (let o = 0; o < image.length; o += chunkSize) leaves.push(new Uint8Array(hasher.leaf(image.subarray(o, o + chunkSize))));
  return leaves;
}

export function makeRelease(spec: ReleaseSpec): Release {
  const imageSize = spec.imageSize ?? 16384;
  const chunkSize = spec.chunkSize ?? 1024;
  const image = detBytes(imageSize, `hil image ${spec.deviceClass} ${spec.version} ${imageSize}`);
  const leaves = leavesOf(image, chunkSize);
  const manifest: Manifest = {
    deviceClass: spec.deviceClass,
    version: spec.version,
    securityCounter: spec.counter,
    imageSize,
    chunkSize,
    merkleRoot: new Uint8Array(merkleRoot(nodeSha256, leaves)),
    created: 1764000000,
  };
  return { manifest, envelope: signPayload(encodeManifest(manifest), spec.signers.map(hilKey)), image, leaves };
}

/**
 * A release from a signed manifest and its image as files hold them. Only what the bundle layout
 * needs is read here (the manifest's sizes, SPEC.md §13.5; the image length must match them);
 * signatures, class, counter and digests are left to the device, which is what a scenario tests.
 */
export function releaseFromFiles(envelope: Uint8Array, image: Uint8Array): Result<{ release: Release }> {
  const env = parseEnvelope(envelope);
  if (!env.ok) return env;
  const m = parseManifest(env.envelope.payload);
  if (!m.ok) return m;
  const manifest = m.value;
  if (image.length !== manifest.imageSize) return fail('BAD_VALUE', `the image has ${image.length} bytes, the manifest says ${manifest.imageSize}`);
  return ok({ release: { manifest, envelope, image, leaves: leavesOf(image, manifest.chunkSize) } });
}

/** The version of a signed trust bundle (for comparing with what a board reports), or null. */
export function trustBundleVersion(envelope: Uint8Array): number | null {
  const env = parseEnvelope(envelope);
  const t = env.ok ? parseTrustBundle(env.envelope.payload) : null;
  return t?.ok ? t.value.version : null;
}

/**
 * The update bundle of a release (SPEC.md §13.5): FWSBND1, or FWSBND2 carrying `logProof` (the
 * attachment, opaque here) after the manifest. `tamperChunk` flips a byte of that chunk after signing.
 */
export function makeBundle(release: Release, options: { readonly tamperChunk?: number; readonly logProof?: Uint8Array } = {}): Uint8Array {
  const { manifest, envelope, image, leaves } = release;
  const proof = options.logProof;
  const layout = bundleLayout(envelope.length, manifest.imageSize, manifest.chunkSize, proof?.length);
  const proofs = pageProofs(nodeSha256, leaves);
  const out = new Uint8Array(layout.length);
  out.set(encodeBundleHeader(layout));
  out.set(envelope, layout.headerBytes);
  if (proof) out.set(proof, layout.headerBytes + envelope.length);
  for (const p of layout.pages) {
    let at = p.digestsAt;
    for (let i = p.firstChunk; i < p.endChunk; i++, at += 32) out.set(leaves[i], at);
    for (const node of proofs[p.page]) {
      out.set(node, at);
      at += 32;
    }
    out.set(image.subarray(p.firstChunk * manifest.chunkSize, Math.min(manifest.imageSize, p.endChunk * manifest.chunkSize)), p.chunksAt);
  }
  if (options.tamperChunk !== undefined) {
    const i = options.tamperChunk;
    const p = layout.pages[Math.floor(i / 128)];
    out[p.chunksAt + (i - p.firstChunk) * manifest.chunkSize + 7] ^= 0x40;
  }
  return out;
}
