/**
 * An in-process MQTT 3.1.1 broker (aedes) on a loopback port, for `npm run demo` and quick trials
 * without installing mosquitto. Not for fleets: no persistence, no MQTT 5 (so no shared
 * subscriptions: one `fwseal serve` instance), no TLS. Payloads above `maxPayloadBytes` are dropped.
 */
import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';

export type EmbeddedBroker = { readonly url: string; readonly port: number; close(): Promise<void> };

export async function startEmbeddedBroker(options: { host?: string; port?: number; maxPayloadBytes?: number } = {}): Promise<EmbeddedBroker> {
  const host = options.host ?? '127.0.0.1';
  const max = options.maxPayloadBytes ?? 131072;
  const broker = await Aedes.createBroker({
    authorizePublish: (_client, packet, callback) => callback(packet.payload.length > max ? new Error('payload too large') : null),
  });
  const server: Server = createServer(broker.handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return {
    url: `mqtt://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => broker.close(() => resolve()));
        // Sockets of clients that are still connected would keep server.close() waiting.
        for (const c of Object.values((broker as unknown as { clients: Record<string, { close(): void }> }).clients)) c.close();
      }),
  };
}
