/**
 * The SMP fuzzer's moves (the engine and its oracle are smp-fuzz.ts): one request per move, drawn
 * from the update bundle and envelopes of the world — valid chunks, upload and group 64 envelope
 * fields abused one at a time, random commands with random payloads, packets whose header lies,
 * and random bytes as frames.
 */
import { EMULATED_TRUST, release2 } from '../../hil/emulated.js';
import { makeBundle, makeTrust } from '../../hil/world.js';
import { nodeSha256 } from '../../host/hash.js';
import { bundleLayout } from '../../shared/bundle.js';
import { LIMITS } from '../../shared/limits.js';
import { SMP_HEADER_BYTES } from '../../shared/smp/packet.js';
import { type Rng } from './fuzz/rng.js';
import { FACTORY_IMAGE_BYTES, type RawCbor, RawFloat, type RawHeader, RawMap, rawCbor, rawPacket } from './smp-device.js';

/** The update bundle and the envelopes the moves draw from. */
export type World = {
  readonly bundle: Uint8Array;
  readonly sha: Uint8Array;
  /** The longest `len` the device takes for its slot (hil/bundle-sink.ts). */
  readonly maxBundle: number;
  readonly envelopes: readonly Uint8Array[];
};

/** What the fuzzer tracks of the device between requests (from its answers). */
export type Progress = {
  imageOff: number;
  /** The group 64 upload last started (command, len) and the offset last answered. */
  envelopeCommand: number;
  envelopeLen: number;
  envelopeOff: number;
  seq: number;
  reset: boolean;
};

export type Sent = { readonly packet: Uint8Array; readonly kind: string } | { readonly raw: Uint8Array; readonly kind: string };

export function world(): World {
  const release = release2();
  const bundle = makeBundle(release);
  const trust2 = makeTrust({ ...EMULATED_TRUST, version: 2, signers: ['A', 'B'] });
  return {
    bundle,
    sha: nodeSha256(bundle),
    envelopes: [release.envelope, trust2],
    maxBundle: bundleLayout(LIMITS.maxEnvelopeBytes, FACTORY_IMAGE_BYTES + 4096, LIMITS.minChunkSize).length,
  };
}

export function move(rng: Rng, w: World, p: Progress): Sent {
  const seq = (p.seq = (p.seq + 1) % 255); // 255 is the echo after each case
  const kind = rng.weighted([
    ['upload-valid', 20],
    ['upload-abuse', 25],
    ['envelope-valid', 6],
    ['envelope-start', 8],
    ['envelope-abuse', 20],
    ['random-command', 10],
    ['bad-packet', 8],
    ['garbage', 5],
    ['benign', 5],
    ['reset', 1],
  ] as const);
  switch (kind) {
    case 'upload-valid': {
      const off = p.imageOff >= w.bundle.length ? 0 : p.imageOff;
      const n = Math.min(rng.range(1, 3000), w.bundle.length - off);
      const fields: [string, RawCbor][] = [
        ['off', off],
        ['data', w.bundle.subarray(off, off + n)],
      ];
      if (off === 0) fields.push(['len', w.bundle.length], ['sha', w.sha]);
      return { packet: packetFitting(rng, { group: 1, command: 1, op: 2, seq }, fields), kind };
    }
    case 'upload-abuse':
      return {
        packet: packetFitting(
          rng,
          { group: 1, command: 1, op: 2, seq },
          chunkFields(rng, { expected: p.imageOff, len: w.bundle.length, bound: w.maxBundle, source: w.bundle, sha: w.sha }),
        ),
        kind,
      };
    case 'envelope-valid': {
      const env = rng.pick(w.envelopes);
      return {
        packet: packetFitting(rng, { group: 64, command: env === w.envelopes[0] ? 0 : 1, op: 2, seq }, [
          ['off', 0],
          ['len', env.length],
          ['data', env],
        ]),
        kind,
      };
    }
    case 'envelope-start': {
      // An upload left unfinished (len above the data sent), for the continuations of envelope-abuse to overrun.
      const len = rng.pick([rng.range(1, 64), rng.range(1, 4096), rng.range(1, LIMITS.maxEnvelopeBytes)]);
      [p.envelopeCommand, p.envelopeLen] = [rng.range(0, 2), len];
      return {
        packet: packetFitting(rng, { group: 64, command: p.envelopeCommand, op: 2, seq }, [
          ['off', 0],
          ['len', len],
          ['data', rng.bytes(rng.range(0, Math.min(len - 1, 3000)))],
        ]),
        kind,
      };
    }
    case 'envelope-abuse': {
      const command = rng.chance(0.7) ? p.envelopeCommand : rng.range(0, 3);
      const fields = chunkFields(rng, { expected: p.envelopeOff, len: p.envelopeLen, bound: LIMITS.maxEnvelopeBytes, source: rng.pick(w.envelopes) });
      return { packet: packetFitting(rng, { group: 64, command, op: 2, seq, version: rng.range(0, 1) }, fields), kind };
    }
    case 'random-command': {
      const group = rng.pick([0, 1, 64, 2, 8, 9, 63, 65, rng.range(0, 0xffff)]);
      const entries: [string, RawCbor][] = Array.from({ length: rng.range(0, 5) }, () => [
        rng.pick(['d', 'off', 'len', 'data', 'sha', 'confirm', 'hash', 'force', 'image', 'upgrade', 'x']),
        value(rng, 0),
      ]);
      return { packet: packetFitting(rng, { group, command: rng.range(0, 8), op: rng.pick([0, 2]), seq, version: rng.range(0, 1) }, entries), kind };
    }
    case 'bad-packet':
      return { packet: badPacket(rng, seq), kind };
    case 'garbage':
      return { raw: garbage(rng), kind };
    case 'benign': {
      const [group, command, op, payload] = rng.pick([
        [0, 0, 2, new Map([['d', 'hi']])],
        [0, 6, 0, new Map()],
        [1, 0, 0, new Map()],
        [64, 3, 0, new Map()],
        [1, 0, 2, new Map([['confirm', true]])],
      ] as const);
      return { packet: rawPacket({ group, command, op, seq }, payload), kind };
    }
    default:
      p.reset = true;
      return { packet: rawPacket({ group: 0, command: 5, op: 2, seq }, new Map()), kind };
  }
}

