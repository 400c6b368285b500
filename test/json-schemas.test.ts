/**
 * The JSON a CI reads (issue 15 item 4): every command that takes --json has a JSON Schema (draft
 * 2020-12) in host/schemas/<command>.schema.json, and its output in real scenarios validates against
 * it: key files and signing ceremonies through the CLI (test/support/cli-world.ts), OTA commands
 * against a real mosquitto and the real server (as test/campaign-cli.test.ts). Shapes are closed
 * (additionalProperties: false): an output that gains an undocumented field fails here. Failures
 * print host/schemas/error.schema.json's object. Streams (`campaign status --watch`, `device run
 * --broker`) are one JSON document per line, each validated.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { copyFileSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../host/cli.js';
import { FLEET_VIEW_COMMANDS } from '../host/commands/fleet-view.js';
import { OtaServer } from '../host/ota/server.js';
import { CODES } from '../shared/codes.js';
import { type CliRun, runCli } from './support/cli-run.js';
import { type CliWorld, CREATED, makeCliWorld } from './support/cli-world.js';
import { detBytes, makeManifest, makeManifestEnvelope, standardWorld } from './support/fixtures.js';
import { type Mosquitto, startMosquitto } from './support/mosquitto.js';
import { eventually, RawDevice } from './support/ota-client.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SCHEMAS = join(ROOT, 'host', 'schemas');
/** Schemas that are parts of others, not one command's output. */
const SHARED = new Set(['error', 'campaign-detail']);
const schemaFile = (command: string) => `${command.replace(/ /g, '-')}.schema.json`;

const ajv = new Ajv2020({ allErrors: true, strict: true });
const schemaNames = readdirSync(SCHEMAS).filter((f) => f.endsWith('.schema.json'));
for (const f of schemaNames) ajv.addSchema(JSON.parse(readFileSync(join(SCHEMAS, f), 'utf8')));
/** The fleet view's commands (host/commands/fleet-view.ts), passed as `extra` until host/cli.ts lists them. */
const FLEET_EXTRA = FLEET_VIEW_COMMANDS.filter((f) => !COMMANDS.some((c) => c.name === f.name));
const JSON_COMMANDS = [...COMMANDS, ...FLEET_EXTRA].filter((c) => 'json' in c.options).map((c) => c.name);
/** Commands whose output validated at least once, with how many documents. */
const validated = new Map<string, number>();

function documents(out: string): unknown[] {
  try {
    return [JSON.parse(out)];
  } catch {
    return out
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => JSON.parse(l));
  }
}

/** Every document `r` printed validates against `command`'s schema, and would not with one field more. */
function check(command: string, r: CliRun, status = 0): unknown[] {
  expect(r.status, `${command}: ${r.err}`).toBe(status);
  const validate = ajv.getSchema(schemaFile(command));
  expect(validate, `no schema ${schemaFile(command)}`).toBeDefined();
  const docs = documents(r.out);
  expect(docs.length, command).toBeGreaterThan(0);
  for (const d of docs) {
    expect(validate!(d), `${command}: ${JSON.stringify(validate!.errors)}\n${JSON.stringify(d)}`).toBe(true);
    expect(validate!({ ...(d as object), undocumented: 1 }), `${command} accepts an undocumented field`).toBe(false);
  }
  validated.set(command, (validated.get(command) ?? 0) + docs.length);
  return docs;
}

let world: CliWorld;
const run = (...args: string[]) => world.run(...args, '--json');
const pubs = (role: string, names: string[]) => names.flatMap((n) => [`--${role}`, `${n}.pub`]);
const signs = (names: string[]) => names.flatMap((n) => ['--sign', `${n}.key`]);

beforeAll(async () => {
  world = await makeCliWorld(['A', 'B', 'C', 'R1', 'R2', 'logkey', 'w1'], { image: true });
});

afterAll(() => world?.close());

