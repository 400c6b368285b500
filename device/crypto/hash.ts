/**
 * The pure-JS hash defaults of the device verifier (a platform may replace them: platform.ts).
 * Our own implementations, shaped for interpreters (SPEC.md §10); checked against FIPS 180-4
 * vectors and node:crypto in test/sha.test.ts.
 */
export { sha256 } from './sha256.js';
export { sha512 } from './sha512.js';
