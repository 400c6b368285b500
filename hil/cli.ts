#!/usr/bin/env node
/**
 * The `fwseal` binary (package.json `bin`): the fwseal CLI (host/cli.ts `main`) with the hil commands
 * added, so `fwseal hil ...` works without host/ importing hil/ (ARCHITECTURE.md layering). Only the
 * commands' names, flags and help are here: each command loads its module (the rig, the runner, the
 * simulated device, QuickJS, serialport) when it runs, so every other fwseal command starts as fast
 * as `node dist/host/cli.js` does (test/hil-cli.test.ts checks what `--help` loads).
 */
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCli, runIfEntryPoint } from '../host/cli.js';
import { type Command } from '../host/commands/common.js';
import { FwsealError } from '../host/errors.js';

/** The flag readers, loaded when a hil command runs: at start-up (`fwseal --help`, any host command) this file loads nothing heavy. */
const parsers = () => import('../host/commands/common.js');

const here = dirname(fileURLToPath(import.meta.url));
/** hil/scenarios beside the source, or beside the built file (dist/hil -> hil/scenarios). */
export function defaultScenarioDir(): string {
  for (const d of [join(here, 'scenarios'), join(here, '..', '..', 'hil', 'scenarios')]) {
    try {
      realpathSync(d);
      return d;
    } catch {
      /* next */
    }
  }
  return join(here, 'scenarios');
}

/**
 * The built device process beside this file (dist/hil/device-main.js). The rig itself is in a chunk
 * elsewhere in dist/ once built, so it cannot find it beside itself; from the sources: undefined (the
 * rig runs device-main.ts through tsx).
 */
function builtDeviceMain(): string | undefined {
  const js = join(here, 'device-main.js');
  return import.meta.url.endsWith('.js') && existsSync(js) ? js : undefined;
}

function runtimeOf(v: string | undefined, fallback: 'quickjs' | 'node'): 'quickjs' | 'node' {
  const runtime = v ?? fallback;
  if (runtime !== 'node' && runtime !== 'quickjs') throw new FwsealError('USAGE', `--runtime must be quickjs or node, not ${runtime}`);
  return runtime;
}

function optional<K extends string>(key: K, v: string | undefined): { [P in K]?: string } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: string };
}

export const hilRun: Command = {
  name: 'hil run',
  summary: 'run HIL scenarios on simulated devices (socat ptys) or a real board; JUnit XML',
  usage: `fwseal hil run [--devices N] [--scenarios NAME,...|DIR] [--junit FILE] [--baud N] [--port PATH]
    [--runtime node|quickjs] [--logs DIR] [--work DIR]

Starts N simulated devices (default 2), each a separate process on its own socat pty pair running
the update agent and boot agent on a file flash, and runs every scenario (default: all of
hil/scenarios) on every device through the link emulator at --baud (default 115200). --port PATH
drives one real board instead (scenarios with power cuts are skipped). Each scenario asserts the
device's end state over the link (fwseal status).
Output: one line per finished case on stdout (PASS, FAIL, ERROR for a harness error, SKIP), a live
status line on stderr when it is a terminal, then a summary table. --junit writes JUnit XML (Ant/
Jenkins format: timestamp, hostname, errors, the run's wall time, each case's log excerpt in its
system-out); --logs keeps the per-device logs of frames and state transitions. Exit 0 when every
case passed, 1 when one failed, 2 for a usage or I/O error.
--runtime: where the simulated devices verify: quickjs (default: the device bundle
dist/device/fwseal-verifier.js inside QuickJS; needs npm run build) or node (the same code in Node).`,
  options: {
    devices: { type: 'string' },
    scenarios: { type: 'string' },
    junit: { type: 'string' },
    baud: { type: 'string' },
    port: { type: 'string' },
    runtime: { type: 'string' },
    logs: { type: 'string' },
    work: { type: 'string' },
  },
  async run(p, io) {
    const { int, noPositionals, str } = await parsers();
    noPositionals(p);
    const options = {
      runtime: runtimeOf(str(p, 'runtime'), 'quickjs'),
      devices: int(p, 'devices', 1, 64, 2),
      baud: int(p, 'baud', 1200, 4_000_000, 115200),
      ...optional('scenarios', str(p, 'scenarios')),
      ...optional('junit', str(p, 'junit')),
      ...optional('port', str(p, 'port')),
      ...optional('logs', str(p, 'logs')),
      ...optional('workDir', str(p, 'work')),
      ...optional('deviceMain', builtDeviceMain()),
    };
    const { runHil } = await import('./hil-run.js');
    return runHil(options, io, defaultScenarioDir());
  },
};

