/**
 * The console's one script (`GET /console/app.js`, SPEC.md §12.9 "Web console"): its three parts
 * in one strict-mode function, with the names of the codes of SPEC.md §9 so that a refusal reads
 * `ROLLBACK (code 3xx)`, not a bare number. Built once.
 */
import { CODES } from '../../../shared/codes.js';
import { SCRIPT_CHARTS } from './script-charts.js';
import { SCRIPT_CORE } from './script-core.js';
import { SCRIPT_PAGES } from './script-pages.js';

let built: string | undefined;

export function consoleScript(): string {
  if (built === undefined) {
    const names = Object.fromEntries(Object.entries(CODES).map(([name, code]) => [code, name]));
    built = ['(function () {', "'use strict';", `var CODE_NAMES = ${JSON.stringify(names)};`, SCRIPT_CORE, SCRIPT_CHARTS, SCRIPT_PAGES, '})();', ''].join('\n');
  }
  return built;
}
