/** The host's one error type: a stable code from shared/codes.ts plus a one-line explanation. */
import { CODES, type CodeName, type Failure } from '../shared/codes.js';

export class FwsealError extends Error {
  readonly code: number;
  readonly codeName: CodeName;
  constructor(codeName: Exclude<CodeName, 'OK'>, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FwsealError';
    this.code = CODES[codeName];
    this.codeName = codeName;
  }

  /** Lift a device-verifier failure into a host error. */
  static from(f: Failure, context?: string): FwsealError {
    const text = [context, f.detail].filter(Boolean).join(': ');
    return new FwsealError(f.error as Exclude<CodeName, 'OK'>, text || f.error);
  }
}

/**
 * 6xx codes that describe the host's own way to the broker, never a device's verdict: the CLI could
 * not connect, so nothing was decided (SPEC.md §9). Every 8xx code is the host's too.
 */
const HOST_TRANSPORT_CODES: ReadonlySet<number> = new Set([CODES.BROKER_UNREACHABLE]);

/**
 * Exit status of the CLI for an error (SPEC.md §9): 1 for a verdict on the object, the device or the
 * fleet (1xx-5xx, and the 6xx codes a device or a propagation watch reports, e.g. TRANSPORT_TIMEOUT),
 * 2 for usage, I/O and transport failures of the host itself (8xx, BROKER_UNREACHABLE). Only exit 1
 * is printed as REJECTED.
 */
export function exitStatusFor(code: number): 1 | 2 {
  if (HOST_TRANSPORT_CODES.has(code)) return 2;
  return code >= 100 && code < 800 ? 1 : 2;
}
