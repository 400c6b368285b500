/**
 * SMP over a console byte stream, both ends (SPEC.md §13): a client (the harness, or any host
 * tool) that sends requests and matches responses by sequence number, with timeouts on an injected
 * Scheduler; and a server (the simulated device) that decodes requests and answers through handlers.
 * The byte stream is anything with write/onData: a link end (hil/link.ts) or a bridged serialport.
 * Liveness is by timeouts, never by stream events (a killed socat sends none).
 */
import { fail, ok, type Result } from '../shared/codes.js';
import { findCommand } from '../shared/smp/commands.js';
import { ConsoleDecoder, encodeConsoleFrame } from '../shared/smp/console.js';
import { refusalError } from '../shared/smp/error-map.js';
import { encodeErrorResponse, MGMT_ERR, type SmpError } from '../shared/smp/errors.js';
import { type AnySmpCommand, encodeRequest, encodeResponse, parseRequest, parseResponse, type SmpCommand } from '../shared/smp/messages.js';
import { parseSmpHeader, parseSmpPacket, SMP_HEADER_BYTES, SMP_VERSION, type SmpHeader } from '../shared/smp/packet.js';
import { type Scheduler } from './clock.js';

export interface ByteEnd {
  write(bytes: Uint8Array): void;
  onData(listener: (chunk: Uint8Array) => void): () => void;
}

export type SmpReply<Res> = { value: Res; smpError?: undefined } | { value?: undefined; smpError: SmpError };

type Outstanding = {
  readonly cmd: AnySmpCommand;
  readonly resolve: (r: Result<SmpReply<unknown>>) => void;
  readonly cancelTimer: () => void;
};

export type SmpClientStats = {
  readonly requests: number;
  readonly responses: number;
  readonly timeouts: number;
  /** Responses that matched no outstanding request (late, after a timeout) or did not parse. */
  readonly stray: number;
};

export class SmpClient {
  private readonly decoder = new ConsoleDecoder();
  private readonly outstanding = new Map<number, Outstanding>();
  private nextSeq = 0;
  private readonly stopListening: () => void;
  private requests = 0;
  private responses = 0;
  private timeouts = 0;
  private stray = 0;

  constructor(
    private readonly end: ByteEnd,
    private readonly clock: Scheduler,
    private readonly options: { readonly timeoutMs?: number; readonly version?: number; readonly maxLineBytes?: number } = {},
  ) {
    this.stopListening = end.onData((chunk) => this.receive(chunk));
  }

  /**
   * Send one request; resolves with the parsed response, { smpError } for an error response, or a
   * Failure: TRANSPORT_TIMEOUT when no response came in time, SERVER_BUSY when 256 requests are
   * already outstanding (no free sequence number), or the decode code of a response that does not parse.
   */
  request<Req, Res>(cmd: SmpCommand<Req, Res>, value: Req, timeoutMs: number = this.options.timeoutMs ?? 2000): Promise<Result<SmpReply<Res>>> {
    let seq = -1;
    for (let k = 0; k < 256; k++) {
      const candidate = (this.nextSeq + k) & 0xff;
      if (!this.outstanding.has(candidate)) {
        seq = candidate;
        break;
      }
    }
    if (seq < 0) return Promise.resolve(fail('SERVER_BUSY', '256 requests outstanding'));
    this.nextSeq = (seq + 1) & 0xff;
    const packet = encodeRequest(cmd, value, seq, this.options.version ?? SMP_VERSION.v1);
    return new Promise((resolve) => {
      const cancelTimer = this.clock.setTimer(timeoutMs, () => {
        this.outstanding.delete(seq);
        this.timeouts++;
        resolve(fail('TRANSPORT_TIMEOUT', `${cmd.name} seq ${seq}: no response in ${timeoutMs} ms`));
      });
      // The table holds requests of every type; a reply is parsed with this request's own command.
      this.outstanding.set(seq, { cmd, resolve: resolve as (r: Result<SmpReply<unknown>>) => void, cancelTimer });
      this.requests++;
      this.end.write(encodeConsoleFrame(packet, this.options.maxLineBytes));
    });
  }

  stats(): SmpClientStats & { readonly frames: ReturnType<ConsoleDecoder['stats']> } {
    return Object.freeze({ requests: this.requests, responses: this.responses, timeouts: this.timeouts, stray: this.stray, frames: this.decoder.stats() });
  }

