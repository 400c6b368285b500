/**
 * `fwseal incident revoke-key`: the key compromise drill as one command (SPEC.md §12.9, §12.13,
 * §11.4): revoke a leaked key in the next revocation list, publish it (the server halts every
 * campaign whose manifest it refuses), re-sign the stranded releases with the remaining release
 * keys, restart their rollouts, and watch every online device enforce the list. Everything that can
 * be checked before publishing is (flags, files, key roles, the list's completeness, the re-signed
 * releases under the new list); passphrases come from FWSEAL_PASSPHRASE or a prompt, as for every key.
 */
import { resolve } from 'node:path';
import { toHex } from '../../shared/bytes.js';
import { type CodeName, codeName } from '../../shared/codes.js';
import { FwsealError } from '../errors.js';
import { buildNextList, checkAgainstServer, checkRootSigners, fetchServerRoot, loadLocalRoot, type ServerRoot } from '../incident/next-list.js';
import { type Propagation, quantile, watchPropagation } from '../incident/propagation.js';
import { checkReleaseSigners, resignRelease, strandedRelease } from '../incident/resign.js';
import { type Restarted, restartRollouts } from '../incident/rollout.js';
import { writeFileAtomic } from '../io.js';
import { loadPublicKeyFile } from '../keys.js';
import { apiRequest } from '../ota/api-client.js';
import { openSigners, parseKeyRefs, publicKeyOf } from '../signers/index.js';
import { type Command, type Io, int, json, list, noPositionals, type Parsed, readObjectFile, str } from './common.js';
import { publishRoot, type RootPublished, SERVER_FLAGS, SERVER_USAGE, target } from './ota.js';

const DEFAULT_WATCH_SECONDS = 300;

/** Everything read and checked from files and flags, before the server is asked anything. */
function prepare(p: Parsed) {
  noPositionals(p);
  const revoke = list(p, 'key').map(loadPublicKeyFile);
  if (revoke.length === 0) throw new FwsealError('USAGE', 'at least one --key LEAKED.pub is needed');
  const signRefs = parseKeyRefs(list(p, 'sign'), list(p, 'sign-pub'), '--sign-pub');
  if (signRefs.length === 0) throw new FwsealError('USAGE', 'at least one --sign ROOT.key is needed');
  const releaseRefs = parseKeyRefs(list(p, 'release-key'), list(p, 'release-key-pub'), '--release-key-pub');
  const resignPaths = list(p, 'resign');
  if (releaseRefs.length > 0 && resignPaths.length === 0) throw new FwsealError('USAGE', '--release-key goes with --resign M.cose');
  const watchSeconds = int(p, 'watch-timeout', 0, 86_400, DEFAULT_WATCH_SECONDS);
  const previousPath = str(p, 'previous');
  const local = loadLocalRoot(
    readObjectFile(str(p, 'trust', true), 'trust-bundle'),
    previousPath ? readObjectFile(previousPath, 'revocation-list') : undefined,
  );
  checkRootSigners(local, signRefs.map(publicKeyOf));
  const releases = resignPaths.map((path) => strandedRelease(path, readObjectFile(path, 'manifest')));
  const releaseKeys = releaseRefs.map(publicKeyOf);
  const revokedAfter = [...local.revokedKeyIds, ...revoke.map((k) => k.keyId)];
  const knownKeys = checkReleaseSigners(releases, releaseKeys, local.trustBytes, revokedAfter);
  return { revoke, signRefs, releaseRefs, releases, knownKeys, local, watchSeconds };
}

type Summary = {
  list: { out: string; version: number; revokedKeyIds: string[]; changed: boolean };
  halted: { id: string; group: string | null; code: number; error: string }[];
  resigned: { file: string; version: string; added: readonly string[] }[];
  campaigns: { halted: string; id: string; group: string; release: string }[];
  unmatched: string[];
  propagation: (Omit<Propagation, 'seconds' | 'missing'> & { p50Seconds: number | null; maxSeconds: number | null }) | null;
};

const seconds = (x: number) => (Number.isNaN(x) ? null : Math.round(x * 1000) / 1000);

