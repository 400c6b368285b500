/**
 * Who may call the server's HTTP API (SPEC.md §12.9 "HTTP API"): named bearer tokens, each with a
 * role, kept in a tokens file that `fwseal token create|list|revoke` edits and `fwseal serve --tokens`
 * reads. Roles are ordered: viewer (every GET) < operator (campaigns, image uploads) < admin (trust
 * bundles and revocation lists).
 *
 * The file holds SHA-256 digests, never tokens. A token is 256 random bits, so SHA-256 is enough:
 * nobody can search 2^256 inputs for a preimage, with or without a salt, which is exactly what a slow
 * password hash (scrypt, argon2) buys for guessable passwords; here it would only make every API
 * call pay tens of milliseconds of CPU, a lever for whoever floods the API with bad tokens.
 * A stolen file therefore lets nobody call the API; a writable one lets anybody add a token, hence
 * 0600 and writes through writeFileAtomic (SPEC.md §14 H5).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, type Stats, statSync } from 'node:fs';
import { type CodeName } from '../../shared/codes.js';
import { FwsealError } from '../errors.js';
import { writeFileAtomic } from '../io.js';
import { ApiError } from './campaigns.js';

export const ROLES = Object.freeze(['viewer', 'operator', 'admin'] as const);
export type Role = (typeof ROLES)[number];
const RANK: Readonly<Record<Role, number>> = Object.freeze({ viewer: 0, operator: 1, admin: 2 });

/** Whether a token of role `held` may make a call that needs `required`. */
export function roleAllows(held: Role, required: Role): boolean {
  return RANK[held] >= RANK[required];
}

export const TOKENS_FILE_TYPE = 'fwseal-api-tokens';
/** A tokens file lists at most this many tokens, and is at most this large (about 200 bytes a token). */
export const MAX_TOKENS = 1000;
export const MAX_TOKENS_FILE_BYTES = 262144;
/** `fwseal_` and 43 base64url characters: 32 random bytes, with a prefix that secret scanners can match. */
export const TOKEN_FORMAT = /^fwseal_[A-Za-z0-9_-]{43}$/;
/** Token names appear in audit lines and logs: short, printable, no spaces. */
export const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
const HEX64 = /^[0-9a-f]{64}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** A bearer credential longer than this is refused before it is hashed. */
const MAX_CREDENTIAL_CHARS = 4096;

/** One line of the tokens file: `sha256` is the digest of the token's UTF-8 bytes. */
export type TokenInfo = { readonly name: string; readonly role: Role; readonly sha256: string; readonly created: string };
/** Who makes an API call: the token's name and role, or `api` with every right when the API is open. */
export type Caller = { readonly name: string; readonly role: Role; readonly source: 'api-token' | 'api-open' };

export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

function bad(path: string, why: string): FwsealError {
  // A file that is not a tokens file where one belongs is the operator's mistake (exit 2), as H8 (SPEC.md §14) has it for objects.
  return new FwsealError('USAGE', `${path} is not a valid fwseal tokens file: ${why}`);
}

/** Strict: exactly the members below, every value checked, no name or digest twice. */
export function parseTokensFile(bytes: Uint8Array, path: string): TokenInfo[] {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw bad(path, 'not UTF-8 JSON');
  }
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
  const exactly = (x: Record<string, unknown>, keys: string[], what: string) => {
    for (const k of Object.keys(x)) if (!keys.includes(k)) throw bad(path, `unknown member ${JSON.stringify(k)} in ${what}`);
    for (const k of keys) if (!(k in x)) throw bad(path, `${what} has no ${k}`);
  };
  if (!isObject(v)) throw bad(path, 'not a JSON object');
  exactly(v, ['type', 'version', 'tokens'], 'the file');
  if (v.type !== TOKENS_FILE_TYPE || v.version !== 1) throw bad(path, `type must be ${TOKENS_FILE_TYPE}, version 1`);
  if (!Array.isArray(v.tokens) || v.tokens.length > MAX_TOKENS) throw bad(path, `tokens must be a list of at most ${MAX_TOKENS}`);
  const names = new Set<string>();
  const digests = new Set<string>();
  return v.tokens.map((t, i) => {
    const what = `token ${i + 1}`;
    if (!isObject(t)) throw bad(path, `${what} is not an object`);
    exactly(t, ['name', 'role', 'sha256', 'created'], what);
    if (typeof t.name !== 'string' || !TOKEN_NAME.test(t.name)) throw bad(path, `${what}: name must match ${TOKEN_NAME.source}`);
    if (!ROLES.includes(t.role as Role)) throw bad(path, `${what}: role must be one of ${ROLES.join(', ')}`);
    if (typeof t.sha256 !== 'string' || !HEX64.test(t.sha256)) throw bad(path, `${what}: sha256 must be 64 lowercase hex digits`);
    if (typeof t.created !== 'string' || !ISO_UTC.test(t.created)) throw bad(path, `${what}: created must be an ISO 8601 UTC time`);
    if (names.has(t.name)) throw bad(path, `the name ${t.name} is listed twice`);
    if (digests.has(t.sha256)) throw bad(path, `${what} has the digest of an earlier token`);
    names.add(t.name);
    digests.add(t.sha256);
    return Object.freeze({ name: t.name, role: t.role as Role, sha256: t.sha256, created: t.created });
  });
}

