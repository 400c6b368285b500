/**
 * The console's HTML (SPEC.md §12.9 "Web console"): one shell per page, server-rendered from a
 * template whose every interpolated value is escaped (`html` below). The shell names the page and
 * its id; the script fills it in from the API (console/script-*.ts), as text nodes only.
 */

const ENTITIES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe for HTML content and quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ENTITIES[c]);
}

/** A fragment that `html` inserts as it is (only ever built by `html` itself). */
export class SafeHtml {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/** Tagged template: every value escaped, except fragments built by `html` (SafeHtml) and arrays of them. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  const part = (v: unknown): string => (v instanceof SafeHtml ? v.text : Array.isArray(v) ? v.map(part).join('') : escapeHtml(v ?? ''));
  return new SafeHtml(strings.reduce((out, s, i) => out + s + (i < values.length ? part(values[i]) : ''), ''));
}

export type ConsolePage = 'overview' | 'campaign' | 'device';

/** The page as served: the head (viewport, style sheet, the deferred script), the frame, an empty main. */
export function pageShell(page: ConsolePage, id: string, title: string): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title} · fwseal console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/console/app.css">
<script src="/console/app.js" defer></script>
</head>
<body data-page="${page}" data-id="${id}">
<header class="top">
<a class="brand" href="/">fwseal console</a>
<span id="who" class="who"></span>
<button id="signout" type="button" hidden>Sign out</button>
</header>
<div id="banner" class="banner" role="alert" hidden></div>
<main id="main"><p class="muted">Loading…</p></main>
<noscript><p>The console needs JavaScript. The same figures are in the API: GET /api/overview, /api/campaigns, /api/devices.</p></noscript>
</body>
</html>
`.text;
}
