/**
 * The device bundle inside QuickJS (quickjs-emscripten: the bellard `quickjs` and the `quickjs-ng`
 * WASM builds), for tests and for tools/bench.
 *
 * `loadVerifierInQuickJS` evaluates dist/device/fwseal-verifier.js (or `bundlePath`, or the
 * FWSEAL_DEVICE_BUNDLE environment variable) in a fresh runtime and context, after one small helper,
 * the global `fwsealHarness`, that moves bytes across the VM boundary. QuickJS has no TextEncoder or
 * Buffer, so bytes travel as hex inside JSON: a Uint8Array is written `{"$hex": "..."}` on either
 * side and revived into a Uint8Array on the other. Inputs that a measurement should not pay for can
 * be converted beforehand into `fwsealHarness.slots` (`setBytes`).
 *
 * Memory, as these builds count it (read before trusting a limit): the WASM builds have no
 * malloc_usable_size, so QuickJS's allocator accounts every live block as 8 bytes (its
 * MALLOC_OVERHEAD) whatever its real size, and `setMemoryLimit(n)` refuses an allocation when
 * `8 * live blocks + requested size > n`. It therefore bounds the number of live allocations and
 * the largest single one, not bytes: ten live 100 KB typed arrays fit under a "128 KB" limit.
 * The byte figure is QuickJS's own estimate of live memory, `memory_used_size` of
 * JS_ComputeMemoryUsage (objects, shapes, atoms, strings, bytecode, array buffer contents), read
 * with `memory()` and sampled during a run by `measurePeak` from the interrupt handler.
 */
import { readFileSync } from 'node:fs';
import { QJS_HEX_CODEC_SOURCE } from '../../hil/quickjs-verifier.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import quickjsVariant from '@jitl/quickjs-wasmfile-release-sync';
import quickjsNgVariant from '@jitl/quickjs-ng-wasmfile-release-sync';
import {
  type QuickJSContext, type QuickJSHandle, type QuickJSRuntime, type QuickJSWASMModule, newQuickJSWASMModuleFromVariant,
} from 'quickjs-emscripten-core';

export type QuickJSVariantName = 'quickjs' | 'quickjs-ng';
/**
 * The device bundle's size budget, gzip -9 of dist/device/fwseal-verifier.js (SPEC.md §10). 13 KiB
 * since monotonic revocations and argument checks (issue 11) took the bundle past the old 12 KiB.
 */
