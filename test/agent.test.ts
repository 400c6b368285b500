/**
 * The update agent, the boot agent and the power-fail-safe state store (SPEC.md §11) over SimFlash.
 */
import { describe, expect, it } from 'vitest';
import { concatBytes } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { LIMITS } from '../shared/limits.js';
import { inclusionProof, leafHash, pageLeafRange, pageProofs } from '../shared/merkle.js';
import { UpdateAgent, provision } from '../device/agent/agent.js';
import { boot } from '../device/agent/boot.js';
import { PowerCut } from '../device/agent/flash.js';
import { type Layout, createLayout, layoutBytes } from '../device/agent/layout.js';
import { crc32, encodeStateCopy, loadState, saveState } from '../device/agent/state-store.js';
import { SimFlash } from '../device/sim/flash.js';
import { keyId } from '../device/index.js';
import { nodeSha256 } from '../host/hash.js';
import { detBytes, makeManifest, makeManifestEnvelope, makeRevocations, standardWorld } from './support/fixtures.js';

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
    const regions = [...L.state, ...L.manifests, L.progress, ...L.slots];
    for (const r of regions) {
      expect(r.offset % E).toBe(0);
      expect(r.size % E).toBe(0);
    }
    for (let i = 1; i < regions.length; i++) expect(regions[i].offset).toBe(regions[i - 1].offset + regions[i - 1].size);
    expect(L.slots[0].size).toBe(L.slots[1].size);
    expect(L.progress.size).toBeGreaterThanOrEqual(L.maxChunks * W);
    expect(L.manifests[0].size).toBeGreaterThanOrEqual(LIMITS.maxEnvelopeBytes + 4);
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

  it('re-verifies the installed image against the current revocations', () => {
    const d = device();
    const rev = makeRevocations({ version: 1, keyIds: [keyId(R1.publicKey)], signers: [A, B] });
    expect(bootOf(d, 2, rev)).toMatchObject({ slot: null, code: CODES.BOOT_IMAGE_INVALID });
    const unrelated = makeRevocations({ version: 1, keyIds: [keyId(world.R3.publicKey)], signers: [A, B] });
    expect(bootOf(d, 2, unrelated)).toMatchObject({ slot: 0, code: 0 });
    const agent = new UpdateAgent({ flash: d.flash, layout: d.layout, trust, revocations: rev });
    expect(agent.beginUpdate(v2).code).toBe(CODES.REVOKED_KEY);
  });
});
