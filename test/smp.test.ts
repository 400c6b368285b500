/**
 * SMP wire forms (SPEC.md §13): header, tolerant CBOR payloads, the console framing of Zephyr's
 * mcumgr serial transport, and the command codecs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeCbor } from '../shared/cbor.js';
import { LIMITS } from '../shared/limits.js';
import {
  echo,
  findCommand,
  imageState,
  imageStateWrite,
  imageUpload,
  manifestUpload,
  params,
  reset,
  revocationUpdate,
  SMP_COMMANDS,
  status,
  trustUpdate,
} from '../shared/smp/commands.js';
import {
  base64CharsPerLine,
  ConsoleDecoder,
  consoleFrameWireBytes,
  crc16Xmodem,
  encodeConsoleFrame,
  FRAME_CONTINUE,
  FRAME_START,
} from '../shared/smp/console.js';
import { encodeErrorResponse, MGMT_ERR, smpErrorOf } from '../shared/smp/errors.js';
import { encodeRequest, encodeResponse, parseRequest, parseResponse } from '../shared/smp/messages.js';
import { encodeSmpHeader, encodeSmpPacket, parseSmpHeader, parseSmpPacket, SMP_GROUP, SMP_OP, SMP_VERSION } from '../shared/smp/packet.js';
import { decodeSmpCbor } from '../shared/smp/tolerant-cbor.js';
import { chunkCapacity, ENVELOPE_UPLOAD_BOUNDS, IMAGE_UPLOAD_BOUNDS, uploadChunkFault } from '../shared/smp/upload.js';

const ascii = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const hex = (s: string) => Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));

/** Every line of an encoded frame, each with its marker and '\n'. */
function lines(frame: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < frame.length; i++)
    if (frame[i] === 0x0a) {
      out.push(frame.subarray(start, i + 1));
      start = i + 1;
    }
  expect(start).toBe(frame.length);
  return out;
}

/** Decode `bytes` in one go; the packets and failures it yields. */
function decodeAll(bytes: Uint8Array, decoder = new ConsoleDecoder()) {
  const events = decoder.push(bytes);
  return { packets: events.flatMap((e) => (e.ok ? [e.packet] : [])), failures: events.flatMap((e) => (e.ok ? [] : [e.error])), stats: decoder.stats() };
}

/** A console frame built by hand: any length field and CRC, base64 of the whole, 124 characters per line. */
function rawFrame(lengthField: number, body: Uint8Array, crc: number): Uint8Array {
  const raw = new Uint8Array(body.length + 4);
  raw[0] = lengthField >> 8;
  raw[1] = lengthField & 0xff;
  raw.set(body, 2);
  raw[raw.length - 2] = crc >> 8;
  raw[raw.length - 1] = crc & 0xff;
  const text = Buffer.from(raw).toString('base64');
  const parts: number[] = [];
  for (let i = 0; i < text.length; i += 124) {
    parts.push(...(i === 0 ? FRAME_START : FRAME_CONTINUE), ...ascii(text.slice(i, i + 124)), 0x0a);
  }
  return Uint8Array.from(parts);
}

/**
 * Zephyr's transmitter (mcumgr_serial_tx_frame, subsys/mgmt/mcumgr/transport/src/serial_util.c),
 * re-implemented from its description: each line is base64 of its own bytes (padded on its own), at
 * most 93 input bytes; the length shares the first triple with the first packet byte; the CRC is
 * never split from the last data bytes (a line that would end exactly at the data's end gives one
 * byte to the next line).
 */
function zephyrFrame(packet: Uint8Array): Uint8Array {
  const crc = crc16Xmodem(packet);
  const b64 = (bytes: number[]) => ascii(Buffer.from(bytes).toString('base64'));
  const out: number[] = [];
  let off = 0;
  let first = true;
  while (off < packet.length) {
    let maxInput = ((127 - 3) >> 2) * 3;
    out.push(...(first ? FRAME_START : FRAME_CONTINUE));
    if (first) {
      out.push(...b64([(packet.length + 2) >> 8, (packet.length + 2) & 0xff, packet[0]]));
      off += 1;
      maxInput -= 3;
      first = false;
    }
    const left = packet.length - off;
    let toProcess = Math.min(maxInput, left);
    const reminder = maxInput - left;
    let last = false;
    if (reminder === 0 || reminder === 1) toProcess -= 1;
    else if (reminder >= 2) last = true;
    while (toProcess >= 3) {
      out.push(...b64([...packet.subarray(off, off + 3)]));
      off += 3;
      toProcess -= 3;
    }
    if (last) {
      const rest = packet.length - off;
      if (rest === 0) out.push(...b64([crc >> 8, crc & 0xff]));
      if (rest === 1) out.push(...b64([packet[off++], crc >> 8, crc & 0xff]));
      if (rest === 2) {
        out.push(...b64([packet[off++], packet[off++], crc >> 8]));
        out.push(...b64([crc & 0xff]));
      }
    }
    out.push(0x0a);
  }
  return Uint8Array.from(out);
}

