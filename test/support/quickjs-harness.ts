/**
 * What runs on both sides of the QuickJS boundary: the VM-side sources the harness evaluates
 * (deterministic image bytes, the vector-case runner, the `fwsealHarness` helper) and the same
 * sources as Node functions, so a difference in results can only come from the verifier; and the
 * JSON in which bytes cross the boundary. QuickJS has no TextEncoder or Buffer, so bytes travel as
 * hex inside JSON: a Uint8Array is written `{"$hex": "..."}` on either side and revived into a
 * Uint8Array on the other.
 */
import { QJS_HEX_CODEC_SOURCE } from '../../hil/quickjs-verifier.js';

/**
 * Deterministic image bytes, one source for Node and the VM: xorshift32 (Marsaglia 2003, shifts
 * 13/17/5), the low byte of each state. Returns the state to continue from.
 */
export const XORSHIFT32_SOURCE = `function xorshift32Fill(state, out) {
  var x = state >>> 0;
  for (var i = 0; i < out.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 255;
  }
  return x;
}`;

/**
 * One case of test/vectors/fwseal/manifest-vectors.json, run against a verifier module (the device
 * API: `fwsealVerifier` in the VM, device/index.js in Node). The same source runs on both sides,
 * so a difference in results can only come from the verifier. Plain ES2020, no host objects.
 *
 * verifyManifest(envelope, trust, state); then, if the case has an image and the manifest passed,
 * imageVerifier: digest page p is added right before the bytes of its chunks stream, the bytes go
 * in `pieceSize` pieces, and bytes beyond the signed image size are sent last. The result is the
 * first failure, or finish().
 */
export const CASE_RUNNER_SOURCE = `function runCase(v, c, images, hex) {
  var st = c.state;
  var state = { deviceClass: st.deviceClass, counter: st.counter };
  if (st.revocations !== undefined) state.revocations = hex(st.revocations);
  if (st.revocationVersion !== undefined) state.revocationVersion = st.revocationVersion;
  if (st.trustVersion !== undefined) state.trustVersion = st.trustVersion;
  var r = v.verifyManifest(hex(c.envelope), hex(c.trust), state);
  if (!r.ok || c.image === undefined) return { stage: 'manifest', code: r.code, error: r.error };
  var m = r.manifest;
  var img = hex(images[c.image.bytes]);
  var piece = c.image.pieceSize;
  var pages = c.image.digestPages || [];
  var iv = v.imageVerifier(m);
  var pageBytes = 128 * m.chunkSize;
  var sent = 0;
  function stream(end) {
    while (sent < end) {
      var n = Math.min(piece, end - sent);
      var u = iv.update(img.subarray(sent, sent + n));
      sent += n;
      if (!u.ok) return u;
    }
    return null;
  }
  for (var i = 0; i < pages.length; i++) {
    var p = pages[i];
    var f = stream(Math.min(img.length, m.imageSize, p.page * pageBytes));
    if (f) return { stage: 'image', code: f.code, error: f.error };
    var a = iv.addDigestPage(p.page, hex(p.leaves), hex(p.proof));
    if (!a.ok) return { stage: 'image', code: a.code, error: a.error };
  }
  var g = stream(img.length);
  if (g) return { stage: 'image', code: g.code, error: g.error };
  var fin = iv.finish();
  return { stage: 'image', code: fin.code, error: fin.error };
}`;

/** The VM-side helper: the only global the harness adds besides the bundle's `fwsealVerifier`. */
export const HARNESS_SOURCE = `(function (g) {
  ${QJS_HEX_CODEC_SOURCE}
  ${XORSHIFT32_SOURCE}
  ${CASE_RUNNER_SOURCE}
  g.fwsealHarness = {
    hex: hex,
    toHex: toHex,
    toJson: function (v) { return v === undefined ? undefined : JSON.stringify(v, replacer); },
    fromJson: function (s) { return JSON.parse(s, reviver); },
    /** Call fwsealVerifier[name] with JSON-encoded arguments; the result comes back as JSON. */
    call: function (name, argsJson) {
      var f = g.fwsealVerifier[name];
      if (typeof f !== 'function') throw new TypeError('fwsealVerifier.' + name + ' is not a function');
      return JSON.stringify(f.apply(null, JSON.parse(argsJson, reviver)), replacer);
    },
    /** Pre-converted inputs (setBytes), kept out of what a measurement pays for. */
    slots: {},
    /** The last string passed with evalJson(code, input). */
    input: undefined,
    xorshift32Fill: xorshift32Fill,
    /** CASE_RUNNER_SOURCE against fwsealVerifier, or against \`verifier\` (e.g. one from createVerifier). */
    runCase: function (c, images, verifier) { return runCase(verifier || g.fwsealVerifier, c, images, hex); },
  };
})(globalThis);`;

// ---- the same sources, as Node functions ----

export type VectorCase = {
  readonly name: string;
  readonly envelope: string;
  readonly trust: string;
  readonly state: {
    readonly deviceClass: string;
    readonly counter: number;
    readonly revocations?: string;
    readonly revocationVersion?: number;
    readonly trustVersion?: number;
  };
  readonly image?: {
    readonly bytes: string;
    readonly pieceSize: number;
    readonly digestPages?: readonly { readonly page: number; readonly leaves: string; readonly proof: string }[];
  };
};
export type CaseOutcome = { readonly stage: 'manifest' | 'image'; readonly code: number; readonly error: string };

const fromHexNode = (h: string): Uint8Array => {
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) throw new TypeError(`bad hex: ${h.slice(0, 40)}`);
  return Uint8Array.from(Buffer.from(h, 'hex'));
};

/** xorshift32Fill from XORSHIFT32_SOURCE, for Node. */
export const xorshift32Fill = new Function(`${XORSHIFT32_SOURCE}; return xorshift32Fill;`)() as (state: number, out: Uint8Array) => number;

const runCaseSource = new Function(`${CASE_RUNNER_SOURCE}; return runCase;`)() as (
  v: unknown,
  c: VectorCase,
  images: Readonly<Record<string, string>>,
  hex: (h: string) => Uint8Array,
) => CaseOutcome;

/** CASE_RUNNER_SOURCE in Node against a verifier module (e.g. `import * as device from '../device/index.js'`). */
export function runVectorCase(verifier: unknown, c: VectorCase, images: Readonly<Record<string, string>>): CaseOutcome {
  return runCaseSource(verifier, c, images, fromHexNode);
}

/** `length` bytes of the xorshift32 stream from `seed`, exactly as the VM makes them piece by piece. */
export function xorshift32Bytes(seed: number, length: number, pieceSize = 4096): Uint8Array {
  const out = new Uint8Array(length);
  let state = seed;
  for (let o = 0; o < length; o += pieceSize) state = xorshift32Fill(state, out.subarray(o, Math.min(length, o + pieceSize)));
  return out;
}

// ---- JSON with bytes ----

function encodeBytes(value: unknown): unknown {
  if (value instanceof Uint8Array) return { $hex: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex') };
  if (Array.isArray(value)) return value.map(encodeBytes);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = encodeBytes(v);
    return out;
  }
  return value;
}

/** JSON for the VM: Uint8Arrays (Buffers too) become {"$hex": ...}. */
export function toVmJson(value: unknown): string {
  return JSON.stringify(encodeBytes(value));
}

/** Parse the VM's JSON: {"$hex": ...} becomes a Uint8Array. */
export function fromVmJson(json: string): unknown {
  return JSON.parse(json, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1 && typeof (v as { $hex?: unknown }).$hex === 'string'
      ? fromHexNode((v as { $hex: string }).$hex)
      : v,
  );
}
