/**
 * `fwseal serve`: the OTA server (SPEC.md §12.9) with its HTTP API (access, §12.9), structured logs
 * and its store (SQLite in --data, or PostgreSQL with --db).
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { exitStatusFor, FwsealError } from '../errors.js';
import { loadSigningKey } from '../keys.js';
import { API_ACCESS_FLAGS, API_ACCESS_USAGE, planApiListen } from '../ota/listen.js';
import { LOG_FLAGS, LOG_USAGE, serveLog } from '../ota/log.js';
import { MQTT_FLAGS, MQTT_USAGE, mqttSettings } from '../ota/mqtt-options.js';
import { COALESCE_MS, OtaServer, RESPONSE_QOS } from '../ota/server.js';
import { type Command, FLAG_ENV_USAGE, int, noPositionals, type Parsed, readObjectFile, str, withEnv } from './common.js';

/** HOST:PORT or [IPv6]:PORT. */
export function parseListen(text: string): { host: string; port: number } {
  const m = text.match(/^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new FwsealError('USAGE', '--http must be HOST:PORT (e.g. 127.0.0.1:8080; port 0 picks a free one)');
  return { host: m[1] ?? m[2], port };
}

/**
 * Bind --http once and let it go before the store or the broker is touched (issue 17): a port in use
 * stops serve with IO while nothing was subscribed or republished. Port 0 always binds. OtaServer.start
 * binds again; a process that takes the port in between still gets the same IO refusal, only later.
 */
export function checkListenFree(listen: { host: string; port: number }): Promise<void> {
  if (listen.port === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (e: NodeJS.ErrnoException) => reject(new FwsealError('IO', `cannot listen on ${listen.host}:${listen.port}: ${e.code ?? e.message}`)));
    probe.listen({ host: listen.host, port: listen.port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

export const serveCmd: Command = {
  name: 'serve',
  summary: 'run the OTA server: answer device requests over MQTT, run campaigns, serve the HTTP API',
  usage: `fwseal serve --broker URL --data DIR [--trust trust.cbor] [--revocations RL.cbor] [--http HOST:PORT]
    [--prefix P] [--tick-ms N] [--response-qos 0|1] [--coalesce-ms N] [--db postgres://USER@HOST:PORT/DB]
    [--tokens FILE | --insecure-open-api] [--http-cert CERT.pem --http-key KEY.pem] [--log-format text|json] [--log-level L]
    [--log TLOG_DIR [--log-key LOG.key] [--log-checkpoint-interval MS]]
${MQTT_USAGE}
${API_ACCESS_USAGE}
${LOG_USAGE}

The root of trust: the first start on DIR needs --trust (and takes --revocations); both are kept in
DIR/fwseal.db with every later version published over the API (fwseal trust publish). A later start
takes --trust only as the stored newest bundle or its successor, and --revocations only as the
stored list or a newer one: anything older or different stops serve (exit 2, with the code).

--db keeps all of that in PostgreSQL instead of DIR/fwseal.db, images and digest tables included, so
instances on several machines share one database and no folder; DIR is then this instance's cache of
the images and its audit log. The password comes from PGPASSWORD, never from the URL.

Answers manifest, digest page and block requests under <prefix>/campaign/+/req/+ (MQTT 5 shared
subscriptions, so several instances on one broker and one --data folder share the work), records
device status events in DIR/fwseal.db, opens the waves of each campaign, and serves the HTTP API on
--http (default 127.0.0.1:8080; who may call it: see HTTP API access above). Responses go out
with QoS 0 unless --response-qos 1 (a lost one is a device retry). Blocks that several devices ask
for go out once, on the campaign's data topic, for all of them: a block answer waits until
--coalesce-ms (default 20; 0 = off) pass without another device asking for it, at most 25 of them
and 1 s. Prints one line with the HTTP address, then runs until SIGINT or SIGTERM. The --http port
is bound first: a port in use stops serve (IO, exit 2) before the store or the broker is touched.

--log hosts a transparency log (made with fwseal log init; SPEC.md §16): each campaign's manifest
is appended when the campaign is created (once: the same manifest again is the same entry), and the
log is served to viewers under /api/log/ (checkpoint, proof, consistency, entries). With --log-key
(its passphrase from FWSEAL_PASSPHRASE, as for every key) the server signs a checkpoint after
appends, at most one per --log-checkpoint-interval ms (default 1000).
${FLAG_ENV_USAGE}

Examples:
  fwseal serve --broker mqtt://127.0.0.1:1883 --data ota --trust trust.cbor --tokens tokens.json
  FWSEAL_BROKER=mqtts://broker.example:8883 fwseal serve --data ota --mqtt-ca ca.pem --http 0.0.0.0:8443 --http-cert api.pem --http-key api.key --tokens tokens.json`,
  options: {
    ...MQTT_FLAGS,
    data: { type: 'string' },
    trust: { type: 'string' },
    revocations: { type: 'string' },
    http: { type: 'string' },
    prefix: { type: 'string' },
    'tick-ms': { type: 'string' },
    'response-qos': { type: 'string' },
    'coalesce-ms': { type: 'string' },
    db: { type: 'string' },
    ...API_ACCESS_FLAGS,
    ...LOG_FLAGS,
    log: { type: 'string' },
    'log-key': { type: 'string' },
    'log-checkpoint-interval': { type: 'string' },
  },
  async run(given, io) {
    noPositionals(given);
    const p = withEnv(given, ['broker', 'trust', 'prefix']);
    const log = serveLog(p, (line) => io.stderr(line)); // from here on every stderr line is one event (SPEC.md §12.9 "Logs")
    const mqtt = mqttSettings(p, process.env, `serve-${randomBytes(4).toString('hex')}`, 5);
    const trustPath = str(p, 'trust');
    const trust = trustPath ? readObjectFile(trustPath, 'trust-bundle') : undefined;
    const rl = str(p, 'revocations');
    const revocations = rl ? readObjectFile(rl, 'revocation-list') : undefined;
    const http = parseListen(str(p, 'http') ?? '127.0.0.1:8080');
    // Who may call the API, and over what (SPEC.md §12.9 "HTTP API"): refused here (USAGE) before anything starts.
    const plan = planApiListen(p, process.env, http.host, (line) => log.child('api').warn('api.tokens-file', {}, line));
    for (const w of plan.warnings) log.warn('serve.warning', {}, w);
    const dataDir = str(p, 'data', true);
    const db = str(p, 'db');
    const tlog = tlogOptions(p);
    await checkListenFree(http);
    const started = OtaServer.start({
      mqtt,
      dataDir,
      ...(db !== undefined ? { store: { kind: 'postgres' as const, url: db, dataDir } } : {}),
      prefix: str(p, 'prefix') ?? 'fwseal',
      ...(trust ? { trust } : {}),
      ...(revocations ? { revocations } : {}),
      http,
      access: plan.access,
      ...(plan.tls ? { tls: plan.tls } : {}),
      tickMs: int(p, 'tick-ms', 10, 3_600_000, 1000),
      responseQos: int(p, 'response-qos', 0, 1, RESPONSE_QOS) as 0 | 1,
      coalesceMs: int(p, 'coalesce-ms', 0, 1000, COALESCE_MS),
      ...(tlog ? { tlog } : {}),
      log,
    });
    const server = await started.catch((e: unknown) => {
      // A root of trust the stored one does not accept (§12.13) stops the start: exit 2 with the verifier's code.
      if (e instanceof FwsealError && exitStatusFor(e.code) === 1) return e;
      throw e;
    });
    if (server instanceof FwsealError) {
      const { code, codeName: name } = server;
      log.error('serve.refused', { code, codeName: name }, `${name} (code ${code}): refused at start: ${server.message}`);
      return 2;
    }
    const addr = server.address()!;
    const who = plan.access.configured ? 'tokens required' : 'open API: no tokens';
    // Stoppable cleanly before the line that says it is up (a SIGTERM right after it ends in a clean stop).
    const stopped = new Promise<void>((resolve) => {
      const stop = () => {
        process.removeListener('SIGINT', stop).removeListener('SIGTERM', stop);
        resolve();
      };
      process.once('SIGINT', stop).once('SIGTERM', stop);
    });
    io.stdout(`fwseal serve: HTTP API on ${addr.url} (MQTT ${mqtt.url}, prefix ${server.prefix}, ${who})\n`);
    log.info('serve.started', { url: addr.url, broker: mqtt.url, prefix: server.prefix, access: who }, `HTTP API on ${addr.url}`);
    await stopped;
    await server.close();
    log.info('serve.stopped', {}, 'stopped');
    return 0;
  },
};

/** --log DIR [--log-key LOG.key] [--log-checkpoint-interval MS] (SPEC.md §16); the key unlocked before anything starts. */
function tlogOptions(p: Parsed) {
  const dir = str(p, 'log');
  const keyPath = str(p, 'log-key');
  if (dir === undefined) {
    if (keyPath !== undefined || p.values['log-checkpoint-interval'] !== undefined)
      throw new FwsealError('USAGE', '--log-key and --log-checkpoint-interval need --log');
    return undefined;
  }
  const checkpointIntervalMs = int(p, 'log-checkpoint-interval', 10, 3_600_000, 1000);
  return { dir, checkpointIntervalMs, ...(keyPath !== undefined ? { key: loadSigningKey(keyPath) } : {}) };
}
