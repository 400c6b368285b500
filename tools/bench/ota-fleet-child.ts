/**
 * A forked child of the OTA benchmark (driven by ota-fleet.ts over IPC): rounds of MQTT clients in
 * one process, either protocol devices (LightClient, ota-light.ts) or raw fan-out subscribers
 * (RawSubscriber). `start` opens a round (`ready` once every client is subscribed and, for devices,
 * reported `online`); the child sends `done` with the round's counters once every client finished;
 * `stats` asks for the counters so far; `end` disconnects the round's clients (`ended`); `stop`, or
 * the bench process going away, ends the child. The child lives across rounds, so its code is warm.
 */
import mqtt from 'mqtt';
import { type ChildCommand, type ChildReply, type ChildStart } from './ota-fleet.js';
import { emptyStats, LightClient, type LightStats, RawSubscriber } from './ota-light.js';

const CONNECT_CONCURRENCY = 50;

type Round = { readonly id: number; readonly clients: (LightClient | RawSubscriber)[]; readonly stats: LightStats };
let round: Round | null = null;

const reply = (r: ChildReply) => process.send?.(r);

async function connectOne(s: ChildStart, r: Round, n: number): Promise<LightClient | RawSubscriber> {
  const id = `${s.idPrefix}${n}`;
  const client = await mqtt.connectAsync(s.url, { protocolVersion: 4, clientId: id, reconnectPeriod: 0, keepalive: 120 });
  const c =
    s.mode === 'raw'
      ? new RawSubscriber(client, s.topic, s.bytes, r.stats)
      : new LightClient(client, id, { prefix: s.prefix, group: s.group, timeoutMs: s.timeoutMs, window: s.window, version: '1.0.0', counter: 5 }, r.stats);
  r.clients.push(c);
  await c.start();
  return c;
}

async function startRound(s: ChildStart): Promise<ChildReply> {
  await endRound();
  const r: Round = { id: s.round, clients: [], stats: emptyStats() };
  round = r;
  const t0 = performance.now();
  for (let i = 0; i < s.count; i += CONNECT_CONCURRENCY)
    await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, s.count - i) }, (_, j) => connectOne(s, r, s.first + i + j)));
  r.stats.clients = r.clients.length;
  void Promise.all(r.clients.map((c) => c.done)).then(() => {
    if (round === r) reply({ type: 'done', round: r.id, stats: r.stats });
  });
  return { type: 'ready', round: r.id, connected: r.clients.length, seconds: (performance.now() - t0) / 1000 };
}

async function endRound(): Promise<void> {
  const r = round;
  round = null;
  if (!r) return;
  for (const c of r.clients) c.stop();
  await Promise.all(r.clients.map((c) => c.client.endAsync(true).catch(() => {})));
}

async function stop(): Promise<never> {
  await endRound();
  process.exit(0);
}

process.on('message', (cmd: ChildCommand) => {
  const failed = (e: unknown) => reply({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  if (cmd.type === 'start') startRound(cmd).then(reply, failed);
  else if (cmd.type === 'stats') reply({ type: 'stats', round: round?.id ?? -1, stats: round?.stats ?? emptyStats() });
  else if (cmd.type === 'end') endRound().then(() => reply({ type: 'ended', round: -1 }), failed);
  else void stop();
});
// The bench process is gone (or closed the channel): leave, whatever happened to it.
process.on('disconnect', () => void stop());
