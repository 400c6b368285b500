/**
 * Signed notes and checkpoints (issue 19) against published examples: golang.org/x/mod/sumdb/note's
 * test vectors (exact signature bytes, key hashes, what is malformed) and the C2SP signed-note,
 * tlog-checkpoint and tlog-cosignature examples (note format, key ID, signature line, timestamp).
 */
import { createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FwsealError } from '../host/errors.js';
import { signingKeyFromSeed } from '../host/keys.js';
import {
  checkpointText,
  cosignNote,
  formatNote,
  noteKeyId,
  parseCheckpoint,
  parseNote,
  parseVerifierKey,
  SIG_COSIGNATURE_V1,
  SIG_ED25519,
  signNote,
  verifierKey,
  verifyNote,
} from '../host/tlog/note.js';
import { detKey } from './support/fixtures.js';

const V = JSON.parse(readFileSync(join(__dirname, 'vectors', 'note', 'note-vectors.json'), 'utf8'));
const S = V.sumdb;
const C = V.c2sp;

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof FwsealError) return e.codeName;
    throw e;
  }
  return 'OK';
}

/** The Go signer key PRIVATE+KEY+NAME+HASH+base64(0x01 || seed). */
function goSigner(skey: string) {
  const [, , name, hash] = skey.split('+');
  const b64 = skey.slice(`PRIVATE+KEY+${name}+${hash}+`.length);
  const raw = Buffer.from(b64, 'base64');
  expect(raw[0]).toBe(SIG_ED25519);
  return { name, key: signingKeyFromSeed(name, new Uint8Array(raw.subarray(1))) };
}

describe('golang.org/x/mod/sumdb/note vectors', () => {
  it('signs the text with the exact signature line of TestSign', () => {
    const { name, key } = goSigner(S.signerKey);
    expect(formatNote({ text: S.text, signatures: [signNote(S.text, key, name)] })).toBe(S.signed);
  });

  it('computes the key hash SHA-256(name || 0x0A || 0x01 || key)[:4] of the published verifier keys', () => {
    const peter = parseVerifierKey(S.verifierKeys.PeterNeumann);
    expect(noteKeyId(peter)).toBe(0xc74f20a3);
    expect(noteKeyId(parseVerifierKey(S.verifierKeys.EnochRoot))).toBe(0xaf0cfe78);
    expect(verifierKey(peter)).toBe(S.verifierKeys.PeterNeumann);
    expect(Buffer.from(peter.publicKey)).toEqual(Buffer.from(goSigner(S.signerKey).key.publicKey));
    const manual = createHash('sha256')
      .update(Buffer.concat([Buffer.from('PeterNeumann\n'), Buffer.of(1), peter.publicKey]))
      .digest()
      .readUInt32BE(0);
    expect(manual).toBe(0xc74f20a3);
  });

  it('refuses verifier keys with a wrong length or an unknown algorithm (KEY_FORMAT)', () => {
    for (const k of S.badVerifierKeys)
      expect(
        codeOf(() => parseVerifierKey(k)),
        k,
      ).toBe('KEY_FORMAT');
    const good: string = S.verifierKeys.PeterNeumann;
    expect(codeOf(() => parseVerifierKey(good.replace('c74f20a3', 'c74f20a4')))).toBe('KEY_FORMAT');
  });

  it('ignores signatures of unknown keys and verifies those of known keys (TestOpen)', () => {
    const peter = parseVerifierKey(S.verifierKeys.PeterNeumann);
    const enoch = parseVerifierKey(S.verifierKeys.EnochRoot);
    const note = parseNote(`${S.text}\n${S.peterSig}${S.enochSig}`);
    expect(note.text).toBe(S.text);
    expect(verifyNote(note, [peter]).map((v) => v.key.name)).toEqual(['PeterNeumann']);
    expect(verifyNote(note, [peter, enoch]).map((v) => v.key.name)).toEqual(['PeterNeumann', 'EnochRoot']);
    expect(verifyNote(note, [])).toEqual([]);
  });

  it('rejects the whole note when a known key signature does not verify (BAD_SIGNATURE)', () => {
    const peter = parseVerifierKey(S.verifierKeys.PeterNeumann);
    const sig: string = S.peterSig;
    const bad = `${S.text}\n${sig.slice(0, 60)}ABCD${sig.slice(60)}`;
    expect(codeOf(() => verifyNote(parseNote(bad), [peter]))).toBe('BAD_SIGNATURE');
    expect(codeOf(() => verifyNote(parseNote(`${S.text.replace('answer', 'ANSWER')}\n${sig}`), [peter]))).toBe('BAD_SIGNATURE');
  });

  it('refuses the malformed messages of TestOpen (MALFORMED)', () => {
    const sig: string = S.peterSig;
    const bad = [
      S.text,
      `${S.text}\n`,
      `${S.text}\n${sig.slice(0, -1)}`,
      `\x01${S.text}\n${sig}`,
      `${S.text}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`,
      `${S.text}\n${sig}Unexpected line.\n`,
      `${S.text}\n${sig.repeat(101)}`,
    ];
    for (const m of bad)
      expect(
        codeOf(() => parseNote(m)),
        JSON.stringify(m),
      ).toBe('MALFORMED');
    expect(codeOf(() => parseNote(new Uint8Array([0xff, ...Buffer.from(`${S.text}\n${sig}`)])))).toBe('MALFORMED');
  });
});

