/**
 * Watching a revocation list reach the fleet (SPEC.md §12.13 "Acknowledges", §12.9 metrics): every
 * device reports the list version it enforces in its `online` events, and the servers keep it with
 * the time of the report. The drill polls GET /api/devices until every online device (reported
 * within the window /metrics uses for `fwseal_revocation_enforcing_ratio`) enforces the list, and
 * takes each device's time from the list's publication to that report.
 */
import { FwsealError } from '../errors.js';
import { type ApiTarget, allDevices, apiRequest } from '../ota/api-client.js';
import { ONLINE_WINDOW_MS } from '../ota/metrics.js';
import { type ServerRoot } from './next-list.js';

/** One device of GET /api/devices (host/ota/http-root.ts `deviceView`); null: never reported. */
type DeviceView = { readonly id: string; readonly lastSeen: number; readonly revocationVersion: number | null };

export type Propagation = {
  readonly version: number;
  readonly online: number;
  readonly enforcing: number;
  /** Online devices that do not enforce the list yet. */
  readonly missing: readonly string[];
  /** Per device that enforces it: seconds from the list's publication to its acknowledging report. */
  readonly seconds: readonly number[];
  readonly waitedSeconds: number;
};

export type WatchOptions = {
  readonly timeoutMs: number;
  readonly pollMs?: number;
  /** Called whenever the count of enforcing or online devices changes. */
  readonly onChange?: (p: Propagation) => void;
};

/** The q-quantile (0..1) of `xs` by the nearest rank; NaN for none. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * Poll until every online device enforces list `version` or newer; throws TRANSPORT_TIMEOUT (exit 1)
 * naming the devices still missing when `timeoutMs` passes. A device's time is read from the first
 * poll that shows it enforcing: its last report then is the acknowledgement (a later report, e.g.
 * after an update's reboot, can make it at most one poll interval late).
 */
export async function watchPropagation(t: ApiTarget, version: number, o: WatchOptions): Promise<Propagation> {
  const started = Date.now();
  const acked = new Map<string, number>();
  let last = '';
  for (;;) {
    const root = await apiRequest<ServerRoot>(t, 'GET', 'api/root');
    const devices = await allDevices<DeviceView>(t);
    const published = root.revocationPublished ?? started;
    const online = devices.filter((d) => d.lastSeen >= Date.now() - ONLINE_WINDOW_MS);
    const missing: string[] = [];
    for (const d of online) {
      if ((d.revocationVersion ?? 0) < version) missing.push(d.id);
      else if (!acked.has(d.id)) acked.set(d.id, Math.max(0, d.lastSeen - published) / 1000);
    }
    const p: Propagation = {
      version,
      online: online.length,
      enforcing: online.length - missing.length,
      missing,
      seconds: online.filter((d) => acked.has(d.id)).map((d) => acked.get(d.id)!),
      waitedSeconds: (Date.now() - started) / 1000,
    };
    const key = `${p.enforcing}/${p.online}`;
    if (key !== last) o.onChange?.(p);
    last = key;
    if (missing.length === 0) return p;
    if (Date.now() - started >= o.timeoutMs) {
      const names = missing.length > 8 ? `${missing.slice(0, 8).join(', ')} and ${missing.length - 8} more` : missing.join(', ');
      throw new FwsealError(
        'TRANSPORT_TIMEOUT',
        `after ${p.waitedSeconds.toFixed(0)} s, ${p.enforcing} of ${p.online} online devices enforce revocation list ${version}; not yet: ${names}`,
      );
    }
    await new Promise((r) => setTimeout(r, o.pollMs ?? 250));
  }
}
