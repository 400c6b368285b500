/**
 * Adding signatures to an envelope (manifest, trust bundle or revocation list). Signers work on
 * different machines in any order: signatures are kept sorted by key id, so the result does not
 * depend on the order. SPEC.md §14: a signature already there under the signer's key id is checked
 * (H1: a valid one is kept, an invalid one replaced), and the signer's role is checked (H2–H4).
 */

import { keyId, loadTrust, sha256, type VerifiedTrust, verifyEd25519 } from '../device/index.js';
import { bytesEqual, toHex } from '../shared/bytes.js';
import { type CoseSignature, encodeEnvelope, parseEnvelope, sigStructure } from '../shared/cose.js';
import { LIMITS } from '../shared/limits.js';
import { parseManifest } from '../shared/manifest.js';
import { parseRevocationList, parseTrustBundle } from '../shared/trust.js';
import { FwsealError } from './errors.js';
import { OBJECT_NAMES, payloadKind } from './inspect.js';
import { type PublicKeyInfo, type SigningKey } from './keys.js';

export type SignOptions = {
  /** Public keys known from trust bundles: lets sign keep the valid one of a key id listed twice. */
  readonly knownKeys?: readonly Uint8Array[];
};

export type SignResult = {
  readonly envelope: Uint8Array;
  /** A fresh signature by the key was added. */
  readonly added: boolean;
  /** Signatures under the key's id that did not verify with it, removed (H1). */
  readonly removedInvalid: number;
  /** Extra signatures under one key id, removed so that each key id appears once (§3). */
  readonly removedDuplicates: number;
};

const sameKid = (a: Uint8Array) => (s: CoseSignature) => bytesEqual(s.kid, a);

/** Other signers' signatures, one per key id; a repeated id is resolved only with its public key. */
function oneSignaturePerKid(
  signatures: readonly CoseSignature[],
  message: Uint8Array,
  knownKeys: readonly Uint8Array[],
): { kept: CoseSignature[]; dropped: number } {
  const kept: CoseSignature[] = [];
  let dropped = 0;
  for (const sig of signatures) {
    if (kept.some(sameKid(sig.kid))) continue;
    const group = signatures.filter(sameKid(sig.kid));
    if (group.length === 1) {
      kept.push(sig);
      continue;
    }
    const publicKey = knownKeys.find((k) => bytesEqual(keyId(k), sig.kid));
    if (!publicKey)
      throw new FwsealError(
        'DUPLICATE_KEY',
        `the envelope carries ${group.length} signatures by key id ${toHex(sig.kid)}; give --trust so that sign can keep the valid one`,
      );
    kept.push(group.find((s) => verifyEd25519(s.signature, message, publicKey)) ?? sig);
    dropped += group.length - 1;
  }
  return { kept, dropped };
}

export function signEnvelope(envelopeBytes: Uint8Array, key: SigningKey, options: SignOptions = {}): SignResult {
  const parsed = parseEnvelope(envelopeBytes);
  if (!parsed.ok) throw FwsealError.from(parsed, 'cannot sign: not a valid fwseal envelope');
  const env = parsed.envelope;
  const message = sigStructure(env.payload);
  // H1: a signature under our key id counts only if it verifies with our key (the one verifier's Ed25519).
  const mine = env.signatures.filter(sameKid(key.keyId));
  const valid = mine.filter((s) => verifyEd25519(s.signature, message, key.publicKey));
  const unchanged = { envelope: envelopeBytes, added: false, removedInvalid: 0, removedDuplicates: 0 };
  let others: { kept: CoseSignature[]; dropped: number };
  try {
    others = oneSignaturePerKid(
      env.signatures.filter((s) => !bytesEqual(s.kid, key.keyId)),
      message,
      options.knownKeys ?? [],
    );
  } catch (e) {
    // Our one valid signature is there: nothing to rewrite, so another signer's repeats can stay.
    if (mine.length === 1 && valid.length === 1) return unchanged;
    throw e;
  }
  const removedInvalid = mine.length - valid.length;
  const removedDuplicates = Math.max(0, valid.length - 1) + others.dropped;
  if (valid.length > 0 && removedInvalid === 0 && removedDuplicates === 0) return unchanged;
  let own = valid[0];
  if (own === undefined) {
    if (others.kept.length >= LIMITS.maxSignatures) throw new FwsealError('TOO_LARGE', `an envelope carries at most ${LIMITS.maxSignatures} signatures`);
    const signature = key.sign(message);
    // Check our own output with the device verifier before it leaves the machine.
    if (!verifyEd25519(signature, message, key.publicKey)) throw new FwsealError('INTERNAL', 'fresh signature failed to verify');
    own = { kid: key.keyId, signature };
  }
  const envelope = encodeEnvelope({ payload: env.payload, signatures: [...others.kept, own] });
  return { envelope, added: valid.length === 0, removedInvalid, removedDuplicates };
}

/** Sign a fresh payload with several keys at once. */
export function signPayload(payload: Uint8Array, keys: readonly SigningKey[]): Uint8Array {
  let envelope = encodeEnvelope({ payload, signatures: [] });
  for (const key of keys) envelope = signEnvelope(envelope, key).envelope;
  return envelope;
}

