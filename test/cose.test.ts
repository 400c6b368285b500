/**
 * COSE_Sign (RFC 9052) interoperability: our codec reproduces the cose-wg examples' ToBeSigned
 * bytes, and an independent implementation (cbor-x + node:crypto, no fwseal code) checks every
 * signature of our envelopes.
 */

import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Encoder, type Tag } from 'cbor-x';
import { describe, expect, it } from 'vitest';
import { verifyEd25519 } from '../device/index.js';
import { fromHex } from '../shared/bytes.js';
import { type CborTag, decodeCbor, encodeCbor } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { parseEnvelope, SIGNER_PROTECTED, sigStructure } from '../shared/cose.js';
import { standardWorld } from './support/fixtures.js';

type Example = {
  intermediates: { signers?: { ToBeSign_hex: string }[]; ToBeSign_hex?: string };
  output: { cbor: string };
  input: { sign?: { signers: { key: { x_hex: string } }[] } };
};
const example = (name: string) => JSON.parse(readFileSync(join(__dirname, 'vectors/cose', name), 'utf8')) as Example;
const hex = (h: string) => fromHex(h) as Uint8Array;

describe('cose-wg EdDSA-01 (COSE_Sign, Ed25519)', () => {
  const ex = example('eddsa-01.json');
  const bytes = hex(ex.output.cbor);

  it('decodes strictly (the example is deterministic CBOR) and rebuilds its Sig_structure byte for byte', () => {
    const d = decodeCbor(bytes);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    const top = d.value as CborTag;
    expect(top.tag).toBe(98);
    const [bodyProtected, , payload, signatures] = top.value as [Uint8Array, unknown, Uint8Array, [Uint8Array, unknown, Uint8Array][]];
    const [signProtected, , signature] = signatures[0];
    const toBeSigned = encodeCbor(['Signature', bodyProtected, signProtected, new Uint8Array(0), payload]);
    expect(toBeSigned).toEqual(hex(ex.intermediates.signers![0].ToBeSign_hex));
    const x = hex(ex.input.sign!.signers[0].key.x_hex);
    expect(verifyEd25519(signature, toBeSigned, x)).toBe(true);
  });

  it('is outside the fwseal profile (body headers must be empty, kids 16 bytes): BAD_HEADER, not a crash', () => {
    expect(parseEnvelope(bytes).code).toBe(CODES.BAD_HEADER);
  });
});

describe('Sig_structure (RFC 9052 §4.4)', () => {
  it("is the deterministic encoding of [\"Signature\", h'', h'A10127', h'', payload] for every payload length class", () => {
    for (const n of [0, 1, 23, 24, 255, 256, 4000, 12288, 65535, 65536]) {
      const payload = new Uint8Array(n).fill(n & 0xff);
      expect(sigStructure(payload)).toEqual(encodeCbor(['Signature', new Uint8Array(0), Uint8Array.of(0xa1, 0x01, 0x27), new Uint8Array(0), payload]));
    }
    expect(SIGNER_PROTECTED).toEqual(encodeCbor(new Map([[1, -8]])));
  });
});

describe('an independent COSE implementation checks our signatures', () => {
  it('cbor-x + node:crypto verify every COSE_Signature of an fwseal manifest and trust bundle', () => {
    const w = standardWorld();
    const keys = new Map([w.A, w.B, w.C, w.R1, w.R2, w.R3].map((k) => [Buffer.from(k.keyId).toString('hex'), k.publicKey]));
    const encoder = new Encoder({ useRecords: false, mapsAsObjects: false, tagUint8Array: false });
    for (const envelope of [w.envelope, w.trust]) {
      const top = encoder.decode(envelope) as Tag;
      expect(top.tag).toBe(98);
      const [bodyProtected, , payload, signatures] = top.value as [
        Uint8Array,
        Map<number, unknown>,
        Uint8Array,
        [Uint8Array, Map<number, Uint8Array>, Uint8Array][],
      ];
      expect(signatures.length).toBe(2);
      for (const [protectedHeader, unprotected, signature] of signatures) {
        expect(encoder.decode(protectedHeader)).toEqual(new Map([[1, -8]])); // alg: EdDSA
        const kid = Buffer.from(unprotected.get(4) as Uint8Array).toString('hex');
        const pub = keys.get(kid) as Uint8Array;
        // RFC 9052 §4.4 Sig_structure, encoded by cbor-x.
        const toBeSigned = encoder.encode(['Signature', bodyProtected, protectedHeader, new Uint8Array(0), payload]);
        const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(pub).toString('base64url') }, format: 'jwk' });
        expect(nodeVerify(null, toBeSigned, key, signature)).toBe(true);
      }
    }
  });
});
