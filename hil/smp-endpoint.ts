/**
 * SMP over a console byte stream, both ends (SPEC.md §13): a client (the harness, or any host
 * tool) that sends requests and matches responses by sequence number, with timeouts on an injected
 * Scheduler; and a server (the simulated device) that decodes requests and answers through handlers.
 * The byte stream is anything with write/onData: a link end (hil/link.ts) or a bridged serialport.
 * Liveness is by timeouts, never by stream events (a killed socat sends none).
 */
import { type Result, fail, ok } from '../shared/codes.js';
import {
  type SmpCommand, type SmpError, type SmpHeader, ConsoleDecoder, MGMT_ERR, SMP_VERSION, encodeConsoleFrame,
  encodeErrorResponse, encodeRequest, encodeResponse, findCommand, parseRequest, parseResponse, parseSmpPacket,
} from '../shared/smp.js';
import { type Scheduler } from './clock.js';

export interface ByteEnd {
  write(bytes: Uint8Array): void;
  onData(listener: (chunk: Uint8Array) => void): () => void;
}

export type SmpReply<Res> = { value: Res; smpError?: undefined } | { value?: undefined; smpError: SmpError };

type Outstanding = {
  readonly cmd: SmpCommand<any, any>;
  readonly resolve: (r: Result<SmpReply<any>>) => void;
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
      if (!this.outstanding.has(candidate)) { seq = candidate; break; }
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
      this.outstanding.set(seq, { cmd, resolve, cancelTimer });
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

export type SmpServerStats = { readonly requests: number; readonly unsupported: number; readonly invalid: number };

/**
 * The device side: requests in, responses out, one at a time in arrival order (as Zephyr's SMP work
 * queue). No handler for a command -> ENOTSUP; a request that does not parse -> EINVAL with the
 * fwseal code name as "rsn"; packets that are not requests are ignored.
 */
export class SmpServer {
  private readonly decoder = new ConsoleDecoder();
  private readonly handlers = new Map<SmpCommand<any, any>, SmpHandler<any, any>>();
  private readonly stopListening: () => void;
  private requests = 0;
  private unsupported = 0;
  private invalid = 0;

  constructor(private readonly end: ByteEnd, private readonly options: { readonly maxLineBytes?: number } = {}) {
    this.stopListening = end.onData((chunk) => this.receive(chunk));
  }

  handle<Req, Res>(cmd: SmpCommand<Req, Res>, handler: SmpHandler<Req, Res>): this {
    this.handlers.set(cmd, handler);
    return this;
  }

  stats(): SmpServerStats & { readonly frames: ReturnType<ConsoleDecoder['stats']> } {
    return Object.freeze({ requests: this.requests, unsupported: this.unsupported, invalid: this.invalid, frames: this.decoder.stats() });
  }

  /** Forget a partial frame, as a device does when it resets. */
  reset(): void {
    this.decoder.reset();
  }

  close(): void {
    this.stopListening();
  }

  private receive(chunk: Uint8Array): void {
    for (const event of this.decoder.push(chunk)) {
      if (!event.ok) continue;
      const packet = parseSmpPacket(event.packet);
      if (!packet.ok || (packet.header.op & 1) === 1) continue; // not a request: nothing to answer
      this.requests++;
      const header = packet.header;
      const cmd = findCommand(header);
      const handler = cmd === undefined ? undefined : this.handlers.get(cmd);
      let response: Uint8Array;
      if (cmd === undefined || handler === undefined) {
        this.unsupported++;
        response = encodeErrorResponse(header, { rc: MGMT_ERR.ENOTSUP });
      } else {
        const request = parseRequest(cmd, packet);
        if (!request.ok) {
          this.invalid++;
          response = encodeErrorResponse(header, { rc: MGMT_ERR.EINVAL, rsn: request.error });
        } else {
          const answer = handler(request.value, header);
          response = 'error' in answer ? encodeErrorResponse(header, answer.error) : encodeResponse(cmd, header, answer.value);
        }
      }
      this.end.write(encodeConsoleFrame(response, this.options.maxLineBytes));
    }
  }
}
