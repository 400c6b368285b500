/**
 * `fwseal serve` in a test, shared by test/ota-server.test.ts, test/ota-abuse.test.ts,
 * test/rollout-timeouts.test.ts, test/ota-root-server.test.ts and tools/fuzz-ota.ts: MQTT settings
 * for a server, the servers of a test file on either store (TestServers), its HTTP API as JSON, image
 * upload and campaign creation, the Prometheus samples of /metrics, and the root of trust as a device
 * sees it (the retained root announcement, root requests).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { nodeSha256 } from '../../host/hash.js';
import { type MqttSettings } from '../../host/ota/mqtt-options.js';
import { OtaServer, type OtaServerOptions } from '../../host/ota/server.js';
import { type StoreOptions } from '../../host/ota/store.js';
import { toHex } from '../../shared/bytes.js';
import { encodeRootRequest, parseRootAnnouncement, parseRootResponse, type RootAnnouncement, type RootResponse } from '../../shared/ota/root.js';
import { topics } from '../../shared/ota/topics.js';
import { type Credentials } from './mosquitto.js';
import { errorOf, type RawDevice } from './ota-client.js';
import { type SharedPostgres } from './postgres.js';

/** A server's connection to `url` (MQTT 5 by default: shared subscriptions), with credentials if given. */
export function serverMqtt(url: string, version: 4 | 5 = 5, credentials?: Credentials): MqttSettings {
  return {
    url,
    options: {
      protocolVersion: version,
      clientId: `srv-${randomBytes(4).toString('hex')}`,
      reconnectPeriod: 500,
      keepalive: 30,
      clean: true,
      connectTimeout: 5000,
      ...(credentials ?? {}),
    },
  };
}

/** The server's store (SPEC.md §12.9): SQLite in the data folder, or PostgreSQL (`--db`) with the folder as a cache. */
export type StoreKind = 'sqlite' | 'postgresql';
/** Both stores: a suite run with describe.each(STORE_KINDS) holds both to the same cases (issue 15: one suite, both back ends). */
export const STORE_KINDS: readonly StoreKind[] = ['sqlite', 'postgresql'];

/** Where one server keeps its state: OtaServerOptions' `dataDir` and `store`. */
export type ServerState = { readonly dataDir: string; readonly store?: StoreOptions };

export type TestServersOptions = {
  /** The broker's URL, read at each start (the broker may start after this object is made). */
  readonly broker: () => string;
  readonly trust: Uint8Array;
  readonly tickMs?: number;
  /** 'sqlite' by default; 'postgresql' takes its databases from `postgres`. */
  readonly kind?: StoreKind;
  readonly postgres?: SharedPostgres;
  /** Names the temp folders (fwseal-TAG-...). */
  readonly tag?: string;
};

/** State in `dataDir`: SQLite there, or a new database of `postgres` with `dataDir` as its asset cache. */
export async function stateIn(kind: StoreKind, dataDir: string, postgres?: SharedPostgres): Promise<ServerState> {
  if (kind === 'sqlite') return { dataDir };
  if (!postgres) throw new Error('postgresql state needs a postgres (onePostgres)');
  const url = await (await postgres.get()).database();
  return { dataDir, store: { kind: 'postgres', url, dataDir } };
}

/**
 * The in-process servers of a test file or describe block on one store kind: each started on fresh
 * state unless told otherwise (an empty folder; on PostgreSQL also an empty database), with the
 * broker, trust, a loopback HTTP API and a short tick; `close()` closes them and removes the folders.
 */
export class TestServers {
  readonly kind: StoreKind;
  private readonly servers: OtaServer[] = [];
  private readonly dirs: string[] = [];

  constructor(private readonly o: TestServersOptions) {
    this.kind = o.kind ?? 'sqlite';
  }

  /** An empty folder, removed by close(). */
  tempDir(): string {
    const d = mkdtempSync(join(tmpdir(), `fwseal-${this.o.tag ?? 'ota'}-`));
    this.dirs.push(d);
    return d;
  }

  /** Fresh state: an empty data folder; on PostgreSQL also an empty database. */
  fresh(): Promise<ServerState> {
    return stateIn(this.kind, this.tempDir(), this.o.postgres);
  }

  /**
   * `state` as another instance sees it: on SQLite the same folder (instances on one machine share
   * it); on PostgreSQL the same database from a folder of its own, as on another machine.
   */
  another(state: ServerState): ServerState {
    if (state.store?.kind !== 'postgres') return state;
    const dataDir = this.tempDir();
    return { dataDir, store: { ...state.store, dataDir } };
  }

  /** A server on `state` (fresh state when neither it nor a `dataDir` is given); `opts` override the defaults. */
  async start(opts: Partial<OtaServerOptions> & { state?: ServerState } = {}): Promise<OtaServer> {
    const { state, ...rest } = opts;
    const where = state ?? (rest.dataDir !== undefined ? {} : await this.fresh());
    const s = await OtaServer.start({
      mqtt: serverMqtt(this.o.broker()),
      trust: this.o.trust,
      http: { host: '127.0.0.1', port: 0 },
      tickMs: this.o.tickMs ?? 100,
      ...(where as ServerState),
      ...rest,
    });
    this.servers.push(s);
    return s;
  }

