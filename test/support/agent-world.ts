/**
 * A provisioned simulated device (factory image v1 confirmed) and an update v2 in 512-byte chunks,
 * with its leaf digests and page proofs: the common ground of the download-driver tests.
 */
import { expect } from 'vitest';
import { UpdateAgent } from '../../device/agent/agent.js';
import { createLayout, layoutBytes } from '../../device/agent/layout.js';
import { provision } from '../../device/agent/provision.js';
import { SimFlash } from '../../device/sim/flash.js';
import { nodeSha256 } from '../../host/hash.js';
import { pageProofs } from '../../shared/merkle.js';
import { detBytes, imageTree, makeManifest, makeManifestEnvelope, standardWorld } from './fixtures.js';

const E = 4096;
const SLOT = 512 * 1024;

export function agentWorld(label: string, chunks: number) {
  const w = standardWorld();
  const v1Image = detBytes(20_000, `${label} v1`);
  const v1 = makeManifestEnvelope(makeManifest(v1Image, { version: '1.0.0', securityCounter: 1 }), [w.R1, w.R2]);
  const v2Image = detBytes(chunks * 512, `${label} v2`);
  const v2 = makeManifestEnvelope(makeManifest(v2Image, { version: '2.0.0', securityCounter: 2, chunkSize: 512 }), [w.R1, w.R2]);
  const { leaves } = imageTree(v2Image, 512);
  const proofs = pageProofs(nodeSha256, leaves);
  function device() {
    const geometry = { size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
    const layout = createLayout(geometry, { slotSize: SLOT });
    const flash = new SimFlash(geometry);
    expect(provision(flash, layout, { deviceClass: 'acme-gw', trust: w.trust, envelope: v1, image: v1Image }).ok).toBe(true);
    return { flash, agent: () => new UpdateAgent({ flash, layout, trust: w.trust }) };
  }
  return { w, v2, v2Image, leaves, proofs, device };
}