function propagationView(pr: Propagation): NonNullable<Summary['propagation']> {
  const { seconds: times, missing: _missing, ...rest } = pr;
  return { ...rest, p50Seconds: seconds(quantile(times, 0.5)), maxSeconds: seconds(quantile(times, 1)) };
}

function propagationLine(pr: Propagation): string {
  const times =
    pr.seconds.length > 0 ? `, acknowledged p50 ${quantile(pr.seconds, 0.5).toFixed(2)} s, max ${quantile(pr.seconds, 1).toFixed(2)} s after publication` : '';
  return `propagation: ${pr.enforcing}/${pr.online} online devices enforce revocation list ${pr.version}${times} (watching ${pr.waitedSeconds.toFixed(1)} s)\n`;
}

function publishedLines(out: string, version: number, r: RootPublished, groups: Map<string, string>): string {
  const lines = [`wrote ${out} (revocation list version ${version}); ${r.changed ? 'published' : 'already published, nothing changed'}`];
  for (const h of r.halted) lines.push(`halted campaign ${h.id} (group ${groups.get(h.id) ?? '?'}): ${codeName(h.code)} (${h.code})`);
  if (r.halted.length === 0) lines.push('no campaign was halted');
  return `${lines.join('\n')}\n`;
}

function restartedLine(r: Restarted): string {
  const c = r.campaign;
  return `restarted: campaign ${c.id} (group ${c.group}, release ${c.version}, waves ${c.waves.join(',')}) replaces ${r.halted.id} with ${r.release}\n`;
}

function summaryText(s: Summary): string {
  const pr = s.propagation;
  const enforced = pr
    ? `${pr.enforcing}/${pr.online} online devices enforce it${pr.maxSeconds !== null ? ` (acknowledged p50 ${pr.p50Seconds} s, max ${pr.maxSeconds} s)` : ''}`
    : 'propagation not watched (--watch-timeout 0)';
  return `done: revocation list version ${s.list.version}; ${s.halted.length} campaign(s) halted, ${s.campaigns.length} restarted; ${enforced}\n`;
}

/** Sign and check everything (list, re-signed releases) before the first write: a failure publishes nothing. */
function signAll(prep: ReturnType<typeof prepare>, server: ServerRoot) {
  const next = buildNextList(prep.local, server, prep.revoke, openSigners(prep.signRefs));
  if (!next.complete) return { next, resigned: [] };
  const releaseKeys = openSigners(prep.releaseRefs);
  return { next, resigned: prep.releases.map((r) => resignRelease(r, releaseKeys, prep.knownKeys, prep.local.trustBytes, next.envelope)) };
}

async function drill(p: Parsed, io: Io): Promise<Summary> {
  const say = p.values.json ? io.stderr : io.stdout;
  const prep = prepare(p);
  const t = target(p);
  const server = await fetchServerRoot(t);
  checkAgainstServer(prep.local, server);
  const { next, resigned } = signAll(prep, server);
  const out = str(p, 'out') ?? resolve(`revocations-v${next.version}.cbor`);
  writeFileAtomic(out, next.envelope);
  if (!next.complete) {
    throw new FwsealError(
      (next.error ?? 'REVOCATION_THRESHOLD_NOT_MET') as Exclude<CodeName, 'OK'>,
      `wrote ${out}, not published: it lacks root signatures; add them with fwseal sign ${out} --key ROOT.key, then fwseal trust publish ${out}`,
    );
  }
  io.audit?.({ action: 'revoke', kind: 'revocation-list', file: out, result: 'ok' });
  for (const r of resigned) if (r.resigned !== r.envelope) writeFileAtomic(r.path, r.resigned);
  for (const r of resigned) io.audit?.({ action: 'sign', kind: 'manifest', file: r.path, result: r.resigned !== r.envelope ? 'ok' : 'unchanged' });
  for (const r of resigned) say(`re-signed ${r.path} (${r.manifest.version}; added ${r.added.join(', ') || 'nothing'}): verifies under the new list\n`);
  const published = await publishRoot(t, next.envelope);
  io.audit?.({ action: 'trust publish', kind: 'revocation-list', file: out, result: published.changed ? 'ok' : 'unchanged' });
  const { campaigns } = await apiRequest<{ campaigns: { id: string; group: string }[] }>(t, 'GET', 'api/campaigns');
  const groups = new Map(campaigns.map((c) => [c.id, c.group]));
  say(publishedLines(out, next.version, published, groups));
  const rollouts = await restartRollouts(t, resigned, (r) => say(restartedLine(r)));
  for (const u of rollouts.unmatched) say(`note: no halted campaign carried ${u}; start one with fwseal campaign create\n`);
  let propagation: Propagation | null = null;
  if (prep.watchSeconds > 0)
    propagation = await watchPropagation(t, next.version, { timeoutMs: prep.watchSeconds * 1000, onChange: (pr) => say(propagationLine(pr)) });
  return {
    list: { out, version: next.version, revokedKeyIds: prep.revoke.map((k) => toHex(k.keyId)), changed: published.changed },
    halted: published.halted.map((h) => ({ ...h, group: groups.get(h.id) ?? null, error: codeName(h.code) })),
    resigned: resigned.map((r) => ({ file: r.path, version: r.manifest.version, added: r.added })),
    campaigns: rollouts.restarted.map((r) => ({ halted: r.halted.id, id: r.campaign.id, group: r.campaign.group, release: r.release })),
    unmatched: rollouts.unmatched,
    propagation: propagation ? propagationView(propagation) : null,
  };
}

