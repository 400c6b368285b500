/** Bulk hashing on the host: node:crypto's one-shot SHA-256 (hardware SHA extensions where present). */
import { createPublicKey, hash, verify as opensslVerify } from 'node:crypto';
import { isAcceptablePublicKey, verifyEd25519 } from '../device/crypto/ed25519.js';
import { type DeviceCrypto, deviceCrypto } from '../device/crypto/platform.js';
import { type Verifier, verifierFrom } from '../device/verifier.js';
import { type Sha256 } from '../shared/merkle.js';

export const nodeSha256: Sha256 = (data) => hash('sha256', data, 'buffer');

/**
 * Leaf hashes of every chunk in `buf` (RFC 9162 leaf: SHA-256(0x00 || chunk)), written into
 * `out` at `outOffset`. One scratch buffer holds the prefix and the chunk, so no per-chunk allocation.
 */
export class LeafHasher {
  private readonly scratch: Buffer;
  constructor(readonly chunkSize: number) {
    this.scratch = Buffer.allocUnsafe(chunkSize + 1);
    this.scratch[0] = 0;
  }
  leaf(chunk: Uint8Array): Buffer {
    this.scratch.set(chunk, 1);
    return hash('sha256', this.scratch.subarray(0, chunk.length + 1), 'buffer');
  }
}

export const nodeSha512 = (data: Uint8Array): Uint8Array => hash('sha512', data, 'buffer');

