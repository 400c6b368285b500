/**
 * The error-code table (SPEC.md §Error codes). Append-only: a code, once shipped, keeps its number
 * and meaning forever. Grouped by stage: 1xx decode, 2xx signature, 3xx policy, 4xx image,
 * 5xx flash, 6xx transport, 8xx host. Devices report numbers; hosts map them to names.
 */
import { HOST_CODES } from './codes-host.js';

/**
 * 0–5xx: what the verifier and the agents answer. The device bundle's `CODES` is this table alone
 * (tools/build-device.mjs gives the bundle an empty HOST_CODES: SPEC.md §10), so transport and host
 * codes cost the device nothing.
 */
export const DEVICE_CODES = Object.freeze({
  OK: 0,

  // 1xx decode: the bytes are not a well-formed object of the expected kind.
  MALFORMED: 100,
  TRUNCATED: 101,
  TRAILING_BYTES: 102,
  NON_DETERMINISTIC: 103,
  TOO_LARGE: 104,
  TOO_DEEP: 105,
  DUPLICATE_KEY: 106,
  UNKNOWN_KEY: 107,
  MISSING_FIELD: 108,
  WRONG_TYPE: 109,
  BAD_VALUE: 110,
  UNSUPPORTED_FORMAT: 111,
  WRONG_KIND: 112,
  BAD_HEADER: 113,

  // 2xx signature: the object is well formed, its signatures do not carry it.
  UNSUPPORTED_ALGORITHM: 200,
  THRESHOLD_NOT_MET: 201,
  TRUST_THRESHOLD_NOT_MET: 202,
  ROTATION_NOT_AUTHORIZED: 203,
  REVOCATION_THRESHOLD_NOT_MET: 204,
  LOG_SIGNATURE_INVALID: 205,
  LOG_WITNESSES_NOT_MET: 206,

  // 3xx policy: signed correctly, but this device must not accept it.
  ROLLBACK: 300,
  WRONG_DEVICE_CLASS: 301,
  REVOKED_KEY: 302,
  REVOKED_MANIFEST: 303,
  REVOCATION_ROLLBACK: 304,
  TRUST_ROLLBACK: 305,
  TRUST_VERSION_SKIP: 306,
  INVALID_STATE: 307,
  INVALID_ARGUMENT: 308,
  LOG_PROOF_MISSING: 309,
  LOG_PROOF_MISMATCH: 310,
  LOG_ROLLBACK: 311,
  LOG_FORK: 312,

  // 4xx image: the bytes do not match the signed Merkle root.
  IMAGE_TOO_LONG: 400,
  IMAGE_TOO_SHORT: 401,
  CHUNK_DIGEST_MISMATCH: 402,
  MERKLE_ROOT_MISMATCH: 403,
  CHUNK_INDEX_OUT_OF_RANGE: 404,
  PROOF_INVALID: 405,
  DIGEST_PAGE_MISMATCH: 406,
  VERIFIER_CLOSED: 407,

  // 5xx flash and update agent: what happens on the device around the verifier.
  FLASH_MISALIGNED: 500,
  FLASH_OUT_OF_RANGE: 501,
  FLASH_NOT_ERASED: 502,
  FLASH_WRITE_FAILED: 503,
  FLASH_ERASE_FAILED: 504,
  FLASH_READBACK_MISMATCH: 505,
  STATE_CORRUPT: 506,
  COUNTER_EXHAUSTED: 507,
  AGENT_BUSY: 508,
  AGENT_BAD_STATE: 509,
  SLOT_TOO_SMALL: 510,
  NOT_CONFIRMED: 511,
  BOOT_IMAGE_INVALID: 512,
});

/** Every code: the device's and the host's (shared/codes-host.ts). */
export const CODES = Object.freeze({ ...DEVICE_CODES, ...HOST_CODES });

export type CodeName = keyof typeof CODES;
export type Code = (typeof CODES)[CodeName];

const NAMES: readonly (readonly [number, CodeName])[] = Object.freeze(
  (Object.keys(CODES) as CodeName[]).map((name) => Object.freeze([CODES[name], name] as const)),
);

/** Name of a numeric code, or "UNKNOWN_<n>" for a code this build does not know (a newer device). */
export function codeName(code: number): string {
  for (const [n, name] of NAMES) if (n === code) return name;
  return `UNKNOWN_${String(code)}`;
}

/** The stage a code belongs to, from its hundreds digit. */
export function codeStage(code: number): string {
  const group = Math.floor(code / 100);
  return ['ok', 'decode', 'signature', 'policy', 'image', 'flash', 'transport', 'reserved', 'host'][group] ?? 'unknown';
}

/** Result of every device check: ok or a code with its name; never an exception. */
export type Failure = { readonly ok: false; readonly code: number; readonly error: string; readonly detail?: string };
export type Ok<T> = { readonly ok: true; readonly code: 0; readonly error: 'OK' } & T;
/** A result with nothing beyond ok, code and error. */
export type Empty = Record<never, never>;
export type Result<T = Empty> = Ok<T> | Failure;

export function fail(name: Exclude<CodeName, 'OK'>, detail?: string): Failure {
  const f: Failure = detail === undefined ? { ok: false, code: CODES[name], error: name } : { ok: false, code: CODES[name], error: name, detail };
  return Object.freeze(f);
}

export function ok<T extends object>(value: T): Ok<T> {
  return Object.freeze({ ok: true as const, code: 0 as const, error: 'OK' as const, ...value });
}
