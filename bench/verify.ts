import type { Pool } from '../shared/db/pool.ts';
import type { Progress } from './progress.ts';

/** The outcome of counting one run's orders in the write model and the read models. */
export interface Verification {
  ok: boolean;
  accepted: number;
  /** Ids the API answered 202 for more than once (must be 0). */
  duplicateAccepts: number;
  writeModel: number;
  /** Accepted orders absent from `orders`. */
  missing: number;
  /** Orders in `orders` nobody was told were accepted: allowed only up to the requests whose outcome is unknown (timeouts). */
  unacknowledged: number;
  unknownOutcomes: number;
  orderView: number;
  /** Sum of `daily_stats.completed_count + rejected_count`. */
  dailyStatsOrders: number;
  dailyStatsRevenueCents: number;
  writeModelRevenueCents: number;
  customerStatsOrders: number;
  /** Every event in the outbox, of any type. */
  outboxEvents: number;
  /** The outbox's order events (`order.*`): one per order. */
  orderEvents: number;
  projectedEvents: number;
  deadLetters: number;
  problems: string[];
}

const one = async <T>(pool: Pool, sql: string): Promise<T> => (await pool.query(sql)).rows[0] as T;

/**
 * Every accepted order is in the write model exactly once (a primary key, so "once" means: present, and
 * the read models count it once), the read models agree with the write model, every event was
 * projected once and nothing was dead-lettered. `problems` names each mismatch.
 */
export async function verifyRun(
  pool: Pool,
  acceptedIds: readonly string[],
  unknownOutcomes: number,
): Promise<Verification> {
  const problems: string[] = [];
  const accepted = new Set(acceptedIds);
  const inDb = new Set(
    (await pool.query<{ id: string }>('SELECT order_id::text AS id FROM orders')).rows.map((r) => r.id),
  );
  let missing = 0;
  for (const id of accepted) if (!inDb.has(id)) missing += 1;
  const unacknowledged = inDb.size - (accepted.size - missing);
  const w = await one<{ n: number; completed: number; rejected: number; revenue: number | null }>(
    pool,
    `SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'completed')::int AS completed,
            count(*) FILTER (WHERE status = 'rejected')::int AS rejected,
            sum(total_cents) FILTER (WHERE status = 'completed')::bigint AS revenue FROM orders`,
  );
  const v = await one<{ n: number; orphans: number }>(
    pool,
    `SELECT (SELECT count(*)::int FROM order_view) AS n,
            (SELECT count(*)::int FROM orders o LEFT JOIN order_view v USING (order_id) WHERE v.order_id IS NULL) AS orphans`,
  );
  const d = await one<{ orders: number | null; revenue: number | null }>(
    pool,
    'SELECT sum(completed_count + rejected_count)::bigint AS orders, sum(revenue_cents)::bigint AS revenue FROM daily_stats',
  );
  const c = await one<{ orders: number | null }>(
    pool,
    'SELECT sum(completed_count + rejected_count)::bigint AS orders FROM customer_stats',
  );
  // Order events are reconciled against the orders; other modules' or features' events (a batch's
  // completion, refunds) only have to be projected once each like every event.
  const e = await one<{ outbox: number; orderEvents: number; inbox: number; dead: number }>(
    pool,
    `SELECT (SELECT count(*)::int FROM outbox) AS outbox,
            (SELECT count(*)::int FROM outbox WHERE event_type LIKE 'order.%') AS "orderEvents",
            (SELECT count(*)::int FROM projection_inbox) AS inbox,
            (SELECT count(*)::int FROM dead_letters) AS dead`,
  );
  const result: Verification = {
    ok: false,
    accepted: accepted.size,
    duplicateAccepts: acceptedIds.length - accepted.size,
    writeModel: w.n,
    missing,
    unacknowledged,
    unknownOutcomes,
    orderView: v.n,
    dailyStatsOrders: d.orders ?? 0,
    dailyStatsRevenueCents: d.revenue ?? 0,
    writeModelRevenueCents: w.revenue ?? 0,
    customerStatsOrders: c.orders ?? 0,
    outboxEvents: e.outbox,
    orderEvents: e.orderEvents,
    projectedEvents: e.inbox,
    deadLetters: e.dead,
    problems,
  };
  if (result.duplicateAccepts > 0) problems.push(`${result.duplicateAccepts} order ids were accepted twice`);
  if (missing > 0) problems.push(`${missing} accepted orders are missing from the write model (lost)`);
  if (unacknowledged > unknownOutcomes) {
    problems.push(
      `${unacknowledged} orders in the write model were never acknowledged (only ${unknownOutcomes} requests had an unknown outcome)`,
    );
  }
  if (v.n !== w.n || v.orphans > 0)
    problems.push(`order_view has ${v.n} rows for ${w.n} orders (${v.orphans} orders without a view)`);
  if (result.dailyStatsOrders !== w.completed + w.rejected) {
    problems.push(
      `daily_stats counts ${result.dailyStatsOrders} orders, the write model ${w.completed + w.rejected} (duplicated or lost projection)`,
    );
  }
  if (result.dailyStatsRevenueCents !== result.writeModelRevenueCents) {
    problems.push(
      `daily_stats revenue ${result.dailyStatsRevenueCents} ≠ write model ${result.writeModelRevenueCents}`,
    );
  }
  if (result.customerStatsOrders !== w.completed + w.rejected) {
    problems.push(
      `customer_stats counts ${result.customerStatsOrders} orders, the write model ${w.completed + w.rejected}`,
    );
  }
  if (e.orderEvents !== w.n || e.inbox !== e.outbox)
    problems.push(
      `${w.n} orders, ${e.orderEvents} order events in the outbox (${e.outbox} events in all), ${e.inbox} projected`,
    );
  if (e.dead > 0) problems.push(`${e.dead} dead letters`);
  result.ok = problems.length === 0;
  return result;
}

