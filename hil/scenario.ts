/**
 * Declarative HIL scenarios (hil/scenarios/*.json): a setup (device class, factory release, trust
 * bundle), link faults, steps (upload a release as an update bundle, reset, confirm, trust and
 * revocation updates, manifest pre-check), power cuts attached to steps, and the expected end state,
 * which is asked from the device over the link (fwseal status: slot, version, counter, last code,
 * phase). Loading validates the file and reports what is wrong with a path into it.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { CODES, type CodeName } from '../shared/codes.js';
import { type PowerCutPoint } from './device.js';
import { type LinkFaults } from './link.js';
import { type ReleaseSpec, type RevocationSpec, type TrustSpec } from './world.js';

export type ReleaseStep = Partial<ReleaseSpec> & { readonly version: string; readonly counter: number; readonly tamperChunk?: number };

/** Cut the cable `afterMs` into the step, for `forMs` (both directions lose everything meanwhile). */
export type CableCut = { readonly afterMs: number; readonly forMs: number };

export type StepExpect = {
  /** The step's outcome: 0 accepted, else the fwseal code (number or name) the device reports. */
  readonly code?: number | string;
  /** The upload resumed after a reset (device answered an offset > 0) and re-sent less than a whole bundle. */
  readonly resumed?: boolean;
};

export type Step =
  | { readonly upload: ReleaseStep; readonly powerCut?: PowerCutPoint; readonly cableCut?: CableCut; readonly expect?: StepExpect }
  | { readonly manifest: ReleaseStep; readonly expect?: StepExpect }
  | { readonly trust: TrustSpec; readonly expect?: StepExpect }
  | { readonly revocations: RevocationSpec; readonly expect?: StepExpect }
  | { readonly reset: true }
  | { readonly confirm: true; readonly powerCut?: PowerCutPoint; readonly expect?: StepExpect };

export type ExpectedState = {
  readonly slot?: number;
  readonly version?: string;
  readonly counter?: number;
  readonly code?: number | string;
  readonly phase?: string;
  readonly trust?: number;
  readonly revocation?: number;
};

export type Scenario = {
  readonly name: string;
  readonly description?: string;
  readonly setup: {
    readonly deviceClass: string;
    readonly factory: { readonly version: string; readonly counter: number };
    readonly trust: TrustSpec;
    readonly revocations?: RevocationSpec;
    readonly imageSize?: number;
    readonly chunkSize?: number;
    readonly maxTrialBoots?: number;
  };
  readonly link?: { readonly faults?: LinkFaults; readonly latencyMs?: number; readonly seed?: number; readonly chunkBytes?: number; readonly window?: number };
  readonly steps: readonly Step[];
  readonly expect: ExpectedState;
};

/** A code given by number or name, as a number (throws on an unknown name). */
export function codeOf(v: number | string): number {
  if (typeof v === 'number') return v;
  const c = (CODES as Record<string, number>)[v];
  if (c === undefined) throw new Error(`unknown fwseal code name ${v}`);
  return c;
}

function check(cond: unknown, where: string, what: string): asserts cond {
  if (!cond) throw new Error(`${where}: ${what}`);
}

const STEP_KINDS = ['upload', 'manifest', 'trust', 'revocations', 'reset', 'confirm'];

/** Validate a parsed scenario (throws Error naming the file and the field). */
export function validateScenario(s: unknown, where: string): Scenario {
  check(s !== null && typeof s === 'object', where, 'not an object');
  // A JSON document checked field by field below: untyped until validated.
  // biome-ignore lint/suspicious/noExplicitAny: the checks below are what give it a type.
  const o = s as Record<string, any>;
  check(typeof o.name === 'string' && /^[a-z0-9-]{1,64}$/.test(o.name), where, '"name" must be 1..64 characters of [a-z0-9-]');
  check(o.setup && typeof o.setup.deviceClass === 'string', where, '"setup.deviceClass" is required');
  check(
    o.setup.factory && typeof o.setup.factory.version === 'string' && Number.isInteger(o.setup.factory.counter),
    where,
    '"setup.factory" needs version and counter',
  );
  check(o.setup.trust && Array.isArray(o.setup.trust.root) && Array.isArray(o.setup.trust.release), where, '"setup.trust" needs root and release key labels');
  check(Array.isArray(o.steps), where, '"steps" must be an array');
  // biome-ignore lint/suspicious/noExplicitAny: one step of the unvalidated document, checked below.
  o.steps.forEach((step: any, i: number) => {
    const kinds = Object.keys(step ?? {}).filter((k) => STEP_KINDS.includes(k));
    check(kinds.length === 1, `${where} steps[${i}]`, `exactly one of ${STEP_KINDS.join(', ')}`);
    if (step.upload || step.manifest) {
      const r = step.upload ?? step.manifest;
      check(typeof r.version === 'string' && Number.isInteger(r.counter), `${where} steps[${i}]`, 'a release needs version and counter');
    }
    if (step.expect?.code !== undefined) codeOf(step.expect.code);
    if (step.cableCut)
      check(Number.isFinite(step.cableCut.afterMs) && step.cableCut.forMs > 0, `${where} steps[${i}].cableCut`, 'needs afterMs >= 0 and forMs > 0');
    if (step.powerCut)
      check(
        ['chunk', 'write', 'commit', 'confirm'].includes(step.powerCut.at),
        `${where} steps[${i}].powerCut`,
        '"at" must be chunk, write, commit or confirm',
      );
  });
  check(o.expect && typeof o.expect === 'object', where, '"expect" is required');
  if (o.expect.code !== undefined) codeOf(o.expect.code);
  return o as Scenario;
}

export function loadScenarioFile(path: string): Scenario {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  return validateScenario(parsed, basename(path));
}

/**
 * Scenarios from `spec`: a directory (every *.json in it, sorted), or a comma-separated list of
 * names (looked up in `dir`) or file paths.
 */
export function loadScenarios(spec: string | undefined, dir: string): Scenario[] {
  const fromDir = (d: string) =>
    readdirSync(d)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => loadScenarioFile(join(d, f)));
  if (spec === undefined) return fromDir(dir);
  if (!spec.includes(',') && statSafe(spec)?.isDirectory()) return fromDir(spec);
  return spec
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean)
    .map((name) => {
      if (name.endsWith('.json')) return loadScenarioFile(name);
      const path = join(dir, `${name}.json`);
      if (!statSafe(path)) throw new Error(`no scenario ${name} in ${dir}`);
      return loadScenarioFile(path);
    });
}

function statSafe(p: string) {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}

export type { CodeName };
