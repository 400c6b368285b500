/**
 * SHA-512 (FIPS 180-4 §6.4), one-shot, written for size rather than speed: the device hashes only
 * R || A || M with it (a few hundred bytes per Ed25519 signature, RFC 8032 §5.1.7 step 2), so a
 * rolled loop over 32-bit halves is enough. No BigInt: 64-bit words are (high, low) Int32 pairs,
 * and an Int32Array store wraps a sum modulo 2^32 for free.
 */
import { SHA256_K } from './sha256.js';

/**
 * §4.2.3 constants, split into halves. The high halves of the first 64 are exactly SHA-256's
 * constants (§4.2.2: both are the cube roots of the first primes' fractional parts, 32 or 64 bits),
 * so only the last 16 are spelled out here.
 */
const KH = new Int32Array(80);
KH.set(SHA256_K);
// prettier-ignore
KH.set([
  0xca273ece, 0xd186b8c7, 0xeada7dd6, 0xf57d4f7f, 0x06f067aa, 0x0a637dc5, 0x113f9804, 0x1b710b35,
  0x28db77f5, 0x32caab7b, 0x3c9ebe0a, 0x431d67c4, 0x4cc5d4be, 0x597f299c, 0x5fcb6fab, 0x6c44198c,
], 64);
// prettier-ignore
const KL = new Int32Array([
  0xd728ae22, 0x23ef65cd, 0xec4d3b2f, 0x8189dbbc, 0xf348b538, 0xb605d019, 0xaf194f9b, 0xda6d8118,
  0xa3030242, 0x45706fbe, 0x4ee4b28c, 0xd5ffb4e2, 0xf27b896f, 0x3b1696b1, 0x25c71235, 0xcf692694,
  0x9ef14ad2, 0x384f25e3, 0x8b8cd5b5, 0x77ac9c65, 0x592b0275, 0x6ea6e483, 0xbd41fbd4, 0x831153b5,
  0xee66dfab, 0x2db43210, 0x98fb213f, 0xbeef0ee4, 0x3da88fc2, 0x930aa725, 0xe003826f, 0x0a0e6e70,
  0x46d22ffc, 0x5c26c926, 0x5ac42aed, 0x9d95b3df, 0x8baf63de, 0x3c77b2a8, 0x47edaee6, 0x1482353b,
  0x4cf10364, 0xbc423001, 0xd0f89791, 0x0654be30, 0xd6ef5218, 0x5565a910, 0x5771202a, 0x32bbd1b8,
  0xb8d2d0c8, 0x5141ab53, 0xdf8eeb99, 0xe19b48a8, 0xc5c95a63, 0xe3418acb, 0x7763e373, 0xd6b2b8a3,
  0x5defb2fc, 0x43172f60, 0xa1f0ab72, 0x1a6439ec, 0x23631e28, 0xde82bde9, 0xb2c67915, 0xe372532b,
  0xea26619c, 0x21c0c207, 0xcde0eb1e, 0xee6ed178, 0x72176fba, 0xa2c898a6, 0xbef90dae, 0x131c471b,
  0x23047d84, 0x40c72493, 0x15c9bebc, 0x9c100d4c, 0xcb3e42b6, 0xfc657e2a, 0x3ad6faec, 0x4a475817,
]);
/** §5.3.5 initial hash value H(0), as (high, low) pairs. */
// prettier-ignore
const IV = [
  0x6a09e667, 0xf3bcc908, 0xbb67ae85, 0x84caa73b, 0x3c6ef372, 0xfe94f82b, 0xa54ff53a, 0x5f1d36f1,
  0x510e527f, 0xade682d1, 0x9b05688c, 0x2b3e6c1f, 0x1f83d9ab, 0xfb41bd6b, 0x5be0cd19, 0x137e2179,
];

const TWO_32 = 4294967296;

/** High half of ROTR^n(x || y) (§3.2); the low half is `rot(y, x, n)`. JS masks shift counts to 5 bits. */
const rot = (x: number, y: number, n: number): number => (n < 32 ? (x >>> n) | (y << (32 - n)) : (y >>> n) | (x << (32 - n)));

