/**
 * Devices that require transparency log proof (issue 19 item 3, SPEC.md §16 device policy L1–L7):
 * the trust bundle's format 2 and its log policy, the log proof attachment built from a real log
 * (host/tlog), every refusal the issue lists — no proof, wrong log key, too few witnesses, proof for
 * another entry, stale checkpoint, forked checkpoint — advancing with a consistency proof, and the
 * update agent that stores the checkpoint with the download and enforces it after a reboot.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpdateAgent } from '../device/agent/agent.js';
import { createLayout, layoutBytes } from '../device/agent/layout.js';
import { provision } from '../device/agent/provision.js';
import { loadState } from '../device/agent/state-store.js';
import { loadTrust, type VerifiedTrust, verifyLogProof } from '../device/index.js';
import { SimFlash } from '../device/sim/flash.js';
import { encodeCbor } from '../shared/cbor.js';
import { CODES } from '../shared/codes.js';
import { parseEnvelope } from '../shared/cose.js';
import { encodeLogProof, parseLogProof } from '../shared/log-proof.js';
import { parsePayload } from '../shared/payload.js';
import { encodeTrustBundle, parseTrustBundle } from '../shared/trust.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope } from './support/fixtures.js';
import { logWorld, type OpenLog, openLog } from './support/tlog-device-world.js';

const L = logWorld('dev');
const codeOf = (r: { ok: boolean; code: number }) => r.code;
const trustOf = (bytes: Uint8Array): VerifiedTrust => {
  const t = loadTrust(bytes);
  if (!t.ok) throw new Error(`trust: ${t.error}`);
  return t.trust;
};
const T = trustOf(L.trust);
const payloadOf = (env: Uint8Array) => {
  const e = parseEnvelope(env);
  if (!e.ok) throw new Error(e.error);
  return e.envelope.payload;
};

let log: OpenLog;
let fork: OpenLog;
const rel = [0, 1, 2, 3, 4].map((i) => L.release(i));
/** Proofs kept at the sizes they were made (a device that saw a newer checkpoint must refuse them). */
const at: { size2?: Uint8Array; size3?: Uint8Array; forkSize3?: Uint8Array } = {};

beforeAll(async () => {
  log = openLog(L.logKey);
  log.append(rel[0], rel[1]);
  log.checkpoint();
  log.cosign([L.witnesses[0], L.witnesses[1]]);
  at.size2 = await log.prove(rel[1]);
  log.append(rel[2]);
  log.checkpoint();
  log.cosign([L.witnesses[1], L.witnesses[2]]);
  at.size3 = await log.prove(rel[2]);
  // A split view: the same origin and key, another entry at index 2.
  fork = openLog(L.logKey);
  fork.append(rel[0], rel[1], rel[3]);
  fork.checkpoint();
  fork.cosign([L.witnesses[0], L.witnesses[1]]);
  at.forkSize3 = await fork.prove(rel[3]);
});
afterAll(() => {
  log.close();
  fork.close();
});

const cp = (size: number, proof: Uint8Array) => {
  const p = parseLogProof(proof);
  if (!p.ok) throw new Error(p.error);
  expect(p.value.size).toBe(size);
  return { size, root: p.value.root };
};