  /** Fail every outstanding request (TRANSPORT_UNAVAILABLE) and stop listening. */
  close(): void {
    this.stopListening();
    for (const [seq, o] of this.outstanding) {
      o.cancelTimer();
      o.resolve(fail('TRANSPORT_UNAVAILABLE', `${o.cmd.name} seq ${seq}: client closed`));
    }
    this.outstanding.clear();
  }

  private receive(chunk: Uint8Array): void {
    for (const event of this.decoder.push(chunk)) {
      if (!event.ok) continue; // counted by the decoder
      const packet = parseSmpPacket(event.packet);
      const o = packet.ok ? this.outstanding.get(packet.header.seq) : undefined;
      if (!packet.ok || o === undefined || (packet.header.op & 1) === 0) {
        this.stray++;
        continue;
      }
      const reply = parseResponse(o.cmd, packet, packet.header.seq);
      if (!reply.ok && reply.error === 'WRONG_KIND') {
        this.stray++; // another command's response with this sequence number: not ours
        continue;
      }
      this.outstanding.delete(packet.header.seq);
      o.cancelTimer();
      this.responses++;
      o.resolve(reply.ok ? ok(reply.smpError === undefined ? { value: reply.value } : { smpError: reply.smpError }) : reply);
    }
  }
}

/** A handler answers a parsed request with a value or an SMP error. */
export type SmpHandler<Req, Res> = (request: Req, header: SmpHeader) => { readonly value: Res } | { readonly error: SmpError };

export type SmpServerStats = {
  readonly requests: number;
  readonly unsupported: number;
  /** Requests whose payload did not parse (answered EINVAL, or ECORRUPT when truncated). */
  readonly invalid: number;
  /** Requests whose handler threw or answered something unencodable (answered EUNKNOWN). */
  readonly failed: number;
  /** Packets dropped without an answer: a header that does not parse (no sequence number to answer). */
  readonly unanswerable: number;
};

export type SmpServerOptions = {
  readonly maxLineBytes?: number;
  /** One line per request refused or failed (the device's log). */
  readonly log?: (line: string) => void;
  /**
   * Errors that end the device by design and must not be answered (a simulated power cut: the
   * device is gone, there is nobody to answer). Everything else a handler throws is answered.
   */
  readonly fatal?: (error: unknown) => boolean;
};

/**
 * The device side: requests in, responses out, one at a time in arrival order (as Zephyr's SMP work
 * queue). Every request whose header parses is answered exactly once (SPEC.md §13.7): shorter than
 * its header says -> ECORRUPT; no handler for the command -> ENOTSUP; a payload that does not parse
 * -> refusalError (v1 EINVAL with the code name as "rsn", v2 a group error); a handler that throws, or
 * answers something that cannot be encoded -> EUNKNOWN, logged. Nothing a peer sends ends the
 * device. Packets that are not requests (responses) are ignored.
 */
export class SmpServer {
  private readonly decoder = new ConsoleDecoder();
  private readonly handlers = new Map<AnySmpCommand, SmpHandler<unknown, unknown>>();
  private readonly stopListening: () => void;
  private readonly log: (line: string) => void;
  private requests = 0;
  private unsupported = 0;
  private invalid = 0;
  private failed = 0;
  private unanswerable = 0;

  constructor(
    private readonly end: ByteEnd,
    private readonly options: SmpServerOptions = {},
  ) {
    this.log = options.log ?? (() => {});
    this.stopListening = end.onData((chunk) => this.receive(chunk));
  }

  handle<Req, Res>(cmd: SmpCommand<Req, Res>, handler: SmpHandler<Req, Res>): this {
    // The table holds handlers of every type; each gets the request its own command parsed.
    this.handlers.set(cmd, handler as SmpHandler<unknown, unknown>);
    return this;
  }

  stats(): SmpServerStats & { readonly frames: ReturnType<ConsoleDecoder['stats']> } {
    return Object.freeze({
      requests: this.requests,
      unsupported: this.unsupported,
      invalid: this.invalid,
      failed: this.failed,
      unanswerable: this.unanswerable,
      frames: this.decoder.stats(),
    });
  }

  /** Forget a partial frame, as a device does when it resets. */
  reset(): void {
    this.decoder.reset();
  }

