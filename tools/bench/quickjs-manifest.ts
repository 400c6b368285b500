/**
 * Bench "quickjs", manifest verification and Ed25519 in ms per call: `verifyManifestWithTrust` with
 * 1, 2 and 3 release signatures in our bundle and in the noble-Ed25519 build, single verifyEd25519
 * calls (steady and first call in a fresh VM) and loadTrust (tools/bench/quickjs.ts says why).
 */
import { parseEnvelope, sigStructure } from '../../shared/cose.js';
import { detBytes, detKey, makeManifest, makeManifestEnvelope, makeTrust } from '../../test/support/fixtures.js';
import { type QuickJSVariantName, type VerifierVM } from '../../test/support/quickjs.js';
import { msRow, type Samples, yieldToSignals } from './common.js';
import { best, empty, findRow, type QuickJsBench, timeEval } from './quickjs-context.js';

const MANIFEST_GOAL = 1;

// ---------- worlds ----------

const STATE = { deviceClass: 'acme-gw', counter: 7 };

/** Root A,B,C (2 of 3) signed by A+B; release R1..R3 with threshold n; a manifest signed by R1..Rn. */
function manifestWorld(n: number) {
  const [A, B, C, R1, R2, R3] = ['A', 'B', 'C', 'R1', 'R2', 'R3'].map((l) => detKey(`quickjs bench/${l}`));
  const release = [R1, R2, R3];
  const trust = makeTrust({ root: [A, B, C], rootThreshold: 2, release, releaseThreshold: n, signers: [A, B] });
  const manifest = makeManifest(detBytes(64 * 1024, 'quickjs bench image'), { deviceClass: STATE.deviceClass, securityCounter: STATE.counter });
  const envelope = makeManifestEnvelope(manifest, release.slice(0, n));
  return { trust, envelope, releaseKeys: release };
}

// ---------- manifest verification and Ed25519, ms per call ----------

const VERIFY1 = 'fwsealVerifier.verifyEd25519(fwsealHarness.slots.sig, fwsealHarness.slots.msg, fwsealHarness.slots.pub)';

export type Ed25519Inputs = { readonly worlds: ReturnType<typeof manifestWorld>[]; readonly setEd: (vm: VerifierVM) => void };
type Pair = { ours: Samples; noble: Samples };
const pair = (): Pair => ({ ours: empty(), noble: empty() });

/** The 1-, 2- and 3-signature worlds and one signature of the first, for single verifyEd25519 calls. */
export function ed25519Inputs(): Ed25519Inputs {
  const worlds = [1, 2, 3].map(manifestWorld);
  const env1 = parseEnvelope(worlds[0].envelope);
  if (!env1.ok) throw new Error('fixture envelope does not parse');
  const oneSig = { sig: env1.envelope.signatures[0].signature, msg: sigStructure(env1.envelope.payload), pub: worlds[0].releaseKeys[0].publicKey };
  const setEd = (vm: VerifierVM) => {
    vm.setBytes('sig', oneSig.sig);
    vm.setBytes('msg', oneSig.msg);
    vm.setBytes('pub', oneSig.pub);
  };
  return { worlds, setEd };
}

export async function measureManifests(b: QuickJsBench, variant: QuickJSVariantName, ed: Ed25519Inputs, msRuns: number): Promise<void> {
  b.ctx.log(`${variant}: manifest verification, ours vs the noble-Ed25519 build (${msRuns} runs each)`);
  const first = await firstCalls(b, variant, ed);
  const vms = { ours: await b.ours(variant), noble: await b.noble(variant) };
  try {
    for (const vm of Object.values(vms)) loadManifestInputs(vm, variant, ed);
    const steady = await steadyCalls(variant, vms, msRuns);
    manifestRows(b, variant, { ...steady, first }, msRuns);
  } finally {
    vms.ours.dispose();
    vms.noble.dispose();
  }
}

/** First call in a fresh VM: noble builds its base-point tables, ours its 8 multiples of B. */
async function firstCalls(b: QuickJsBench, variant: QuickJSVariantName, ed: Ed25519Inputs): Promise<Pair> {
  const first = pair();
  for (let r = 0; r < b.ctx.runs; r++) {
    for (const [which, load] of [
      ['ours', b.ours],
      ['noble', b.noble],
    ] as const) {
      await yieldToSignals();
      const vm = await load(variant);
      try {
        ed.setEd(vm);
        const t = timeEval<boolean>(vm, VERIFY1);
        if (t.value !== true) throw new Error(`${variant} ${which}: verifyEd25519 rejected a valid signature`);
        first[which].seconds.push(t.seconds);
      } finally {
        vm.dispose();
      }
    }
  }
  return first;
}

