/**
 * The response headers of the web console and of the JSON API (SPEC.md §12.9 "Web console").
 *
 * The console's pages are shells with no data; its one script (served from this origin, never
 * inline) reads the API with the operator's token. So the policy allows scripts, styles, fetches and
 * images from 'self' only, forbids framing (clickjacking of the pause and abort buttons), and asks
 * for Trusted Types: a string can never reach an HTML sink such as innerHTML, so a value the fleet
 * controls (a version, an error text) can only ever become text. Nothing is cached: the API's
 * answers describe the fleet to whoever held a token.
 */
import { type ServerResponse } from 'node:http';
import { type ConsoleAnswer } from '../routes.js';

export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "require-trusted-types-for 'script'",
  "trusted-types 'none'",
].join('; ');

/** Every console answer. */
export const CONSOLE_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': CONSOLE_CSP,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'cache-control': 'no-store',
});

/** Every JSON answer of the API: never cached, never sniffed as something else, never framed. */
export const JSON_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
});

const MEDIA: Readonly<Record<ConsoleAnswer, string>> = Object.freeze({
  page: 'text/html; charset=utf-8',
  script: 'text/javascript; charset=utf-8',
  style: 'text/css; charset=utf-8',
});

/** One console answer: the page, script or style sheet text with the headers above. */
export function sendConsole(res: ServerResponse, kind: ConsoleAnswer, status: number, text: string): void {
  res.writeHead(status, { ...CONSOLE_HEADERS, 'content-type': MEDIA[kind], 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