describe('the schemas', () => {
  it('are valid draft 2020-12 schemas, one per command that takes --json, and nothing else', () => {
    const expected = [...JSON_COMMANDS.map(schemaFile), ...[...SHARED].map((s) => `${s}.schema.json`)].sort();
    expect(schemaNames.sort()).toEqual(expected);
    for (const f of schemaNames) {
      const s = JSON.parse(readFileSync(join(SCHEMAS, f), 'utf8'));
      expect(s.$schema, f).toBe('https://json-schema.org/draft/2020-12/schema');
      expect(s.$id, f).toBe(f);
      expect(typeof s.title, f).toBe('string');
      expect(ajv.getSchema(f), f).toBeDefined(); // compiles in strict mode: no unknown keyword, no loose required
    }
  });

  it('the error object: every failure of a command that takes --json', async () => {
    const validate = ajv.getSchema('error.schema.json')!;
    for (const [args, status] of [
      [['sign', 'missing.cose', '--key', 'A.key'], 2],
      [['inspect', 'image.bin'], 1],
      [['campaign', 'status', 'x', '--server', 'http://127.0.0.1:1'], 2],
    ] as const) {
      const r = await run(...args);
      expect(r.status).toBe(status);
      const e = JSON.parse(r.out);
      expect(validate(e), JSON.stringify(validate.errors)).toBe(true);
      expect(e.exitStatus).toBe(status);
      expect(validate({ ...e, undocumented: 1 })).toBe(false);
    }
  });
});

