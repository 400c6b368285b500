/**
 * `pkcs11:` URIs (RFC 7512), as fwseal takes them where a key is named (SPEC.md §15.2). Parsed
 * strictly: an attribute fwseal does not know, or one given twice, is refused rather than ignored,
 * because an ignored attribute can silently select another token or key. A PIN never comes from a
 * URI (it would sit in shell history, scripts and `ps`): `pin-value` and `pin-source` are refused.
 */
import { FwsealError } from '../errors.js';

export type Pkcs11ObjectType = 'private' | 'public' | 'cert' | 'secret-key' | 'data';

export type Pkcs11Uri = {
  /** Token attributes (CK_TOKEN_INFO): label, manufacturerID, serialNumber, model. */
  readonly token?: string;
  readonly manufacturer?: string;
  readonly serial?: string;
  readonly model?: string;
  /** Library attributes (CK_INFO). */
  readonly libraryManufacturer?: string;
  readonly libraryDescription?: string;
  readonly libraryVersion?: { readonly major: number; readonly minor: number };
  /** Slot attributes (CK_SLOT_INFO, CK_SLOT_ID). */
  readonly slotDescription?: string;
  readonly slotManufacturer?: string;
  readonly slotId?: bigint;
  /** Object attributes: CKA_LABEL, CKA_ID (bytes), CKA_CLASS. */
  readonly object?: string;
  readonly id?: Uint8Array;
  readonly type?: Pkcs11ObjectType;
  /** Query attributes naming the module. */
  readonly modulePath?: string;
  readonly moduleName?: string;
};

/** Longer than any URI a person writes; keeps a hostile argument from costing anything. */
const MAX_URI_CHARS = 4096;

const TYPES: readonly Pkcs11ObjectType[] = ['private', 'public', 'cert', 'secret-key', 'data'];

