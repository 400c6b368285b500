/**
 * What an SMP command is (its group, id, op and payload codecs, SPEC.md §13.3) and the request and
 * response packets of a command: encoded by fwseal, parsed from a peer with the header checked
 * against the command (WRONG_KIND), an error response returned as { smpError }, not a failure.
 */
import { type CborMap } from '../cbor.js';
import { fail, ok, type Result } from '../codes.js';
import { type SmpError, smpErrorOf } from './errors.js';
import { encodeSmpPacket, SMP_VERSION, type SmpHeader, type SmpPacket, type SmpPayload } from './packet.js';

/** A command's payload codec: `encode` builds the map fwseal sends, `parse` reads a peer's map. */
export type PayloadCodec<T> = {
  readonly encode: (value: T) => SmpPayload;
  readonly parse: (payload: CborMap) => Result<{ value: T }>;
};

export type SmpCommand<Req, Res> = {
  readonly name: string;
  readonly group: number;
  readonly id: number;
  /** SMP_OP.read or SMP_OP.write; the response carries op + 1. */
  readonly op: number;
  readonly request: PayloadCodec<Req>;
  readonly response: PayloadCodec<Res>;
};

/** A command of any request and response type: what registries of commands hold. */
// biome-ignore lint/suspicious/noExplicitAny: a registry holds commands of every Req/Res pair; each handler is typed where it is registered.
export type AnySmpCommand = SmpCommand<any, any>;

/** A request packet. `version` defaults to v1, which every SMP server reads. */
export function encodeRequest<Req, Res>(cmd: SmpCommand<Req, Res>, value: Req, seq: number, version: number = SMP_VERSION.v1): Uint8Array {
  return encodeSmpPacket({ op: cmd.op, version, flags: 0, group: cmd.group, seq, command: cmd.id }, cmd.request.encode(value));
}

/** The response to `request`: same group, command, sequence number and version; op + 1. */
export function encodeResponse<Req, Res>(cmd: SmpCommand<Req, Res>, request: SmpHeader, value: Res): Uint8Array {
  return encodeSmpPacket(
    { op: cmd.op + 1, version: request.version, flags: 0, group: cmd.group, seq: request.seq, command: cmd.id },
    cmd.response.encode(value),
  );
}

/** A request of `cmd`: header checks (op, group, id) and payload parse. */
export function parseRequest<Req, Res>(cmd: SmpCommand<Req, Res>, packet: SmpPacket): Result<{ value: Req }> {
  const h = packet.header;
  if (h.group !== cmd.group || h.command !== cmd.id || h.op !== cmd.op)
    return fail('WRONG_KIND', `packet is group ${h.group} command ${h.command} op ${h.op}, not ${cmd.name}`);
  return cmd.request.parse(packet.payload);
}

/**
 * The response of `cmd` to the request with sequence number `seq`: WRONG_KIND for another command
 * or sequence number. An error response is not a decode failure: it returns { smpError }.
 */
export function parseResponse<Req, Res>(
  cmd: SmpCommand<Req, Res>,
  packet: SmpPacket,
  seq: number,
): Result<{ value: Res; smpError?: undefined } | { value?: undefined; smpError: SmpError }> {
  const h = packet.header;
  if (h.group !== cmd.group || h.command !== cmd.id || h.op !== cmd.op + 1)
    return fail('WRONG_KIND', `packet is group ${h.group} command ${h.command} op ${h.op}, not a ${cmd.name} response`);
  if (h.seq !== seq) return fail('WRONG_KIND', `response to sequence number ${h.seq}, not ${seq}`);
  const smpError = smpErrorOf(packet.payload);
  if (smpError !== null) return ok({ smpError });
  const parsed = cmd.response.parse(packet.payload);
  if (!parsed.ok) return parsed;
  return ok({ value: parsed.value });
}
