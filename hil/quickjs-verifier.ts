/**
 * The device verifier bundle (dist/device/fwseal-verifier.js) running inside QuickJS
 * (quickjs-emscripten, the bellard build as WASM), wrapped as a `Verifier` so the simulated device's
 * UpdateAgent and boot agent verify with the code a QuickJS-class device runs (`--runtime quickjs`).
 *
 * Bytes cross the VM boundary as hex inside JSON ({"$hex": ...} both ways; QuickJS has no
 * TextEncoder or Buffer). Stateful results (a proven DigestPage, an ImageVerifier) stay in the VM in
 * a small registry and are driven through proxies; the registry keeps the most recent few, which is
 * all the agent ever holds (one page, one image check). Verified trust bundles and revocation lists
 * stay in the VM too (a second registry) and come back as handles: the verifier takes only the
 * objects it produced (SPEC.md §6.6), never a copy rebuilt from JSON.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import quickjsVariant from '@jitl/quickjs-wasmfile-release-sync';
import { newQuickJSWASMModuleFromVariant, type QuickJSContext, type QuickJSHandle } from 'quickjs-emscripten-core';
import { type Verifier } from '../device/index.js';
import { type DigestPage, type ImageVerifier } from '../device/verify/image.js';
import { type Result } from '../shared/codes.js';

const here = dirname(fileURLToPath(import.meta.url));

/** dist/device/fwseal-verifier.js: FWSEAL_DEVICE_BUNDLE, else beside the build or the sources. */
export function defaultBundlePath(): string {
  const candidates = [
    process.env.FWSEAL_DEVICE_BUNDLE,
    join(here, '..', 'device', 'fwseal-verifier.js'),
    join(here, '..', 'dist', 'device', 'fwseal-verifier.js'),
  ];
  for (const c of candidates) if (c && existsSync(c)) return c;
  throw new Error('the device bundle dist/device/fwseal-verifier.js is missing (npm run build)');
}

/**
 * VM-side hex codec for passing bytes through JSON ({ $hex } objects), shared with the test harness
 * (test/support/quickjs-harness.ts). Strict: odd lengths and non-hex digits throw.
 */
export const QJS_HEX_CODEC_SOURCE = `  var DIGITS = '0123456789abcdef';
  var NIBBLE = new Int8Array(128).fill(-1);
  for (var i = 0; i < 16; i++) { NIBBLE[DIGITS.charCodeAt(i)] = i; NIBBLE[DIGITS.toUpperCase().charCodeAt(i)] = i; }
  function hex(s) {
    if (typeof s !== 'string' || s.length % 2 !== 0) throw new TypeError('hex: not an even-length string');
    var out = new Uint8Array(s.length >> 1);
    for (var j = 0; j < out.length; j++) {
      var hi = NIBBLE[s.charCodeAt(2 * j)], lo = NIBBLE[s.charCodeAt(2 * j + 1)];
      if (!(hi >= 0 && lo >= 0)) throw new TypeError('hex: bad digit');
      out[j] = (hi << 4) | lo;
    }
    return out;
  }
  function toHex(b) {
    var s = '';
    for (var j = 0; j < b.length; j++) s += DIGITS[b[j] >> 4] + DIGITS[b[j] & 15];
    return s;
  }
  function replacer(k, v) { return v instanceof Uint8Array ? { $hex: toHex(v) } : v; }
  function reviver(k, v) {
    return v !== null && typeof v === 'object' && typeof v.$hex === 'string' && Object.keys(v).length === 1 ? hex(v.$hex) : v;
  }`;

