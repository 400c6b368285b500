/**
 * The codecs of the SMP commands fwseal speaks (SPEC.md §13.3): OS echo/reset/params, image
 * state/upload, and fwseal's vendor group 64 (envelope uploads and status); SMP_COMMANDS and
 * findCommand for dispatch by (group, id, op).
 */
import { type CborMap, type CborValue } from '../cbor.js';
import { type Empty, ok } from '../codes.js';
import { schemaFail } from '../fields.js';
import { LIMITS } from '../limits.js';
import { type AnySmpCommand, type PayloadCodec, type SmpCommand } from './messages.js';
import { FWSEAL_COMMAND, IMAGE_COMMAND, OS_COMMAND, SMP_GROUP, SMP_OP, type SmpHeader } from './packet.js';
import { boolField, bytesField, intField, MAX_U32, mapOf, parseWith, required, textField, uintField } from './payload-fields.js';
import { checkChunk, ENVELOPE_UPLOAD_BOUNDS, IMAGE_UPLOAD_BOUNDS } from './upload.js';

/** fwseal codes are 0..999 (SPEC.md §9). */
const MAX_CODE = 999;
/** Image hashes and upload session ids: Zephyr's IMG_MGMT_HASH_LEN / IMG_MGMT_DATA_SHA_LEN is 32. */
const MAX_HASH_BYTES = 32;
const noPayload: PayloadCodec<Empty> = Object.freeze({ encode: () => new Map(), parse: () => ok({ value: Object.freeze({}) }) });

// OS group (0)

export type EchoRequest = { readonly text: string };
export type EchoResponse = { readonly text: string };
export const echo: SmpCommand<EchoRequest, EchoResponse> = Object.freeze({
  name: 'os.echo',
  group: SMP_GROUP.os,
  id: OS_COMMAND.echo,
  op: SMP_OP.write,
  request: {
    encode: (v: EchoRequest) => mapOf([['d', v.text]]),
    parse: (m: CborMap) => parseWith(() => ({ text: required(textField(m, 'd', LIMITS.maxTextBytes), 'd') })),
  },
  response: {
    encode: (v: EchoResponse) => mapOf([['r', v.text]]),
    parse: (m: CborMap) => parseWith(() => ({ text: required(textField(m, 'r', LIMITS.maxTextBytes), 'r') })),
  },
});

export type ResetRequest = { readonly force?: boolean };
export const reset: SmpCommand<ResetRequest, Empty> = Object.freeze({
  name: 'os.reset',
  group: SMP_GROUP.os,
  id: OS_COMMAND.reset,
  op: SMP_OP.write,
  request: {
    encode: (v: ResetRequest) => mapOf([['force', v.force]]),
    parse: (m: CborMap) =>
      parseWith(() => {
        const force = boolField(m, 'force');
        return force === undefined ? {} : { force };
      }),
  },
  response: noPayload,
});

/** MCUmgr parameters: the device's SMP buffer size and count, so a client sizes its upload chunks. */
export type ParamsResponse = { readonly bufSize: number; readonly bufCount: number };
export const params: SmpCommand<Empty, ParamsResponse> = Object.freeze({
  name: 'os.params',
  group: SMP_GROUP.os,
  id: OS_COMMAND.params,
  op: SMP_OP.read,
  request: noPayload,
  response: {
    encode: (v: ParamsResponse) =>
      mapOf([
        ['buf_size', v.bufSize],
        ['buf_count', v.bufCount],
      ]),
    parse: (m: CborMap) =>
      parseWith(() => ({
        bufSize: required(uintField(m, 'buf_size', MAX_U32), 'buf_size'),
        bufCount: required(uintField(m, 'buf_count', MAX_U32), 'buf_count'),
      })),
  },
});

// Image group (1)

export type ImageSlotState = {
  readonly image?: number;
  readonly slot: number;
  readonly version: string;
  readonly hash?: Uint8Array;
  readonly bootable: boolean;
  readonly pending: boolean;
  readonly confirmed: boolean;
  readonly active: boolean;
  readonly permanent: boolean;
};
export type ImageStateResponse = { readonly images: readonly ImageSlotState[]; readonly splitStatus?: number };
const SLOT_FLAGS = ['bootable', 'pending', 'confirmed', 'active', 'permanent'] as const;

