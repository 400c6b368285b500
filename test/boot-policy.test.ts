/**
 * The boot agent's policy after a revocation (SPEC.md §11.4): the active, confirmed image survives
 * the revocation of a key that signed it (flagged `revokedSigners`, still checked byte for byte, by
 * manifest digest, class and counter); a revoked manifest never boots; a pending image gets no grace.
 * And the agent's re-check of the download in progress under the stored objects (§12.13 step 4).
 */
import { describe, expect, it } from 'vitest';
import { UpdateAgent } from '../device/agent/agent.js';
import { boot } from '../device/agent/boot.js';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { loadState, saveState } from '../device/agent/state-store.js';
import { keyId } from '../device/index.js';
import { SimFlash } from '../device/sim/flash.js';
import { nodeSha256 } from '../host/hash.js';
import { concatBytes } from '../shared/bytes.js';
import { CODES } from '../shared/codes.js';
import { parseEnvelope } from '../shared/cose.js';
import { inclusionProof, leafHash } from '../shared/merkle.js';
import { detBytes, makeManifest, makeManifestEnvelope, makeRevocations, standardWorld } from './support/fixtures.js';

const E = 4096;
const SLOT = 64 * 1024;
const { trust, A, B, R1, R2, R3 } = standardWorld();
const v1Image = detBytes(30_000, 'policy v1');
const v1 = makeManifestEnvelope(makeManifest(v1Image, { version: '1.0.0', securityCounter: 1 }), [R1, R2]);
const v2Image = detBytes(20_000, 'policy v2');
const v2Manifest = makeManifest(v2Image, { version: '2.0.0', securityCounter: 2 });

