/**
 * M5, key rotation (SPEC.md §12.9 "Metrics"): how old the trust bundle in force is, and for how long
 * each of its keys has been in the stored chain, from the trust bundles the servers store (§12.13).
 * Every version ever accepted is kept with the time it was stored, so a key's age is counted from the
 * first stored bundle that names it, in either role. The keys of the first bundle a deployment
 * stored count from that day: the store knows nothing older.
 */
import { toHex } from '../../shared/bytes.js';
import { parseEnvelope } from '../../shared/cose.js';
import { parseTrustBundle } from '../../shared/trust.js';
import { nodeSha256 } from '../hash.js';
import { type TrustRow } from './root-store.js';

/** A key of the bundle in force: the first 8 hex digits of its key id (SPEC.md §3.1) and its role there. */
export type KeyAge = { readonly key: string; readonly role: 'root' | 'release'; readonly seconds: number };
export type TrustAges = { readonly bundleSeconds: number | null; readonly keys: readonly KeyAge[] };

type Named = { readonly key: string; readonly role: 'root' | 'release' };

export class TrustAgeReader {
  /** The keys each stored bundle names, by version and digest (a stored bundle never changes; parsed once). */
  private readonly parsed = new Map<string, readonly Named[]>();

  /** `chain`: every stored bundle, oldest first (RootStoreApi.trustChain). */
  read(chain: readonly TrustRow[], now: number): TrustAges {
    const newest = chain.at(-1);
    if (!newest) return { bundleSeconds: null, keys: [] };
    const firstSeen = new Map<string, number>();
    for (const row of chain) for (const k of this.keysOf(row)) if (!firstSeen.has(k.key)) firstSeen.set(k.key, row.accepted);
    const age = (at: number) => Math.max(0, now - at) / 1000;
    return {
      bundleSeconds: age(newest.accepted),
      keys: this.keysOf(newest).map((k) => ({ ...k, seconds: age(firstSeen.get(k.key) ?? newest.accepted) })),
    };
  }

  private keysOf(row: TrustRow): readonly Named[] {
    const id = `${row.version}/${toHex(new Uint8Array(row.digest))}`;
    let keys = this.parsed.get(id);
    if (keys === undefined) {
      const env = parseEnvelope(new Uint8Array(row.envelope));
      const bundle = env.ok ? parseTrustBundle(env.envelope.payload) : null;
      const name = (role: Named['role']) => (pub: Uint8Array) => ({ key: toHex(nodeSha256(pub)).slice(0, 8), role });
      keys = bundle?.ok ? [...bundle.value.root.keys.map(name('root')), ...bundle.value.release.keys.map(name('release'))] : [];
      this.parsed.set(id, keys);
    }
    return keys;
  }
}
