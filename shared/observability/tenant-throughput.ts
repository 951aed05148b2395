import type { FairBacklog } from '../fairness/fair-queue.ts';

/** Commands started per second, per tenant, between two reads of a fair queue's `started` counters. */
export interface TenantThroughput {
  /** Per named tenant that was also named by the earlier read (a tenant new to the top has none yet). */
  tenants: ReadonlyMap<string, number>;
  /** Every other tenant: the queue's total less the tenants above. */
  others: number;
  /** The queue's total. */
  total: number;
  /** The seconds between the two reads. */
  seconds: number;
}

/** Measures {@link TenantThroughput} per queue from successive {@link FairBacklog} reads. */
export interface TenantThroughputMeter {
  /**
   * Records a read of `queue`'s fair backlog taken at `at` (ms) and returns the throughput since the
   * last recorded read at least `minIntervalMs` earlier; null until there is one (the first read, or
   * after the counters went back, e.g. the queue was obliterated). A read sooner than that returns
   * the last answer and is not recorded, so scrapes close together do not measure noise.
   */
  observe(queue: string, backlog: FairBacklog, at: number): TenantThroughput | null;
}

interface Sample {
  at: number;
  total: number;
  tenants: Map<string, number>;
}

/**
 * Keeps, per queue, the last read's counters (the top tenants' and the total: bounded by `top`).
 *
 * Why not a counter per tenant: the named tenants change as backlogs grow and shrink, and a counter
 * series that comes and goes is not a counter Prometheus can rate. The `started` counters in Redis are
 * monotonic, so the difference of two reads is exact: a tenant named by both reads gets its own share,
 * and everything else — tenants outside the top, and a tenant that just entered it — is `others`, so
 * the shares always add up to the queue's total.
 * @example const meter = createTenantThroughputMeter(); meter.observe('orders', await fair.backlog(redis, 10), Date.now());
 */
export function createTenantThroughputMeter(options: { minIntervalMs?: number } = {}): TenantThroughputMeter {
  const minIntervalMs = options.minIntervalMs ?? 5_000;
  const last = new Map<string, { sample: Sample; answer: TenantThroughput | null }>();
  return {
    observe(queue, backlog, at) {
      const sample: Sample = {
        at,
        total: backlog.startedTotal,
        tenants: new Map(backlog.tenants.map((t) => [t.tenant, t.started])),
      };
      const before = last.get(queue);
      if (!before || sample.total < before.sample.total || at < before.sample.at) {
        last.set(queue, { sample, answer: null });
        return null;
      }
      const ms = at - before.sample.at;
      if (ms < minIntervalMs) return before.answer;
      const seconds = ms / 1_000;
      const tenants = new Map<string, number>();
      let named = 0;
      for (const [tenant, started] of sample.tenants) {
        const earlier = before.sample.tenants.get(tenant);
        if (earlier === undefined) continue;
        // A tenant's counter never goes back unless its keys were deleted: count nothing for it then.
        const delta = Math.max(0, started - earlier);
        named += delta;
        tenants.set(tenant, delta / seconds);
      }
      const totalDelta = sample.total - before.sample.total;
      const answer: TenantThroughput = {
        tenants,
        others: Math.max(0, totalDelta - named) / seconds,
        total: totalDelta / seconds,
        seconds,
      };
      last.set(queue, { sample, answer });
      return answer;
    },
  };
}
