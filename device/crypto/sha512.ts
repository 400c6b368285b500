/**
 * SHA-512 (FIPS 180-4 §6.4), one-shot, written for size rather than speed: the device hashes only
 * R || A || M with it (a few hundred bytes per Ed25519 signature, RFC 8032 §5.1.7 step 2), so a
 * rolled loop over 32-bit halves is enough (about as fast as @noble/hashes' sha512 in QuickJS, at a
 * quarter of its size). No BigInt: 64-bit words are (high, low) Int32 pairs, and an Int32Array store
 * wraps a sum modulo 2^32 for free.
 */
// §4.2.3 constants and §5.3.5 H(0) as (high, low) pairs, derived in ./sha256.ts.
import { shaTables } from './sha256.js';

const TWO_32 = 4294967296;

/** High half of ROTR^n(x || y) (§3.2); the low half is `rot(y, x, n)`. JS masks shift counts to 5 bits. */
const rot = (x: number, y: number, n: number): number => (n < 32 ? (x >>> n) | (y << (32 - n)) : (y >>> n) | (x << (32 - n)));

/**
 * High half of ROTR^a ^ ROTR^b ^ ROTR^c of (x || y), or with SHR^c in place of ROTR^c when `shr`
 * (§4.1.3 Σ and σ). Called with (low, high) it gives the low half, where SHR^c's low half equals
 * ROTR^c's, so `shr` is set only for the high half of σ0 and σ1.
 */
const mix = (x: number, y: number, a: number, b: number, c: number, shr?: boolean): number => rot(x, y, a) ^ rot(x, y, b) ^ (shr ? x >>> c : rot(x, y, c));

/** v[i..i+1] += (hi || lo), for lo in [0, 2^32). */
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

  const [K, iv] = shaTables();
  const hash = iv.slice();
  const w = new Int32Array(160);
  const v = new Int32Array(16);
  for (let p = 0; p < m.length; p += 128) {
    // §6.4.2 step 1: the message schedule, as (high, low) pairs.
    for (let t = 0; t < 32; t++) w[t] = view.getInt32(p + 4 * t);
    for (let t = 32; t < 160; t += 2) {
      const h2 = w[t - 4],
        l2 = w[t - 3],
        h15 = w[t - 30],
        l15 = w[t - 29];
      const lo = (mix(l2, h2, 19, 61, 6) >>> 0) + (w[t - 13] >>> 0) + (mix(l15, h15, 1, 8, 7) >>> 0) + (w[t - 31] >>> 0);
      w[t] = mix(h2, l2, 19, 61, 6, true) + w[t - 14] + mix(h15, l15, 1, 8, 7, true) + w[t - 32] + ((lo / TWO_32) | 0);
      w[t + 1] = lo;
    }
    // Steps 2-4: v = a..h as (high, low) pairs; each round shifts them down one pair.
    v.set(hash);
    for (let t = 0; t < 80; t++) {
      const ah = v[0],
        al = v[1],
        bh = v[2],
        bl = v[3],
        ch = v[4],
        cl = v[5];
      const eh = v[8],
        el = v[9],
        fh = v[10],
        fl = v[11],
        gh = v[12],
        gl = v[13];
      const t1l = (v[15] >>> 0) + (mix(el, eh, 14, 18, 41) >>> 0) + (((el & fl) ^ (~el & gl)) >>> 0) + (K[2 * t + 1] >>> 0) + (w[2 * t + 1] >>> 0);
      const t1h = v[14] + mix(eh, el, 14, 18, 41) + ((eh & fh) ^ (~eh & gh)) + K[2 * t] + w[2 * t] + ((t1l / TWO_32) | 0);
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
