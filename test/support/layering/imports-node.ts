// A device-side module that breaks the layering rule: the device bundle build must refuse it.
import { readFileSync } from 'node:fs';
export const leak = readFileSync;