const HELPER = `(function (g) {
  ${QJS_HEX_CODEC_SOURCE}
  // Two registries: stateful results (image verifiers, digest pages) and verified trust bundles and
  // revocation lists, which the verifier accepts back only as the very objects it returned.
  var stores = { state: { objs: {}, order: [] }, trust: { objs: {}, order: [] } };
  var next = 1;
  function keep(store, o) {
    var id = next++;
    store.objs[id] = o;
    store.order.push(id);
    while (store.order.length > 16) delete store.objs[store.order.shift()];
    return id;
  }
  function find(id) {
    var o = stores.state.objs[id] || stores.trust.objs[id];
    if (!o) throw new Error('object ' + id + ' is gone');
    return o;
  }
  function args(json) {
    return JSON.parse(json, function (k, v) {
      var r = reviver(k, v);
      return r !== null && typeof r === 'object' && typeof r.$obj === 'number' ? find(r.$obj) : r;
    });
  }
  function handle(o, store) {
    var out = { $obj: keep(store, o) };
    for (var k in o) out[k] = o[k];
    return out;
  }
  g.hil = {
    call: function (name, argsJson) {
      var r = g.fwsealVerifier[name].apply(null, args(argsJson));
      if (name === 'imageVerifier') r = { $obj: keep(stores.state, r) };
      else if (r && r.ok && (r.digestPage || r.trust || r.revocations)) {
        var out = {};
        for (var k in r) out[k] = r[k];
        if (r.digestPage) out.digestPage = { $obj: keep(stores.state, r.digestPage), page: r.digestPage.page, root: r.digestPage.root };
        if (r.trust) out.trust = handle(r.trust, stores.trust);
        if (r.revocations) out.revocations = handle(r.revocations, stores.trust);
        r = out;
      }
      return JSON.stringify(r, replacer);
    },
    method: function (id, name, argsJson) {
      var o = find(id);
      return JSON.stringify(o[name].apply(o, args(argsJson)), replacer);
    },
  };
})(globalThis);`;

function encode(value: unknown): unknown {
  // A verified trust bundle or revocation list goes back as its VM handle: the VM-side object.
  if (value !== null && typeof value === 'object' && typeof (value as { $obj?: unknown }).$obj === 'number') return { $obj: (value as { $obj: number }).$obj };
  if (value instanceof Uint8Array) return { $hex: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex') };
  if (Array.isArray(value)) return value.map(encode);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = encode(v);
    return out;
  }
  return value;
}

function decode(json: string): unknown {
  return JSON.parse(json, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1 && typeof (v as { $hex?: unknown }).$hex === 'string'
      ? new Uint8Array(Buffer.from((v as { $hex: string }).$hex, 'hex'))
      : v,
  );
}

export type QuickJSVerifier = Verifier & { dispose(): void };

/** The device bundle and HELPER loaded in a fresh QuickJS runtime. */
type BundleVm = {
  /**
   * `fwsealVerifier[name](...args)` in the VM, its result decoded from JSON. The result is taken to be
   * of the type the caller names (the bundle's own return type, or a { $obj } handle): the one
   * unchecked step at this boundary, as the bundle is the very code whose results are described.
   */
  call<T>(name: string, ...args: unknown[]): T;
  /** A method of an object the VM keeps in its registry (an image verifier, a digest page). */
  method<T>(id: number, name: string, ...args: unknown[]): T;
  dispose(): void;
};

/** A digest page kept in the VM, as `verifyDigestPage` returns it. */
type KeptPage = { $obj: number; page: number; root: Uint8Array };

