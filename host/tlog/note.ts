/**
 * C2SP signed notes (c2sp.org/signed-note) and the checkpoints of a transparency log written as
 * such notes (c2sp.org/tlog-checkpoint), with Ed25519 note signatures (type 0x01) by the log and
 * Ed25519 witness cosignatures (type 0x04, c2sp.org/tlog-cosignature, "cosignature/v1").
 * Parsing is strict (the Go golang.org/x/mod/sumdb/note rules): anything else is MALFORMED.
 */
import { createHash, createPublicKey, verify as nodeVerify } from 'node:crypto';
import { utf8Decode, utf8Encode } from '../../shared/bytes.js';
import { FwsealError } from '../errors.js';
import { type SigningKey } from '../keys.js';

/** Signature type bytes of signed-note §"Signature types". */
export const SIG_ED25519 = 0x01;
export const SIG_COSIGNATURE_V1 = 0x04;
export type SignatureType = typeof SIG_ED25519 | typeof SIG_COSIGNATURE_V1;

/** Bounds a verifier applies (signed-note: accept at least 16 signatures). */
export const NOTE_MAX_BYTES = 64 * 1024;
export const NOTE_MAX_SIGNATURES = 100;

/** A key that may sign a note: its name, its 32-byte Ed25519 key and what kind of signature it makes. */
export type NoteKey = { readonly name: string; readonly publicKey: Uint8Array; readonly type: SignatureType };
export type NoteSignature = { readonly name: string; readonly keyId: number; readonly signature: Uint8Array };
export type Note = { readonly text: string; readonly signatures: readonly NoteSignature[] };

const DASH = '\u2014 ';
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what a note must not hold
const CONTROL = /[\u0000-\u0009\u000b-\u001f]/;
const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

const malformed = (why: string) => new FwsealError('MALFORMED', `not a signed note: ${why}`);

/** Key names are non-empty, without Unicode spaces or '+' (signed-note §Format). */
export function isKeyName(name: string): boolean {
  return name.length > 0 && !/[\s+]/u.test(name);
}

/** key ID = SHA-256(key name || 0x0A || signature type || public key)[:4], big-endian (signed-note §Signatures). */
export function noteKeyId(key: NoteKey): number {
  const h = createHash('sha256').update(key.name, 'utf8').update(Uint8Array.of(0x0a, key.type)).update(key.publicKey).digest();
  return h.readUInt32BE(0);
}

/** The verifier key string of golang.org/x/mod/sumdb/note: name+hex(key ID)+base64(type || public key). */
export function verifierKey(key: NoteKey): string {
  const id = noteKeyId(key).toString(16).padStart(8, '0');
  return `${key.name}+${id}+${Buffer.from(Uint8Array.of(key.type, ...key.publicKey)).toString('base64')}`;
}

/** Parse a verifier key string (name+hash+key); the hash must match what the key gives. */
export function parseVerifierKey(vkey: string): NoteKey {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/]+={0,2})$/.exec(vkey);
  if (!m) throw new FwsealError('KEY_FORMAT', 'not a note verifier key (NAME+HASH+KEY)');
  const raw = Buffer.from(m[3], 'base64');
  if (raw.length !== 33 || (raw[0] !== SIG_ED25519 && raw[0] !== SIG_COSIGNATURE_V1)) throw new FwsealError('KEY_FORMAT', 'not an Ed25519 note key');
  const key: NoteKey = { name: m[1], type: raw[0] as SignatureType, publicKey: new Uint8Array(raw.subarray(1)) };
  if (noteKeyId(key) !== Number.parseInt(m[2], 16)) throw new FwsealError('KEY_FORMAT', 'the key hash does not match the key');
  return key;
}

/** Split a signed note into its text and signature lines (signed-note §Format). */
export function parseNote(input: Uint8Array | string): Note {
  const bytes = typeof input === 'string' ? utf8Encode(input) : input;
  if (bytes.length > NOTE_MAX_BYTES) throw malformed(`larger than ${NOTE_MAX_BYTES} bytes`);
  const all = utf8Decode(bytes);
  if (all === null) throw malformed('not UTF-8');
  if (CONTROL.test(all)) throw malformed('a control character other than newline');
  const split = all.lastIndexOf('\n\n');
  if (split < 0) throw malformed('no blank line before the signatures');
  const text = all.slice(0, split + 1);
  const lines = all.slice(split + 2);
  if (!lines.endsWith('\n')) throw malformed('the last signature line does not end in a newline');
  const signatures: NoteSignature[] = [];
  for (const line of lines.slice(0, -1).split('\n')) {
    if (signatures.length >= NOTE_MAX_SIGNATURES) throw malformed(`more than ${NOTE_MAX_SIGNATURES} signatures`);
    if (!line.startsWith(DASH)) throw malformed('a line after the blank line is not a signature');
    const rest = line.slice(DASH.length);
    const space = rest.indexOf(' ');
    const name = rest.slice(0, space);
    const b64 = rest.slice(space + 1);
    if (space < 0 || !isKeyName(name) || !B64.test(b64)) throw malformed('a signature line is not "— NAME BASE64"');
    const raw = Buffer.from(b64, 'base64');
    if (raw.length < 5 || raw.toString('base64') !== b64) throw malformed('a signature is not canonical base64 of key ID and signature');
    signatures.push({ name, keyId: raw.readUInt32BE(0), signature: new Uint8Array(raw.subarray(4)) });
  }
  return { text, signatures };
}