/**
 * High half of ROTR^a ^ ROTR^b ^ ROTR^c of (x || y), or with SHR^c in place of ROTR^c when `shr`
 * (§4.1.3 Σ and σ). Called with (low, high) it gives the low half, where SHR^c's low half equals
 * ROTR^c's, so `shr` is set only for the high half of σ0 and σ1.
 */
const mix = (x: number, y: number, a: number, b: number, c: number, shr?: boolean): number =>
  rot(x, y, a) ^ rot(x, y, b) ^ (shr ? x >>> c : rot(x, y, c));

/** v[i..i+1] += (hi || lo), where lo may be any non-negative integer below 2^53 (its excess carries). */
function add(v: Int32Array, i: number, hi: number, lo: number): void {
  const sum = (v[i + 1] >>> 0) + lo;
  v[i] += hi + ((sum / TWO_32) | 0);
  v[i + 1] = sum;
}

export function sha512(data: Uint8Array): Uint8Array {
  const length = data.length;
  // §5.1.2 padding: 0x80, zeros, then the bit length as a 128-bit big-endian integer. Messages here
  // are short, so the whole message is copied once into the padded buffer.
  const m = new Uint8Array(Math.ceil((length + 17) / 128) * 128);
  m.set(data);
  m[length] = 0x80;
  const view = new DataView(m.buffer);
  view.setInt32(m.length - 8, Math.floor(length / 0x20000000));
  view.setInt32(m.length - 4, length << 3); // low 32 bits of 8 * length

  const hash = new Int32Array(IV);
  const w = new Int32Array(160);
  const v = new Int32Array(16);
  for (let p = 0; p < m.length; p += 128) {
    // §6.4.2 step 1: the message schedule, as (high, low) pairs.
    for (let t = 0; t < 32; t++) w[t] = view.getInt32(p + 4 * t);
    for (let t = 32; t < 160; t += 2) {
      const h2 = w[t - 4], l2 = w[t - 3], h15 = w[t - 30], l15 = w[t - 29];
      const lo = (mix(l2, h2, 19, 61, 6) >>> 0) + (w[t - 13] >>> 0) + (mix(l15, h15, 1, 8, 7) >>> 0) + (w[t - 31] >>> 0);
      w[t] = mix(h2, l2, 19, 61, 6, true) + w[t - 14] + mix(h15, l15, 1, 8, 7, true) + w[t - 32] + ((lo / TWO_32) | 0);
      w[t + 1] = lo;
    }
    // Steps 2-4: v = a..h as (high, low) pairs; each round shifts them down one pair.
    v.set(hash);
    for (let t = 0; t < 80; t++) {
      const ah = v[0], al = v[1], bh = v[2], bl = v[3], ch = v[4], cl = v[5];
      const eh = v[8], el = v[9], fh = v[10], fl = v[11], gh = v[12], gl = v[13];
      const t1l = (v[15] >>> 0) + (mix(el, eh, 14, 18, 41) >>> 0) + (((el & fl) ^ (~el & gl)) >>> 0) + (KL[t] >>> 0) + (w[2 * t + 1] >>> 0);
      const t1h = v[14] + mix(eh, el, 14, 18, 41) + ((eh & fh) ^ (~eh & gh)) + KH[t] + w[2 * t] + ((t1l / TWO_32) | 0);
      const t2l = (mix(al, ah, 28, 34, 39) >>> 0) + (((al & bl) ^ (al & cl) ^ (bl & cl)) >>> 0);
      const t2h = mix(ah, al, 28, 34, 39) + ((ah & bh) ^ (ah & ch) ^ (bh & ch)) + ((t2l / TWO_32) | 0);
      v.copyWithin(2, 0, 14);
      add(v, 8, t1h, t1l >>> 0);
      v[0] = t1h;
      v[1] = t1l;
      add(v, 0, t2h, t2l >>> 0);
    }
    for (let i = 0; i < 16; i += 2) add(hash, i, v[i], v[i + 1] >>> 0);
  }
  const digest = new Uint8Array(64);
  const out = new DataView(digest.buffer);
  for (let i = 0; i < 16; i++) out.setInt32(4 * i, hash[i]);
  return digest;
}
