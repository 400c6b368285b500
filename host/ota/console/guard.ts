/**
 * What a browser may not do to the API (SPEC.md §12.9 "Web console"), checked before any route:
 *
 * - A request that carries an `Origin` (every browser sends one on a cross-origin fetch and on every
 *   POST) must come from this server's own origin. Tokens never ride on a request by themselves (the
 *   console sends them as a header, from its own origin), but an API without tokens has nothing else
 *   between a hostile web page and `POST /api/campaigns/ID/abort`: this refuses that cross-site request.
 * - An API without tokens on the loopback answers only to a loopback `Host` (an address, or
 *   localhost): a hostile page that re-points its own name at 127.0.0.1 (DNS rebinding) would
 *   otherwise be "same origin" with it.
 *
 * Clients that are not browsers (the CLI, Prometheus, curl) send no Origin and name the address they
 * connect to: they are not affected.
 */
import { type IncomingMessage } from 'node:http';
import { ApiError } from '../campaigns.js';
import { isLoopbackHost } from '../listen.js';

export type BrowserGuard = (req: IncomingMessage) => void;

/** `host[:port]` without the port (an IPv6 address keeps its brackets). */
function hostName(host: string): string {
  const m = /^(\[[^\]]*\]|[^:]*)(?::\d*)?$/.exec(host);
  return m ? m[1] : host;
}

/** The guard for one listener: `openLoopback` when the API has no tokens and listens on the loopback. */
export function browserGuard(openLoopback: boolean): BrowserGuard {
  return (req) => {
    const host = (req.headers.host ?? '').toLowerCase();
    const origin = req.headers.origin;
    if (origin !== undefined) {
      let from: string | null = null;
      try {
        from = new URL(origin).host.toLowerCase();
      } catch {
        from = null;
      }
      if (from === null || from !== host) throw new ApiError(403, 'FORBIDDEN', 'a request from another origin (a web page elsewhere) is refused');
    }
    if (openLoopback && host !== '' && !isLoopbackHost(hostName(host)))
      throw new ApiError(403, 'FORBIDDEN', 'an API without tokens answers only to a loopback address or localhost in the Host header');
  };
}