/**
 * Waits until the pipeline is quiet with at least `expected` orders projected: no order job left in
 * the queue (`pendingJobs`), and every order of the write model in the read model (nothing in flight
 * on the bus). Counting alone would stop early when orders nobody saw acknowledged (requests cut off
 * when a load phase ends) are projected before the acknowledged ones.
 */
export async function waitProjected(
  pool: Pool,
  expected: number,
  options: {
    label: string;
    timeoutMs: number;
    progress: Progress;
    pendingJobs: () => Promise<number>;
    check?: () => void;
  },
): Promise<number> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const { views, orders } = await one<{ views: number; orders: number }>(
      pool,
      'SELECT (SELECT count(*)::int FROM order_view) AS views, (SELECT count(*)::int FROM orders) AS orders',
    );
    options.progress.update(options.label, views, expected);
    if (views >= expected && views === orders && (await options.pendingJobs()) === 0) {
      // Re-read: a job may have moved from the queue to the write model between the two reads.
      const again = await one<{ views: number; orders: number }>(
        pool,
        'SELECT (SELECT count(*)::int FROM order_view) AS views, (SELECT count(*)::int FROM orders) AS orders',
      );
      if (again.views === again.orders) return Date.now();
    }
    options.check?.();
    if (Date.now() > deadline) {
      throw new Error(
        `${options.label}: ${views} of ${expected} orders projected (${orders} written) after ${options.timeoutMs} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Timing of one tagged group of orders, from Postgres timestamps the pipeline records. */
export interface PhaseTiming {
  orders: number;
  firstAcceptedAt: number;
  lastProjectedAt: number;
  /** orders / (last projected − first accepted). */
  e2ePerS: number;
  /** accepted_at → projection transaction (projection_inbox.processed_at), ms. */
  projectedMs: { p50: number; p95: number; p99: number; max: number };
  /** accepted_at → decided by the order worker (order_view.completed_at), ms. */
  decidedMs: { p50: number; p95: number; p99: number; max: number };
}

/** Reads the timing of the orders whose customer id starts with `tag-`. */
export async function phaseTiming(pool: Pool, tag: string): Promise<PhaseTiming> {
  const r = await pool.query<Record<string, number | null>>(
    `WITH t AS (
       SELECT o.accepted_at, v.completed_at, i.processed_at
       FROM orders o
       JOIN order_view v USING (order_id)
       JOIN outbox ob ON ob.aggregate_id = o.order_id::text
       JOIN projection_inbox i ON i.event_id = ob.event_id
       WHERE o.customer_id LIKE $1)
     SELECT count(*)::int AS n,
       (extract(epoch FROM min(accepted_at)) * 1000)::float8 AS first_accepted,
       (extract(epoch FROM max(processed_at)) * 1000)::float8 AS last_projected,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - accepted_at) * 1000) AS proj,
       (max(extract(epoch FROM processed_at - accepted_at)) * 1000)::float8 AS proj_max,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM completed_at - accepted_at) * 1000) AS dec,
       (max(extract(epoch FROM completed_at - accepted_at)) * 1000)::float8 AS dec_max
     FROM t`,
    [`${tag}-%`],
  );
  const row = r.rows[0] as unknown as {
    n: number;
    first_accepted: number | null;
    last_projected: number | null;
    proj: number[] | null;
    proj_max: number | null;
    dec: number[] | null;
    dec_max: number | null;
  };
  const ms = (x: number | undefined | null) => Math.round((x ?? 0) * 10) / 10;
  const first = row.first_accepted ?? 0;
  const last = row.last_projected ?? 0;
  return {
    orders: row.n,
    firstAcceptedAt: first,
    lastProjectedAt: last,
    e2ePerS: last > first ? Math.round(row.n / ((last - first) / 1000)) : 0,
    projectedMs: {
      p50: ms(row.proj?.[0]),
      p95: ms(row.proj?.[1]),
      p99: ms(row.proj?.[2]),
      max: ms(row.proj_max),
    },
    decidedMs: { p50: ms(row.dec?.[0]), p95: ms(row.dec?.[1]), p99: ms(row.dec?.[2]), max: ms(row.dec_max) },
  };
}
