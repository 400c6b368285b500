/**
 * `npm run test:fast`, the inner loop: every suite that starts no broker, pty, child process or
 * QuickJS VM. Decided from the test code a suite reaches (the suite and the test/support files it
 * imports; so a new suite is placed without a list to keep): spawning processes, mosquitto, an MQTT
 * client, a serial port, the HIL rig, QuickJS or the demo makes it slow. `npm test` runs everything.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

const SLOW =
  /from '(mqtt|serialport|node:child_process|quickjs-emscripten-core|@jitl\/[^']+|aedes)'|support\/(mosquitto|quickjs)\.js|quickjs-verifier\.js|hil\/(rig|runner|cli)\.js|tools\/demo/;

const root = dirname(fileURLToPath(import.meta.url));

function reachesSlow(file: string, seen = new Set<string>()): boolean {
  if (seen.has(file)) return false;
  seen.add(file);
  let src: string;
  try {
    src = readFileSync(file, 'utf8');
  } catch {
    return false;
  }
  if (SLOW.test(src)) return true;
  for (const m of src.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g)) {
    const next = resolve(dirname(file), `${m[1]}.ts`);
    // Only test code is followed: source modules may import such things without using them here.
    if (next.startsWith(join(root, 'test')) && reachesSlow(next, seen)) return true;
  }
  return false;
}

const fast = readdirSync(join(root, 'test'))
  .filter((f) => f.endsWith('.test.ts') && !reachesSlow(join(root, 'test', f)))
  .map((f) => `test/${f}`);

// Not mergeConfig: it would append to the base's include list instead of replacing it.
export default defineConfig({ test: { ...base.test, include: fast } });
