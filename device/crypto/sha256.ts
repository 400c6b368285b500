/**
 * SHA-256 (FIPS 180-4 §6.2), one-shot, shaped for bytecode interpreters: QuickJS-class engines on
 * gateways and boot agents hash every firmware image with it at boot, and where a JIT forgives array
 * traffic and allocation, an interpreter pays for every bytecode. So:
 *  - the eight working variables and a sliding window of sixteen schedule words are locals;
 *  - rounds are unrolled eight at a time, so renaming the registers replaces the h <- g <- ... <- a
 *    shuffle, and each pass of eight rounds slides the window by eight words;
 *  - each sum is wrapped with `| 0` once, and every shift result stays an int32;
 *  - whole blocks are read straight from the input (a DataView: one call per word); only the last
 *    one or two blocks are copied, for the padding; nothing is allocated per block and nothing is kept
 *    between calls, so the function is reentrant.
 * In QuickJS and QuickJS-ng this is about 3x @noble/hashes' sha256. Unrolling all 64 rounds was ~15%
 * faster but about twice the gzip size; a rolled loop was half the size and ~25% slower.
 */

/**
 * §4.2.2 constants; never written. They are also the high halves of SHA-512's first 64 constants
 * (§4.2.3), which ./sha512.ts reuses.
 */
// prettier-ignore
export const SHA256_K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

// `var` throughout: QuickJS checks every read of a let/const binding against its temporal dead
// zone, which cost 5-13% here.
export function sha256(data: Uint8Array): Uint8Array {
  var K = SHA256_K; // a local: cheaper to read than the module binding
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
  var h0 = 0x6a09e667, h1 = 0xbb67ae85 | 0, h2 = 0x3c6ef372, h3 = 0xa54ff53a | 0;
  var h4 = 0x510e527f, h5 = 0x9b05688c | 0, h6 = 0x1f83d9ab, h7 = 0x5be0cd19;
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
    var a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7, x = 0;
    // Steps 2-3: eight rounds per pass (t = j..j+7).
    for (var j = 0; ; j += 8) {
      // prettier-ignore
      {
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
      }
      if (j === 56) break;
      // Slide the window by eight: w0..w7 take W(t+8)..W(t+15), and while the schedule lasts
      // (t + 16 < 64) w8..w15 take W(t+16)..W(t+23) = σ1(W(t-2)) + W(t-7) + σ0(W(t-15)) + W(t-16).
      if (j < 48) {
        // prettier-ignore
        {
        x = (w0 + (((w14 >>> 17) | (w14 << 15)) ^ ((w14 >>> 19) | (w14 << 13)) ^ (w14 >>> 10)) + w9 + (((w1 >>> 7) | (w1 << 25)) ^ ((w1 >>> 18) | (w1 << 14)) ^ (w1 >>> 3))) | 0;
        w0 = w8;
        w8 = x;
        x = (w1 + (((w15 >>> 17) | (w15 << 15)) ^ ((w15 >>> 19) | (w15 << 13)) ^ (w15 >>> 10)) + w10 + (((w2 >>> 7) | (w2 << 25)) ^ ((w2 >>> 18) | (w2 << 14)) ^ (w2 >>> 3))) | 0;
        w1 = w9;
        w9 = x;
        x = (w2 + (((w8 >>> 17) | (w8 << 15)) ^ ((w8 >>> 19) | (w8 << 13)) ^ (w8 >>> 10)) + w11 + (((w3 >>> 7) | (w3 << 25)) ^ ((w3 >>> 18) | (w3 << 14)) ^ (w3 >>> 3))) | 0;
        w2 = w10;
        w10 = x;
        x = (w3 + (((w9 >>> 17) | (w9 << 15)) ^ ((w9 >>> 19) | (w9 << 13)) ^ (w9 >>> 10)) + w12 + (((w4 >>> 7) | (w4 << 25)) ^ ((w4 >>> 18) | (w4 << 14)) ^ (w4 >>> 3))) | 0;
        w3 = w11;
        w11 = x;
        x = (w4 + (((w10 >>> 17) | (w10 << 15)) ^ ((w10 >>> 19) | (w10 << 13)) ^ (w10 >>> 10)) + w13 + (((w5 >>> 7) | (w5 << 25)) ^ ((w5 >>> 18) | (w5 << 14)) ^ (w5 >>> 3))) | 0;
        w4 = w12;
        w12 = x;
        x = (w5 + (((w11 >>> 17) | (w11 << 15)) ^ ((w11 >>> 19) | (w11 << 13)) ^ (w11 >>> 10)) + w14 + (((w6 >>> 7) | (w6 << 25)) ^ ((w6 >>> 18) | (w6 << 14)) ^ (w6 >>> 3))) | 0;
        w5 = w13;
        w13 = x;
        x = (w6 + (((w12 >>> 17) | (w12 << 15)) ^ ((w12 >>> 19) | (w12 << 13)) ^ (w12 >>> 10)) + w15 + (((w7 >>> 7) | (w7 << 25)) ^ ((w7 >>> 18) | (w7 << 14)) ^ (w7 >>> 3))) | 0;
        w6 = w14;
        w14 = x;
        x = (w7 + (((w13 >>> 17) | (w13 << 15)) ^ ((w13 >>> 19) | (w13 << 13)) ^ (w13 >>> 10)) + w8 + (((w0 >>> 7) | (w0 << 25)) ^ ((w0 >>> 18) | (w0 << 14)) ^ (w0 >>> 3))) | 0;
        w7 = w15;
        w15 = x;
        }
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
