/**
 * HIL scenarios a QA team can trust and extend (issue 18 item 3): the schema refuses a misspelt key
 * with its path (the loader's checker and ajv give the same verdicts on the same schema), every
 * shipped scenario validates, the generated schema file and README field reference are current, a
 * scenario's files are read and checked when it loads, and a scenario made only of files from the
 * fwseal CLI (trust.cbor, signed manifests, images: no test keys) runs end to end on one simulated
 * device.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultScenarioDir, HIL_COMMANDS } from '../hil/cli.js';
import { provisionDevice } from '../hil/provision.js';
import { loadScenarioFile, loadScenarios, validateScenario } from '../hil/scenario.js';
import { README_FILE, SCHEMA_JSON_FILE, schemaJson, withFieldReference } from '../hil/scenario-docs.js';
import { SCENARIO_SCHEMA } from '../hil/scenario-schema.js';
import { checkSchema } from '../hil/schema-check.js';
import { FwsealError } from '../host/errors.js';
import { CODES, type CodeName } from '../shared/codes.js';
import { runCli } from './support/cli-run.js';
import { type CliWorld, expectOk, makeCliWorld } from './support/cli-world.js';
import { detBytes } from './support/fixtures.js';

const ajv = new Ajv2020({ allErrors: true, strict: true });
const ajvValid = ajv.compile(SCENARIO_SCHEMA as object);
const SHIPPED = readdirSync(defaultScenarioDir()).filter((f) => f.endsWith('.json'));
const shipped = (name: string) => JSON.parse(readFileSync(join(defaultScenarioDir(), name), 'utf8'));

/** The FwsealError code a call throws, or 'none'. */
function codeOf(f: () => unknown): CodeName | 'none' {
  try {
    f();
    return 'none';
  } catch (e) {
    if (e instanceof FwsealError) return e.codeName;
    throw e;
  }
}

function refusal(doc: unknown): string {
  try {
    validateScenario(doc, 'doc.json');
  } catch (e) {
    expect((e as FwsealError).codeName).toBe('USAGE');
    return (e as Error).message;
  }
  throw new Error('accepted');
}

/** A shipped scenario changed by `edit` (a deep copy). */
function mutant(name: string, edit: (s: any) => void): unknown {
  const s = structuredClone(shipped(name));
  edit(s);
  return s;
}

const MUTANTS: [string, unknown][] = [
  ['misspelt key in expect', mutant('good-update.json', (s) => (s.expect.verison = '2.0.0'))],
  ['misspelt step kind', mutant('good-update.json', (s) => (s.steps[0] = { uplaod: s.steps[0].upload }))],
  ['two step kinds', mutant('good-update.json', (s) => (s.steps[1] = { reset: true, confirm: true }))],
  ['misspelt key in a step expect', mutant('power-cut-mid-write.json', (s) => (s.steps[0].expect.resumd = true))],
  ['missing counter', mutant('good-update.json', (s) => delete s.steps[0].upload.counter)],
  ['wrong type', mutant('good-update.json', (s) => (s.expect.counter = '2'))],
  ['bad power cut point', mutant('power-cut-mid-write.json', (s) => (s.steps[0].powerCut.at = 'wirte'))],
  ['empty signers', mutant('threshold-one-short.json', (s) => (s.steps[0].upload.signers = []))],
  ['trust neither labels nor a file', mutant('good-update.json', (s) => (s.setup.trust = 2))],
  ['a file release missing its image', mutant('good-update.json', (s) => (s.steps[0].upload = { manifest: 'M.cose' }))],
  ['unknown top-level key', mutant('good-update.json', (s) => (s.expected = s.expect))],
  ['negative cable cut', mutant('cable-cut-mid-upload.json', (s) => (s.steps[0].cableCut.forMs = 0))],
];

const VALID_VARIANTS: [string, unknown][] = [
  [
    'files everywhere',
    mutant('good-update.json', (s) => {
      s.setup.trust = 'trust.cbor';
      s.setup.factory = { manifest: 'm1.cose', image: 'fw1.bin' };
      s.steps[0].upload = { manifest: 'm2.cose', image: 'fw2.bin', tamperChunk: 1 };
      s.steps.push({ trust: 'trust2.cbor', expect: { code: 'OK' } }, { revocations: 'rl.cbor' }, { manifest: 'm2.cose' });
    }),
  ],
  ['an editor $schema key', mutant('good-update.json', (s) => (s.$schema = '../scenario-schema.json'))],
];