function device() {
  const geometry = { size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
  const layout = createLayout(geometry, { slotSize: SLOT });
  const flash = new SimFlash(geometry);
  const p = provision(flash, layout, { deviceClass: 'acme-gw', trust, envelope: v1, image: v1Image });
  expect(p.ok, p.error).toBe(true);
  const agent = () => new UpdateAgent({ flash, layout, trust });
  const bootNow = () => boot(flash, layout, trust, { maxTrialBoots: 2 });
  const revoke = (opts: { keys?: Uint8Array[]; manifests?: Uint8Array[]; version?: number }) => {
    const r = agent().updateRevocations(
      makeRevocations({ version: opts.version ?? 1, keyIds: (opts.keys ?? []).map(keyId), manifests: opts.manifests ?? [], signers: [A, B] }),
    );
    expect(r.ok, r.error).toBe(true);
  };
  return { flash, layout, agent, bootNow, revoke };
}

/** Begin (and with `all`, finish) the download of v2 signed by `signers`, chunk by chunk with inclusion proofs. */
function download(agent: UpdateAgent, signers: Parameters<typeof makeManifestEnvelope>[1], upTo = Number.POSITIVE_INFINITY) {
  const begun = agent.beginUpdate(makeManifestEnvelope(v2Manifest, signers));
  expect(begun.ok, begun.error).toBe(true);
  const chunks: Uint8Array[] = [];
  for (let o = 0; o < v2Image.length; o += v2Manifest.chunkSize) chunks.push(v2Image.subarray(o, o + v2Manifest.chunkSize));
  const leaves = chunks.map((c) => leafHash(nodeSha256, c));
  for (const i of agent.missingChunks().slice(0, upTo)) {
    const w = agent.writeChunk(i, chunks[i]!, concatBytes(...inclusionProof(nodeSha256, leaves, i)));
    expect(w.ok, w.error).toBe(true);
  }
}

const manifestDigest = (envelope: Uint8Array) => {
  const env = parseEnvelope(envelope);
  if (!env.ok) throw new Error(env.error);
  return nodeSha256(env.envelope.payload);
};

describe('boot after a revocation (SPEC.md §11.4)', () => {
  it('a revoked signer: the active confirmed image still boots, flagged, and nothing new it signed installs', () => {
    const d = device();
    expect(d.bootNow()).toMatchObject({ slot: 0, version: '1.0.0', code: 0 });
    expect(d.bootNow().revokedSigners).toBeUndefined();
    d.revoke({ keys: [R1.publicKey] });
    expect(d.bootNow()).toMatchObject({ slot: 0, version: '1.0.0', counter: 1, code: 0, revokedSigners: true });
    expect(d.agent().beginUpdate(makeManifestEnvelope(v2Manifest, [R1, R2])).code).toBe(CODES.REVOKED_KEY);
  });

  it('the flagged image is still checked byte for byte', () => {
    const d = device();
    d.revoke({ keys: [R1.publicKey] });
    d.flash.flipBit(d.layout.slots[0].offset + 1234, 3);
    expect(d.bootNow()).toMatchObject({ slot: null, code: CODES.BOOT_IMAGE_INVALID });
  });

  it('the flagged image is still held to the stored counter', () => {
    const d = device();
    d.revoke({ keys: [R1.publicKey] });
    const s = loadState(d.flash, d.layout);
    if (!s.ok) throw new Error(s.error);
    const { sequence: _s, ...rest } = s.record;
    expect(saveState(d.flash, d.layout, { ...rest, securityCounter: 2 }).ok).toBe(true);
    expect(d.bootNow()).toMatchObject({ slot: null, code: CODES.BOOT_IMAGE_INVALID });
  });

  it('a revoked manifest never boots, also when its signers are revoked as well', () => {
    const d = device();
    d.revoke({ manifests: [manifestDigest(v1)] });
    expect(d.bootNow()).toMatchObject({ slot: null, code: CODES.BOOT_IMAGE_INVALID });
    const d2 = device();
    d2.revoke({ keys: [R1.publicKey], manifests: [manifestDigest(v1)] });
    const b = d2.bootNow();
    expect(b).toMatchObject({ slot: null, code: CODES.BOOT_IMAGE_INVALID });
    expect(b.detail).toContain('REVOKED_MANIFEST');
  });

  it('a pending image signed by a revoked key gets no grace: reverted at its trial boot', () => {
    const d = device();
    const agent = d.agent();
    download(agent, [R1, R3]);
    expect(agent.finishDownload().ok).toBe(true);
    d.revoke({ keys: [R3.publicKey] });
    expect(d.bootNow()).toMatchObject({ slot: 0, version: '1.0.0', reverted: true, code: CODES.BOOT_IMAGE_INVALID });
    const s = loadState(d.flash, d.layout);
    expect(s.ok && s.record.pending === undefined && s.record.lastError === CODES.BOOT_IMAGE_INVALID).toBe(true);
    // The same install without the revocation is trial-booted.
    const d2 = device();
    const agent2 = d2.agent();
    download(agent2, [R1, R3]);
    expect(agent2.finishDownload().ok).toBe(true);
    expect(d2.bootNow()).toMatchObject({ slot: 1, version: '2.0.0', trial: true, code: 0 });
  });
});

describe('UpdateAgent.checkDownload (SPEC.md §12.13 step 4)', () => {
  it('says when the download in progress no longer verifies under the stored list', () => {
    const d = device();
    expect(d.agent().checkDownload()).toMatchObject({ ok: true, downloading: false });
    const agent = d.agent();
    download(agent, [R1, R2], 2);
    expect(agent.checkDownload()).toMatchObject({ ok: true, downloading: true });
    d.revoke({ keys: [R3.publicKey] }); // a key that did not sign it
    expect(agent.checkDownload()).toMatchObject({ ok: true, downloading: true });
    d.revoke({ keys: [R3.publicKey, R2.publicKey], version: 2 });
    expect(agent.checkDownload().code).toBe(CODES.REVOKED_KEY);
    expect(d.agent().checkDownload().code).toBe(CODES.REVOKED_KEY); // a fresh agent (after a reset) too
  });
});
