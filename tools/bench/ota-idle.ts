/**
 * The largest idle fleet of the "ota" section (tools/bench/ota.ts): steps of fleet-sim processes
 * (each at most FLEET_MAX devices) connected to one mosquitto, counted from
 * $SYS/broker/clients/connected, each step held IDLE_HOLD_S seconds; the next step only after one held.
 */

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { type Mosquitto } from '../../test/support/mosquitto.js';
import { type Row, valueRow } from './common.js';
import { CLASS, type OtaBench } from './ota-campaign.js';
import { fdLimit, mosquittoPid, type Proc, sleep, vmHwmKiB, waitFor } from './ota-procs.js';

const IDLE_STEPS = [1000, 4000, 10000, 15000, 19500];
/** fleet-sim's --count limit (LIMITS.maxFleetDevices, host/commands/fleet.ts). */
const FLEET_MAX = 10_000;
/** No new idle step after this long into the idle measurement (the steps take about 150 s on 2 cores). */
const IDLE_BUDGET_MS = 220_000;
const IDLE_CONNECT_S = 60;
const IDLE_HOLD_S = 10;

/** The largest step held so far, with the fleet-sim and broker peak RSS at it. */
type Held = { held: number; heldRss: number; heldBrokerRss: number | null };

/** Run the idle steps on `ib` (a broker with `sys_interval 1`) until one fails or IDLE_BUDGET_MS from `startedAt` is spent. */
export async function measureIdleFleet(b: OtaBench, ib: Mosquitto, startedAt: number, rows: Row[]): Promise<void> {
  const mon = await mqtt.connectAsync(ib.url, { protocolVersion: 4, clientId: `bench-mon-${process.pid}`, reconnectPeriod: 0 });
  const clients = { connected: 0 };
  mon.on('message', (_t, payload) => {
    clients.connected = Number(payload.toString());
  });
  await mon.subscribeAsync('$SYS/broker/clients/connected', { qos: 0 });
  const mpid = mosquittoPid(ib);
  const h: Held = { held: 0, heldRss: 0, heldBrokerRss: null };
  const idleNotes: string[] = [];
  try {
    // The broker's count includes this monitor: wait for a $SYS update that shows it.
    await waitFor('$SYS/broker/clients/connected', 5000, () => clients.connected >= 1, 100);
    const base = clients.connected;
    for (const n of IDLE_STEPS) {
      if (Date.now() - startedAt > IDLE_BUDGET_MS) {
        idleNotes.push(`stopped before ${n}: time budget`);
        break;
      }
      const ok = await idleStep(b, ib, n, () => clients.connected - base, mpid, h, idleNotes);
      if (!ok) break;
      await waitFor('the idle fleet to disconnect', 30_000, () => clients.connected - base <= 0, 200).catch(() =>
        idleNotes.push(`${n}: broker still counted ${clients.connected - base} clients 30 s after the fleet stopped`),
      );
    }
  } finally {
    await mon.endAsync(true);
  }
  const { held, heldRss, heldBrokerRss } = h;
  rows.push(
    valueRow(
      'largest idle fleet held connected (one mosquitto)',
      held,
      'devices',
      `steps ${IDLE_STEPS.join(', ')}, <= ${FLEET_MAX} devices per fleet-sim process; ${IDLE_HOLD_S} s held`,
    ),
  );
  if (held) {
    rows.push(
      valueRow(
        'fleet-sim RSS per idle device',
        Math.round((heldRss / held) * 10) / 10,
        'KiB',
        `16 KiB slots in RAM (--memory), peak ${(heldRss / 1024).toFixed(0)} MiB at ${held}`,
      ),
    );
    if (heldBrokerRss !== null) rows.push(valueRow('mosquitto RSS per idle client', Math.round((heldBrokerRss / held) * 10) / 10, 'KiB'));
  }
  b.notes.push(`idle fleet (mosquitto defaults + sys_interval 1, count from $SYS/broker/clients/connected): ${idleNotes.join('; ')}`);
  b.notes.push(
    `idle fleet bound: open-file limit ${fdLimit()} (inherited by mosquitto, one fd per client), so ${IDLE_STEPS[IDLE_STEPS.length - 1]} is the last step; beyond it needs a higher ulimit -n, not more RAM or CPU`,
  );
}

