/**
 * The device's own SHA-256 and SHA-512 (device/crypto/sha256.ts, sha512.ts), against FIPS 180-4:
 * its examples and the NIST CAVP byte-oriented messages, the constants as the standard prints them,
 * and node:crypto (OpenSSL) as the oracle for every length 0..300, the padding boundaries, random
 * inputs and views into larger buffers; then the same functions inside both QuickJS builds.
 */
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256, shaTables } from '../device/crypto/sha256.js';

const [SHA512_K, SHA512_IV, SHA256_K] = shaTables();

import { sha512 } from '../device/crypto/sha512.js';
import { QUICKJS_VARIANTS, quickjsModule } from './support/quickjs.js';
import { XORSHIFT32_SOURCE, xorshift32Fill } from './support/quickjs-harness.js';

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const ascii = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'latin1'));
const fromHex = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
const oracle = (algorithm: 'sha256' | 'sha512', data: Uint8Array): string => createHash(algorithm).update(data).digest('hex');
/** Bytes that differ at every position and between lengths. */
const pattern = (length: number, seed = 0): Uint8Array => Uint8Array.from({ length }, (_, i) => (i * 167 + seed * 31 + 11) & 0xff);

const HASHES = [
  { name: 'sha256', fn: sha256, size: 32, block: 64 },
  { name: 'sha512', fn: sha512, size: 64, block: 128 },
] as const;

/** The lengths where padding changes shape (§5.1.1, §5.1.2): one or two final blocks, full blocks. */
const BOUNDARY_LENGTHS = [
  0, 1, 54, 55, 56, 57, 63, 64, 65, 111, 112, 113, 119, 120, 121, 127, 128, 129, 175, 176, 183, 184, 191, 192, 193, 239, 240, 247, 248, 255, 256, 257, 4095,
  4096, 4097, 8191, 8192, 8193, 65535, 65536, 65537,
];

describe('FIPS 180-4 examples and NIST CAVP messages', () => {
  // The one-block, two-block and 896-bit messages of the NIST "Examples with intermediate values"
  // for FIPS 180-4, the empty message, the one-million-'a' message of FIPS 180-2 Appendix B.3/C.3,
  // and the first byte-oriented entries of SHA256ShortMsg.rsp / SHA512ShortMsg.rsp.
  const cases: { name: string; message: Uint8Array; sha256?: string; sha512?: string }[] = [
    {
      name: 'the empty message',
      message: new Uint8Array(0),
      sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      sha512: 'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e',
    },
    {
      name: '"abc" (one block)',
      message: ascii('abc'),
      sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
      sha512: 'ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f',
    },
    {
      name: 'the 448-bit message (two SHA-256 blocks)',
      message: ascii('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'),
      sha256: '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
      sha512: '204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c33596fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445',
    },
    {
      name: 'the 896-bit message (two SHA-512 blocks)',
      message: ascii('abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu'),
      sha256: 'cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1',
      sha512: '8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909',
    },
    {
      name: "one million 'a'",
      message: new Uint8Array(1_000_000).fill(0x61),
      sha256: 'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0',
      sha512: 'e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973ebde0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b',
    },
    { name: 'SHA256ShortMsg Len = 8', message: fromHex('d3'), sha256: '28969cdfa74a12c82f3bad960b0b000aca2ac329deea5c2328ebc6f2ba9802c1' },
    { name: 'SHA256ShortMsg Len = 16', message: fromHex('11af'), sha256: '5ca7133fa735326081558ac312c620eeca9970d1e70a4b95533d956f072d1f98' },
    {
      name: 'SHA512ShortMsg Len = 8',
      message: fromHex('21'),
      sha512: '3831a6a6155e509dee59a7f451eb35324d8f8f2df6e3708894740f98fdee23889f4de5adb0c5010dfb555cda77c8ab5dc902094c52de3278f35a75ebc25f093a',
    },
  ];
  for (const c of cases) {
    if (c.sha256 !== undefined) it(`SHA-256 of ${c.name}`, () => expect(hex(sha256(c.message))).toBe(c.sha256));
    if (c.sha512 !== undefined) it(`SHA-512 of ${c.name}`, () => expect(hex(sha512(c.message))).toBe(c.sha512));
  }
});

