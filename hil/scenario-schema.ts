/**
 * The JSON Schema (draft 2020-12) of HIL scenario files (hil/scenarios/*.json), as one object. It is
 * the single source of three things: the check every scenario passes when it loads (hil/scenario.ts,
 * with the small checker of hil/schema-check.ts, since the hil binary ships without ajv),
 * hil/scenario-schema.json (for editors: `"$schema": "../scenario-schema.json"`) and the field
 * reference in hil/README.md; `npx tsx hil/scenario-docs.ts` writes both, and
 * test/hil-scenario.test.ts fails while either is stale.
 *
 * Every object is closed (`additionalProperties: false`): a misspelt optional key is an error with
 * its path, never an assertion that silently vanishes (issue 18).
 */
export type JsonSchema = {
  readonly $schema?: string;
  readonly $id?: string;
  readonly $defs?: Readonly<Record<string, JsonSchema>>;
  readonly $ref?: string;
  readonly title?: string;
  readonly description?: string;
  readonly type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: false;
  readonly items?: JsonSchema;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly enum?: readonly (string | number)[];
  readonly const?: string | number | boolean;
  readonly oneOf?: readonly JsonSchema[];
};

const ref = (name: string): JsonSchema => ({ $ref: `#/$defs/${name}` });
const int = (description: string, minimum = 0, maximum?: number): JsonSchema => ({
  type: 'integer',
  minimum,
  ...(maximum !== undefined ? { maximum } : {}),
  description,
});
const text = (description: string, maxLength = 64): JsonSchema => ({ type: 'string', minLength: 1, maxLength, description });
const file = (title: string, description: string): JsonSchema => ({ title, type: 'string', minLength: 1, description });
const closed = (title: string, description: string, properties: Record<string, JsonSchema>, required: readonly string[]): JsonSchema => ({
  title,
  description,
  type: 'object',
  properties,
  required,
  additionalProperties: false,
});

const FILES = 'A path relative to the scenario file.';

/** A release built from test keys: the fields a factory release needs, then the optional ones. */
const releaseCore = {
  version: text('Release version string (manifest `version`).'),
  counter: int('Security counter (manifest `securityCounter`).', 0, 0xffffffff),
};
const releaseOptions = {
  signers: { ...ref('labels'), description: 'Release keys that sign it (default: the first `releaseThreshold` of `setup.trust.release`).' },
  deviceClass: text('Device class of the manifest (default: `setup.deviceClass`).'),
  imageSize: int('Bytes of the synthetic image (default: `setup.imageSize`, else 16384).', 1),
  chunkSize: int('Chunk size of the manifest (default: `setup.chunkSize`, else 1024).', 1),
};
const tamperChunk = int('Flip one byte of this chunk in the update bundle after signing (the device must refuse it).');
const fileRelease = {
  manifest: file('manifest file', `A signed manifest (\`M.cose\`: \`fwseal pack\` + \`fwseal sign\`). ${FILES}`),
  image: file('image file', `The image the manifest describes (\`fw.bin\`); its length must be the manifest's \`imageSize\`. ${FILES}`),
};
const stepExpect = { ...ref('stepExpect'), description: 'What the step must end with (default: `{"code": 0}`, accepted).' };

