/**
 * Every entry point validates its arguments and answers a code (SPEC.md §6.6): look-alike trust
 * bundles and revocation lists are refused, never trusted; manifests of the wrong shape and wrong
 * types get codes, never exceptions. Run on the pure-JS verifier and on the device bundle in QuickJS.
 * Also the manifest `created` range (§4.1).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier, type VerifiedTrust, type Verifier } from '../device/index.js';
import { type QuickJSVerifier, quickjsVerifier } from '../hil/quickjs-verifier.js';
import { createdTime } from '../host/pack.js';
import { CODES, type Result } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { encodeManifest, parseManifest } from '../shared/manifest.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust, standardWorld } from './support/fixtures.js';

const w = standardWorld();
const X = detKey('X-forger');
const byX = makeManifestEnvelope(w.manifest, [X]);
const rl = makeRevocations({ version: 1, keyIds: [w.R3.keyId], signers: [w.A, w.B] });
const trust2 = makeTrust({ root: [w.A, w.B, w.C], rootThreshold: 2, release: [X], releaseThreshold: 1, signers: [w.A, w.B], version: 2 });

function must<T extends object>(r: Result<T>): T {
  if (!r.ok) throw new Error(r.error);
  return r;
}

describe.each(['pure JS', 'QuickJS bundle'] as const)('verifier arguments with the %s verifier', (kind) => {
  let v: Verifier;
  let qjs: QuickJSVerifier | null = null;
  let trust: VerifiedTrust;
  beforeAll(async () => {
    v = kind === 'pure JS' ? createVerifier() : (qjs = await quickjsVerifier());
    trust = must(v.loadTrust(w.trust)).trust;
  });
  afterAll(() => qjs?.dispose());

  /** Look-alikes of a verified trust bundle: copies, a JSON rebuild, one that lets X sign alone. */
  const forgeries = (): unknown[] => {
    const copy = { ...trust } as Record<string, unknown>;
    delete copy.$obj; // the QuickJS proxy's handle: a copy without it is a plain object in the VM
    const json = JSON.parse(JSON.stringify(copy));
    const xKid = v.keyId(X.publicKey);
    return [copy, json, { ...copy, release: { threshold: 1, keys: [X.publicKey], kids: [xKid] } }, null, 'trust', 42];
  };

  it('verifyManifestWithTrust refuses a trust object it did not produce (INVALID_ARGUMENT)', () => {
    expect(v.verifyManifestWithTrust(w.envelope, trust, w.state).code).toBe(CODES.OK);
    for (const f of forgeries()) expect(v.verifyManifestWithTrust(byX, f as VerifiedTrust, w.state).code).toBe(CODES.INVALID_ARGUMENT);
  });

  it('verifyTrustUpdate and verifyRevocations refuse look-alike trust objects and stored lists', () => {
    for (const f of forgeries()) {
      expect(v.verifyTrustUpdate(trust2, f as VerifiedTrust).code).toBe(CODES.INVALID_ARGUMENT);
      expect(v.verifyRevocations(rl, f as VerifiedTrust).code).toBe(CODES.INVALID_ARGUMENT);
    }
    const stored = must(v.verifyRevocations(rl, trust)).revocations;
    const storedCopy = JSON.parse(JSON.stringify({ list: stored.list, digest: stored.digest }));
    for (const bad of [[w.R3.keyId], storedCopy, {}, 'list']) {
      expect(v.verifyTrustUpdate(trust2, trust, bad as never).code).toBe(CODES.INVALID_ARGUMENT);
      expect(v.verifyRevocations(rl, trust, 0, bad as never).code).toBe(CODES.INVALID_ARGUMENT);
    }
    expect(v.verifyTrustUpdate(trust2, trust, stored).code).toBe(CODES.OK);
  });

  it('bytes arguments of the wrong type are WRONG_TYPE', () => {
    for (const bad of ['x', null, undefined, 7, [1, 2], {}]) {
      expect(v.loadTrust(bad as never).code).toBe(CODES.WRONG_TYPE);
      expect(v.verifyRevocations(bad as never, trust).code).toBe(CODES.WRONG_TYPE);
      expect(v.verifyTrustUpdate(bad as never, trust).code).toBe(CODES.WRONG_TYPE);
      expect(v.verifyManifest(bad as never, w.trust, w.state).code).toBe(CODES.WRONG_TYPE);
      expect(v.verifyManifest(w.envelope, bad as never, w.state).code).toBe(CODES.WRONG_TYPE);
    }
  });

  it('a manifest of the wrong shape is INVALID_ARGUMENT for the image checks, never a throw', () => {
    const m = w.manifest;
    const shapes = [
      {},
      null,
      'm',
      { ...m, chunkSize: 2 ** 40 },
      { ...m, chunkSize: 1000 },
      { ...m, imageSize: -1 },
      { ...m, imageSize: 2 ** 53 },
      { ...m, merkleRoot: new Uint8Array(31) },
      { ...m, merkleRoot: 'root' },
    ];
    for (const bad of shapes) {
      const iv = v.imageVerifier(bad as never);
      expect(iv.update(new Uint8Array(10)).code).toBe(CODES.INVALID_ARGUMENT);
      expect(iv.addDigestPage(0, new Uint8Array(32), new Uint8Array(0)).code).toBe(CODES.INVALID_ARGUMENT);
      expect(iv.finish().code).toBe(CODES.INVALID_ARGUMENT);
      expect(v.verifyChunk(bad as never, 0, new Uint8Array(512), new Uint8Array(0)).code).toBe(CODES.INVALID_ARGUMENT);
      expect(v.verifyDigestPage(bad as never, 0, new Uint8Array(32), new Uint8Array(0)).code).toBe(CODES.INVALID_ARGUMENT);
    }
    const iv = v.imageVerifier(m);
    expect(iv.update(w.image).code).toBe(CODES.OK);
    expect(iv.finish().code).toBe(CODES.OK);
  });

  it('byte-returning primitives throw a TypeError for anything but bytes; verifyEd25519 answers false', () => {
    for (const bad of ['x', null, 5, {}]) {
      expect(() => v.sha256(bad as never)).toThrow();
      expect(() => v.sha512(bad as never)).toThrow();
      expect(() => v.keyId(bad as never)).toThrow();
      expect(v.verifyEd25519(bad as never, new Uint8Array(3), w.R1.publicKey)).toBe(false);
    }
  });
});