type Upload = { readonly expected: number; readonly len: number; readonly bound: number; readonly source: Uint8Array; readonly sha?: Uint8Array };

/** Upload fields: mostly plausible (often at the offset the device expects), each one abused on its own with some probability. */
function chunkFields(rng: Rng, u: Upload): [string, RawCbor][] {
  const { expected, len, bound, source, sha } = u;
  const off = rng.weighted<() => RawCbor>([
    [() => expected, 4],
    [() => rng.pick([0, expected + 1, Math.max(0, expected - 1), len, len - 1, len + 1]), 3],
    [() => number(rng, bound, expected), 3],
  ])();
  const fields: [string, RawCbor][] = [];
  if (!rng.chance(0.03)) fields.push(['off', off]);
  if (off === 0 ? !rng.chance(0.1) : rng.chance(0.2))
    fields.push(['len', rng.chance(0.5) ? rng.pick([len, len - 1, len + 1, 0, 12, 13, bound, bound + 1]) : number(rng, bound, len)]);
  if (!rng.chance(0.03)) fields.push(['data', data(rng, off, source)]);
  if (sha !== undefined && rng.chance(0.5)) fields.push(['sha', rng.pick<RawCbor>([sha, rng.bytes(32), rng.bytes(33), new Uint8Array(0), 'sha', 7])]);
  if (rng.chance(0.1)) fields.push([rng.pick(['image', 'upgrade', 'x', 'off']), value(rng, 0)]); // 'off' again: a duplicate key
  return fields;
}

/** A number-ish field value: edges of the bound and of every integer width, floats, wrong types. */
function number(rng: Rng, bound: number, near: number): RawCbor {
  return rng.pick<RawCbor>([
    0,
    1,
    near - 1,
    near + 1,
    bound - 1,
    bound,
    bound + 1,
    rng.int(bound + 1),
    rng.int(2 ** 32),
    2 ** 31 - 1,
    2 ** 31,
    2 ** 32 - 1,
    2 ** 32,
    Number.MAX_SAFE_INTEGER,
    2n ** 53n,
    2n ** 63n,
    2n ** 64n - 1n,
    -1,
    -(2 ** 31),
    -(2n ** 63n),
    -(2n ** 64n),
    new RawFloat(0.5),
    new RawFloat(NaN),
    new RawFloat(Infinity),
    new RawFloat(-Infinity),
    new RawFloat(-0),
    new RawFloat(1e300),
    new RawFloat(4),
    '0',
    '',
    null,
    true,
    new Uint8Array(4),
    [],
    new Map(),
  ]);
}

function data(rng: Rng, off: RawCbor, source: Uint8Array): RawCbor {
  const at = typeof off === 'number' && Number.isSafeInteger(off) && off >= 0 && off < source.length ? off : 0;
  return rng.weighted<() => RawCbor>([
    [() => source.subarray(at, at + rng.range(0, 3000)), 4],
    [() => rng.bytes(rng.pick([0, 1, rng.length(3000), rng.range(0, 3000)])), 4],
    [() => rng.pick<RawCbor>(['data', 5, [], null, new Map([['data', new Uint8Array(1)]])]), 1],
  ])();
}

