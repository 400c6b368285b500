/**
 * How the device answers what it refuses (SPEC.md §13.6, §13.7), in the request's SMP version:
 * Zephyr's group error codes (img_mgmt, os_mgmt), the fwseal code → group code table, and the
 * v1 translation. Stock clients read these: the smp/smpclient Python models accept, for a v2
 * request, only {"err": {"group", "rc"}} with `rc` from the group's own enum (IMG_MGMT_ERR for the
 * image group), and they refuse any key they do not know (pydantic extra="forbid"), so the fwseal
 * code travels as the v1 "rsn" text (the code name) and in group 64 status, never as an extra key.
 */
import { CODES, type CodeName, codeName } from '../codes.js';
import { MGMT_ERR, type SmpError } from './errors.js';
import { SMP_GROUP, SMP_VERSION, type SmpHeader } from './packet.js';

/** Zephyr's enum img_mgmt_err_code_t (include/zephyr/mgmt/mcumgr/grp/img_mgmt/img_mgmt.h). */
export const IMG_MGMT_ERR = Object.freeze({
  OK: 0,
  UNKNOWN: 1,
  FLASH_CONFIG_QUERY_FAIL: 2,
  NO_IMAGE: 3,
  NO_TLVS: 4,
  INVALID_TLV: 5,
  TLV_MULTIPLE_HASHES_FOUND: 6,
  TLV_INVALID_SIZE: 7,
  HASH_NOT_FOUND: 8,
  NO_FREE_SLOT: 9,
  FLASH_OPEN_FAILED: 10,
  FLASH_READ_FAILED: 11,
  FLASH_WRITE_FAILED: 12,
  FLASH_ERASE_FAILED: 13,
  INVALID_SLOT: 14,
  NO_FREE_MEMORY: 15,
  FLASH_CONTEXT_ALREADY_SET: 16,
  FLASH_CONTEXT_NOT_SET: 17,
  FLASH_AREA_DEVICE_NULL: 18,
  INVALID_PAGE_OFFSET: 19,
  INVALID_OFFSET: 20,
  INVALID_LENGTH: 21,
  INVALID_IMAGE_HEADER: 22,
  INVALID_IMAGE_HEADER_MAGIC: 23,
  INVALID_HASH: 24,
  INVALID_FLASH_ADDRESS: 25,
  VERSION_GET_FAILED: 26,
  CURRENT_VERSION_IS_NEWER: 27,
  IMAGE_ALREADY_PENDING: 28,
  INVALID_IMAGE_VECTOR_TABLE: 29,
  INVALID_IMAGE_TOO_LARGE: 30,
  INVALID_IMAGE_DATA_OVERRUN: 31,
  IMAGE_CONFIRMATION_DENIED: 32,
  IMAGE_SETTING_TEST_TO_ACTIVE_DENIED: 33,
});

/** Zephyr's enum os_mgmt_err_code_t (include/zephyr/mgmt/mcumgr/grp/os_mgmt/os_mgmt.h), the codes fwseal uses. */
export const OS_MGMT_ERR = Object.freeze({ OK: 0, UNKNOWN: 1, INVALID_FORMAT: 2 });

/**
 * An img_mgmt code as a v1 "rc": Zephyr's img_mgmt_translate_error_code (grp/img_mgmt/src/img_mgmt.c),
 * which smp_handle_single_req applies to a group error answered to a v1 request.
 */
export function imgMgmtV1Rc(rc: number): number {
  const I = IMG_MGMT_ERR;
  if (rc === I.NO_IMAGE || rc === I.NO_TLVS) return MGMT_ERR.ENOENT;
  if (rc === I.NO_FREE_SLOT || rc === I.CURRENT_VERSION_IS_NEWER || rc === I.IMAGE_ALREADY_PENDING) return MGMT_ERR.EBADSTATE;
  if (rc === I.NO_FREE_MEMORY) return MGMT_ERR.ENOMEM;
  const einval: readonly number[] = [
    I.INVALID_SLOT,
    I.INVALID_PAGE_OFFSET,
    I.INVALID_OFFSET,
    I.INVALID_LENGTH,
    I.INVALID_IMAGE_HEADER,
    I.INVALID_HASH,
    I.INVALID_FLASH_ADDRESS,
  ];
  return einval.includes(rc) ? MGMT_ERR.EINVAL : MGMT_ERR.EUNKNOWN;
}

/** An image group error as Zephyr's img_mgmt answers it: v2 {"err": {"group": 1, "rc"}}, v1 {"rc": translated}. */
export function imageGroupError(rc: number): SmpError {
  return Object.freeze({ group: SMP_GROUP.image, rc, v1rc: imgMgmtV1Rc(rc) });
}

/**
 * SPEC.md §13.6: the image group code a v2 image upload or image state write answers for an
 * fwseal code (the first row that names it; 1xx, 2xx, ... rows by range; else UNKNOWN).
 */
