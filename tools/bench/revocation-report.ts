/**
 * The rows, verdicts and notes of the "revocation" section (tools/bench/revocation.ts), from its
 * rounds: per fleet kind p50/p99/max of the per-device propagation time (the worst run decides the
 * goal), devices enforcing, broker bytes, and the server's histogram; the reference's ratio.
 */
import { msRow, type Row, type SectionResult, type Verdict, valueRow } from './common.js';
import { type RefRound, type Results, type Round } from './revocation-rounds.js';

/** SPEC's goal for an online fleet (the design source's SLI M6 asks < 5 min). */
const GOAL_P99_S = 2;

const ms = (s: number) => (Number.isFinite(s) ? `${(s * 1000).toFixed(1)} ms` : 'not reached');
const samples = (xs: readonly number[]) => ({ seconds: [...xs], rssKiB: [] });

function roundNote(label: string, i: number, x: Round): string {
  const s = x.server;
  return (
    `${label} run ${i + 1} (list ${x.version}): p50 ${ms(x.p50)}, p99 ${ms(x.p99)}, max ${ms(x.max)}, ${x.enforcing} enforcing at the monitor; ` +
    `server: ${s.count} observations${s.ingested ? '' : ' (not all ingested in 30 s)'}, mean ${ms(s.mean)}, p50 ${s.bounds[0]}, p99 ${s.bounds[1]}, max ${s.bounds[2]}, enforcing ratio ${s.ratio}; ` +
    `POST answered after ${x.answeredMs.toFixed(1)} ms, list accepted ${x.acceptedMs === null ? '?' : `${x.acceptedMs.toFixed(0)} ms`} after the call (server clock); ` +
    `broker sent ${x.bytes.sent} B, received ${x.bytes.received} B (monitor's copies ${x.monitorCopy} B of the sent); ${x.cpu}`
  );
}

function refNote(i: number, x: RefRound): string {
  return `reference run ${i + 1}: last echo ${ms(x.seconds)}, p50 ${ms(x.p50)}, ${x.echoes} echoes; broker sent ${x.bytes.sent} B, received ${x.bytes.received} B (monitor's copies ${x.monitorCopy} B)`;
}

/** The rows and verdicts of one kind of fleet; the max row carries the ratio to the reference. */
function fleetRows(label: string, rounds: readonly Round[], devices: number, refBest: number | null, rows: Row[], verdicts: Verdict[]): void {
  if (rounds.length === 0) return;
  rows.push(msRow(`${label}: p50, POST /api/root -> ack at the monitor`, samples(rounds.map((x) => x.p50)), null));
  rows.push(msRow(`${label}: p99`, samples(rounds.map((x) => x.p99)), null, `goal < ${GOAL_P99_S} s`));
  rows.push(msRow(`${label}: max (all ${devices} acknowledged)`, samples(rounds.map((x) => x.max)), refBest, 'ratio: reference best / this best'));
  const enforcing = Math.min(...rounds.map((x) => x.enforcing));
  rows.push(
    valueRow(
      `${label}: devices enforcing (worst run)`,
      enforcing,
      'devices',
      `per run: ${rounds.map((x) => x.enforcing).join(', ')}; server's fwseal_revocation_enforcing_ratio: ${rounds.map((x) => x.server.ratio).join(', ')}`,
    ),
  );
  rows.push(
    valueRow(
      `${label}: broker bytes sent per round (largest)`,
      Math.max(...rounds.map((x) => x.bytes.sent)),
      'B',
      `$SYS/broker/bytes/sent delta; received per run: ${rounds.map((x) => x.bytes.received).join(', ')}`,
    ),
  );
  const worstMean = Math.max(...rounds.map((x) => x.server.mean));
  rows.push(
    valueRow(`${label}: server histogram mean (worst run)`, Math.round(worstMean * 10000) / 10, 'ms', 'fwseal_revocation_propagation_seconds sum / count'),
  );
  const worstP99 = Math.max(...rounds.map((x) => x.p99));
  verdicts.push({
    name: `${label}: p99 < ${GOAL_P99_S} s`,
    goal: 1,
    value: GOAL_P99_S / worstP99,
    pass: worstP99 < GOAL_P99_S,
    basis: `${GOAL_P99_S} s / worst run's p99 ${ms(worstP99)}`,
  });
  verdicts.push({
    name: `${label}: all ${devices} enforcing`,
    goal: 1,
    value: enforcing / devices,
    pass: enforcing === devices,
    basis: `fewest devices acknowledging the list in a run: ${enforcing} of ${devices}`,
  });
}

export function report(r: Results, devices: number, runs: number): SectionResult {
  const rows: Row[] = [];
  const verdicts: Verdict[] = [];
  let refBest: number | null = null;
  if (r.ref.length) {
    const refRow = msRow(
      `reference: raw fan-out, ${devices} clients, announcement-size retained message, echoed`,
      samples(r.ref.map((x) => x.seconds)),
      null,
      'publish -> last echo at the monitor; the same broker and the protocol clients',
    );
    rows.push(refRow);
    refBest = refRow.bestSeconds;
  }
  fleetRows('protocol clients', r.clients, devices, refBest, rows, verdicts);
  fleetRows('fleet-sim', r.fleetSim, devices, refBest, rows, verdicts);
  const notes = [
    `per device: the POST /api/root call (bench clock) -> that device's first online naming the list's version and payload digest at the monitor (QoS 0 subscriber in the bench process); ${runs} run(s), the goal judged on the worst`,
    "headline: protocol clients (server, broker and protocol; each device's own check is parallel in a real fleet); fleet-sim serialises 1,000 real devices' work (verify, store on flash, acknowledge) on one core here, so its times are an upper bound",
    "server view: fwseal_revocation_propagation_seconds from /metrics (the list's acceptance -> the server ingesting each acknowledgement), delta per round; quantiles are bucket bounds",
    'bytes: mosquitto $SYS/broker/bytes/sent and /received deltas (sys_interval 1) around each round: the announcement to every device, the acknowledgements to the server (QoS 1) and to the monitor, PUBACKs, $SYS updates and keepalives',
    'protocol clients: one forked process, the device verifier (host/hash.ts fleetVerifier: one Ed25519 check per list for all), no flash; fleet-sim: real OtaClients, the agent stores each list power-fail safely on RAM flash (same verifier memo)',
    ...r.ref.map((x, i) => refNote(i, x)),
    ...r.clients.map((x, i) => roundNote('protocol clients', i, x)),
    ...r.fleetSim.map((x, i) => roundNote('fleet-sim', i, x)),
    ...r.notes,
  ];
  return {
    name: 'revocation',
    title: `revocation propagation: a list published to ${devices} online devices through mosquitto and fwseal serve, against raw fan-out`,
    rows,
    verdicts,
    notes,
  };
}
