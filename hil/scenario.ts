/**
 * Declarative HIL scenarios (hil/scenarios/*.json): a setup (device class, factory release, trust
 * bundle), link faults, steps (upload a release as an update bundle, reset, confirm, trust and
 * revocation updates, manifest pre-check), power cuts attached to steps, and the expected end state,
 * which is asked from the device over the link (fwseal status: slot, version, counter, last code,
 * phase).
 *
 * Signed inputs are built from test key labels, or read from files a team made with the fwseal CLI
 * (a string where a trust bundle, revocation list or manifest goes; `{"manifest", "image"}` where a
 * release goes), relative to the scenario file. Loading checks the file against the schema
 * (hil/scenario-schema.ts: closed objects, so a misspelt key is refused with its path), then reads
 * every file it names: any problem is a USAGE error naming the file and the path into it (IO when a
 * file cannot be read), before a device starts.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { readObjectFile } from '../host/commands/common.js';
import { FwsealError } from '../host/errors.js';
import { type ObjectKind } from '../host/inspect.js';
import { readFileLimited } from '../host/io.js';
import { CODES, type CodeName, codeName } from '../shared/codes.js';
import { type PowerCutPoint } from './device.js';
import { type LinkFaults } from './link.js';
import { SCENARIO_SCHEMA } from './scenario-schema.js';
import { checkSchema, nearest } from './schema-check.js';
import { makeRelease, makeRevocations, makeTrust, type Release, type ReleaseSpec, type RevocationSpec, releaseFromFiles, type TrustSpec } from './world.js';

/** A release built from test keys; unset fields default from `setup`. */
export type ReleaseStep = Partial<ReleaseSpec> & { readonly version: string; readonly counter: number; readonly tamperChunk?: number };
/** A team's own release: a signed manifest and its image, paths relative to the scenario file. */
export type FileRelease = { readonly manifest: string; readonly image: string; readonly tamperChunk?: number };

export const isFileRelease = (r: ReleaseStep | FileRelease | { readonly version: string } | { readonly manifest: string }): r is FileRelease => 'manifest' in r;

/** Cut the cable `afterMs` into the step, for `forMs` (both directions lose everything meanwhile). */
export type CableCut = { readonly afterMs: number; readonly forMs: number };

export type StepExpect = {
  /** The step's outcome: 0 accepted, else the fwseal code (number or name) the device reports. */
  readonly code?: number | string;
  /** The upload resumed after a reset (device answered an offset > 0) and re-sent less than a whole bundle. */
  readonly resumed?: boolean;
};

export type Step =
  | {
      readonly upload: ReleaseStep | FileRelease;
      /** A transparency log folder (absolute once loaded): the bundle carries the log proof (FWSBND2, issue 19). */
      readonly log?: string;
      readonly powerCut?: PowerCutPoint;
      readonly cableCut?: CableCut;
      readonly expect?: StepExpect;
    }
  | { readonly manifest: ReleaseStep | string; readonly expect?: StepExpect }
  | { readonly trust: TrustSpec | string; readonly expect?: StepExpect }
  | { readonly revocations: RevocationSpec | string; readonly expect?: StepExpect }
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
    readonly factory: { readonly version: string; readonly counter: number } | FileRelease;
    readonly trust: TrustSpec | string;
    readonly revocations?: RevocationSpec | string;
    readonly imageSize?: number;
    readonly chunkSize?: number;
    readonly maxTrialBoots?: number;
  };
  readonly link?: { readonly faults?: LinkFaults; readonly latencyMs?: number; readonly seed?: number; readonly chunkBytes?: number; readonly window?: number };
  readonly steps: readonly Step[];
  readonly expect: ExpectedState;
  /** The files the scenario names, read when it loaded: path as written -> bytes. */
  readonly files?: ReadonlyMap<string, Uint8Array>;
};

/** A code given by number or name, as a number (throws on an unknown name). */
export function codeOf(v: number | string): number {
  if (typeof v === 'number') return v;
  const c = (CODES as Record<string, number>)[v];
  if (c === undefined) throw new Error(`unknown fwseal code name ${v}`);
  return c;
}

/** The bytes of a file the scenario names (read when it loaded). */
export function scenarioFile(s: Scenario, path: string): Uint8Array {
  const bytes = s.files?.get(path);
  if (bytes === undefined) throw new Error(`scenario ${s.name}: ${path} was not loaded (load scenarios with loadScenarioFile)`);
  return bytes;
}

