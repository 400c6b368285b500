/** The download driver over an injected Transport and Clock (SPEC.md §11.6). */
import { describe, expect, it } from 'vitest';
import { driveDownload, type Transport } from '../device/agent/driver.js';
import { PowerCut } from '../device/agent/flash.js';
import { concatBytes } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { pageLeafRange } from '../shared/merkle.js';
import { agentWorld } from './support/agent-world.js';

// 600 chunks of 512 bytes: 5 digest pages.
const { v2, v2Image, leaves, proofs, device } = agentWorld('driver', 600);

/** A transport over the v2 image; `corrupt(index, attempt)` may return bad bytes (a rogue publisher). */
function transport(corrupt?: (index: number, attempt: number) => boolean, log: number[] = []): Transport {
  const attempts = new Map<number, number>();
  return {
    fetchDigestPage(page) {
      const { start, end } = pageLeafRange(page, leaves.length);
      return { leaves: concatBytes(...leaves.slice(start, end)), proof: concatBytes(...proofs[page]) };
    },
    fetchChunk(index) {
      const n = (attempts.get(index) ?? 0) + 1;
      attempts.set(index, n);
      log.push(index);
      const bytes = v2Image.slice(index * 512, (index + 1) * 512);
      if (corrupt?.(index, n)) bytes[7] ^= 0x80;
      return bytes;
    },
  };
}

describe('driveDownload', () => {
  it('downloads through digest pages and finishes', () => {
    const d = device();
    const agent = d.agent();
    expect(agent.beginUpdate(v2).ok).toBe(true);
    const r = driveDownload(agent, transport());
    expect(r.ok && r.fetchedChunks).toBe(600);
    expect(r.ok && r.fetchedPages).toBe(5);
    expect(agent.finishDownload().ok).toBe(true);
  });

  it('rejects a tampered chunk from a rogue publisher and fetches it again', () => {
    const d = device();
    const agent = d.agent();
    agent.beginUpdate(v2);
    const r = driveDownload(
      agent,
      transport((i, n) => i === 321 && n === 1),
    );
    expect(r.ok && r.rejected).toBe(1);
    expect(r.ok && r.fetchedChunks).toBe(601);
    expect(agent.finishDownload().ok).toBe(true);
  });

  it('gives up with the verification code when every attempt is tampered, leaving the chunk unwritten', () => {
    const d = device();
    const agent = d.agent();
    agent.beginUpdate(v2);
    const r = driveDownload(
      agent,
      transport((i) => i === 10),
      { retries: 2 },
    );
    expect(r.code).toBe(CODES.CHUNK_DIGEST_MISMATCH);
    expect(agent.missingChunks()).toContain(10);
  });

  it('reports TRANSPORT_UNAVAILABLE when nothing arrives, and TRANSPORT_TIMEOUT past its budget on a fake clock', () => {
    const d = device();
    const agent = d.agent();
    agent.beginUpdate(v2);
    const silent: Transport = { fetchDigestPage: () => null, fetchChunk: () => null };
    expect(driveDownload(agent, silent).code).toBe(CODES.TRANSPORT_UNAVAILABLE);
    let now = 0;
    const slow: Transport = {
      ...transport(),
      fetchChunk: (i) => {
        now += 1000;
        return v2Image.slice(i * 512, (i + 1) * 512);
      },
    };
    expect(driveDownload(agent, slow, { clock: { now: () => now }, budgetMs: 10_000 }).code).toBe(CODES.TRANSPORT_TIMEOUT);
  });

  it('resumes after a reset: fetches fewer chunks than a restart would', () => {
    const d = device();
    d.agent().beginUpdate(v2);
    d.flash.setFaults({ powerCutBeforeOp: 500 });
    expect(() => driveDownload(d.agent(), transport())).toThrow(PowerCut);
    d.flash.setFaults({});
    const agent = d.agent(); // a reset: a new agent over the same flash
    expect(agent.beginUpdate(v2).ok).toBe(true);
    const log: number[] = [];
    const r = driveDownload(agent, transport(undefined, log));
    expect(r.ok).toBe(true);
    expect(log.length).toBeGreaterThan(0);
    expect(log.length).toBeLessThan(600);
    expect(agent.finishDownload().ok).toBe(true);
  });
});
