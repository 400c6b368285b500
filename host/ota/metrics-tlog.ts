/**
 * The transparency log's metrics (SPEC.md §16, M9 of the design source): how long an entry the
 * server appended waits for the first signed checkpoint that includes it, and the log's size. Only a
 * server started with `--log` updates them; the series are there from the start (0) either way.
 */
import { Gauge, Histogram, type Registry } from 'prom-client';
import { type TlogObserver } from '../tlog/served.js';

/** Checkpoints are batched at about one a second: the buckets span well under it to a stalled signer. */
const INCLUSION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300];

export class TlogMetrics implements TlogObserver {
  private entries = 0;
  private readonly histogram: Histogram;

  constructor(registry: Registry) {
    this.histogram = new Histogram({
      name: 'fwseal_tlog_inclusion_seconds',
      help: 'Transparency log (M9): entry appended by this instance to the first checkpoint it signed that includes it.',
      buckets: INCLUSION_BUCKETS,
      registers: [registry],
    });
    const read = () => this.entries;
    new Gauge({
      name: 'fwseal_tlog_size',
      help: 'Entries in the transparency log this instance serves (0 without --log).',
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  }

  inclusion(seconds: number): void {
    this.histogram.observe(seconds);
  }

  size(entries: number): void {
    this.entries = entries;
  }
}