describe('CRC-16/XMODEM', () => {
  it('matches the catalogue check value: CRC("123456789") = 0x31c3', () => {
    expect(crc16Xmodem(ascii('123456789'))).toBe(0x31c3);
    expect(crc16Xmodem(new Uint8Array(0))).toBe(0);
  });

  it('gives 0 over data followed by its big-endian CRC (the receiver check)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (data) => {
        const crc = crc16Xmodem(data);
        expect(crc16Xmodem(Uint8Array.from([...data, crc >> 8, crc & 0xff]))).toBe(0);
      }),
    );
  });
});

describe('SMP header', () => {
  it('puts op in bits 0-2 and the version in bits 3-4 of byte 0, the rest big-endian', () => {
    const h = { op: SMP_OP.write, version: SMP_VERSION.v2, flags: 0, length: 0x0102, group: 64, seq: 7, command: 3 };
    expect([...encodeSmpHeader(h)]).toEqual([0x0a, 0, 1, 2, 0, 64, 7, 3]);
    const parsed = parseSmpHeader(encodeSmpHeader(h));
    expect(parsed.ok && parsed.header).toEqual(h);
  });

  it('ignores the reserved bits and rejects undefined versions and ops', () => {
    const r = parseSmpHeader(Uint8Array.of(0xe2, 0, 0, 0, 0, 0, 0, 0));
    expect(r.ok && r.header.op).toBe(2);
    expect(parseSmpHeader(Uint8Array.of(0x12, 0, 0, 0, 0, 0, 0, 0)).code).toBe(111); // version 2
    expect(parseSmpHeader(Uint8Array.of(0x04, 0, 0, 0, 0, 0, 0, 0)).error).toBe('BAD_VALUE');
    expect(parseSmpHeader(new Uint8Array(7)).error).toBe('TRUNCATED');
  });

  it('throws RangeError on fields outside their width (a caller bug)', () => {
    expect(() => encodeSmpHeader({ op: 4, version: 0, flags: 0, length: 0, group: 0, seq: 0, command: 0 })).toThrow(RangeError);
    expect(() => encodeSmpHeader({ op: 0, version: 0, flags: 0, length: 0, group: 0, seq: 256, command: 0 })).toThrow(RangeError);
  });
});

