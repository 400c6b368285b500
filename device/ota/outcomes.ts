/**
 * What a device decided about campaigns (SPEC.md §12.3, §12.10): the campaigns it reached a terminal
 * state for (never attempted again) and the announced manifests the verifier refused, by the
 * announced envelope digest, with the code (reported once per campaign as `rejected`, never fetched
 * again). A trust rotation may make a refused manifest verify (new release keys), so it forgets the
 * refusals (§12.13).
 */
import { toHex } from '../../shared/bytes.js';
import { type StatusState } from '../../shared/ota/status.js';

export class Outcomes {
  readonly #done = new Map<string, StatusState>();
  readonly #refused = new Map<string, number>();

  finished(campaign: string): boolean {
    return this.#done.has(campaign);
  }

  finish(campaign: string, state: StatusState): void {
    this.#done.set(campaign, state);
  }

  refuse(manifestDigest: Uint8Array, code: number): void {
    this.#refused.set(toHex(manifestDigest), code);
  }

  /** The code the verifier refused this announced manifest with, if it did. */
  refusal(manifestDigest: Uint8Array): number | undefined {
    return this.#refused.get(toHex(manifestDigest));
  }

  /** Forget every refusal and every campaign that ended `rejected`: they are judged again. */
  forgetRefusals(): void {
    this.#refused.clear();
    for (const [campaign, state] of this.#done) if (state === 'rejected') this.#done.delete(campaign);
  }
}