const imageStateResponse: PayloadCodec<ImageStateResponse> = Object.freeze({
  encode: (v: ImageStateResponse) =>
    mapOf([
      [
        'images',
        v.images.map((s) =>
          mapOf([
            ['image', s.image],
            ['slot', s.slot],
            ['version', s.version],
            ['hash', s.hash],
            // Every flag, false ones too, as Zephyr's img_mgmt_state_encode_slot without
            // CONFIG_MCUMGR_GRP_IMG_FRUGAL_LIST (the default); a peer's absent flag reads as false.
            ...SLOT_FLAGS.map((f) => [f, s[f]] as const),
          ]),
        ),
      ],
      ['splitStatus', v.splitStatus],
    ]),
  parse: (m: CborMap) =>
    parseWith(() => {
      const list = required(m.get('images'), 'images');
      if (!Array.isArray(list)) schemaFail('WRONG_TYPE', '"images" is not an array');
      const images = (list as readonly CborValue[]).map((entry) => {
        if (!(entry instanceof Map)) schemaFail('WRONG_TYPE', 'an image entry is not a map');
        const e = entry as CborMap;
        const image = uintField(e, 'image', 0xff);
        const hash = bytesField(e, 'hash', MAX_HASH_BYTES);
        const slot: ImageSlotState = {
          ...(image === undefined ? {} : { image }),
          slot: required(uintField(e, 'slot', 0xff), 'slot'),
          version: required(textField(e, 'version', LIMITS.maxVersionBytes), 'version'),
          ...(hash === undefined ? {} : { hash }),
          bootable: boolField(e, 'bootable') ?? false,
          pending: boolField(e, 'pending') ?? false,
          confirmed: boolField(e, 'confirmed') ?? false,
          active: boolField(e, 'active') ?? false,
          permanent: boolField(e, 'permanent') ?? false,
        };
        return Object.freeze(slot);
      });
      const splitStatus = intField(m, 'splitStatus');
      return splitStatus === undefined ? { images: Object.freeze(images) } : { images: Object.freeze(images), splitStatus };
    }),
});

export const imageState: SmpCommand<Empty, ImageStateResponse> = Object.freeze({
  name: 'image.state',
  group: SMP_GROUP.image,
  id: IMAGE_COMMAND.state,
  op: SMP_OP.read,
  request: noPayload,
  response: imageStateResponse,
});

/** Mark an image for a test boot (confirm false) or confirm it (confirm true; no hash = the running one). */
export type ImageStateWriteRequest = { readonly hash?: Uint8Array; readonly confirm: boolean };
export const imageStateWrite: SmpCommand<ImageStateWriteRequest, ImageStateResponse> = Object.freeze({
  name: 'image.state-write',
  group: SMP_GROUP.image,
  id: IMAGE_COMMAND.state,
  op: SMP_OP.write,
  request: {
    encode: (v: ImageStateWriteRequest) =>
      mapOf([
        ['hash', v.hash],
        ['confirm', v.confirm],
      ]),
    parse: (m: CborMap) =>
      parseWith(() => {
        // Longer than IMAGE_HASH_LEN is answered by the device as Zephyr does (INVALID_HASH), not refused here.
        const hash = bytesField(m, 'hash', 2 * MAX_HASH_BYTES);
        const confirm = boolField(m, 'confirm') ?? false;
        return hash === undefined ? { confirm } : { hash, confirm };
      }),
  },
  response: imageStateResponse,
});

/**
 * One chunk of an image upload. The first chunk (off 0) carries `len` and, optionally, `sha` (the
 * SHA-256 of the whole image, which identifies the upload: a device that already holds part of an
 * upload with the same sha answers the offset it has, and the client resumes there), `image` and
 * `upgrade`. The device answers the offset it expects next: the device decides where to resume.
 */
