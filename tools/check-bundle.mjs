// Post-build check of the device bundle: one file, no imports, no Node/DOM host objects; prints its size.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const files = ['dist/device/fwseal-verifier.js', 'dist/device/fwseal-verifier.mjs'];
let failed = false;
for (const f of files) {
  const src = readFileSync(f, 'utf8');
  const problems = [];
  if (/\brequire\s*\(/.test(src)) problems.push('require()');
  if (f.endsWith('.js') && /(^|[;\n])\s*import[\s{*]/.test(src)) problems.push('import statement');
  if (/\bfrom\s*["'](node:|fs|path|crypto)/.test(src)) problems.push('Node module import');
  const hostObjects = {
    Buffer: /(?<![\w$.])Buffer\s*[.(]/, TextEncoder: /\bTextEncoder\b/, TextDecoder: /\bTextDecoder\b/,
    process: /(?<![\w$.])process\s*\./, console: /(?<![\w$.])console\s*\./, timers: /(?<![\w$.])set(Timeout|Interval)\s*\(/,
  };
  for (const [name, re] of Object.entries(hostObjects)) if (re.test(src)) problems.push(name);
  if (problems.length) {
    failed = true;
    console.error(`${f}: forbidden in the device bundle: ${problems.join(', ')}`);
  }
}
const js = readFileSync(files[0]);
console.log(`device bundle: ${js.length} bytes, ${gzipSync(js, { level: 9 }).length} bytes gzip`);
process.exit(failed ? 1 : 0);
