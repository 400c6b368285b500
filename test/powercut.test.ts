/**
 * The power-cut sweep (SPEC.md §11.5): a 64 KB update with a power cut before, and a tear in the
 * middle of, every flash operation; the device must always boot a verified image, never regress its
 * counter, and be able to finish the update.
 */
import { describe, expect, it } from 'vitest';
import { powercutSweep } from '../device/agent/sweep.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';

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
});
