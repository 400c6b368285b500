/**
 * PKCS#11 tokens (SPEC.md §15.2): Ed25519 key pairs generated inside a token (non-extractable,
 * CKM_EC_EDWARDS_KEY_PAIR_GEN) and used to sign (CKM_EDDSA), named by an RFC 7512 `pkcs11:` URI.
 * The PIN comes from FWSEAL_PKCS11_PIN or a no-echo prompt on the terminal, never from a flag or the
 * URI, and no message carries it. host/signers/index.ts checks every signature the token returns.
 */
import { randomBytes } from 'node:crypto';
import { isTrustableRoleKey, keyId } from '../../device/index.js';
import { FwsealError } from '../errors.js';
import { type PublicKeyInfo, type SigningKey } from '../keys.js';
import { readTtyLine } from '../passphrase.js';
import {
  attributes,
  CK,
  call,
  ckrName,
  findObjects,
  findToken,
  type Handle,
  isLoggedIn,
  login,
  modulePathFor,
  openModule,
  type Template,
  type Token,
  tokenFailure,
  tokenSession,
  ulong,
} from './pkcs11-session.js';
import { describePkcs11Uri, keyPairAttributes, type Pkcs11Uri, parsePkcs11Uri } from './pkcs11-uri.js';

/** Where a PIN comes from: FWSEAL_PKCS11_PIN or a no-echo prompt; never a flag. */
export type PinSource = (purpose: string) => string;

export const defaultPinSource: PinSource = (purpose) => {
  const env = process.env.FWSEAL_PKCS11_PIN;
  if (env !== undefined) {
    if (env.length === 0) throw new FwsealError('NO_PASSPHRASE', 'FWSEAL_PKCS11_PIN is empty');
    return env;
  }
  let pin: string;
  try {
    pin = readTtyLine(`PIN for ${purpose}: `);
  } catch (e) {
    if (e instanceof FwsealError && e.codeName === 'NO_PASSPHRASE')
      throw new FwsealError('NO_PASSPHRASE', 'no PIN: set FWSEAL_PKCS11_PIN or run on a terminal');
    throw e;
  }
  if (pin.length === 0) throw new FwsealError('NO_PASSPHRASE', 'empty PIN');
  return pin;
};

/** CKA_EC_PARAMS of Ed25519: the OID 1.3.101.112 (RFC 8410), or the PrintableString "edwards25519" older tokens use. */
const ED25519_OID = Buffer.from('06032b6570', 'hex');
const ED25519_NAME = Buffer.concat([Buffer.from([0x13, 0x0c]), Buffer.from('edwards25519', 'latin1')]);

type Opened = { readonly u: Pkcs11Uri; readonly token: Token; readonly session: Handle };

function openToken(u: Pkcs11Uri, rw: boolean, moduleFlag?: string): Opened {
  const token = findToken(openModule(modulePathFor(u, moduleFlag)), u);
  return { u, token, session: tokenSession(token, rw) };
}

function keyTemplate(cls: number, want: { object?: string; id?: Uint8Array }): Template {
  const t: Template = [{ type: CK.CKA_CLASS, value: cls }];
  if (want.object !== undefined) t.push({ type: CK.CKA_LABEL, value: Buffer.from(want.object, 'utf8') });
  if (want.id !== undefined) t.push({ type: CK.CKA_ID, value: Buffer.from(want.id) });
  return t;
}

/** Exactly one object: none and several are both KEY_NOT_FOUND (a URI must name one key, §15.2). */
function onlyOne(handles: Handle[], what: string, o: Opened): Handle {
  const where = `token ${o.token.label}`;
  if (handles.length === 0) throw new FwsealError('KEY_NOT_FOUND', `${where} holds no ${what} key matching ${describePkcs11Uri(o.u)}`);
  if (handles.length > 1)
    throw new FwsealError('KEY_NOT_FOUND', `ambiguous: ${where} holds ${handles.length} ${what} keys matching ${describePkcs11Uri(o.u)}; add id= to the URI`);
  return handles[0];
}

/** The key must be Ed25519 (CKK_EC_EDWARDS over edwards25519), else UNSUPPORTED_KEY. */
function checkEd25519(o: Opened, key: Handle, what: string): void {
  const [type] = attributes(o.token, o.session, key, [CK.CKA_KEY_TYPE]);
  const kt = ulong(type);
  if (kt !== CK.CKK_EC_EDWARDS) throw new FwsealError('UNSUPPORTED_KEY', `${what} is not an Ed25519 key (CKA_KEY_TYPE 0x${kt.toString(16)})`);
  const [params] = attributes(o.token, o.session, key, [CK.CKA_EC_PARAMS]);
  if (params === null || !(params.equals(ED25519_OID) || params.equals(ED25519_NAME)))
    throw new FwsealError('UNSUPPORTED_KEY', `${what} is an Edwards key on another curve than edwards25519`);
}

