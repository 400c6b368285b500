/**
 * Offline ceremonies (SPEC.md §15.4): add signatures made elsewhere (detached signature files, or
 * raw signatures over the bytes `sign --print-tbs` wrote) and merge copies signed in parallel.
 * Every signature is checked against the payload and its key before it is added; one bad input
 * refuses the whole command, so nothing is written.
 */
import { keyId, verifyEd25519 } from '../device/index.js';
import { bytesEqual, toHex } from '../shared/bytes.js';
import { type CoseSignature, type Envelope, encodeEnvelope, parseEnvelope, sigStructure } from '../shared/cose.js';
import { LIMITS } from '../shared/limits.js';
import { parseTrustBundle } from '../shared/trust.js';
import { FwsealError } from './errors.js';
import { payloadKind } from './inspect.js';
import { type PublicKeyInfo } from './keys.js';
import { checkSignerRole, signEnvelope } from './sign.js';

export type Incoming = { readonly what: string; readonly signature: CoseSignature };
export type AttachResult = {
  readonly envelope: Uint8Array;
  readonly added: readonly string[];
  readonly alreadyThere: readonly string[];
  readonly notes: readonly string[];
};

function envelopeOf(bytes: Uint8Array, what: string): Envelope {
  const parsed = parseEnvelope(bytes);
  if (!parsed.ok) throw FwsealError.from(parsed, `${what}: not a valid fwseal envelope`);
  return parsed.envelope;
}

/**
 * Public keys that can check signatures on `payload`: the `--pub` files, the keys of `trust`
 * (both roles: the role check is separate), and a trust bundle's own keys.
 */
export function keysFor(
  payload: Uint8Array,
  pubs: readonly PublicKeyInfo[],
  trust: { root: { keys: readonly Uint8Array[] }; release: { keys: readonly Uint8Array[] } } | null,
): PublicKeyInfo[] {
  const raw: Uint8Array[] = [];
  if (trust) raw.push(...trust.root.keys, ...trust.release.keys);
  if (payloadKind(payload) === 'trust-bundle') {
    const own = parseTrustBundle(payload);
    if (own.ok) raw.push(...own.value.root.keys, ...own.value.release.keys);
  }
  const out = [...pubs];
  for (const k of raw) if (!out.some((o) => bytesEqual(o.publicKey, k))) out.push({ name: toHex(keyId(k)), publicKey: k, keyId: keyId(k) });
  return out;
}

function keyOf(kid: Uint8Array, keys: readonly PublicKeyInfo[]): PublicKeyInfo | undefined {
  return keys.find((k) => bytesEqual(k.keyId, kid));
}

/** §15.4 attach: each incoming signature must verify with a known key of its kid and pass the role check (H2–H4). */
export function attachSignatures(bytes: Uint8Array, incoming: readonly Incoming[], keys: readonly PublicKeyInfo[], trustBytes?: Uint8Array): AttachResult {
  const env = envelopeOf(bytes, 'FILE');
  const message = sigStructure(env.payload);
  let current = bytes;
  const added: string[] = [];
  const alreadyThere: string[] = [];
  const notes: string[] = [];
  for (const inc of incoming) {
    const key = keyOf(inc.signature.kid, keys);
    if (!key) throw new FwsealError('USAGE', `${inc.what}: no public key known for key id ${toHex(inc.signature.kid)}; give --pub KEY.pub or --trust`);
    if (!verifyEd25519(inc.signature.signature, message, key.publicKey))
      throw new FwsealError('BAD_SIGNATURE', `${inc.what}: the signature by ${toHex(key.keyId)} does not verify over this payload`);
    const role = checkSignerRole(current, key, trustBytes);
    notes.push(...role.notes);
    const preSigned = { ...key, sign: () => inc.signature.signature };
    const r = signEnvelope(current, preSigned, { knownKeys: [...role.knownKeys, ...keys.map((k) => k.publicKey)] });
    (r.added ? added : alreadyThere).push(toHex(key.keyId));
    current = r.envelope;
  }
  return { envelope: current, added, alreadyThere, notes: [...new Set(notes)] };
}

export type MergeResult = { readonly envelope: Uint8Array; readonly kept: number; readonly droppedInvalid: number; readonly unchecked: readonly string[] };

/**
 * §15.4 merge: copies of one object signed in parallel. Their payloads must be identical; the result
 * carries the union of their signatures, one per key id: a key id whose key is known keeps a valid
 * signature (invalid ones are dropped), an unknown key id is kept only when every copy agrees.
 */
export function mergeCopies(copies: readonly { what: string; bytes: Uint8Array }[], keys: readonly PublicKeyInfo[]): MergeResult {
  const envs = copies.map((c) => envelopeOf(c.bytes, c.what));
  const payload = envs[0].payload;
  envs.forEach((e, i) => {
    if (!bytesEqual(e.payload, payload)) throw new FwsealError('PAYLOAD_MISMATCH', `${copies[i].what} carries another payload than ${copies[0].what}`);
  });
  const message = sigStructure(payload);
  const byKid = new Map<string, CoseSignature[]>();
  for (const s of envs.flatMap((e) => e.signatures)) byKid.set(toHex(s.kid), [...(byKid.get(toHex(s.kid)) ?? []), s]);
  const kept: CoseSignature[] = [];
  const unchecked: string[] = [];
  let droppedInvalid = 0;
  for (const [kid, group] of byKid) {
    const key = keyOf(group[0].kid, keys);
    if (key) {
      const valid = group.find((s) => verifyEd25519(s.signature, message, key.publicKey));
      droppedInvalid += group.filter((s) => !verifyEd25519(s.signature, message, key.publicKey)).length;
      if (valid) kept.push(valid);
    } else {
      if (group.some((s) => !bytesEqual(s.signature, group[0].signature)))
        throw new FwsealError(
          'DUPLICATE_KEY',
          `copies carry different signatures by key id ${kid}; give --pub or --trust so that merge can keep the valid one`,
        );
      kept.push(group[0]);
      unchecked.push(kid);
    }
  }
  if (kept.length > LIMITS.maxSignatures) throw new FwsealError('TOO_LARGE', `an envelope carries at most ${LIMITS.maxSignatures} signatures`);
  return { envelope: encodeEnvelope({ payload, signatures: kept }), kept: kept.length, droppedInvalid, unchecked };
}