/** A release of the scenario: from its files, or built from test keys with defaults from `setup`. */
export function scenarioRelease(s: Scenario, r: ReleaseStep | FileRelease): Release {
  if (isFileRelease(r)) {
    const made = releaseFromFiles(scenarioFile(s, r.manifest), scenarioFile(s, r.image));
    if (!made.ok) throw new Error(`${r.manifest}: ${made.error} ${made.detail ?? ''}`);
    return made.release;
  }
  const trust = s.setup.trust;
  // validateScenario requires `signers` when setup.trust is a file (no labels to default to).
  const signers = r.signers ?? (typeof trust === 'string' ? [] : trust.release.slice(0, trust.releaseThreshold));
  return makeRelease({
    version: r.version,
    counter: r.counter,
    signers,
    deviceClass: r.deviceClass ?? s.setup.deviceClass,
    imageSize: r.imageSize ?? s.setup.imageSize,
    chunkSize: r.chunkSize ?? s.setup.chunkSize,
  });
}

/** Signed bytes of a trust bundle or revocation list: the scenario's file, or built from test keys. */
export const scenarioTrust = (s: Scenario, t: TrustSpec | string): Uint8Array => (typeof t === 'string' ? scenarioFile(s, t) : makeTrust(t));
export const scenarioRevocations = (s: Scenario, r: RevocationSpec | string): Uint8Array => (typeof r === 'string' ? scenarioFile(s, r) : makeRevocations(r));

const usage = (where: string, path: string, what: string) => new FwsealError('USAGE', `${where}: ${path}: ${what}`);

/** Check a parsed scenario against the schema and the rules it cannot say (throws USAGE naming `where` and the path). */
export function validateScenario(s: unknown, where: string): Scenario {
  const errors = checkSchema(SCENARIO_SCHEMA, s);
  if (errors.length > 0) {
    const more = errors.length > 5 ? ` (and ${errors.length - 5} more)` : '';
    throw new FwsealError(
      'USAGE',
      `${where}: ${errors
        .slice(0, 5)
        .map((e) => `${e.path}: ${e.message}`)
        .join('; ')}${more}`,
    );
  }
  const sc = s as Scenario;
  checkCodes(sc, where);
  // Built-in releases are signed by test keys: by default the release keys of setup.trust, which a
  // trust bundle file does not name as labels.
  if (typeof sc.setup.trust === 'string') {
    if (!isFileRelease(sc.setup.factory)) throw usage(where, 'setup.factory', 'with setup.trust from a file, the factory release must be files too');
    sc.steps.forEach((step, i) => {
      const r = 'upload' in step ? step.upload : 'manifest' in step ? step.manifest : null;
      if (r !== null && typeof r !== 'string' && !isFileRelease(r) && r.signers === undefined)
        throw usage(where, `steps[${i}].${'upload' in step ? 'upload' : 'manifest'}.signers`, 'required when setup.trust is a file');
    });
  }
  return sc;
}

/** Every `code` names a code of SPEC.md §9 (the schema checks only its form, so that it does not change with shared/codes.ts). */
function checkCodes(s: Scenario, where: string): void {
  const known = Object.keys(CODES);
  const codes: [string, number | string | undefined][] = [
    ['expect.code', s.expect.code],
    ...s.steps.map((step, i): [string, number | string | undefined] => [`steps[${i}].expect.code`, 'expect' in step ? step.expect?.code : undefined]),
  ];
  for (const [path, c] of codes) {
    if (c === undefined || (typeof c === 'string' ? known.includes(c) : !codeName(c).startsWith('UNKNOWN_'))) continue;
    const near = typeof c === 'string' ? nearest(c, known) : null;
    throw usage(where, path, `${JSON.stringify(c)} is not an fwseal code (SPEC.md §9)${near ? ` (did you mean ${JSON.stringify(near)}?)` : ''}`);
  }
}

type FileRef = { readonly at: string; readonly path: string; readonly kind: ObjectKind | 'image' };

