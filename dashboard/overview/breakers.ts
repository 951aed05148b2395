import type { Redis } from '../../shared/queue/redis.ts';

import {
  BREAKER_STALE_MS,
  BreakerReportSchema,
  breakersKey,
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

/** Reads the breakers the workers reported; malformed and stale fields are ignored. */
export async function readBreakers(redis: Redis, prefix: string, now = Date.now()): Promise<BreakerStatus[]> {
  const fields = await redis.hgetall(breakersKey(prefix));
  const byBreaker = new Map<string, BreakerStatus>();
  for (const [field, raw] of Object.entries(fields)) {
    const breaker = field.split('/')[0] ?? field;
    let report: BreakerReport;
    try {
      const parsed = BreakerReportSchema.safeParse(JSON.parse(raw));
      if (!parsed.success) continue;
      report = parsed.data;
    } catch {
      continue;
    }
    if (now - Date.parse(report.reportedAt) > BREAKER_STALE_MS) continue;
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