describe('arguments whose use throws (pure JS: getters, proxies)', () => {
  const v = createVerifier();
  const trap = new Proxy(
    {},
    {
      get() {
        throw new Error('trap');
      },
    },
  );
  it('answer a code, never an exception', () => {
    const trust = must(v.loadTrust(w.trust)).trust;
    expect(v.verifyManifestWithTrust(w.envelope, trust, trap as never).ok).toBe(false);
    expect(v.verifyManifest(w.envelope, w.trust, trap as never).ok).toBe(false);
    expect(v.verifyChunk(trap as never, 0, new Uint8Array(1), new Uint8Array(0)).code).toBe(CODES.INVALID_ARGUMENT);
    expect(v.imageVerifier(trap as never).finish().code).toBe(CODES.INVALID_ARGUMENT);
    expect(v.verifyRevocations(rl, trust, trap as never).code).toBe(CODES.INVALID_STATE);
  });
});

describe('manifest created time (SPEC.md §4.1)', () => {
  const image = detBytes(1000, 'created');
  it('accepts 0 .. maxCreated, refuses one second more (BAD_VALUE)', () => {
    for (const created of [0, LIMITS.maxCreated]) expect(parseManifest(encodeManifest(makeManifest(image, { created }))).ok).toBe(true);
    expect(() => encodeManifest(makeManifest(image, { created: LIMITS.maxCreated + 1 }))).toThrow(RangeError);
    expect(() => encodeManifest(makeManifest(image, { created: Number.MAX_SAFE_INTEGER - 1 }))).toThrow(RangeError);
  });

  it('pack refuses a SOURCE_DATE_EPOCH beyond maxCreated (USAGE)', () => {
    const saved = process.env.SOURCE_DATE_EPOCH;
    try {
      process.env.SOURCE_DATE_EPOCH = String(LIMITS.maxCreated);
      expect(createdTime()).toBe(LIMITS.maxCreated);
      process.env.SOURCE_DATE_EPOCH = String(LIMITS.maxCreated + 1);
      expect(() => createdTime()).toThrow(expect.objectContaining({ codeName: 'USAGE' }));
    } finally {
      if (saved === undefined) delete process.env.SOURCE_DATE_EPOCH;
      else process.env.SOURCE_DATE_EPOCH = saved;
    }
  });
});
