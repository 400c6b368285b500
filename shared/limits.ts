/**
 * Every limit of the wire formats, in one place (SPEC.md §Limits).
 * Decoders check these against the remaining input *before* allocating or recursing.
 * Frozen: no module-level mutable state in shared/.
 */
export const WIRE_LIMITS = Object.freeze({
  /** Largest signed envelope (manifest, trust bundle or revocation list) accepted, in bytes. */
  maxEnvelopeBytes: 16384,
  /** Largest signed payload inside an envelope, in bytes. */
  maxPayloadBytes: 12288,
  /** Deepest CBOR nesting (arrays/maps/tags) accepted. */
  maxDepth: 8,
  /** Most entries in one CBOR array or map. */
  maxContainerEntries: 256,
  /**
   * Most CBOR data items in one decoded input (an envelope, a payload, a message). The largest
   * honest object, a revocation list of 128 key ids and 128 manifest digests, has 267; the bound
   * keeps refusing a hostile 16 KiB envelope inside the device's memory budget (SPEC.md §10).
   */
  maxDecodedItems: 400,
  /** Longest text string, in bytes (UTF-8). */
  maxTextBytes: 256,
  /** Most COSE_Signature entries in one envelope. */
  maxSignatures: 16,
  /** Most keys in one trust-bundle role. */
  maxRoleKeys: 16,
  /** Most revoked key ids in one revocation list. */
  maxRevokedKeys: 128,
  /** Most revoked manifest digests in one revocation list. */
  maxRevokedManifests: 128,
  /** Device class: 1..64 bytes of [A-Za-z0-9._-]. */
  maxDeviceClassBytes: 64,
  /** Firmware version (SemVer 2.0.0 text): at most this many bytes. */
  maxVersionBytes: 64,
  /** Smallest and largest chunk size; chunk sizes are powers of two. */
  minChunkSize: 512,
  maxChunkSize: 1048576,
  /** Largest image a manifest may describe (4 GiB - 1, fits the device's 32-bit offsets). */
  maxImageSize: 0xffffffff,
  /** Leaf digests per digest page (a page is the subtree of height 7: 128 * 32 B = 4 KiB). */
  pageLeaves: 128,
  pageHeight: 7,
  /** Longest inclusion proof (tree of at most 2^32 leaves). */
  maxProofNodes: 32,
  /** Largest security counter, trust version or revocation version (2^53 - 1: exact in JS numbers). */
  maxCounter: Number.MAX_SAFE_INTEGER,
  /** Latest manifest creation time, in seconds since the Unix epoch (9999-12-31T23:59:59Z): every allowed value is a valid date. */
  maxCreated: 253402300799,
  /** URI and provenance text fields. */
  maxUriBytes: 256,
  /** A log proof attachment carried to a device (SPEC.md §12.2, §13.5): MQTT response, update bundle. */
  maxLogProofBytes: 8192,
});
const SERVICE_LIMITS = {
  /** OTA over MQTT (SPEC.md §12): most image bytes in one block response (well under a 128 KB broker cap). */
  maxBlockBytes: 65536,
  /** Most blocks one block request may ask for (also the most blocks a device keeps in flight). */
  maxBlocksPerRequest: 16,
  /** Most ranges in one block request. */
  maxRangesPerRequest: 16,
  /** Longest bitmap window in one block request, in bytes (8 blocks per byte). */
  maxBitmapBytes: 128,
  /** Campaign, device and group ids: 1..64 bytes of [A-Za-z0-9_-]. */
  maxIdBytes: 64,
  /** Longest MQTT topic an OTA message names (reply topic) or fwseal builds, in bytes. */
  maxTopicBytes: 256,
  /** Largest request id (32 bits). */
  maxRequestId: 4294967295,
  /** Largest OTA message (CBOR) accepted: a full block plus its envelope. */
  maxOtaMessageBytes: 66560,
  /** OTA server (SPEC.md §12.9): requests queued before new ones get SERVER_BUSY. */
  maxQueuedRequests: 4096,
  /**
   * OTA server: bytes waiting on the broker socket above which the request queue is not drained. Small:
   * mqtt.js reads the next packet only once the last acknowledgement is written, so a deep backlog
   * starves the reader (PINGRESP included) and the broker drops the session (SPEC.md §12.9).
   */
  maxBrokerBacklogBytes: 524288,
  /** OTA server (SPEC.md §12.9 "Status ingest"): status events received and not yet in the store; past it the server stops reading from the broker until half are in. */
  maxStatusBacklog: 2048,
  /** OTA server (SPEC.md §12.9): devices known from `online` events; a new device beyond it is ignored (invented ids never grow the store without bound). */
  maxKnownDevices: 1048576,
  /** OTA server: image blocks kept in memory per instance (LRU). */
  blockCacheEntries: 256,
  /** OTA server: longest a block answer waits for more devices asking for it (SPEC.md §12.11), well under a device's 5 s request timeout. */
  maxMulticastHoldMs: 1000,
  /** OTA server (SPEC.md §12.9 "Request gate"): longest one instance answers requests from a campaign's gate (state, halt, rollout, exclusions) read earlier; its own changes apply at once. */
  gateCacheMs: 250,
  /** OTA server: campaigns whose gate one instance remembers; the oldest read goes first. */
  gateCacheEntries: 1024,
  /** OTA server (SPEC.md §12.11): (campaign, device) pairs one instance tracks to estimate who listens on a data topic; the least recently seen go first. */
  maxMulticastAudience: 65536,
  /** Waves in one campaign. */
  maxWaves: 100,
  /** Largest JSON request body of the server's HTTP API, and largest answer its CLI client reads. */
  maxApiJsonBytes: 65536,
  maxApiResponseBytes: 67108864,
  /** Largest PEM file (CA, client certificate, key) for MQTT over TLS. */
  maxPemBytes: 1048576,
  /** Most simulated devices in one `fwseal fleet-sim` process. */
  maxFleetDevices: 10000,
  /**
   * SMP over the console (SPEC.md §13.2): longest line received, start marker and '\n' included (Zephyr's
   * UART transport receive buffer, CONFIG_UART_MCUMGR_RX_BUF_SIZE, default 128). Lines sent hold whole
   * base64 quads, so they are at most 127 bytes (Zephyr's MCUMGR_SERIAL_MAX_FRAME).
   */
  maxSmpLineBytes: 128,
  /** Largest SMP packet (8-byte header + CBOR payload) a console frame may carry; the device's buf_size. */
  maxSmpPacketBytes: 4096,
  /** External signer (SPEC.md §15.3): time allowed for one signature, and the most stdout bytes read. */
  signerTimeoutMs: 30000,
  maxSignerOutputBytes: 4096,
  /** A detached signature file (§15.4). */
  maxDetachedSignatureBytes: 512,
  /** One audit log line (§15.6), newline included. */
  maxAuditLineBytes: 4096,
  /** `key import` of an encrypted PEM (§15.5): the largest KDF iteration count (or scrypt parameter) tried. */
  maxImportKdfIterations: 2000000,
};
export const LIMITS = /* @__PURE__ */ Object.freeze(/* @__PURE__ */ Object.assign({}, WIRE_LIMITS, SERVICE_LIMITS));

/** Length of a key id in bytes: SHA-256(public key) truncated (SPEC.md §Key ids). */
export const KEY_ID_BYTES = 16;
/** Length of a SHA-256 digest. */
export const DIGEST_BYTES = 32;
/** Ed25519 public key and signature lengths (RFC 8032 §5.1.5, §5.1.6). */
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;
