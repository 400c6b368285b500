/**
 * The update agent, the boot agent and the power-fail-safe state store (SPEC.md §11) over SimFlash.
 */
import { describe, expect, it } from 'vitest';
import { UpdateAgent } from '../device/agent/agent.js';
import { boot } from '../device/agent/boot.js';
import { PowerCut } from '../device/agent/flash.js';
import { createLayout, type Layout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { crc32, encodeStateCopy, loadState, saveState } from '../device/agent/state-store.js';
import { keyId } from '../device/index.js';
import { SimFlash } from '../device/sim/flash.js';
import { nodeSha256 } from '../host/hash.js';
import { concatBytes } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { inclusionProof, leafHash, pageLeafRange, pageProofs } from '../shared/merkle.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust, sha256, standardWorld } from './support/fixtures.js';

const E = 4096;
const W = 8;
const CHUNK = 4096;
const world = standardWorld();
const { trust, R1, R2, A, B } = world;
const v1Image = detBytes(40_000, 'agent v1');
const v2Image = detBytes(49_000, 'agent v2'); // 12 chunks, the last one short
const v1 = makeManifestEnvelope(makeManifest(v1Image, { version: '1.0.0', securityCounter: 1 }), [R1, R2]);
const v2Manifest = makeManifest(v2Image, { version: '2.0.0', securityCounter: 2 });
const v2 = makeManifestEnvelope(v2Manifest, [R1, R2]);
const chunks: Uint8Array[] = [];
for (let o = 0; o < v2Image.length; o += CHUNK) chunks.push(v2Image.subarray(o, Math.min(v2Image.length, o + CHUNK)));
const leaves = chunks.map((c) => leafHash(nodeSha256, c));
const proofs = chunks.map((_, i) => concatBytes(...inclusionProof(nodeSha256, leaves, i)));
const N = chunks.length;
const SLOT = 64 * 1024;

function device(): { flash: SimFlash; layout: Layout; agent: () => UpdateAgent } {
  const geometry = { size: layoutBytes(E, W, SLOT), eraseBlockSize: E, writeAlign: W, erasedValue: 0xff };
  const layout = createLayout(geometry, { slotSize: SLOT });
  const flash = new SimFlash(geometry);
  const p = provision(flash, layout, { deviceClass: 'acme-gw', trust, envelope: v1, image: v1Image });
  expect(p.ok, p.error).toBe(true);
  flash.setFaults({});
  return { flash, layout, agent: () => new UpdateAgent({ flash, layout, trust }) };
}

function state(flash: SimFlash, layout: Layout) {
  const s = loadState(flash, layout);
  if (!s.ok) throw new Error(s.error);
  return s.record;
}

function downloadAll(agent: UpdateAgent): number {
  let fetched = 0;
  for (const i of agent.missingChunks()) {
    const w = agent.writeChunk(i, chunks[i], proofs[i]);
    expect(w.ok, w.error).toBe(true);
    fetched++;
  }
  return fetched;
}

const bootOf = (d: ReturnType<typeof device>, maxTrialBoots = 2, revocations?: Uint8Array) =>
  boot(d.flash, d.layout, trust, { maxTrialBoots, ...(revocations ? { revocations } : {}) });

describe('layout', () => {
  it('partitions the flash into aligned, disjoint regions', () => {
    const d = device();
    const L = d.layout;
    const regions = [...L.state, ...L.manifests, ...L.trustAreas, ...L.revocationAreas, L.progress, ...L.slots];
    for (const r of regions) {
      expect(r.offset % E).toBe(0);
      expect(r.size % E).toBe(0);
    }
    for (let i = 1; i < regions.length; i++) expect(regions[i].offset).toBe(regions[i - 1].offset + regions[i - 1].size);
    expect(L.slots[0].size).toBe(L.slots[1].size);
    expect(L.progress.size).toBeGreaterThanOrEqual(L.maxChunks * W);
    for (const r of [...L.manifests, ...L.trustAreas, ...L.revocationAreas]) expect(r.size).toBeGreaterThanOrEqual(LIMITS.maxEnvelopeBytes + 4);
    expect(regions.at(-1)!.offset + regions.at(-1)!.size).toBe(layoutBytes(E, W, SLOT));
  });
  it('rejects geometries and sizes that do not fit', () => {
    const g = { size: layoutBytes(E, W, SLOT), eraseBlockSize: E, writeAlign: W, erasedValue: 0xff };
    expect(() => createLayout({ ...g, size: g.size - E }, { slotSize: SLOT })).toThrow(RangeError);
    expect(() => createLayout(g, { slotSize: SLOT + 100 })).toThrow(RangeError);
    expect(() => createLayout({ ...g, eraseBlockSize: 3000 })).toThrow(RangeError);
    expect(() => createLayout({ ...g, writeAlign: 2 * E })).toThrow(RangeError);
    expect(createLayout(g).slots[0].size).toBeGreaterThanOrEqual(SLOT);
  });
});

describe('state store', () => {
  it('alternates copies with rising sequence numbers', () => {
    const d = device();
    expect(loadState(d.flash, d.layout)).toMatchObject({ ok: true, copy: 0, record: { sequence: 1, securityCounter: 1, activeSlot: 0 } });
    const s1 = state(d.flash, d.layout);
    expect(saveState(d.flash, d.layout, { ...s1, trialBoots: 1 }).ok).toBe(true);
    expect(loadState(d.flash, d.layout)).toMatchObject({ ok: true, copy: 1, record: { sequence: 2, trialBoots: 1 } });
    expect(saveState(d.flash, d.layout, { ...s1, trialBoots: 2 }).ok).toBe(true);
    expect(loadState(d.flash, d.layout)).toMatchObject({ ok: true, copy: 0, record: { sequence: 3, trialBoots: 2 } });
  });
  it('a corrupted newest copy loses to the other; both corrupted -> STATE_CORRUPT', () => {
    const d = device();
    const s1 = state(d.flash, d.layout);
    saveState(d.flash, d.layout, { ...s1, trialBoots: 1 }); // copy 1, sequence 2
    d.flash.flipBit(d.layout.state[1].offset + 10, 3);
    expect(loadState(d.flash, d.layout)).toMatchObject({ ok: true, copy: 0, record: { sequence: 1, trialBoots: 0 }, valid: [true, false] });
    d.flash.flipBit(d.layout.state[0].offset + 2, 0); // the CRC of copy 0
    const r = loadState(d.flash, d.layout);
    expect(r).toMatchObject({ ok: false, code: CODES.STATE_CORRUPT, error: 'STATE_CORRUPT' });
    expect(d.agent().status().code).toBe(CODES.STATE_CORRUPT);
    expect(d.agent().beginUpdate(v2).code).toBe(CODES.STATE_CORRUPT);
    expect(bootOf(d)).toMatchObject({ slot: null, code: CODES.STATE_CORRUPT });
  });
  it('a blank flash has no state until provisioned', () => {
    const geometry = { size: layoutBytes(E, W, SLOT), eraseBlockSize: E, writeAlign: W, erasedValue: 0xff };
    const flash = new SimFlash(geometry);
    expect(loadState(flash, createLayout(geometry, { slotSize: SLOT })).code).toBe(CODES.STATE_CORRUPT);
  });
  it('a cut while writing a copy leaves the previous record', () => {
    for (const plan of [{ powerCutBeforeOp: 1 }, { powerCutBeforeOp: 2 }, { tornOp: { op: 1, fraction: 0.5 } }, { tornOp: { op: 2, fraction: 0.5 } }]) {
      const d = device();
      const s1 = state(d.flash, d.layout);
      d.flash.setFaults(plan);
      expect(() => saveState(d.flash, d.layout, { ...s1, trialBoots: 5 })).toThrow(PowerCut);
      d.flash.setFaults({});
      expect(state(d.flash, d.layout)).toMatchObject({ sequence: 1, trialBoots: 0 });
    }
  });
  it('refuses to lower a monotonic field; crc32 is the IEEE one', () => {
    const d = device();
    const s1 = state(d.flash, d.layout);
    expect(saveState(d.flash, d.layout, { ...s1, securityCounter: 0 }).code).toBe(CODES.INVALID_STATE);
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });
});

describe('update agent: transitions', () => {
  it('idle -> downloading -> pending -> trial boot -> confirmed, counter raised only at confirm', () => {
    const d = device();
    const agent = d.agent();
    expect(agent.status()).toMatchObject({ ok: true, phase: 'idle' });
    expect(bootOf(d)).toMatchObject({ slot: 0, version: '1.0.0', counter: 1, code: 0 });

    const b = agent.beginUpdate(v2);
    expect(b).toMatchObject({ ok: true, resumed: false, chunks: N, missing: N });
    expect(agent.status()).toMatchObject({ phase: 'downloading', state: { securityCounter: 1 } });
    expect(agent.missingChunks()).toEqual([...Array(N).keys()]);
    expect(agent.finishDownload().code).toBe(CODES.AGENT_BAD_STATE); // chunks missing
    expect(downloadAll(agent)).toBe(N);
    expect(agent.missingChunks()).toEqual([]);
    expect(agent.writeChunk(0, chunks[0], proofs[0])).toMatchObject({ ok: true, written: false }); // idempotent

    expect(agent.finishDownload()).toMatchObject({ ok: true, slot: 1 });
    expect(agent.status()).toMatchObject({ phase: 'pending', state: { securityCounter: 1, trialBoots: 0 } });
    expect(agent.confirm().code).toBe(CODES.NOT_CONFIRMED); // not trial-booted yet
    expect(agent.beginUpdate(v2).code).toBe(CODES.AGENT_BUSY);

    const t = bootOf(d);
    expect(t).toMatchObject({ slot: 1, version: '2.0.0', trial: true, counter: 1, code: 0 });
    expect(state(d.flash, d.layout)).toMatchObject({ securityCounter: 1, trialBoots: 1, activeSlot: 0 });

    expect(agent.confirm()).toMatchObject({ ok: true, slot: 1, counter: 2 });
    const s = state(d.flash, d.layout);
    expect(s).toMatchObject({ securityCounter: 2, activeSlot: 1, trialBoots: 0 });
    expect(s.pending).toBeUndefined();
    expect(agent.confirm().code).toBe(CODES.AGENT_BAD_STATE);
    expect(bootOf(d)).toMatchObject({ slot: 1, version: '2.0.0', counter: 2, code: 0 });
    expect(bootOf(d).trial).toBeUndefined();
    // The old image is now a rollback; the installed one is refused as a no-op.
    expect(agent.beginUpdate(v1).code).toBe(CODES.ROLLBACK);
    expect(agent.beginUpdate(v2).code).toBe(CODES.AGENT_BAD_STATE);
  });

  it('verifies the manifest before writing anything', () => {
    const d = device();
    const agent = d.agent();
    const before = d.flash.snapshot();
    const wrongClass = makeManifestEnvelope(makeManifest(v2Image, { deviceClass: 'other', securityCounter: 2 }), [R1, R2]);
    const rollback = makeManifestEnvelope(makeManifest(v2Image, { securityCounter: 0 }), [R1, R2]);
    const oneSig = makeManifestEnvelope(v2Manifest, [R1]);
    const tooBig = detBytes(SLOT + 4096, 'big');
    const big = makeManifestEnvelope(makeManifest(tooBig, { securityCounter: 2 }), [R1, R2]);
    expect(agent.beginUpdate(wrongClass).code).toBe(CODES.WRONG_DEVICE_CLASS);
    expect(agent.beginUpdate(rollback).code).toBe(CODES.ROLLBACK);
    expect(agent.beginUpdate(oneSig).code).toBe(CODES.THRESHOLD_NOT_MET);
    expect(agent.beginUpdate(new Uint8Array([1, 2, 3])).ok).toBe(false);
    expect(agent.beginUpdate(big).code).toBe(CODES.SLOT_TOO_SMALL);
    expect(d.flash.operations).toBe(0);
    expect(d.flash.snapshot()).toEqual(before);
    expect(agent.writeChunk(0, chunks[0], proofs[0]).code).toBe(CODES.AGENT_BAD_STATE);
    expect(agent.finishDownload().code).toBe(CODES.AGENT_BAD_STATE);
    expect(agent.missingChunks()).toEqual([]);
  });

  it('a chunk that fails verification touches no flash and is not marked', () => {
    const d = device();
    const agent = d.agent();
    agent.beginUpdate(v2);
    downloadAllBut(agent, [3]);
    const before = d.flash.snapshot();
    const ops = d.flash.operations;
    const bad = chunks[3].slice();
    bad[100] ^= 1;
    expect(agent.writeChunk(3, bad, proofs[3])).toMatchObject({ ok: false, code: CODES.CHUNK_DIGEST_MISMATCH });
    expect(agent.writeChunk(3, chunks[3], proofs[4])).toMatchObject({ ok: false, code: CODES.CHUNK_DIGEST_MISMATCH });
    expect(agent.writeChunk(3, chunks[3], proofs[3].subarray(0, 31))).toMatchObject({ ok: false, code: CODES.PROOF_INVALID });
    expect(agent.writeChunk(N, chunks[3], proofs[3]).code).toBe(CODES.CHUNK_INDEX_OUT_OF_RANGE);
    expect(agent.writeChunk(3, chunks[3].subarray(1), proofs[3]).code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
    expect(d.flash.operations).toBe(ops);
    expect(d.flash.snapshot()).toEqual(before);
    expect(agent.missingChunks()).toEqual([3]);
    expect(agent.writeChunk(3, chunks[3], proofs[3]).ok).toBe(true);
    expect(agent.finishDownload().ok).toBe(true);
  });

  it('accepts chunks checked against a digest page it proved itself', () => {
    const d = device();
    const agent = d.agent();
    agent.beginUpdate(v2);
    const pp = pageProofs(nodeSha256, leaves);
    const { start, end } = pageLeafRange(0, N);
    const page = agent.verifyDigestPage(0, concatBytes(...leaves.slice(start, end)), concatBytes(...pp[0]));
    expect(page.ok).toBe(true);
    if (!page.ok) return;
    const bad = chunks[1].slice();
    bad[0] ^= 0xff;
    expect(agent.writeChunk(1, bad, page.digestPage).code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
    for (let i = 0; i < N; i++) expect(agent.writeChunk(i, chunks[i], page.digestPage).ok).toBe(true);
    expect(agent.finishDownload().ok).toBe(true);
    const forged = { ...page.digestPage, checkChunk: () => ({ ok: true as const, code: 0 as const, error: 'OK' as const }) };
    const d2 = device();
    const a2 = d2.agent();
    a2.beginUpdate(v2);
    expect(a2.writeChunk(0, chunks[1], forged).code).toBe(CODES.DIGEST_PAGE_MISMATCH);
    expect(a2.verifyDigestPage(0, new Uint8Array(N * 32), concatBytes(...pp[0])).code).toBe(CODES.DIGEST_PAGE_MISMATCH);
  });

  it('finishDownload catches a slot that no longer matches, clears progress, and recovers', () => {
    const d = device();
    const agent = d.agent();
    agent.beginUpdate(v2);
    downloadAll(agent);
    d.flash.flipBit(d.layout.slots[1].offset + 5 * CHUNK + 7, 2);
    expect(agent.finishDownload().code).toBe(CODES.MERKLE_ROOT_MISMATCH);
    expect(agent.status()).toMatchObject({ phase: 'downloading' });
    expect(agent.missingChunks().length).toBe(N);
    const ops = d.flash.operations;
    downloadAll(agent);
    // Only the damaged chunk is rewritten (erase + write), the rest only re-marked.
    expect(d.flash.operations - ops).toBe(N + 2);
    expect(agent.finishDownload().ok).toBe(true);
  });

  it('confirm refuses when the counter or the state sequence cannot be raised', () => {
    const d = device();
    const agent = d.agent();
    agent.beginUpdate(v2);
    downloadAll(agent);
    agent.finishDownload();
    bootOf(d);
    const s = state(d.flash, d.layout);
    const copy = loadState(d.flash, d.layout);
    const other = copy.ok && copy.copy === 0 ? 1 : 0;
    const region = d.layout.state[other];
    d.flash.erase(region.offset, region.size);
    d.flash.write(region.offset, encodeStateCopy({ ...s, sequence: LIMITS.maxCounter }, d.flash));
    expect(agent.confirm().code).toBe(CODES.COUNTER_EXHAUSTED);
    expect(state(d.flash, d.layout).securityCounter).toBe(1);
  });
});

function downloadAllBut(agent: UpdateAgent, skip: number[]): void {
  for (const i of agent.missingChunks()) if (!skip.includes(i)) expect(agent.writeChunk(i, chunks[i], proofs[i]).ok).toBe(true);
}

describe('update agent: resume across resets', () => {
  it.each([0, 1, 5, 11])('after %i chunks: a new agent fetches only the rest', (done) => {
    const d = device();
    const a = d.agent();
    a.beginUpdate(v2);
    for (let i = 0; i < done; i++) a.writeChunk(i, chunks[i], proofs[i]);
    // reset: a new agent over the same flash knows the download from the state record
    const b = d.agent();
    expect(b.status()).toMatchObject({ phase: 'downloading' });
    expect(b.missingChunks().length).toBe(N - done);
    expect(b.beginUpdate(v2)).toMatchObject({ ok: true, resumed: true, missing: N - done });
    const fetched = downloadAll(b);
    expect(fetched).toBe(N - done);
    if (done > 0) expect(fetched).toBeLessThan(N); // fewer than a restart
    expect(b.finishDownload().ok).toBe(true);
  });

  it('a power cut in the middle of writing a chunk resumes and rewrites that chunk', () => {
    for (const plan of [{ tornOp: { op: 7, fraction: 0.5 } }, { powerCutBeforeOp: 8 }, { tornOp: { op: 8, fraction: 0.5 } }]) {
      const d = device();
      const a = d.agent();
      a.beginUpdate(v2);
      d.flash.setFaults(plan); // ops 1.. are chunk writes and marks: odd = chunk data, even = mark
      expect(() => downloadAll(a)).toThrow(PowerCut);
      d.flash.setFaults({});
      const b = d.agent();
      expect(b.beginUpdate(v2)).toMatchObject({ ok: true, resumed: true });
      const missing = b.missingChunks().length;
      expect(missing).toBeLessThan(N);
      expect(missing).toBeGreaterThanOrEqual(N - 4);
      downloadAll(b);
      expect(b.finishDownload().ok).toBe(true);
    }
  });

  it('another manifest restarts the download from scratch', () => {
    const d = device();
    const a = d.agent();
    a.beginUpdate(v2);
    downloadAllBut(a, [7, 8, 9]);
    const v3Image = detBytes(20_000, 'agent v3');
    const v3 = makeManifestEnvelope(makeManifest(v3Image, { version: '3.0.0', securityCounter: 3 }), [R1, R2]);
    expect(a.beginUpdate(v3)).toMatchObject({ ok: true, resumed: false, chunks: 5, missing: 5 });
  });
});

describe('update agent: chunk buffers (padding, alignment, read-back)', () => {
  it("pads the short last chunk with erased bytes, installs it, and the caller's bytes stay untouched", () => {
    const d = device();
    const a = d.agent();
    const odd = detBytes(2 * CHUNK + 5, 'agent odd'); // last chunk: 5 bytes, written as one 8-byte word
    const env = makeManifestEnvelope(makeManifest(odd, { version: '4.0.0', securityCounter: 4 }), [R1, R2]);
    const pieces = [0, 1, 2].map((i) => odd.slice(i * CHUNK, Math.min(odd.length, (i + 1) * CHUNK)));
    const lv = pieces.map((c) => leafHash(nodeSha256, c));
    expect(a.beginUpdate(env)).toMatchObject({ ok: true, chunks: 3 });
    for (let i = 0; i < 3; i++) {
      const copy = Uint8Array.from(pieces[i]!);
      expect(a.writeChunk(i, pieces[i]!, concatBytes(...inclusionProof(nodeSha256, lv, i))).ok).toBe(true);
      expect(pieces[i]).toEqual(copy);
    }
    const slot = d.layout.slots[state(d.flash, d.layout).activeSlot === 0 ? 1 : 0];
    expect(d.flash.read(slot.offset + 2 * CHUNK, 8)).toEqual(Uint8Array.from([...odd.subarray(2 * CHUNK), 0xff, 0xff, 0xff]));
    expect(a.finishDownload().ok).toBe(true);
    expect(bootOf(d)).toMatchObject({ slot: 1, trial: true, code: 0 });
    expect(d.agent().confirm()).toMatchObject({ ok: true, counter: 4 });
  });

  it('chunks that are views at odd offsets of one reused receive buffer land intact', () => {
    const d = device();
    const a = d.agent();
    expect(a.beginUpdate(v2).ok).toBe(true);
    for (const offset of [1, 2, 3]) {
      const rx = new Uint8Array(CHUNK + 8); // one buffer for every "message", as a transport reuses it
      for (let i = offset - 1; i < N; i += 3) {
        rx.fill(0xee);
        rx.set(chunks[i]!, offset);
        const view = rx.subarray(offset, offset + chunks[i]!.length);
        const w = a.writeChunk(i, view, proofs[i]!);
        expect(w.ok, w.error).toBe(true);
      }
    }
    const slot = d.layout.slots[state(d.flash, d.layout).activeSlot === 0 ? 1 : 0];
    expect(d.flash.read(slot.offset, v2Image.length)).toEqual(v2Image);
    expect(a.finishDownload().ok).toBe(true);
  });

  it('a write that lands wrong is caught by the read-back (FLASH_READBACK_MISMATCH), aligned or not', () => {
    for (const [offset, at] of [
      [0, 0],
      [3, 0],
      [0, CHUNK - 1],
      [1, CHUNK - 1],
      [2, 1234],
    ] as const) {
      const d = device();
      const a = new UpdateAgent({ flash: d.flash, layout: d.layout, trust });
      expect(a.beginUpdate(v2).ok).toBe(true);
      // A flash that gets one bit of the next whole-chunk write wrong (a weak cell).
      const write = d.flash.write.bind(d.flash);
      let armed = true;
      d.flash.write = (o: number, data: Uint8Array) => {
        if (!armed || data.length !== CHUNK) return write(o, data);
        armed = false;
        const bad = Uint8Array.from(data);
        bad[at] = bad[at]! ^ 0x01;
        return write(o, bad);
      };
      const rx = new Uint8Array(CHUNK + 4);
      rx.set(chunks[0]!, offset);
      const w = a.writeChunk(0, rx.subarray(offset, offset + CHUNK), proofs[0]!);
      expect(w.ok).toBe(false);
      expect(w.code).toBe(CODES.FLASH_READBACK_MISMATCH);
      expect(a.missingChunks()).toContain(0); // not marked written
    }
  });
});

describe('boot agent', () => {
  it('reverts a pending image never confirmed after maxTrialBoots (NOT_CONFIRMED)', () => {
    const d = device();
    const a = d.agent();
    a.beginUpdate(v2);
    downloadAll(a);
    a.finishDownload();
    expect(bootOf(d, 2)).toMatchObject({ slot: 1, trial: true, code: 0 });
    expect(bootOf(d, 2)).toMatchObject({ slot: 1, trial: true, code: 0 });
    const r = bootOf(d, 2);
    expect(r).toMatchObject({ slot: 0, version: '1.0.0', reverted: true, counter: 1, code: CODES.NOT_CONFIRMED, error: 'NOT_CONFIRMED' });
    const s = state(d.flash, d.layout);
    expect(s).toMatchObject({ securityCounter: 1, activeSlot: 0, trialBoots: 0, lastError: CODES.NOT_CONFIRMED });
    expect(s.pending).toBeUndefined();
    expect(a.confirm().code).toBe(CODES.AGENT_BAD_STATE);
    expect(bootOf(d, 2)).toMatchObject({ slot: 0, code: 0 });
    // The update can be tried again.
    expect(a.beginUpdate(v2)).toMatchObject({ ok: true, resumed: false });
  });

  it('reverts a pending image that fails verification (BOOT_IMAGE_INVALID)', () => {
    const d = device();
    const a = d.agent();
    a.beginUpdate(v2);
    downloadAll(a);
    a.finishDownload();
    d.flash.flipBit(d.layout.slots[1].offset + 12345, 5);
    expect(bootOf(d)).toMatchObject({ slot: 0, version: '1.0.0', reverted: true, code: CODES.BOOT_IMAGE_INVALID });
    expect(state(d.flash, d.layout)).toMatchObject({ lastError: CODES.BOOT_IMAGE_INVALID, securityCounter: 1 });
  });

  it('never boots an active image that does not verify', () => {
    const d = device();
    d.flash.flipBit(d.layout.slots[0].offset + 999, 0);
    expect(bootOf(d)).toMatchObject({ slot: null, code: CODES.BOOT_IMAGE_INVALID });
    const d2 = device();
    d2.flash.flipBit(d2.layout.manifests[0].offset + 40, 1);
    expect(bootOf(d2)).toMatchObject({ slot: null, code: CODES.BOOT_IMAGE_INVALID });
  });

  it('re-verifies the installed image against the current revocations (a revoked signer: still booted, flagged; SPEC.md §11.4)', () => {
    const d = device();
    const rev = makeRevocations({ version: 1, keyIds: [keyId(R1.publicKey)], signers: [A, B] });
    expect(bootOf(d, 2, rev)).toMatchObject({ slot: 0, code: 0, revokedSigners: true });
    const unrelated = makeRevocations({ version: 1, keyIds: [keyId(world.R3.publicKey)], signers: [A, B] });
    expect(bootOf(d, 2, unrelated)).toMatchObject({ slot: 0, code: 0 });
    expect(bootOf(d, 2, unrelated).revokedSigners).toBeUndefined();
    const agent = new UpdateAgent({ flash: d.flash, layout: d.layout, trust, revocations: rev });
    expect(agent.beginUpdate(v2).code).toBe(CODES.REVOKED_KEY);
  });
});

describe('stored trust bundle and revocation list', () => {
  const { C, R3 } = world;
  const [N1, N2] = ['N1', 'N2'].map(detKey);
  const [D, F] = ['D', 'F'].map(detKey);
  // Version 2: the same roots, new release keys N1 and N2 added.
  const trust2 = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2, N1, N2], releaseThreshold: 2, signers: [A, B], version: 2 });
  const newOnly = makeManifestEnvelope(v2Manifest, [N1, N2]);
  const sameKeys = (flash: SimFlash, layout: Layout) => state(flash, layout);

  it('provision stores the factory trust bundle (and list) on flash; the state names it', () => {
    const d = device();
    const s = state(d.flash, d.layout);
    expect(s).toMatchObject({ trustVersion: 1, trustArea: 0, revocationVersion: 0 });
    expect(s.trustDigest).toEqual(sha256(trust));
    expect(s.revocationArea).toBeUndefined();
    const stored = d.flash.read(d.layout.trustAreas[0].offset + 4, trust.length);
    expect(stored).toEqual(trust);
  });

  it('a rotation is stored and used: a manifest signed by new release keys verifies only after updateTrust', () => {
    const d = device();
    expect(d.agent().beginUpdate(newOnly).code).toBe(CODES.THRESHOLD_NOT_MET);
    expect(d.agent().updateTrust(trust2)).toMatchObject({ ok: true, version: 2, changed: true });
    const s = state(d.flash, d.layout);
    expect(s).toMatchObject({ trustVersion: 2, trustArea: 1 });
    expect(s.trustDigest).toEqual(sha256(trust2));
    expect(d.agent().updateTrust(trust2)).toMatchObject({ ok: true, version: 2, changed: false });
    // A new agent configured with the factory bundle uses the stored one.
    const agent = d.agent();
    expect(agent.beginUpdate(newOnly)).toMatchObject({ ok: true, resumed: false });
    downloadAll(agent);
    expect(agent.finishDownload().ok).toBe(true);
    expect(bootOf(d)).toMatchObject({ slot: 1, trial: true, code: 0 });
    expect(agent.confirm()).toMatchObject({ ok: true, counter: 2 });
    expect(bootOf(d)).toMatchObject({ slot: 1, version: '2.0.0', code: 0 });
    expect(state(d.flash, d.layout)).toMatchObject({ trustVersion: 2, securityCounter: 2 });
  });

  it('an older, equal-but-different, skipped or unauthorized bundle is refused and the stored one unchanged', () => {
    const d = device();
    expect(d.agent().updateTrust(trust2).ok).toBe(true);
    const before = d.flash.snapshot();
    const s0 = sameKeys(d.flash, d.layout);
    d.flash.setFaults({});
    const agent = d.agent();
    expect(agent.updateTrust(trust).code).toBe(CODES.TRUST_ROLLBACK);
    const other2 = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [N1, N2], releaseThreshold: 2, signers: [A, B], version: 2 });
    expect(agent.updateTrust(other2).code).toBe(CODES.TRUST_ROLLBACK);
    const skip = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [N1, N2], releaseThreshold: 2, signers: [A, B], version: 4 });
    expect(agent.updateTrust(skip).code).toBe(CODES.TRUST_VERSION_SKIP);
    // Version 3 signed only by new root keys (its own threshold, not the current one).
    const hijack = makeTrust({ root: [D, F], rootThreshold: 2, release: [N1, N2], releaseThreshold: 2, signers: [D, F], version: 3 });
    expect(agent.updateTrust(hijack).code).toBe(CODES.ROTATION_NOT_AUTHORIZED);
    expect(agent.updateTrust(new Uint8Array([1, 2, 3])).ok).toBe(false);
    expect(d.flash.operations).toBe(0);
    expect(d.flash.snapshot()).toEqual(before);
    expect(state(d.flash, d.layout)).toEqual(s0);
  });

  it('root keys revoked by the stored list do not count towards a rotation', () => {
    const d = device();
    const rl = makeRevocations({ version: 1, keyIds: [keyId(A.publicKey)], signers: [B, C] });
    expect(d.agent().updateRevocations(rl)).toMatchObject({ ok: true, version: 1, changed: true });
    const byAB = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2, N1, N2], releaseThreshold: 2, signers: [A, B], version: 2 });
    expect(d.agent().updateTrust(byAB).code).toBe(CODES.ROTATION_NOT_AUTHORIZED);
    const byBC = makeTrust({ root: [B, C, D], rootThreshold: 2, release: [R1, R2, N1, N2], releaseThreshold: 2, signers: [B, C, D], version: 2 });
    expect(d.agent().updateTrust(byBC)).toMatchObject({ ok: true, version: 2 });
  });

  it('a rotation whose root keys do not sign the stored list needs a new list with it', () => {
    const d = device();
    const rl = makeRevocations({ version: 1, keyIds: [keyId(R3.publicKey)], signers: [A, B] });
    expect(d.agent().updateRevocations(rl).ok).toBe(true);
    // New roots D, F (rotation signed by the current A, B and by D, F).
    const rotated = makeTrust({ root: [D, F], rootThreshold: 2, release: [R1, R2, R3], releaseThreshold: 2, signers: [A, B, D, F], version: 2 });
    expect(d.agent().updateTrust(rotated).code).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
    expect(state(d.flash, d.layout)).toMatchObject({ trustVersion: 1, revocationVersion: 1 });
    const old = makeRevocations({ version: 1, keyIds: [], signers: [D, F] });
    const rl2 = makeRevocations({ version: 2, keyIds: [keyId(R3.publicKey)], signers: [D, F] });
    expect(d.agent().updateTrust(rotated, makeRevocations({ version: 2, keyIds: [], signers: [A, B] })).code).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
    expect(d.agent().updateTrust(rotated, old).code).toBe(CODES.REVOCATION_ROLLBACK); // same version 1, another list
    expect(state(d.flash, d.layout)).toMatchObject({ trustVersion: 1, revocationVersion: 1 });
    const d2 = device();
    expect(d2.agent().updateRevocations(rl).ok).toBe(true);
    expect(d2.agent().updateTrust(rotated, rl2)).toMatchObject({ ok: true, version: 2, changed: true });
    expect(state(d2.flash, d2.layout)).toMatchObject({ trustVersion: 2, revocationVersion: 2 });
    expect(bootOf(d2)).toMatchObject({ slot: 0, code: 0 });
    expect(d2.agent().beginUpdate(makeManifestEnvelope(v2Manifest, [R1, R3])).code).toBe(CODES.REVOKED_KEY);
  });

  it('a revocation list is stored and used; older or same-version-different lists are refused', () => {
    const d = device();
    const rl2 = makeRevocations({ version: 2, keyIds: [keyId(R3.publicKey)], signers: [A, B] });
    expect(d.agent().updateRevocations(rl2)).toMatchObject({ ok: true, version: 2, changed: true });
    expect(state(d.flash, d.layout)).toMatchObject({ revocationVersion: 2, revocationArea: 0 });
    expect(d.agent().updateRevocations(rl2)).toMatchObject({ ok: true, changed: false });
    const before = d.flash.snapshot();
    d.flash.setFaults({});
    expect(d.agent().updateRevocations(makeRevocations({ version: 1, signers: [A, B] })).code).toBe(CODES.REVOCATION_ROLLBACK);
    expect(d.agent().updateRevocations(makeRevocations({ version: 2, signers: [A, B] })).code).toBe(CODES.REVOCATION_ROLLBACK);
    expect(d.agent().updateRevocations(makeRevocations({ version: 3, signers: [R1, R2] })).code).toBe(CODES.REVOCATION_THRESHOLD_NOT_MET);
    expect(d.flash.operations).toBe(0);
    expect(d.flash.snapshot()).toEqual(before);
    // The stored list applies although the agent and the boot agent are given none.
    expect(d.agent().beginUpdate(makeManifestEnvelope(v2Manifest, [R1, R3])).code).toBe(CODES.REVOKED_KEY);
    expect(bootOf(d)).toMatchObject({ slot: 0, code: 0 });
    // Revoke R2: a manifest signed with it is refused before any write; the installed image (signed
    // by R1 + R2) keeps booting, flagged, until an update replaces it (SPEC.md §11.4 "Policy after a
    // revocation"; test/boot-policy.test.ts).
    const rl3 = makeRevocations({ version: 3, keyIds: [keyId(R3.publicKey), keyId(R2.publicKey)], signers: [A, B] });
    expect(d.agent().updateRevocations(rl3)).toMatchObject({ ok: true, version: 3 });
    expect(state(d.flash, d.layout)).toMatchObject({ revocationVersion: 3, revocationArea: 1 });
    d.flash.setFaults({});
    expect(d.agent().beginUpdate(v2).code).toBe(CODES.REVOKED_KEY);
    expect(d.flash.operations).toBe(0);
    expect(bootOf(d)).toMatchObject({ slot: 0, code: 0, revokedSigners: true });
    // An older list passed as the factory value is ignored once one is stored (under rl2 nothing the image's signers would be revoked).
    expect(boot(d.flash, d.layout, trust, { maxTrialBoots: 2, revocations: rl2 })).toMatchObject({ slot: 0, code: 0, revokedSigners: true });
  });

  it('a damaged stored bundle or list fails closed (STATE_CORRUPT), never falls back', () => {
    const d = device();
    d.flash.flipBit(d.layout.trustAreas[0].offset + 50, 4);
    expect(bootOf(d)).toMatchObject({ slot: null, code: CODES.STATE_CORRUPT });
    expect(d.agent().beginUpdate(v2).code).toBe(CODES.STATE_CORRUPT);
    const d2 = device();
    const rl = makeRevocations({ version: 1, keyIds: [keyId(R3.publicKey)], signers: [A, B] });
    expect(d2.agent().updateRevocations(rl).ok).toBe(true);
    d2.flash.flipBit(d2.layout.revocationAreas[0].offset + 20, 0);
    expect(bootOf(d2)).toMatchObject({ slot: null, code: CODES.STATE_CORRUPT });
    expect(d2.agent().updateRevocations(rl).code).toBe(CODES.STATE_CORRUPT);
  });

  /** Every cut and tear during one update operation leaves the old or the new envelope, valid, in force. */
  function sweepOne(
    apply: (a: UpdateAgent) => unknown,
    oldDigest: Uint8Array | undefined,
    newDigest: Uint8Array,
    pick: (s: ReturnType<typeof state>) => Uint8Array | undefined,
    prepare?: (d: ReturnType<typeof device>) => void,
  ) {
    const base = device();
    prepare?.(base);
    const start = base.flash.snapshot();
    const geometry = { size: start.length, eraseBlockSize: E, writeAlign: W, erasedValue: 0xff };
    const measure = new SimFlash(geometry, {}, start);
    const agentOn = (flash: SimFlash) => new UpdateAgent({ flash, layout: base.layout, trust });
    apply(agentOn(measure));
    expect(pick(state(measure, base.layout))).toEqual(newDigest);
    const ops = measure.operations;
    expect(ops).toBeGreaterThanOrEqual(4);
    const seen = { old: 0, new: 0 };
    for (let k = 1; k <= ops; k++) {
      for (const plan of [{ powerCutBeforeOp: k }, { tornOp: { op: k, fraction: 0.5 } }]) {
        const flash = new SimFlash(geometry, plan, start);
        expect(() => apply(agentOn(flash))).toThrow(PowerCut);
        flash.setFaults({});
        const digest = pick(state(flash, base.layout));
        const isNew = digest !== undefined && bytesEq(digest, newDigest);
        expect(isNew || (oldDigest === undefined ? digest === undefined : digest !== undefined && bytesEq(digest, oldDigest))).toBe(true);
        seen[isNew ? 'new' : 'old']++;
        expect(boot(flash, base.layout, trust, { maxTrialBoots: 2 })).toMatchObject({ slot: 0, code: 0 });
        const again = apply(agentOn(flash)) as { ok: boolean; error?: string };
        expect(again.ok, again.error).toBe(true);
        expect(pick(state(flash, base.layout))).toEqual(newDigest);
        expect(boot(flash, base.layout, trust, { maxTrialBoots: 2 })).toMatchObject({ slot: 0, code: 0 });
      }
    }
    expect(seen.old).toBeGreaterThan(0);
  }
  const bytesEq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

  it('a power cut or tear at every flash operation of updateTrust leaves the old or the new bundle', () => {
    sweepOne(
      (a) => a.updateTrust(trust2),
      sha256(trust),
      sha256(trust2),
      (s) => s.trustDigest,
    );
  });

  it('a power cut or tear at every flash operation of a rotation stored with its list leaves the old pair or the new pair', () => {
    // The path a device walking the trust chain takes when the new root keys do not sign its list (SPEC.md §12.13).
    const rl1 = makeRevocations({ version: 1, keyIds: [keyId(R3.publicKey)], signers: [A, B] });
    const rotated = makeTrust({ root: [D, F], rootThreshold: 2, release: [R1, R2, R3], releaseThreshold: 2, signers: [A, B, D, F], version: 2 });
    const rl2 = makeRevocations({ version: 2, keyIds: [keyId(R3.publicKey)], signers: [D, F] });
    const pair = (s: ReturnType<typeof state>) => (s.trustDigest && s.revocationDigest ? concatBytes(s.trustDigest, s.revocationDigest) : undefined);
    sweepOne(
      (a) => a.updateTrust(rotated, rl2),
      concatBytes(sha256(trust), sha256(rl1)),
      concatBytes(sha256(rotated), sha256(rl2)),
      pair,
      (d) => {
        expect(d.agent().updateRevocations(rl1).ok).toBe(true);
      },
    );
  });

  it('a power cut or tear at every flash operation of updateRevocations leaves the old or the new list', () => {
    const rl1 = makeRevocations({ version: 1, keyIds: [keyId(R3.publicKey)], signers: [A, B] });
    const rl2 = makeRevocations({ version: 2, keyIds: [keyId(R3.publicKey)], signers: [A, B] });
    sweepOne(
      (a) => a.updateRevocations(rl1),
      undefined,
      sha256(rl1),
      (s) => s.revocationDigest,
    );
    sweepOne(
      (a) => a.updateRevocations(rl2),
      sha256(rl1),
      sha256(rl2),
      (s) => s.revocationDigest,
      (d) => {
        expect(d.agent().updateRevocations(rl1).ok).toBe(true);
      },
    );
  });
});