  /** Close every server started here (closing one twice is harmless) and remove the folders. */
  async close(): Promise<void> {
    for (const s of this.servers.splice(0)) await s.close().catch(() => {});
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

/** Answer of an API call; the body is whatever JSON came back (tests read it loosely). */
export type Api = { status: number; body: any };

/** One HTTP API call: JSON or octet-stream in, JSON (or the /metrics text) out. */
export async function api(s: OtaServer, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Api> {
  const res = await fetch(s.address()!.url + path, {
    method,
    headers: {
      ...headers,
      ...(body instanceof Uint8Array ? { 'content-type': 'application/octet-stream' } : body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body instanceof Uint8Array ? { body: Buffer.from(body) } : body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* metrics */
  }
  return { status: res.status, body: parsed };
}

/** PUT the image; its SHA-256 hex. Throws unless the server stored it. */
export async function upload(s: OtaServer, bytes: Uint8Array): Promise<string> {
  const sha = toHex(nodeSha256(bytes));
  const r = await api(s, 'PUT', `/api/images/${sha}`, bytes);
  if (r.status !== 200 && r.status !== 201) throw new Error(`upload: HTTP ${r.status} ${JSON.stringify(r.body)}`);
  return sha;
}

/** Upload the image and POST the campaign (one 100% wave unless `extra` says otherwise). */
export async function createCampaign(
  s: OtaServer,
  group: string,
  release: { envelope: Uint8Array; image: Uint8Array },
  extra: Record<string, unknown> = {},
): Promise<Api> {
  const sha = await upload(s, release.image);
  return api(s, 'POST', '/api/campaigns', { manifest: Buffer.from(release.envelope).toString('base64'), image: sha, group, waves: [100], ...extra });
}

/** The value of one sample of a /metrics text (`name{labels}`), 0 when absent. */
export function sample(metrics: string, name: string, labels = ''): number {
  const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = metrics.match(new RegExp(`^${esc(name)}${labels ? esc(labels) : ''} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

export async function metricsOf(s: OtaServer): Promise<string> {
  return (await api(s, 'GET', '/metrics')).body as string;
}

/**
 * The retained root announcement (SPEC.md §12.13) as a fresh subscriber sees it; null for none. No
 * timing: one SUBSCRIBE names the root topic and then a retained sentinel, and the broker sends
 * retained messages in the order of the filters, so once the sentinel is in, the root is too.
 */
export async function retainedRoot(url: string, prefix: string): Promise<RootAnnouncement | null> {
  const client = await mqtt.connectAsync(url, { clientId: `test-root-${randomBytes(3).toString('hex')}`, reconnectPeriod: 0 });
  const sentinel = `fwseal-test/sentinel/${randomBytes(4).toString('hex')}`;
  try {
    await client.publishAsync(sentinel, 'x', { qos: 1, retain: true });
    let root: RootAnnouncement | null = null;
    const got = new Promise<RootAnnouncement | null>((resolve) => {
      client.on('message', (topic, payload, packet) => {
        if (topic === sentinel) return resolve(root);
        const a = packet.retain && payload.length > 0 ? parseRootAnnouncement(new Uint8Array(payload)) : null;
        root = a?.ok ? a.value : null;
      });
    });
    await client.subscribeAsync({ [topics.root(prefix)]: { qos: 1 }, [sentinel]: { qos: 1 } });
    const result = await got;
    await client.publishAsync(sentinel, '', { qos: 1, retain: true });
    return result;
  } finally {
    await client.endAsync(true);
  }
}

/** A root request as device `d` sends it: the answer (a root response, or an error reply's code). */
export async function rootRequest(
  d: RawDevice,
  requestId: number,
  trustVersion: number,
  opts: { replyTopic?: string; responseTopic?: string } = {},
): Promise<{ response?: RootResponse; code?: number }> {
  const payload = encodeRootRequest({ requestId, trustVersion, ...(opts.replyTopic ? { replyTopic: opts.replyTopic } : {}) });
  await d.client.publishAsync(topics.rootRequest(d.prefix, d.id), Buffer.from(payload), {
    qos: 1,
    ...(opts.responseTopic ? { properties: { responseTopic: opts.responseTopic } } : {}),
  });
  const m = await d.next((x) => {
    if (x.type === 'rootResponse') {
      const r = parseRootResponse(x.payload);
      return r.ok && r.value.requestId === requestId;
    }
    return x.type === 'errorReply' && errorOf(x).requestId === requestId;
  });
  if (m.type === 'errorReply') return { code: errorOf(m).code };
  const r = parseRootResponse(m.payload);
  return r.ok ? { response: r.value } : {};
}
