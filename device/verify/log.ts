/**
 * Transparency log proof of a manifest (SPEC.md §16.8 steps L1–L7): the manifest envelope is an
 * entry of the log named by the trust bundle's log policy, under a checkpoint the log key signed
 * (C2SP signed-note / tlog-checkpoint) and K listed witnesses cosigned (C2SP tlog-cosignature), and
 * that checkpoint extends the one the device stored (RFC 9162 §2.1.4). The Merkle work is
 * shared/merkle.ts, the same code as the image's digest pages.
 */
import { concatBytes } from '../../shared/bytes.js';
import { fail, ok, type Result } from '../../shared/codes.js';
import { type Cosignature, parseLogProof, WITNESS_KEY_ID_BYTES } from '../../shared/log-proof.js';
import { constantTimeEqual, leafHash, rootFromInclusionProof, verifyConsistency } from '../../shared/merkle.js';
import { type DeviceCrypto } from '../crypto/platform.js';
import { isIssued, type VerifiedTrust } from './trust.js';

/** A checkpoint the device keeps: tree size and root hash (state record keys 17, 18). */
export type LogCheckpoint = { readonly size: number; readonly root: Uint8Array };
export type LogVerdict = { readonly checkpoint: LogCheckpoint; readonly advanced: boolean };

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
/** Bytes of a text the policy keeps to printable ASCII (SPEC.md §4.2): no UTF-8 encoder on the device. */
const ascii = (s: string) => Uint8Array.from(s, (ch) => ch.charCodeAt(0));

/** Standard base64 with padding (RFC 4648 §4), for the root line of the checkpoint text. */
function base64(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 3) {
    const n = (b[i] << 16) | ((b[i + 1] ?? 0) << 8) | (b[i + 2] ?? 0);
    s += B64[n >> 18] + B64[(n >> 12) & 63] + (i + 1 < b.length ? B64[(n >> 6) & 63] : '=') + (i + 2 < b.length ? B64[n & 63] : '=');
  }
  return s;
}

function isCheckpoint(x: unknown): x is LogCheckpoint {
  const c = x as LogCheckpoint;
  return typeof c === 'object' && c !== null && Number.isSafeInteger(c.size) && c.size > 0 && c.root instanceof Uint8Array && c.root.length === 32;
}

/**
 * L1–L7: is `envelope` in the log `trust`'s policy names, consistent with `stored` (the checkpoint
 * the device accepted last)? `advanced`: the proof's checkpoint is newer, the caller stores it.
 */
export function verifyLogProof(c: DeviceCrypto, envelope: Uint8Array, proof: Uint8Array, trust: VerifiedTrust, stored?: LogCheckpoint): Result<LogVerdict> {
  // L1: the arguments are what the API takes.
  if (!isIssued(trust)) return fail('INVALID_ARGUMENT', 'trust must come from loadTrust or verifyTrustUpdate');
  if (stored !== undefined && !isCheckpoint(stored)) return fail('INVALID_STATE', 'stored checkpoint');
  if (!(envelope instanceof Uint8Array) || !(proof instanceof Uint8Array)) return fail('WRONG_TYPE', 'envelope and proof must be bytes');
  // L2: without a log policy there is nothing to check; the device's checkpoint stays as it is.
  const policy = trust.bundle.log;
  if (!policy) return ok({ checkpoint: stored ?? { size: 0, root: new Uint8Array(0) }, advanced: false });
  // L3: the attachment is a well-formed log proof.
  const parsed = parseLogProof(proof);
  if (!parsed.ok) return parsed;
  const p = parsed.value;
  // L4: the log key signed the checkpoint text, rebuilt here with the policy's origin.
  const text = `${policy.origin}\n${p.size}\n${base64(p.root)}\n`;
  if (!c.verify(p.signature, ascii(text), policy.logKey)) return fail('LOG_SIGNATURE_INVALID', 'log signature');
  // L5: K distinct listed witnesses cosigned that text (key ID: SHA-256(name || 0x0A || 0x04 || key)[:4]).
  let cosigned = 0;
  for (const w of policy.witnesses) {
    if (cosigned >= policy.witnessThreshold) break; // enough: spare the device the other Ed25519 checks
    const id = c.sha256(concatBytes(ascii(`${w.name}\n\x04`), w.key)).subarray(0, WITNESS_KEY_ID_BYTES);
    const signed = (s: Cosignature) => constantTimeEqual(s.keyId, id) && c.verify(s.signature, ascii(`cosignature/v1\ntime ${s.time}\n${text}`), w.key);
    if (p.cosignatures.some(signed)) cosigned++;
  }
  if (cosigned < policy.witnessThreshold) return fail('LOG_WITNESSES_NOT_MET', 'witness cosignatures');
  // L6: the inclusion proof leads from this envelope's leaf to the signed root.
  const root = rootFromInclusionProof(c.sha256, p.index, p.size, leafHash(c.sha256, envelope), p.inclusion);
  if (root === null || !constantTimeEqual(root, p.root)) return fail('LOG_PROOF_MISMATCH', 'inclusion');
  // L7: the checkpoint extends the stored one: never smaller, the same root at the same size, else a
  // consistency proof from exactly the stored size. With none stored the first one is taken (TOFU).
  const checkpoint = { size: p.size, root: p.root };
  if (stored === undefined) return ok({ checkpoint, advanced: true });
  if (p.size < stored.size) return fail('LOG_ROLLBACK', 'older checkpoint');
  if (p.size === stored.size) return constantTimeEqual(p.root, stored.root) ? ok({ checkpoint, advanced: false }) : fail('LOG_FORK', 'other root');
  if (p.fromSize !== stored.size || !verifyConsistency(c.sha256, stored.size, p.size, stored.root, p.root, p.consistency ?? []))
    return fail('LOG_FORK', 'consistency');
  return ok({ checkpoint, advanced: true });
}