describe('trust bundle format 2 (SPEC.md §4.2)', () => {
  it('a bundle without a policy is format 1, byte for byte as before, and parses as before', () => {
    const bundle = { version: 3, root: { threshold: 1, keys: [L.w.A.publicKey] }, release: { threshold: 1, keys: [L.w.R1.publicKey] } };
    const classic = rawBundle(1, 3);
    expect(Buffer.from(encodeTrustBundle(bundle)).equals(Buffer.from(classic))).toBe(true);
    const parsed = parseTrustBundle(classic);
    expect(parsed.ok && parsed.value.log).toBeUndefined();
  });

  it('with a policy it is format 2 and carries it; format 1 with key 5 is UNKNOWN_KEY, format 2 without it MISSING_FIELD', () => {
    const payload = payloadOf(L.trust);
    const parsed = parseTrustBundle(payload);
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value.log).toEqual(L.policy);
    const entries = (fmt: number, withLog: boolean) =>
      encodeCbor(
        new Map<number, unknown>([
          [0, 2],
          [1, fmt],
          [2, 1],
          [
            3,
            new Map<number, unknown>([
              [1, 1],
              [2, [L.w.A.publicKey]],
            ]),
          ],
          [
            4,
            new Map<number, unknown>([
              [1, 1],
              [2, [L.w.R1.publicKey]],
            ]),
          ],
          ...(withLog
            ? [
                [
                  5,
                  new Map<number, unknown>([
                    [1, 'o'],
                    [2, L.logKey.publicKey],
                  ]),
                ] as [number, unknown],
              ]
            : []),
        ]) as never,
      );
    expect(parseTrustBundle(entries(2, true)).ok).toBe(true);
    expect(codeOf(parseTrustBundle(entries(1, true)))).toBe(CODES.UNKNOWN_KEY);
    expect(codeOf(parseTrustBundle(entries(2, false)))).toBe(CODES.MISSING_FIELD);
    expect(codeOf(parseTrustBundle(entries(3, true)))).toBe(CODES.UNSUPPORTED_FORMAT);
  });

  it('a device of the previous release (one format per kind: parsePayload) refuses format 2 with UNSUPPORTED_FORMAT', () => {
    expect(codeOf(parsePayload(payloadOf(L.trust), 'trust', () => null))).toBe(CODES.UNSUPPORTED_FORMAT);
  });

  it('the policy refuses duplicate witness keys, a threshold above the witnesses, and an origin with a space', () => {
    const p = L.policy;
    expect(() => encodeTrustBundle({ ...parsedBundle(), log: { ...p, witnesses: [p.witnesses[0], p.witnesses[0]] } })).toThrow(/DUPLICATE_KEY/);
    expect(() => encodeTrustBundle({ ...parsedBundle(), log: { ...p, witnessThreshold: 4 } })).toThrow(/BAD_VALUE/);
    expect(() => encodeTrustBundle({ ...parsedBundle(), log: { ...p, origin: 'a b' } })).toThrow(/BAD_VALUE/);
    expect(() => encodeTrustBundle({ ...parsedBundle(), log: { ...p, origin: 'ex\u00e4mple.com/log' } })).toThrow(/BAD_VALUE/); // printable ASCII only
    const withPolicy = (policy: Map<number, unknown>) => rawBundle(2, 1, policy);
    const base: [number, unknown][] = [
      [1, 'o'],
      [2, L.logKey.publicKey],
    ];
    expect(codeOf(parseTrustBundle(withPolicy(new Map([...base, [3, 1], [4, []]]))))).toBe(CODES.BAD_VALUE);
    expect(codeOf(parseTrustBundle(withPolicy(new Map([...base, [3, 1]]))))).toBe(CODES.MISSING_FIELD);
    expect(codeOf(parseTrustBundle(withPolicy(new Map([...base, [9, 1]]))))).toBe(CODES.UNKNOWN_KEY);
  });
});

/** A trust bundle's CBOR spelled out by hand (SPEC.md §4.2): root A and release R1, threshold 1 each; key 5 the log policy, if any. */
function rawBundle(format: number, version: number, policy?: Map<number, unknown>): Uint8Array {
  const role = (key: Uint8Array) =>
    new Map<number, unknown>([
      [1, 1],
      [2, [key]],
    ]);
  const fields: [number, unknown][] = [
    [0, 2],
    [1, format],
    [2, version],
    [3, role(L.w.A.publicKey)],
    [4, role(L.w.R1.publicKey)],
  ];
  if (policy) fields.push([5, policy]);
  return encodeCbor(new Map(fields) as never);
}

function parsedBundle() {
  const r = parseTrustBundle(payloadOf(L.trust));
  if (!r.ok) throw new Error(r.error);
  const { log: _, ...rest } = r.value;
  return rest;
}

