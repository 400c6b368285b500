/**
 * Adding signatures to an envelope (manifest, trust bundle or revocation list). Signers work on
 * different machines in any order: signatures are kept sorted by key id, so the result does not
 * depend on the order, and signing again with a key already present changes nothing.
 */
import { bytesEqual } from '../shared/bytes.js';
import { encodeEnvelope, parseEnvelope, sigStructure } from '../shared/cose.js';
import { LIMITS } from '../shared/limits.js';
import { verifyEd25519 } from '../device/index.js';
import { FwsealError } from './errors.js';
import { type SigningKey } from './keys.js';

export type SignResult = { readonly envelope: Uint8Array; readonly added: boolean };

export function signEnvelope(envelopeBytes: Uint8Array, key: SigningKey): SignResult {
  const parsed = parseEnvelope(envelopeBytes);
  if (!parsed.ok) throw FwsealError.from(parsed, 'cannot sign: not a valid fwseal envelope');
  const env = parsed.envelope;
  if (env.signatures.some((s) => bytesEqual(s.kid, key.keyId))) return { envelope: envelopeBytes, added: false };
  if (env.signatures.length >= LIMITS.maxSignatures) throw new FwsealError('TOO_LARGE', `an envelope carries at most ${LIMITS.maxSignatures} signatures`);
  const message = sigStructure(env.payload);
  const signature = key.sign(message);
  // Check our own output with the device verifier before it leaves the machine.
  if (!verifyEd25519(signature, message, key.publicKey)) throw new FwsealError('INTERNAL', 'fresh signature failed to verify');
  const envelope = encodeEnvelope({ payload: env.payload, signatures: [...env.signatures, { kid: key.keyId, signature }] });
  return { envelope, added: true };
}

/** Sign a fresh payload with several keys at once. */
export function signPayload(payload: Uint8Array, keys: readonly SigningKey[]): Uint8Array {
  let envelope = encodeEnvelope({ payload, signatures: [] });
  for (const key of keys) envelope = signEnvelope(envelope, key).envelope;
  return envelope;
}