async function openBundleVm(bundlePath: string): Promise<BundleVm> {
  const module = await newQuickJSWASMModuleFromVariant(quickjsVariant);
  const runtime = module.newRuntime();
  const ctx: QuickJSContext = runtime.newContext();
  const run = (code: string, file: string) => {
    const r = ctx.evalCode(code, file);
    if (r.error) {
      const e = ctx.dump(r.error);
      r.error.dispose();
      throw new Error(`QuickJS: ${JSON.stringify(e)}`);
    }
    r.value.dispose();
  };
  run(readFileSync(bundlePath, 'utf8'), 'fwseal-verifier.js');
  run(HELPER, 'hil-helper.js');
  const hil = ctx.getProp(ctx.global, 'hil');
  const fnCall = ctx.getProp(hil, 'call');
  const fnMethod = ctx.getProp(hil, 'method');

  const invoke = (fn: QuickJSHandle, args: (string | number)[]): unknown => {
    const handles = args.map((a) => (typeof a === 'number' ? ctx.newNumber(a) : ctx.newString(a)));
    const r = ctx.callFunction(fn, ctx.undefined, ...handles);
    for (const h of handles) h.dispose();
    if (r.error) {
      const e = ctx.dump(r.error);
      r.error.dispose();
      throw new Error(`QuickJS: ${JSON.stringify(e)}`);
    }
    const s = ctx.getString(r.value);
    r.value.dispose();
    return decode(s);
  };
  // Trailing undefined arguments are dropped (JSON would turn them into null, which is not "absent").
  const present = (args: unknown[]) => {
    let n = args.length;
    while (n > 0 && args[n - 1] === undefined) n--;
    return args.slice(0, n);
  };
  return {
    call: <T>(name: string, ...args: unknown[]) => invoke(fnCall, [name, JSON.stringify(encode(present(args)))]) as T,
    method: <T>(id: number, name: string, ...args: unknown[]) => invoke(fnMethod, [id, name, JSON.stringify(encode(args))]) as T,
    dispose: () => {
      fnCall.dispose();
      fnMethod.dispose();
      hil.dispose();
      ctx.dispose();
      runtime.dispose();
    },
  };
}

/** A Verifier whose every check runs in the device bundle inside a fresh QuickJS runtime. */
export async function quickjsVerifier(bundlePath: string = defaultBundlePath()): Promise<QuickJSVerifier> {
  const vm = await openBundleVm(bundlePath);
  const { call, method } = vm;
  const page = (p: KeptPage): DigestPage =>
    Object.freeze({
      page: p.page,
      root: p.root,
      checkChunk: (index: number, chunk: Uint8Array) => method<Result>(p.$obj, 'checkChunk', index, chunk),
      leaf: (index: number) => method<Uint8Array | null>(p.$obj, 'leaf', index),
    });

  return Object.freeze({
    verifyManifest: (envelope, trust, state) => call('verifyManifest', envelope, trust, state),
    verifyManifestWithTrust: (envelope, trust, state) => call('verifyManifestWithTrust', envelope, trust, state),
    loadTrust: (trust) => call('loadTrust', trust),
    verifyTrustUpdate: (candidate, current, stored) => call('verifyTrustUpdate', candidate, current, stored),
    verifyRevocations: (list, trust, minVersion, stored) => call('verifyRevocations', list, trust, minVersion, stored),
    verifyLogProof: (envelope, proof, trust, stored) => call('verifyLogProof', envelope, proof, trust, stored),
    imageVerifier: (manifest): ImageVerifier => {
      const { $obj: id } = call<{ $obj: number }>('imageVerifier', manifest);
      return Object.freeze({
        addDigestPage: (p: number, leaves: Uint8Array, proof: Uint8Array) => method<Result>(id, 'addDigestPage', p, leaves, proof),
        update: (bytes: Uint8Array) => method<Result<{ offset: number }>>(id, 'update', bytes),
        finish: () => method<Result>(id, 'finish'),
      });
    },
    verifyChunk: (manifest, index, chunk, proof) => call('verifyChunk', manifest, index, chunk, proof),
    verifyDigestPage: (manifest, p, leaves, proof) => {
      const r = call<Result<{ digestPage: KeptPage }>>('verifyDigestPage', manifest, p, leaves, proof);
      return r.ok ? { ...r, digestPage: page(r.digestPage) } : r;
    },
    verifyEd25519: (signature, message, publicKey) => call<boolean>('verifyEd25519', signature, message, publicKey),
    keyId: (publicKey) => call<Uint8Array>('keyId', publicKey),
    sha256: (data) => call<Uint8Array>('sha256', data),
    sha512: (data) => call<Uint8Array>('sha512', data),
    dispose: () => vm.dispose(),
  } satisfies QuickJSVerifier);
}
