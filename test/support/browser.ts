/**
 * A real browser for the console tests: Debian's Chromium (/usr/bin/chromium, installed by
 * tools/setup.sh) driven by playwright-core, headless, with no sandbox (the tests run as root). It
 * reaches the loopback only: names resolve to nothing but localhost, background services are off,
 * and every request to another host is aborted. Each page reports what would hide a broken console:
 * uncaught errors and Content-Security-Policy or Trusted Types refusals.
 */
import { type Browser, type BrowserContext, type BrowserContextOptions, chromium, type Page } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';

/** Every playwright wait and the launch itself give up after this long. */
export const BROWSER_TIMEOUT_MS = 20_000;

export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    timeout: BROWSER_TIMEOUT_MS,
    args: [
      '--no-sandbox',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-default-apps',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
    ],
  });
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** What went wrong in the pages of one context (uncaught errors, policy refusals), for the test to assert empty. */
export type Troubles = string[];

/** A context that reaches only loopback URLs; its pages' troubles go into `troubles`. */
export async function loopbackContext(browser: Browser, options: BrowserContextOptions = {}): Promise<{ context: BrowserContext; troubles: Troubles }> {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(BROWSER_TIMEOUT_MS);
  const troubles: Troubles = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (LOOPBACK_HOSTS.has(url.hostname) || url.protocol === 'data:') return route.continue();
    troubles.push(`request off the loopback refused: ${url.origin}`);
    return route.abort('blockedbyclient');
  });
  context.on('page', (page) => watch(page, troubles));
  return { context, troubles };
}

/** Uncaught errors and the console lines Chromium writes when a policy refuses something. */
function watch(page: Page, troubles: Troubles): void {
  page.on('pageerror', (e) => troubles.push(`uncaught: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Trusted Type|Refused to/i.test(m.text())) troubles.push(`policy: ${m.text()}`);
  });
}

/** True when the page scrolls sideways (content wider than the viewport). */
export function overflowsSideways(page: Page): Promise<boolean> {
  return page.evaluate<boolean>('document.documentElement.scrollWidth > document.documentElement.clientWidth');
}