/** A random CBOR value, nested a little (and now and then past the reader's depth limit). */
function value(rng: Rng, depth: number): RawCbor {
  if (depth === 0 && rng.chance(0.03)) {
    let v: RawCbor = 0;
    for (let i = 0; i < LIMITS.maxDepth + 2; i++) v = [v];
    return v;
  }
  const leaf = depth >= 3;
  return rng.weighted<() => RawCbor>([
    [() => number(rng, 2 ** 32, 0), 4],
    [() => rng.bytes(rng.range(0, 64)), 2],
    [() => 'x'.repeat(rng.pick([0, 1, 255, 256, 257])), 2],
    [() => (leaf ? null : Array.from({ length: rng.range(0, 4) }, () => value(rng, depth + 1))), 1],
    [() => (leaf ? false : new Map(Array.from({ length: rng.range(0, 4) }, (_, i) => [`k${i}`, value(rng, depth + 1)]))), 1],
  ])();
}

/**
 * A packet with a request header and these fields, its data trimmed to fit maxSmpPacketBytes; now
 * and then the fields go out as a map with a duplicate key or the map is replaced by another item.
 */
function packetFitting(rng: Rng, h: RawHeader, fields: [string, RawCbor][]): Uint8Array {
  const shape = rng.weighted([
    ['map', 90],
    ['duplicate', 4],
    ['not-a-map', 3],
    ['indefinite', 3],
  ] as const);
  const build = (): Uint8Array => {
    if (shape === 'duplicate')
      return rawCbor(
        new RawMap(
          fields.length > 0
            ? [...fields, fields[0]]
            : [
                ['off', 0],
                ['off', 1],
              ],
        ),
      );
    if (shape === 'not-a-map') return rawCbor(fields.map(([, v]) => v));
    const map = rawCbor(new RawMap(dedupe(fields)));
    if (shape === 'map') return map;
    // Zephyr's zcbor sends indefinite-length maps: same entries, 0xbf ... 0xff.
    return Uint8Array.from([0xbf, ...map.subarray(mapHeadLength(map)), 0xff]);
  };
  for (;;) {
    const body = build();
    if (SMP_HEADER_BYTES + body.length <= LIMITS.maxSmpPacketBytes) return rawPacket(h, body);
    const i = fields.findIndex(([, v]) => v instanceof Uint8Array && v.length > 0);
    if (i < 0) return rawPacket(h, new Map());
    const v = fields[i][1] as Uint8Array;
    fields[i] = [fields[i][0], v.subarray(0, Math.max(0, v.length - (SMP_HEADER_BYTES + body.length - LIMITS.maxSmpPacketBytes) - 8))];
  }
}

function dedupe(fields: [string, RawCbor][]): [string, RawCbor][] {
  const seen = new Set<string>();
  return fields.filter(([k]) => {
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function mapHeadLength(map: Uint8Array): number {
  const info = map[0] & 31;
  return info < 24 ? 1 : info === 24 ? 2 : info === 25 ? 3 : 5;
}

/** A well-framed packet that is wrong: random bytes, a header that lies about the length, an undefined op or version. */
function badPacket(rng: Rng, seq: number): Uint8Array {
  const body = rng.bytes(rng.range(0, 64));
  switch (rng.int(4)) {
    case 0:
      return rng.bytes(rng.range(1, 64));
    case 1:
      return rawPacket({ group: rng.pick([0, 1, 64]), command: rng.range(0, 3), op: rng.pick([0, 2]), seq }, body);
    case 2:
      return rawPacket(
        { group: 64, command: 1, op: 2, seq },
        new Map<string, RawCbor>([
          ['off', 0],
          ['len', 4],
          ['data', new Uint8Array(4)],
        ]),
        rng.pick([-3, -1, 1, 7, 1000]),
      );
    default: {
      const packet = rawPacket({ group: 0, command: 0, op: 2, seq }, new Map([['d', 'x']]));
      packet[0] = rng.range(0, 255); // any op, version and reserved bits
      return packet;
    }
  }
}

/** Random bytes for the console decoder, with frame markers and newlines sprinkled in. */
function garbage(rng: Rng): Uint8Array {
  const out = rng.bytes(rng.range(1, 600));
  for (let i = 0; i < out.length; i += rng.range(1, 80)) {
    const mark = rng.pick([[0x06, 0x09], [0x04, 0x14], [0x0a], [0x0d, 0x0a], [0x41, 0x41, 0x3d]]);
    out.set(mark.slice(0, out.length - i), i);
  }
  return out;
}
