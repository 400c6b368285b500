/**
 * PKCS#11 modules, tokens and sessions (SPEC.md §15.2). The native binding (the optional package
 * pkcs11js) is loaded on first use only, so commands that never see a `pkcs11:` URI start without
 * native code. Each module is loaded and initialised once per process and finalised at exit; each
 * token gets one session per kind (read-only, read-write) that lives as long as the process, because
 * PKCS#11 logs a token out when its last session closes and a ceremony signs several times.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { FwsealError } from '../errors.js';
import { describePkcs11Uri, type Pkcs11Uri } from './pkcs11-uri.js';

export type Handle = Buffer;
export type Template = { type: number; value?: number | boolean | string | Buffer }[];

/** The part of pkcs11js's PKCS11 class fwseal uses (typed here, so the package stays optional at build time too). */
export type P11 = {
  load(path: string): void;
  C_Initialize(): void;
  C_Finalize(): void;
  C_GetInfo(): { manufacturerID: string; libraryDescription: string; libraryVersion: { major: number; minor: number } };
  C_GetSlotList(tokenPresent: boolean): Handle[];
  C_GetSlotInfo(slot: Handle): { slotDescription: string; manufacturerID: string };
  C_GetTokenInfo(slot: Handle): { label: string; manufacturerID: string; model: string; serialNumber: string; flags: number };
  C_OpenSession(slot: Handle, flags: number): Handle;
  C_GetSessionInfo(session: Handle): { state: number };
  C_Login(session: Handle, userType: number, pin: string): void;
  C_FindObjectsInit(session: Handle, template: Template): void;
  C_FindObjects(session: Handle, max: number): Handle[];
  C_FindObjectsFinal(session: Handle): void;
  C_GetAttributeValue(session: Handle, object: Handle, template: Template): { type: number; value: Buffer }[];
  C_SignInit(session: Handle, mechanism: { mechanism: number }, key: Handle): void;
  C_Sign(session: Handle, data: Buffer, out: Buffer): Buffer;
  C_GenerateKeyPair(session: Handle, mechanism: { mechanism: number }, pub: Template, priv: Template): { publicKey: Handle; privateKey: Handle };
  C_DestroyObject(session: Handle, object: Handle): void;
};

/** PKCS#11 v3.0 numbers fwseal uses; pkcs11js names none of the Edwards ones. */
export const CK = Object.freeze({
  CKF_RW_SESSION: 0x2,
  CKF_SERIAL_SESSION: 0x4,
  CKF_LOGIN_REQUIRED: 0x4,
  CKF_TOKEN_INITIALIZED: 0x400,
  CKU_USER: 1,
  CKS_RO_USER_FUNCTIONS: 1,
  CKS_RW_USER_FUNCTIONS: 3,
  CKO_PUBLIC_KEY: 2,
  CKO_PRIVATE_KEY: 3,
  CKA_CLASS: 0x0,
  CKA_TOKEN: 0x1,
  CKA_PRIVATE: 0x2,
  CKA_LABEL: 0x3,
  CKA_KEY_TYPE: 0x100,
  CKA_ID: 0x102,
  CKA_SENSITIVE: 0x103,
  CKA_SIGN: 0x108,
  CKA_VERIFY: 0x10a,
  CKA_EXTRACTABLE: 0x162,
  CKA_EC_PARAMS: 0x180,
  CKA_EC_POINT: 0x181,
  CKK_EC_EDWARDS: 0x40,
  CKM_EC_EDWARDS_KEY_PAIR_GEN: 0x1055,
  CKM_EDDSA: 0x1057,
});

type Binding = { PKCS11: new () => P11 };
type Module = { readonly path: string; readonly api: P11; readonly sessions: Map<string, Handle> };
export type Token = { readonly module: Module; readonly slot: Handle; readonly label: string; readonly loginRequired: boolean };

const modules = new Map<string, Module>();
let finalizeAtExit = false;