/** The signature, the three trust bundles (loaded) and envelopes into a VM, then 2 warm-up calls of each manifest. */
function loadManifestInputs(vm: VerifierVM, variant: QuickJSVariantName, ed: Ed25519Inputs): void {
  ed.setEd(vm);
  ed.worlds.forEach((w, i) => {
    vm.setBytes(`trust${i + 1}`, w.trust);
    vm.setBytes(`env${i + 1}`, w.envelope);
  });
  const loaded = vm.evalJson<number[]>(`(function () { var S = fwsealHarness.slots, out = [];
    for (var n = 1; n <= 3; n++) { var t = fwsealVerifier.loadTrust(S['trust' + n]); out.push(t.code); S['t' + n] = t.trust; }
    return out; })()`);
  if (loaded.some((c) => c !== 0)) throw new Error(`${variant}: loadTrust rejected a fixture trust bundle: ${loaded.join(',')}`);
  for (let w = 0; w < 2; w++)
    for (let n = 1; n <= 3; n++)
      vm.evalJson(`fwsealVerifier.verifyManifestWithTrust(fwsealHarness.slots.env${n}, fwsealHarness.slots.t${n}, ${JSON.stringify(STATE)}).code`);
}

/** Steady state, one VM each: verifyManifestWithTrust with 1..3 signatures, verifyEd25519 and loadTrust per run. */
async function steadyCalls(
  variant: QuickJSVariantName,
  vms: { ours: VerifierVM; noble: VerifierVM },
  msRuns: number,
): Promise<{ steady: Pair; load: Pair; man: Pair[] }> {
  const steady = pair();
  const load = pair();
  const man = [1, 2, 3].map(pair);
  for (let r = 0; r < msRuns; r++) {
    await yieldToSignals();
    for (const which of ['ours', 'noble'] as const) {
      const vm = vms[which];
      for (let n = 1; n <= 3; n++) {
        const t = timeEval<{ code: number; signers: number }>(
          vm,
          `(function () { var m = fwsealVerifier.verifyManifestWithTrust(fwsealHarness.slots.env${n}, fwsealHarness.slots.t${n}, ${JSON.stringify(STATE)});
          return { code: m.code, signers: m.ok ? m.signers.length : 0 }; })()`,
        );
        if (t.value.code !== 0 || t.value.signers !== n)
          throw new Error(`${variant} ${which}: ${n}-signature manifest rejected (code ${t.value.code}, ${t.value.signers} signers)`);
        man[n - 1][which].seconds.push(t.seconds);
      }
      const v = timeEval<boolean>(vm, VERIFY1);
      if (v.value !== true) throw new Error(`${variant} ${which}: verifyEd25519 rejected a valid signature`);
      steady[which].seconds.push(v.seconds);
      const l = timeEval<number>(vm, 'fwsealVerifier.loadTrust(fwsealHarness.slots.trust2).code');
      if (l.value !== 0) throw new Error(`${variant} ${which}: loadTrust rejected`);
      load[which].seconds.push(l.seconds);
    }
  }
  return { steady, load, man };
}

function manifestRows(b: QuickJsBench, variant: QuickJSVariantName, t: { first: Pair; steady: Pair; load: Pair; man: Pair[] }, msRuns: number): void {
  const { rows } = b;
  const { first, steady, load, man } = t;
  for (let n = 1; n <= 3; n++) {
    const m = man[n - 1];
    rows.push(msRow(`${variant} manifest ${n} sig, noble default`, m.noble, null, `verifyManifestWithTrust, threshold ${n}, noble-Ed25519 build`));
    rows.push(msRow(`${variant} manifest ${n} sig, ours`, m.ours, best(m.noble), `verifyManifestWithTrust, threshold ${n}, low-memory Ed25519`));
  }
  rows.push(msRow(`${variant} verifyEd25519, noble default`, steady.noble, null));
  rows.push(msRow(`${variant} verifyEd25519, ours`, steady.ours, best(steady.noble)));
  rows.push(msRow(`${variant} verifyEd25519 1st call, noble`, first.noble, null, 'fresh VM: includes building the base-point tables'));
  rows.push(msRow(`${variant} verifyEd25519 1st call, ours`, first.ours, best(first.noble), 'fresh VM: includes the 8 odd multiples of B'));
  rows.push(msRow(`${variant} loadTrust 6 keys 2 sigs, noble`, load.noble, null, 'root+release key checks (torsion) and 2 root signatures'));
  rows.push(msRow(`${variant} loadTrust 6 keys 2 sigs, ours`, load.ours, best(load.noble)));
  const two = findRow(b, `${variant} manifest 2 sig, ours`);
  const value = two?.ratio ?? null;
  b.verdicts.push({
    name: `manifest 2 sig (${variant})`,
    goal: MANIFEST_GOAL,
    value,
    pass: value !== null && value >= MANIFEST_GOAL,
    basis: `noble-Ed25519 build best / ours best, verifyManifestWithTrust, ${msRuns} runs each`,
  });
}
