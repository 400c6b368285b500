/**
 * The vectors' world: keys from labels under the fixed seed, the trust bundle, the small image and
 * its manifest, the good envelope and device state, and `add`, which records a case with the code
 * intended for it. The case groups (signature-cases.ts, encoding-cases.ts, image-cases.ts) bend it.
 */

import { type SigningKey } from '../../../host/keys.js';
import { type CodeName } from '../../../shared/codes.js';
import { encodeManifest, type Manifest } from '../../../shared/manifest.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust, sha256, signWith } from '../fixtures.js';
import { type VectorCase } from '../quickjs-harness.js';
import { cbor, hex, manifestEntries, rawEnvelope, signatureBy } from './raw-cbor.js';

export const SEED = 'fwseal manifest vectors v1';

export type Expect = Exclude<
  CodeName,
  'USAGE' | 'IO' | 'KEY_FILE_PERMISSIONS' | 'WRONG_PASSPHRASE' | 'KEY_FORMAT' | 'NO_PASSPHRASE' | 'KEY_NOT_IN_TRUST' | 'INTERNAL'
>;
export type Draft = VectorCase & { readonly expect: Expect };

/** The shared fixtures of every case group, and the list that `add` fills. */
export function vectorWorld() {
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
    chunkSize: CHUNK,
    deviceClass: 'acme-gw',
    version: '2.1.0',
    securityCounter: 7,
    created: 1764000000,
  });
  const payload = encodeManifest(manifest);
  const good = makeManifestEnvelope(manifest, [R1, R2]);
  const state = { deviceClass: 'acme-gw', counter: 7 };

  // The raw writers must agree with the real encoders before they are used to bend them.
  if (hex(cbor.map(manifestEntries(manifest))) !== hex(payload)) throw new Error('raw manifest encoding differs from encodeManifest');
  const rawGood = rawEnvelope(
    payload,
    [signatureBy(R1, payload), signatureBy(R2, payload)].sort((a, b) => Buffer.compare(a.kid, b.kid)),
  );
  if (hex(rawGood) !== hex(good)) throw new Error('raw envelope encoding differs from encodeEnvelope');

  const signedPayload = (p: Uint8Array, signers: SigningKey[] = [R1, R2]): Uint8Array => signWith(p, signers);
  const manifestWith = (fields: Partial<Manifest>, signers: SigningKey[] = [R1, R2]) => makeManifestEnvelope({ ...manifest, ...fields }, signers);
  const rl = (o: { version?: number; keyIds?: Uint8Array[]; manifests?: Uint8Array[]; signers?: SigningKey[] }) =>
    makeRevocations({ version: o.version ?? 2, keyIds: o.keyIds ?? [], manifests: o.manifests ?? [], signers: o.signers ?? [A, B] });
  const rlUnrelated = rl({ keyIds: [X.keyId] });
  const manifestDigest = sha256(payload);

  const cases: Draft[] = [];
  const add = (
    name: string,
    expect: Expect,
    o: { envelope?: Uint8Array; trust?: Uint8Array; state?: Partial<VectorCase['state']> & { revocations?: string }; image?: VectorCase['image'] } = {},
  ): void => {
    cases.push({
      name,
      expect,
      envelope: hex(o.envelope ?? good),
      trust: hex(o.trust ?? trust),
      state: { ...state, ...o.state },
      ...(o.image ? { image: o.image } : {}),
    });
  };

  return {
    A,
    B,
    C,
    R1,
    R2,
    R3,
    X,
    TRUST_VERSION,
    trustSpec,
    trust,
    CHUNK,
    small,
    manifest,
    payload,
    good,
    signedPayload,
    manifestWith,
    rl,
    rlUnrelated,
    manifestDigest,
    cases,
    add,
  };
}

export type VectorWorld = ReturnType<typeof vectorWorld>;