describe('keys, trust bundles, releases, devices and the audit log', () => {
  it('keygen, key import, key export-pub', async () => {
    check('keygen', await run('keygen', 'K1'));
    const pair = generateKeyPairSync('ed25519');
    writeFileSync(world.path('imp.pem'), pair.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    writeFileSync(world.path('imp-pub.pem'), pair.publicKey.export({ type: 'spki', format: 'pem' }));
    check('key import', await run('key', 'import', 'imp.pem', '--name', 'imp'));
    check('key import', await run('key', 'import', 'imp-pub.pem', '--name', 'imp-pub'));
    check('key export-pub', await run('key', 'export-pub', 'A.pub', '--pem'));
    check('key export-pub', await run('key', 'export-pub', 'A.pub', '--raw', '--out', 'A.hex'));
  });

  it('trust init, trust rotate, trust verify', async () => {
    const roles = (root: string[]) => [...pubs('root', root), '--root-threshold', '2', ...pubs('release', ['R1', 'R2']), '--release-threshold', '2'];
    check('trust init', await run('trust', 'init', ...roles(['A', 'B']), ...signs(['A', 'B']), '--out', 'trust.cbor'));
    check('trust init', await run('trust', 'init', ...roles(['A', 'B']), ...signs(['A']), '--out', 'partial.cbor'));
    check('trust rotate', await run('trust', 'rotate', '--previous', 'trust.cbor', ...roles(['A', 'C']), ...signs(['A', 'B', 'C']), '--out', 'trust2.cbor'));
    check('trust verify', await run('trust', 'verify', '--previous', 'trust.cbor', 'trust2.cbor'));
    check('trust verify', await run('trust', 'verify', '--previous', 'trust.cbor', 'partial.cbor'), 1);
  });

  it('pack, sign (in place and detached), attach, merge, verify, revoke, inspect', async () => {
    const packArgs = ['--device-class', 'acme-gw', '--created', CREATED, '--chunk-size', '4096'];
    check('pack', await run('pack', 'image.bin', ...packArgs, '--version', '1.0.0', '--counter', '1', '--out', 'm.cose'));
    copyFileSync(world.path('m.cose'), world.path('mb.cose'));
    check('sign', await run('sign', 'm.cose', '--key', 'R1.key', '--trust', 'trust.cbor', '--audit', 'audit.log'));
    check('sign', await run('sign', 'm.cose', '--key', 'R2.key', '--detached', 'm.R2.sig'));
    check('attach', await run('attach', 'm.cose', 'm.R2.sig', '--trust', 'trust.cbor'));
    check('sign', await run('sign', 'mb.cose', '--key', 'R2.key', '--trust', 'trust.cbor', '--audit', 'audit.log'));
    check('merge', await run('merge', 'merged.cose', 'm.cose', 'mb.cose', '--trust', 'trust.cbor'));
    world.write('image2.bin', detBytes(20_000, 'json schemas image 2'));
    check('pack', await run('pack', 'image2.bin', ...packArgs, '--version', '2.0.0', '--counter', '2', '--out', 'm2.cose'));
    for (const k of ['R1', 'R2']) check('sign', await run('sign', 'm2.cose', '--key', `${k}.key`, '--trust', 'trust.cbor'));

    check('verify', await run('verify', 'm.cose', '--trust', 'trust.cbor', '--image', 'image.bin'));
    check('verify', await run('verify', 'm.cose', '--trust', 'trust.cbor', '--counter', '5'), 1);
    check('revoke', await run('revoke', '--trust', 'trust.cbor', '--version', '1', ...signs(['A', 'B']), '--key', 'R2.pub', '--out', 'rl.cbor'));
    check('verify', await run('verify', 'rl.cbor', '--trust', 'trust.cbor'));
    check('verify', await run('verify', 'trust2.cbor', '--trust', 'trust.cbor'));
    check('verify', await run('verify', 'partial.cbor'), 1);
    for (const f of ['m.cose', 'trust.cbor', 'rl.cbor', 'A.pub', 'A.key', 'm.digests', 'm.R2.sig']) check('inspect', await run('inspect', f));
    check('inspect', await run('inspect', 'm.cose', '--trust', 'trust.cbor', '--keys', '.'));
    check('inspect', await run('inspect', 'trust2.cbor', '--previous', 'trust.cbor', '--keys', '.'));
    check('inspect', await run('inspect', 'rl.cbor', '--trust', 'trust.cbor', '--revocations', 'rl.cbor', '--keys', '.'));
  });

  it('device provision, device run (local files), device powercut-sweep', async () => {
    const dev = ['--state', 'dev', '--trust', 'trust.cbor'];
    check('device provision', await run('device', 'provision', ...dev, '--device-class', 'acme-gw', '--manifest', 'm.cose', '--image', 'image.bin'));
    check('device run', await run('device', 'run', ...dev, '--update', 'm2.cose', '--image', 'image2.bin', '--confirm'));
    check('device run', await run('device', 'run', ...dev, '--update', 'm.cose', '--image', 'image.bin'), 1);
    check('device powercut-sweep', await run('device', 'powercut-sweep', '--image-size', '8192', '--step', '40'));
  });

  it('token create, token list, token revoke', async () => {
    check('token create', await run('token', 'create', 'ci-bot', '--role', 'operator', '--tokens', 'tokens.json'));
    check('token list', await run('token', 'list', '--tokens', 'tokens.json'));
    check('token revoke', await run('token', 'revoke', 'ci-bot', '--tokens', 'tokens.json'));
  });

  it('audit verify, audit show', async () => {
    check('audit verify', await run('audit', 'verify', 'audit.log'));
    check('audit show', await run('audit', 'show', 'audit.log'));
    writeFileSync(world.path('torn.log'), `${readFileSync(world.path('audit.log'), 'utf8')}{"seq":`);
    check('audit verify', await run('audit', 'verify', 'torn.log'), 1);
    check('audit show', await run('audit', 'show', 'torn.log'), 1);
  });
});

describe('OTA: serve, campaigns, devices over MQTT, the root of trust', () => {
  let broker: Mosquitto;
  let server: OtaServer;
  let url: string;
  const closers: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    broker = await startMosquitto({ persistence: false });
    server = await OtaServer.start({
      mqtt: { url: broker.url, options: { protocolVersion: 5, clientId: `json-srv-${randomBytes(3).toString('hex')}`, reconnectPeriod: 500 } },
      dataDir: world.path('serve'),
      trust: world.bytes('trust.cbor'),
      http: { host: '127.0.0.1', port: 0 },
      tickMs: 100,
    });
    url = server.address()!.url;
  });

  afterAll(async () => {
    for (const c of closers) await c().catch(() => {});
    await server?.close();
    await broker?.stop();
  });

  const known = (ids: string[]) =>
    eventually(
      async () => {
        const text = await (await fetch(`${url}/api/devices`)).text();
        return ids.every((id) => text.includes(`"${id}"`));
      },
      20_000,
      `${ids.join(', ')} known`,
    );
  const create = (group: string) =>
    run('campaign', 'create', '--manifest', 'm2.cose', '--image', 'image2.bin', '--group', group, '--waves', '100', '--server', url);

  it('device run --broker and fleet-sim follow a campaign; campaign create, status (--watch)', async () => {
    const mqtt = ['--broker', broker.url, '--trust', 'trust.cbor', '--device-class', 'acme-gw', '--exit-after-update'];
    expect(
      (
        await world.run(
          'device',
          'provision',
          '--state',
          'ota-dev',
          '--trust',
          'trust.cbor',
          '--device-class',
          'acme-gw',
          '--manifest',
          'm.cose',
          '--image',
          'image.bin',
        )
      ).status,
    ).toBe(0);
    const device = run('device', 'run', ...mqtt, '--id', 'jd-1', '--group', 'g-json', '--state', 'ota-dev');
    const fleet = ['--count', '2', '--id-prefix', 'js-', '--group', 'g-json', '--state', 'sim', '--memory'];
    const sim = run('fleet-sim', ...mqtt, ...fleet, '--factory', 'm.cose', '--factory-image', 'image.bin');
    await known(['jd-1', 'js-0001', 'js-0002']);
    const [created] = check('campaign create', await create('g-json')) as { id: string }[];
    check('device run', await device);
    check('fleet-sim', await sim);
    check('campaign status', await run('campaign', 'status', created.id, '--server', url));
    check('campaign status', await run('campaign', 'status', created.id, '--watch', '--server', url));
  });

  it('campaign pause, resume, abort', async () => {
    const d = await RawDevice.connect(broker.url, 'jd-idle');
    closers.push(() => d.close());
    await d.online('g-idle');
    await known(['jd-idle']);
    const [c] = check('campaign create', await create('g-idle')) as { id: string }[];
    check('campaign pause', await run('campaign', 'pause', c.id, '--server', url));
    check('campaign resume', await run('campaign', 'resume', c.id, '--server', url));
    check('campaign abort', await run('campaign', 'abort', c.id, '--server', url));
    const r = await run('campaign', 'abort', c.id, '--server', url);
    expect(JSON.parse(r.out)).toMatchObject({ ok: false, code: CODES.CONFLICT, exitStatus: 2 });
  });

  it('devices list, devices show, campaign list, campaign exclude, campaign next (SPEC.md §12.9 "Fleet view")', async () => {
    const fleet = (...args: string[]) => runCli([...args, '--json', '--server', url], FLEET_EXTRA);
    for (const id of ['jf-1', 'jf-2']) {
      const d = await RawDevice.connect(broker.url, id);
      closers.push(() => d.close());
      await d.online('g-fleet');
    }
    await known(['jf-1', 'jf-2']);
    const gated = ['--waves', '50,100', '--wave-gate', 'manual', '--device-timeout', '1h', '--abort-min-devices', '2', '--wave-soak', '0s'];
    const args = ['campaign', 'create', '--manifest', 'm2.cose', '--image', 'image2.bin', '--group', 'g-fleet', ...gated, '--server', url];
    const [c] = check('campaign create', await run(...args)) as { id: string; devices: { id: string }[] }[];
    const first = c.devices[0].id; // the one device of the 50% wave
    check('campaign exclude', await fleet('campaign', 'exclude', c.id, first));
    const [next] = check('campaign next', await fleet('campaign', 'next', c.id)) as { wave: number }[];
    expect(next.wave).toBe(2);
    check('campaign list', await fleet('campaign', 'list'));
    check('campaign list', await fleet('campaign', 'list', '--state', 'running'));
    check('devices list', await fleet('devices', 'list'));
    check('devices list', await fleet('devices', 'list', '--group', 'g-fleet', '--state', 'online'));
    const [shown] = check('devices show', await fleet('devices', 'show', first)) as { campaigns: { state: string }[] }[];
    expect(shown.campaigns.map((x) => x.state)).toEqual(['excluded']);
  });

  it('trust publish, incident revoke-key, revoke --publish', async () => {
    check('trust publish', await run('trust', 'publish', 'trust2.cbor', '--server', url));
    check('trust publish', await run('trust', 'publish', 'trust2.cbor', '--server', url));
    const drill = ['incident', 'revoke-key', '--key', 'R2.pub', '--trust', 'trust2.cbor', ...signs(['A', 'C']), '--out', 'rl-incident.cbor'];
    check('incident revoke-key', await run(...drill, '--watch-timeout', '0', '--server', url));
    const next = ['revoke', '--trust', 'trust2.cbor', '--version', '2', '--previous', 'rl-incident.cbor', ...signs(['A', 'C']), '--out', 'rl2.cbor'];
    check('revoke', await run(...next, '--publish', '--server', url));
  });
});