/** RFC 7512 §2.3: pk11-pchar = unreserved / pk11-path-res-avail / pct-encoded. */
const PATH_VALUE = /^(?:[A-Za-z0-9\-._~:[\]@!$'()*+,=&]|%[0-9A-Fa-f]{2})*$/;
/** pk11-qchar = unreserved / pk11-query-res-avail ("/" "?" "|" besides pk11-res-avail) / pct-encoded. */
const QUERY_VALUE = /^(?:[A-Za-z0-9\-._~:[\]@!$'()*+,=/?|]|%[0-9A-Fa-f]{2})*$/;

const PATH_TEXT: Record<string, keyof Pkcs11Uri> = {
  token: 'token',
  manufacturer: 'manufacturer',
  serial: 'serial',
  model: 'model',
  'library-manufacturer': 'libraryManufacturer',
  'library-description': 'libraryDescription',
  'slot-description': 'slotDescription',
  'slot-manufacturer': 'slotManufacturer',
  object: 'object',
};
const PATH_OTHER = new Set(['library-version', 'slot-id', 'id', 'type']);
const QUERY_TEXT: Record<string, keyof Pkcs11Uri> = { 'module-path': 'modulePath', 'module-name': 'moduleName' };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The bytes of a percent-encoded value (RFC 7512 §2.3; RFC 3986 §2.1), its characters already checked. */
function pctDecode(value: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '%') {
      out.push(Number.parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      out.push(value.charCodeAt(i));
    }
  }
  return new Uint8Array(out);
}

function text(name: string, bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new FwsealError('USAGE', `pkcs11: URI: ${name} is not UTF-8 after percent-decoding`);
  }
}

type Attr = { readonly name: string; readonly raw: string };

/** `name=value` pairs of one component, refusing empty attributes, bad characters and repeats. */
function attributes(component: string, separator: string, allowed: RegExp, seen: Set<string>, where: string): Attr[] {
  if (component === '') return [];
  return component.split(separator).map((part) => {
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    // The text itself is not echoed: a misplaced PIN must not reach a message.
    if (eq <= 0 || !/^[A-Za-z][A-Za-z0-9_-]*$/.test(name)) throw new FwsealError('USAGE', `pkcs11: URI: an attribute in the ${where} is not NAME=VALUE`);
    const raw = part.slice(eq + 1);
    if (!allowed.test(raw)) throw new FwsealError('USAGE', `pkcs11: URI: ${name} has a character that must be percent-encoded (RFC 7512 §2.3)`);
    if (seen.has(name)) throw new FwsealError('USAGE', `pkcs11: URI: ${name} is given twice`);
    seen.add(name);
    return { name, raw };
  });
}

/** The value of one path attribute that is not plain text. */
function pathOther(a: Attr): Partial<Record<keyof Pkcs11Uri, unknown>> {
  if (a.name === 'id') return { id: pctDecode(a.raw) };
  const value = text(a.name, pctDecode(a.raw));
  if (a.name === 'type') {
    if (!TYPES.includes(value as Pkcs11ObjectType)) throw new FwsealError('USAGE', `pkcs11: URI: type must be one of ${TYPES.join(', ')}`);
    return { type: value };
  }
  if (a.name === 'slot-id') {
    if (!/^\d{1,20}$/.test(value) || BigInt(value) > 0xffffffffffffffffn) throw new FwsealError('USAGE', 'pkcs11: URI: slot-id must be a decimal CK_SLOT_ID');
    return { slotId: BigInt(value) };
  }
  // library-version: "M" or "M.m"; "3" means 3.0 (RFC 7512 §2.3).
  const m = /^(\d{1,3})(?:\.(\d{1,3}))?$/.exec(value);
  if (!m || Number(m[1]) > 255 || Number(m[2] ?? 0) > 255) throw new FwsealError('USAGE', 'pkcs11: URI: library-version must be MAJOR or MAJOR.MINOR');
  return { libraryVersion: { major: Number(m[1]), minor: Number(m[2] ?? 0) } };
}

/**
 * Parse a `pkcs11:` URI. Path attributes: token, manufacturer, serial, model, library-manufacturer,
 * library-description, library-version, slot-description, slot-manufacturer, slot-id, object, id,
 * type; query attributes: module-path, module-name. Anything else is USAGE.
 */
export function parsePkcs11Uri(uri: string): Pkcs11Uri {
  if (!uri.startsWith('pkcs11:')) throw new FwsealError('USAGE', 'not a pkcs11: URI');
  if (uri.length > MAX_URI_CHARS) throw new FwsealError('USAGE', `a pkcs11: URI is at most ${MAX_URI_CHARS} characters`);
  const rest = uri.slice('pkcs11:'.length);
  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q + 1);
  const seen = new Set<string>();
  const out: Record<string, unknown> = {};
  for (const a of attributes(path, ';', PATH_VALUE, seen, 'path')) {
    if (a.name in PATH_TEXT) out[PATH_TEXT[a.name]] = text(a.name, pctDecode(a.raw));
    else if (PATH_OTHER.has(a.name)) Object.assign(out, pathOther(a));
    else throw new FwsealError('USAGE', `pkcs11: URI: unknown path attribute ${a.name}`);
  }
  for (const a of attributes(query, '&', QUERY_VALUE, seen, 'query')) {
    // Named without its value: the value may be a PIN.
    if (a.name === 'pin-value' || a.name === 'pin-source')
      throw new FwsealError('USAGE', `pkcs11: URI: ${a.name} is refused; the PIN comes from FWSEAL_PKCS11_PIN or a prompt, never from the command line`);
    if (!(a.name in QUERY_TEXT)) throw new FwsealError('USAGE', `pkcs11: URI: unknown query attribute ${a.name}`);
    const value = text(a.name, pctDecode(a.raw));
    if (value === '') throw new FwsealError('USAGE', `pkcs11: URI: ${a.name} is empty`);
    out[QUERY_TEXT[a.name]] = value;
  }
  if (out.modulePath !== undefined && out.moduleName !== undefined) throw new FwsealError('USAGE', 'pkcs11: URI: give module-path or module-name, not both');
  if (typeof out.moduleName === 'string' && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(out.moduleName))
    throw new FwsealError('USAGE', 'pkcs11: URI: module-name is a file name without a folder (e.g. softhsm2)');
  return Object.freeze(out) as Pkcs11Uri;
}

/** The object a URI names for a key pair: its label and/or id, and a type that is a key's. */
export function keyPairAttributes(u: Pkcs11Uri): { object?: string; id?: Uint8Array } {
  if (u.type !== undefined && u.type !== 'private' && u.type !== 'public')
    throw new FwsealError('USAGE', `pkcs11: URI names a ${u.type} object; fwseal signs with a key pair (type=private or none)`);
  if (u.object === undefined && u.id === undefined) throw new FwsealError('USAGE', 'pkcs11: URI names no key: add object=LABEL (or id=...)');
  return { ...(u.object !== undefined ? { object: u.object } : {}), ...(u.id !== undefined ? { id: u.id } : {}) };
}

/** A short description for messages: the token and object, never a PIN (there is none in a parsed URI). */
export function describePkcs11Uri(u: Pkcs11Uri): string {
  const parts: string[] = [];
  if (u.token !== undefined) parts.push(`token "${u.token}"`);
  if (u.serial !== undefined) parts.push(`serial ${u.serial}`);
  if (u.slotId !== undefined) parts.push(`slot ${u.slotId}`);
  if (u.object !== undefined) parts.push(`object "${u.object}"`);
  if (u.id !== undefined) parts.push(`id ${Buffer.from(u.id).toString('hex')}`);
  return parts.length > 0 ? parts.join(', ') : 'any token';
}
