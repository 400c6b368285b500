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

/** Exit status of the CLI for an error: 1 for a rejection (decode/signature/policy/image), 2 for usage or I/O. */
export function exitStatusFor(code: number): 1 | 2 {
  return code >= 100 && code < 800 ? 1 : 2;
}
