import type { Redis } from '../../shared/queue/redis.ts';

import {
  BREAKER_STALE_MS,
  breakersKey,
  isStaleReport,
  parseBreakerReport,
  type BreakerReport,
} from '../../shared/resilience/breaker-reports.ts';

/** One breaker across the replicas that report it. */
export interface BreakerStatus {
  breaker: string;
  /** The worst state any replica reports (open > half-open > closed). */
  state: BreakerReport['state'];
  /** Replicas per state. */
  replicas: Record<BreakerReport['state'], number>;
  /** Since when the worst state holds (earliest among the replicas in it). */
  since: Date;
}

const RANK = { closed: 0, 'half-open': 1, open: 2 } as const;

/**
 * Reads the breakers the workers reported; malformed and stale fields are ignored, so a replica that
 * died without a clean shutdown (its field not removed) stops counting after `staleMs` — the
 * reporters' sweep then removes its field from Redis.
 */
export async function readBreakers(
  redis: Redis,
  prefix: string,
  now = Date.now(),
  staleMs = BREAKER_STALE_MS,
): Promise<BreakerStatus[]> {
  const fields = await redis.hgetall(breakersKey(prefix));
  const byBreaker = new Map<string, BreakerStatus>();
  for (const [field, raw] of Object.entries(fields)) {
    const breaker = field.split('/')[0] ?? field;
    const report = parseBreakerReport(raw);
    if (!report || isStaleReport(report, now, staleMs)) continue;
    const since = new Date(report.since);
    const status = byBreaker.get(breaker) ?? {
      breaker,
      state: report.state,
      replicas: { closed: 0, 'half-open': 0, open: 0 },
      since,
    };
    status.replicas[report.state] += 1;
    if (RANK[report.state] > RANK[status.state]) {
      status.state = report.state;
      status.since = since;
    } else if (report.state === status.state && since < status.since) status.since = since;
    byBreaker.set(breaker, status);
  }
  return [...byBreaker.values()].sort((a, b) => a.breaker.localeCompare(b.breaker));
}