  close(): void {
    this.stopListening();
  }

  private receive(chunk: Uint8Array): void {
    let events: ReturnType<ConsoleDecoder['push']>;
    try {
      events = this.decoder.push(chunk);
    } catch (e) {
      // The decoder never throws (SPEC.md §13.2); should it ever, the bytes are lost, not the device.
      this.decoder.reset();
      this.log(`smp: console decoder failed, partial frame dropped: ${describe(e)}`);
      return;
    }
    for (const event of events) {
      if (!event.ok) continue; // counted by the decoder
      const response = this.guardedAnswer(event.packet);
      if (response === null) continue;
      try {
        this.end.write(encodeConsoleFrame(response, this.options.maxLineBytes));
      } catch (e) {
        if (this.options.fatal?.(e)) throw e;
        this.log(`smp: response not sent: ${describe(e)}`);
      }
    }
  }

  /** answer(), and EUNKNOWN for a request should any of it throw (the parsers never do: defence in depth). */
  private guardedAnswer(bytes: Uint8Array): Uint8Array | null {
    try {
      return this.answer(bytes);
    } catch (e) {
      if (this.options.fatal?.(e)) throw e;
      this.failed++;
      this.log(`smp: request failed, answered EUNKNOWN: ${describe(e)}`);
      const h = parseSmpHeader(bytes);
      return h.ok && (h.header.op & 1) === 0 ? this.errorResponse(h.header, { rc: MGMT_ERR.EUNKNOWN }) : null;
    }
  }

  /** The response to one packet, or null when there is none to give (not a request, or no header). */
  private answer(bytes: Uint8Array): Uint8Array | null {
    const h = parseSmpHeader(bytes);
    if (!h.ok) {
      this.unanswerable++;
      this.log(`smp: packet dropped: ${h.error}`);
      return null;
    }
    const header = h.header;
    if ((header.op & 1) === 1) return null; // a response: nothing to answer
    this.requests++;
    // Zephyr's order (smp_process_request_packet, smp_handle_single_payload): a message that is not
    // whole is ECORRUPT, a command without a handler ENOTSUP, then the handler decodes the payload.
    if (header.length > bytes.length - SMP_HEADER_BYTES) {
      this.invalid++;
      this.log(`smp: group ${header.group} command ${header.command} seq ${header.seq}: TRUNCATED`);
      return this.errorResponse(header, { rc: MGMT_ERR.ECORRUPT, rsn: 'TRUNCATED' });
    }
    const cmd = findCommand(header);
    const handler = cmd === undefined ? undefined : this.handlers.get(cmd);
    if (cmd === undefined || handler === undefined) {
      this.unsupported++;
      return this.errorResponse(header, { rc: MGMT_ERR.ENOTSUP });
    }
    const packet = parseSmpPacket(bytes);
    const request = packet.ok ? parseRequest(cmd, packet) : packet;
    if (!request.ok) {
      this.invalid++;
      this.log(`smp: ${cmd.name} seq ${header.seq}: ${request.error}${request.detail ? `: ${request.detail}` : ''}`);
      // SPEC.md §13.7 rule 1: refused content is answered in the request's version (error-map.ts).
      return this.errorResponse(header, refusalError(header, request.error));
    }
    try {
      const answer = handler(request.value, header);
      if (!('error' in answer)) return encodeResponse(cmd, header, answer.value);
      this.log(
        `smp: ${cmd.name} seq ${header.seq}: answered rc ${answer.error.rc}${answer.error.group !== undefined ? ` (group ${answer.error.group})` : ''}${answer.error.rsn ? ` ${answer.error.rsn}` : ''}`,
      );
      return encodeErrorResponse(header, answer.error);
    } catch (e) {
      if (this.options.fatal?.(e)) throw e;
      this.failed++;
      this.log(`smp: ${cmd.name} seq ${header.seq}: handler failed, answered EUNKNOWN: ${describe(e)}`);
      return this.errorResponse(header, { rc: MGMT_ERR.EUNKNOWN });
    }
  }

  /** An error response; for a header no response can carry (cannot happen for a parsed header), none. */
  private errorResponse(header: SmpHeader, error: SmpError): Uint8Array | null {
    try {
      return encodeErrorResponse(header, error);
    } catch (e) {
      this.log(`smp: no error response possible: ${describe(e)}`);
      return null;
    }
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