export type ImageUploadRequest = {
  readonly off: number;
  readonly data: Uint8Array;
  readonly len?: number;
  readonly sha?: Uint8Array;
  readonly image?: number;
  readonly upgrade?: boolean;
};
export type ImageUploadResponse = { readonly off: number; readonly match?: boolean };

export const imageUpload: SmpCommand<ImageUploadRequest, ImageUploadResponse> = Object.freeze({
  name: 'image.upload',
  group: SMP_GROUP.image,
  id: IMAGE_COMMAND.upload,
  op: SMP_OP.write,
  request: {
    encode: (v: ImageUploadRequest) => {
      if (v.off === 0 && v.len === undefined) throw new RangeError('the first upload chunk carries len');
      return mapOf([
        ['image', v.image],
        ['len', v.len],
        ['off', v.off],
        ['sha', v.sha],
        ['data', v.data],
        ['upgrade', v.upgrade],
      ]);
    },
    parse: (m: CborMap) =>
      parseWith(() => {
        const off = required(uintField(m, 'off', LIMITS.maxImageSize), 'off');
        const data = required(bytesField(m, 'data', LIMITS.maxSmpPacketBytes), 'data');
        const len = uintField(m, 'len', LIMITS.maxImageSize);
        checkChunk({ off, data, len }, IMAGE_UPLOAD_BOUNDS);
        const sha = bytesField(m, 'sha', MAX_HASH_BYTES);
        const image = uintField(m, 'image', 0xff);
        const upgrade = boolField(m, 'upgrade');
        return {
          off,
          data,
          ...(len === undefined ? {} : { len }),
          ...(sha === undefined ? {} : { sha }),
          ...(image === undefined ? {} : { image }),
          ...(upgrade === undefined ? {} : { upgrade }),
        };
      }),
  },
  response: {
    encode: (v: ImageUploadResponse) =>
      mapOf([
        ['off', v.off],
        ['match', v.match],
      ]),
    parse: (m: CborMap) =>
      parseWith(() => {
        const off = required(uintField(m, 'off', LIMITS.maxImageSize), 'off');
        const match = boolField(m, 'match');
        return match === undefined ? { off } : { off, match };
      }),
  },
});

// fwseal vendor group (64)

/**
 * A chunk of a signed envelope (manifest, trust bundle or revocation list), uploaded like an image:
 * the first chunk (off 0) carries `len` (1..maxEnvelopeBytes); the device answers the offset it
 * expects next and, once it holds all `len` bytes and has verified them, `code`: 0 accepted, or the
 * fwseal code of the rejection (SPEC.md §9).
 */
export type EnvelopeUploadRequest = { readonly off: number; readonly data: Uint8Array; readonly len?: number };
export type EnvelopeUploadResponse = { readonly off: number; readonly code?: number };

const envelopeUpload: Pick<SmpCommand<EnvelopeUploadRequest, EnvelopeUploadResponse>, 'request' | 'response'> = Object.freeze({
  request: {
    encode: (v: EnvelopeUploadRequest) => {
      if (v.off === 0 && v.len === undefined) throw new RangeError('the first envelope chunk carries len');
      return mapOf([
        ['len', v.len],
        ['off', v.off],
        ['data', v.data],
      ]);
    },
    parse: (m: CborMap) =>
      parseWith(() => {
        const off = required(uintField(m, 'off', LIMITS.maxEnvelopeBytes), 'off');
        const data = required(bytesField(m, 'data', LIMITS.maxEnvelopeBytes), 'data');
        const len = uintField(m, 'len', LIMITS.maxEnvelopeBytes);
        checkChunk({ off, data, len }, ENVELOPE_UPLOAD_BOUNDS);
        return len === undefined ? { off, data } : { off, data, len };
      }),
  },
  response: {
    encode: (v: EnvelopeUploadResponse) =>
      mapOf([
        ['off', v.off],
        ['code', v.code],
      ]),
    parse: (m: CborMap) =>
      parseWith(() => {
        const off = required(uintField(m, 'off', LIMITS.maxEnvelopeBytes), 'off');
        const code = uintField(m, 'code', MAX_CODE);
        return code === undefined ? { off } : { off, code };
      }),
  },
});

