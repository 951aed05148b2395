import type { Pool } from '../../shared/db/pool.ts';
import type { OutboxBacklog } from '../../shared/observability/collectors.ts';

/** Minutes in the Overview's charts: the current (partial) minute and the 59 before it. */
export const WINDOW_MINUTES = 60;

/** The outbox backlog, as `conveyor_outbox_unpublished_events` / `..._oldest_unpublished_age_seconds` read it. */
export async function outboxBacklog(pool: Pool): Promise<OutboxBacklog> {
  // Same statement as workers/outbox/relay.sql.ts#outboxBacklog (the dashboard may not import workers/).
  const { rows } = await pool.query<{ count: number; oldest: number | null }>(
    `SELECT count(*)::int AS count, EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest
       FROM outbox WHERE published_at IS NULL`,
  );
  return { count: rows[0]?.count ?? 0, oldestAgeSeconds: rows[0]?.oldest ?? 0 };
}

/** Per-minute counts of the last hour, index 0 = the oldest minute, {@link WINDOW_MINUTES} - 1 = now. */
export interface Activity {
  /** Events the command handlers appended, per event type (`order.placed`, `order.rejected`, …). */
  appended: Record<string, number[]>;
  /** Events the relays published to the bus. */
  published: number[];
  /** Events the bus's consumers dead-lettered. */
  eventDeadLetters: number[];
}

/**
 * The last hour of activity from PostgreSQL rather than Redis: every decision a command handler
 * commits appends its event to the outbox in the same statement, so outbox rows per minute are the
 * decisions per minute (by outcome), and `published_at` is when the bus got them. Both arms stay on
 * indexes (`outbox_published_at`, `outbox_unpublished`): a row created within the hour is either
 * unpublished or was published within the hour.
 */
const ACTIVITY_SQL = `
  WITH win AS (SELECT date_trunc('minute', now()) - ($1::int - 1) * interval '1 minute' AS start),
  recent AS (
    SELECT event_type, created_at, published_at FROM outbox, win WHERE published_at >= win.start
    UNION ALL
    SELECT event_type, created_at, published_at FROM outbox WHERE published_at IS NULL
  )
  SELECT 'appended' AS series, event_type,
         (EXTRACT(EPOCH FROM date_trunc('minute', created_at) - win.start) / 60)::int AS slot, count(*)::int AS n
    FROM recent, win WHERE created_at >= win.start GROUP BY 1, 2, 3
  UNION ALL
  SELECT 'published', NULL,
         (EXTRACT(EPOCH FROM date_trunc('minute', published_at) - win.start) / 60)::int, count(*)::int
    FROM recent, win WHERE published_at IS NOT NULL GROUP BY 1, 2, 3
  UNION ALL
  SELECT 'event_dead_letters', NULL,
         (EXTRACT(EPOCH FROM date_trunc('minute', failed_at) - win.start) / 60)::int, count(*)::int
    FROM dead_letters, win WHERE kind = 'event' AND failed_at >= win.start GROUP BY 1, 2, 3`;

export async function activity(pool: Pool): Promise<Activity> {
  const { rows } = await pool.query<{ series: string; event_type: string | null; slot: number; n: number }>(
    ACTIVITY_SQL,
    [WINDOW_MINUTES],
  );
  const zeros = () => Array.from({ length: WINDOW_MINUTES }, () => 0);
  const out: Activity = { appended: {}, published: zeros(), eventDeadLetters: zeros() };
  for (const r of rows) {
    // A clock step between now() and a row's timestamp could put it outside the window: clamp.
    const slot = Math.min(WINDOW_MINUTES - 1, Math.max(0, r.slot));
    if (r.series === 'appended' && r.event_type) {
      const series = (out.appended[r.event_type] ??= zeros());
      series[slot] = (series[slot] ?? 0) + r.n;
    } else if (r.series === 'published') out.published[slot] = (out.published[slot] ?? 0) + r.n;
    else if (r.series === 'event_dead_letters')
      out.eventDeadLetters[slot] = (out.eventDeadLetters[slot] ?? 0) + r.n;
  }
  return out;
}

/** Pending dead letters of one origin. */
export interface PendingDeadLetters {
  transport: string;
  origin: string;
  kind: 'command' | 'event';
  count: number;
  oldestFailedAt: Date;
}

/** Pending dead letters per transport and origin (the `dead_letters_pending` partial index). */
export async function pendingDeadLetters(pool: Pool): Promise<PendingDeadLetters[]> {
  const { rows } = await pool.query<{
    transport: string;
    origin: string;
    kind: 'command' | 'event';
    count: number;
    oldest: Date;
  }>(
    `SELECT transport, origin, kind, count(*)::int AS count, min(failed_at) AS oldest
       FROM dead_letters WHERE status = 'pending'
      GROUP BY transport, origin, kind ORDER BY count(*) DESC, origin`,
  );
  return rows.map((r) => ({
    transport: r.transport,
    origin: r.origin,
    kind: r.kind,
    count: r.count,
    oldestFailedAt: r.oldest,
  }));
}

/**
 * Dead letters recorded from `origins` of `transport`, in any status: what a native dead-letter place
 * whose copies stay after a redrive or discard (RabbitMQ's `.dlq`, SQS's DLQ, Kafka's `.dlq` topic)
 * can account for. Asked only when such a place holds messages.
 */
export async function recordedDeadLetters(
  pool: Pool,
  transport: string,
  origins: readonly string[],
): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM dead_letters WHERE transport = $1 AND origin = ANY($2::text[])`,
    [transport, [...origins]],
  );
  return rows[0]?.n ?? 0;
}
