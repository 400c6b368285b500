/**
 * SMP errors (SPEC.md §13.1, §13.6): Zephyr's mcumgr_err_t result codes, v1 {"rc", "rsn"} and v2
 * group error maps {"err": {"group", "rc"}}, encoded and read; Zephyr's group codes (img_mgmt,
 * os_mgmt) and the table that maps fwseal codes onto them (SPEC.md §13.6).
 */
import { type CborMap } from '../cbor.js';
import { encodeSmpPacket, SMP_VERSION, type SmpHeader } from './packet.js';
import { mapOf } from './payload-fields.js';

/** SMP-level result codes (Zephyr's enum mcumgr_err_t, carried as "rc"). */
export const MGMT_ERR = Object.freeze({
  EOK: 0,
  EUNKNOWN: 1,
  ENOMEM: 2,
  EINVAL: 3,
  ETIMEOUT: 4,
  ENOENT: 5,
  EBADSTATE: 6,
  EMSGSIZE: 7,
  ENOTSUP: 8,
  ECORRUPT: 9,
  EBUSY: 10,
  EACCESSDENIED: 11,
  UNSUPPORTED_TOO_OLD: 12,
  UNSUPPORTED_TOO_NEW: 13,
});

export type SmpError = {
  /** Zephyr's MGMT_ERR (v1 "rc", or v2 "rc" outside "err"), or the group's own code (v2 "err"). */
  readonly rc: number;
  /** Present for v2 group errors: the group whose code `rc` is. */
  readonly group?: number;
  /** v1 reason text, when the peer sent one. */
  readonly rsn?: string;
  /**
   * A group error's answer to a v1 request: the MGMT_ERR Zephyr's smp_translate_error_code gives
   * it (SPEC.md §13.6). Only the encoder reads it; a parsed error never has it.
   */
  readonly v1rc?: number;
};

/**
 * An error response: v1 {"rc": N, "rsn"?: text}; v2 group errors {"err": {"group": G, "rc": N}}.
 * A group error answers a v1 request with its `v1rc` (EUNKNOWN when none is given), as Zephyr's
 * smp_handle_single_req translates it. A v2 request that fails at the SMP level (no group: ENOTSUP,
 * ECORRUPT, a handler that threw) still gets {"rc": N}, as Zephyr's smp_build_err_rsp sends it.
 */
export function encodeErrorResponse(request: SmpHeader, error: SmpError): Uint8Array {
  const payload =
    error.group !== undefined && request.version === SMP_VERSION.v2
      ? mapOf([
          [
            'err',
            mapOf([
              ['group', error.group],
              ['rc', error.rc],
            ]),
          ],
        ])
      : mapOf([
          ['rc', error.group === undefined ? error.rc : (error.v1rc ?? MGMT_ERR.EUNKNOWN)],
          ['rsn', error.rsn],
        ]);
  return encodeSmpPacket({ op: request.op | 1, version: request.version, flags: 0, group: request.group, seq: request.seq, command: request.command }, payload);
}

/** The error a response carries, or null when it carries none ("rc" absent or 0). Malformed error fields count as MGMT_ERR.EUNKNOWN. */
export function smpErrorOf(payload: CborMap): SmpError | null {
  const err = payload.get('err');
  if (err instanceof Map) {
    const rc = err.get('rc');
    const group = err.get('group');
    if (rc === 0) return null;
    return typeof rc === 'number' && Number.isInteger(rc) && typeof group === 'number' && Number.isInteger(group)
      ? Object.freeze({ rc, group })
      : Object.freeze({ rc: MGMT_ERR.EUNKNOWN });
  }
  const rc = payload.get('rc');
  if (rc === undefined || rc === 0) return null;
  if (typeof rc !== 'number' || !Number.isInteger(rc)) return Object.freeze({ rc: MGMT_ERR.EUNKNOWN });
  const rsn = payload.get('rsn');
  return Object.freeze(typeof rsn === 'string' ? { rc, rsn } : { rc });
}
