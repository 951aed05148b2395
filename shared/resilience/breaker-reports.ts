import { hostname } from 'node:os';
import { z } from 'zod';
import type { Redis } from '../queue/redis.ts';
import type { BreakerState } from './circuit-breaker.ts';

/**
 * Circuit-breaker state lives in each worker process (the `conveyor_circuit_breaker_state` gauge of its
 * own /metrics). For the operators' console to see it, workers also publish it to Redis — one hash per
 * deployment, one field per breaker and replica, rewritten on every transition and every
 * {@link BREAKER_REPORT_INTERVAL_MS}:
 *
 *   HSET <QUEUE_PREFIX>:circuit-breakers <breaker>/<replica> '{"state":"open","since":"…","reportedAt":"…"}'
 *
 * A replica that stops reporting (scaled in, crashed) drops out after {@link BREAKER_STALE_MS}.
 */
export const breakersKey = (prefix: string): string => `${prefix}:circuit-breakers`;

/** How often a worker rewrites its breakers' fields. */
export const BREAKER_REPORT_INTERVAL_MS = 15_000;
/** Fields older than this are a replica that is gone. */
export const BREAKER_STALE_MS = 4 * BREAKER_REPORT_INTERVAL_MS;

export const BreakerReportSchema = z.object({
  state: z.enum(['closed', 'half-open', 'open']),
  since: z.iso.datetime(),
  reportedAt: z.iso.datetime(),
});
export type BreakerReport = z.infer<typeof BreakerReportSchema>;

export interface BreakerReporter {
  /** Records a transition (or the initial state) and publishes it at once. */
  report(name: string, state: BreakerState): void;
  /** Stops the refresh and removes this replica's fields. */
  close(): Promise<void>;
}

/**
 * Publishes this process's breaker states for the console. Best effort: a Redis error is ignored (the
 * next refresh or transition writes again); the metrics gauge stays the source for alerts.
 * @example const breakers = createBreakerReporter(redis, prefix); breakers.report('payment', 'open');
 */
export function createBreakerReporter(
  redis: Redis,
  prefix: string,
  options: { replica?: string; everyMs?: number } = {},
): BreakerReporter {
  const replica = options.replica ?? `${hostname()}-${process.pid}`;
  const key = breakersKey(prefix);
  const states = new Map<string, { state: BreakerState; since: string }>();
  const write = (name: string) => {
    const current = states.get(name);
    if (!current) return;
    const report: BreakerReport = { ...current, reportedAt: new Date().toISOString() };
    void redis.hset(key, `${name}/${replica}`, JSON.stringify(report)).catch(() => undefined);
  };
  const timer = setInterval(() => {
    for (const name of states.keys()) write(name);
  }, options.everyMs ?? BREAKER_REPORT_INTERVAL_MS);
  timer.unref();
  return {
    report(name, state) {
      if (states.get(name)?.state !== state) states.set(name, { state, since: new Date().toISOString() });
      write(name);
    },
    async close() {
      clearInterval(timer);
      const fields = [...states.keys()].map((name) => `${name}/${replica}`);
      if (fields.length > 0) await redis.hdel(key, ...fields).catch(() => undefined);
    },
  };
}