describe('verifyLogProof (SPEC.md §16 device policy L1–L7)', () => {
  it('accepts the proof of a release from the real log, cosigned by 2 of 3 witnesses; first checkpoint on trust (no stored one)', async () => {
    const r = verifyLogProof(rel[2], at.size3!, T);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r).toMatchObject({ advanced: true, checkpoint: { size: 3 } });
  });

  it('without a policy there is nothing to check (format-1 bundle): ok, not advanced', () => {
    const r = verifyLogProof(rel[2], new Uint8Array([1]), trustOf(L.bundle(undefined)));
    expect(r.ok && r.advanced).toBe(false);
    expect(r.ok).toBe(true);
  });

  it('a checkpoint signed by another log key: LOG_SIGNATURE_INVALID', async () => {
    const other = openLog(detKey('dev-other-log'));
    try {
      other.append(rel[0], rel[1], rel[2]);
      other.checkpoint();
      other.cosign(L.witnesses);
      expect(codeOf(verifyLogProof(rel[2], await other.prove(rel[2]), T))).toBe(CODES.LOG_SIGNATURE_INVALID);
    } finally {
      other.close();
    }
  });

  it('a log of another origin (same key): LOG_SIGNATURE_INVALID (the text the device rebuilds names its origin)', async () => {
    const other = openLog(L.logKey, 'example.com/other-log');
    try {
      other.append(rel[0]);
      other.checkpoint();
      other.cosign(L.witnesses);
      expect(codeOf(verifyLogProof(rel[0], await other.prove(rel[0]), T))).toBe(CODES.LOG_SIGNATURE_INVALID);
    } finally {
      other.close();
    }
  });

  it('too few witnesses: one of 2 (the other cosignatures by unlisted keys or repeated) is LOG_WITNESSES_NOT_MET', async () => {
    const one = openLog(L.logKey);
    try {
      one.append(rel[0]);
      one.checkpoint();
      one.cosign([L.witnesses[0], detKey('dev-stranger')]);
      const proof = await one.prove(rel[0]);
      expect(codeOf(verifyLogProof(rel[0], proof, T))).toBe(CODES.LOG_WITNESSES_NOT_MET);
      // The same witness twice still counts once.
      const p = parseLogProof(proof);
      if (!p.ok) throw new Error(p.error);
      const twice = encodeLogProof({ ...p.value, cosignatures: [p.value.cosignatures[0], p.value.cosignatures[0]] });
      expect(codeOf(verifyLogProof(rel[0], twice, T))).toBe(CODES.LOG_WITNESSES_NOT_MET);
      // A policy of 1 of 3 takes it.
      expect(verifyLogProof(rel[0], proof, trustOf(L.bundle({ ...L.policy, witnessThreshold: 1 }))).ok).toBe(true);
    } finally {
      one.close();
    }
  });

  it('a tampered cosignature does not count (LOG_WITNESSES_NOT_MET); a tampered log signature is LOG_SIGNATURE_INVALID', () => {
    const p = parseLogProof(at.size3!);
    if (!p.ok) throw new Error(p.error);
    const bad = p.value.cosignatures.map((c, i) => (i === 0 ? { ...c, time: c.time + 1 } : c));
    expect(codeOf(verifyLogProof(rel[2], encodeLogProof({ ...p.value, cosignatures: bad }), T))).toBe(CODES.LOG_WITNESSES_NOT_MET);
    const sig = p.value.signature.slice();
    sig[5] ^= 1;
    expect(codeOf(verifyLogProof(rel[2], encodeLogProof({ ...p.value, signature: sig }), T))).toBe(CODES.LOG_SIGNATURE_INVALID);
  });

  it('a proof for another entry: LOG_PROOF_MISMATCH (also another index under the same checkpoint)', () => {
    expect(codeOf(verifyLogProof(rel[1], at.size3!, T))).toBe(CODES.LOG_PROOF_MISMATCH);
    const p = parseLogProof(at.size3!);
    if (!p.ok) throw new Error(p.error);
    expect(codeOf(verifyLogProof(rel[2], encodeLogProof({ ...p.value, index: 1 }), T))).toBe(CODES.LOG_PROOF_MISMATCH);
  });

  it('a stale checkpoint (smaller than the stored one): LOG_ROLLBACK', () => {
    expect(codeOf(verifyLogProof(rel[1], at.size2!, T, cp(3, at.size3!)))).toBe(CODES.LOG_ROLLBACK);
  });

  it('a forked checkpoint: same size, other root is LOG_FORK; a larger one without (or with a wrong) consistency proof is LOG_FORK', async () => {
    expect(codeOf(verifyLogProof(rel[3], at.forkSize3!, T, cp(3, at.size3!)))).toBe(CODES.LOG_FORK);
    fork.append(rel[4]);
    fork.checkpoint();
    fork.cosign(L.witnesses);
    // The fork proves consistency with ITS size 3, not with the checkpoint the device stored.
    expect(codeOf(verifyLogProof(rel[4], await fork.prove(rel[4], 3), T, cp(3, at.size3!)))).toBe(CODES.LOG_FORK);
    expect(codeOf(verifyLogProof(rel[4], await fork.prove(rel[4], 0), T, cp(3, at.size3!)))).toBe(CODES.LOG_FORK);
    // A consistency proof from another old size than the stored one (the fork shares entries 0–1,
    // so from the stored size 2 it is honestly consistent: a split view shows only after it).
    expect(codeOf(verifyLogProof(rel[4], await fork.prove(rel[4], 1), T, cp(2, at.size2!)))).toBe(CODES.LOG_FORK);
    expect(verifyLogProof(rel[4], await fork.prove(rel[4], 2), T, cp(2, at.size2!)).ok).toBe(true);
  });

  it('advances with a valid consistency proof from the stored size; the same checkpoint again is ok, not advanced', async () => {
    const stored = cp(2, at.size2!);
    const r = verifyLogProof(rel[2], await log.prove(rel[2], 2), T, stored);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r).toMatchObject({ advanced: true, checkpoint: { size: 3 } });
    const same = verifyLogProof(rel[2], at.size3!, T, cp(3, at.size3!));
    expect(same.ok && !same.advanced).toBe(true);
  });

  it('never throws: a trust object it did not issue is INVALID_ARGUMENT, a bad stored checkpoint INVALID_STATE, bytes that are no proof 1xx', () => {
    expect(codeOf(verifyLogProof(rel[2], at.size3!, { ...T } as VerifiedTrust))).toBe(CODES.INVALID_ARGUMENT);
    expect(codeOf(verifyLogProof(rel[2], at.size3!, T, { size: -1, root: new Uint8Array(32) }))).toBe(CODES.INVALID_STATE);
    expect(codeOf(verifyLogProof(rel[2], new Uint8Array([0xa0]), T))).toBe(CODES.MISSING_FIELD);
    expect(codeOf(verifyLogProof(rel[2], at.size3!.subarray(1), T))).toBeLessThan(200);
    expect(codeOf(verifyLogProof(null as never, at.size3!, T))).toBe(CODES.WRONG_TYPE);
  });

  it('every sampled one-bit change of a valid proof (with consistency) is refused with a code, never thrown, never accepted', async () => {
    const proof = await log.prove(rel[2], 2);
    const stored = cp(2, at.size2!);
    expect(verifyLogProof(rel[2], proof, T, stored).ok).toBe(true);
    let refused = 0;
    for (let bit = 3; bit < proof.length * 8; bit += 5) {
      const bad = proof.slice();
      bad[bit >> 3] ^= 1 << (bit & 7);
      const r = verifyLogProof(rel[2], bad, T, stored);
      expect(r.ok, `bit ${bit}`).toBe(false);
      expect(r.code).toBeGreaterThanOrEqual(100);
      refused++;
    }
    expect(refused).toBeGreaterThan(100);
  });

  it('the host builder: NOT_FOUND for an envelope the log does not hold, LOG_INVALID for a from-size above the checkpoint', async () => {
    await expect(log.prove(makeManifestEnvelope(makeManifest(detBytes(512, 'not logged')), [L.w.R1, L.w.R2]))).rejects.toMatchObject({ codeName: 'NOT_FOUND' });
    await expect(log.prove(rel[2], 4)).rejects.toMatchObject({ codeName: 'LOG_INVALID' });
    const p = parseLogProof(await log.prove(rel[2], 1));
    expect(p.ok && p.value.fromSize).toBe(1);
  });
});