const $defs: Record<string, JsonSchema> = {
  label: {
    title: 'test key label',
    type: 'string',
    pattern: '^[A-Za-z0-9._-]{1,64}$',
    description: 'A built-in test key: the same label is the same Ed25519 key in every run (derived from a public seed, hil/world.ts): for test rigs only.',
  },
  labels: { type: 'array', items: ref('label'), minItems: 1, description: 'Test key labels.' },
  code: {
    title: 'fwseal code',
    description: 'An fwseal code of SPEC.md §9, by number or by name (`0` or `"OK"` is success).',
    // Known codes are checked when a scenario loads (hil/scenario.ts), not listed here: shared/codes.ts
    // grows, and the generated files should not go stale with it.
    oneOf: [
      { title: 'code number', type: 'integer', minimum: 0, maximum: 999 },
      { title: 'code name', type: 'string', pattern: '^[A-Z][A-Z0-9_]{1,40}$' },
    ],
  },
  trustSpec: closed(
    'trust bundle from test keys',
    'A trust bundle built from test key labels and signed by them.',
    {
      version: int('Bundle version (default 1).', 1),
      root: { ...ref('labels'), description: 'Root keys.' },
      rootThreshold: int('Root signatures required.', 1),
      release: { ...ref('labels'), description: 'Release keys.' },
      releaseThreshold: int('Release signatures required.', 1),
      signers: { ...ref('labels'), description: 'Who signs the bundle (default: the root keys).' },
    },
    ['root', 'rootThreshold', 'release', 'releaseThreshold'],
  ),
  trust: {
    description: 'A trust bundle: built from test keys, or a file.',
    oneOf: [ref('trustSpec'), file('trust bundle file', `A signed trust bundle (\`trust.cbor\`: \`fwseal trust init\` / \`trust rotate\`). ${FILES}`)],
  },
  revocationSpec: closed(
    'revocation list from test keys',
    'A revocation list built from test key labels.',
    {
      version: int('List version.', 1),
      keys: { type: 'array', items: ref('label'), description: 'Revoked keys (default: none).' },
      signers: { ...ref('labels'), description: 'Root keys that sign the list.' },
    },
    ['version', 'signers'],
  ),
  revocations: {
    description: 'A revocation list: built from test keys, or a file.',
    oneOf: [ref('revocationSpec'), file('revocation list file', `A signed revocation list (\`fwseal revoke\`). ${FILES}`)],
  },
  release: closed('release from test keys', 'A synthetic image and its manifest, signed with test keys.', { ...releaseCore, ...releaseOptions }, [
    'version',
    'counter',
  ]),
  uploadRelease: closed(
    'release from test keys',
    'A synthetic image and its manifest, signed with test keys.',
    { ...releaseCore, ...releaseOptions, tamperChunk },
    ['version', 'counter'],
  ),
  fileRelease: closed('release from files', "A team's own signed manifest and image.", { ...fileRelease, tamperChunk }, ['manifest', 'image']),
  factory: {
    description: 'The release in slot A, confirmed, when the simulated device is provisioned.',
    oneOf: [
      closed('factory release from test keys', 'Signed by the first `releaseThreshold` keys of `setup.trust.release`.', releaseCore, ['version', 'counter']),
      closed('factory release from files', "A team's own signed manifest and image.", fileRelease, ['manifest', 'image']),
    ],
  },
  powerCut: {
    description: "Cut the simulated device's power during the step (scenarios with one are skipped on `--port`).",
    oneOf: [
      closed(
        'power cut after chunks',
        'After the device took `after` chunks.',
        { at: { const: 'chunk', description: 'Count chunks.' }, after: int('Chunks taken before the cut.') },
        ['at', 'after'],
      ),
      closed(
        'power cut in a flash operation',
        'Before (or torn in the middle of) the `op`-th flash operation of a write, a commit or a confirm.',
        {
          at: { type: 'string', enum: ['write', 'commit', 'confirm'], description: 'Which kind of operation.' },
          op: int('Which flash operation (default 1).', 1),
          torn: { type: 'boolean', description: 'Tear the operation (half written) instead of cutting before it.' },
        },
        ['at'],
      ),
    ],
  },
  cableCut: closed(
    'cable cut',
    'Both directions lose everything for a while.',
    {
      afterMs: { type: 'number', minimum: 0, description: 'Milliseconds into the step.' },
      forMs: { type: 'number', exclusiveMinimum: 0, description: 'How long.' },
    },
    ['afterMs', 'forMs'],
  ),
  stepExpect: closed(
    'step expectation',
    'The outcome of one step.',
    {
      code: { ...ref('code'), description: 'The fwseal code the device answers (0: accepted).' },
      resumed: { type: 'boolean', description: 'The upload resumed after a reset: the device skipped bytes its flash already held.' },
    },
    [],
  ),
  uploadStep: closed(
    'upload step',
    'Upload a release as an update bundle (SMP image upload, SPEC.md §13.5).',
    {
      upload: { oneOf: [ref('uploadRelease'), ref('fileRelease')], description: 'The release: from test keys, or files.' },
      log: file(
        'transparency log folder',
        `For a device whose trust bundle requires log proofs (issue 19): a log (\`fwseal log init\`) whose newest signed checkpoint holds the release's manifest. The bundle is then FWSBND2, carrying the log proof from the checkpoint size the device's status reports (SPEC.md §13.5). ${FILES}`,
      ),
      powerCut: ref('powerCut'),
      cableCut: ref('cableCut'),
      expect: stepExpect,
    },
    ['upload'],
  ),
  manifestStep: closed(
    'manifest step',
    'Send a manifest alone (group 64 manifest upload: the pre-check).',
    {
      manifest: {
        oneOf: [ref('release'), file('manifest file', `A signed manifest. ${FILES}`)],
        description: 'The manifest: of a release from test keys, or a file.',
      },
      expect: stepExpect,
    },
    ['manifest'],
  ),
  trustStep: closed('trust step', 'Send a trust bundle update (group 64).', { trust: ref('trust'), expect: stepExpect }, ['trust']),
  revocationsStep: closed('revocations step', 'Send a revocation list (group 64).', { revocations: ref('revocations'), expect: stepExpect }, ['revocations']),
  resetStep: closed('reset step', 'OS reset; wait until the device answers again.', { reset: { const: true, description: 'Always `true`.' } }, ['reset']),
  confirmStep: closed(
    'confirm step',
    'Image state write `{"confirm": true}`.',
    { confirm: { const: true, description: 'Always `true`.' }, powerCut: ref('powerCut'), expect: stepExpect },
    ['confirm'],
  ),
  step: {
    description: 'One step: exactly one of `upload`, `manifest`, `trust`, `revocations`, `reset`, `confirm`.',
    oneOf: ['uploadStep', 'manifestStep', 'trustStep', 'revocationsStep', 'resetStep', 'confirmStep'].map(ref),
  },
  faults: closed(
    'link faults',
    'Faults of the emulated link, both directions.',
    {
      dropRate: { type: 'number', minimum: 0, maximum: 1, description: 'Probability that a byte is lost.' },
      bitErrorRate: { type: 'number', minimum: 0, maximum: 1, description: 'Probability that a data bit is flipped.' },
      noiseBurstsPerSecond: { type: 'number', minimum: 0, description: 'Mean noise bursts per second.' },
      noiseBurstBytes: {
        type: 'array',
        items: int('Byte times.', 1),
        minItems: 2,
        maxItems: 2,
        description: '[min, max] length of a burst (default [1, 16]).',
      },
    },
    [],
  ),
  link: closed(
    'link',
    'The emulated serial link between harness and device.',
    {
      faults: ref('faults'),
      latencyMs: { type: 'number', minimum: 0, description: 'Added one-way latency.' },
      seed: int('Seed of the fault pattern (default: the device index + 1).'),
      chunkBytes: int('Upload data bytes per request (default: as many as fit).', 1),
      window: int('Upload requests in flight (default 2).', 1, 64),
    },
    [],
  ),
  setup: closed(
    'setup',
    'How a simulated device is provisioned; with `--port` the board is already provisioned and only `deviceClass`, `trust` and the sizes are used.',
    {
      deviceClass: text('Device class of the device and of the built-in releases.'),
      factory: ref('factory'),
      trust: { ...ref('trust'), description: 'The trust bundle the device holds (checked against the board with `--port`).' },
      revocations: { ...ref('revocations'), description: 'A revocation list provisioned with it.' },
      imageSize: int('Default image size of built-in releases.', 1),
      chunkSize: int('Default chunk size of built-in releases.', 1),
      maxTrialBoots: int('Trial boots before the boot agent reverts (default 2).', 1, 255),
    },
    ['deviceClass', 'factory', 'trust'],
  ),
  expect: closed(
    'expected end state',
    'Compared with fwseal status (group 64) after the last step; absent fields are not compared.',
    {
      slot: int('Active slot (0 = A, 1 = B).', 0, 255),
      version: text('Installed version.'),
      counter: int('Security counter.', 0, 0xffffffff),
      code: { ...ref('code'), description: 'Last failure code (0: none).' },
      phase: { type: 'string', pattern: '^[a-z-]{1,32}$', description: '`idle`, `downloading`, `pending`, `trial`, `bricked`, ... (SPEC.md §13.6).' },
      trust: int('Trust bundle version.'),
      revocation: int('Revocation list version.'),
    },
    [],
  ),
};

export const SCENARIO_SCHEMA: JsonSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'scenario-schema.json',
  title: 'scenario',
  description: 'A HIL scenario: setup, optional link faults, steps, and the expected end state.',
  type: 'object',
  properties: {
    $schema: { type: 'string', description: 'For editors, e.g. `"../scenario-schema.json"`; ignored.' },
    name: { type: 'string', pattern: '^[a-z0-9-]{1,64}$', description: 'Scenario name: 1..64 characters of `[a-z0-9-]`.' },
    description: { type: 'string', description: 'What the scenario shows.' },
    setup: ref('setup'),
    link: ref('link'),
    steps: { type: 'array', items: ref('step'), description: 'Run in order.' },
    expect: ref('expect'),
  },
  required: ['name', 'setup', 'steps', 'expect'],
  additionalProperties: false,
  $defs,
};