export const incidentRevokeKey: Command = {
  name: 'incident revoke-key',
  summary: 'key compromise drill: revoke, publish, halt, re-sign, restart rollouts, watch the fleet enforce it',
  usage: `fwseal incident revoke-key --key LEAKED.pub [--key ...] --trust trust.cbor [--previous RL.cbor]
    --sign ROOT.key [--sign ...] [--out RL-next.cbor] [--resign M.cose ... [--release-key R.key ...]]
    [--watch-timeout SECONDS] [--server URL] [--json]

1. The next revocation list: --trust and --previous must be the trust bundle and the list the
   server publishes (GET /api/root); the new list is the next version, carries every entry of
   --previous forward, adds the --key keys, is signed by the --sign root keys and must be complete
   (else it is written for the other root key holders and nothing is published, exit 1). Written to
   --out (default ./revocations-vN.cbor).
2. Every --resign manifest gets signatures by the --release-key keys (release keys of --trust that
   the list does not revoke: else KEY_NOT_IN_TRUST / USAGE, exit 2, checked before any passphrase)
   and must verify under the trust bundle and the new list (else its code, exit 1). Written in place.
3. The list is published (POST /api/root): the server halts every campaign whose manifest it
   refuses. Each halted campaign that was its group's newest and carried a --resign release is
   aborted and started again as a new campaign with the re-signed manifest and the same image,
   group, waves, failure rate and block size.
4. Watches GET /api/devices until every online device (reported within 24 h) enforces the list,
   printing progress; after --watch-timeout seconds (default ${DEFAULT_WATCH_SECONDS}; 0: do not watch)
   it stops with TRANSPORT_TIMEOUT (exit 1) naming the devices still missing.
Prints each step and a summary (--json: the summary on stdout, the steps on stderr).
${SERVER_USAGE}

Examples:
  fwseal incident revoke-key --key R2.pub --trust trust.cbor --previous RL.cbor --sign A.key --sign B.key \\
    --resign M.cose --release-key R1.key --release-key R3.key --server http://127.0.0.1:8080`,
  options: {
    ...SERVER_FLAGS,
    key: { type: 'string', multiple: true },
    trust: { type: 'string' },
    previous: { type: 'string' },
    sign: { type: 'string', multiple: true },
    'sign-pub': { type: 'string', multiple: true },
    'release-key-pub': { type: 'string', multiple: true },
    out: { type: 'string' },
    resign: { type: 'string', multiple: true },
    'release-key': { type: 'string', multiple: true },
    'watch-timeout': { type: 'string' },
    json: { type: 'boolean' },
  },
  async run(p, io) {
    const s = await drill(p, io);
    if (p.values.json) json(io, s);
    else io.stdout(summaryText(s));
    return 0;
  },
};