export const manifestUpload: SmpCommand<EnvelopeUploadRequest, EnvelopeUploadResponse> = Object.freeze({
  name: 'fwseal.manifest',
  group: SMP_GROUP.fwseal,
  id: FWSEAL_COMMAND.manifest,
  op: SMP_OP.write,
  ...envelopeUpload,
});
export const trustUpdate: SmpCommand<EnvelopeUploadRequest, EnvelopeUploadResponse> = Object.freeze({
  name: 'fwseal.trust',
  group: SMP_GROUP.fwseal,
  id: FWSEAL_COMMAND.trust,
  op: SMP_OP.write,
  ...envelopeUpload,
});
export const revocationUpdate: SmpCommand<EnvelopeUploadRequest, EnvelopeUploadResponse> = Object.freeze({
  name: 'fwseal.revocation',
  group: SMP_GROUP.fwseal,
  id: FWSEAL_COMMAND.revocation,
  op: SMP_OP.write,
  ...envelopeUpload,
});

/** Device phase names (open set: a newer device may report others): 1..32 bytes of [a-z-]. */
const PHASE_PATTERN = /^[a-z-]{1,32}$/;

/**
 * What a scenario asserts at its end: the active slot, the installed version and security counter,
 * the code of the last failed operation (0 none), the agent's phase (idle, downloading, pending,
 * trial, ...), and optionally the trust bundle and revocation list versions.
 */
export type DeviceStatus = {
  readonly slot: number;
  readonly version: string;
  readonly counter: number;
  readonly code: number;
  readonly phase: string;
  readonly trust?: number;
  readonly revocation?: number;
  /** Under a log policy (issue 19): the size of the checkpoint the device stored (0: none yet); the proof an update bundle carries starts there. */
  readonly log?: number;
};

export const status: SmpCommand<Empty, DeviceStatus> = Object.freeze({
  name: 'fwseal.status',
  group: SMP_GROUP.fwseal,
  id: FWSEAL_COMMAND.status,
  op: SMP_OP.read,
  request: noPayload,
  response: {
    encode: (v: DeviceStatus) => {
      if (!PHASE_PATTERN.test(v.phase)) throw new RangeError('phase must be 1..32 characters of [a-z-]');
      return mapOf([
        ['slot', v.slot],
        ['version', v.version],
        ['counter', v.counter],
        ['code', v.code],
        ['phase', v.phase],
        ['trust', v.trust],
        ['revocation', v.revocation],
        ['log', v.log],
      ]);
    },
    parse: (m: CborMap) =>
      parseWith(() => {
        const phase = required(textField(m, 'phase', 32), 'phase');
        if (!PHASE_PATTERN.test(phase)) schemaFail('BAD_VALUE', '"phase" has an invalid form');
        const trust = uintField(m, 'trust', LIMITS.maxCounter);
        const revocation = uintField(m, 'revocation', LIMITS.maxCounter);
        const log = uintField(m, 'log', LIMITS.maxCounter);
        return {
          slot: required(uintField(m, 'slot', 0xff), 'slot'),
          version: required(textField(m, 'version', LIMITS.maxVersionBytes), 'version'),
          counter: required(uintField(m, 'counter', LIMITS.maxCounter), 'counter'),
          code: required(uintField(m, 'code', MAX_CODE), 'code'),
          phase,
          ...(trust === undefined ? {} : { trust }),
          ...(revocation === undefined ? {} : { revocation }),
          ...(log === undefined ? {} : { log }),
        };
      }),
  },
});

/** Every command fwseal defines a codec for, for dispatch by (group, id, op). */
export const SMP_COMMANDS: readonly AnySmpCommand[] = Object.freeze([
  echo,
  reset,
  params,
  imageState,
  imageStateWrite,
  imageUpload,
  manifestUpload,
  trustUpdate,
  revocationUpdate,
  status,
]);

/** The command a request header names, or undefined (the device answers ENOTSUP). */
export function findCommand(header: SmpHeader): AnySmpCommand | undefined {
  return SMP_COMMANDS.find((c) => c.group === header.group && c.id === header.command && c.op === header.op);
}