/** One step: n idle devices in ceil(n / FLEET_MAX) fleet-sim processes, connected and held; true when it held. */
async function idleStep(
  b: OtaBench,
  ib: Mosquitto,
  n: number,
  connected: () => number,
  mpid: number | undefined,
  h: Held,
  idleNotes: string[],
): Promise<boolean> {
  const { ctx } = b;
  // fleet-sim takes at most FLEET_MAX devices: larger steps run several processes.
  const parts = Array.from({ length: Math.ceil(n / FLEET_MAX) }, (_, k) => Math.min(FLEET_MAX, n - k * FLEET_MAX));
  ctx.log(`ota: idle fleet of ${n} (${parts.length} fleet-sim process${parts.length > 1 ? 'es' : ''})`);
  const t0 = Date.now();
  const fleets = startIdleFleets(b, ib, n, parts);
  const anyExited = (): Proc | undefined => fleets.find((f) => f.child.exitCode !== null || f.child.signalCode !== null);
  let ok = false;
  try {
    await waitFor(
      `${n} idle devices connected`,
      IDLE_CONNECT_S * 1000,
      () => {
        const gone = anyExited();
        if (gone) throw new Error(`fleet-sim exited with ${gone.child.exitCode ?? gone.child.signalCode}: ${gone.err.slice(-300).trim()}`);
        return connected() >= n;
      },
      200,
    );
    const up = (Date.now() - t0) / 1000;
    const holdEnd = Date.now() + IDLE_HOLD_S * 1000;
    let min = n;
    while (Date.now() < holdEnd) {
      await sleep(500);
      min = Math.min(min, connected());
      if (anyExited()) break;
    }
    ok = min >= n && !anyExited();
    const rssAll = fleets.map((f) => vmHwmKiB(f.child.pid));
    const rss = rssAll.every((x) => x !== null) ? rssAll.reduce((a: number, x) => a + (x ?? 0), 0) : null;
    const brss = vmHwmKiB(mpid);
    idleNotes.push(
      `${n}: ${ok ? `held ${IDLE_HOLD_S} s` : `dropped to ${min}`}; all connected after ${up.toFixed(1)} s (process start included); fleet-sim peak RSS ${rss === null ? '?' : (rss / 1024).toFixed(0)} MiB${parts.length > 1 ? ` (sum of ${parts.length})` : ''}, mosquitto ${brss === null ? '?' : (brss / 1024).toFixed(0)} MiB`,
    );
    if (ok) {
      h.held = n;
      h.heldRss = rss ?? 0;
      h.heldBrokerRss = brss;
    }
  } catch (e) {
    idleNotes.push(`${n}: failed: ${(e as Error).message} (connected ${connected()})`);
  } finally {
    await Promise.all(fleets.map((f) => b.procs.stop(f, 20_000)));
    for (let k = 0; k < parts.length; k++) rmSync(join(ctx.tmpDir, `idle-${n}-${k}`), { recursive: true, force: true });
  }
  return ok;
}

/** The fleet-sim processes of one step: `parts[k]` idle devices each, slots in RAM, state under the section's tmpDir. */
function startIdleFleets(b: OtaBench, ib: Mosquitto, n: number, parts: number[]): Proc[] {
  const { ctx, rel } = b;
  return parts.map((count, k) =>
    b.procs.start('fwseal fleet-sim', [
      'fleet-sim',
      '--broker',
      ib.url,
      '--count',
      String(count),
      '--group',
      `idle-${n}`,
      '--trust',
      rel.trust,
      '--device-class',
      CLASS,
      '--state',
      join(ctx.tmpDir, `idle-${n}-${k}`),
      '--factory',
      rel.idleV1,
      '--factory-image',
      rel.idleV1Bin,
      '--memory',
      '--slot-size',
      '16384',
      '--id-prefix',
      `i${n}-${k}-`,
      '--json',
    ]),
  );
}