describe('the constants are the ones FIPS 180-4 prints', () => {
  const words = (table: string): string[] => table.trim().split(/\s+/);
  const pairs = (a: Int32Array): string[] =>
    Array.from({ length: a.length / 2 }, (_, i) => (a[2 * i] >>> 0).toString(16).padStart(8, '0') + (a[2 * i + 1] >>> 0).toString(16).padStart(8, '0'));
  const highs = (a: Int32Array, n: number): string[] => Array.from({ length: n }, (_, i) => (a[2 * i] >>> 0).toString(16).padStart(8, '0'));

  it('§4.2.3: the eighty SHA-512 constants', () => {
    expect(pairs(SHA512_K)).toEqual(
      words(`
      428a2f98d728ae22 7137449123ef65cd b5c0fbcfec4d3b2f e9b5dba58189dbbc
      3956c25bf348b538 59f111f1b605d019 923f82a4af194f9b ab1c5ed5da6d8118
      d807aa98a3030242 12835b0145706fbe 243185be4ee4b28c 550c7dc3d5ffb4e2
      72be5d74f27b896f 80deb1fe3b1696b1 9bdc06a725c71235 c19bf174cf692694
      e49b69c19ef14ad2 efbe4786384f25e3 0fc19dc68b8cd5b5 240ca1cc77ac9c65
      2de92c6f592b0275 4a7484aa6ea6e483 5cb0a9dcbd41fbd4 76f988da831153b5
      983e5152ee66dfab a831c66d2db43210 b00327c898fb213f bf597fc7beef0ee4
      c6e00bf33da88fc2 d5a79147930aa725 06ca6351e003826f 142929670a0e6e70
      27b70a8546d22ffc 2e1b21385c26c926 4d2c6dfc5ac42aed 53380d139d95b3df
      650a73548baf63de 766a0abb3c77b2a8 81c2c92e47edaee6 92722c851482353b
      a2bfe8a14cf10364 a81a664bbc423001 c24b8b70d0f89791 c76c51a30654be30
      d192e819d6ef5218 d69906245565a910 f40e35855771202a 106aa07032bbd1b8
      19a4c116b8d2d0c8 1e376c085141ab53 2748774cdf8eeb99 34b0bcb5e19b48a8
      391c0cb3c5c95a63 4ed8aa4ae3418acb 5b9cca4f7763e373 682e6ff3d6b2b8a3
      748f82ee5defb2fc 78a5636f43172f60 84c87814a1f0ab72 8cc702081a6439ec
      90befffa23631e28 a4506cebde82bde9 bef9a3f7b2c67915 c67178f2e372532b
      ca273eceea26619c d186b8c721c0c207 eada7dd6cde0eb1e f57d4f7fee6ed178
      06f067aa72176fba 0a637dc5a2c898a6 113f9804bef90dae 1b710b35131c471b
      28db77f523047d84 32caab7b40c72493 3c9ebe0a15c9bebc 431d67c49c100d4c
      4cc5d4becb3e42b6 597f299cfc657e2a 5fcb6fab3ad6faec 6c44198c4a475817`),
    );
  });

  it('§4.2.2: the sixty-four SHA-256 constants are their high halves', () => {
    expect(Array.from(SHA256_K.subarray(0, 64), (w) => (w >>> 0).toString(16).padStart(8, '0'))).toEqual(highs(SHA512_K, 64));
    expect(highs(SHA512_K, 64)).toEqual(
      words(`
      428a2f98 71374491 b5c0fbcf e9b5dba5 3956c25b 59f111f1 923f82a4 ab1c5ed5
      d807aa98 12835b01 243185be 550c7dc3 72be5d74 80deb1fe 9bdc06a7 c19bf174
      e49b69c1 efbe4786 0fc19dc6 240ca1cc 2de92c6f 4a7484aa 5cb0a9dc 76f988da
      983e5152 a831c66d b00327c8 bf597fc7 c6e00bf3 d5a79147 06ca6351 14292967
      27b70a85 2e1b2138 4d2c6dfc 53380d13 650a7354 766a0abb 81c2c92e 92722c85
      a2bfe8a1 a81a664b c24b8b70 c76c51a3 d192e819 d6990624 f40e3585 106aa070
      19a4c116 1e376c08 2748774c 34b0bcb5 391c0cb3 4ed8aa4a 5b9cca4f 682e6ff3
      748f82ee 78a5636f 84c87814 8cc70208 90befffa a4506ceb bef9a3f7 c67178f2`),
    );
  });

  it('§5.3.5 and §5.3.3: the initial hash values, SHA-256 taking the high halves', () => {
    expect(pairs(SHA512_IV)).toEqual(
      words(`
      6a09e667f3bcc908 bb67ae8584caa73b 3c6ef372fe94f82b a54ff53a5f1d36f1
      510e527fade682d1 9b05688c2b3e6c1f 1f83d9abfb41bd6b 5be0cd19137e2179`),
    );
    expect(highs(SHA512_IV, 8)).toEqual(words('6a09e667 bb67ae85 3c6ef372 a54ff53a 510e527f 9b05688c 1f83d9ab 5be0cd19'));
  });
});

