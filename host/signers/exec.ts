/**
 * External signers (SPEC.md §15.3): a command that holds the key elsewhere (a cloud KMS, a signing
 * service, a YubiHSM tool). fwseal runs it without a shell, writes the exact bytes to be signed (the
 * Sig_structure of §3) to its stdin and reads one Ed25519 signature from its stdout: 64 raw bytes,
 * or 128 hex digits, or base64 of 64 bytes (surrounding white space ignored). Its environment
 * names the key (FWSEAL_KEY_ID, FWSEAL_PUBLIC_KEY, hex) so one script can serve several keys.
 */
import { spawnSync } from 'node:child_process';
import { toHex } from '../../shared/bytes.js';
import { LIMITS } from '../../shared/limits.js';
import { FwsealError } from '../errors.js';
import { type PublicKeyInfo, type SigningKey } from '../keys.js';

/**
 * Split `CMD ARGS` into argv like a POSIX shell would for plain words and quotes, and nothing else:
 * no variables, globs or redirections (the command never runs through a shell).
 */
export function parseExecCommand(text: string): string[] {
  const argv: string[] = [];
  let word: string | null = null;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && (text[i + 1] === '"' || text[i + 1] === '\\')) word += text[++i];
      else word += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word ??= '';
    } else if (c === ' ' || c === '\t') {
      if (word !== null) argv.push(word);
      word = null;
    } else if (c === '\\' && i + 1 < text.length) {
      word = (word ?? '') + text[++i];
    } else {
      word = (word ?? '') + c;
    }
  }
  if (quote) throw new FwsealError('USAGE', 'exec: signer command has an unterminated quote');
  if (word !== null) argv.push(word);
  if (argv.length === 0) throw new FwsealError('USAGE', 'exec: needs a command, e.g. --key "exec:./kms-sign R1"');
  return argv;
}

/** Time allowed for one signature: FWSEAL_SIGNER_TIMEOUT (seconds, 1-600) or LIMITS.signerTimeoutMs. */
export function signerTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.FWSEAL_SIGNER_TIMEOUT;
  if (v === undefined || v === '') return LIMITS.signerTimeoutMs;
  if (!/^\d{1,3}$/.test(v) || Number(v) < 1 || Number(v) > 600) throw new FwsealError('USAGE', 'FWSEAL_SIGNER_TIMEOUT must be whole seconds from 1 to 600');
  return Number(v) * 1000;
}

/** The signature in a signer's stdout, or null when it is not exactly one signature in a documented form. */
export function decodeSignerOutput(out: Uint8Array): Uint8Array | null {
  if (out.length === 64) return new Uint8Array(out);
  const text = Buffer.from(out).toString('latin1').trim();
  if (/^[0-9a-fA-F]{128}$/.test(text)) return new Uint8Array(Buffer.from(text, 'hex'));
  if (/^[A-Za-z0-9+/]{86}==$/.test(text) || /^[A-Za-z0-9_-]{86}$/.test(text)) {
    const bytes = Buffer.from(text, text.includes('=') ? 'base64' : 'base64url');
    return bytes.length === 64 ? new Uint8Array(bytes) : null;
  }
  return null;
}

/** Run the signer once over `message`. */
function runSigner(argv: readonly string[], key: PublicKeyInfo, message: Uint8Array): Uint8Array {
  const what = `external signer ${argv[0]}`;
  const timeout = signerTimeoutMs();
  const r = spawnSync(argv[0], argv.slice(1), {
    input: message,
    timeout,
    killSignal: 'SIGKILL',
    maxBuffer: LIMITS.maxSignerOutputBytes,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, FWSEAL_KEY_ID: toHex(key.keyId), FWSEAL_PUBLIC_KEY: toHex(key.publicKey) },
  });
  const err = r.error as NodeJS.ErrnoException | undefined;
  if (err?.code === 'ETIMEDOUT' || (r.signal === 'SIGKILL' && !err))
    throw new FwsealError('SIGNER_TIMEOUT', `${what} did not answer within ${timeout / 1000} s; killed`);
  if (err?.code === 'ENOBUFS') throw new FwsealError('SIGNER_FAILED', `${what} wrote more than ${LIMITS.maxSignerOutputBytes} bytes`);
  if (err) throw new FwsealError('SIGNER_FAILED', `${what} could not be run: ${err.code ?? err.message}`);
  if (r.status !== 0) {
    const last =
      Buffer.from(r.stderr ?? '')
        .toString('utf8')
        .trim()
        .split('\n')
        .pop()
        ?.slice(0, 200) ?? '';
    throw new FwsealError('SIGNER_FAILED', `${what} exited with ${r.signal ?? `status ${r.status}`}${last ? `: ${last}` : ''}`);
  }
  const signature = decodeSignerOutput(r.stdout);
  if (!signature) throw new FwsealError('SIGNER_FAILED', `${what} did not print one Ed25519 signature (64 raw bytes, 128 hex digits or base64)`);
  return signature;
}

/** A SigningKey whose private half lives behind `argv`; openSigner (index.ts) verifies every signature. */
export function execSigner(argv: readonly string[], key: PublicKeyInfo): SigningKey {
  return Object.freeze({ name: key.name, publicKey: key.publicKey, keyId: key.keyId, sign: (message: Uint8Array) => runSigner(argv, key, message) });
}