export type RoleCheck = {
  /** The signer's role was checked (against --trust, or against the trust bundle being signed). */
  readonly checked: boolean;
  /** What could not be checked, and signatures already there that no device counts (stderr notes). */
  readonly notes: readonly string[];
  /** Every role key of the bundles involved (see SignOptions). */
  readonly knownKeys: readonly Uint8Array[];
};

const hasKid = (kids: readonly Uint8Array[], kid: Uint8Array) => kids.some((k) => bytesEqual(k, kid));

/** The key ids whose signatures count for a trust bundle (H3), or null when that cannot be known. */
function trustBundleSigners(
  payload: Uint8Array,
  trust: VerifiedTrust | null,
): { kids: readonly Uint8Array[] | null; own: readonly Uint8Array[]; keys: readonly Uint8Array[] } {
  const bundle = parseTrustBundle(payload);
  if (!bundle.ok) throw FwsealError.from(bundle, 'cannot sign: trust bundle payload');
  const own = bundle.value.root.keys.map((k) => keyId(k));
  const keys = [...bundle.value.root.keys, ...bundle.value.release.keys];
  // Version 1 replaces nothing: only its own root keys count. Later versions also count the root
  // keys of the bundle they replace, which only --trust names.
  if (!trust) return { kids: bundle.value.version === 1 ? own : null, own, keys };
  if (bytesEqual(trust.digest, sha256(payload))) return { kids: own, own, keys };
  if (trust.bundle.version !== bundle.value.version - 1) {
    throw new FwsealError(
      'USAGE',
      `--trust must be the trust bundle this one replaces (version ${bundle.value.version - 1}) or this bundle itself; it is version ${trust.bundle.version}`,
    );
  }
  return { kids: [...own, ...trust.root.kids], own, keys };
}

/**
 * H2–H4: is `signer` a key of the role that signs this object? Manifest: a release key of `trust`;
 * revocation list: a root key of `trust`; trust bundle: a root key of the bundle itself or, in a
 * rotation, of `trust` = the bundle it replaces. What cannot be checked is a note, not a refusal.
 * Throws KEY_NOT_IN_TRUST (exit 2) before any passphrase is asked for.
 */
export function checkSignerRole(envelopeBytes: Uint8Array, signer: PublicKeyInfo, trustBytes?: Uint8Array): RoleCheck {
  const parsed = parseEnvelope(envelopeBytes);
  if (!parsed.ok) throw FwsealError.from(parsed, 'cannot sign: not a valid fwseal envelope');
  const env = parsed.envelope;
  let trust: VerifiedTrust | null = null;
  if (trustBytes !== undefined) {
    const loaded = loadTrust(trustBytes);
    if (!loaded.ok) throw FwsealError.from(loaded, '--trust');
    trust = loaded.trust;
  }
  const who = `key ${signer.name} (${toHex(signer.keyId)})`;
  const kind = payloadKind(env.payload);
  let counting: readonly Uint8Array[] | null;
  let role: string;
  let knownKeys: readonly Uint8Array[] = trust ? [...trust.root.keys, ...trust.release.keys] : [];
  if (kind === 'manifest' || kind === 'revocation-list') {
    const payload = kind === 'manifest' ? parseManifest(env.payload) : parseRevocationList(env.payload);
    if (!payload.ok) throw FwsealError.from(payload, `cannot sign: ${OBJECT_NAMES[kind]} payload`);
    role = kind === 'manifest' ? 'release key of --trust' : 'root key of --trust';
    counting = trust ? (kind === 'manifest' ? trust.release.kids : trust.root.kids) : null;
  } else if (kind === 'trust-bundle') {
    const t = trustBundleSigners(env.payload, trust);
    role = trust ? 'root key of this trust bundle or of the one it replaces' : 'root key of this trust bundle';
    counting = t.kids;
    knownKeys = [...knownKeys, ...t.keys];
    if (!counting) {
      if (hasKid(t.own, signer.keyId)) return { checked: true, notes: [], knownKeys };
      return {
        checked: false,
        notes: [
          `${who} is not a root key of this trust bundle; it counts only as a root key of the bundle this one replaces (give --trust PREVIOUS.cbor to check)`,
        ],
        knownKeys,
      };
    }
  } else {
    throw new FwsealError('WRONG_KIND', 'cannot sign: the payload is not a manifest, trust bundle or revocation list');
  }
  if (!counting) {
    return {
      checked: false,
      notes: [
        `no --trust given: not checked that ${who} is a ${kind === 'manifest' ? 'release' : 'root'} key (devices ignore signatures by keys outside that role)`,
      ],
      knownKeys,
    };
  }
  if (!hasKid(counting, signer.keyId))
    throw new FwsealError('KEY_NOT_IN_TRUST', `${who} is not a ${role}; a ${OBJECT_NAMES[kind]} counts only those signatures`);
  const notes = env.signatures
    .filter((s) => !hasKid(counting, s.kid))
    .map((s) => `the file carries a signature by ${toHex(s.kid)}, which is not a ${role}: devices ignore it`);
  return { checked: true, notes, knownKeys };
}
