/**
 * The device bundle inside QuickJS (quickjs-emscripten: the bellard `quickjs` and the `quickjs-ng`
 * WASM builds), for tests and for tools/bench.
 *
 * `loadVerifierInQuickJS` evaluates dist/device/fwseal-verifier.js (or `bundlePath`, or the
 * FWSEAL_DEVICE_BUNDLE environment variable) in a fresh runtime and context, after one small helper,
 * the global `fwsealHarness`, that moves bytes across the VM boundary as hex inside JSON
 * (quickjs-harness.ts). Inputs that a measurement should not pay for can be converted beforehand
 * into `fwsealHarness.slots` (`setBytes`). What a memory limit and the memory figures count in these
 * builds: quickjs-memory.ts.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import quickjsNgVariant from '@jitl/quickjs-ng-wasmfile-release-sync';
import quickjsVariant from '@jitl/quickjs-wasmfile-release-sync';
import { newQuickJSWASMModuleFromVariant, type QuickJSContext, type QuickJSHandle, type QuickJSRuntime, type QuickJSWASMModule } from 'quickjs-emscripten-core';
import { fromVmJson, HARNESS_SOURCE, toVmJson } from './quickjs-harness.js';
import { type MemorySample, measurePeak, type PeakOptions, type PeakReport, parseMemoryDump } from './quickjs-memory.js';

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

export type LoadOptions = {
  readonly variant: QuickJSVariantName;
  /** runtime.setMemoryLimit before anything is evaluated (see quickjs-memory.ts on what it counts). */
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
  constructor(
    readonly vmName: string,
    message: string,
    readonly vmStack?: string,
  ) {
    super(`${vmName}: ${message}`);
    this.name = 'QuickJSError';
  }
}

type Unwrap = (r: ReturnType<QuickJSContext['evalCode']>) => QuickJSHandle;

/** The handle of an evaluation or call, or its error thrown as a QuickJSError. */
function unwrapper(context: QuickJSContext): Unwrap {
  return (r) => {
    if (r.error) {
      const e = context.dump(r.error) as { name?: string; message?: string; stack?: string } | string;
      r.error.dispose();
      if (typeof e === 'object' && e !== null) throw new QuickJSError(String(e.name ?? 'Error'), String(e.message ?? e), e.stack);
      throw new QuickJSError('Thrown', String(e));
    }
    return r.value;
  };
}

/** The VM's calls through `fwsealHarness`: code and arguments in, JSON with bytes out. Its handles go to `disposables`. */
function harnessCalls(
  context: QuickJSContext,
  harness: QuickJSHandle,
  unwrap: Unwrap,
  disposables: QuickJSHandle[],
): Pick<VerifierVM, 'evalJson' | 'call' | 'setBytes'> {
  const toJsonFn = context.getProp(harness, 'toJson');
  const callFn = context.getProp(harness, 'call');
  const slots = context.getProp(harness, 'slots');
  const hexFn = context.getProp(harness, 'hex');
  disposables.push(toJsonFn, callFn, slots, hexFn);

  const jsonOf = (handle: QuickJSHandle): unknown => {
    const s = unwrap(context.callFunction(toJsonFn, context.undefined, handle));
    try {
      return context.typeof(s) === 'string' ? fromVmJson(context.getString(s)) : undefined;
    } finally {
      s.dispose();
    }
  };

  return {
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
  };
}

export async function loadVerifierInQuickJS(options: LoadOptions): Promise<VerifierVM> {
  const module = await quickjsModule(options.variant);
  const runtime = module.newRuntime();
  const context = runtime.newContext();
  const disposables: QuickJSHandle[] = [];
  try {
    if (options.memoryLimit !== undefined) runtime.setMemoryLimit(options.memoryLimit);

    const unwrap = unwrapper(context);
    const evalVoid = (code: string, filename: string): void => unwrap(context.evalCode(code, filename)).dispose();

    evalVoid(HARNESS_SOURCE, 'fwseal-harness.js');
    const harness = unwrap(context.evalCode('fwsealHarness', 'harness-ref.js'));
    disposables.push(harness);
    const calls = harnessCalls(context, harness, unwrap, disposables);

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

    const vm: VerifierVM = {
      variant: options.variant,
      runtime,
      context,
      bundleMs,
      beforeBundle,
      afterBundle,
      ...calls,
      setMemoryLimit(limit: number): void {
        runtime.setMemoryLimit(limit);
      },
      memory,
      measurePeak<T>(fn: () => T, opts: PeakOptions = {}): PeakReport<T> {
        return measurePeak(runtime, memory, fn, opts);
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