export const hilBundle: Command = {
  name: 'hil bundle',
  summary: 'write the update bundle of a signed manifest and its image, for mcumgr image upload',
  usage: `fwseal hil bundle M.cose --image IMAGE --out update.bin [--log DIR [--from-size N]] [--json]

Writes the update bundle (SPEC.md §13.5: the manifest, then each page of chunk digests with its
proof and its chunks) that a stock \`mcumgr image upload\` carries to an fwseal device over SMP; the
device verifies the manifest before it writes anything and each chunk before it writes it. The
image must be the one the manifest names (size and Merkle root; else rejected, exit 1). Signatures
are the device's to check (\`fwseal verify\` checks them on the host).

--log DIR: for devices whose trust bundle requires log proofs, the bundle (FWSBND2) also carries
the proof that the manifest is in the transparency log DIR (in its newest signed checkpoint, else
NOT_FOUND), with a consistency proof from --from-size N: the size of the checkpoint the device
stored, which \`status\` (group 64) reports as "log" (default 0: none stored yet).

Examples:
  fwseal hil bundle fw.cose --image firmware.bin --out update.bin
  fwseal hil bundle fw.cose --image firmware.bin --log translog --from-size 41 --out update.bin
  mcumgr --conntype serial --connstring dev=/dev/pts/5,baud=115200 image upload update.bin`,
  options: { image: { type: 'string' }, out: { type: 'string' }, log: { type: 'string' }, 'from-size': { type: 'string' }, json: { type: 'boolean' } },
  async run(p, io) {
    const { str, int } = await parsers();
    if (p.positionals.length !== 1) throw new FwsealError('USAGE', 'give one manifest: fwseal hil bundle M.cose --image IMAGE --out FILE');
    const image = str(p, 'image', true);
    const out = str(p, 'out', true);
    const logDir = str(p, 'log');
    if (logDir === undefined && p.values['from-size'] !== undefined) throw new FwsealError('USAGE', '--from-size goes with --log');
    const log = logDir === undefined ? undefined : { dir: logDir, fromSize: int(p, 'from-size', 0, Number.MAX_SAFE_INTEGER, 0) };
    const { writeBundleFile } = await import('./bundle-file.js');
    return writeBundleFile(p.positionals[0], image, out, io, p.values.json === true, log);
  },
};

export const hilDevice: Command = {
  name: 'hil device',
  summary: 'run one simulated device on a pty (or serial port) for any SMP client, e.g. mcumgr',
  usage: `fwseal hil device --state DIR (--pty LINK | --port PATH) [--baud N] [--runtime node|quickjs]

Runs the simulated device of DIR (made by \`fwseal device provision\`) for an external SMP client:
with --pty, on a new pseudo-terminal (socat) linked at LINK, whose /dev/pts path is printed first;
with --port, on an existing serial port at --baud (default 115200). It answers SMP over the console
framing of Zephyr's serial transport (SPEC.md §13): echo, image state, image upload of an update
bundle (fwseal hil bundle), reset (boots again on the same flash: a pending image runs on trial),
image confirm, and the fwseal group 64. Requests and state changes are logged on stdout, one line
each. SIGINT or SIGTERM stops it (exit 0). --runtime: the verifier, the device bundle in QuickJS
(default; needs npm run build) or the same code in Node.

Examples:
  fwseal device provision --state dev1 --trust trust.cbor --device-class acme-gw --manifest fw1.cose --image fw1.bin
  fwseal hil device --state dev1 --pty ./dev1.pty`,
  options: { state: { type: 'string' }, pty: { type: 'string' }, port: { type: 'string' }, baud: { type: 'string' }, runtime: { type: 'string' } },
  async run(p, io) {
    const { int, noPositionals, str } = await parsers();
    noPositionals(p);
    const pty = str(p, 'pty');
    const port = str(p, 'port');
    if ((pty === undefined) === (port === undefined)) throw new FwsealError('USAGE', 'give one of --pty LINK or --port PATH');
    const options = {
      state: str(p, 'state', true),
      baud: int(p, 'baud', 1200, 4_000_000, 115200),
      runtime: runtimeOf(str(p, 'runtime'), 'quickjs'),
      ...optional('pty', pty),
      ...optional('port', port),
    };
    const { runStandaloneDevice } = await import('./standalone.js');
    return runStandaloneDevice(options, io);
  },
};

export const HIL_COMMANDS: readonly Command[] = [hilRun, hilBundle, hilDevice];

/** The whole CLI with the hil commands on process.argv: what the package's bin (hil/bin.ts) starts for every command but a plain `verify`. */
export function runFwseal(): void {
  runCli(HIL_COMMANDS);
}

runIfEntryPoint(import.meta.url, HIL_COMMANDS);
