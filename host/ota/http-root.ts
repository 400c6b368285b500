/**
 * What the HTTP API shows of the root of trust (SPEC.md §12.13, §12.9 "HTTP API"): the trust bundle
 * and revocation list the servers publish, and what each device acknowledged.
 */
import { toHex } from '../../shared/bytes.js';
import { type OtaServer } from './server.js';
import { type DeviceRow } from './store.js';

/** `GET /api/devices`: one device, with the root of trust it last acknowledged (null: never reported). */
export function deviceView(d: DeviceRow) {
  return {
    id: d.id,
    group: d.grp,
    version: d.version,
    counter: d.counter,
    lastSeen: d.last_seen,
    trustVersion: d.trust_version,
    revocationVersion: d.revocation_version,
    revocationSha256: d.revocation_digest ? toHex(new Uint8Array(d.revocation_digest)) : null,
  };
}

/** `GET /api/root`: the stored trust bundle versions, and the newest bundle and list with their payload digests. */
export async function rootView(server: OtaServer) {
  const s = await server.root.state();
  const list = s?.list?.verified;
  return {
    trustVersion: s?.trust.verified.bundle.version ?? 0,
    trustSha256: s ? toHex(s.trust.verified.digest) : null,
    trustVersions: await server.store.root.trustVersions(),
    revocationVersion: list?.list.version ?? 0,
    revocationSha256: list ? toHex(list.digest) : null,
    revocationPublished: list ? ((await server.store.root.list(list.list.version))?.published ?? null) : null,
  };
}