const firstLine = (e: unknown) =>
  String((e as Error)?.message ?? e)
    .split('\n')[0]
    .slice(0, 200);

/** The CKR_ name of a pkcs11js error, or null for any other error. */
export function ckrName(e: unknown): string | null {
  const m = /^(CKR_[A-Z0-9_]+)/.exec(e instanceof Error ? e.message : '');
  return m ? m[1] : null;
}

/** A token's failure as SIGNER_FAILED naming the CKR_ code (SPEC.md §15.2); fwseal's own errors pass through. */
export function tokenFailure(e: unknown, doing: string): FwsealError {
  if (e instanceof FwsealError) return e;
  return new FwsealError('SIGNER_FAILED', `${doing}: ${ckrName(e) ?? firstLine(e)}`, { cause: e });
}

export function call<T>(doing: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw tokenFailure(e, doing);
  }
}

/** The optional native package, loaded on first use; `pkg` is a parameter so a test can name one that is missing. */
export function loadBinding(pkg = 'pkcs11js'): Binding {
  try {
    return createRequire(import.meta.url)(pkg) as Binding;
  } catch (e) {
    throw new FwsealError('PKCS11_MODULE', `pkcs11: keys need the optional package ${pkg} (npm install ${pkg}): ${firstLine(e)}`);
  }
}

const MULTIARCH: Record<string, string> = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', arm: 'arm-linux-gnueabihf', ia32: 'i386-linux-gnu' };
const P11KIT_MODULE_FILES = ['/etc/pkcs11/modules', '/usr/share/p11-kit/modules'];

function moduleDirs(): string[] {
  const triple = MULTIARCH[process.arch];
  return [...(triple ? [`/usr/lib/${triple}/pkcs11`] : []), '/usr/lib64/pkcs11', '/usr/lib/pkcs11', '/usr/local/lib/pkcs11'];
}

const isFile = (p: string) => {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
};

/** RFC 7512 `module-name`: p11-kit's NAME.module file, else NAME.so or libNAME.so in the system's PKCS#11 folders. */
function namedModule(name: string): string {
  for (const dir of P11KIT_MODULE_FILES) {
    const conf = join(dir, `${name}.module`);
    if (!isFile(conf)) continue;
    const m = /^[ \t]*module[ \t]*:[ \t]*(\S[^\n]*?)[ \t]*$/m.exec(readFileSync(conf, 'utf8').slice(0, 65536));
    if (!m) continue;
    if (isAbsolute(m[1])) return m[1];
    const found = moduleDirs().find((d) => isFile(join(d, m[1])));
    if (found) return join(found, m[1]);
  }
  for (const dir of moduleDirs()) for (const f of [`${name}.so`, `lib${name}.so`]) if (isFile(join(dir, f))) return join(dir, f);
  throw new FwsealError('PKCS11_MODULE', `no PKCS#11 module named ${name} (p11-kit module files, ${moduleDirs().join(', ')}); give module-path`);
}

/** SPEC.md §15.2: the URI's module-path (or module-name), else `--module`, else FWSEAL_PKCS11_MODULE. */
export function modulePathFor(u: Pkcs11Uri, flag?: string): string {
  if (u.modulePath !== undefined) return resolve(u.modulePath);
  if (u.moduleName !== undefined) return namedModule(u.moduleName);
  if (flag !== undefined && flag !== '') return resolve(flag);
  const env = process.env.FWSEAL_PKCS11_MODULE;
  if (env !== undefined && env !== '') return resolve(env);
  throw new FwsealError('USAGE', 'which PKCS#11 module? add ?module-path=/path/to/module.so to the pkcs11: URI or set FWSEAL_PKCS11_MODULE');
}

