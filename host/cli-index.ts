/**
 * The command index: every fwseal command's name, summary and flags, and where its code is. The CLI
 * lists, completes and dispatches from this table and loads only the module of the command that
 * runs (cold start, issue 17: mqtt, pino, prom-client and friends cost more than the rest of a
 * `verify`). test/cli-start.test.ts checks every row against the Command object it loads (name,
 * summary, options), so the table cannot drift from the modules.
 */
import { type Command } from './commands/common.js';

/** The argument parser of host/commands/common.ts. */
export type Parse = typeof import('./commands/common.js').parse;

/**
 * One command as the CLI knows it before loading it. `load(all)`: the Command; `all` is every entry
 * (completion lists them). `parser()`: the argument parser, the command module's own when it exports
 * `parse` (the one-file verify command: tsup.config.ts), so its run loads no second copy of what
 * host/commands/common.ts imports.
 */
export type CommandEntry = {
  readonly name: string;
  readonly summary: string;
  readonly options: Command['options'];
  load(all: readonly CommandEntry[]): Promise<Command>;
  parser(): Promise<Parse>;
};

type Exports = Record<string, unknown>;

const commonParser = (): Promise<Parse> => import('./commands/common.js').then((m) => m.parse);

/** Static specifiers, so the bundler gives each module (and what only it imports) its own chunk. */
const MODULES: Readonly<Record<string, () => Promise<Exports>>> = {
  keys: () => import('./commands/keys.js'),
  'key-io': () => import('./commands/key-io.js'),
  trust: () => import('./commands/trust.js'),
  'trust-verify': () => import('./commands/trust-verify.js'),
  release: () => import('./commands/release.js'),
  verify: () => import('./commands/verify.js'),
  sign: () => import('./commands/sign.js'),
  attach: () => import('./commands/attach.js'),
  device: () => import('./commands/device.js'),
  'powercut-sweep': () => import('./commands/powercut-sweep.js'),
  serve: () => import('./commands/serve.js'),
  ota: () => import('./commands/ota.js'),
  'fleet-view': () => import('./commands/fleet-view.js'),
  tokens: () => import('./commands/tokens.js'),
  incident: () => import('./commands/incident.js'),
  fleet: () => import('./commands/fleet.js'),
  audit: () => import('./commands/audit.js'),
  log: () => import('./commands/log.js'),
  'log-monitor': () => import('./commands/log-monitor.js'),
};

/**
 * `NAME | MODULE | SUMMARY`, then the flags on an indented line: `x` boolean, `x=` string, `x=*`
 * repeatable string, `/c` a one-letter alias; `-` for none. MODULE `-`: host/completion.ts. Order is the order of `fwseal --help`.
 */