describe('the scenario schema', () => {
  it('refuses a misspelt optional key with its path and the key it meant, as USAGE', () => {
    expect(refusal(MUTANTS[0][1])).toContain('expect.verison: unknown key (did you mean "version"?)');
    expect(refusal(MUTANTS[1][1])).toContain('steps[0].uplaod: unknown key (did you mean "upload"?)');
    expect(refusal(MUTANTS[3][1])).toContain('steps[0].expect.resumd: unknown key (did you mean "resumed"?)');
    expect(refusal(MUTANTS[6][1])).toContain('steps[0].powerCut.at: "wirte" is not one of');
  });

  it('refuses an unknown code name with its path', () => {
    const m = mutant('trust-rotation.json', (s) => (s.steps[1].expect.code = 'THRESHOLD_NOT_MEET'));
    expect(refusal(m)).toContain('steps[1].expect.code: "THRESHOLD_NOT_MEET" is not an fwseal code');
    expect(refusal(mutant('good-update.json', (s) => (s.expect.code = 998)))).toContain('expect.code');
  });

  it('every shipped scenario validates, with the loader and with ajv', () => {
    expect(SHIPPED.length).toBeGreaterThanOrEqual(15);
    expect(loadScenarios(undefined, defaultScenarioDir()).map((s) => `${s.name}.json`)).toEqual(SHIPPED.sort());
    for (const f of SHIPPED) expect(ajvValid(shipped(f)), `${f}: ${JSON.stringify(ajvValid.errors)}`).toBe(true);
  });

  it('the loader checker and ajv agree on every shipped scenario, every mutant and the file forms', () => {
    const docs: [string, unknown, boolean][] = [
      ...SHIPPED.map((f): [string, unknown, boolean] => [f, shipped(f), true]),
      ...MUTANTS.map(([n, d]): [string, unknown, boolean] => [n, d, false]),
      ...VALID_VARIANTS.map(([n, d]): [string, unknown, boolean] => [n, d, true]),
    ];
    for (const [name, doc, valid] of docs) {
      expect(checkSchema(SCENARIO_SCHEMA, doc).length === 0, name).toBe(valid);
      expect(ajvValid(doc), name).toBe(valid);
    }
  });

  it('the checker refuses a schema keyword it does not implement rather than skipping it', () => {
    expect(() => checkSchema({ type: 'object', if: {} } as never, {})).toThrow(/keyword if/);
  });

  it('hil/scenario-schema.json and the README field reference are generated from the schema (npx tsx hil/scenario-docs.ts)', () => {
    expect(readFileSync(SCHEMA_JSON_FILE, 'utf8'), 'hil/scenario-schema.json is stale').toBe(schemaJson());
    const readme = readFileSync(README_FILE, 'utf8');
    expect(withFieldReference(readme) === readme, 'the field reference in hil/README.md is stale').toBe(true);
    for (const key of ['verison', 'tamperChunk', 'noiseBurstBytes']) expect(readme.includes(`\`${key}\``)).toBe(key !== 'verison');
  });
});

