/**
 * SHA-256 (FIPS 180-4 §6.2), one-shot, shaped for bytecode interpreters: QuickJS-class engines on
 * gateways and boot agents hash every firmware image with it at boot, and where a JIT forgives array
 * traffic and allocation, an interpreter pays for every bytecode. So:
 *  - the eight working variables and a sliding window of sixteen schedule words are locals;
 *  - rounds are unrolled eight at a time, so renaming the registers replaces the h <- g <- ... <- a
 *    shuffle, and each pass of eight rounds slides the window by eight words;
 *  - each sum is wrapped with `| 0` once, and every shift result stays an int32;
 *  - whole blocks are read straight from the input (a DataView: one call per word, a little faster
 *    and smaller than four byte reads); only the last one or two blocks are copied, for the padding;
 *    nothing is allocated per block and nothing is kept between calls, so the function is reentrant.
 * Measured in quickjs-emscripten 0.32 (quickjs and quickjs-ng): about 3x @noble/hashes' sha256.
 * Unrolling all 64 rounds was 5-10% faster at nearly twice the gzip size; a rolled loop was half the
 * size and a third slower; keeping the message schedule in an Int32Array cost 20-25%.
 */

/**
 * floor(p^(1/k) * 2^64) mod 2^64, the first 64 fractional bits of the k-th root of each of the first
 * `count` primes p, as (high, low) int32 pairs. Newton's method on integers, started above the
 * root (p < 2^9, so p^(1/k) < 2^ceil(9/k)), descends to the exact floor; no floating point.
 */
function rootFractions(k: bigint, count: number): Int32Array {
  const out = new Int32Array(2 * count);
  for (let n = 2, i = 0, d; i < out.length; n++) {
    for (d = 2; d * d <= n && n % d; d++);
    if (d * d <= n) continue; // not prime
    const scaled = BigInt(n) << (64n * k);
    let x = 1n << (64n + (8n + k) / k);
    for (let y; (y = ((k - 1n) * x + scaled / x ** (k - 1n)) / k) < x; ) x = y;
    out[i++] = Number((x >> 32n) & 0xffffffffn);
    out[i++] = Number(x & 0xffffffffn);
  }
  return out;
}

/**
 * SHA-512's constants K (§4.2.3: cube roots of the first 80 primes) and initial hash value H(0)
 * (§5.3.5: square roots of the first 8 primes), as (high, low) pairs, then SHA-256's K (§4.2.2: the
 * high halves of the first 64; its H(0), §5.3.3, is the high halves of SHA-512's); never written.
 * Derived on first use (about 2 ms in QuickJS, 4 ms in a cold Node process, which the host CLI,
 * hashing with node:crypto, never pays) because the spelled-out tables cost ~1.1 KB of the device
 * bundle's gzip budget; test/sha.test.ts pins them to the FIPS 180-4 tables.
 */
let tables: [Int32Array, Int32Array, Int32Array] | undefined;
export function shaTables(): [k512: Int32Array, iv512: Int32Array, k256: Int32Array] {
  if (!tables) {
    const k = rootFractions(3n, 80);
    tables = [k, rootFractions(2n, 8), k.filter((_, i) => i % 2 === 0)];
  }
  return tables;
}