export function serializeTokensFile(tokens: readonly TokenInfo[]): string {
  const plain = tokens.map((t) => ({ name: t.name, role: t.role, sha256: t.sha256, created: t.created }));
  return `${JSON.stringify({ type: TOKENS_FILE_TYPE, version: 1, tokens: plain }, null, 2)}\n`;
}

/** What changes when the file is replaced (a new inode: writeFileAtomic renames) or edited in place. */
function identityOf(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

function errno(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? 'error';
}

/**
 * Read and parse the file, its mode and size checked on the open file itself. A file that group or
 * others may read or write is refused as a private key is: whoever can write it can add a token.
 */
export function readTokensFile(path: string): { tokens: TokenInfo[]; identity: string } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new FwsealError('IO', `cannot open the tokens file ${path}: ${errno(e)}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new FwsealError('IO', `the tokens file ${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0)
      throw new FwsealError('KEY_FILE_PERMISSIONS', `${path} has mode ${(st.mode & 0o777).toString(8)}; a tokens file must be 0600 (chmod 600 ${path})`);
    if (st.size > MAX_TOKENS_FILE_BYTES) throw new FwsealError('USAGE', `the tokens file ${path} is ${st.size} bytes; at most ${MAX_TOKENS_FILE_BYTES}`);
    const bytes = Buffer.alloc(st.size);
    let off = 0;
    while (off < bytes.length) {
      const n = readSync(fd, bytes, off, bytes.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return { tokens: parseTokensFile(bytes.subarray(0, off), path), identity: identityOf(st) };
  } finally {
    closeSync(fd);
  }
}

function currentIdentity(path: string): string | null {
  try {
    return identityOf(statSync(path));
  } catch (e) {
    if (errno(e) === 'ENOENT') return null;
    throw new FwsealError('IO', `cannot read the tokens file ${path}: ${errno(e)}`);
  }
}

/**
 * Read, change, write. The file is re-checked just before the write and the change re-done when it
 * moved meanwhile, so two token commands at once cannot bring back a token the other one revoked
 * (a window of one stat remains: run token commands for one file from one place).
 */
function updateTokensFile<T>(path: string, create: boolean, change: (tokens: TokenInfo[]) => { tokens: TokenInfo[]; result: T }): T {
  for (let attempt = 0; attempt < 5; attempt++) {
    const exists = currentIdentity(path) !== null;
    if (!exists && !create) throw new FwsealError('IO', `cannot open the tokens file ${path}: ENOENT`);
    const before = exists ? readTokensFile(path) : { tokens: [], identity: null };
    const next = change(before.tokens);
    if (currentIdentity(path) !== before.identity) continue;
    // A new file is created only where nothing is (replace: false), so two first tokens never overwrite each other.
    writeFileAtomic(path, serializeTokensFile(next.tokens), { mode: 0o600, replace: before.identity !== null });
    return next.result;
  }
  throw new FwsealError('IO', `the tokens file ${path} kept changing while it was updated; try again`);
}

/** A new token: returned once, here; the file keeps only its digest. */
export function createToken(path: string, name: string, role: Role, now = new Date()): { token: string; info: TokenInfo; createdFile: boolean } {
  if (!TOKEN_NAME.test(name)) throw new FwsealError('USAGE', `a token name must match ${TOKEN_NAME.source}`);
  if (!ROLES.includes(role)) throw new FwsealError('USAGE', `--role must be one of ${ROLES.join(', ')}`);
  const token = `fwseal_${randomBytes(32).toString('base64url')}`;
  const info: TokenInfo = Object.freeze({ name, role, sha256: tokenDigest(token).toString('hex'), created: now.toISOString() });
  const createdFile = currentIdentity(path) === null;
  updateTokensFile(path, true, (tokens) => {
    if (tokens.some((t) => t.name === name)) throw new FwsealError('CONFLICT', `${path} already has a token named ${name}; revoke it first`);
    if (tokens.length >= MAX_TOKENS) throw new FwsealError('USAGE', `${path} already lists ${MAX_TOKENS} tokens`);
    return { tokens: [...tokens, info], result: undefined };
  });
  return { token, info, createdFile };
}

/** Remove a token by name: a running server refuses it from its next request on (ApiAccess.fromFile). */
export function revokeToken(path: string, name: string): TokenInfo {
  return updateTokensFile(path, false, (tokens) => {
    const gone = tokens.find((t) => t.name === name);
    if (!gone) throw new FwsealError('NOT_FOUND', `${path} has no token named ${name}`);
    return { tokens: tokens.filter((t) => t !== gone), result: gone };
  });
}

/** HTTP 401 or 403 with the challenge RFC 6750 §3 asks for in `WWW-Authenticate`. */
export class AuthRefusal extends ApiError {
  constructor(
    status: 401 | 403,
    codeName: 'UNAUTHORIZED' | 'FORBIDDEN',
    message: string,
    readonly challenge: string,
  ) {
    super(status, codeName, message);
  }
}

type Known = { readonly name: string; readonly role: Role; readonly digest: Buffer };
const known = (t: TokenInfo): Known => ({ name: t.name, role: t.role, digest: Buffer.from(t.sha256, 'hex') });

/**
 * The tokens of a file, re-read whenever the file changes (one stat per call), so `token create` and
 * `token revoke` take effect without a restart. A file that has gone or no longer parses refuses
 * every call (500 with its code) until it is fixed: a broken file never opens the API.
 */
class FileTokens {
  private tokens: readonly Known[];
  private identity: string;
  private reported = '';

  constructor(
    readonly path: string,
    private readonly log: (line: string) => void,
  ) {
    const r = readTokensFile(path);
    this.tokens = r.tokens.map(known);
    this.identity = r.identity;
  }

  current(): readonly Known[] {
    try {
      const id = currentIdentity(this.path);
      if (id === this.identity) return this.tokens;
      if (id === null) throw new FwsealError('IO', `the tokens file ${this.path} is gone`);
      const r = readTokensFile(this.path);
      this.tokens = r.tokens.map(known);
      this.identity = r.identity;
      this.reported = '';
      this.log(`tokens file ${this.path} reloaded: ${this.tokens.length} token(s)`);
      return this.tokens;
    } catch (e) {
      const err = e instanceof FwsealError ? e : new FwsealError('IO', `cannot read the tokens file ${this.path}`);
      if (this.reported !== err.message) this.log(`refusing every API call: ${err.codeName}: ${err.message}`);
      this.reported = err.message;
      throw new ApiError(500, err.codeName as Exclude<CodeName, 'OK'>, err.message);
    }
  }
}

const REALM = 'Bearer realm="fwseal"';

/** How the API decides who calls: a tokens file, one shared token (FWSEAL_SERVER_TOKEN), or nobody (open). */
export class ApiAccess {
  private constructor(
    /** false: no tokens at all, every caller may do everything (loopback, or --insecure-open-api). */
    readonly configured: boolean,
    private readonly tokens: () => readonly Known[],
  ) {}

  static open(): ApiAccess {
    return new ApiAccess(false, () => []);
  }

  /** The single token of FWSEAL_SERVER_TOKEN, as before named tokens: it may do everything (admin). */
  static sharedToken(token: string, name = 'api-token'): ApiAccess {
    if (token === '') throw new FwsealError('USAGE', 'an empty API token');
    const one = Object.freeze([{ name, role: 'admin' as const, digest: tokenDigest(token) }]);
    return new ApiAccess(true, () => one);
  }

  /** Loaded now (any fault stops the start); reloaded when the file changes. */
  static fromFile(path: string, log: (line: string) => void = () => {}): ApiAccess {
    const file = new FileTokens(path, log);
    return new ApiAccess(true, () => file.current());
  }

  /**
   * The caller named by `Authorization: Bearer <token>`, else 401 UNAUTHORIZED. Every known digest is
   * compared, in constant time, whichever matches: the time taken says nothing about the token list.
   */
  authenticate(header: string | undefined): Caller {
    if (!this.configured) return { name: 'api', role: 'admin', source: 'api-open' };
    const tokens = this.tokens();
    const m = typeof header === 'string' ? /^Bearer +(\S+) *$/i.exec(header) : null;
    if (!m || m[1].length > MAX_CREDENTIAL_CHARS) throw new AuthRefusal(401, 'UNAUTHORIZED', 'missing bearer token', REALM);
    const given = tokenDigest(m[1]);
    let found: Known | undefined;
    for (const t of tokens) {
      const same = timingSafeEqual(given, t.digest);
      if (same && found === undefined) found = t;
    }
    if (!found) throw new AuthRefusal(401, 'UNAUTHORIZED', 'unknown or revoked bearer token', `${REALM}, error="invalid_token"`);
    return { name: found.name, role: found.role, source: 'api-token' };
  }

  /** authenticate, then 403 FORBIDDEN unless the caller's role is at least `required`. */
  authorize(header: string | undefined, required: Role): Caller {
    const caller = this.authenticate(header);
    requireRole(caller, required);
    return caller;
  }
}

/** 403 FORBIDDEN (with the scope needed, RFC 6750 §3.1) unless the caller's role is at least `required`. */
export function requireRole(caller: Caller, required: Role): void {
  if (!roleAllows(caller.role, required))
    throw new AuthRefusal(
      403,
      'FORBIDDEN',
      `token ${caller.name} has the role ${caller.role}; this call needs ${required}`,
      `${REALM}, error="insufficient_scope", scope="${required}"`,
    );
}