describe('flash faults', () => {
  const blockOf = (offset: number) => offset / E;

  it('a bad block in the inactive slot: beginUpdate fails with FLASH_ERASE_FAILED, the old image boots', () => {
    const d = device();
    d.flash.setFaults({ badBlocks: [blockOf(d.layout.slots[1].offset) + 2] });
    expect(d.agent().beginUpdate(v2).code).toBe(CODES.FLASH_ERASE_FAILED);
    expect(d.agent().status()).toMatchObject({ phase: 'idle' });
    expect(bootOf(d)).toMatchObject({ slot: 0, version: '1.0.0', code: 0 });
  });

  it('a block going bad during the download: writeChunk fails with FLASH_WRITE_FAILED, the old image boots', () => {
    const d = device();
    const agent = d.agent();
    expect(agent.beginUpdate(v2).ok).toBe(true);
    d.flash.setFaults({ badBlocks: [blockOf(d.layout.slots[1].offset) + 2] });
    expect(agent.writeChunk(1, chunks[1], proofs[1]).ok).toBe(true);
    expect(agent.writeChunk(2, chunks[2], proofs[2]).code).toBe(CODES.FLASH_WRITE_FAILED);
    expect(agent.missingChunks()).toContain(2);
    expect(bootOf(d)).toMatchObject({ slot: 0, version: '1.0.0', code: 0 });
    expect(agent.finishDownload().code).toBe(CODES.AGENT_BAD_STATE);
    expect(bootOf(d)).toMatchObject({ slot: 0, version: '1.0.0', code: 0 });
  });

  it('a bit flip in the inactive slot after finishDownload: the pending image is refused, the old one boots', () => {
    const d = device();
    const agent = d.agent();
    agent.beginUpdate(v2);
    downloadAll(agent);
    expect(agent.finishDownload().ok).toBe(true);
    d.flash.flipBit(d.layout.slots[1].offset + 3 * CHUNK + 1, 7);
    expect(bootOf(d)).toMatchObject({ slot: 0, version: '1.0.0', reverted: true, code: CODES.BOOT_IMAGE_INVALID });
    expect(bootOf(d)).toMatchObject({ slot: 0, version: '1.0.0', code: 0 });
    expect(agent.confirm().code).toBe(CODES.AGENT_BAD_STATE);
  });

  it('a bit flip in one state copy: the other copy wins', () => {
    const d = device();
    const agent = d.agent();
    agent.beginUpdate(v2); // state copy 1 (sequence 2) says downloading
    const newest = loadState(d.flash, d.layout);
    expect(newest).toMatchObject({ ok: true, copy: 1 });
    d.flash.flipBit(d.layout.state[1].offset + 12, 1);
    expect(loadState(d.flash, d.layout)).toMatchObject({ ok: true, copy: 0, valid: [true, false], record: { sequence: 1 } });
    expect(agent.status()).toMatchObject({ phase: 'idle' });
    expect(bootOf(d)).toMatchObject({ slot: 0, code: 0 });
    // The older copy of a pair: flipping it does not matter either.
    const d2 = device();
    d2.agent().beginUpdate(v2);
    d2.flash.flipBit(d2.layout.state[0].offset + 12, 1);
    expect(loadState(d2.flash, d2.layout)).toMatchObject({ ok: true, copy: 1, valid: [false, true] });
    expect(d2.agent().status()).toMatchObject({ phase: 'downloading' });
  });
});
