/**
 * `fwseal verify` of a revocation list or a trust bundle runs the checks a device runs before it
 * stores one (SPEC.md §6.1, §6.2, §6.7): with the device's stored list, revoked root keys can
 * neither undo their revocation nor rotate the bundle, and a list cannot drop a revoked key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliWorld, expectOk, expectRejected, expectUsage, makeCliWorld } from './support/cli-world.js';

let w: CliWorld;
const roots = ['--root', 'A.pub', '--root', 'B.pub', '--root', 'C.pub', '--root', 'D.pub', '--root-threshold', '2'];
const releases = ['--release', 'R1.pub', '--release', 'R2.pub', '--release-threshold', '2'];

beforeAll(async () => {
  w = await makeCliWorld(['A', 'B', 'C', 'D', 'R1', 'R2', 'X'], { trust: [...roots, ...releases, '--sign', 'C.key', '--sign', 'D.key'] });
  const revoke = (out: string, version: string, signers: string[], ...rest: string[]) =>
    w.run('revoke', '--trust', 'trust.cbor', '--version', version, ...rest, ...signers.flatMap((k) => ['--sign', `${k}.key`]), '--out', out);
  expectOk(await revoke('rl1.cbor', '1', ['C', 'D'], '--key', 'A.pub', '--key', 'B.pub'));
  expectOk(await revoke('unrevoke.cbor', '2', ['A', 'B'], '--kid', '00'.repeat(16)));
  expectOk(await revoke('drops-b.cbor', '2', ['C', 'D'], '--key', 'A.pub'));
  expectOk(await revoke('rl2.cbor', '2', ['C', 'D'], '--previous', 'rl1.cbor', '--key', 'R2.pub'));
  expectOk(
    await w.run(
      'trust',
      'rotate',
      '--previous',
      'trust.cbor',
      ...roots,
      '--release',
      'X.pub',
      '--release-threshold',
      '1',
      '--sign',
      'A.key',
      '--sign',
      'B.key',
      '--out',
      'takeover.cbor',
    ),
  );
});

afterAll(() => w?.close());

describe("fwseal verify of a revocation list, against the device's stored list", () => {
  it("A + B's list that revokes nothing: REVOCATION_THRESHOLD_NOT_MET (accepted without the stored list)", async () => {
    expectOk(await w.run('verify', 'unrevoke.cbor', '--trust', 'trust.cbor'));
    expectRejected(await w.run('verify', 'unrevoke.cbor', '--trust', 'trust.cbor', '--revocations', 'rl1.cbor'), 'REVOCATION_THRESHOLD_NOT_MET');
  });

  it('a list that drops a revoked key: REVOCATION_ROLLBACK; one that keeps them: accepted', async () => {
    expectRejected(await w.run('verify', 'drops-b.cbor', '--trust', 'trust.cbor', '--revocations', 'rl1.cbor'), 'REVOCATION_ROLLBACK');
    const ok = await w.run('verify', 'rl2.cbor', '--trust', 'trust.cbor', '--revocations', 'rl1.cbor', '--json');
    expectOk(ok);
    expect(JSON.parse(ok.out)).toMatchObject({ ok: true, kind: 'revocation-list', version: 2 });
  });

  it('an older list than the device has seen: REVOCATION_ROLLBACK', async () => {
    expectRejected(await w.run('verify', 'rl1.cbor', '--trust', 'trust.cbor', '--revocation-version', '2'), 'REVOCATION_ROLLBACK');
  });
});

describe('fwseal verify of a trust bundle', () => {
  it("alone: its own root threshold (T1-T4); as a rotation of the device's bundle with its list: T6 refuses revoked keys", async () => {
    expectOk(await w.run('verify', 'takeover.cbor'));
    expectOk(await w.run('verify', 'takeover.cbor', '--trust', 'trust.cbor'));
    expectRejected(await w.run('verify', 'takeover.cbor', '--trust', 'trust.cbor', '--revocations', 'rl1.cbor'), 'ROTATION_NOT_AUTHORIZED');
  });

  it('manifest-only options and --revocations without --trust are usage errors', async () => {
    expectUsage(await w.run('verify', 'rl1.cbor', '--trust', 'trust.cbor', '--image', 'x.bin'));
    expectUsage(await w.run('verify', 'takeover.cbor', '--revocations', 'rl1.cbor'));
  });
});