const TABLE = `
keygen | keys | create an Ed25519 key pair (private key encrypted, 0600, or inside a PKCS#11 token)
  dir= json pkcs11= module=
key import | key-io | import an Ed25519 PEM key (PKCS#8, encrypted or not, or a public key) as an fwseal key
  name= dir= json
key export-pub | key-io | print the public key of an fwseal key as SubjectPublicKeyInfo PEM (or raw hex)
  pem raw out= json
trust init | trust | create the root of trust (trust bundle) put into devices
  root=* root-threshold= release=* release-threshold= sign=* sign-pub=* out= version= json log-key= log-origin= witness=* witness-threshold=
trust rotate | trust | replace the trust bundle (version N+1, signed by old and new root thresholds)
  root=* root-threshold= release=* release-threshold= sign=* sign-pub=* out= version= json previous= log-key= log-origin= witness=* witness-threshold= drop-log-policy
trust verify | trust-verify | check a chain of trust bundle rotations exactly as a device would
  previous= revocations= json
pack | release | turn a firmware image into an unsigned manifest (M.cose) and its digest table
  device-class= version= counter= out= chunk-size= sbom= sbom-uri= pipeline-run= source-rev= created= digests= json
sign | sign | add one signature to a manifest, trust bundle or revocation list (in place, or detached)
  key= pub= trust= detached= metrics-file= print-tbs hex json
attach | attach | add signatures made elsewhere (detached or raw) to a manifest, trust bundle or revocation list
  raw=* raw-pub=* pub=* trust= json
merge | attach | combine copies of one object signed in parallel (union of valid signatures)
  pub=* trust= json
verify | verify | check a manifest (and its image), a revocation list or a trust bundle exactly as a device would
  image= trust= revocations= device-class= counter= digests= revocation-version= json
revoke | trust | create a signed revocation list (keys and/or manifests)
  trust= version= sign=* sign-pub=* out= key=* kid=* manifest=* previous= json publish server=
inspect | release | show what a manifest, trust bundle, revocation list, key or digest table says
  json trust= previous= revocations= pub=* keys=
device provision | device | create a simulated device (flash file under --state) with a factory image
  state= trust= revocations= device-class= manifest= image= slot-size= erase-block= max-trial-boots= json
device run | device | run the update agent on a device under --state: boot, update from local files, trial boot
  state= trust= revocations= update= image= digests= log-proof= confirm trust-update= json broker= mqtt-ca= mqtt-cert= mqtt-key= client-id-prefix= keepalive= persistent-session mqtt-version= id= group= device-class= prefix= exit-after-update connect-timeout=
device powercut-sweep | powercut-sweep | cut power before (and in the middle of) every flash operation of an update, then boot
  image-size= step= no-torn json
serve | serve | run the OTA server: answer device requests over MQTT, run campaigns, serve the HTTP API
  broker= mqtt-ca= mqtt-cert= mqtt-key= client-id-prefix= keepalive= persistent-session mqtt-version= data= trust= revocations= http= prefix= tick-ms= response-qos= coalesce-ms= db= tokens= insecure-open-api http-cert= http-key= log-format= log-level= log= log-key= log-checkpoint-interval=
campaign create | ota | upload an image and start a campaign for a device group on an OTA server
  server= manifest= image= group= waves= abort-failure-rate= block-size= device-timeout= abort-min-devices= wave-soak= wave-gate= json
campaign status | ota | show a campaign: state, wave, device counts, failure rate, devices (--watch to follow it)
  server= watch json retry-for=
campaign pause | ota | pause a campaign (devices stop asking; requests get CAMPAIGN_INACTIVE)
  server= json
campaign resume | ota | resume a paused or halted campaign
  server= json
campaign abort | ota | abort a campaign (clears its announcement; requests get UNKNOWN_CAMPAIGN)
  server= json
trust publish | ota | publish a trust bundle or revocation list to the fleet through an OTA server
  server= json
devices list | fleet-view | list the devices an OTA server knows: installed version, online, last seen, last error
  server= group= version= state= json
devices show | fleet-view | show one device of an OTA server and every campaign it took part in
  server= json
campaign list | fleet-view | list the campaigns of an OTA server, oldest first
  server= state= json
campaign next | fleet-view | let the next wave of a campaign with --wave-gate manual open
  server= json
campaign exclude | fleet-view | take a device out of a campaign (excluded: not counted, never served the campaign again)
  server= json
token create | tokens | add a named API token with a role to a tokens file; prints the token once
  role= tokens= json
token list | tokens | list the API tokens of a tokens file (names, roles, creation times)
  tokens= json
token revoke | tokens | remove an API token from a tokens file; a running server refuses it at once
  tokens= json
incident revoke-key | incident | key compromise drill: revoke, publish, halt, re-sign, restart rollouts, watch the fleet enforce it
  server= key=* trust= previous= sign=* sign-pub=* release-key-pub=* out= resign=* release-key=* watch-timeout= json
fleet-sim | fleet | simulate N devices updating over MQTT (load and rollout tests)
  broker= mqtt-ca= mqtt-cert= mqtt-key= client-id-prefix= keepalive= persistent-session mqtt-version= count= group= trust= revocations= device-class= state= factory= factory-image= id-prefix= memory prefix= slot-size= exit-after-update connect-timeout= json
audit verify | audit | check an audit log's hash chain; name the first bad line
  head= json
audit show | audit | list the entries of an audit log (and check its chain)
  action= since= json
log init | log | create a transparency log (a folder) for signed manifests, trust bundles and revocation lists
  origin= key= json
log append | log | add signed objects to a transparency log (crash-safe, append-only)
  json
log checkpoint | log | sign a checkpoint (C2SP tlog-checkpoint note) of a transparency log with its log key
  key= json
log prove | log | print the inclusion proof of an entry in the newest checkpoint of a transparency log
  index= entry= out= json device-proof= from-size=
log consistency | log | print the consistency proof from an older checkpoint (or size) to the newest of a transparency log
  from= out= json
log verify | log | check a transparency log on disk, or an inclusion or consistency proof offline
  proof= consistency= entry= from= log-key= origin= witness=* witness-threshold= json
log show | log | list the entries of a transparency log: index, kind, leaf hash, signing key ids
  json
log cosign | log | add a witness cosignature (C2SP tlog-cosignature, Ed25519) to a checkpoint after checking it against the log
  key= log= name= json
log monitor | log-monitor | check a transparency log since the last checkpoint seen: consistency, every new entry per signing key, unexpected signers
  log= trust= since= save= revocations= device-class=* log-key= metrics-file= json
completion | - | print a shell completion script (bash, zsh or fish) for every command and its flags
  -
`;

