/**
 * The power-cut sweep (SPEC.md §11.5): a 64 KB update with a power cut before, and a tear in the
 * middle of, every flash operation; the device must always boot a verified image, never regress its
 * counter, and be able to finish the update. Under a log policy (SPEC.md §16) also: the stored
 * checkpoint is always the old or the new one, whole, and a rolled-back checkpoint stays refused.
 */
import { describe, expect, it } from 'vitest';
import { powercutSweep } from '../device/agent/sweep.js';
import { parseLogProof } from '../shared/log-proof.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { logWorld, openLog } from './support/tlog-device-world.js';

describe('power-cut sweep', () => {
  it('64 KB image, every k, cut and torn: zero violations', () => {
    const w = standardWorld();
    const oldImage = detBytes(65536, 'sweep v1');
    const newImage = detBytes(65536, 'sweep v2');
    const report = powercutSweep({
      trust: w.trust,
      deviceClass: 'acme-gw',
      old: { envelope: makeManifestEnvelope(makeManifest(oldImage, { version: '1.0.0', securityCounter: 1 }), [w.R1, w.R2]), image: oldImage },
      next: { envelope: makeManifestEnvelope(makeManifest(newImage, { version: '2.0.0', securityCounter: 2 }), [w.R1, w.R2]), image: newImage },
      eraseBlockSize: 4096,
      writeAlign: 8,
    });
    expect(report.violations).toEqual([]);
    expect(report.operations).toBeGreaterThan(16 * 2); // at least a write and a mark per chunk
    expect(report.runs).toBe(2 * report.operations);
    const o = (k: string): number => report.outcomes[k] ?? 0;
    expect(o('bootedOld') + o('trialNew') + o('bootedNew')).toBe(report.runs);
    expect(o('resumedDownload') + o('restartedDownload')).toBe(o('bootedOld'));
    expect(o('completed')).toBe(report.runs);
    expect(o('resumedDownload')).toBeGreaterThan(0);
    expect(o('trialNew')).toBeGreaterThan(0);
  }, 60_000);

  it('under a log policy: 16 KB image, every k, cut and torn: old or new checkpoint, never a mix; a stale one refused after recovery', async () => {
    const L = logWorld('sweep');
    const { R1, R2 } = L.w;
    const oldImage = detBytes(16384, 'log sweep v1');
    const newImage = detBytes(16384, 'log sweep v2');
    const old = { envelope: makeManifestEnvelope(makeManifest(oldImage, { version: '1.0.0', securityCounter: 1 }), [R1, R2]), image: oldImage };
    const next = { envelope: makeManifestEnvelope(makeManifest(newImage, { version: '2.0.0', securityCounter: 2 }), [R1, R2]), image: newImage };
    const staleImage = detBytes(4096, 'log sweep stale');
    const stale = { envelope: makeManifestEnvelope(makeManifest(staleImage, { version: '3.0.0', securityCounter: 5 }), [R1, R2]), image: staleImage };
    const log = openLog(L.logKey);
    try {
      log.append(stale.envelope);
      log.checkpoint();
      log.cosign(L.witnesses.slice(0, 2));
      const staleProof = await log.prove(stale.envelope);
      const first = parseLogProof(staleProof);
      if (!first.ok) throw new Error(first.error);
      log.append(next.envelope);
      log.checkpoint();
      log.cosign(L.witnesses.slice(1));
      const report = powercutSweep({
        trust: L.trust,
        deviceClass: 'acme-gw',
        old,
        next,
        log: { proof: await log.prove(next.envelope, 1), stored: { size: first.value.size, root: first.value.root }, stale: { ...stale, proof: staleProof } },
      });
      expect(report.violations).toEqual([]);
      expect(report.runs).toBe(2 * report.operations);
      expect(report.outcomes.completed).toBe(report.runs);
      expect(report.outcomes.bootedOld).toBeGreaterThan(0);
    } finally {
      log.close();
    }
  }, 60_000);
});
