/**
 * The handlers of the web console's routes (routes.ts CONSOLE_ROUTES) and of the two API routes it
 * added (`GET /api/whoami`, `GET /api/overview`), by route id; http.ts spreads them into its table.
 * SPEC.md §12.9 "Web console".
 */
import { ApiError } from '../campaigns.js';
import { type RouteAnswer, type RouteHandler } from '../http.js';
import { overview } from './overview.js';
import { consoleScript } from './script.js';
import { type ConsolePage, pageShell } from './shell.js';
import { CONSOLE_STYLE } from './style.js';

// Function declarations only: http.ts calls consoleHandlers() while the module cycle through its type imports may still be loading.
function ok(body: unknown): RouteAnswer {
  return { status: 200, body };
}

/** A query string on a console page or asset is refused: they take none, and a URL never carries a token. */
function noQuery(url: URL): void {
  if (url.search !== '') throw new ApiError(400, 'UNKNOWN_KEY', 'the console takes no query parameters');
}

type Params = Readonly<Record<string, string>>;

function page(kind: ConsolePage, title: (params: Params) => string, id: (params: Params) => string): RouteHandler {
  return async (c) => {
    noQuery(c.url);
    return ok(pageShell(kind, id(c.params), title(c.params)));
  };
}

/** The handlers by route id (as fleetHandlers, http-fleet.ts). */
export function consoleHandlers(): Readonly<Record<string, RouteHandler>> {
  return {
    consoleOverview: page(
      'overview',
      () => 'Overview',
      () => '',
    ),
    consoleCampaign: page(
      'campaign',
      (p) => `Campaign ${p.id}`,
      (p) => p.id,
    ),
    consoleDevice: page(
      'device',
      (p) => `Device ${p.device}`,
      (p) => p.device,
    ),
    consoleScript: async (c) => {
      noQuery(c.url);
      return ok(consoleScript());
    },
    consoleStyle: async (c) => {
      noQuery(c.url);
      return ok(CONSOLE_STYLE);
    },
    // Who the token is: the console shows the operator controls only to a role that may use them.
    whoAmI: async (c) =>
      ok(c.caller ? { name: c.caller.name, role: c.caller.role, source: c.caller.source } : { name: 'api', role: 'admin', source: 'api-open' }),
    getOverview: async (c) => ok(await overview(c.server)),
  };
}