// ---------------------------------------------------------------------------------------------
// The update agent under the policy.

const E = 4096;
const SLOT = 64 * 1024;
function device(trust: Uint8Array) {
  const geometry = { size: layoutBytes(E, 8, SLOT), eraseBlockSize: E, writeAlign: 8, erasedValue: 0xff };
  const layout = createLayout(geometry, { slotSize: SLOT });
  const flash = new SimFlash(geometry);
  const v1Image = detBytes(2048, 'dev v1');
  const v1 = makeManifestEnvelope(makeManifest(v1Image, { version: '1.0.0', securityCounter: 1 }), [L.w.R1, L.w.R2]);
  const p = provision(flash, layout, { deviceClass: 'acme-gw', trust, envelope: v1, image: v1Image });
  expect(p.ok).toBe(true);
  return { flash, layout, agent: () => new UpdateAgent({ flash, layout, trust }) };
}

describe('UpdateAgent under a log policy (SPEC.md §11.3, §16)', () => {
  it('no proof: LOG_PROOF_MISSING and not one byte of flash written; a failing proof: its code, nothing written', () => {
    const d = device(L.trust);
    const before = d.flash.snapshot();
    expect(codeOf(d.agent().beginUpdate(rel[2]))).toBe(CODES.LOG_PROOF_MISSING);
    expect(codeOf(d.agent().beginUpdate(rel[1], at.size3!))).toBe(CODES.LOG_PROOF_MISMATCH);
    expect(Buffer.from(d.flash.snapshot()).equals(Buffer.from(before))).toBe(true);
  });

  it('a valid proof starts the download and stores the checkpoint with it; after a reboot a stale proof is LOG_ROLLBACK and the next one needs consistency', async () => {
    const d = device(L.trust);
    expect(d.agent().logRequirement()).toMatchObject({ ok: true, required: true, fromSize: 0 });
    expect(d.agent().beginUpdate(rel[2], at.size3!)).toMatchObject({ ok: true, resumed: false });
    const s = loadState(d.flash, d.layout);
    expect(s.ok && s.record.logSize).toBe(3);
    expect(s.ok && Buffer.from(s.record.logRoot!).equals(Buffer.from(cp(3, at.size3!).root))).toBe(true);
    // Reboot: a new agent on the same flash.
    const after = d.agent();
    expect(after.logRequirement()).toMatchObject({ ok: true, required: true, fromSize: 3 });
    expect(after.beginUpdate(rel[2])).toMatchObject({ ok: true, resumed: true }); // a resume needs no proof
    expect(codeOf(after.beginUpdate(rel[1], at.size2!))).toBe(CODES.LOG_ROLLBACK);
    expect(codeOf(after.beginUpdate(rel[3], at.forkSize3!))).toBe(CODES.LOG_FORK);
    log.append(rel[3]);
    log.checkpoint();
    log.cosign([L.witnesses[0], L.witnesses[2]]);
    expect(codeOf(after.beginUpdate(rel[3], await log.prove(rel[3], 0)))).toBe(CODES.LOG_FORK);
    expect(after.beginUpdate(rel[3], await log.prove(rel[3], 3))).toMatchObject({ ok: true, resumed: false });
    const s2 = loadState(d.flash, d.layout);
    expect(s2.ok && s2.record.logSize).toBe(4);
  });

  it('a device with a format-1 bundle is unaffected: no proof needed, none stored', () => {
    const d = device(L.bundle(undefined));
    expect(d.agent().logRequirement()).toMatchObject({ ok: true, required: false, fromSize: 0 });
    expect(d.agent().beginUpdate(rel[2])).toMatchObject({ ok: true, resumed: false });
    const s = loadState(d.flash, d.layout);
    expect(s.ok && s.record.logSize).toBeUndefined();
  });

  it('a trust update to a policy naming another log forgets the stored checkpoint (in the switching save); the same log keeps it', async () => {
    const d = device(L.trust);
    expect(d.agent().beginUpdate(rel[2], at.size3!)).toMatchObject({ ok: true });
    const sameLog = d.agent();
    expect(sameLog.updateTrust(L.bundle(L.policy, 2))).toMatchObject({ ok: true, changed: true });
    expect(sameLog.logRequirement()).toMatchObject({ ok: true, required: true, fromSize: 3 });
    // A new log (another key and origin): its first checkpoint is smaller than the old log's.
    const newKey = detKey('dev-log-2');
    const other = openLog(newKey, 'example.com/acme-firmware-2');
    try {
      other.append(rel[4]);
      other.checkpoint();
      other.cosign([L.witnesses[0], L.witnesses[1]]);
      const agent = d.agent();
      expect(agent.updateTrust(L.bundle({ ...L.policy, origin: 'example.com/acme-firmware-2', logKey: newKey.publicKey }, 3))).toMatchObject({ ok: true });
      expect(agent.logRequirement()).toMatchObject({ ok: true, required: true, fromSize: 0 });
      expect(agent.beginUpdate(rel[4], await other.prove(rel[4]))).toMatchObject({ ok: true, resumed: false });
      const s = loadState(d.flash, d.layout);
      expect(s.ok && s.record.logSize).toBe(1);
    } finally {
      other.close();
    }
  });

  it('a trust update to a bundle with a policy makes the next download need a proof', () => {
    const d = device(L.bundle(undefined));
    const agent = d.agent();
    expect(agent.updateTrust(L.bundle(L.policy, 2))).toMatchObject({ ok: true, changed: true });
    expect(agent.logRequirement()).toMatchObject({ ok: true, required: true });
    expect(codeOf(agent.beginUpdate(rel[2]))).toBe(CODES.LOG_PROOF_MISSING);
    expect(agent.beginUpdate(rel[2], at.size3!)).toMatchObject({ ok: true });
  });
});
