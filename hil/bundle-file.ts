/**
 * `fwseal hil bundle M.cose --image IMG --out update.bin`: the update bundle (SPEC.md §13.5) a stock
 * `mcumgr image upload` carries to a simulated device or a board running the fwseal agent. The
 * encoder is the harness's own (hil/world.ts makeBundle); this file only turns a team's files into
 * the release it takes, checking first that the image is the one the manifest names (size and Merkle
 * root, SPEC.md §5), so a bundle the device would refuse mid-upload is refused here.
 */

import { type Io, json, readObjectFile } from '../host/commands/common.js';
import { FwsealError } from '../host/errors.js';
import { nodeSha256 } from '../host/hash.js';
import { readFileLimited, writeFileAtomic } from '../host/io.js';
import { hashImage } from '../host/pack.js';
import { logProofFor } from '../host/tlog/attachment.js';
import { toHex } from '../shared/bytes.js';
import { type CodeName } from '../shared/codes.js';
import { parseEnvelope } from '../shared/cose.js';
import { DIGEST_BYTES, LIMITS } from '../shared/limits.js';
import { parseManifest } from '../shared/manifest.js';
import { makeBundle, type Release } from './world.js';

const IMAGE_MAX = 1 << 30;
type Failing = Exclude<CodeName, 'OK'>;

/** The release of a manifest file and its image file, checked against each other. Throws FwsealError. */
export function checkedRelease(manifestPath: string, imagePath: string): Release {
  const envelope = readObjectFile(manifestPath, 'manifest');
  const env = parseEnvelope(envelope);
  if (!env.ok) throw new FwsealError(env.error as Failing, `${manifestPath}: ${env.detail ?? 'not a manifest envelope'}`);
  const m = parseManifest(env.envelope.payload);
  if (!m.ok) throw new FwsealError(m.error as Failing, `${manifestPath}: ${m.detail ?? 'not a manifest'}`);
  const manifest = m.value;
  const hashed = hashImage(imagePath, manifest.chunkSize);
  if (hashed.size !== manifest.imageSize)
    throw new FwsealError(
      hashed.size > manifest.imageSize ? 'IMAGE_TOO_LONG' : 'IMAGE_TOO_SHORT',
      `${imagePath} has ${hashed.size} bytes; the manifest says ${manifest.imageSize}`,
    );
  if (toHex(hashed.root) !== toHex(manifest.merkleRoot))
    throw new FwsealError('MERKLE_ROOT_MISMATCH', `${imagePath} is not the image ${manifestPath} names (Merkle root differs)`);
  const image = readFileLimited(imagePath, IMAGE_MAX, 'image');
  if (image.length !== hashed.size) throw new FwsealError('IO', `image ${imagePath} changed while it was read`);
  const leaves: Uint8Array[] = [];
  for (let o = 0; o < hashed.leaves.length; o += DIGEST_BYTES) leaves.push(hashed.leaves.subarray(o, o + DIGEST_BYTES));
  return { manifest, envelope, image, leaves };
}

/**
 * Write the bundle of `manifestPath` + `imagePath` to `out`; prints what was written. With `log`, an
 * FWSBND2 bundle carrying the log proof of the manifest (host/tlog/attachment.ts) from the device's
 * stored checkpoint size `fromSize` (issue 19 item 2).
 */
export async function writeBundleFile(
  manifestPath: string,
  imagePath: string,
  out: string,
  io: Io,
  asJson: boolean,
  log?: { readonly dir: string; readonly fromSize: number },
): Promise<number> {
  const release = checkedRelease(manifestPath, imagePath);
  const logProof = log ? await logProofFor(log.dir, release.envelope, log.fromSize) : undefined;
  if (logProof && logProof.length > LIMITS.maxLogProofBytes)
    throw new FwsealError('TOO_LARGE', `the log proof is ${logProof.length} bytes, a bundle carries at most ${LIMITS.maxLogProofBytes}`);
  const bundle = makeBundle(release, logProof ? { logProof } : {});
  writeFileAtomic(out, bundle);
  const { manifest } = release;
  const sha256 = toHex(nodeSha256(bundle));
  const chunks = release.leaves.length;
  const proofBytes = logProof?.length ?? 0;
  if (asJson)
    json(io, {
      ok: true,
      out,
      bytes: bundle.length,
      sha256,
      version: manifest.version,
      counter: manifest.securityCounter,
      chunks,
      ...(proofBytes ? { logProofBytes: proofBytes } : {}),
    });
  else
    io.stdout(
      `wrote ${out}: update bundle of ${manifest.deviceClass} ${manifest.version} (counter ${manifest.securityCounter}), ${bundle.length} bytes ` +
        `(${release.envelope.length}-byte manifest${proofBytes ? `, ${proofBytes}-byte log proof from size ${log?.fromSize}` : ''}, ${chunks} chunks of ${manifest.chunkSize} bytes with their digests), sha256 ${sha256}\n`,
    );
  return 0;
}