/** Load and initialise the module at `path` once per process (a symlink and its target are one module). */
export function openModule(path: string): Module {
  let real = path;
  try {
    real = realpathSync(path);
  } catch {
    /* a path that does not resolve fails to load below, with the loader's reason */
  }
  const cached = modules.get(real);
  if (cached) return cached;
  const { PKCS11 } = loadBinding();
  const api = new PKCS11();
  try {
    api.load(path);
  } catch (e) {
    throw new FwsealError('PKCS11_MODULE', `cannot load PKCS#11 module ${path}: ${firstLine(e)}`);
  }
  try {
    api.C_Initialize();
  } catch (e) {
    if (ckrName(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED')
      throw new FwsealError('PKCS11_MODULE', `PKCS#11 module ${path} failed C_Initialize: ${ckrName(e) ?? firstLine(e)}`);
  }
  const mod: Module = { path, api, sessions: new Map() };
  modules.set(real, mod);
  if (!finalizeAtExit) {
    finalizeAtExit = true;
    process.once('exit', finalizePkcs11Modules);
  }
  return mod;
}

/** C_Finalize every module this process initialised (at exit; tests call it to start over, logged out). */
export function finalizePkcs11Modules(): void {
  for (const m of modules.values()) {
    try {
      m.api.C_Finalize();
    } catch {
      /* finalising is best effort: the process is leaving */
    }
  }
  modules.clear();
}

/** CK_UTF8CHAR fields are padded with blanks. */
const unpad = (s: string) => s.replace(/[ \0]+$/, '');
const matches = (want: string | undefined, field: string) => want === undefined || want === unpad(field);

function slotNumber(slot: Handle): bigint {
  if (slot.length === 8) return endianness() === 'LE' ? slot.readBigUInt64LE(0) : slot.readBigUInt64BE(0);
  return BigInt(endianness() === 'LE' ? slot.readUInt32LE(0) : slot.readUInt32BE(0));
}

/** The one initialised token the URI's library, slot and token attributes match (RFC 7512 §2.3). */
export function findToken(mod: Module, u: Pkcs11Uri): Token {
  const api = mod.api;
  const lib = call('C_GetInfo', () => api.C_GetInfo());
  const libraryMatches =
    matches(u.libraryManufacturer, lib.manufacturerID) &&
    matches(u.libraryDescription, lib.libraryDescription) &&
    (u.libraryVersion === undefined || (u.libraryVersion.major === lib.libraryVersion.major && u.libraryVersion.minor === lib.libraryVersion.minor));
  const found: Token[] = [];
  for (const slot of libraryMatches ? call('C_GetSlotList', () => api.C_GetSlotList(true)) : []) {
    const info = call('C_GetTokenInfo', () => api.C_GetTokenInfo(slot));
    if ((info.flags & CK.CKF_TOKEN_INITIALIZED) === 0) continue;
    if (
      !matches(u.token, info.label) ||
      !matches(u.manufacturer, info.manufacturerID) ||
      !matches(u.serial, info.serialNumber) ||
      !matches(u.model, info.model)
    )
      continue;
    if (u.slotId !== undefined && slotNumber(slot) !== u.slotId) continue;
    if (u.slotDescription !== undefined || u.slotManufacturer !== undefined) {
      const s = call('C_GetSlotInfo', () => api.C_GetSlotInfo(slot));
      if (!matches(u.slotDescription, s.slotDescription) || !matches(u.slotManufacturer, s.manufacturerID)) continue;
    }
    found.push({ module: mod, slot, label: unpad(info.label), loginRequired: (info.flags & CK.CKF_LOGIN_REQUIRED) !== 0 });
  }
  if (found.length === 0) throw new FwsealError('TOKEN_NOT_FOUND', `no initialised token in ${mod.path} matches ${describePkcs11Uri(u)}`);
  if (found.length > 1)
    throw new FwsealError(
      'USAGE',
      `${found.length} tokens match ${describePkcs11Uri(u)} (${found.map((t) => `"${t.label}"`).join(', ')}): add token= or serial= to the URI`,
    );
  return found[0];
}

/** The token's session of this kind, opened once and kept for the process's life. */
export function tokenSession(t: Token, rw: boolean): Handle {
  const key = `${t.slot.toString('hex')}/${rw ? 'rw' : 'ro'}`;
  let s = t.module.sessions.get(key);
  if (s === undefined) {
    s = call(`open a session with token ${t.label}`, () => t.module.api.C_OpenSession(t.slot, CK.CKF_SERIAL_SESSION | (rw ? CK.CKF_RW_SESSION : 0)));
    t.module.sessions.set(key, s);
  }
  return s;
}

export function isLoggedIn(t: Token, s: Handle): boolean {
  const state = call('C_GetSessionInfo', () => t.module.api.C_GetSessionInfo(s).state);
  return state === CK.CKS_RO_USER_FUNCTIONS || state === CK.CKS_RW_USER_FUNCTIONS;
}

const PIN_REFUSED = new Set(['CKR_PIN_INCORRECT', 'CKR_PIN_LOCKED', 'CKR_PIN_LEN_RANGE', 'CKR_PIN_INVALID', 'CKR_PIN_EXPIRED']);

/** Log the token in as CKU_USER, asking for the PIN only when it is not logged in already (all sessions share the login). */
export function login(t: Token, s: Handle, pins: (purpose: string) => string): void {
  if (!t.loginRequired || isLoggedIn(t, s)) return;
  const pin = pins(`token ${t.label}`);
  try {
    t.module.api.C_Login(s, CK.CKU_USER, pin);
  } catch (e) {
    const ckr = ckrName(e);
    if (ckr === 'CKR_USER_ALREADY_LOGGED_IN') return;
    // The message names the token and the code, never the PIN.
    if (ckr !== null && PIN_REFUSED.has(ckr)) throw new FwsealError('PIN_INCORRECT', `token ${t.label} refused the PIN (${ckr})`);
    throw tokenFailure(e, `log in to token ${t.label}`);
  }
}

/** Handles of up to 16 objects matching `template` (fwseal needs to tell none, one and several apart). */
export function findObjects(t: Token, s: Handle, template: Template): Handle[] {
  const api = t.module.api;
  call('C_FindObjectsInit', () => api.C_FindObjectsInit(s, template));
  try {
    return call('C_FindObjects', () => api.C_FindObjects(s, 16));
  } finally {
    try {
      api.C_FindObjectsFinal(s);
    } catch {
      /* the search is over either way */
    }
  }
}

/** Attribute values in the order asked; `null` when the object has no such attribute or keeps it secret. */
export function attributes(t: Token, s: Handle, object: Handle, types: readonly number[]): (Buffer | null)[] {
  try {
    const got = t.module.api.C_GetAttributeValue(
      s,
      object,
      types.map((type) => ({ type })),
    );
    return types.map((type) => got.find((a) => a.type === type)?.value ?? null);
  } catch (e) {
    const ckr = ckrName(e);
    if (types.length > 1 && (ckr === 'CKR_ATTRIBUTE_TYPE_INVALID' || ckr === 'CKR_ATTRIBUTE_SENSITIVE'))
      return types.map((type) => attributes(t, s, object, [type])[0]);
    if (ckr === 'CKR_ATTRIBUTE_TYPE_INVALID' || ckr === 'CKR_ATTRIBUTE_SENSITIVE') return [null];
    throw tokenFailure(e, 'C_GetAttributeValue');
  }
}

/** A CK_ULONG attribute (native byte order), or -1. */
export function ulong(b: Buffer | null): number {
  if (b === null) return -1;
  if (b.length === 8) return Number(endianness() === 'LE' ? b.readBigUInt64LE(0) : b.readBigUInt64BE(0));
  if (b.length === 4) return endianness() === 'LE' ? b.readUInt32LE(0) : b.readUInt32BE(0);
  return -1;
}
