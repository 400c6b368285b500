/**
 * Key references (SPEC.md §15.1): where `--key` and `--sign` take a key, they take a key file
 * (NAME.key), a PKCS#11 URI (`pkcs11:...`, §15.2) or an external signer (`exec:CMD ARGS`, §15.3).
 * Every backend ends in the same check: its signature must verify with the key's public key
 * before anything is written (BAD_SIGNATURE).
 */
import { verifyEd25519 } from '../../device/index.js';
import { bytesEqual, toHex } from '../../shared/bytes.js';
import { FwsealError } from '../errors.js';
import { loadPublicKey, loadSigningKey, type PublicKeyInfo, type SigningKey } from '../keys.js';
import { execSigner, parseExecCommand } from './exec.js';
import { openPkcs11Signer, pkcs11PublicKey } from './pkcs11.js';

export type KeyRef =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'pkcs11'; readonly uri: string; readonly pubPath?: string }
  | { readonly kind: 'exec'; readonly argv: readonly string[]; readonly pubPath: string };

/**
 * `text` as a key reference; `pubPath` is the public key file an external signer needs (and a
 * cross-check for a token key). The URI forms are recognised by their scheme, so a key file must
 * not be named `pkcs11:...` or `exec:...` (write ./pkcs11:... for such a file).
 */
export function parseKeyRef(text: string, pubPath?: string): KeyRef {
  if (text.startsWith('pkcs11:')) return { kind: 'pkcs11', uri: text, ...(pubPath !== undefined ? { pubPath } : {}) };
  if (text.startsWith('exec:')) {
    if (pubPath === undefined) throw new FwsealError('USAGE', `an external signer (${text.split(' ')[0]}...) needs the public key file: --pub KEY.pub`);
    return { kind: 'exec', argv: parseExecCommand(text.slice('exec:'.length)), pubPath };
  }
  if (pubPath !== undefined) throw new FwsealError('USAGE', '--pub goes with an exec: or pkcs11: key, not with a key file');
  return { kind: 'file', path: text };
}

/**
 * Key references for a repeated flag (`--sign A --sign exec:... --sign pkcs11:...`): each exec:
 * reference takes the next `--pub` file in order, pkcs11: references take none (their public key is
 * read from the token), so `pubs` must be exactly as many as the exec: references.
 */
export function parseKeyRefs(texts: readonly string[], pubs: readonly string[], pubFlag = '--pub'): KeyRef[] {
  const execs = texts.filter((t) => t.startsWith('exec:')).length;
  if (pubs.length !== execs) throw new FwsealError('USAGE', `${execs} exec: signer(s) need ${execs} ${pubFlag} file(s) in the same order; got ${pubs.length}`);
  let next = 0;
  return texts.map((t) => (t.startsWith('exec:') ? parseKeyRef(t, pubs[next++]) : parseKeyRef(t)));
}

/** A short name for messages and the audit trail: never a PIN or a secret. */
export function describeKeyRef(ref: KeyRef): string {
  if (ref.kind === 'file') return ref.path;
  if (ref.kind === 'exec') return `exec:${ref.argv[0] ?? ''}`;
  return ref.uri.replace(/[?;]pin-[a-z]+=[^;&]*/g, '');
}

/** The public key a reference signs with, without a passphrase, PIN or signer run (role checks come first, §14 H2). */
export function publicKeyOf(ref: KeyRef): PublicKeyInfo {
  if (ref.kind === 'file') return loadPublicKey(ref.path);
  if (ref.kind === 'exec') return loadPublicKey(ref.pubPath);
  const fromToken = pkcs11PublicKey(ref.uri);
  if (ref.pubPath !== undefined) {
    const claimed = loadPublicKey(ref.pubPath);
    if (!bytesEqual(claimed.publicKey, fromToken.publicKey))
      throw new FwsealError('KEY_FORMAT', `${ref.pubPath} (${toHex(claimed.keyId)}) is not the token's key ${toHex(fromToken.keyId)}`);
    return claimed;
  }
  return fromToken;
}

/**
 * A signer for `ref` whose public key must be `expected` (what publicKeyOf returned): asks for the
 * passphrase or PIN, and checks every signature it makes before returning it (§15.1).
 */
export function openSigner(ref: KeyRef, expected: PublicKeyInfo): SigningKey {
  const inner: SigningKey = ref.kind === 'file' ? loadSigningKey(ref.path) : ref.kind === 'exec' ? execSigner(ref.argv, expected) : openPkcs11Signer(ref.uri);
  if (!bytesEqual(inner.publicKey, expected.publicKey)) throw new FwsealError('IO', `${describeKeyRef(ref)} changed while it was read`);
  return Object.freeze({
    name: expected.name,
    publicKey: expected.publicKey,
    keyId: expected.keyId,
    sign(message: Uint8Array): Uint8Array {
      const signature = inner.sign(message);
      if (!(signature instanceof Uint8Array) || signature.length !== 64 || !verifyEd25519(signature, message, expected.publicKey))
        throw new FwsealError('BAD_SIGNATURE', `${describeKeyRef(ref)} returned a signature that does not verify with ${toHex(expected.keyId)}`);
      return signature;
    },
  });
}

/** Resolve and open several references (trust init, revoke): every public key first, then the secrets. */
export function openSigners(refs: readonly KeyRef[]): SigningKey[] {
  const publics = refs.map(publicKeyOf);
  return refs.map((r, i) => openSigner(r, publics[i]));
}