// `var` throughout: QuickJS checks every read of a let/const binding against its temporal dead
// zone, which cost 5-14% here.
export function sha256(data: Uint8Array): Uint8Array {
  var T = shaTables();
  var K = T[2]; // a local: cheaper to read than the module binding
  var length = data.length;
  var fullBlocks = Math.floor(length / 64);
  var rest = length - 64 * fullBlocks;
  // §5.1.1 padding, in a copy of the trailing partial block only: 0x80, zeros, then the bit length
  // as a 64-bit big-endian integer.
  var tail = new Uint8Array(rest < 56 ? 64 : 128);
  tail.set(data.subarray(64 * fullBlocks));
  tail[rest] = 0x80;
  var tailView = new DataView(tail.buffer);
  tailView.setInt32(tail.length - 8, Math.floor(length / 0x20000000));
  tailView.setInt32(tail.length - 4, length << 3); // low 32 bits of 8 * length

  // §5.3.3 initial hash value H(0).
  var iv = T[1];
  var h0 = iv[0],
    h1 = iv[2],
    h2 = iv[4],
    h3 = iv[6],
    h4 = iv[8],
    h5 = iv[10],
    h6 = iv[12],
    h7 = iv[14];
  var view = new DataView(data.buffer, data.byteOffset, length);
  var blocks = fullBlocks + tail.length / 64;
  for (var block = 0, p = 0; block < blocks; block++, p += 64) {
    if (block === fullBlocks) {
      view = tailView;
      p = 0;
    }
    // §6.2.2 step 1: w0..w15 start as W(0)..W(15) and always hold W(t)..W(t+15).
    var w0 = view.getInt32(p);
    var w1 = view.getInt32(p + 4);
    var w2 = view.getInt32(p + 8);
    var w3 = view.getInt32(p + 12);
    var w4 = view.getInt32(p + 16);
    var w5 = view.getInt32(p + 20);
    var w6 = view.getInt32(p + 24);
    var w7 = view.getInt32(p + 28);
    var w8 = view.getInt32(p + 32);
    var w9 = view.getInt32(p + 36);
    var w10 = view.getInt32(p + 40);
    var w11 = view.getInt32(p + 44);
    var w12 = view.getInt32(p + 48);
    var w13 = view.getInt32(p + 52);
    var w14 = view.getInt32(p + 56);
    var w15 = view.getInt32(p + 60);
    var a = h0,
      b = h1,
      c = h2,
      d = h3,
      e = h4,
      f = h5,
      g = h6,
      h = h7,
      x = 0;
    // Steps 2-3: eight rounds per pass (t = j..j+7).
    for (var j = 0; ; j += 8) {
      h = (h + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) + (g ^ (e & (f ^ g))) + K[j] + w0) | 0;
      d = (d + h) | 0;
      h = (h + (((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) + ((a & b) | (c & (a | b)))) | 0;
      g = (g + (((d >>> 6) | (d << 26)) ^ ((d >>> 11) | (d << 21)) ^ ((d >>> 25) | (d << 7))) + (f ^ (d & (e ^ f))) + K[j + 1] + w1) | 0;
      c = (c + g) | 0;
      g = (g + (((h >>> 2) | (h << 30)) ^ ((h >>> 13) | (h << 19)) ^ ((h >>> 22) | (h << 10))) + ((h & a) | (b & (h | a)))) | 0;
      f = (f + (((c >>> 6) | (c << 26)) ^ ((c >>> 11) | (c << 21)) ^ ((c >>> 25) | (c << 7))) + (e ^ (c & (d ^ e))) + K[j + 2] + w2) | 0;
      b = (b + f) | 0;
      f = (f + (((g >>> 2) | (g << 30)) ^ ((g >>> 13) | (g << 19)) ^ ((g >>> 22) | (g << 10))) + ((g & h) | (a & (g | h)))) | 0;
      e = (e + (((b >>> 6) | (b << 26)) ^ ((b >>> 11) | (b << 21)) ^ ((b >>> 25) | (b << 7))) + (d ^ (b & (c ^ d))) + K[j + 3] + w3) | 0;
      a = (a + e) | 0;
      e = (e + (((f >>> 2) | (f << 30)) ^ ((f >>> 13) | (f << 19)) ^ ((f >>> 22) | (f << 10))) + ((f & g) | (h & (f | g)))) | 0;
      d = (d + (((a >>> 6) | (a << 26)) ^ ((a >>> 11) | (a << 21)) ^ ((a >>> 25) | (a << 7))) + (c ^ (a & (b ^ c))) + K[j + 4] + w4) | 0;
      h = (h + d) | 0;
      d = (d + (((e >>> 2) | (e << 30)) ^ ((e >>> 13) | (e << 19)) ^ ((e >>> 22) | (e << 10))) + ((e & f) | (g & (e | f)))) | 0;
      c = (c + (((h >>> 6) | (h << 26)) ^ ((h >>> 11) | (h << 21)) ^ ((h >>> 25) | (h << 7))) + (b ^ (h & (a ^ b))) + K[j + 5] + w5) | 0;
      g = (g + c) | 0;
      c = (c + (((d >>> 2) | (d << 30)) ^ ((d >>> 13) | (d << 19)) ^ ((d >>> 22) | (d << 10))) + ((d & e) | (f & (d | e)))) | 0;
      b = (b + (((g >>> 6) | (g << 26)) ^ ((g >>> 11) | (g << 21)) ^ ((g >>> 25) | (g << 7))) + (a ^ (g & (h ^ a))) + K[j + 6] + w6) | 0;
      f = (f + b) | 0;
      b = (b + (((c >>> 2) | (c << 30)) ^ ((c >>> 13) | (c << 19)) ^ ((c >>> 22) | (c << 10))) + ((c & d) | (e & (c | d)))) | 0;
      a = (a + (((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7))) + (h ^ (f & (g ^ h))) + K[j + 7] + w7) | 0;
      e = (e + a) | 0;
      a = (a + (((b >>> 2) | (b << 30)) ^ ((b >>> 13) | (b << 19)) ^ ((b >>> 22) | (b << 10))) + ((b & c) | (d & (b | c)))) | 0;
      if (j === 56) break;
      // Slide the window by eight: w0..w7 take W(t+8)..W(t+15), and while the schedule lasts
      // (t + 16 < 64) w8..w15 take W(t+16)..W(t+23) = σ1(W(t-2)) + W(t-7) + σ0(W(t-15)) + W(t-16).
      if (j < 48) {
        x =
          (w0 +
            (((w14 >>> 17) | (w14 << 15)) ^ ((w14 >>> 19) | (w14 << 13)) ^ (w14 >>> 10)) +
            w9 +
            (((w1 >>> 7) | (w1 << 25)) ^ ((w1 >>> 18) | (w1 << 14)) ^ (w1 >>> 3))) |
          0;
        w0 = w8;
        w8 = x;
        x =
          (w1 +
            (((w15 >>> 17) | (w15 << 15)) ^ ((w15 >>> 19) | (w15 << 13)) ^ (w15 >>> 10)) +
            w10 +
            (((w2 >>> 7) | (w2 << 25)) ^ ((w2 >>> 18) | (w2 << 14)) ^ (w2 >>> 3))) |
          0;
        w1 = w9;
        w9 = x;
        x =
          (w2 +
            (((w8 >>> 17) | (w8 << 15)) ^ ((w8 >>> 19) | (w8 << 13)) ^ (w8 >>> 10)) +
            w11 +
            (((w3 >>> 7) | (w3 << 25)) ^ ((w3 >>> 18) | (w3 << 14)) ^ (w3 >>> 3))) |
          0;
        w2 = w10;
        w10 = x;
        x =
          (w3 +
            (((w9 >>> 17) | (w9 << 15)) ^ ((w9 >>> 19) | (w9 << 13)) ^ (w9 >>> 10)) +
            w12 +
            (((w4 >>> 7) | (w4 << 25)) ^ ((w4 >>> 18) | (w4 << 14)) ^ (w4 >>> 3))) |
          0;
        w3 = w11;
        w11 = x;
        x =
          (w4 +
            (((w10 >>> 17) | (w10 << 15)) ^ ((w10 >>> 19) | (w10 << 13)) ^ (w10 >>> 10)) +
            w13 +
            (((w5 >>> 7) | (w5 << 25)) ^ ((w5 >>> 18) | (w5 << 14)) ^ (w5 >>> 3))) |
          0;
        w4 = w12;
        w12 = x;
        x =
          (w5 +
            (((w11 >>> 17) | (w11 << 15)) ^ ((w11 >>> 19) | (w11 << 13)) ^ (w11 >>> 10)) +
            w14 +
            (((w6 >>> 7) | (w6 << 25)) ^ ((w6 >>> 18) | (w6 << 14)) ^ (w6 >>> 3))) |
          0;
        w5 = w13;
        w13 = x;
        x =
          (w6 +
            (((w12 >>> 17) | (w12 << 15)) ^ ((w12 >>> 19) | (w12 << 13)) ^ (w12 >>> 10)) +
            w15 +
            (((w7 >>> 7) | (w7 << 25)) ^ ((w7 >>> 18) | (w7 << 14)) ^ (w7 >>> 3))) |
          0;
        w6 = w14;
        w14 = x;
        x =
          (w7 +
            (((w13 >>> 17) | (w13 << 15)) ^ ((w13 >>> 19) | (w13 << 13)) ^ (w13 >>> 10)) +
            w8 +
            (((w0 >>> 7) | (w0 << 25)) ^ ((w0 >>> 18) | (w0 << 14)) ^ (w0 >>> 3))) |
          0;
        w7 = w15;
        w15 = x;
      } else {
        w0 = w8;
        w1 = w9;
        w2 = w10;
        w3 = w11;
        w4 = w12;
        w5 = w13;
        w6 = w14;
        w7 = w15;
      }
    }
    // Step 4.
    h0 = (h0 + a) | 0;
    h1 = (h1 + b) | 0;
    h2 = (h2 + c) | 0;
    h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0;
    h5 = (h5 + f) | 0;
    h6 = (h6 + g) | 0;
    h7 = (h7 + h) | 0;
  }
  var digest = new Uint8Array(32);
  var out = new DataView(digest.buffer);
  out.setInt32(0, h0);
  out.setInt32(4, h1);
  out.setInt32(8, h2);
  out.setInt32(12, h3);
  out.setInt32(16, h4);
  out.setInt32(20, h5);
  out.setInt32(24, h6);
  out.setInt32(28, h7);
  return digest;
}