export const BUNDLE_GZIP_BUDGET = 13 * 1024;
export const QUICKJS_VARIANTS: readonly QuickJSVariantName[] = ['quickjs', 'quickjs-ng'];

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The IIFE bundle the tests load: FWSEAL_DEVICE_BUNDLE if set, else dist/device/fwseal-verifier.js. */
export const DEFAULT_BUNDLE_PATH = process.env.FWSEAL_DEVICE_BUNDLE ?? join(repoRoot, 'dist', 'device', 'fwseal-verifier.js');

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
const HARNESS_SOURCE = `(function (g) {
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
  v: unknown, c: VectorCase, images: Readonly<Record<string, string>>, hex: (h: string) => Uint8Array,
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
      : v);
}

// ---- memory ----

export type MemorySample = {
  /** QuickJS's estimate of live bytes (memory_used_size of JS_ComputeMemoryUsage). */
  readonly usedBytes: number;
  /** Live malloc blocks (malloc_count). */
  readonly blocks: number;
  /** What the runtime's limit is compared with: 8 bytes per live block in these builds (malloc_size). */
  readonly accountedBytes: number;
  /** The limit set with setMemoryLimit (0 or -1: none). */
  readonly limit: number;
};

/** Parse JS_DumpMemoryUsage's text (the same numbers as computeMemoryUsage, without allocating in the VM). */
export function parseMemoryDump(dump: string): MemorySample {
  const num = (re: RegExp, i: number): number => {
    const m = re.exec(dump);
    return m ? Number(m[i]) : 0;
  };
  return {
    usedBytes: num(/^memory used\s+(\d+)\s+(\d+)/m, 2),
    blocks: num(/^memory allocated\s+(\d+)\s+(\d+)/m, 1),
    accountedBytes: num(/^memory allocated\s+(\d+)\s+(\d+)/m, 2),
    limit: num(/malloc limit: (-?\d+)/, 1),
  };
}

export type PeakOptions = {
  /** Interrupt the run (InternalError: interrupted) as soon as a sample exceeds this many used bytes. */
  readonly interruptAboveUsedBytes?: number;
};

export type PeakReport<T> = {
  readonly result: T;
  readonly before: MemorySample;
  readonly after: MemorySample;
  /** Highest usedBytes and blocks seen (before, at every interrupt poll, after). */
  readonly peakUsedBytes: number;
  readonly peakBlocks: number;
  /** Interrupt polls sampled (QuickJS polls about every 10,000 calls and back-jumps). */
  readonly samples: number;
  readonly interrupted: boolean;
  readonly ms: number;
};

// ---- the VM ----

export type LoadOptions = {
  readonly variant: QuickJSVariantName;
  /** runtime.setMemoryLimit before anything is evaluated (see the note at the top on what it counts). */
  readonly memoryLimit?: number;
  readonly bundlePath?: string;
  /** Evaluate the bundle (default true); false gives the bare runtime with the helper only. */
  readonly loadBundle?: boolean;
};

export type VerifierVM = {
  readonly variant: QuickJSVariantName;
  readonly runtime: QuickJSRuntime;
  readonly context: QuickJSContext;
  /** Milliseconds spent evaluating the bundle source. */
  readonly bundleMs: number;
  /** Memory right before and right after the bundle was evaluated. */
  readonly beforeBundle: MemorySample;
  readonly afterBundle: MemorySample;
  /**
   * Run JS in the VM and return its completion value as JSON (Uint8Arrays revived). `input`, if
   * given, is readable inside as the string `fwsealHarness.input`. Top-level let/const persist
   * between calls: wrap code in a block or a function.
   */
  evalJson<T = unknown>(code: string, input?: string): T;
  /** fwsealVerifier[name](...args) with bytes passed as hex; the result parsed back. */
  call<T = unknown>(name: string, ...args: unknown[]): T;
  /** Convert bytes into fwsealHarness.slots[name] inside the VM, ahead of a measured run. */
  setBytes(name: string, bytes: Uint8Array): void;
  setMemoryLimit(limit: number): void;
  memory(): MemorySample;
  /** Run `fn` (which calls into the VM) while sampling memory at every interrupt poll. */
  measurePeak<T>(fn: () => T, options?: PeakOptions): PeakReport<T>;
  dispose(): void;
};

const variants = { quickjs: quickjsVariant, 'quickjs-ng': quickjsNgVariant } as const;
const modules = new Map<QuickJSVariantName, Promise<QuickJSWASMModule>>();

/** The WASM module of a variant, loaded once per process (runtimes made from it are independent). */
export function quickjsModule(variant: QuickJSVariantName): Promise<QuickJSWASMModule> {
  let m = modules.get(variant);
  if (!m) {
    m = newQuickJSWASMModuleFromVariant(variants[variant]);
    modules.set(variant, m);
  }
  return m;
}

const bundleSources = new Map<string, string>();
function bundleSource(path: string): string {
  let s = bundleSources.get(path);
  if (s === undefined) {
    s = readFileSync(path, 'utf8');
    bundleSources.set(path, s);
  }
  return s;
}

/** An error thrown inside the VM, with its name and message, as a Node Error. */
export class QuickJSError extends Error {
  constructor(readonly vmName: string, message: string, readonly vmStack?: string) {
    super(`${vmName}: ${message}`);
    this.name = 'QuickJSError';
  }
}

export async function loadVerifierInQuickJS(options: LoadOptions): Promise<VerifierVM> {
  const module = await quickjsModule(options.variant);
  const runtime = module.newRuntime();
  const context = runtime.newContext();
  const disposables: QuickJSHandle[] = [];
  try {
    if (options.memoryLimit !== undefined) runtime.setMemoryLimit(options.memoryLimit);

    const unwrap = (r: ReturnType<QuickJSContext['evalCode']>): QuickJSHandle => {
      if (r.error) {
        const e = context.dump(r.error) as { name?: string; message?: string; stack?: string } | string;
        r.error.dispose();
        if (typeof e === 'object' && e !== null) throw new QuickJSError(String(e.name ?? 'Error'), String(e.message ?? e), e.stack);
        throw new QuickJSError('Thrown', String(e));
      }
      return r.value;
    };
    const evalVoid = (code: string, filename: string): void => unwrap(context.evalCode(code, filename)).dispose();

    evalVoid(HARNESS_SOURCE, 'fwseal-harness.js');
    const harness = unwrap(context.evalCode('fwsealHarness', 'harness-ref.js'));
    disposables.push(harness);
    const toJsonFn = context.getProp(harness, 'toJson');
    const callFn = context.getProp(harness, 'call');
    const slots = context.getProp(harness, 'slots');
    const hexFn = context.getProp(harness, 'hex');
    disposables.push(toJsonFn, callFn, slots, hexFn);

    const memory = (): MemorySample => parseMemoryDump(runtime.dumpMemoryUsage());
    const beforeBundle = memory();
    let bundleMs = 0;
    if (options.loadBundle !== false) {
      const src = bundleSource(options.bundlePath ?? DEFAULT_BUNDLE_PATH);
      const t0 = performance.now();
      evalVoid(src, 'fwseal-verifier.js');
      bundleMs = performance.now() - t0;
    }
    const afterBundle = memory();

    const jsonOf = (handle: QuickJSHandle): unknown => {
      const s = unwrap(context.callFunction(toJsonFn, context.undefined, handle));
      try {
        return context.typeof(s) === 'string' ? fromVmJson(context.getString(s)) : undefined;
      } finally {
        s.dispose();
      }
    };

    const vm: VerifierVM = {
      variant: options.variant,
      runtime,
      context,
      bundleMs,
      beforeBundle,
      afterBundle,
      evalJson<T>(code: string, input?: string): T {
        if (input !== undefined) {
          const h = context.newString(input);
          context.setProp(harness, 'input', h);
          h.dispose();
        }
        try {
          const value = unwrap(context.evalCode(code, 'eval.js'));
          try {
            return jsonOf(value) as T;
          } finally {
            value.dispose();
          }
        } finally {
          if (input !== undefined) context.setProp(harness, 'input', context.undefined);
        }
      },
      call<T>(name: string, ...args: unknown[]): T {
        const n = context.newString(name);
        const a = context.newString(toVmJson(args));
        try {
          const s = unwrap(context.callFunction(callFn, context.undefined, n, a));
          try {
            return (context.typeof(s) === 'string' ? fromVmJson(context.getString(s)) : undefined) as T;
          } finally {
            s.dispose();
          }
        } finally {
          n.dispose();
          a.dispose();
        }
      },
      setBytes(name: string, bytes: Uint8Array): void {
        const h = context.newString(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex'));
        try {
          const b = unwrap(context.callFunction(hexFn, context.undefined, h));
          context.setProp(slots, name, b);
          b.dispose();
        } finally {
          h.dispose();
        }
      },
      setMemoryLimit(limit: number): void {
        runtime.setMemoryLimit(limit);
      },
      memory,
      measurePeak<T>(fn: () => T, opts: PeakOptions = {}): PeakReport<T> {
        const before = memory();
        let peakUsedBytes = before.usedBytes;
        let peakBlocks = before.blocks;
        let samples = 0;
        let interrupted = false;
        runtime.setInterruptHandler(() => {
          const s = memory();
          samples++;
          if (s.usedBytes > peakUsedBytes) peakUsedBytes = s.usedBytes;
          if (s.blocks > peakBlocks) peakBlocks = s.blocks;
          if (opts.interruptAboveUsedBytes !== undefined && s.usedBytes > opts.interruptAboveUsedBytes) interrupted = true;
          return interrupted;
        });
        const t0 = performance.now();
        let result: T;
        try {
          result = fn();
        } catch (e) {
          if (!interrupted) throw e;
          throw new Error(`interrupted: QuickJS used ${peakUsedBytes} bytes, above ${opts.interruptAboveUsedBytes} (${String(e)})`);
        } finally {
          runtime.removeInterruptHandler();
        }
        const ms = performance.now() - t0;
        const after = memory();
        peakUsedBytes = Math.max(peakUsedBytes, after.usedBytes);
        peakBlocks = Math.max(peakBlocks, after.blocks);
        return { result, before, after, peakUsedBytes, peakBlocks, samples, interrupted, ms };
      },
      dispose(): void {
        runtime.removeInterruptHandler();
        for (const h of disposables.splice(0)) if (h.alive) h.dispose();
        context.dispose();
        runtime.dispose();
      },
    };
    return vm;
  } catch (e) {
    for (const h of disposables) if (h.alive) h.dispose();
    context.dispose();
    runtime.dispose();
    throw e;
  }
}

/**
 * The smallest runtime.setMemoryLimit (in the builds' own accounting, see above) for which
 * `run(limit)` succeeds, by bisection between `low` (fails) and `high` (succeeds), to `step` bytes.
 */
export async function smallestMemoryLimit(run: (limit: number) => Promise<boolean>, low: number, high: number, step = 256): Promise<number> {
  if (!(await run(high))) throw new Error(`the run fails even with a limit of ${high}`);
  while (high - low > step) {
    const mid = Math.floor((low + high) / 2);
    if (await run(mid)) high = mid;
    else low = mid;
  }
  return high;
}
