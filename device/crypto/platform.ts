/**
 * The platform primitives the verifier uses, injected through one object (SPEC.md §6.5). A runtime
 * may plug in native or hardware SHA-256 / SHA-512; their output lengths are checked on every call
 * (a wrong-length hook is a programmer error: TypeError). The pure-JS defaults are used otherwise.
 */
import { KEY_ID_BYTES } from '../../shared/limits.js';
import { isTrustableRoleKey, verifyEd25519 } from './ed25519.js';
import { sha256 as defaultSha256, sha512 as defaultSha512 } from './hash.js';

export type Hash = (data: Uint8Array) => Uint8Array;
export type Platform = {
  readonly sha256?: Hash;
  readonly sha512?: Hash;
};

export type DeviceCrypto = {
  readonly sha256: Hash;
  readonly sha512: Hash;
  /** Ed25519 under the policy of SPEC.md §7, with this platform's SHA-512. */
  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean;
  /** A key a trust role may list (canonical, torsion-free: SPEC.md §7). */
  trustableKey(publicKey: Uint8Array): boolean;
  /** SPEC.md §3.1: the first 16 bytes of SHA-256 over the public key. */
  keyId(publicKey: Uint8Array): Uint8Array;
};

/**
 * A platform hook broke its contract: a programmer error, thrown as a TypeError (never turned into
 * a code). Marked so the verifier's catch-all can let it through; a plain TypeError keeps the same
 * constructor in every runtime and after minification.
 */
export function platformError(message: string): TypeError {
  return Object.assign(new TypeError(message), { fwsealPlatform: true });
}

export function isPlatformError(e: unknown): boolean {
  return e instanceof TypeError && (e as { fwsealPlatform?: unknown }).fwsealPlatform === true;
}

function checked(name: string, hook: Hash, length: number): Hash {
  return (data) => {
    const out = hook(data);
    if (!(out instanceof Uint8Array) || out.length !== length) throw platformError(`platform ${name} must return ${length} bytes`);
    return out;
  };
}

export function deviceCrypto(platform: Platform = {}): DeviceCrypto {
  if (platform === null || typeof platform !== 'object') throw platformError('platform must be an object');
  for (const name of ['sha256', 'sha512'] as const) {
    if (platform[name] !== undefined && typeof platform[name] !== 'function') throw platformError(`platform.${name} must be a function`);
  }
  const sha256 = platform.sha256 ? checked('sha256', platform.sha256, 32) : defaultSha256;
  const sha512 = platform.sha512 ? checked('sha512', platform.sha512, 64) : defaultSha512;
  const verify = (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array) =>
    (verifyEd25519 as (s: Uint8Array, m: Uint8Array, p: Uint8Array, h: Hash) => boolean)(signature, message, publicKey, sha512);
  return Object.freeze({
    sha256,
    sha512,
    verify,
    trustableKey: isTrustableRoleKey,
    keyId: (publicKey: Uint8Array) => sha256(publicKey).slice(0, KEY_ID_BYTES),
  });
}