export const IMAGE_ERROR_TABLE: readonly (readonly [CodeName | '1xx' | '2xx' | '4xx', number])[] = Object.freeze([
  ['MALFORMED', IMG_MGMT_ERR.INVALID_IMAGE_HEADER_MAGIC],
  ['BAD_VALUE', IMG_MGMT_ERR.INVALID_LENGTH],
  ['TOO_LARGE', IMG_MGMT_ERR.INVALID_LENGTH],
  ['1xx', IMG_MGMT_ERR.INVALID_IMAGE_HEADER],
  ['2xx', IMG_MGMT_ERR.INVALID_TLV],
  ['ROLLBACK', IMG_MGMT_ERR.CURRENT_VERSION_IS_NEWER],
  ['WRONG_DEVICE_CLASS', IMG_MGMT_ERR.INVALID_IMAGE_HEADER],
  ['REVOKED_KEY', IMG_MGMT_ERR.INVALID_TLV],
  ['REVOKED_MANIFEST', IMG_MGMT_ERR.INVALID_TLV],
  // Issue 19: a bundle without the log proof the device's policy requires (an FWSBND1 bundle) reads
  // as MCUboot's image without its TLVs; a proof that does not check, as a bad TLV.
  ['LOG_PROOF_MISSING', IMG_MGMT_ERR.NO_TLVS],
  ['LOG_PROOF_MISMATCH', IMG_MGMT_ERR.INVALID_TLV],
  ['LOG_ROLLBACK', IMG_MGMT_ERR.INVALID_TLV],
  ['LOG_FORK', IMG_MGMT_ERR.INVALID_TLV],
  ['IMAGE_TOO_LONG', IMG_MGMT_ERR.INVALID_IMAGE_DATA_OVERRUN],
  ['IMAGE_TOO_SHORT', IMG_MGMT_ERR.INVALID_LENGTH],
  ['4xx', IMG_MGMT_ERR.INVALID_TLV],
  ['FLASH_ERASE_FAILED', IMG_MGMT_ERR.FLASH_ERASE_FAILED],
  ['STATE_CORRUPT', IMG_MGMT_ERR.FLASH_READ_FAILED],
  ['SLOT_TOO_SMALL', IMG_MGMT_ERR.INVALID_IMAGE_TOO_LARGE],
  ['AGENT_BAD_STATE', IMG_MGMT_ERR.IMAGE_ALREADY_PENDING],
  ['NOT_CONFIRMED', IMG_MGMT_ERR.IMAGE_CONFIRMATION_DENIED],
  ['BOOT_IMAGE_INVALID', IMG_MGMT_ERR.INVALID_IMAGE_HEADER],
]);

/** The image group code for an fwseal code (IMAGE_ERROR_TABLE; flash faults 500-505 are FLASH_WRITE_FAILED). */
export function imageGroupCode(code: number): number {
  for (const [key, rc] of IMAGE_ERROR_TABLE) {
    const hit = key.endsWith('xx') ? Math.floor(code / 100) === Number(key[0]) : CODES[key as CodeName] === code;
    if (hit) return rc;
  }
  return code >= CODES.FLASH_MISALIGNED && code <= CODES.FLASH_READBACK_MISMATCH ? IMG_MGMT_ERR.FLASH_WRITE_FAILED : IMG_MGMT_ERR.UNKNOWN;
}

/** SPEC.md §13.6: the v1 "rc" of an fwseal rejection. */
export function rejectionV1Rc(code: number): number {
  if (code === CODES.AGENT_BUSY) return MGMT_ERR.EBUSY;
  if (code === CODES.SLOT_TOO_SMALL) return MGMT_ERR.ENOMEM;
  if (code < 200) return MGMT_ERR.EINVAL;
  if (code < 400) return MGMT_ERR.EACCESSDENIED;
  if (code < 500) return MGMT_ERR.ECORRUPT;
  if (code === CODES.AGENT_BAD_STATE || code === CODES.NOT_CONFIRMED) return MGMT_ERR.EBADSTATE;
  return MGMT_ERR.EUNKNOWN;
}

/**
 * A rejection with an fwseal code (a refused bundle, commit or confirm; SPEC.md §13.6), in the
 * request's version: v1 {"rc": rejectionV1Rc, "rsn": code name}; v2 {"err": {"group", "rc"}} with
 * the image group code (IMAGE_ERROR_TABLE) for group 1, the fwseal code itself for group 64.
 */
export function rejectionError(header: SmpHeader | undefined, code: number): SmpError {
  const rsn = codeName(code);
  const group = header?.group ?? SMP_GROUP.image;
  if (header?.version !== SMP_VERSION.v2) return Object.freeze({ rc: rejectionV1Rc(code), rsn });
  return Object.freeze({ group, rc: group === SMP_GROUP.image ? imageGroupCode(code) : code, v1rc: rejectionV1Rc(code), rsn });
}

/**
 * A request whose payload the reader or the command's codec refused (SPEC.md §13.7 rule 1: text
 * over maxTextBytes, a duplicate key, a wrong type, a chunk breaking the upload rules): always
 * answered; v1 {"rc": 3 EINVAL, "rsn": code name}; v2 {"err": {"group": the request's, "rc"}} with
 * the group's nearest code: image INVALID_LENGTH (TOO_LARGE, BAD_VALUE) or INVALID_IMAGE_HEADER,
 * OS INVALID_FORMAT, group 64 the fwseal code, any other group MGMT_ERR.EINVAL. `imageRc` overrides
 * the image group's code (INVALID_IMAGE_DATA_OVERRUN for data past the upload's len, as Zephyr).
 */
export function refusalError(header: SmpHeader | undefined, name: string, imageRc?: number): SmpError {
  if (header?.version !== SMP_VERSION.v2) return Object.freeze({ rc: MGMT_ERR.EINVAL, rsn: name });
  const code: number | undefined = (CODES as Readonly<Record<string, number>>)[name];
  const rc =
    header.group === SMP_GROUP.image
      ? (imageRc ?? (name === 'TOO_LARGE' || name === 'BAD_VALUE' ? IMG_MGMT_ERR.INVALID_LENGTH : IMG_MGMT_ERR.INVALID_IMAGE_HEADER))
      : header.group === SMP_GROUP.os
        ? OS_MGMT_ERR.INVALID_FORMAT
        : header.group === SMP_GROUP.fwseal
          ? (code ?? MGMT_ERR.EINVAL)
          : MGMT_ERR.EINVAL;
  return Object.freeze({ group: header.group, rc, v1rc: MGMT_ERR.EINVAL, rsn: name });
}
