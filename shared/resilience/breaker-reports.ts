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
 * A replica that stops reporting (scaled in, crashed, `kill -9`) drops out of every reader after
 * {@link BREAKER_STALE_MS}, and out of Redis too: every reporter's refresh sweeps the fields not
 * rewritten within that bound, and every write sets the hash's TTL to the bound, so the hash
 * disappears once no replica reports any more. The hash holds at most the breakers of the live
 * replicas and of those that died within the bound — it never grows with restarts.
 */
export const breakersKey = (prefix: string): string => `${prefix}:circuit-breakers`;

/** How often a worker rewrites its breakers' fields. */
export const BREAKER_REPORT_INTERVAL_MS = 15_000;
/** Fields older than this are a replica that is gone: readers ignore them, reporters delete them. */
export const BREAKER_STALE_MS = 4 * BREAKER_REPORT_INTERVAL_MS;

export const BreakerReportSchema = z.object({
  state: z.enum(['closed', 'half-open', 'open']),
  since: z.iso.datetime(),
  reportedAt: z.iso.datetime(),
});
export type BreakerReport = z.infer<typeof BreakerReportSchema>;

/** A field's report, or undefined when it is malformed (not JSON, not a report). */
export function parseBreakerReport(raw: string): BreakerReport | undefined {
  try {
    const parsed = BreakerReportSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** Whether `report` was written more than `staleMs` before `now` (its replica is gone). */
export function isStaleReport(report: BreakerReport, now: number, staleMs = BREAKER_STALE_MS): boolean {
  return now - Date.parse(report.reportedAt) > staleMs;
}

/**
 * Deletes the given fields only where they still hold the value the sweeper read: a replica that
 * rewrote its field in between keeps it.
 */
const DELETE_UNCHANGED = `
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return removed`;

/**
 * Removes the fields of replicas that stopped reporting more than `staleMs` ago, and malformed ones.
 * Returns how many it removed. Safe to run from any number of replicas at once.
 */
export async function sweepBreakerReports(
  redis: Redis,
  prefix: string,
  options: { staleMs?: number; now?: number } = {},
): Promise<number> {
  const key = breakersKey(prefix);
  const now = options.now ?? Date.now();
  const fields = await redis.hgetall(key);
  const gone: string[] = [];
  for (const [field, raw] of Object.entries(fields)) {
    const report = parseBreakerReport(raw);
    if (!report || isStaleReport(report, now, options.staleMs)) gone.push(field, raw);
  }
  if (gone.length === 0) return 0;
  return Number(await redis.eval(DELETE_UNCHANGED, 1, key, ...gone));
}

export interface BreakerReporter {
  /** Records a transition (or the initial state) and publishes it at once. */
  report(name: string, state: BreakerState): void;
  /** Stops the refresh and removes this replica's fields. */
  close(): Promise<void>;
}

/**
 * Publishes this process's breaker states for the console. Best effort: a Redis error is ignored (the
 * next refresh or transition writes again); the metrics gauge stays the source for alerts. Each
 * refresh also sweeps other replicas' stale fields ({@link sweepBreakerReports}).
 * @example const breakers = createBreakerReporter(redis, prefix); breakers.report('payment', 'open');
 */
export function createBreakerReporter(
  redis: Redis,
  prefix: string,
  options: { replica?: string; everyMs?: number; staleMs?: number } = {},
): BreakerReporter {
  const replica = options.replica ?? `${hostname()}-${process.pid}`;
  const key = breakersKey(prefix);
  const everyMs = options.everyMs ?? BREAKER_REPORT_INTERVAL_MS;
  // The bound must outlast a few refreshes, or a live replica's field would expire between two.
  const staleMs = Math.max(options.staleMs ?? BREAKER_STALE_MS, 2 * everyMs);
  const states = new Map<string, { state: BreakerState; since: string }>();
  const write = (name: string) => {
    const current = states.get(name);
    if (!current) return;
    const report: BreakerReport = { ...current, reportedAt: new Date().toISOString() };
    // The hash lives as long as some replica keeps writing to it.
    void redis
      .multi()
      .hset(key, `${name}/${replica}`, JSON.stringify(report))
      .pexpire(key, staleMs)
      .exec()
      .catch(() => undefined);
  };
  const timer = setInterval(() => {
    for (const name of states.keys()) write(name);
    void sweepBreakerReports(redis, prefix, { staleMs }).catch(() => undefined);
  }, everyMs);
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