/** The note as bytes on the wire: text, blank line, one line per signature. */
export function formatNote(note: Note): string {
  const lines = note.signatures.map((s) => {
    const raw = Buffer.alloc(4 + s.signature.length);
    raw.writeUInt32BE(s.keyId >>> 0, 0);
    raw.set(s.signature, 4);
    return `${DASH}${s.name} ${raw.toString('base64')}\n`;
  });
  return `${note.text}\n${lines.join('')}`;
}

/** The bytes a signature of `type` covers: the text itself, or for cosignature/v1 a header, the time, then the text. */
function signedMessage(type: SignatureType, text: string, timestamp?: bigint): Uint8Array {
  if (type === SIG_ED25519) return utf8Encode(text);
  return utf8Encode(`cosignature/v1\ntime ${timestamp}\n${text}`);
}

function checkText(text: string): void {
  if (!text.endsWith('\n') || text.includes('\n\n') || CONTROL.test(text) || text === '\n')
    throw malformed('the text must be non-empty lines ending in a newline');
}

/** An Ed25519 note signature (type 0x01) by `key` under `name`. */
export function signNote(text: string, key: SigningKey, name: string): NoteSignature {
  checkText(text);
  if (!isKeyName(name)) throw new FwsealError('USAGE', `${JSON.stringify(name)} cannot name a note key (no spaces, no '+')`);
  const keyId = noteKeyId({ name, publicKey: key.publicKey, type: SIG_ED25519 });
  return { name, keyId, signature: key.sign(signedMessage(SIG_ED25519, text)) };
}

/** An Ed25519 cosignature/v1 (type 0x04): u64 timestamp || signature over the timestamped message. */
export function cosignNote(text: string, key: SigningKey, name: string, timestamp: number): NoteSignature {
  checkText(text);
  if (!isKeyName(name)) throw new FwsealError('USAGE', `${JSON.stringify(name)} cannot name a witness key (no spaces, no '+')`);
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new FwsealError('USAGE', 'a cosignature time is a whole number of seconds');
  const keyId = noteKeyId({ name, publicKey: key.publicKey, type: SIG_COSIGNATURE_V1 });
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(BigInt(timestamp));
  const sig = key.sign(signedMessage(SIG_COSIGNATURE_V1, text, BigInt(timestamp)));
  return { name, keyId, signature: new Uint8Array(Buffer.concat([ts, sig])) };
}

function ed25519Verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') }, format: 'jwk' });
    return nodeVerify(null, message, key, signature);
  } catch {
    return false;
  }
}

/** Does `sig` verify under `key`? (the name and key ID already match). Cosignatures: the time is returned. */
function checkSignature(key: NoteKey, text: string, sig: Uint8Array): { ok: boolean; timestamp?: number } {
  if (key.type === SIG_ED25519) return { ok: ed25519Verify(key.publicKey, signedMessage(SIG_ED25519, text), sig) };
  if (sig.length !== 72) return { ok: false };
  const ts = Buffer.from(sig.subarray(0, 8)).readBigUInt64BE(0);
  if (ts > 2n ** 63n - 1n) return { ok: false };
  const ok = ed25519Verify(key.publicKey, signedMessage(SIG_COSIGNATURE_V1, text, ts), sig.subarray(8));
  return { ok, timestamp: Number(ts) };
}

export type Verified = { readonly key: NoteKey; readonly timestamp?: number };

/**
 * Check a note against known keys (signed-note §Signatures): signatures from unknown keys (name and
 * key ID not both matching) are ignored; a signature from a known key that fails rejects the whole
 * note (BAD_SIGNATURE). Returns the known keys that signed, each once.
 */
export function verifyNote(note: Note, keys: readonly NoteKey[]): Verified[] {
  const verified: Verified[] = [];
  for (const s of note.signatures) {
    const key = keys.find((k) => k.name === s.name && noteKeyId(k) === s.keyId);
    if (!key) continue;
    const r = checkSignature(key, note.text, s.signature);
    if (!r.ok) throw new FwsealError('BAD_SIGNATURE', `the signature of ${s.name} on the note does not verify`);
    if (!verified.some((v) => v.key === key)) verified.push({ key, ...(r.timestamp !== undefined ? { timestamp: r.timestamp } : {}) });
  }
  return verified;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints (c2sp.org/tlog-checkpoint): origin, tree size, base64 root hash, optional extension lines.

export type Checkpoint = { readonly origin: string; readonly size: number; readonly root: Uint8Array; readonly extensions: readonly string[] };

export function checkpointText(cp: Checkpoint): string {
  if (cp.origin.length === 0 || cp.origin.includes('\n')) throw new FwsealError('USAGE', 'a checkpoint origin is one non-empty line');
  return `${[cp.origin, String(cp.size), Buffer.from(cp.root).toString('base64'), ...cp.extensions].join('\n')}\n`;
}

/** The checkpoint a note's text holds; MALFORMED unless it is exactly the tlog-checkpoint form. */
export function parseCheckpoint(text: string): Checkpoint {
  const lines = text.split('\n');
  if (lines.pop() !== '' || lines.length < 3 || lines.some((l) => l === '')) throw malformed('a checkpoint is at least three non-empty lines');
  const [origin, size, root, ...extensions] = lines;
  if (!/^(0|[1-9][0-9]{0,15})$/.test(size) || !Number.isSafeInteger(Number(size))) throw malformed('the tree size is not a decimal number');
  const hash = Buffer.from(root, 'base64');
  if (hash.length !== 32 || hash.toString('base64') !== root) throw malformed('the root hash is not base64 of 32 bytes');
  return { origin, size: Number(size), root: new Uint8Array(hash), extensions };
}