describe('scenarios that name real files', () => {
  let world: CliWorld;
  let scenarioDir: string;

  /** Write scenarios/NAME.json (paths in it are relative to scenarios/) and return its path. */
  const scenario = (name: string, doc: object) => {
    const path = join(scenarioDir, `${name}.json`);
    writeFileSync(path, JSON.stringify({ name, ...doc }));
    return path;
  };
  const FILES_SETUP = { deviceClass: 'acme-sensor', trust: '../trust.cbor', factory: { manifest: '../m1.cose', image: '../fw1.bin' } };

  beforeAll(async () => {
    execFileSync('socat', ['-V'], { stdio: 'ignore' });
    world = await makeCliWorld(['A', 'B', 'R1', 'R2']);
    const roles = ['--root', 'A.pub', '--root', 'B.pub', '--root-threshold', '2', '--release', 'R1.pub', '--release', 'R2.pub', '--release-threshold', '2'];
    expectOk(await world.run('trust', 'init', ...roles, '--sign', 'A.key', '--sign', 'B.key', '--out', 'trust.cbor'));
    for (const [v, counter] of [
      ['1', '1'],
      ['2', '2'],
    ]) {
      world.write(`fw${v}.bin`, detBytes(20_000, `acme firmware ${v}`));
      const pack = ['pack', `fw${v}.bin`, '--device-class', 'acme-sensor', '--version', `${v}.0.0`, '--counter', counter, '--out', `m${v}.cose`];
      expectOk(await world.run(...pack));
      for (const k of ['R1', 'R2']) expectOk(await world.run('sign', `m${v}.cose`, '--key', `${k}.key`));
    }
    scenarioDir = join(world.dir, 'scenarios');
    mkdirSync(scenarioDir);
  });
  afterAll(() => world?.close());

  it('reads them relative to the scenario file when it loads; unreadable is IO, the wrong kind or size is USAGE', () => {
    const ok = loadScenarioFile(scenario('ok', { setup: FILES_SETUP, steps: [{ upload: { manifest: '../m2.cose', image: '../fw2.bin' } }], expect: {} }));
    expect(ok.files?.get('../trust.cbor')).toEqual(world.bytes('trust.cbor'));
    const missing = scenario('missing', { setup: { ...FILES_SETUP, trust: 'trust.cbor' }, steps: [], expect: {} });
    expect(codeOf(() => loadScenarioFile(missing))).toBe('IO');
    const wrongKind = scenario('wrong-kind', { setup: { ...FILES_SETUP, trust: '../m1.cose' }, steps: [], expect: {} });
    expect(codeOf(() => loadScenarioFile(wrongKind))).toBe('USAGE');
    const wrongImage = scenario('wrong-image', { setup: FILES_SETUP, steps: [{ upload: { manifest: '../m2.cose', image: '../m1.cose' } }], expect: {} });
    expect(codeOf(() => loadScenarioFile(wrongImage))).toBe('USAGE');
    // A team's trust bundle names no test keys: built-in releases must say who signs them.
    const unsigned = scenario('unsigned', { setup: FILES_SETUP, steps: [{ upload: { version: '3.0.0', counter: 3 } }], expect: {} });
    expect(codeOf(() => loadScenarioFile(unsigned))).toBe('USAGE');
  });

  it('runs end to end on one simulated device: a team release from files installs, trial-boots and is confirmed', async () => {
    const path = scenario('acme-2-0-installs', {
      setup: FILES_SETUP,
      steps: [
        // The same release with one chunk flipped in transit: the device refuses it.
        { upload: { manifest: '../m2.cose', image: '../fw2.bin', tamperChunk: 2 }, expect: { code: 'CHUNK_DIGEST_MISMATCH' } },
        { upload: { manifest: '../m2.cose', image: '../fw2.bin' } },
        { reset: true },
        { confirm: true },
      ],
      expect: { slot: 1, version: '2.0.0', counter: 2, code: 'OK', phase: 'idle' },
    });
    const r = await runCli(['hil', 'run', '--devices', '1', '--runtime', 'node', '--baud', '460800', '--scenarios', path], HIL_COMMANDS);
    expect(r.status, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/1 passed, 0 failed/);
  });

  it('--port: a board provisioned with the team trust bundle runs the file scenario; a scenario written for another trust version runs nothing there', async () => {
    // The "board": a device process the harness did not start (as in test/hil.test.ts), provisioned
    // with the team's files only; restarted by this test when it resets.
    const dir = join(world.dir, 'board');
    const provisioned = provisionDevice(dir, {
      deviceClass: 'acme-sensor',
      trust: world.bytes('trust.cbor'),
      envelope: world.bytes('m1.cose'),
      image: world.bytes('fw1.bin'),
    });
    expect(provisioned.ok).toBe(true);
    const host = join(world.dir, 'board-host');
    const board = join(world.dir, 'board-dev');
    const socat = spawn('socat', [`pty,raw,echo=0,link=${host}`, `pty,raw,echo=0,link=${board}`], { stdio: 'ignore' });
    let device: ChildProcess | null = null;
    let stopped = false;
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const start = () => {
      device = spawn(process.execPath, ['--import', tsx, join(__dirname, '..', 'hil', 'device-main.ts'), '--dir', dir, '--port', board, '--runtime', 'node'], {
        stdio: 'ignore',
      });
      device.once('exit', () => {
        if (!stopped) start();
      });
    };
    try {
      for (let i = 0; i < 100 && !(existsSync(host) && existsSync(board)); i++) await new Promise((r) => setTimeout(r, 20));
      start();
      const files = scenario('board-installs', {
        setup: FILES_SETUP,
        steps: [{ upload: { manifest: '../m2.cose', image: '../fw2.bin' } }, { reset: true }, { confirm: true }],
        expect: { version: '2.0.0', counter: 2, code: 'OK', phase: 'idle' },
      });
      const { name: _, ...good } = shipped('good-update.json');
      const other = scenario('written-for-trust-v2', { ...good, setup: { ...good.setup, trust: { ...good.setup.trust, version: 2 } } });
      const r = await runCli(['hil', 'run', '--port', host, '--baud', '460800', '--scenarios', `${files},${other}`], HIL_COMMANDS);
      expect(r.out, r.err).toMatch(/1 passed, 1 failed/);
      expect(r.out).toMatch(/written-for-trust-v2 \[dev 0\][^\n]*setup\.trust: the board holds trust bundle v1/);
      expect(r.status).toBe(1);
    } finally {
      stopped = true;
      (device as ChildProcess | null)?.kill('SIGKILL');
      socat.kill('SIGKILL');
    }
  });

  it('a misspelt key fails the run before any device starts: exit 2, USAGE', async () => {
    const path = scenario('typo', { setup: FILES_SETUP, steps: [], expect: { verison: '2.0.0' } });
    const r = await runCli(['hil', 'run', '--devices', '1', '--runtime', 'node', '--scenarios', path], HIL_COMMANDS);
    expect(r.status).toBe(2);
    expect(r.err).toContain(`(code ${CODES.USAGE})`);
  });
});