function flags(spec: string): Command['options'] {
  const options: Record<string, Command['options'][string]> = {};
  for (const word of spec.split(' ').filter((w) => w !== '' && w !== '-')) {
    const m = /^([a-z0-9-]+)(=?)(\*?)(?:\/([a-zA-Z]))?$/.exec(word);
    if (!m) throw new Error(`cli-index: bad flag ${word}`);
    options[m[1]] = { type: m[2] ? 'string' : 'boolean', ...(m[3] ? { multiple: true } : {}), ...(m[4] ? { short: m[4] } : {}) };
  }
  return options;
}

/** The Command named `name` among a module's exports (a Command, or an array of them such as OTA_COMMANDS). */
function pick(exports: Exports, name: string): Command {
  for (const v of Object.values(exports)) {
    for (const c of Array.isArray(v) ? v : [v])
      if (c && typeof c === 'object' && (c as Command).name === name && typeof (c as Command).run === 'function') return c as Command;
  }
  throw new Error(`cli-index: no command '${name}' in its module`);
}

function parseTable(table: string): CommandEntry[] {
  const lines = table.split('\n').slice(1, -1);
  const entries: CommandEntry[] = [];
  for (let i = 0; i < lines.length; i += 2) {
    const [name, module, ...summary] = lines[i].split(' | ');
    const spec = lines[i + 1];
    let options: Command['options'] | undefined;
    const exports = MODULES[module] ?? (() => Promise.reject(new Error(`cli-index: no module ${module}`)));
    const load =
      module === '-'
        ? (all: readonly CommandEntry[]) => import('./completion.js').then((m) => m.completionCommand(all))
        : () => exports().then((m) => pick(m, name));
    const parser = module === '-' ? commonParser : () => exports().then((m) => (typeof m.parse === 'function' ? (m.parse as Parse) : commonParser()));
    // A command's flags are parsed when first asked for: a run reads one command's, not all ~60 (cold start, issue 17).
    entries.push(
      Object.freeze({
        name,
        summary: summary.join(' | '),
        get options() {
          if (options === undefined) options = flags(spec);
          return options;
        },
        load,
        parser,
      }),
    );
  }
  return entries;
}

export const COMMAND_INDEX: readonly CommandEntry[] = Object.freeze(parseTable(TABLE));

/** An already loaded Command as an entry (hil/cli.ts adds `hil run` this way). */
export function entryOf(cmd: Command): CommandEntry {
  return { name: cmd.name, summary: cmd.summary, options: cmd.options, load: async () => cmd, parser: commonParser };
}