/** The 32-byte public key of a CKO_PUBLIC_KEY object: CKA_EC_POINT as a DER OCTET STRING (04 20 ...) or raw. */
function readPublicKey(o: Opened, key: Handle): Uint8Array {
  const what = `the public key in token ${o.token.label}`;
  checkEd25519(o, key, what);
  const [point] = attributes(o.token, o.session, key, [CK.CKA_EC_POINT]);
  let pub: Uint8Array | null = null;
  if (point?.length === 34 && point[0] === 0x04 && point[1] === 0x20) pub = new Uint8Array(point.subarray(2));
  else if (point?.length === 32) pub = new Uint8Array(point);
  if (pub === null || !isTrustableRoleKey(pub)) throw new FwsealError('UNSUPPORTED_KEY', `${what} is not an acceptable Ed25519 public key`);
  return pub;
}

/** The public key of the key pair a `pkcs11:` URI names (read without the PIN where the token allows). */
export function pkcs11PublicKey(uri: string, pins: PinSource = defaultPinSource): PublicKeyInfo {
  const u = parsePkcs11Uri(uri);
  const want = keyPairAttributes(u);
  const o = openToken(u, false);
  let found = findObjects(o.token, o.session, keyTemplate(CK.CKO_PUBLIC_KEY, want));
  // A token may keep the public key private too: log in only then.
  if (found.length === 0 && !isLoggedIn(o.token, o.session)) {
    login(o.token, o.session, pins);
    found = findObjects(o.token, o.session, keyTemplate(CK.CKO_PUBLIC_KEY, want));
  }
  const publicKey = readPublicKey(o, onlyOne(found, 'public', o));
  return Object.freeze({ name: u.object ?? 'pkcs11', publicKey, keyId: keyId(publicKey) });
}

function signOnce(o: Opened, key: Handle, message: Uint8Array): Uint8Array {
  const api = o.token.module.api;
  let signature: Buffer;
  try {
    // CKM_EDDSA without a parameter: pure Ed25519 (RFC 8032 §5.1), over the exact Sig_structure bytes (§3).
    api.C_SignInit(o.session, { mechanism: CK.CKM_EDDSA }, key);
    signature = api.C_Sign(o.session, Buffer.from(message), Buffer.alloc(64));
  } catch (e) {
    throw tokenFailure(e, `token ${o.token.label} could not sign`);
  }
  if (signature.length !== 64) throw new FwsealError('SIGNER_FAILED', `token ${o.token.label} returned ${signature.length} bytes, not one Ed25519 signature`);
  return new Uint8Array(signature);
}

/** A signer over the token's private key (CKM_EDDSA); logs in with the PIN. */
export function openPkcs11Signer(uri: string, pins: PinSource = defaultPinSource): SigningKey {
  const u = parsePkcs11Uri(uri);
  const want = keyPairAttributes(u);
  const o = openToken(u, false);
  login(o.token, o.session, pins);
  const priv = onlyOne(findObjects(o.token, o.session, keyTemplate(CK.CKO_PRIVATE_KEY, want)), 'private', o);
  const pub = onlyOne(findObjects(o.token, o.session, keyTemplate(CK.CKO_PUBLIC_KEY, want)), 'public', o);
  checkEd25519(o, priv, `the private key in token ${o.token.label}`);
  const publicKey = readPublicKey(o, pub);
  // Both halves found by label alone must still be one pair: where both carry CKA_ID, the ids agree.
  const [privId] = attributes(o.token, o.session, priv, [CK.CKA_ID]);
  const [pubId] = attributes(o.token, o.session, pub, [CK.CKA_ID]);
  if (privId?.length && pubId?.length && !privId.equals(pubId))
    throw new FwsealError('KEY_NOT_FOUND', `ambiguous: the private and public keys matching ${describePkcs11Uri(u)} have different ids; add id= to the URI`);
  return Object.freeze({ name: u.object ?? 'pkcs11', publicKey, keyId: keyId(publicKey), sign: (message: Uint8Array) => signOnce(o, priv, message) });
}

