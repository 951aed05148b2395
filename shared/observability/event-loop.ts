import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Registry } from 'prom-client';

/** Bucket bounds, seconds: fine where a 10 ms latency objective lives, coarse beyond. */
export const EVENT_LOOP_DELAY_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1] as const;

/**
 * `conveyor_eventloop_delay_seconds`: how late the event loop ran a 1 ms timer, as a Prometheus
 * histogram (cumulative buckets, `_sum`, `_count`), so `histogram_quantile` and `rate` work across
 * scrapes and replicas. Node samples the delay natively (`monitorEventLoopDelay`, no JavaScript per
 * sample); each scrape moves what was recorded since the last one into the cumulative counts and
 * resets the native histogram, so several scrapers never see each other's windows.
 *
 * prom-client's default `nodejs_eventloop_lag_*` gauges sample every 10 ms, record the whole interval
 * (their p50 reads ~10 ms on an idle process), reset on every scrape (one scraper's window hides the
 * others') and are per-scrape percentiles that cannot be aggregated: too coarse for stalls of 2-10 ms,
 * which is what a p99 ≤ 10 ms objective is about.
 *
 * Each sample counts once however long the stall: a 100 ms stall is one sample among ~900 of ~0 ms in
 * its second. Read `rate(_sum) / rate(_count)`, the tail buckets and `max` over time, not only p99.
 * @example const stop = registerEventLoopDelay(registry); // once per process; stop() on close
 */
export function registerEventLoopDelay(registry: Registry, resolutionMs = 1): () => void {
  const h: IntervalHistogram = monitorEventLoopDelay({ resolution: resolutionMs });
  h.enable();
  const resolutionNs = resolutionMs * 1e6;
  const cumulative = EVENT_LOOP_DELAY_BUCKETS.map(() => 0);
  let count = 0;
  let sumSeconds = 0;
  const name = 'conveyor_eventloop_delay_seconds';

  /** Samples recorded ≤ `delayNs` late: the largest percentile whose value is within it, × count. */
  const countAtOrBelow = (delayNs: number, n: number): number => {
    const limit = delayNs + resolutionNs; // the histogram records intervals, i.e. resolution + delay
    if (h.max <= limit) return n;
    if (h.min > limit) return 0;
    let lo = 0;
    let hi = 100;
    for (let i = 0; i < 24; i++) {
      const mid = (lo + hi) / 2;
      if (h.percentile(mid) <= limit) lo = mid;
      else hi = mid;
    }
    return Math.round((lo / 100) * n);
  };

  const drain = () => {
    const n = h.count;
    if (n === 0) return;
    EVENT_LOOP_DELAY_BUCKETS.forEach((b, i) => {
      cumulative[i]! += countAtOrBelow(b * 1e9, n);
    });
    count += n;
    sumSeconds += (Math.max(0, h.mean - resolutionNs) * n) / 1e9;
    h.reset();
  };

  registry.registerMetric({
    name,
    help: 'Event-loop delay: how late a 1 ms timer ran, sampled natively every millisecond',
    type: 'histogram',
    aggregator: 'sum',
    get: async () => {
      drain();
      return {
        name,
        help: 'Event-loop delay: how late a 1 ms timer ran, sampled natively every millisecond',
        type: 'histogram',
        aggregator: 'sum',
        values: [
          ...EVENT_LOOP_DELAY_BUCKETS.map((le, i) => ({
            labels: { le },
            value: cumulative[i]!,
            metricName: `${name}_bucket`,
          })),
          { labels: { le: '+Inf' }, value: count, metricName: `${name}_bucket` },
          { labels: {}, value: sumSeconds, metricName: `${name}_sum` },
          { labels: {}, value: count, metricName: `${name}_count` },
        ],
      };
    },
    reset: () => undefined,
  } as unknown as Parameters<Registry['registerMetric']>[0]);
  return () => h.disable();
}
