/**
 * 6xx transport and 8xx host codes (SPEC.md §9), append-only like the rest of the table: part of
 * `CODES` on the host, left out of the device bundle (tools/build-device.mjs), which answers 0–5xx.
 */
export const HOST_CODES = Object.freeze({
  // 6xx transport: getting the bytes to the device.
  TRANSPORT_UNAVAILABLE: 600,
  TRANSPORT_TIMEOUT: 601,
  UNKNOWN_CAMPAIGN: 602,
  UNKNOWN_BLOCK: 603,
  BAD_REQUEST: 604,
  SERVER_BUSY: 605,
  CAMPAIGN_INACTIVE: 606,
  BROKER_UNREACHABLE: 607,
  REPLY_TOPIC_REFUSED: 608,
  UNKNOWN_TRUST_VERSION: 609,
  LOG_PROOF_UNAVAILABLE: 610,
  LOG_CHECKPOINT_BEHIND: 611,
  // 62x serial: SMP over the console (SPEC.md §13).
  FRAME_CRC_MISMATCH: 620,

  // 8xx host: the host tools' own failures (never sent by a device).
  USAGE: 800,
  IO: 801,
  KEY_FILE_PERMISSIONS: 802,
  WRONG_PASSPHRASE: 803,
  KEY_FORMAT: 804,
  NO_PASSPHRASE: 805,
  KEY_NOT_IN_TRUST: 806,
  SERVER_UNREACHABLE: 807,
  NOT_FOUND: 808,
  CONFLICT: 809,
  UNAUTHORIZED: 810,
  PKCS11_MODULE: 811,
  TOKEN_NOT_FOUND: 812,
  KEY_NOT_FOUND: 813,
  PIN_INCORRECT: 814,
  UNSUPPORTED_KEY: 815,
  SIGNER_FAILED: 816,
  SIGNER_TIMEOUT: 817,
  BAD_SIGNATURE: 818,
  PAYLOAD_MISMATCH: 819,
  AUDIT_LOG_INVALID: 820,
  BROKER_AUTH_FAILED: 821,
  FORBIDDEN: 822,
  PACKAGE_MISSING: 823,
  LOG_INVALID: 824,
  INTERNAL: 899,
});
