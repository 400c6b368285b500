/**
 * The 128 KB flow run inside QuickJS by test/quickjs.test.ts and the quickjs bench section: a trust
 * bundle, a revocation list, a 3-signature manifest and a 1 MiB image that the VM generates itself in
 * 4 KiB pieces (the same xorshift32 stream Node used to build the manifest).
 */

import { nodeSha256 } from '../../host/hash.js';
import { pageProof } from '../../shared/merkle.js';
import { detKey, imageTree, makeManifest, makeManifestEnvelope, makeRevocations, makeTrust } from './fixtures.js';
import { type VerifierVM } from './quickjs.js';
import { xorshift32Bytes } from './quickjs-harness.js';

export const FLOW_SEED = 0x5eed_f00d;
export const FLOW_IMAGE_BYTES = 1 << 20;
export const FLOW_PIECE = 4096;

export function flowWorld() {
  const [A, B, C, R1, R2, R3, X] = ['A', 'B', 'C', 'R1', 'R2', 'R3', 'X'].map((l) => detKey(`quickjs flow/${l}`));
  const trust = makeTrust({ root: [A, B, C], rootThreshold: 2, release: [R1, R2, R3], releaseThreshold: 2, signers: [A, B] });
  const revocations = makeRevocations({ version: 1, keyIds: [X.keyId], signers: [B, C] }); // revokes some other key
  const image = xorshift32Bytes(FLOW_SEED, FLOW_IMAGE_BYTES, FLOW_PIECE); // what the VM generates piece by piece
  const manifest = makeManifest(image, { chunkSize: 4096 });
  const envelope = makeManifestEnvelope(manifest, [R1, R2, R3]);
  const { leaves } = imageTree(image, manifest.chunkSize);
  const pages = [0, 1].map((p) => ({ leaves: Buffer.concat(leaves.slice(128 * p, 128 * p + 128)), proof: Buffer.concat(pageProof(nodeSha256, leaves, p)) }));
  return { trust, revocations, manifest, envelope, pages };
}

export type FlowWorld = ReturnType<typeof flowWorld>;

/** Put the flow's inputs into the VM's slots before the measured run. */
export function loadFlowInputs(vm: VerifierVM, w: FlowWorld): void {
  vm.setBytes('trust', w.trust);
  vm.setBytes('revocations', w.revocations);
  vm.setBytes('envelope', w.envelope);
  w.pages.forEach((p, i) => {
    vm.setBytes(`leaves${i}`, p.leaves);
    vm.setBytes(`proof${i}`, p.proof);
  });
}

/**
 * The flow as VM source: every input is already in fwsealHarness.slots; the image is made inside.
 * `withImage` false stops after the signatures; `tamperOffset` >= 0 flips one image bit there.
 */
export function flowSource(options: { withImage?: boolean; tamperOffset?: number } = {}): string {
  const withImage = options.withImage ?? true;
  const tamper = options.tamperOffset ?? -1;
  return `(function () {
  var H = fwsealHarness, V = fwsealVerifier, S = H.slots, out = {};
  var t = V.loadTrust(S.trust);
  out.loadTrust = t.code;
  if (!t.ok) return out;
  var r = V.verifyRevocations(S.revocations, t.trust, 1);
  out.verifyRevocations = r.code;
  if (!r.ok) return out;
  var m = V.verifyManifest(S.envelope, S.trust, { deviceClass: 'acme-gw', counter: 7, revocations: S.revocations, revocationVersion: 1, trustVersion: 1 });
  out.verifyManifest = m.code;
  if (!m.ok) return out;
  out.signers = m.signers.length;
  if (!${withImage}) return out;
  var iv = V.imageVerifier(m.manifest);
  var pageBytes = 128 * m.manifest.chunkSize, piece = new Uint8Array(${FLOW_PIECE}), state = ${FLOW_SEED};
  for (var offset = 0; offset < m.manifest.imageSize; offset += piece.length) {
    if (offset % pageBytes === 0) {
      var p = offset / pageBytes, a = iv.addDigestPage(p, S['leaves' + p], S['proof' + p]);
      if (!a.ok) { out.image = a.code; out.at = offset; return out; }
    }
    state = H.xorshift32Fill(state, piece);
    if (offset <= ${tamper} && ${tamper} < offset + piece.length) piece[${tamper} - offset] ^= 1;
    var u = iv.update(piece);
    if (!u.ok) { out.image = u.code; out.at = offset; return out; }
  }
  out.image = iv.finish().code;
  return out;
})()`;
}