describe('C2SP examples', () => {
  it('signed-note: the text is everything up to the last blank line; one signature of 4 + 64 bytes', () => {
    const n = parseNote(C.signedNote);
    expect(n.text).toBe(C.signedNoteText);
    expect(n.signatures).toHaveLength(1);
    expect(n.signatures[0].name).toBe('quasimodo.example/salvatore');
    expect(n.signatures[0].signature).toHaveLength(64);
    expect(formatNote(n)).toBe(C.signedNote);
  });

  it('tlog-checkpoint: origin, decimal size, base64 root; printed back byte for byte', () => {
    const n = parseNote(C.checkpoint);
    const cp = parseCheckpoint(n.text);
    expect(cp).toMatchObject({ origin: 'example.com/behind-the-sofa', size: 20852163, extensions: [] });
    expect(cp.root).toHaveLength(32);
    expect(checkpointText(cp)).toBe(n.text);
    expect(n.signatures[0].name).toBe(cp.origin);
    for (const text of [
      'o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n',
      'o\n1\nCsUY\n',
      'o\n1\n',
      'o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n',
    ])
      expect(
        codeOf(() => parseCheckpoint(text)),
        text,
      ).toBe('MALFORMED');
  });

  it('tlog-cosignature: the witness line carries key ID, u64 time and signature; ours signs the cosignature/v1 message', () => {
    const w = parseNote(C.cosigned).signatures[1];
    expect(w.name).toBe('witness.example.com/w1');
    expect(w.signature).toHaveLength(72);
    expect(Buffer.from(w.signature.subarray(0, 8)).readBigUInt64BE(0)).toBe(1679315147n);
    const key = detKey('witness');
    const text = parseNote(C.cosigned).text;
    const sig = cosignNote(text, key, 'witness.example.com/w1', 1679315147);
    expect(sig.keyId).toBe(noteKeyId({ name: 'witness.example.com/w1', publicKey: key.publicKey, type: SIG_COSIGNATURE_V1 }));
    expect(Buffer.from(sig.signature.subarray(0, 8)).readBigUInt64BE(0)).toBe(1679315147n);
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(key.publicKey).toString('base64url') }, format: 'jwk' });
    expect(verify(null, Buffer.from(C.cosignedMessage), pub, sig.signature.subarray(8))).toBe(true);
    const verified = verifyNote(parseNote(formatNote({ text, signatures: [sig] })), [{ name: sig.name, publicKey: key.publicKey, type: SIG_COSIGNATURE_V1 }]);
    expect(verified[0].timestamp).toBe(1679315147);
    // The same key as a plain note key (type 0x01) has another key ID: the cosignature is ignored, not misread.
    expect(verifyNote(parseNote(formatNote({ text, signatures: [sig] })), [{ name: sig.name, publicKey: key.publicKey, type: SIG_ED25519 }])).toEqual([]);
  });
});