/** Order L of the prime-order subgroup [RFC 8032 §5.1]. */
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
/** SubjectPublicKeyInfo of an Ed25519 public key: this prefix, then the 32-byte key (RFC 8410 §4). */
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** S of R || S as an integer (little-endian, RFC 8032 §5.1.2). */
function scalarOf(signature: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(signature.subarray(32, 64)).reverse().toString('hex')}`);
}

/**
 * Ed25519 under exactly the policy of SPEC.md §7, with OpenSSL doing the work when it can decide.
 * OpenSSL's check is cofactorless: it computes R' = [S]B - [k]A with k = SHA-512(R || A || M) over
 * the received bytes of R and A and accepts iff the encoding of R' equals the received R. When
 * P1 (lengths), P2 (S < L) and P3 + P4 for A (isAcceptablePublicKey) hold and OpenSSL accepts, the
 * policy accepts too: R is then the encoder's output for R' (so canonical, P3), k is the policy's
 * (P7) and [S]B - [k]A - R is the identity, so its [8] multiple is (P8). In every other case (OpenSSL
 * rejects, errs, or a cheap check fails) the device's own verifier decides, so the verdict is the
 * policy's for every input; test/ed25519-host.test.ts holds the two equal over Wycheproof, CCTV and
 * random signatures. Host only: the device bundle keeps its own verifier (SPEC.md §6.5).
 * `acceptable` is P3 + P4 for A (default: isAcceptablePublicKey); the memo below answers it for a
 * key already found trustable (a trustable role key is acceptable: isTrustableRoleKey decodes it
 * with the same checks first), which saves a square root per signature on a cold start.
 */
export function hostVerifyEd25519(
  signature: Uint8Array,
  message: Uint8Array,
  publicKey: Uint8Array,
  acceptable: (publicKey: Uint8Array) => boolean = isAcceptablePublicKey,
): boolean {
  const fast =
    signature instanceof Uint8Array &&
    signature.length === 64 &&
    message instanceof Uint8Array &&
    publicKey instanceof Uint8Array &&
    publicKey.length === 32 &&
    scalarOf(signature) < L &&
    acceptable(publicKey) &&
    opensslAccepts(signature, message, publicKey);
  return fast || verifyEd25519(signature, message, publicKey, nodeSha512);
}

function opensslAccepts(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
  try {
    const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' });
    return opensslVerify(null, message, key, signature);
  } catch {
    return false; // a key OpenSSL will not load: the device's verifier decides
  }
}

/**
 * The device's primitives with node:crypto hashing, the OpenSSL fast path for Ed25519
 * (hostVerifyEd25519) and a memo of both Ed25519 outcomes: `fwseal verify` loads the trust bundle
 * twice (the verdict, then explainManifestSignatures) and checks each manifest signature twice, and
 * each torsion check of a role key is a pure-JS scalar multiplication (SPEC.md §7). The outcomes
 * are pure functions of the bytes, so the memo changes no verdict.
 */
export function hostCrypto(): DeviceCrypto {
  const c = deviceCrypto({ sha256: nodeSha256, sha512: nodeSha512 });
  return Object.freeze({ ...c, ...memoisedEd25519(c, hostVerifyEd25519) });
}

/** A Map that forgets everything once it holds `max` entries (enough for a memo of a few releases). */
export class BoundedMemo<V> extends Map<string, V> {
  constructor(private readonly max: number) {
    super();
  }
  override set(key: string, value: V): this {
    if (this.size >= this.max) this.clear();
    return super.set(key, value);
  }
}

/** Inputs up to this size (Merkle nodes are 65 bytes) are memo keys themselves: node:crypto's per-call cost is ~2 us, a lookup ~0.5 us. */
const DIGEST_MEMO_SMALL_BYTES = 128;
/** Small inputs the memo keeps before it forgets them all. */
const DIGEST_MEMO_SMALL_ENTRIES = 1 << 16;
/** Inputs from this size go through the fingerprinted part of the memo (chunk leaves). */
const DIGEST_MEMO_MIN_BYTES = 1024;
/** Input bytes the digest memo keeps before it forgets everything (a few releases of chunks). */
const DIGEST_MEMO_MAX_BYTES = 64 << 20;
/** Memo entries sharing one fingerprint that are compared before hashing anyway. */
const DIGEST_MEMO_BUCKET = 4;

/**
 * SHA-256 with an exact memo shared by many simulated devices: an input of DIGEST_MEMO_MIN_BYTES or
 * more whose bytes equal (byte for byte, after a sampled fingerprint) an input hashed before gets
 * that digest without hashing again; anything else is hashed. The result is always SHA-256(data):
 * a chunk that differs in one bit misses the memo and is hashed like any other.
 */
export function memoSha256(maxBytes = DIGEST_MEMO_MAX_BYTES): Sha256 & { readonly stats: { hits: number; misses: number } } {
  const memo = new Map<number, { input: Buffer; digest: Buffer }[]>();
  const small = new BoundedMemo<Buffer>(DIGEST_MEMO_SMALL_ENTRIES);
  let held = 0;
  const stats = { hits: 0, misses: 0 };
  const fingerprint = (d: Uint8Array): number => {
    const n = d.length;
    let h = n | 0;
    for (let k = 0; k < 8; k++) {
      const o = Math.floor(((n - 4) * k) / 7);
      h = Math.imul(h ^ (d[o]! | (d[o + 1]! << 8) | (d[o + 2]! << 16) | (d[o + 3]! << 24)), 0x9e3779b1);
      h ^= h >>> 15;
    }
    return h;
  };
  const sha = (data: Uint8Array): Uint8Array => {
    const view = Buffer.from(data.buffer, data.byteOffset, data.length);
    if (data.length <= DIGEST_MEMO_SMALL_BYTES) {
      const k = (view as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(0, view.length); // toString('latin1') minus its argument checks
      const known = small.get(k);
      if (known) {
        stats.hits++;
        return Buffer.from(known);
      }
      stats.misses++;
      const digest = hash('sha256', data, 'buffer');
      small.set(k, Buffer.from(digest));
      return digest;
    }
    if (data.length < DIGEST_MEMO_MIN_BYTES) return hash('sha256', data, 'buffer');
    const key = fingerprint(data);
    const bucket = memo.get(key);
    if (bucket) {
      for (const e of bucket) {
        if (e.input.equals(view)) {
          stats.hits++;
          return Buffer.from(e.digest);
        }
      }
    }
    stats.misses++;
    const digest = hash('sha256', data, 'buffer');
    if (held + data.length > maxBytes) {
      memo.clear();
      held = 0;
    }
    if (data.length <= maxBytes && (bucket?.length ?? 0) < DIGEST_MEMO_BUCKET) {
      const entry = { input: Buffer.from(view), digest: Buffer.from(digest) };
      const b = memo.get(key);
      if (b) b.push(entry);
      else memo.set(key, [entry]);
      held += data.length;
    }
    return digest;
  };
  return Object.assign(sha, { stats });
}

/** A memo of a pure boolean outcome, keyed by the bytes it depends on (or their SHA-256). */
function memoised<A extends unknown[]>(memo: BoundedMemo<boolean>, key: (...args: A) => Uint8Array, f: (...args: A) => boolean): (...args: A) => boolean {
  return (...args) => {
    const k = Buffer.from(key(...args)).toString('latin1');
    let v = memo.get(k);
    if (v === undefined) {
      v = f(...args);
      memo.set(k, v);
    }
    return v;
  };
}

const isBytes = (x: unknown, length?: number): x is Uint8Array => x instanceof Uint8Array && (length === undefined || x.length === length);

/**
 * Ed25519 verification and role-key checks memoised by the bytes they depend on. Only inputs of the
 * exact lengths go through the memo: the key concatenates signature, public key and message, and
 * without fixed lengths a 63-byte signature with a 33-byte key would share the key of a valid
 * signature and get its `true` (P1 refuses it). Anything else is passed through unmemoised.
 */
function memoisedEd25519(c: DeviceCrypto, verify: typeof hostVerifyEd25519): Pick<DeviceCrypto, 'verify' | 'trustableKey'> {
  const memo = new BoundedMemo<boolean>(4096);
  // Keyed by SHA-256 over everything the outcome depends on; the 1-byte tag keeps the two apart.
  const trustableMemo = memoised(memo, (p: Uint8Array) => Buffer.concat([Buffer.of(2), p]), c.trustableKey);
  const trustedAcceptable = (p: Uint8Array) => memo.get(Buffer.concat([Buffer.of(2), p]).toString('latin1')) === true || isAcceptablePublicKey(p);
  const verifyMemo = memoised(
    memo,
    (s: Uint8Array, m: Uint8Array, p: Uint8Array) => c.sha256(Buffer.concat([Buffer.of(1), s, p, m])),
    (s: Uint8Array, m: Uint8Array, p: Uint8Array) => verify(s, m, p, trustedAcceptable),
  );
  return {
    verify: (s, m, p) => (isBytes(s, 64) && isBytes(m) && isBytes(p, 32) ? verifyMemo(s, m, p) : verify(s, m, p)),
    trustableKey: (p) => (isBytes(p, 32) ? trustableMemo(p) : c.trustableKey(p)),
  };
}

/**
 * The verifier for many simulated devices in one process (fleet-sim, benchmarks): node:crypto
 * hashing, OpenSSL's Ed25519 where it decides as the policy does, a memo of Ed25519 and role-key
 * outcomes (N devices checking one release cost one signature check instead of N) and an exact
 * digest memo (N devices hashing the same chunk of the same release cost one hash; every other
 * device's chunk is still compared with it byte for byte). Real devices each do their own: the memo
 * lives here, on the host, around the device's own primitives (`verifierFrom`), and the device
 * bundle has no way to take one (SPEC.md §6.5). Verification logic, policy and outcomes are unchanged.
 */
export function fleetVerifier(): Verifier {
  const c = deviceCrypto({ sha256: memoSha256(), sha512: nodeSha512 });
  return verifierFrom(Object.freeze({ ...c, ...memoisedEd25519(c, hostVerifyEd25519) }));
}

/**
 * The host's one verifier (the device verifier over hostCrypto): `fwseal verify`, `serve`'s root of
 * trust, ceremonies and the log monitor share it and its memo, so a trust bundle's role keys are
 * checked for torsion once per process. Verdicts are the device's (hostVerifyEd25519). Last in the file: it uses
 * the classes above at load.
 */
export const hostVerifier: Verifier = verifierFrom(hostCrypto());