describe('differential against node:crypto', () => {
  for (const h of HASHES) {
    it(`${h.name}: every length from 0 to 300 bytes`, () => {
      for (let length = 0; length <= 300; length++) {
        const data = pattern(length, length);
        expect(hex(h.fn(data)), `length ${length}`).toBe(oracle(h.name, data));
      }
    });

    it(`${h.name}: lengths at the padding boundaries, up to 64 KiB + 1`, () => {
      for (const length of BOUNDARY_LENGTHS) {
        const data = pattern(length, 7);
        expect(hex(h.fn(data)), `length ${length}`).toBe(oracle(h.name, data));
      }
    });

    it(`${h.name}: random contents and lengths`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 3 * h.block + 17 }), (data) => {
          expect(hex(h.fn(data))).toBe(oracle(h.name, data));
        }),
        { numRuns: 300 },
      );
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 9000 }), (data) => {
          expect(hex(h.fn(data))).toBe(oracle(h.name, data));
        }),
        { numRuns: 30 },
      );
    });

    it(`${h.name}: a view with a non-zero byteOffset into a larger buffer hashes only its own bytes`, () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ maxLength: 80 }),
          fc.uint8Array({ maxLength: 2 * h.block + 9 }),
          fc.uint8Array({ maxLength: 80 }),
          (before, body, after) => {
            const buffer = new Uint8Array(before.length + body.length + after.length);
            buffer.set(before);
            buffer.set(body, before.length);
            buffer.set(after, before.length + body.length);
            const view = buffer.subarray(before.length, before.length + body.length);
            expect(hex(h.fn(view))).toBe(oracle(h.name, body));
          },
        ),
        { numRuns: 200 },
      );
      // Unaligned starts (DataView reads at every offset mod 4) and a view over a Node Buffer's pool.
      const big = pattern(3 * h.block + 40, 3);
      for (let offset = 1; offset <= 8; offset++) {
        const view = new Uint8Array(big.buffer, offset, 2 * h.block + 3);
        expect(hex(h.fn(view)), `offset ${offset}`).toBe(oracle(h.name, view));
      }
      const pooled = Buffer.from('abc');
      expect(hex(h.fn(pooled))).toBe(oracle(h.name, pooled));
    });
  }
});

describe('inputs and outputs', () => {
  for (const h of HASHES) {
    it(`${h.name} leaves its input and the rest of the input's buffer unchanged`, () => {
      for (const length of [0, 3, h.block - 9, h.block, 2 * h.block + 1, 1000]) {
        const buffer = pattern(length + 20, length);
        const before = buffer.slice();
        h.fn(buffer.subarray(10, 10 + length));
        expect(buffer, `length ${length}`).toEqual(before);
      }
    });

    it(`${h.name} returns a fresh ${h.size}-byte Uint8Array each call`, () => {
      const data = pattern(100);
      const first = h.fn(data);
      expect(first).toBeInstanceOf(Uint8Array);
      expect(first.length).toBe(h.size);
      expect(first.byteOffset).toBe(0);
      expect(first.buffer.byteLength).toBe(h.size);
      const expected = hex(first);
      first.fill(0);
      expect(hex(h.fn(data))).toBe(expected);
    });

    it(`${h.name} keeps no state between calls`, () => {
      const a = pattern(200, 1),
        b = pattern(77, 2);
      const ha = hex(h.fn(a));
      h.fn(b);
      h.fn(new Uint8Array(h.block * 3));
      expect(hex(h.fn(a))).toBe(ha);
    });
  }
});

describe('inside QuickJS (both builds, 128 KB memory limit)', () => {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const lengths = [0, 1, 3, 55, 56, 63, 64, 65, 111, 112, 119, 120, 127, 128, 129, 300, 4096, 4097];

  for (const variant of QUICKJS_VARIANTS) {
    it(`${variant}: sha256 and sha512 give node:crypto's digests`, async () => {
      const bundled = await build({
        stdin: {
          contents: `export { sha256 } from './device/crypto/sha256.ts'; export { sha512 } from './device/crypto/sha512.ts';`,
          resolveDir: root,
          loader: 'ts',
        },
        bundle: true,
        format: 'iife',
        globalName: 'H',
        minify: true,
        target: 'es2020',
        write: false,
        logLevel: 'error',
      });
      const runtime = (await quickjsModule(variant)).newRuntime();
      runtime.setMemoryLimit(131072);
      const context = runtime.newContext();
      try {
        const source = `${bundled.outputFiles[0].text}
          ${XORSHIFT32_SOURCE}
          (function () {
            var lengths = ${JSON.stringify(lengths)}, out = [];
            function toHex(b) { var s = ''; for (var i = 0; i < b.length; i++) s += (b[i] + 256).toString(16).slice(1); return s; }
            for (var i = 0; i < lengths.length; i++) {
              var data = new Uint8Array(lengths[i] + 1);
              xorshift32Fill(lengths[i] + 1, data);
              data = data.subarray(1);
              out.push([toHex(H.sha256(data)), toHex(H.sha512(data))]);
            }
            return JSON.stringify(out);
          })()`;
        const result = context.evalCode(source);
        if (result.error) {
          const e: unknown = context.dump(result.error);
          result.error.dispose();
          throw new Error(`QuickJS: ${JSON.stringify(e)}`);
        }
        const digests = JSON.parse(context.getString(result.value)) as [string, string][];
        result.value.dispose();
        lengths.forEach((length, i) => {
          const data = new Uint8Array(length + 1);
          xorshift32Fill(length + 1, data);
          const message = data.subarray(1);
          expect(digests[i], `length ${length}`).toEqual([oracle('sha256', message), oracle('sha512', message)]);
        });
      } finally {
        context.dispose();
        runtime.dispose();
      }
    });
  }
});
