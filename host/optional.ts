/**
 * Optional packages (package.json optionalDependencies): native or heavy modules that only some
 * commands need (better-sqlite3, serialport, mqtt, the QuickJS WASM build). They are imported on
 * first use, so keygen, trust, pack, sign, attach, verify, revoke, inspect and `device run` without
 * MQTT install and start with none of them (`npm install --omit=optional`, no compiler).
 */
import { type CodeName } from '../shared/codes.js';
import { FwsealError } from './errors.js';

/** The code of "this command needs a package that is not installed" (SPEC.md §9): exit status 2, fixed by installing it. */
export const MISSING_PACKAGE_CODE: Exclude<CodeName, 'OK'> = 'PACKAGE_MISSING';

/** Whether `e` says that `pkg` itself (not something it needs) could not be found. */
export function isMissingPackage(e: unknown, pkg: string): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false;
  const message = (e as Error).message;
  return message.includes(`'${pkg}'`) || message.includes(`"${pkg}"`) || message.includes(`/node_modules/${pkg}/`);
}

/**
 * `load()` (an `import('pkg')` or an `import()` of the module that imports it statically), or a
 * FwsealError naming the missing package and what needs it. Any other failure is rethrown as is.
 */
export async function loadOptional<T>(pkg: string, neededFor: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (e) {
    if (!isMissingPackage(e, pkg)) throw e;
    throw new FwsealError(MISSING_PACKAGE_CODE, `${neededFor} needs the optional package ${pkg}, which is not installed (npm install ${pkg})`);
  }
}
