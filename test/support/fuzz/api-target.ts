/**
 * Arguments of the wrong JavaScript type where the verifier's API takes bytes, an index, a device
 * state or one of its own verified objects: every entry point answers a code and never throws
 * (SPEC.md §6.6).
 */

import {
  imageVerifier,
  loadTrust,
  type VerifiedTrust,
  verifyChunk,
  verifyDigestPage,
  verifyManifest,
  verifyManifestWithTrust,
  verifyRevocations,
  verifyTrustUpdate,
} from '../../../device/index.js';
import { DIGEST_BYTES } from '../../../shared/limits.js';
import { type Manifest } from '../../../shared/manifest.js';
import { describe, type FuzzTarget, WEIRD_INDEX } from './target.js';

const WEIRD_BYTES: readonly (() => unknown)[] = [
  () => undefined,
  () => null,
  () => 0,
  () => NaN,
  () => 'a1',
  () => true,
  () => [0xd8, 0x62, 0x84],
  () => ({}),
  () => ({ length: 4, 0: 0xd8 }),
  () => new Uint16Array(4),
  () => new Int8Array(4),
  () => new ArrayBuffer(8),
  () => new DataView(new ArrayBuffer(8)),
  () => new Float64Array(2),
  () => 1n,
  () => new Map(),
  () => () => 0,
];
const WEIRD_STATES: readonly unknown[] = [
  null,
  undefined,
  0,
  'state',
  {},
  { deviceClass: '', counter: 7 },
  { deviceClass: 7, counter: 7 },
  { deviceClass: 'acme-gw' },
  { deviceClass: 'acme-gw', counter: -1 },
  { deviceClass: 'acme-gw', counter: 1.5 },
  { deviceClass: 'acme-gw', counter: NaN },
  { deviceClass: 'acme-gw', counter: 2 ** 53 },
  { deviceClass: 'acme-gw', counter: '7' },
  { deviceClass: 'acme-gw', counter: 7n },
  { deviceClass: 'acme-gw', counter: 7, revocations: 'x' },
  { deviceClass: 'acme-gw', counter: 7, revocations: [1, 2] },
  { deviceClass: 'acme-gw', counter: 7, revocationVersion: -1 },
  { deviceClass: 'acme-gw', counter: 7, trustVersion: Infinity },
  { deviceClass: 'acme-gw', counter: 7, trustVersion: '1' },
];

/** Arguments of the wrong JavaScript type, where the API takes bytes, an index or a device state. */
export function apiTarget(env: Uint8Array, state: object, verified: VerifiedTrust, manifest: Manifest, weight: number): FuzzTarget {
  const calls: readonly (readonly [string, (x: unknown) => unknown])[] = [
    ['verifyManifestWithTrust(envelope)', (x) => verifyManifestWithTrust(x as Uint8Array, verified, state as never)],
    // (revocations: undefined is the valid "no list" state, so it is left out here)
    ['verifyManifestWithTrust(revocations)', (x) => verifyManifestWithTrust(env, verified, { ...state, revocations: x ?? null } as never)],
    ['verifyManifest(trust)', (x) => verifyManifest(env, x as Uint8Array, state as never)],
    ['loadTrust', (x) => loadTrust(x as Uint8Array)],
    ['verifyRevocations', (x) => verifyRevocations(x as Uint8Array, verified, 3)],
    ['verifyTrustUpdate', (x) => verifyTrustUpdate(x as Uint8Array, verified)],
    // Objects the verifier did not produce, where it takes its own (SPEC.md §6.6).
    ['verifyManifestWithTrust(trust)', (x) => verifyManifestWithTrust(env, x as VerifiedTrust, state as never)],
    ['verifyTrustUpdate(current)', (x) => verifyTrustUpdate(env, x as VerifiedTrust)],
    ['verifyTrustUpdate(stored)', (x) => verifyTrustUpdate(env, verified, x as never)],
    ['verifyRevocations(trust)', (x) => verifyRevocations(env, x as VerifiedTrust, 3)],
    ['verifyRevocations(stored)', (x) => verifyRevocations(env, verified, 3, x as never)],
    ['imageVerifier(manifest)', (x) => imageVerifier(x as Manifest).update(new Uint8Array(4))],
    ['verifyChunk(manifest)', (x) => verifyChunk(x as Manifest, 0, new Uint8Array(512), new Uint8Array(64))],
    ['verifyChunk(chunk)', (x) => verifyChunk(manifest, 0, x as Uint8Array, new Uint8Array(64))],
    ['verifyChunk(proof)', (x) => verifyChunk(manifest, 0, new Uint8Array(512), x as Uint8Array)],
    ['verifyDigestPage(leaves)', (x) => verifyDigestPage(manifest, 0, x as Uint8Array, new Uint8Array(0))],
    ['verifyDigestPage(proof)', (x) => verifyDigestPage(manifest, 0, new Uint8Array(3 * DIGEST_BYTES), x as Uint8Array)],
    ['imageVerifier.update', (x) => imageVerifier(manifest).update(x as Uint8Array)],
    ['imageVerifier.addDigestPage', (x) => imageVerifier(manifest).addDigestPage(0, x as Uint8Array, new Uint8Array(0))],
  ];
  return {
    name: 'api-types',
    weight,
    make(rng) {
      const c = rng.int(4);
      if (c === 0) {
        const s = rng.pick(WEIRD_STATES);
        return {
          input: new Uint8Array(0),
          note: `verifyManifestWithTrust(state=${describe(s)})`,
          ops: ['api-state'],
          run: () => verifyManifestWithTrust(env, verified, s as never),
          legit: () => false,
        };
      }
      if (c === 1) {
        const i = rng.pick(WEIRD_INDEX);
        const page = rng.chance(0.5);
        return {
          input: new Uint8Array(0),
          note: `${page ? 'verifyDigestPage' : 'verifyChunk'}(index=${describe(i)})`,
          ops: ['api-index'],
          run: () =>
            page
              ? verifyDigestPage(manifest, i as number, new Uint8Array(3 * DIGEST_BYTES), new Uint8Array(0))
              : verifyChunk(manifest, i as number, new Uint8Array(512), new Uint8Array(64)),
          legit: () => false,
        };
      }
      const [name, call] = rng.pick(calls);
      const x = rng.pick(WEIRD_BYTES)();
      return { input: new Uint8Array(0), note: `${name}(${describe(x)})`, ops: ['api-bytes'], run: () => call(x), legit: () => false };
    },
  };
}
