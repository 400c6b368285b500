/**
 * Rows, verdicts and notes of the "ota" section's delivery and scale measurements (issue 15 item 7):
 * (a) delivery only against mosquitto's raw fan-out, (b) server and broker cost per delivered GiB,
 * (c) many light devices through one and through two serve instances.
 */
import { type Row, row, type Verdict, valueRow } from './common.js';
import { type FanoutRun } from './fanout.js';
import { type DeliveryRun, deliveryLine, GiB, serveCpu } from './ota-delivery.js';
import { metricValue, type ScaleRun } from './ota-scale.js';

const round = (x: number, places = 2) => Math.round(x * 10 ** places) / 10 ** places;
const sum = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0);

/** Messages a campaign made the server handle: every request the devices sent, and their status events after `online`. */
export function campaignMessages(r: DeliveryRun): { total: number; requests: number; status: number } {
  const s = r.stats;
  const requests = s.manifestRequests + s.pageRequests + s.blockRequests;
  const status = s.statusEvents - s.clients; // each device's `online` came before the campaign
  return { total: requests + status, requests, status };
}

/** (a) The raw fan-out and delivery-only rows, the ratio verdict. */
export function deliveryRows(
  raw: readonly FanoutRun[],
  runs: readonly DeliveryRun[],
  imageBytes: number,
  rows: Row[],
  verdicts: Verdict[],
  notes: string[],
): void {
  const n = runs[0]?.devices ?? 0;
  const bytes = n * imageBytes;
  const mib = imageBytes / 2 ** 20;
  const rawRow = row(`raw fan-out: ${n} subscribers x ${mib} MiB (QoS 1, 64 KiB messages)`, bytes, { seconds: raw.map((r) => r.seconds), rssKiB: [] }, null);
  rows.push(rawRow);
  const done = runs.filter((r) => r.completed);
  for (const r of runs.filter((x) => !x.completed)) notes.push(`delivery run not completed: ${deliveryLine(r)}; ${r.serverLogTail.join(' | ')}`);
  if (done.length === 0) return;
  const del = row(
    `delivery only: ${n} protocol devices x ${mib} MiB (first announcement -> last chunk checked)`,
    bytes,
    { seconds: done.map((r) => r.delivery), rssKiB: [] },
    rawRow.bestSeconds,
    'ratio: raw best / this best; devices check every chunk, flash nothing, and send the status events of a device',
  );
  rows.push(del);
  const ratio = rawRow.bestSeconds / del.bestSeconds;
  rows.push(valueRow('ratio: raw fan-out best / delivery-only best', round(ratio), 'x', 'goal >= 0.5'));
  const bound = deviceBound(rawRow.bestSeconds, done, rows);
  rows.push(
    row(
      `delivery only: campaign create -> server counts all ${n} confirmed`,
      bytes,
      { seconds: done.map((r) => r.complete), rssKiB: [] },
      null,
      'information: includes the image upload and status ingest',
    ),
  );
  const hwm = done.flatMap((r) => r.serverHwm).filter((x): x is number => x !== null);
  if (hwm.length) rows.push(valueRow('delivery only: peak RSS fwseal serve', round(Math.max(...hwm) / 1024, 1), 'MiB'));
  verdicts.push({
    name: 'delivery only vs raw fan-out',
    goal: 0.5,
    value: ratio,
    pass: ratio >= 0.5,
    basis: `raw best ${rawRow.bestSeconds.toFixed(3)} s / delivery best ${del.bestSeconds.toFixed(3)} s, ${n} devices x ${mib} MiB, measured in this run${bound === null ? '' : `; the device process bounds it at about ${bound.toFixed(2)}`}`,
  });
  notes.push(...runs.map((r, i) => `delivery run ${i + 1}: ${deliveryLine(r)}`));
  notes.push(
    ...raw.map(
      (r, i) =>
        `raw fan-out run ${i + 1}: ${r.seconds.toFixed(3)} s; CPU s mosquitto ${r.meter.cpu.mosquitto?.toFixed(2) ?? '?'}, subscribers ${r.meter.cpu.subscribers?.toFixed(2) ?? '?'}; broker sent ${(r.meter.bytesSent / 1e6).toFixed(1)} MB`,
    ),
  );
  costRows(raw, done, imageBytes, rows, verdicts);
}