describe('SMP packets', () => {
  it('checks the header length against the payload', () => {
    const p = encodeRequest(echo, { text: 'hi' }, 1);
    expect(parseSmpPacket(p).ok).toBe(true);
    expect(parseSmpPacket(p.subarray(0, p.length - 1)).error).toBe('TRUNCATED');
    expect(parseSmpPacket(Uint8Array.from([...p, 0])).error).toBe('TRAILING_BYTES');
  });

  it('reads an empty payload as an empty map and rejects a payload that is not a map', () => {
    const empty = parseSmpPacket(encodeSmpHeader({ op: 0, version: 0, flags: 0, length: 0, group: 1, seq: 0, command: 0 }));
    expect(empty.ok && empty.payload.size).toBe(0);
    const array = Uint8Array.from([...encodeSmpHeader({ op: 0, version: 0, flags: 0, length: 1, group: 1, seq: 0, command: 0 }), 0x80]);
    expect(parseSmpPacket(array).error).toBe('WRONG_TYPE');
  });

  it('reads the non-canonical CBOR peers send (zcbor: indefinite maps, any key order, long heads)', () => {
    // {_ "off": 24 (as a 2-byte head), "rc": 0} - indefinite map, "rc" after "off", 0x19 0x0018 not shortest.
    const payload = Uint8Array.from([0xbf, 0x63, ...ascii('off'), 0x19, 0x00, 0x18, 0x62, ...ascii('rc'), 0x00, 0xff]);
    const packet = Uint8Array.from([...encodeSmpHeader({ op: 3, version: 0, flags: 0, length: payload.length, group: 1, seq: 9, command: 1 }), ...payload]);
    const parsed = parseSmpPacket(packet);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    const r = parseResponse(imageUpload, parsed, 9);
    expect(r.ok && r.value).toEqual({ off: 24 });
    // The strict manifest-path decoder still refuses the same bytes.
    expect(decodeCbor(payload).error).toBe('NON_DETERMINISTIC');
  });

  it('tolerant CBOR still rejects duplicate keys, oversize containers, deep nesting and trailing bytes', () => {
    expect(decodeSmpCbor(Uint8Array.from([0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02])).error).toBe('DUPLICATE_KEY');
    expect(decodeSmpCbor(Uint8Array.from([0x9a, 0xff, 0xff, 0xff, 0xff])).error).toBe('TOO_LARGE');
    expect(decodeSmpCbor(new Uint8Array(20).fill(0x81)).error).toBe('TOO_DEEP');
    expect(decodeSmpCbor(Uint8Array.of(0x01, 0x02)).error).toBe('TRAILING_BYTES');
    expect(decodeSmpCbor(Uint8Array.of(0xbf, 0x61, 0x61)).error).toBe('TRUNCATED');
    expect(decodeSmpCbor(Uint8Array.of(0xff)).error).toBe('MALFORMED');
    expect(decodeSmpCbor(Uint8Array.of(0x5f, 0x61, 0x61, 0xff)).error).toBe('MALFORMED'); // text chunk in a byte string
    const chunked = decodeSmpCbor(Uint8Array.of(0x5f, 0x41, 0x01, 0x42, 0x02, 0x03, 0xff));
    expect(chunked.ok && [...(chunked.value as Uint8Array)]).toEqual([1, 2, 3]);
  });

  it('tolerant CBOR never throws', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const r = decodeSmpCbor(bytes);
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});

describe('console framing: encoder', () => {
  it('matches an independent encoding (Python binascii.crc_hqx and base64) of an echo request', () => {
    const packet = encodeRequest(echo, { text: 'hello' }, 42);
    expect([...packet]).toEqual([...hex('0200000900002a00a161646568656c6c6f')]);
    expect([...encodeConsoleFrame(packet)]).toEqual([0x06, 0x09, ...ascii('ABMCAAAJAAAqAKFhZGVoZWxsb40o'), 0x0a]);
  });

  it('keeps every line within 127 bytes, at every line boundary, and decodes back', () => {
    expect(base64CharsPerLine()).toBe(124);
    // Packet sizes around 1, 2 and 3 full lines of 93 raw bytes (frame = packet + 4).
    for (let size = 1; size <= 3 * 93 + 8; size++) {
      const packet = Uint8Array.from({ length: size }, (_, i) => (i * 7 + size) & 0xff);
      const frame = encodeConsoleFrame(packet);
      const ls = lines(frame);
      expect(ls.length).toBe(Math.ceil((4 * Math.ceil((size + 4) / 3)) / 124));
      expect(frame.length).toBe(consoleFrameWireBytes(size));
      ls.forEach((l, i) => {
        expect(l.length).toBeLessThanOrEqual(127);
        if (i < ls.length - 1) expect(l.length).toBe(127);
        expect([l[0], l[1]]).toEqual(i === 0 ? [...FRAME_START] : [...FRAME_CONTINUE]);
      });
      const d = decodeAll(frame);
      expect(d.packets).toEqual([packet]);
    }
  });

  it('honours a shorter line length, still in whole base64 quads', () => {
    const packet = Uint8Array.from({ length: 200 }, (_, i) => i);
    const frame = encodeConsoleFrame(packet, 64);
    for (const l of lines(frame)) expect(l.length).toBeLessThanOrEqual(64);
    expect(decodeAll(frame).packets).toEqual([packet]);
  });

  it('refuses empty and oversize packets (a caller bug)', () => {
    expect(() => encodeConsoleFrame(new Uint8Array(0))).toThrow(RangeError);
    expect(() => encodeConsoleFrame(new Uint8Array(LIMITS.maxSmpPacketBytes + 1))).toThrow(RangeError);
    expect(decodeAll(encodeConsoleFrame(new Uint8Array(LIMITS.maxSmpPacketBytes))).packets.length).toBe(1);
  });
});

describe('console framing: decoder', () => {
  const packet = Uint8Array.from({ length: 300 }, (_, i) => (i * 31) & 0xff);
  const frame = encodeConsoleFrame(packet);

  it('decodes a frame split at every byte position', () => {
    for (let cut = 0; cut <= frame.length; cut++) {
      const decoder = new ConsoleDecoder();
      const events = [...decoder.push(frame.subarray(0, cut)), ...decoder.push(frame.subarray(cut))];
      expect(events).toHaveLength(1);
      expect(events[0].ok && [...events[0].packet]).toEqual([...packet]);
    }
  });

  it('decodes a frame fed one byte at a time, and only at its last newline', () => {
    const decoder = new ConsoleDecoder();
    for (let i = 0; i < frame.length; i++) {
      const events = decoder.push(frame.subarray(i, i + 1));
      expect(events).toHaveLength(i === frame.length - 1 ? 1 : 0);
    }
  });

  it("reads Zephyr's own line layout (per-line padding, CRC kept with the last data bytes)", () => {
    for (let size = 1; size <= 400; size++) {
      const p = Uint8Array.from({ length: size }, (_, i) => (i + size * 3) & 0xff);
      const z = zephyrFrame(p);
      for (const l of lines(z)) expect(l.length).toBeLessThanOrEqual(127);
      expect(decodeAll(z).packets).toEqual([p]);
    }
  });

  it("accepts lines of 128 bytes as Zephyr's UART transport does (CR counted), and refuses 129", () => {
    const short = encodeConsoleFrame(Uint8Array.of(1, 2, 3));
    const crlf = Uint8Array.from([...short.subarray(0, short.length - 1), 0x0d, 0x0a]);
    expect(decodeAll(crlf).packets).toHaveLength(1);
    const full = lines(frame)[0]; // 127 bytes: 06 09, 124 characters, '\n'
    // A full line ended by CR LF is 128 bytes: CONFIG_UART_MCUMGR_RX_BUF_SIZE (default 128) holds it.
    const crlfFull = Uint8Array.from([...full.subarray(0, 126), 0x0d, 0x0a, ...frame.subarray(127)]);
    expect(decodeAll(crlfFull).packets).toEqual([packet]);
    // One more byte (CR CR LF: 129) does not fit Zephyr's buffer: the frame is dropped.
    const tooLong = Uint8Array.from([...full.subarray(0, 126), 0x0d, 0x0d, 0x0a, ...frame.subarray(127)]);
    const d = decodeAll(tooLong);
    expect(d.packets).toHaveLength(0);
    expect(d.failures).toEqual(['TOO_LARGE']);
    expect(d.stats.orphanLines).toBe(lines(frame).length - 1);
  });

  it('skips console text and noise between frames and counts it', () => {
    const noise = ascii('uart:~$ kernel uptime\r\nUptime: 1234 ms\r\n');
    const d = decodeAll(Uint8Array.from([...noise, ...frame, ...noise, ...frame, 0x06, 0x06]));
    expect(d.packets).toEqual([packet, packet]);
    expect(d.stats.noiseBytes).toBe(2 * noise.length + 2);
    expect(d.stats.dropped).toBe(0);
  });

  it('tolerates noise between the lines of a frame (not containing a start marker)', () => {
    const ls = lines(frame);
    const withNoise = Uint8Array.from(ls.flatMap((l) => [...l, ...ascii('garbage\r\n')]));
    expect(decodeAll(withNoise).packets).toEqual([packet]);
  });

  it('drops a frame with a bad CRC as FRAME_CRC_MISMATCH and decodes the next one', () => {
    const body = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9);
    const bad = rawFrame(body.length + 2, body, crc16Xmodem(body) ^ 1);
    const d = decodeAll(Uint8Array.from([...bad, ...frame]));
    expect(d.failures).toEqual(['FRAME_CRC_MISMATCH']);
    expect(d.packets).toEqual([packet]);
    expect(d.stats.droppedByCode).toEqual({ FRAME_CRC_MISMATCH: 1 });
  });

  it('drops frames whose length field is wrong: too short -> TRAILING_BYTES, too long -> TRUNCATED at the next frame', () => {
    const body = Uint8Array.from({ length: 40 }, (_, i) => i);
    const crc = crc16Xmodem(body);
    const d = decodeAll(Uint8Array.from([...rawFrame(body.length + 1, body, crc), ...rawFrame(body.length + 3, body, crc), ...frame]));
    expect(d.failures).toEqual(['TRAILING_BYTES', 'TRUNCATED']);
    expect(d.packets).toEqual([packet]);
    expect(d.stats.dropped).toBe(2);
    expect(decodeAll(rawFrame(2, new Uint8Array(0), 0)).failures).toEqual(['BAD_VALUE']);
  });

  it('rejects an oversize length field on the first line, before the frame arrives', () => {
    const body = new Uint8Array(LIMITS.maxSmpPacketBytes + 1);
    const oversize = rawFrame(body.length + 2, body, crc16Xmodem(body));
    const first = lines(oversize)[0];
    const decoder = new ConsoleDecoder();
    const events = decoder.push(first);
    expect(events.map((e) => e.error)).toEqual(['TOO_LARGE']);
    // The rest of that frame is orphan lines; the next frame decodes.
    const d = decodeAll(Uint8Array.from([...oversize.subarray(first.length), ...frame]), decoder);
    expect(d.packets).toEqual([packet]);
    expect(d.stats.orphanLines).toBe(lines(oversize).length - 1);
    // The largest frame the limit allows is read.
    const max = new Uint8Array(LIMITS.maxSmpPacketBytes).fill(0x5a);
    expect(decodeAll(rawFrame(max.length + 2, max, crc16Xmodem(max))).packets).toEqual([max]);
  });

  it('drops a frame whose line holds a byte outside base64 (MALFORMED) or misplaced padding', () => {
    const ls = lines(frame);
    const corrupt = Uint8Array.from([...ls[0].subarray(0, 10), 0x21, ...ls[0].subarray(11), ...ls.slice(1).flatMap((l) => [...l])]);
    expect(decodeAll(corrupt).failures).toEqual(['MALFORMED']);
    expect(decodeAll(Uint8Array.from([...FRAME_START, ...ascii('A=AA'), 0x0a])).failures).toEqual(['MALFORMED']);
  });

  it('drops a frame cut short by a new start marker (lost newline) as TRUNCATED and reads the new frame', () => {
    const first = lines(frame)[0];
    const d = decodeAll(Uint8Array.from([...first.subarray(0, 60), ...frame]));
    expect(d.failures).toEqual(['TRUNCATED']);
    expect(d.packets).toEqual([packet]);
  });

  it('counts continuation lines without a first line as orphans', () => {
    const d = decodeAll(Uint8Array.from([...frame.subarray(lines(frame)[0].length), ...frame]));
    expect(d.packets).toEqual([packet]);
    expect(d.stats.orphanLines).toBe(lines(frame).length - 1);
    expect(d.stats.dropped).toBe(0);
  });

  it('reset() forgets a partial frame without counting a drop', () => {
    const decoder = new ConsoleDecoder();
    decoder.push(frame.subarray(0, 200));
    decoder.reset();
    expect(decoder.push(frame).length).toBe(1);
    expect(decoder.stats().dropped).toBe(0);
  });

  it('property: random packets in random chunks with arbitrary noise between frames all come through in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 600 }), { minLength: 1, maxLength: 4 }),
        fc.array(fc.uint8Array({ maxLength: 40 }), { minLength: 5, maxLength: 5 }),
        fc.array(fc.integer({ min: 1, max: 200 }), { minLength: 1, maxLength: 10 }),
        (packets, noises, cuts) => {
          const stream = Uint8Array.from(packets.flatMap((p, i) => [...noises[i], ...encodeConsoleFrame(p)]).concat([...noises[4]]));
          const decoder = new ConsoleDecoder();
          const got: Uint8Array[] = [];
          for (let off = 0, k = 0; off < stream.length; k++) {
            const n = cuts[k % cuts.length];
            for (const e of decoder.push(stream.subarray(off, off + n))) if (e.ok) got.push(e.packet);
            off += n;
          }
          // Noise may hold a start marker and base64 (a bogus frame, dropped), never a valid CRC here.
          expect(got).toEqual(packets);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('property: a single flipped bit never yields a different packet', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.nat(), fc.integer({ min: 0, max: 7 }), (p, at, bit) => {
        const f = encodeConsoleFrame(p).slice();
        f[at % f.length] ^= 1 << bit;
        for (const e of new ConsoleDecoder().push(Uint8Array.from([...f, ...encodeConsoleFrame(p)]))) {
          if (e.ok) expect(e.packet).toEqual(p);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('never throws and stays bounded on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
        const decoder = new ConsoleDecoder();
        const events = decoder.push(bytes);
        for (const e of events) if (e.ok) expect(e.packet.length).toBeLessThanOrEqual(LIMITS.maxSmpPacketBytes);
      }),
      { numRuns: 500 },
    );
  });
});

/** Request and response through the whole wire: packet -> console frame -> decoder -> packet. */
function viaWire(bytes: Uint8Array) {
  const events = new ConsoleDecoder().push(encodeConsoleFrame(bytes));
  expect(events).toHaveLength(1);
  const e = events[0];
  if (!e.ok) throw new Error(e.error);
  const parsed = parseSmpPacket(e.packet);
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed;
}

describe('SMP commands', () => {
  const sha = new Uint8Array(32).fill(7);
  const cases = [
    { cmd: echo, req: { text: 'ping' }, res: { text: 'ping' } },
    { cmd: reset, req: { force: true }, res: {} },
    { cmd: reset, req: {}, res: {} },
    { cmd: params, req: {}, res: { bufSize: 4096, bufCount: 2 } },
    {
      cmd: imageState,
      req: {},
      res: {
        images: [
          { slot: 0, version: '1.2.3', hash: sha, bootable: true, pending: false, confirmed: true, active: true, permanent: false },
          { image: 0, slot: 1, version: '1.3.0', bootable: true, pending: true, confirmed: false, active: false, permanent: false },
        ],
        splitStatus: 0,
      },
    },
    { cmd: imageStateWrite, req: { hash: sha, confirm: false }, res: { images: [] } },
    { cmd: imageUpload, req: { off: 0, len: 1000, sha, data: new Uint8Array(100).fill(1), upgrade: true }, res: { off: 100 } },
    { cmd: imageUpload, req: { off: 100, data: new Uint8Array(100).fill(2) }, res: { off: 200, match: true } },
    { cmd: manifestUpload, req: { off: 0, len: 700, data: new Uint8Array(500).fill(3) }, res: { off: 500 } },
    { cmd: trustUpdate, req: { off: 500, data: new Uint8Array(200).fill(4) }, res: { off: 700, code: 0 } },
    { cmd: revocationUpdate, req: { off: 0, len: 10, data: new Uint8Array(10) }, res: { off: 10, code: 304 } },
    { cmd: status, req: {}, res: { slot: 1, version: '2.0.0-rc.1', counter: 7, code: 402, phase: 'downloading', trust: 3, revocation: 2 } },
  ] as const;

  it.each(cases.map((c, i) => [c.cmd.name, i] as const))('%s: request and response round trip over the wire (case %#)', (_, i) => {
    const { cmd, req, res } = cases[i] as { cmd: (typeof SMP_COMMANDS)[number]; req: unknown; res: unknown };
    for (const version of [SMP_VERSION.v1, SMP_VERSION.v2]) {
      const request = viaWire(encodeRequest(cmd, req, 200 + i, version));
      expect(findCommand(request.header)).toBe(cmd);
      const parsedReq = parseRequest(cmd, request);
      expect(parsedReq.ok && parsedReq.value).toEqual(req);
      const response = viaWire(encodeResponse(cmd, request.header, res));
      expect(response.header).toMatchObject({ op: cmd.op + 1, version, seq: 200 + i, group: cmd.group, command: cmd.id });
      const parsedRes = parseResponse(cmd, response, 200 + i);
      expect(parsedRes.ok && parsedRes.value).toEqual(res);
    }
  });

  it('groups and ids: OS 0 (echo 0, reset 5, params 6), image 1 (state 0, upload 1), fwseal 64 (0..3)', () => {
    expect(SMP_COMMANDS.map((c) => `${c.name}:${c.group}/${c.id}/${c.op}`)).toEqual([
      'os.echo:0/0/2',
      'os.reset:0/5/2',
      'os.params:0/6/0',
      'image.state:1/0/0',
      'image.state-write:1/0/2',
      'image.upload:1/1/2',
      'fwseal.manifest:64/0/2',
      'fwseal.trust:64/1/2',
      'fwseal.revocation:64/2/2',
      'fwseal.status:64/3/0',
    ]);
    expect(SMP_GROUP.fwseal).toBe(64);
  });

  it('the first upload chunk must carry len; a chunk may not run past len', () => {
    expect(() => encodeRequest(imageUpload, { off: 0, data: new Uint8Array(1) }, 0)).toThrow(RangeError);
    const noLen = viaWire(
      encodeSmpPacket(
        { op: 2, version: 0, flags: 0, group: 1, seq: 0, command: 1 },
        new Map<string, Uint8Array | number>([
          ['off', 0],
          ['data', new Uint8Array(4)],
        ]),
      ),
    );
    expect(parseRequest(imageUpload, noLen).error).toBe('MISSING_FIELD');
    const past = viaWire(encodeRequest(imageUpload, { off: 0, len: 3, data: new Uint8Array(4) }, 0));
    expect(parseRequest(imageUpload, past).error).toBe('BAD_VALUE');
    const big = viaWire(encodeRequest(manifestUpload, { off: 0, len: LIMITS.maxEnvelopeBytes + 1, data: new Uint8Array(1) }, 0));
    expect(parseRequest(manifestUpload, big).error).toBe('BAD_VALUE');
  });

  it('uploadChunkFault: the chunk rules of SPEC.md §13.7, for codecs and receivers alike', () => {
    const img = IMAGE_UPLOAD_BOUNDS;
    const env = ENVELOPE_UPLOAD_BOUNDS;
    const d = (n: number) => new Uint8Array(n);
    expect(uploadChunkFault({ off: 0, len: 10, data: d(10) }, img)).toBeNull();
    expect(uploadChunkFault({ off: LIMITS.maxImageSize - 4, data: d(4) }, img)).toBeNull();
    const cases: [object, typeof img, string][] = [
      [{ off: 0.5, len: 4, data: d(1) }, img, 'WRONG_TYPE'],
      [{ off: '0', len: 4, data: d(1) }, img, 'WRONG_TYPE'],
      [{ off: 2 ** 53, data: d(1) }, img, 'WRONG_TYPE'],
      [{ off: -1, data: d(1) }, img, 'BAD_VALUE'],
      [{ off: LIMITS.maxImageSize + 1, data: d(0) }, img, 'BAD_VALUE'],
      [{ off: 0, len: 4, data: [1, 2] }, img, 'WRONG_TYPE'],
      [{ off: 0, len: NaN, data: d(1) }, img, 'WRONG_TYPE'],
      [{ off: 0, len: 0, data: d(0) }, env, 'BAD_VALUE'],
      [{ off: 0, len: LIMITS.maxEnvelopeBytes + 1, data: d(1) }, env, 'BAD_VALUE'],
      [{ off: 0, data: d(1) }, env, 'MISSING_FIELD'],
      [{ off: 0, len: 4, data: d(5) }, env, 'BAD_VALUE'],
      [{ off: LIMITS.maxEnvelopeBytes - 1, data: d(2) }, env, 'TOO_LARGE'],
      [{ off: LIMITS.maxImageSize - 1, data: d(2) }, img, 'TOO_LARGE'],
    ];
    for (const [chunk, bounds, code] of cases) expect(uploadChunkFault(chunk, bounds)?.name, JSON.stringify(chunk)).toBe(code);
  });

  it('ignores keys it does not know and checks the types of those it does', () => {
    const extra = viaWire(
      encodeSmpPacket(
        { op: 2, version: 0, flags: 0, group: 1, seq: 0, command: 1 },
        new Map<string, Uint8Array | number | string>([
          ['off', 8],
          ['data', new Uint8Array(4)],
          ['vendor', 'x'],
        ]),
      ),
    );
    expect(parseRequest(imageUpload, extra).ok).toBe(true);
    const wrong = viaWire(
      encodeSmpPacket(
        { op: 2, version: 0, flags: 0, group: 1, seq: 0, command: 1 },
        new Map<string, Uint8Array | string>([
          ['off', '8'],
          ['data', new Uint8Array(4)],
        ]),
      ),
    );
    expect(parseRequest(imageUpload, wrong).error).toBe('WRONG_TYPE');
    const phase = viaWire(
      encodeSmpPacket(
        { op: 1, version: 0, flags: 0, group: 64, seq: 5, command: 3 },
        new Map<string, number | string>([
          ['slot', 0],
          ['version', '1.0.0'],
          ['counter', 1],
          ['code', 0],
          ['phase', 'Bad Phase'],
        ]),
      ),
    );
    expect(parseResponse(status, phase, 5).error).toBe('BAD_VALUE');
  });

  it('matches responses to their request: command and sequence number', () => {
    const request = viaWire(encodeRequest(echo, { text: 'a' }, 9));
    const response = viaWire(encodeResponse(echo, request.header, { text: 'a' }));
    expect(parseResponse(echo, response, 10).error).toBe('WRONG_KIND');
    expect(parseResponse(reset, response, 9).error).toBe('WRONG_KIND');
    expect(parseRequest(reset, request).error).toBe('WRONG_KIND');
  });

  it('error responses: v1 {"rc", "rsn"}, v2 group errors {"err": {"group", "rc"}}', () => {
    const v1 = viaWire(encodeRequest(imageUpload, { off: 8, data: new Uint8Array(1) }, 3, SMP_VERSION.v1));
    const e1 = viaWire(encodeErrorResponse(v1.header, { rc: MGMT_ERR.EBUSY, rsn: 'busy' }));
    expect(parseResponse(imageUpload, e1, 3)).toMatchObject({ ok: true, smpError: { rc: 10, rsn: 'busy' } });
    const v2 = viaWire(encodeRequest(manifestUpload, { off: 8, data: new Uint8Array(1) }, 4, SMP_VERSION.v2));
    const e2 = viaWire(encodeErrorResponse(v2.header, { rc: 5, group: SMP_GROUP.fwseal }));
    expect(e2.header).toMatchObject({ op: 3, version: 1, seq: 4, group: 64 });
    expect(parseResponse(manifestUpload, e2, 4)).toMatchObject({ ok: true, smpError: { rc: 5, group: 64 } });
    expect(
      smpErrorOf(
        new Map([
          ['rc', 0],
          ['off', 1],
        ]),
      ),
    ).toBeNull();
    // An unknown command gets ENOTSUP from the device.
    expect(findCommand({ op: 2, version: 0, flags: 0, length: 0, group: 64, seq: 0, command: 99 })).toBeUndefined();
  });

  it('property: header, image upload and status round trip for any valid values', () => {
    fc.assert(
      fc.property(
        fc.record({
          op: fc.integer({ min: 0, max: 3 }),
          version: fc.integer({ min: 0, max: 1 }),
          flags: fc.integer({ min: 0, max: 255 }),
          length: fc.integer({ min: 0, max: 0xffff }),
          group: fc.integer({ min: 0, max: 0xffff }),
          seq: fc.integer({ min: 0, max: 255 }),
          command: fc.integer({ min: 0, max: 255 }),
        }),
        (h) => {
          const r = parseSmpHeader(encodeSmpHeader(h));
          expect(r.ok && r.header).toEqual(h);
        },
      ),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: LIMITS.maxImageSize }),
        fc.uint8Array({ maxLength: 2000 }),
        fc.option(fc.uint8Array({ minLength: 1, maxLength: 32 }), { nil: undefined }),
        fc.nat({ max: 255 }),
        (anyOff, data, sha, seq) => {
          const off = Math.min(anyOff, LIMITS.maxImageSize - data.length); // a chunk lies below maxImageSize (SPEC.md §13.7)
          const len = off === 0 ? data.length + 5 : undefined;
          const req = { off, data, ...(len === undefined ? {} : { len }), ...(sha === undefined ? {} : { sha }) };
          const r = parseRequest(imageUpload, viaWire(encodeRequest(imageUpload, req, seq)));
          expect(r.ok && r.value).toEqual(req);
        },
      ),
      { numRuns: 200 },
    );
    fc.assert(
      fc.property(
        fc.record({
          slot: fc.nat({ max: 255 }),
          version: fc.string({ minLength: 1, maxLength: 64 }).filter((v) => Buffer.byteLength(v) <= 64),
          counter: fc.nat(),
          code: fc.nat({ max: 999 }),
          phase: fc.stringMatching(/^[a-z-]{1,32}$/),
        }),
        (v) => {
          const request = viaWire(encodeRequest(status, {}, 1));
          const r = parseResponse(status, viaWire(encodeResponse(status, request.header, v)), 1);
          expect(r.ok && r.value).toEqual(v);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('chunkCapacity: the largest data that fits one packet, exactly', () => {
    for (const fields of [
      { off: 0, len: 1_000_000, sha: new Uint8Array(32), upgrade: false, data: new Uint8Array(0) },
      { off: 123_456, data: new Uint8Array(0) },
    ]) {
      const n = chunkCapacity(imageUpload, fields);
      expect(encodeRequest(imageUpload, { ...fields, data: new Uint8Array(n) }, 0).length).toBe(LIMITS.maxSmpPacketBytes);
      expect(() => encodeRequest(imageUpload, { ...fields, data: new Uint8Array(n + 1) }, 0)).toThrow(RangeError);
    }
    expect(chunkCapacity(imageUpload, { off: 2 ** 31, data: new Uint8Array(0) })).toBe(4070);
  });
});
