/**
 * `tsx tools/gen-vectors.ts [--check]`: writes test/vectors/fwseal/manifest-vectors.json, the
 * project's own vectors for the device verifier (SPEC.md §6): envelopes, trust bundles, revocation
 * lists, device states and small images, each with the code a verifier must return.
 *
 * Deterministic: keys come from labels under one fixed seed (test/support/fixtures.ts), Ed25519
 * signatures are deterministic (RFC 8032 §5.1.6), `created` is fixed and JSON keys are sorted, so
 * running it again gives the same bytes (`--check` compares instead of writing).
 *
 * Each case carries the code this generator intends (written from SPEC.md, not from the code); the
 * generator runs the Node device verifier on every case through the same runner the QuickJS test
 * uses (test/support/quickjs.ts, CASE_RUNNER_SOURCE) and refuses to write the file if any result
 * differs from the intended code.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as device from '../../device/index.js';
import { CODES, type CodeName } from '../../shared/codes.js';
import { SIGNER_PROTECTED, encodeEnvelope, sigStructure } from '../../shared/cose.js';
import { type Manifest, encodeManifest } from '../../shared/manifest.js';
import { pageProof } from '../../shared/merkle.js';
import { nodeSha256 } from '../../host/hash.js';
import { type SigningKey } from '../../host/keys.js';
import {
  detBytes, detKey, imageTree, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust, sha256, signWith,
} from './fixtures.js';
import { type VectorCase, runVectorCase } from './quickjs.js';

export const SEED = 'fwseal manifest vectors v1';
const here = dirname(fileURLToPath(import.meta.url));
export const VECTORS_PATH = join(here, '..', 'vectors', 'fwseal', 'manifest-vectors.json');

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const cat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(parts));

// ---- raw CBOR, for encodings the deterministic encoder refuses to write ----

/** A head with the argument in `width` extra bytes (0 = in the initial byte), shortest or not. */
function head(major: number, value: number, width?: 0 | 1 | 2 | 4 | 8): Uint8Array {
  const w = width ?? (value < 24 ? 0 : value < 0x100 ? 1 : value < 0x10000 ? 2 : value < 0x100000000 ? 4 : 8);
  if (w === 0) return Uint8Array.of((major << 5) | value);
  const out = new Uint8Array(1 + w);
  out[0] = (major << 5) | { 1: 24, 2: 25, 4: 26, 8: 27 }[w];
  let v = BigInt(value);
  for (let i = w; i >= 1; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}
const cbor = {
  uint: (n: number, width?: 0 | 1 | 2 | 4 | 8) => head(0, n, width),
  bytes: (b: Uint8Array, width?: 0 | 1 | 2 | 4 | 8) => cat(head(2, b.length, width), b),
  text: (s: string) => cat(head(3, Buffer.byteLength(s)), Buffer.from(s)),
  array: (items: Uint8Array[]) => cat(head(4, items.length), ...items),
  arrayIndefinite: (items: Uint8Array[]) => cat(Uint8Array.of(0x9f), ...items, Uint8Array.of(0xff)),
  /** Entries written in the order given: no sorting, duplicates allowed. */
  map: (entries: [Uint8Array, Uint8Array][]) => cat(head(5, entries.length), ...entries.flat()),
  mapIndefinite: (entries: [Uint8Array, Uint8Array][]) => cat(Uint8Array.of(0xbf), ...entries.flat(), Uint8Array.of(0xff)),
  tag: (t: number, item: Uint8Array) => cat(head(6, t), item),
};
type Entry = [Uint8Array, Uint8Array];

/** The manifest payload as raw map entries, keys 0..10 in order; encodes to exactly encodeManifest(m). */
function manifestEntries(m: Manifest): Entry[] {
  return [
    [cbor.uint(0), cbor.uint(1)],
    [cbor.uint(1), cbor.uint(1)],
    [cbor.uint(2), cbor.text(m.deviceClass)],
    [cbor.uint(3), cbor.text(m.version)],
    [cbor.uint(4), cbor.uint(m.securityCounter)],
    [cbor.uint(5), cbor.uint(m.imageSize)],
    [cbor.uint(6), cbor.uint(m.chunkSize)],
    [cbor.uint(7), cbor.bytes(m.merkleRoot)],
    [cbor.uint(10), cbor.uint(m.created)],
  ];
}
const withValue = (entries: Entry[], key: number, value: Uint8Array): Entry[] =>
  entries.map(([k, v]) => [k, k.length === 1 && k[0] === key ? value : v]);
const without = (entries: Entry[], key: number): Entry[] => entries.filter(([k]) => !(k.length === 1 && k[0] === key));

type RawSignature = { kid: Uint8Array; signature: Uint8Array; protectedHeader?: Uint8Array; unprotected?: Uint8Array };

function rawSignature(s: RawSignature): Uint8Array {
  return cbor.array([
    cbor.bytes(s.protectedHeader ?? SIGNER_PROTECTED),
    s.unprotected ?? cbor.map([[cbor.uint(4), cbor.bytes(s.kid)]]),
    cbor.bytes(s.signature),
  ]);
}

/** A COSE_Sign written piece by piece (signatures in the order given). */
function rawEnvelope(payload: Uint8Array, sigs: RawSignature[], o: { payloadItem?: Uint8Array; signaturesItem?: Uint8Array; bodyProtected?: Uint8Array; bodyUnprotected?: Uint8Array; tag?: number } = {}): Uint8Array {
  const body = cbor.array([
    o.bodyProtected ?? cbor.bytes(new Uint8Array(0)),
    o.bodyUnprotected ?? cbor.map([]),
    o.payloadItem ?? cbor.bytes(payload),
    o.signaturesItem ?? cbor.array(sigs.map(rawSignature)),
  ]);
  return o.tag === undefined ? cbor.tag(98, body) : o.tag < 0 ? body : cbor.tag(o.tag, body);
}

const signatureBy = (key: SigningKey, payload: Uint8Array, kid = key.keyId): RawSignature => ({ kid, signature: key.sign(sigStructure(payload)) });

function flipBit(bytes: Uint8Array, offset: number, mask = 1): Uint8Array {
  const out = Uint8Array.from(bytes);
  out[offset] ^= mask;
  return out;
}

/** Offset of `inner` inside `outer` (the place a layer's bytes sit in the envelope). */
function offsetOf(outer: Uint8Array, inner: Uint8Array): number {
  const at = Buffer.from(outer).indexOf(Buffer.from(inner));
  if (at < 0) throw new Error('layer not found in the envelope');
  return at;
}

/**
 * Cases where the code written from SPEC.md's text is not what the device returns, raised with the
 * lead. The file records the device's answer with the question beside it; once SPEC.md or the
 * device changes, the generator fails here until the entry is removed.
 */
const OPEN_QUESTIONS: Readonly<Record<string, { spec: Expect; device: Expect; note: string }>> = {
  "flip: the payload's counter becomes a negative integer": {
    spec: 'WRONG_TYPE',
    device: 'BAD_VALUE',
    note: 'SPEC.md §2: "a value of the wrong major type is WRONG_TYPE"; a negative integer (major type 1) where a uint is required is reported as BAD_VALUE (shared/fields.ts asUint)',
  },
  'envelope: an unprotected header with more than the kid': {
    spec: 'BAD_HEADER',
    device: 'UNKNOWN_KEY',
    note: 'SPEC.md E4: an unprotected header holding anything but the kid is BAD_HEADER; shared/cose.ts reports UNKNOWN_KEY (FieldReader.done), as §2 says for closed maps',
  },
};

// ---- the world ----

type Expect = Exclude<CodeName, 'USAGE' | 'IO' | 'KEY_FILE_PERMISSIONS' | 'WRONG_PASSPHRASE' | 'KEY_FORMAT' | 'NO_PASSPHRASE' | 'KEY_NOT_IN_TRUST' | 'INTERNAL'>;
type Draft = VectorCase & { readonly expect: Expect };

export type VectorFile = {
  readonly about: string;
  readonly generator: string;
  readonly seed: string;
  readonly images: Record<string, string>;
  readonly cases: (VectorCase & {
    readonly expected: { readonly code: number; readonly error: string; readonly stage: 'manifest' | 'image' };
    readonly specQuestion?: string;
  })[];
};

export function generateVectors(): VectorFile {
  const key = (label: string): SigningKey => detKey(`${SEED}/${label}`);
  const [A, B, C] = ['A', 'B', 'C'].map(key);
  const [R1, R2, R3] = ['R1', 'R2', 'R3'].map(key);
  const X = key('X'); // listed nowhere

  const TRUST_VERSION = 3;
  const trustSpec = { root: [A, B, C], rootThreshold: 2, release: [R1, R2, R3], releaseThreshold: 2, version: TRUST_VERSION };
  const trust = makeTrust({ ...trustSpec, signers: [A, B] });

  // The small image: 2600 bytes in 512-byte chunks (5 full chunks and a 40-byte one, one digest page).
  const CHUNK = 512;
  const small = detBytes(2600, `${SEED}/small image`);
  const manifest: Manifest = makeManifest(small, {
    chunkSize: CHUNK, deviceClass: 'acme-gw', version: '2.1.0', securityCounter: 7, created: 1764000000,
  });
  const payload = encodeManifest(manifest);
  const good = makeManifestEnvelope(manifest, [R1, R2]);
  const state = { deviceClass: 'acme-gw', counter: 7 };

  // The raw writers must agree with the real encoders before they are used to bend them.
  if (hex(cbor.map(manifestEntries(manifest))) !== hex(payload)) throw new Error('raw manifest encoding differs from encodeManifest');
  const rawGood = rawEnvelope(payload, [signatureBy(R1, payload), signatureBy(R2, payload)].sort((a, b) => Buffer.compare(a.kid, b.kid)));
  if (hex(rawGood) !== hex(good)) throw new Error('raw envelope encoding differs from encodeEnvelope');

  const signedPayload = (p: Uint8Array, signers: SigningKey[] = [R1, R2]): Uint8Array => signWith(p, signers);
  const manifestWith = (fields: Partial<Manifest>, signers: SigningKey[] = [R1, R2]) => makeManifestEnvelope({ ...manifest, ...fields }, signers);
  const rl = (o: { version?: number; keyIds?: Uint8Array[]; manifests?: Uint8Array[]; signers?: SigningKey[] }) =>
    makeRevocations({ version: o.version ?? 2, keyIds: o.keyIds ?? [], manifests: o.manifests ?? [], signers: o.signers ?? [A, B] });
  const rlUnrelated = rl({ keyIds: [X.keyId] });
  const manifestDigest = sha256(payload);

  const cases: Draft[] = [];
  const add = (name: string, expect: Expect, o: { envelope?: Uint8Array; trust?: Uint8Array; state?: Partial<VectorCase['state']> & { revocations?: string }; image?: VectorCase['image'] } = {}): void => {
    cases.push({
      name,
      expect,
      envelope: hex(o.envelope ?? good),
      trust: hex(o.trust ?? trust),
      state: { ...state, ...o.state },
      ...(o.image ? { image: o.image } : {}),
    });
  };

  // ---- accepted (V1–V9 all pass) ----
  add('accept: 2 of 3 release signatures (R1, R2)', 'OK');
  add('accept: 3 of 3 release signatures (R1, R2, R3)', 'OK', { envelope: manifestWith({}, [R1, R2, R3]) });
  add('accept: R2 and R3', 'OK', { envelope: manifestWith({}, [R2, R3]) });
  add('accept: security counter above the stored one (V9: >=)', 'OK', { state: { counter: 3 } });
  add('accept: stored trust version equal to the bundle (V2: >=)', 'OK', { state: { trustVersion: TRUST_VERSION } });
  add('accept: revocation list naming an unrelated key', 'OK', { state: { revocations: hex(rlUnrelated) } });
  add('accept: revocation list signed by B and C, stored version equal (R4: >=)', 'OK', {
    state: { revocations: hex(rl({ keyIds: [X.keyId], signers: [B, C] })), revocationVersion: 2 },
  });
  add('accept: 3 signatures, R3 revoked, R1 and R2 still reach the threshold', 'OK', {
    envelope: manifestWith({}, [R1, R2, R3]), state: { revocations: hex(rl({ keyIds: [R3.keyId] })) },
  });
  add('accept: an unknown kid beside two release signatures is ignored', 'OK', { envelope: manifestWith({}, [R1, R2, X]) });
  add('accept: signatures not sorted by kid (verifiers do not require the order)', 'OK', {
    envelope: rawEnvelope(payload, [signatureBy(R1, payload), signatureBy(R2, payload)].sort((a, b) => Buffer.compare(b.kid, a.kid))),
  });
  add('accept: a corrupted third signature beside two good ones', 'OK', {
    envelope: rawEnvelope(payload, [signatureBy(R1, payload), signatureBy(R2, payload), { kid: R3.keyId, signature: flipBit(signatureBy(R3, payload).signature, 5) }]),
  });

  // ---- V6: threshold ----
  add('threshold: one short (R1 only)', 'THRESHOLD_NOT_MET', { envelope: manifestWith({}, [R1]) });
  add('threshold: unsigned draft (no signatures)', 'THRESHOLD_NOT_MET', { envelope: encodeEnvelope({ payload, signatures: [] }) });
  add('threshold: duplicate signer (R1 twice) counts once', 'THRESHOLD_NOT_MET', {
    envelope: rawEnvelope(payload, [signatureBy(R1, payload), signatureBy(R1, payload)]),
  });
  add('threshold: unknown kid (R1 and an outsider)', 'THRESHOLD_NOT_MET', { envelope: manifestWith({}, [R1, X]) });
  add('threshold: a root key (A) is not a release key', 'THRESHOLD_NOT_MET', { envelope: manifestWith({}, [R1, A]) });
  add("threshold: R1's signature under R2's kid", 'THRESHOLD_NOT_MET', {
    envelope: rawEnvelope(payload, [signatureBy(R1, payload), signatureBy(R1, payload, R2.keyId)]),
  });
  add('threshold: R2 signed another manifest', 'THRESHOLD_NOT_MET', {
    envelope: rawEnvelope(payload, [signatureBy(R1, payload), signatureBy(R2, encodeManifest({ ...manifest, version: '2.1.1' }))]),
  });
  {
    // P2: S + L gives the same [S]B; the malleated signature must not count.
    const L = (1n << 252n) + 27742317777372353535851937790883648493n;
    const s2 = signatureBy(R2, payload);
    let S = 0n;
    for (let i = 63; i >= 32; i--) S = (S << 8n) | BigInt(s2.signature[i]);
    const m = Uint8Array.from(s2.signature);
    for (let i = 0, v = S + L; i < 32; i++, v >>= 8n) m[32 + i] = Number(v & 0xffn);
    add("threshold: R2's signature malleated to S + L", 'THRESHOLD_NOT_MET', {
      envelope: rawEnvelope(payload, [signatureBy(R1, payload), { kid: R2.keyId, signature: m }]),
    });
  }

  // ---- V3, V6, V7: revocation ----
  add('revoked: signer R2 revoked, R1 and R2 signed', 'REVOKED_KEY', { state: { revocations: hex(rl({ keyIds: [R2.keyId] })) } });
  add('revoked: both signers revoked', 'REVOKED_KEY', { state: { revocations: hex(rl({ keyIds: [R1.keyId, R2.keyId] })) } });
  add("revoked: R2 revoked but R2's signature is invalid anyway", 'THRESHOLD_NOT_MET', {
    envelope: rawEnvelope(payload, [signatureBy(R1, payload), { kid: R2.keyId, signature: flipBit(signatureBy(R2, payload).signature, 0) }]),
    state: { revocations: hex(rl({ keyIds: [R2.keyId] })) },
  });
  add('revoked: the manifest digest is on the list', 'REVOKED_MANIFEST', { state: { revocations: hex(rl({ manifests: [manifestDigest] })) } });
  add('revoked: manifest and signer both revoked (V6 before V7)', 'REVOKED_KEY', {
    state: { revocations: hex(rl({ keyIds: [R1.keyId], manifests: [manifestDigest] })) },
  });
  add('revoked: another manifest digest on the list', 'OK', { state: { revocations: hex(rl({ manifests: [sha256('another payload')] })) } });
  add('revocation: rollback (list version 2, stored 3)', 'REVOCATION_ROLLBACK', { state: { revocations: hex(rlUnrelated), revocationVersion: 3 } });
  add('revocation: one root signature (A)', 'REVOCATION_THRESHOLD_NOT_MET', { state: { revocations: hex(rl({ keyIds: [X.keyId], signers: [A] })) } });
  add('revocation: signed by release keys', 'REVOCATION_THRESHOLD_NOT_MET', { state: { revocations: hex(rl({ keyIds: [X.keyId], signers: [R1, R2] })) } });
  add('revocation: a list revoking its own signer A', 'REVOCATION_THRESHOLD_NOT_MET', { state: { revocations: hex(rl({ keyIds: [A.keyId] })) } });
  add('revocation: a manifest envelope given as the list', 'WRONG_KIND', { state: { revocations: hex(good) } });
  add('revocation: list truncated by one byte', 'TRUNCATED', { state: { revocations: hex(rlUnrelated.subarray(0, rlUnrelated.length - 1)) } });
  add('revocation: bit flip in the signed list payload', 'REVOCATION_THRESHOLD_NOT_MET', {
    // The version 2 -> 3 inside the payload: still a well-formed list, no longer what A and B signed.
    state: {
      revocations: hex((() => {
        const p = cbor.map([[cbor.uint(0), cbor.uint(3)], [cbor.uint(1), cbor.uint(1)], [cbor.uint(2), cbor.uint(2)], [cbor.uint(3), cbor.array([cbor.bytes(X.keyId)])]]);
        return flipBit(rlUnrelated, offsetOf(rlUnrelated, p) + 6, 0x01);
      })()),
    },
  });

  // ---- V2: the trust bundle ----
  add('trust: one root signature (A)', 'TRUST_THRESHOLD_NOT_MET', { trust: makeTrust({ ...trustSpec, signers: [A] }) });
  add('trust: signed by release keys', 'TRUST_THRESHOLD_NOT_MET', { trust: makeTrust({ ...trustSpec, signers: [R1, R2] }) });
  add('trust: rollback (bundle 3, stored 4)', 'TRUST_ROLLBACK', { state: { trustVersion: 4 } });
  add('trust: bit flip in the signed payload (version 3 -> 2)', 'TRUST_THRESHOLD_NOT_MET', {
    trust: (() => {
      const at = offsetOf(trust, Uint8Array.of(0xa5, 0x00, 0x02, 0x01, 0x01, 0x02, 0x03)) + 6;
      return flipBit(trust, at, 0x01);
    })(),
  });
  add('trust: a manifest envelope given as the trust bundle', 'WRONG_KIND', { trust: good });
  add('trust: truncated by one byte', 'TRUNCATED', { trust: trust.subarray(0, trust.length - 1) });
  {
    const role = (threshold: number, keys: Uint8Array[]) => cbor.map([[cbor.uint(1), cbor.uint(threshold)], [cbor.uint(2), cbor.array(keys.map((k) => cbor.bytes(k)))]]);
    const bundle = (release: Uint8Array) => signedPayload(cbor.map([
      [cbor.uint(0), cbor.uint(2)], [cbor.uint(1), cbor.uint(1)], [cbor.uint(2), cbor.uint(TRUST_VERSION)],
      [cbor.uint(3), role(2, [A, B, C].map((k) => k.publicKey))], [cbor.uint(4), release],
    ]), [A, B]);
    const identity = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0));
    add('trust: a small-order key (the identity) in the release role (T3)', 'BAD_VALUE', { trust: bundle(role(2, [R1.publicKey, R2.publicKey, identity])) });
    add('trust: release threshold above its key count', 'BAD_VALUE', { trust: bundle(role(4, [R1, R2, R3].map((k) => k.publicKey))) });
    add('trust: a release key listed twice', 'DUPLICATE_KEY', { trust: bundle(role(2, [R1.publicKey, R2.publicKey, R1.publicKey])) });
  }

  // ---- V1, V8, V9: policy and state ----
  add('policy: wrong device class', 'WRONG_DEVICE_CLASS', { state: { deviceClass: 'acme-cam' } });
  add('policy: rollback (counter 7, stored 8)', 'ROLLBACK', { state: { counter: 8 } });
  add('policy: unsigned manifest for another device class (signatures before policy)', 'THRESHOLD_NOT_MET', {
    envelope: encodeEnvelope({ payload, signatures: [] }), state: { deviceClass: 'acme-cam' },
  });
  add('state: empty device class', 'INVALID_STATE', { state: { deviceClass: '' } });
  add('state: negative counter', 'INVALID_STATE', { state: { counter: -1 } });
  add('state: fractional trust version', 'INVALID_STATE', { state: { trustVersion: 1.5 } });

  // ---- V5: wrong kind ----
  add('kind: a trust bundle given as the manifest', 'WRONG_KIND', { envelope: trust });
  add('kind: a revocation list given as the manifest', 'WRONG_KIND', { envelope: rlUnrelated });
  add('kind: a device state record (kind 4) signed by R1 and R2', 'WRONG_KIND', {
    envelope: signedPayload(cbor.map([[cbor.uint(0), cbor.uint(4)], [cbor.uint(1), cbor.uint(1)], [cbor.uint(2), cbor.uint(1)]])),
  });

  // ---- V4: truncations and bytes around the envelope ----
  add('truncated: empty input', 'TRUNCATED', { envelope: new Uint8Array(0) });
  add('truncated: the first byte only', 'TRUNCATED', { envelope: good.subarray(0, 1) });
  add('truncated: half the envelope', 'TRUNCATED', { envelope: good.subarray(0, good.length >> 1) });
  add('truncated: the last byte missing', 'TRUNCATED', { envelope: good.subarray(0, good.length - 1) });
  add('trailing: one byte after the envelope', 'TRAILING_BYTES', { envelope: cat(good, Uint8Array.of(0)) });
  add('too large: 16385 bytes', 'TOO_LARGE', { envelope: cat(good, new Uint8Array(16385 - good.length)) });

  // ---- bit flips, one per layer ----
  {
    const sigs = [signatureBy(R1, payload), signatureBy(R2, payload)].sort((a, b) => Buffer.compare(a.kid, b.kid));
    const first = rawSignature(sigs[0]);
    const at = offsetOf(good, first);
    add('flip: tag 98 -> 99 (E2)', 'BAD_HEADER', { envelope: flipBit(good, 1, 0x01) });
    add('flip: COSE_Sign array of 4 -> 5 items', 'TRUNCATED', { envelope: flipBit(good, 2, 0x01) });
    add('flip: protected header alg -8 -> -7 (E4)', 'UNSUPPORTED_ALGORITHM', { envelope: flipBit(good, at + 4, 0x01) });
    add('flip: protected header label 1 -> 3 (E4)', 'BAD_HEADER', { envelope: flipBit(good, at + 3, 0x02) });
    add('flip: a bit of the first kid', 'THRESHOLD_NOT_MET', { envelope: flipBit(good, at + 8, 0x80) });
    add('flip: a bit of the first signature', 'THRESHOLD_NOT_MET', { envelope: flipBit(good, at + first.length - 1, 0x10) });
    add("flip: a bit of the payload's device class (still well formed)", 'THRESHOLD_NOT_MET', {
      envelope: flipBit(good, offsetOf(good, payload) + offsetOf(payload, Buffer.from('acme-gw')), 0x02),
    });
    add("flip: the payload's counter becomes a negative integer", 'WRONG_TYPE', {
      envelope: flipBit(good, offsetOf(good, payload) + offsetOf(payload, Uint8Array.of(0x04, 0x07, 0x05)) + 1, 0x20),
    });
  }

  // ---- E2–E4: the envelope profile ----
  {
    const two = [signatureBy(R1, payload), signatureBy(R2, payload)];
    add('envelope: not tagged (a bare array)', 'BAD_HEADER', { envelope: rawEnvelope(payload, two, { tag: -1 }) });
    add('envelope: tag 18 (COSE_Sign1) instead of 98', 'BAD_HEADER', { envelope: rawEnvelope(payload, two, { tag: 18 }) });
    add('envelope: body protected header not empty', 'BAD_HEADER', { envelope: rawEnvelope(payload, two, { bodyProtected: cbor.bytes(SIGNER_PROTECTED) }) });
    add('envelope: body unprotected header not empty', 'BAD_HEADER', {
      envelope: rawEnvelope(payload, two, { bodyUnprotected: cbor.map([[cbor.uint(1), Uint8Array.of(0x27)]]) }),
    });
    add('envelope: detached payload (null)', 'WRONG_TYPE', { envelope: rawEnvelope(payload, two, { payloadItem: Uint8Array.of(0xf6) }) });
    add('envelope: a 63-byte signature', 'MALFORMED', { envelope: rawEnvelope(payload, [two[0], { kid: R2.keyId, signature: two[1].signature.subarray(0, 63) }]) });
    add('envelope: a 15-byte kid', 'BAD_HEADER', { envelope: rawEnvelope(payload, [two[0], { kid: R2.keyId.subarray(0, 15), signature: two[1].signature }]) });
    add('envelope: an unprotected header with more than the kid', 'BAD_HEADER', {
      envelope: rawEnvelope(payload, [two[0], { ...two[1], unprotected: cbor.map([[cbor.uint(1), Uint8Array.of(0x27)], [cbor.uint(4), cbor.bytes(R2.keyId)]]) }]),
    });
    add('envelope: 17 signatures (above maxSignatures)', 'TOO_LARGE', { envelope: rawEnvelope(payload, Array.from({ length: 17 }, () => two[0])) });
    add('non-deterministic: payload length in a non-shortest head', 'NON_DETERMINISTIC', {
      envelope: rawEnvelope(payload, two, { payloadItem: cbor.bytes(payload, 2) }),
    });
    add('non-deterministic: indefinite-length signature array', 'NON_DETERMINISTIC', {
      envelope: rawEnvelope(payload, two, { signaturesItem: cbor.arrayIndefinite(two.map(rawSignature)) }),
    });
  }

  // ---- V5: the payload (re-signed by R1 and R2, so only the encoding or a field is at fault) ----
  {
    const e = manifestEntries(manifest);
    const signedMap = (entries: Entry[]) => signedPayload(cbor.map(entries));
    add('non-deterministic: counter 7 written as 0x18 0x07', 'NON_DETERMINISTIC', { envelope: signedMap(withValue(e, 4, cbor.uint(7, 1))) });
    add('non-deterministic: image size in 8 bytes', 'NON_DETERMINISTIC', { envelope: signedMap(withValue(e, 5, cbor.uint(manifest.imageSize, 8))) });
    add('non-deterministic: keys out of order (3 before 2)', 'NON_DETERMINISTIC', { envelope: signedMap([e[0], e[1], e[3], e[2], ...e.slice(4)]) });
    add('non-deterministic: indefinite-length payload map', 'NON_DETERMINISTIC', { envelope: signedPayload(cbor.mapIndefinite(e)) });
    add('payload: a key repeated', 'DUPLICATE_KEY', { envelope: signedMap([...e.slice(0, 5), e[4], ...e.slice(5)]) });
    add('payload: unknown key 11', 'UNKNOWN_KEY', { envelope: signedMap([...e, [cbor.uint(11), cbor.uint(0)]]) });
    add('payload: Merkle root missing', 'MISSING_FIELD', { envelope: signedMap(without(e, 7)) });
    add('payload: format version 2', 'UNSUPPORTED_FORMAT', { envelope: signedMap(withValue(e, 1, cbor.uint(2))) });
    add('payload: created as a float', 'UNSUPPORTED_FORMAT', {
      envelope: signedMap(withValue(e, 10, Uint8Array.from([0xfb, ...Buffer.from('41da4c3d80000000', 'hex')]))),
    });
    add('payload: chunk size 1000 (not a power of two)', 'BAD_VALUE', { envelope: signedMap(withValue(e, 6, cbor.uint(1000))) });
    add('payload: image size 0', 'BAD_VALUE', { envelope: signedMap(withValue(e, 5, cbor.uint(0))) });
    add('payload: device class is an integer', 'WRONG_TYPE', { envelope: signedMap(withValue(e, 2, cbor.uint(1))) });
    add("payload: version '2.1' is not SemVer", 'BAD_VALUE', { envelope: signedMap(withValue(e, 3, cbor.text('2.1'))) });
    add('payload: a 31-byte Merkle root', 'BAD_VALUE', { envelope: signedMap(withValue(e, 7, cbor.bytes(manifest.merkleRoot.subarray(0, 31)))) });
    add('payload: counter above 2^53 - 1', 'TOO_LARGE', {
      envelope: signedMap(withValue(e, 4, Uint8Array.from([0x1b, 0x00, 0x20, 0, 0, 0, 0, 0, 0]))),
    });
    add('payload: invalid UTF-8 in the version', 'MALFORMED', { envelope: signedMap(withValue(e, 3, Uint8Array.of(0x62, 0xc3, 0x28))) });
    add('payload: nested 9 deep under an unknown key', 'TOO_DEEP', {
      envelope: signedMap([...e, [cbor.uint(11), Array.from({ length: 8 }).reduce<Uint8Array>((inner) => cbor.array([inner]), cbor.uint(0))]]),
    });
    add('payload: a byte after the map', 'TRAILING_BYTES', { envelope: signedPayload(cat(payload, Uint8Array.of(0))) });
  }

  // ---- I1–I5: images (the manifest passes first; the image is streamed with digest pages) ----
  const images: Record<string, string> = {};
  const leavesOf = (image: Uint8Array) => imageTree(image, CHUNK).leaves;
  const pagesOf = (leaves: Uint8Array[]) =>
    Array.from({ length: Math.ceil(leaves.length / 128) }, (_, p) => ({
      page: p, leaves: hex(cat(...leaves.slice(128 * p, 128 * p + 128))), proof: hex(cat(new Uint8Array(0), ...pageProof(nodeSha256, leaves, p))),
    }));
  images.small = hex(small);
  images['small, chunk 2 tampered'] = hex(flipBit(small, 2 * CHUNK + 100, 0x04));
  images['small, last byte tampered'] = hex(flipBit(small, small.length - 1, 0x80));
  images['small, one byte short'] = hex(small.subarray(0, small.length - 1));
  images['small, one byte long'] = hex(cat(small, Uint8Array.of(0)));
  const smallPages = pagesOf(leavesOf(small));
  const img = (bytes: string, pieceSize: number, digestPages = smallPages) => ({ bytes, pieceSize, digestPages });
  add('image: good, digest page, 700-byte pieces', 'OK', { image: img('small', 700) });
  add('image: good, no digest page, one piece', 'OK', { image: img('small', 4096, []) });
  add('image: good, digest page, 97-byte pieces', 'OK', { image: img('small', 97) });
  add('image: chunk 2 tampered, digest page (I3: at once)', 'CHUNK_DIGEST_MISMATCH', { image: img('small, chunk 2 tampered', 700) });
  add('image: chunk 2 tampered, no digest page (I5: at finish)', 'MERKLE_ROOT_MISMATCH', { image: img('small, chunk 2 tampered', 700, []) });
  add('image: last byte of the short last chunk tampered', 'CHUNK_DIGEST_MISMATCH', { image: img('small, last byte tampered', 512) });
  add('image: one byte short (I5)', 'IMAGE_TOO_SHORT', { image: img('small, one byte short', 700) });
  add('image: one byte long (I4)', 'IMAGE_TOO_LONG', { image: img('small, one byte long', 700) });
  add('image: digest page with a wrong leaf', 'DIGEST_PAGE_MISMATCH', {
    image: img('small', 700, [{ ...smallPages[0], leaves: hex(flipBit(Buffer.from(smallPages[0].leaves, 'hex'), 40, 0x01)) }]),
  });
  add('image: digest page missing its last leaf', 'DIGEST_PAGE_MISMATCH', {
    image: img('small', 700, [{ ...smallPages[0], leaves: smallPages[0].leaves.slice(0, -64) }]),
  });
  add('image: digest page with a proof node too many', 'PROOF_INVALID', {
    image: img('small', 700, [{ ...smallPages[0], proof: hex(new Uint8Array(32)) }]),
  });
  add('image: digest page index 1 of 1', 'CHUNK_INDEX_OUT_OF_RANGE', { image: img('small', 700, [{ ...smallPages[0], page: 1 }]) });

  // Two digest pages: 130 chunks (128 + 2, the last one short). To keep the file small there is one
  // such image; "tampered" cases stream it against the manifest of a copy that differs in one chunk.
  const big = detBytes(129 * CHUNK + 300, `${SEED}/two-page image`);
  const twoPage = (image: Uint8Array, signers: SigningKey[]) => {
    const m = makeManifest(image, { chunkSize: CHUNK, deviceClass: manifest.deviceClass, version: manifest.version, securityCounter: manifest.securityCounter, created: manifest.created });
    return { envelope: makeManifestEnvelope(m, signers), pages: pagesOf(leavesOf(image)) };
  };
  const bigSigned = twoPage(big, [R1, R3]);
  const otherAt129 = twoPage(flipBit(big, 129 * CHUNK + 7, 0x01), [R1, R3]);
  const otherAt3 = twoPage(flipBit(big, 3 * CHUNK, 0x01), [R1, R3]);
  images['two pages'] = hex(big);
  add('image: two digest pages, good', 'OK', { envelope: bigSigned.envelope, image: img('two pages', 4096, bigSigned.pages) });
  add('image: two digest pages, chunk 129 (page 1) differs from the manifest', 'CHUNK_DIGEST_MISMATCH', {
    envelope: otherAt129.envelope, image: img('two pages', 4096, otherAt129.pages),
  });
  add('image: two pages, chunk 129 differs, no digest pages', 'MERKLE_ROOT_MISMATCH', {
    envelope: otherAt129.envelope, image: img('two pages', 4096, []),
  });
  add('image: two digest pages, chunk 3 (page 0) differs, 1000-byte pieces', 'CHUNK_DIGEST_MISMATCH', {
    envelope: otherAt3.envelope, image: img('two pages', 1000, otherAt3.pages),
  });
  add("image: page 0's leaves with page 1's proof", 'DIGEST_PAGE_MISMATCH', {
    envelope: bigSigned.envelope, image: img('two pages', 4096, [{ ...bigSigned.pages[0], proof: bigSigned.pages[1].proof }, bigSigned.pages[1]]),
  });
  add('image: the small image against the two-page manifest', 'CHUNK_DIGEST_MISMATCH', {
    envelope: bigSigned.envelope, image: img('small', 700, bigSigned.pages),
  });

  // ---- run every case on the Node verifier; the intended code must be what it returns ----
  const mismatches: string[] = [];
  const out: VectorFile['cases'] = cases.map(({ expect, ...c }) => {
    const got = runVectorCase(device, c, images);
    const question = OPEN_QUESTIONS[c.name];
    if (question) {
      // The device's current answer is recorded, with the question, until SPEC.md and the code agree.
      if (question.spec !== expect || got.error !== question.device) {
        mismatches.push(`${c.name}: open question out of date (spec ${question.spec}, device now ${got.error}): update OPEN_QUESTIONS`);
      }
      return { ...c, expected: { code: got.code, error: got.error, stage: got.stage }, specQuestion: question.note };
    }
    if (got.error !== expect) mismatches.push(`${c.name}: intended ${expect}, Node verifier returned ${got.error} (${got.stage})`);
    if (got.code !== CODES[expect]) mismatches.push(`${c.name}: code ${got.code} is not ${expect}'s ${CODES[expect]}`);
    return { ...c, expected: { code: got.code, error: got.error, stage: got.stage } };
  });
  for (const name of Object.keys(OPEN_QUESTIONS)) if (!cases.some((c) => c.name === name)) mismatches.push(`OPEN_QUESTIONS names no case: ${name}`);
  const names = new Set(out.map((c) => c.name));
  if (names.size !== out.length) mismatches.push('two cases share a name');
  if (mismatches.length) throw new Error(`the Node verifier disagrees with the intended codes:\n  ${mismatches.join('\n  ')}`);

  return {
    about: "fwseal's own manifest vectors (project data, not an external suite): each case is verifyManifest(envelope, trust, state), "
      + 'then, if it has an image and the manifest passed, the streaming image verifier with the digest pages added before their chunks. '
      + 'expected is the first failure or OK. Generated by tools/gen-vectors.ts from a fixed seed; do not edit by hand.',
    generator: 'tools/gen-vectors.ts',
    seed: SEED,
    images,
    cases: out,
  };
}

/** JSON with object keys sorted at every level (arrays keep their order), two-space indent, final newline. */
export function stableJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return JSON.stringify(sort(value), null, 2) + '\n';
}