/**
 * About the most (a) can be with these simulated devices, whatever the server does: a client process
 * runs its devices' work (receiving, hashing every chunk, their requests and events) on one
 * JavaScript thread, so a delivery takes about the CPU that work took in the delivery window.
 */
function deviceBound(rawBest: number, done: readonly DeliveryRun[], rows: Row[]): number | null {
  const cpu = done.map((r) => r.stats.deliveryCpuMs / 1000).filter((x) => x > 0);
  if (cpu.length === 0) return null;
  const least = Math.min(...cpu);
  const busy = done.map((r) => `${((r.stats.deliveryCpuMs / 1000 / r.delivery) * 100).toFixed(0)}%`).join(', ');
  const bound = rawBest / least;
  rows.push(
    valueRow(
      'bound on that ratio set by the device process: raw best / its least CPU in the delivery window',
      round(bound),
      'x',
      `busiest client process: ${cpu.map((x) => x.toFixed(2)).join(', ')} CPU s in the delivery window (${busy} of it); approximate, as its CPU counts its helper threads (garbage collection) too: a server costing nothing would not get far past it`,
    ),
  );
  return bound;
}

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** Block answers a run's instances sent as replies to one device rather than as copies on the data topic (each copy counts once in both). */
function plainBlockReplies(r: DeliveryRun): number {
  return sum(r.metrics.map((m) => metricValue(m, 'fwseal_blocks_served_total') - metricValue(m, 'fwseal_block_multicasts_total')));
}

/** (b) CPU seconds and broker bytes per delivered GiB, summed over the completed runs; server CPU against mosquitto's. */
function costRows(raw: readonly FanoutRun[], runs: readonly DeliveryRun[], imageBytes: number, rows: Row[], verdicts: Verdict[]): void {
  const gib = sum(runs.map((r) => (r.devices * imageBytes) / GiB));
  const server = runs.map(serveCpu);
  const broker = runs.map((r) => r.meter.cpu.mosquitto ?? null);
  if (server.some((x) => x === null) || broker.some((x) => x === null)) return;
  const serverCpu = sum(server as number[]);
  const brokerCpu = sum(broker as number[]);
  const bytes = sum(runs.map((r) => r.meter.bytesSent));
  const basis = `summed over ${runs.length} campaigns, create -> all confirmed; /proc/<pid>/stat utime+stime`;
  rows.push(valueRow('serve CPU per delivered GiB', round(serverCpu / gib), 's/GiB', `${serverCpu.toFixed(2)} s for ${gib.toFixed(3)} GiB (${basis})`));
  // One run whose herd outlasted the multicast hold (SPEC.md §12.11: its askers get plain 64 KiB replies) can double a run's CPU and sway the sum.
  const perRun = runs.map((r, i) => (server[i] as number) / ((r.devices * imageBytes) / GiB));
  const plain = runs.map(plainBlockReplies);
  rows.push(
    valueRow(
      'serve CPU per delivered GiB, median run',
      round(median(perRun)),
      's/GiB',
      `per run: ${perRun.map((x, i) => `${x.toFixed(2)} (${plain[i]} plain block replies)`).join(', ')}; runs with plain block replies: ${plain.filter((x) => x > 0).length} of ${runs.length}`,
    ),
  );
  rows.push(valueRow('mosquitto CPU per delivered GiB, same campaigns', round(brokerCpu / gib), 's/GiB', `${brokerCpu.toFixed(2)} s`));
  rows.push(
    valueRow('broker bytes sent per delivered GiB', round(bytes / GiB / gib), 'GiB/GiB', '$SYS/broker/bytes/sent delta over the same window (1 s resolution)'),
  );
  const rawGib = sum(raw.map((r) => r.delivered / GiB));
  const rawCpu = sum(raw.map((r) => r.meter.cpu.mosquitto ?? 0));
  if (rawGib > 0) {
    rows.push(valueRow('reference: mosquitto CPU per GiB of raw fan-out', round(rawCpu / rawGib), 's/GiB'));
    rows.push(valueRow('reference: broker bytes sent per GiB of raw fan-out', round(sum(raw.map((r) => r.meter.bytesSent)) / GiB / rawGib), 'GiB/GiB'));
  }
  const ratio = brokerCpu / serverCpu;
  rows.push(valueRow('ratio: mosquitto CPU / serve CPU, same campaigns', round(ratio), 'x', 'goal >= 1 (server CPU <= 1x mosquitto CPU)'));
  verdicts.push({
    name: 'serve CPU <= mosquitto CPU',
    goal: 1,
    value: ratio,
    pass: ratio >= 1,
    basis: `mosquitto ${brokerCpu.toFixed(2)} s / serve ${serverCpu.toFixed(2)} s over ${runs.length} delivery campaigns (${(gib * 1024).toFixed(0)} MiB delivered)`,
  });
}

