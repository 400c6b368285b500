/**
 * Section "signing" (issue 14, item 8; the design source's M3 "sign latency"): the latency of one
 * signature per backend (SPEC.md §15.1), p50 and p99 over SIGNATURES signatures, each through
 * openSigner, so every figure includes the K2 check of the returned signature:
 *   - file key: an fwseal key file, unlocked once (the scrypt unlock is its own row);
 *   - PKCS#11: a key generated in a SoftHSM2 token (one session, one login);
 *   - external command: `exec:` around `openssl pkeyutl` (a process per signature).
 * The reference, measured in the same run: node:crypto's Ed25519 sign over the same bytes, with no
 * check (ratio = reference p50 / row p50). The payload is a manifest's Sig_structure.
 */
import { createPrivateKey, createPublicKey, sign as nodeSign, randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKey, writePublicKeyFile } from '../../host/keys.js';
import { openSigner, parseKeyRef, publicKeyOf } from '../../host/signers/index.js';
import { generatePkcs11Key } from '../../host/signers/pkcs11.js';
import { makeSoftHsm } from '../../test/support/softhsm.js';
import { type BenchContext, median, type Row, type Section, type SectionResult, valueRow } from './common.js';

export const SIGNATURES = 200;
const PASS = 'bench signing passphrase';
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}

/** Milliseconds of each of `n` calls. */
function latencies(n: number, fn: () => void): number[] {
  fn(); // warm-up: module load, first session, JIT
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return out;
}

function rows(name: string, ms: readonly number[], refP50: number | null, note: string): Row[] {
  const p50 = median(ms);
  const ratio = refP50 === null ? '' : `; reference p50 / p50 = ${(refP50 / p50).toFixed(3)}`;
  return [valueRow(`${name} p50`, p50, 'ms', `${note}${ratio}`), valueRow(`${name} p99`, quantile(ms, 0.99), 'ms', `over ${ms.length} signatures`)];
}

/** An Ed25519 key in an openssl PEM file plus its fwseal .pub, and the openssl wrapper script. */
function opensslSigner(dir: string): { ref: string; pub: string } {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, randomBytes(32)]), format: 'der', type: 'pkcs8' });
  writeFileSync(join(dir, 'ext.pem'), key.export({ format: 'pem', type: 'pkcs8' }) as string, { mode: 0o600 });
  const x = createPublicKey(key).export({ format: 'jwk' }).x as string;
  writePublicKeyFile(join(dir, 'ext.pub'), 'ext', new Uint8Array(Buffer.from(x, 'base64url')));
  const script = join(dir, 'openssl-sign');
  // openssl's one-shot Ed25519 signing needs a file of known size: the wrapper spools stdin.
  writeFileSync(script, `#!/bin/sh\nt=$(mktemp) || exit 1; trap 'rm -f "$t"' EXIT; cat > "$t"; openssl pkeyutl -sign -inkey "$1" -rawin -in "$t"\n`);
  chmodSync(script, 0o755);
  return { ref: `exec:${script} ${join(dir, 'ext.pem')}`, pub: join(dir, 'ext.pub') };
}

export const signing: Section = {
  name: 'signing',
  run(ctx: BenchContext): SectionResult {
    const message = new Uint8Array(randomBytes(600)); // about a manifest's Sig_structure
    const out: Row[] = [];
    const notes: string[] = [];
    const refKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, randomBytes(32)]), format: 'der', type: 'pkcs8' });
    const ref = latencies(SIGNATURES, () => nodeSign(null, message, refKey));
    const refP50 = median(ref);
    out.push(...rows('reference node:crypto', ref, null, 'Ed25519 sign, no check'));

    ctx.log('signing: file key');
    generateKey('file', ctx.tmpDir, () => PASS);
    const fileRef = parseKeyRef(join(ctx.tmpDir, 'file.key'));
    process.env.FWSEAL_PASSPHRASE = PASS;
    const unlock = latencies(5, () => openSigner(fileRef, publicKeyOf(fileRef)));
    const fileKey = openSigner(fileRef, publicKeyOf(fileRef));
    out.push(
      ...rows(
        'file key',
        latencies(SIGNATURES, () => fileKey.sign(message)),
        refP50,
        'unlocked once',
      ),
    );
    out.push(valueRow('file key unlock', median(unlock), 'ms', 'scrypt N=2^15 + AES-GCM, median of 5 (once per command)'));

    ctx.log('signing: PKCS#11 (SoftHSM2)');
    const hsm = makeSoftHsm([{ label: 'bench', pin: '1234', soPin: '5678' }]);
    process.env.FWSEAL_PKCS11_PIN = '1234';
    try {
      const uri = `pkcs11:token=bench;object=R1?module-path=${hsm.module}`;
      generatePkcs11Key(uri, 'R1');
      const tokenRef = parseKeyRef(uri);
      const tokenKey = openSigner(tokenRef, publicKeyOf(tokenRef));
      out.push(
        ...rows(
          'pkcs11 softhsm2',
          latencies(SIGNATURES, () => tokenKey.sign(message)),
          refP50,
          'CKM_EDDSA, one session',
        ),
      );
    } finally {
      delete process.env.FWSEAL_PKCS11_PIN;
      hsm.close();
    }

    ctx.log('signing: external command (openssl)');
    const ext = opensslSigner(ctx.tmpDir);
    const extRef = parseKeyRef(ext.ref, ext.pub);
    const extKey = openSigner(extRef, publicKeyOf(extRef));
    out.push(
      ...rows(
        'exec openssl',
        latencies(SIGNATURES, () => extKey.sign(message)),
        refP50,
        'sh + openssl pkeyutl per signature',
      ),
    );
    notes.push(`${SIGNATURES} signatures per backend over a 600-byte message; every backend row includes the verifyEd25519 check of SPEC.md §15.1 K2.`);
    return { name: 'signing', title: 'Sign latency per key backend (M3)', rows: out, verdicts: [], notes };
  },
};