/** Every file a scenario names, with the path into the scenario where it is named. */
function fileRefs(s: Scenario): FileRef[] {
  const refs: FileRef[] = [];
  const release = (at: string, r: FileRelease) =>
    refs.push({ at: `${at}.manifest`, path: r.manifest, kind: 'manifest' }, { at: `${at}.image`, path: r.image, kind: 'image' });
  if (typeof s.setup.trust === 'string') refs.push({ at: 'setup.trust', path: s.setup.trust, kind: 'trust-bundle' });
  if (typeof s.setup.revocations === 'string') refs.push({ at: 'setup.revocations', path: s.setup.revocations, kind: 'revocation-list' });
  if (isFileRelease(s.setup.factory)) release('setup.factory', s.setup.factory);
  s.steps.forEach((step, i) => {
    const at = `steps[${i}]`;
    if ('upload' in step && isFileRelease(step.upload)) release(`${at}.upload`, step.upload);
    if ('manifest' in step && typeof step.manifest === 'string') refs.push({ at: `${at}.manifest`, path: step.manifest, kind: 'manifest' });
    if ('trust' in step && typeof step.trust === 'string') refs.push({ at: `${at}.trust`, path: step.trust, kind: 'trust-bundle' });
    if ('revocations' in step && typeof step.revocations === 'string') refs.push({ at: `${at}.revocations`, path: step.revocations, kind: 'revocation-list' });
  });
  return refs;
}

/** Images the harness holds in memory whole (the bundle is built from them). */
const MAX_IMAGE_BYTES = 1 << 30;

function readInputs(s: Scenario, dir: string, where: string): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  for (const ref of fileRefs(s)) {
    if (files.has(ref.path)) continue;
    const full = resolve(dir, ref.path);
    try {
      files.set(ref.path, ref.kind === 'image' ? readFileLimited(full, MAX_IMAGE_BYTES, 'image') : readObjectFile(full, ref.kind));
    } catch (e) {
      if (!(e instanceof FwsealError)) throw e;
      throw new FwsealError(e.codeName === 'IO' ? 'IO' : 'USAGE', `${where}: ${ref.at}: ${e.message}`);
    }
  }
  // A file release must make an update bundle: the image length is the manifest's (SPEC.md §13.5).
  for (const [i, r] of [s.setup.factory, ...s.steps.map((step) => ('upload' in step ? step.upload : null))].entries()) {
    if (r === null || !isFileRelease(r)) continue;
    const made = releaseFromFiles(files.get(r.manifest) as Uint8Array, files.get(r.image) as Uint8Array);
    if (!made.ok)
      throw usage(where, i === 0 ? 'setup.factory' : `steps[${i - 1}].upload`, `${r.manifest}, ${r.image}: ${made.error} ${made.detail ?? ''}`.trim());
  }
  return files;
}

export function loadScenarioFile(path: string): Scenario {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const io = (e as NodeJS.ErrnoException).code !== undefined;
    throw new FwsealError(io ? 'IO' : 'USAGE', `${path}: ${(e as Error).message}`);
  }
  const where = basename(path);
  const s = validateScenario(parsed, where);
  // Log folders are read when the bundle is built (the proof depends on the device's stored checkpoint): resolved here.
  const steps = s.steps.map((step) => ('upload' in step && step.log !== undefined ? { ...step, log: resolve(dirname(path), step.log) } : step));
  return { ...s, steps, files: readInputs(s, dirname(path), where) };
}

/**
 * Scenarios from `spec`: a directory (every *.json in it, sorted), or a comma-separated list of
 * names (looked up in `dir`) or file paths. Names must be unique (they name device directories and
 * JUnit cases).
 */
export function loadScenarios(spec: string | undefined, dir: string): Scenario[] {
  const fromDir = (d: string) =>
    readdirSync(d)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => loadScenarioFile(join(d, f)));
  const list =
    spec === undefined
      ? fromDir(dir)
      : !spec.includes(',') && statSafe(spec)?.isDirectory()
        ? fromDir(spec)
        : spec
            .split(',')
            .map((name) => name.trim())
            .filter(Boolean)
            .map((name) => {
              if (name.endsWith('.json')) return loadScenarioFile(name);
              const path = join(dir, `${name}.json`);
              if (!statSafe(path)) throw new FwsealError('USAGE', `no scenario ${name} in ${dir}`);
              return loadScenarioFile(path);
            });
  const seen = new Set<string>();
  for (const s of list) {
    if (seen.has(s.name)) throw new FwsealError('USAGE', `two scenarios are named ${s.name}`);
    seen.add(s.name);
  }
  return list;
}

function statSafe(p: string) {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}

export type { CodeName };