/** Each instance's share of the work from its /metrics (block responses, block answers to devices, error replies) and its CPU. */
function shares(r: DeliveryRun): string {
  const served = r.metrics.map((m) => metricValue(m, 'fwseal_blocks_served_total'));
  const answers = r.metrics.map((m) => metricValue(m, 'fwseal_block_latency_seconds_count'));
  const busy = r.metrics.map((m) => metricValue(m, 'fwseal_error_replies_total\\{code="SERVER_BUSY"\\}'));
  const pct = (xs: number[], i: number) => `${Math.round((100 * xs[i]!) / Math.max(1, sum(xs)))}%`;
  return r.metrics
    .map(
      (_, i) =>
        `instance ${i + 1}: block responses ${served[i]} (${pct(served, i)}), block answers ${answers[i]} (${pct(answers, i)}), SERVER_BUSY ${busy[i]}, CPU ${r.meter.cpu[`serve ${i + 1}`]?.toFixed(1) ?? '?'} s`,
    )
    .join('; ');
}

/** (c) One time row and value rows per scale campaign. */
export function scaleRows(runs: readonly ScaleRun[], imageBytes: number, rows: Row[], notes: string[]): void {
  for (const s of runs) {
    const r = s.run;
    if (!r) {
      notes.push(`scale, ${s.label}: not measured: ${s.error}`);
      continue;
    }
    const label = `${r.devices} light devices, ${s.label}`;
    const bytes = r.devices * imageBytes;
    const note = r.completed ? `${(imageBytes / 1024).toFixed(0)} KiB release; MB/s = goodput` : `NOT COMPLETED: ${r.confirmed} confirmed`;
    rows.push(row(`${label}: create -> all confirmed`, bytes, { seconds: [r.complete], rssKiB: [] }, null, note));
    const hwm = r.serverHwm.filter((x): x is number => x !== null);
    if (hwm.length)
      rows.push(valueRow(`${label}: peak RSS per serve`, round(Math.max(...hwm) / 1024, 1), 'MiB', hwm.map((k) => `${(k / 1024).toFixed(0)} MiB`).join(', ')));
    const m = campaignMessages(r);
    rows.push(
      valueRow(
        `${label}: requests and status events handled per second`,
        Math.round(m.total / r.complete),
        'msg/s',
        `${m.requests} requests (manifest ${r.stats.manifestRequests}, page ${r.stats.pageRequests}, block ${r.stats.blockRequests}) + ${m.status} status events over ${r.complete.toFixed(1)} s${r.completed ? '' : ' (not completed)'}`,
      ),
    );
    const cpu = serveCpu(r);
    if (cpu !== null) rows.push(valueRow(`${label}: serve CPU per 1,000 messages`, round((cpu / m.total) * 1000), 's', `${cpu.toFixed(1)} CPU s in all`));
    const db = r.meter.cpu.postgres;
    if (db !== undefined && db !== null)
      rows.push(
        valueRow(`${label}: PostgreSQL CPU per 1,000 messages`, round((db / m.total) * 1000), 's', `${db.toFixed(1)} CPU s in all (postmaster and backends)`),
      );
    if (r.metrics.length > 1) notes.push(`scale, ${s.label}: ${shares(r)}`);
    notes.push(`scale, ${s.label}: ${deliveryLine(r)}; connected in ${r.connectSeconds.toFixed(1)} s`);
    if (!r.completed) notes.push(`scale, ${s.label}: server log tail: ${r.serverLogTail.join(' | ')}`);
  }
}
