/**
 * The flash contract (device/agent/flash.ts) on both implementations: SimFlash (in memory, with
 * fault injection) and FileFlash (a temp file). Errors are checked by codeName, never by message.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { type Flash, FlashError, type FlashGeometry, PowerCut } from '../device/agent/flash.js';
import { openFileFlash } from '../device/node/file-flash.js';
import { SimFlash, validateGeometry } from '../device/sim/flash.js';

const G: FlashGeometry = { size: 8 * 256, eraseBlockSize: 256, writeAlign: 8, erasedValue: 0xff };
const G0: FlashGeometry = { size: 4 * 64, eraseBlockSize: 64, writeAlign: 4, erasedValue: 0x00 };

const dir = mkdtempSync(join(tmpdir(), 'fwseal-flash-'));
let fileNo = 0;
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Made = { flash: Flash; done(): void };
type Maker = (g: FlashGeometry, initial?: Uint8Array) => Made;

const makers: [string, Maker][] = [
  ['SimFlash', (g, initial) => ({ flash: new SimFlash(g, {}, initial), done() {} })],
  [
    'FileFlash',
    (g, initial) => {
      const path = join(dir, `flash-${fileNo++}.bin`);
      if (initial) writeFileSync(path, initial);
      const flash = openFileFlash(path, g, { create: true });
      return {
        flash,
        done() {
          flash.close();
          rmSync(path, { force: true });
        },
      };
    },
  ],
];

function code(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof FlashError) return e.codeName;
    if (e instanceof PowerCut) return 'PowerCut';
    throw e;
  }
  return 'OK';
}

function cut(f: () => unknown): number {
  try {
    f();
  } catch (e) {
    if (e instanceof PowerCut) return e.operation;
    throw e;
  }
  throw new Error('expected a PowerCut');
}

const bytes = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + 3) & 0x7f);
const all = (f: Flash): Uint8Array => f.read(0, f.size);

describe.each(makers)('%s: the flash contract', (_name, make) => {
  function withFlash(g: FlashGeometry, body: (f: Flash) => void, initial?: Uint8Array): void {
    const m = make(g, initial);
    try {
      body(m.flash);
    } finally {
      m.done();
    }
  }

  it('starts erased and exposes its geometry', () => {
    for (const g of [G, G0]) {
      withFlash(g, (f) => {
        expect([f.size, f.eraseBlockSize, f.writeAlign, f.erasedValue]).toEqual([g.size, g.eraseBlockSize, g.writeAlign, g.erasedValue]);
        expect(all(f)).toEqual(new Uint8Array(g.size).fill(g.erasedValue));
      });
    }
  });

  it('starts from given initial contents', () => {
    const init = bytes(G.size, 5);
    withFlash(G, (f) => expect(all(f)).toEqual(init), init);
  });

  it('write then read back; reads return copies', () => {
    withFlash(G, (f) => {
      const d = bytes(24);
      f.write(16, d);
      expect(f.read(16, 24)).toEqual(d);
      expect(f.read(8, 8)).toEqual(new Uint8Array(8).fill(0xff));
      expect(f.read(40, 8)).toEqual(new Uint8Array(8).fill(0xff));
      const r = f.read(16, 8);
      r.fill(0);
      expect(f.read(16, 8)).toEqual(d.subarray(0, 8));
      d.fill(0); // the caller's buffer is not aliased either
      expect(f.read(16, 8)).not.toEqual(new Uint8Array(8));
      expect(f.read(0, 0)).toEqual(new Uint8Array(0));
      expect(f.read(3, 5).length).toBe(5); // reads need no alignment
    });
  });

  it("readInto fills the caller's buffer with what read returns, with the same range check", () => {
    withFlash(G, (f) => {
      f.write(256, bytes(512, 4));
      const target = new Uint8Array(300);
      f.readInto!(250, target);
      expect(target).toEqual(f.read(250, 300));
      f.readInto!(G.size - 3, target.subarray(0, 3)); // an unaligned view, up to the end
      expect(target.subarray(0, 3)).toEqual(new Uint8Array(3).fill(0xff));
      expect(code(() => f.readInto!(G.size - 2, new Uint8Array(3)))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.readInto!(-1, new Uint8Array(1)))).toBe('FLASH_OUT_OF_RANGE');
    });
  });

  it('a write of many words onto one non-erased byte is refused whole: in the first word, mid-way and in the last word', () => {
    for (const at of [0, 3, 700, 1021]) {
      const init = new Uint8Array(G.size).fill(0xff);
      init[256 + at] = 0x5a; // one programmed byte inside the target of the next write
      withFlash(
        G,
        (f) => {
          expect(code(() => f.write(256, bytes(1024, 2)))).toBe('FLASH_NOT_ERASED');
          expect(f.read(256, 1024).filter((v) => v !== 0xff)).toEqual(Uint8Array.of(0x5a)); // nothing landed
        },
        init,
      );
    }
  });

  it('no write without erase; erase sets erasedValue (whole blocks only)', () => {
    withFlash(G, (f) => {
      f.write(0, bytes(16));
      expect(code(() => f.write(8, bytes(8)))).toBe('FLASH_NOT_ERASED');
      // a partly written target is rejected before anything lands
      expect(code(() => f.write(16, bytes(8, 9)))).toBe('OK');
      expect(code(() => f.write(8, new Uint8Array(16).fill(0xff)))).toBe('FLASH_NOT_ERASED');
      f.write(256, bytes(8));
      f.erase(0, 256);
      expect(f.read(0, 256)).toEqual(new Uint8Array(256).fill(0xff));
      expect(f.read(256, 8)).toEqual(bytes(8)); // next block untouched
      f.write(0, bytes(16, 3));
      expect(f.read(0, 16)).toEqual(bytes(16, 3));
    });
  });

  it('writing onto a byte that holds erasedValue after a write is fine; other values are not', () => {
    withFlash(G0, (f) => {
      const d = new Uint8Array([0, 1, 0, 2]);
      f.write(0, d); // target erased (0x00)
      expect(code(() => f.write(0, new Uint8Array(4)))).toBe('FLASH_NOT_ERASED'); // bytes 1 and 3 are not erased
      expect(f.read(0, 4)).toEqual(d);
    });
  });

  it('alignment: FLASH_MISALIGNED, nothing changes', () => {
    withFlash(G, (f) => {
      f.write(0, bytes(8));
      const before = all(f);
      expect(code(() => f.write(4, bytes(8)))).toBe('FLASH_MISALIGNED');
      expect(code(() => f.write(8, bytes(12)))).toBe('FLASH_MISALIGNED');
      expect(code(() => f.erase(128, 256))).toBe('FLASH_MISALIGNED');
      expect(code(() => f.erase(0, 128))).toBe('FLASH_MISALIGNED');
      expect(code(() => f.erase(8, 256))).toBe('FLASH_MISALIGNED');
      expect(all(f)).toEqual(before);
    });
  });

  it('range: FLASH_OUT_OF_RANGE, nothing changes', () => {
    withFlash(G, (f) => {
      const before = all(f);
      expect(code(() => f.write(G.size, bytes(8)))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.write(G.size - 8, bytes(16)))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.write(-8, bytes(8)))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.erase(G.size, 256))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.erase(0, G.size + 256))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.erase(-256, 256))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.erase(0, -256))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.erase(0.5, 256))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.read(G.size - 4, 8))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.read(-1, 1))).toBe('FLASH_OUT_OF_RANGE');
      expect(code(() => f.read(0, NaN))).toBe('FLASH_OUT_OF_RANGE');
      expect(all(f)).toEqual(before);
      // the full range and empty ranges at the end are fine
      expect(code(() => f.erase(0, G.size))).toBe('OK');
      expect(code(() => f.write(G.size - 8, bytes(8)))).toBe('OK');
      expect(code(() => f.write(G.size, new Uint8Array(0)))).toBe('OK');
      expect(code(() => f.erase(G.size, 0))).toBe('OK');
    });
  });

  it('erasedValue 0x00 geometry works the same way', () => {
    withFlash(G0, (f) => {
      f.write(60, bytes(8));
      expect(f.read(60, 8)).toEqual(bytes(8));
      expect(code(() => f.erase(0, 64))).toBe('OK');
      expect(f.read(0, 64)).toEqual(new Uint8Array(64));
      expect(f.read(64, 4)).toEqual(bytes(8).subarray(4));
      expect(code(() => f.write(64, bytes(4)))).toBe('FLASH_NOT_ERASED');
    });
  });
});

describe('geometry validation (RangeError)', () => {
  const bad: FlashGeometry[] = [
    { ...G, eraseBlockSize: 0 },
    { ...G, eraseBlockSize: 100 },
    { ...G, writeAlign: 3 },
    { ...G, writeAlign: 0 },
    { ...G, writeAlign: 512 },
    { ...G, size: 0 },
    { ...G, size: 1000 },
    { ...G, size: 256.5 },
    { ...G, erasedValue: 256 },
    { ...G, erasedValue: -1 },
    { ...G, erasedValue: 1.5 },
  ];
  it.each(bad.map((g) => [g]))('rejects %o', (g) => {
    expect(() => validateGeometry(g)).toThrow(RangeError);
    expect(() => new SimFlash(g)).toThrow(RangeError);
    expect(() => openFileFlash(join(dir, `bad-${fileNo++}.bin`), g, { create: true })).toThrow(RangeError);
  });

  it('accepts good geometries', () => {
    for (const g of [G, G0, { size: 4096, eraseBlockSize: 4096, writeAlign: 4096, erasedValue: 0 }]) {
      expect(() => validateGeometry(g)).not.toThrow();
    }
  });

  it('SimFlash rejects initial contents of the wrong size', () => {
    expect(() => new SimFlash(G, {}, new Uint8Array(G.size - 1))).toThrow(RangeError);
  });
});

describe('FileFlash specifics', () => {
  it('creates the file filled with erasedValue only when asked, and persists across reopen', () => {
    const path = join(dir, `persist-${fileNo++}.bin`);
    expect(() => openFileFlash(path, G)).toThrow();
    expect(existsSync(path)).toBe(false);
    const f = openFileFlash(path, G, { create: true });
    expect(statSync(path).size).toBe(G.size);
    expect(readFileSync(path)).toEqual(Buffer.alloc(G.size, 0xff));
    f.write(512, bytes(16));
    f.close();
    f.close(); // idempotent
    expect(() => f.read(0, 1)).toThrow();
    const g = openFileFlash(path, G, { create: true }); // exists: not recreated
    expect(g.read(512, 16)).toEqual(bytes(16));
    expect(code(() => g.write(512, bytes(8)))).toBe('FLASH_NOT_ERASED');
    g.close();
  });

  it('rejects a file whose size does not match the geometry', () => {
    const path = join(dir, `size-${fileNo++}.bin`);
    writeFileSync(path, new Uint8Array(G.size - 256));
    expect(() => openFileFlash(path, G, { create: true })).toThrow(RangeError);
  });
});

describe('SimFlash fault injection', () => {
  it('counts erase+write operations (also failed ones), never reads', () => {
    const f = new SimFlash(G);
    f.read(0, 16);
    f.write(0, bytes(8));
    f.erase(0, 256);
    expect(code(() => f.write(4, bytes(8)))).toBe('FLASH_MISALIGNED');
    f.read(0, G.size);
    expect(f.operations).toBe(3);
    expect(f.totalOperations).toBe(3);
    f.setFaults({});
    expect(f.operations).toBe(0);
    expect(f.totalOperations).toBe(3);
    f.write(0, bytes(8));
    expect([f.operations, f.totalOperations]).toEqual([1, 4]);
  });

  it('power cut before op N: ops before N land, nothing of op N does, the power stays off until setFaults', () => {
    const f = new SimFlash(G, { powerCutBeforeOp: 3 });
    f.write(0, bytes(8)); // op 1
    f.write(256, bytes(8)); // op 2
    const before = f.snapshot();
    expect(cut(() => f.erase(0, 256))).toBe(3); // op 3 never happens
    expect(f.snapshot()).toEqual(before);
    expect(f.powered).toBe(false);
    expect(cut(() => f.write(512, bytes(8)))).toBe(4); // still off
    expect(f.snapshot()).toEqual(before);
    expect(f.read(0, 8)).toEqual(bytes(8)); // reads still work (post-mortem)
    f.setFaults({}); // power restored
    expect(f.powered).toBe(true);
    f.write(512, bytes(8));
    expect(f.read(512, 8)).toEqual(bytes(8));
  });

  it('a power cut before op N happens even when op N is misuse (counted first, then validated)', () => {
    const f = new SimFlash(G, { powerCutBeforeOp: 1 });
    expect(cut(() => f.write(3, bytes(5)))).toBe(1);
    f.setFaults({ powerCutBeforeOp: 2 });
    expect(code(() => f.write(3, bytes(5)))).toBe('FLASH_MISALIGNED'); // op 1
    expect(cut(() => f.write(0, bytes(8)))).toBe(2);
  });

  it('powerCutBeforeOp counts from setFaults', () => {
    const f = new SimFlash(G);
    f.write(0, bytes(8));
    f.write(8, bytes(8));
    f.setFaults({ powerCutBeforeOp: 2 });
    f.write(16, bytes(8));
    expect(cut(() => f.write(24, bytes(8)))).toBe(2);
    expect(f.read(16, 16)).toEqual(Uint8Array.from([...bytes(8), ...new Uint8Array(8).fill(0xff)]));
  });

  it('torn write: the first floor(fraction * length) bytes land (a partial word is possible), then PowerCut', () => {
    const f = new SimFlash(G, { tornOp: { op: 2, fraction: 0.3 } });
    f.erase(0, 256); // op 1
    const d = bytes(32, 4);
    expect(cut(() => f.write(64, d))).toBe(2);
    const n = Math.floor(0.3 * 32); // 9: not a multiple of writeAlign
    expect(f.read(64, n)).toEqual(d.subarray(0, n));
    expect(f.read(64 + n, 32 - n)).toEqual(new Uint8Array(32 - n).fill(0xff));
    expect(f.powered).toBe(false);
    f.setFaults({});
    expect(code(() => f.write(64, d))).toBe('FLASH_NOT_ERASED'); // the torn word must be erased first
  });

  it('torn write with fraction 0 and 1', () => {
    const f = new SimFlash(G, { tornOp: { op: 1, fraction: 0 } });
    expect(cut(() => f.write(0, bytes(16)))).toBe(1);
    expect(f.read(0, 16)).toEqual(new Uint8Array(16).fill(0xff));
    f.setFaults({ tornOp: { op: 1, fraction: 1 } });
    expect(cut(() => f.write(0, bytes(16)))).toBe(1);
    expect(f.read(0, 16)).toEqual(bytes(16));
  });

  it('torn erase: only the first fraction of the range is erased, then PowerCut', () => {
    const init = bytes(G.size, 2);
    const f = new SimFlash(G, { tornOp: { op: 1, fraction: 0.5 } }, init);
    expect(cut(() => f.erase(256, 3 * 256))).toBe(1);
    const n = Math.floor(0.5 * 3 * 256);
    const after = f.snapshot();
    expect(after.subarray(0, 256)).toEqual(init.subarray(0, 256));
    expect(after.subarray(256, 256 + n)).toEqual(new Uint8Array(n).fill(0xff));
    expect(after.subarray(256 + n)).toEqual(init.subarray(256 + n));
  });

  it('a torn op that is misuse fails as misuse and tears nothing', () => {
    const f = new SimFlash(G, { tornOp: { op: 1, fraction: 0.5 } });
    expect(code(() => f.write(0, bytes(12)))).toBe('FLASH_MISALIGNED');
    expect(f.powered).toBe(true);
    expect(f.snapshot()).toEqual(new Uint8Array(G.size).fill(0xff));
  });

  it('bad blocks: writes fail with FLASH_WRITE_FAILED leaving garbled bytes; erases fail with FLASH_ERASE_FAILED', () => {
    const init = bytes(G.size, 6);
    const f = new SimFlash(G, { badBlocks: [2] });
    const d = bytes(32, 8);
    // a write inside a good block works
    f.write(0, d);
    expect(f.read(0, 32)).toEqual(d);
    // a write into block 2 fails and leaves garbage
    expect(code(() => f.write(2 * 256, d))).toBe('FLASH_WRITE_FAILED');
    const got = f.read(2 * 256, 32);
    expect(got).not.toEqual(d);
    expect(got).not.toEqual(new Uint8Array(32).fill(0xff));
    // a write straddling into block 2 lands correctly in block 1, garbled in block 2
    expect(code(() => f.write(3 * 256 - 16, d))).toBe('FLASH_WRITE_FAILED'); // block 2 -> 3
    expect(f.read(3 * 256, 16)).toEqual(d.subarray(16));
    expect(f.read(3 * 256 - 16, 16)).not.toEqual(d.subarray(0, 16));
    // erase: bad block is not erased; good blocks in the range are
    const g = new SimFlash(G, { badBlocks: [2] }, init);
    expect(code(() => g.erase(256, 3 * 256))).toBe('FLASH_ERASE_FAILED');
    const s = g.snapshot();
    expect(s.subarray(256, 512)).toEqual(new Uint8Array(256).fill(0xff));
    expect(s.subarray(512, 768)).toEqual(init.subarray(512, 768));
    expect(s.subarray(768, 1024)).toEqual(new Uint8Array(256).fill(0xff));
    expect(code(() => g.erase(2 * 256, 256))).toBe('FLASH_ERASE_FAILED');
    expect(g.operations).toBe(2);
    // misuse on a bad block is still reported as misuse
    expect(code(() => g.write(2 * 256 + 4, bytes(8)))).toBe('FLASH_MISALIGNED');
    g.setFaults({});
    expect(code(() => g.erase(2 * 256, 256))).toBe('OK');
  });

  it('rejects malformed fault plans with RangeError', () => {
    const f = new SimFlash(G);
    expect(() => f.setFaults({ powerCutBeforeOp: 0 })).toThrow(RangeError);
    expect(() => f.setFaults({ tornOp: { op: 1, fraction: 1.5 } })).toThrow(RangeError);
    expect(() => f.setFaults({ tornOp: { op: 0, fraction: 0.5 } })).toThrow(RangeError);
    expect(() => f.setFaults({ badBlocks: [G.size / G.eraseBlockSize] })).toThrow(RangeError);
    expect(() => new SimFlash(G, { powerCutBeforeOp: -1 })).toThrow(RangeError);
  });

  it('flipBit flips exactly one bit, is not an operation, and is not undone by reads', () => {
    const f = new SimFlash(G);
    f.write(0, new Uint8Array(8));
    f.flipBit(3, 5);
    expect(f.read(0, 8)).toEqual(Uint8Array.from([0, 0, 0, 32, 0, 0, 0, 0]));
    f.flipBit(100, 0);
    expect(f.read(100, 1)[0]).toBe(0xfe);
    expect(f.operations).toBe(1);
    expect(f.totalOperations).toBe(1);
    // a flipped bit in an erased area makes it non-erased
    expect(code(() => f.write(96, bytes(8)))).toBe('FLASH_NOT_ERASED');
    expect(() => f.flipBit(G.size, 0)).toThrow(RangeError);
    expect(() => f.flipBit(0, 8)).toThrow(RangeError);
  });

  it('snapshot is a copy of the whole contents', () => {
    const init = bytes(G.size, 9);
    const f = new SimFlash(G, {}, init);
    init.fill(0); // the initial buffer is copied too
    const s = f.snapshot();
    expect(s).toEqual(bytes(G.size, 9));
    s.fill(0);
    expect(f.snapshot()).toEqual(bytes(G.size, 9));
  });
});

describe('SimFlash and FileFlash agree (property)', () => {
  const geo = G0; // 4 blocks of 64, writeAlign 4
  type Op =
    | { kind: 'erase'; offset: number; length: number }
    | { kind: 'write'; offset: number; data: Uint8Array }
    | { kind: 'read'; offset: number; length: number };
  // Mostly valid operations, with some misuse mixed in: both must give the same outcome code and contents.
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('erase' as const),
        offset: fc.integer({ min: 0, max: 3 }).map((b) => b * 64),
        length: fc.integer({ min: 0, max: 2 }).map((b) => b * 64),
      }),
    },
    {
      weight: 6,
      arbitrary: fc
        .record({ at: fc.integer({ min: 0, max: 63 }), words: fc.integer({ min: 0, max: 8 }) })
        .chain(({ at, words }) =>
          fc.uint8Array({ minLength: words * 4, maxLength: words * 4 }).map((data) => ({ kind: 'write' as const, offset: at * 4, data })),
        ),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('write' as const), offset: fc.integer({ min: -4, max: 260 }), data: fc.uint8Array({ maxLength: 10 }) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('erase' as const), offset: fc.integer({ min: -64, max: 300 }), length: fc.integer({ min: -64, max: 300 }) }),
    },
    {
      weight: 1,
      arbitrary: fc.record({ kind: fc.constant('read' as const), offset: fc.integer({ min: -4, max: 260 }), length: fc.integer({ min: 0, max: 40 }) }),
    },
  );

  it('random operation sequences give the same outcomes and contents', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 25 }), (ops) => {
        const sim = new SimFlash(geo);
        const path = join(dir, `prop-${fileNo++}.bin`);
        const file = openFileFlash(path, geo, { create: true });
        try {
          for (const o of ops) {
            const run = (f: Flash): [string, Uint8Array | undefined] => {
              let out: Uint8Array | undefined;
              const c = code(() => {
                if (o.kind === 'erase') f.erase(o.offset, o.length);
                else if (o.kind === 'write') f.write(o.offset, o.data);
                else out = f.read(o.offset, o.length);
              });
              return [c, out];
            };
            expect(run(file)).toEqual(run(sim));
          }
          expect(file.read(0, geo.size)).toEqual(sim.snapshot());
        } finally {
          file.close();
          rmSync(path, { force: true });
        }
      }),
      { numRuns: 60 },
    );
  });
});