/** Templates of a new pair: the private half never leaves the token (CKA_SENSITIVE, not CKA_EXTRACTABLE). */
function pairTemplates(label: string, id: Uint8Array, params: Buffer): { pub: Template; priv: Template } {
  const common: Template = [
    { type: CK.CKA_TOKEN, value: true },
    { type: CK.CKA_LABEL, value: Buffer.from(label, 'utf8') },
    { type: CK.CKA_ID, value: Buffer.from(id) },
  ];
  return {
    pub: [...common, { type: CK.CKA_VERIFY, value: true }, { type: CK.CKA_EC_PARAMS, value: params }],
    priv: [
      ...common,
      { type: CK.CKA_PRIVATE, value: true },
      { type: CK.CKA_SENSITIVE, value: true },
      { type: CK.CKA_EXTRACTABLE, value: false },
      { type: CK.CKA_SIGN, value: true },
    ],
  };
}

/** Errors after which a token may still take the curve by name rather than by OID. */
const CURVE_REFUSED = new Set(['CKR_DOMAIN_PARAMS_INVALID', 'CKR_ATTRIBUTE_VALUE_INVALID', 'CKR_CURVE_NOT_SUPPORTED', 'CKR_TEMPLATE_INCONSISTENT']);

function generatePair(o: Opened, label: string, id: Uint8Array): { publicKey: Handle; privateKey: Handle } {
  const api = o.token.module.api;
  for (const params of [ED25519_OID, ED25519_NAME]) {
    const t = pairTemplates(label, id, params);
    try {
      return api.C_GenerateKeyPair(o.session, { mechanism: CK.CKM_EC_EDWARDS_KEY_PAIR_GEN }, t.pub, t.priv);
    } catch (e) {
      const ckr = ckrName(e);
      if (ckr === 'CKR_MECHANISM_INVALID')
        throw new FwsealError('UNSUPPORTED_KEY', `token ${o.token.label} cannot generate Ed25519 keys (CKM_EC_EDWARDS_KEY_PAIR_GEN)`);
      if (params === ED25519_NAME || ckr === null || !CURVE_REFUSED.has(ckr)) throw tokenFailure(e, `token ${o.token.label} could not generate a key pair`);
    }
  }
  throw new FwsealError('INTERNAL', 'unreachable');
}

function destroyPair(o: Opened, pair: { publicKey: Handle; privateKey: Handle }): void {
  call(`remove the new key from token ${o.token.label}`, () => o.token.module.api.C_DestroyObject(o.session, pair.privateKey));
  call(`remove the new key from token ${o.token.label}`, () => o.token.module.api.C_DestroyObject(o.session, pair.publicKey));
}

/** Key pairs generated in this process, until their NAME.pub is written (keygen undoes the pair when it cannot be). */
const generated = new WeakMap<PublicKeyInfo, () => void>();

/** keygen inside the token (CKM_EC_EDWARDS_KEY_PAIR_GEN, non-extractable); `module` when the URI has no module-path. */
export function generatePkcs11Key(uri: string, name: string, module?: string, pins: PinSource = defaultPinSource): PublicKeyInfo {
  const u = parsePkcs11Uri(uri);
  const want = keyPairAttributes(u);
  if (want.object === undefined) throw new FwsealError('USAGE', 'keygen --pkcs11: the URI needs object=LABEL, the label of the new key in the token');
  const o = openToken(u, true, module);
  login(o.token, o.session, pins);
  // Never a second object under the label or id: later lookups would be ambiguous (CONFLICT, nothing made).
  if (findObjects(o.token, o.session, [{ type: CK.CKA_LABEL, value: Buffer.from(want.object, 'utf8') }]).length > 0)
    throw new FwsealError('CONFLICT', `token ${o.token.label} already holds an object labelled "${want.object}"`);
  if (want.id !== undefined && findObjects(o.token, o.session, [{ type: CK.CKA_ID, value: Buffer.from(want.id) }]).length > 0)
    throw new FwsealError('CONFLICT', `token ${o.token.label} already holds an object with id ${Buffer.from(want.id).toString('hex')}`);
  const pair = generatePair(o, want.object, want.id ?? randomBytes(16));
  let publicKey: Uint8Array;
  try {
    checkEd25519(o, pair.privateKey, `the new private key in token ${o.token.label}`);
    publicKey = readPublicKey(o, pair.publicKey);
  } catch (e) {
    destroyPair(o, pair);
    throw e;
  }
  const info: PublicKeyInfo = Object.freeze({ name, publicKey, keyId: keyId(publicKey) });
  generated.set(info, () => destroyPair(o, pair));
  return info;
}

/** Remove a key pair generatePkcs11Key made in this process (its NAME.pub could not be written): keygen writes nothing or everything. */
export function undoPkcs11Keygen(key: PublicKeyInfo): void {
  const undo = generated.get(key);
  generated.delete(key);
  undo?.();
}