describe('the transparency log (issue 19)', () => {
  it('log init, append, checkpoint, prove, consistency, verify, show, cosign, monitor', async () => {
    const S = standardWorld();
    world.write('tl-m.cose', S.envelope);
    world.write('tl-trust.cbor', S.trust);
    world.write('tl-m2.cose', makeManifestEnvelope(makeManifest(detBytes(64, 'tl m2'), { securityCounter: 9 }), [S.R1, S.R2]));
    const origin = 'example.com/schema-log';
    check('log init', await run('log', 'init', 'tl', '--origin', origin, '--key', 'logkey.pub'));
    check('log append', await run('log', 'append', 'tl', 'tl-m.cose', 'tl-trust.cbor'));
    check('log checkpoint', await run('log', 'checkpoint', 'tl', '--key', 'logkey.key'));
    copyFileSync(world.path('tl/checkpoint.note'), world.path('tl-seen.note'));
    check('log cosign', await run('log', 'cosign', 'tl/checkpoint.note', '--key', 'w1.key', '--log', 'tl'));
    check('log prove', await run('log', 'prove', 'tl', '--entry', 'tl-m.cose', '--out', 'tl-proof.json'));
    const key = ['--log-key', 'logkey.pub', '--origin', origin];
    check('log verify', await run('log', 'verify', 'tl'));
    check('log verify', await run('log', 'verify', '--proof', 'tl-proof.json', '--entry', 'tl-m.cose', ...key, '--witness', 'w1.pub'));
    check('log verify', await run('log', 'verify', '--proof', 'tl-proof.json', '--entry', 'tl-trust.cbor', ...key), 1);
    check('log append', await run('log', 'append', 'tl', 'tl-m2.cose'));
    check('log checkpoint', await run('log', 'checkpoint', 'tl', '--key', 'logkey.key'));
    check('log consistency', await run('log', 'consistency', 'tl', '--from', 'tl-seen.note', '--out', 'tl-step.json'));
    check('log verify', await run('log', 'verify', '--consistency', 'tl-step.json', '--from', 'tl-seen.note', ...key));
    check('log show', await run('log', 'show', 'tl'));
    check('log monitor', await run('log', 'monitor', '--log', 'tl', '--trust', 'tl-trust.cbor', '--since', 'tl-seen.note'));
    check('log monitor', await run('log', 'monitor', '--log', 'tl', '--trust', 'tl-trust.cbor', '--device-class', 'none'), 1);
  });
});

describe('coverage', () => {
  it('every command that takes --json was run and its output validated', () => {
    expect(JSON_COMMANDS.filter((c) => !validated.has(c))).toEqual([]);
  });
});
