/**
 * Targets whose one mutated argument is a signed object's bytes (a manifest envelope, a trust
 * bundle, a revocation list), with the acceptance oracle that says which accepted inputs are
 * legitimate.
 */
import { bytesEqual } from '../../../shared/bytes.js';
import { type CoseSignature, type Envelope, parseEnvelope } from '../../../shared/cose.js';
import { mutate } from './mutators.js';
import { type Rng } from './rng.js';
import { type FuzzTarget } from './target.js';

/**
 * The acceptance oracle for a byte-string argument: true when `input` is one of the valid inputs, or
 * carries the same signed payload as one of them together with every one of its signature entries,
 * unchanged (in any order, possibly repeated, possibly next to extra entries). The valid inputs'
 * signatures are exactly what their thresholds need, so those entries alone are a valid approval,
 * and extra entries cannot take it away ("unknown key ids are ignored", "a signature counts once
 * per distinct key id"); the fuzzer cannot forge a signature. Any other accepted input has lost or
 * altered a needed signature, or changed the payload: a finding.
 */
export function legitimateInputs(accept: readonly Uint8Array[]): (input: Uint8Array) => boolean {
  const parsed: Envelope[] = [];
  for (const a of accept) {
    const e = parseEnvelope(a);
    if (e.ok) parsed.push(e.envelope);
  }
  const same = (s: CoseSignature, t: CoseSignature): boolean => bytesEqual(t.kid, s.kid) && bytesEqual(t.signature, s.signature);
  return (input) => {
    if (accept.some((a) => bytesEqual(a, input))) return true;
    const e = parseEnvelope(input);
    if (!e.ok) return false;
    const mine = e.envelope.signatures;
    return parsed.some((v) => bytesEqual(v.payload, e.envelope.payload) && v.signatures.every((t) => mine.some((s) => same(s, t))));
  };
}

/**
 * A target whose one mutated argument is a byte string. `accept` lists, by construction (never by
 * asking the verifier), every input the call may accept; the first is the usual starting point.
 * `refuse` are validly signed inputs of the same kind that policy must refuse: used as they are or
 * as starting points now and then, they reach the policy codes that no mutation of a signed object
 * can (a mutation breaks the signature first).
 */
export function bytesTarget(
  name: string,
  weight: number,
  inputs: { accept: readonly Uint8Array[]; refuse?: readonly Uint8Array[] },
  call: (input: Uint8Array) => unknown,
): FuzzTarget {
  const acceptable = inputs.accept;
  const refuse = inputs.refuse ?? [];
  const isLegit = legitimateInputs(acceptable);
  const pick = (rng: Rng, corpus: readonly Uint8Array[]): { bytes: Uint8Array; ops: string[] } => {
    const r = rng.u32() / 0x100000000;
    if (refuse.length > 0 && r < 0.04) return { bytes: rng.pick(refuse), ops: ['policy'] };
    const base = refuse.length > 0 && r < 0.1 ? rng.pick(refuse) : r < 0.15 ? rng.pick(acceptable) : acceptable[0];
    return mutate(rng, base, corpus);
  };
  return {
    name,
    weight,
    selfCheck() {
      for (const a of acceptable) {
        const r = call(a) as { ok?: unknown; error?: unknown };
        if (r.ok !== true) return `${name}: a valid input is rejected with ${String(r.error)}`;
      }
      return null;
    },
    make(rng, corpus) {
      const m = pick(rng, corpus);
      const input = m.bytes;
      return {
        input,
        note: m.ops.join('+'),
        ops: m.ops,
        run: () => call(input),
        legit: () => isLegit(input),
      };
    },
  };
}
