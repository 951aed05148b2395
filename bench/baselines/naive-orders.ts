import { randomUUID } from 'node:crypto';
import type { PoolClient } from '../../shared/db/pool.ts';
import { orderTotalCents, type OrderJob } from '../../modules/orders/domain.ts';
import { orderBody } from '../load.ts';

/**
 * What every baseline processes: the same order command Conveyor's API enqueues (same shape, same
 * size), so the baselines move the same bytes through Redis or Postgres.
 */
export function makeOrderJobs(count: number, tag: string, orderSize: number): OrderJob[] {
  const acceptedAt = new Date().toISOString();
  return Array.from({ length: count }, (_, i) => ({
    orderId: randomUUID(),
    correlationId: `bench-${tag}-${i}`,
    acceptedAt,
    order: orderBody(`${tag}-${i % 100}`, orderSize) as OrderJob['order'],
  }));
}

/**
 * The pipeline a user would write without Conveyor: one transaction per job; insert the order, then
 * upsert the order's view row and the stats rows one statement at a time. Same tables and the same
 * read models as Conveyor (migrated schema), no outbox and no bus. `schema` qualifies every table so
 * the peer can run it on its own pool.
 */
export async function applyNaively(client: PoolClient, schema: string, job: OrderJob): Promise<void> {
  const s = `"${schema}"`;
  const { order } = job;
  const total = orderTotalCents(order.items);
  const items = JSON.stringify(order.items);
  const now = new Date().toISOString();
  await client.query('BEGIN');
  try {
    const inserted = await client.query(
      `INSERT INTO ${s}.orders (order_id, customer_id, currency, total_cents, items, status, attempts, correlation_id, accepted_at)
       VALUES ($1, $2, $3, $4, $5, 'completed', 1, $6, $7) ON CONFLICT (order_id) DO NOTHING`,
      [job.orderId, order.customerId, order.currency, total, items, job.correlationId, job.acceptedAt],
    );
    // A redelivered job finds its order written and changes nothing: the same exactly-once effect.
    if (inserted.rowCount === 1) {
      await client.query(
        `INSERT INTO ${s}.order_view (order_id, customer_id, currency, total_cents, items, status, attempts,
                                      correlation_id, accepted_at, completed_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'completed', 1, $6, $7, $8, $8)
         ON CONFLICT (order_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at`,
        [job.orderId, order.customerId, order.currency, total, items, job.correlationId, job.acceptedAt, now],
      );
      await client.query(
        `INSERT INTO ${s}.daily_stats_shards AS d (day, currency, completed_count, revenue_cents) VALUES ($1, $2, 1, $3)
         ON CONFLICT (day, currency, shard) DO UPDATE
           SET completed_count = d.completed_count + 1, revenue_cents = d.revenue_cents + EXCLUDED.revenue_cents`,
        [now.slice(0, 10), order.currency, total],
      );
      await client.query(
        `INSERT INTO ${s}.customer_stats_shards AS c (customer_id, currency, completed_count, revenue_cents) VALUES ($1, $2, 1, $3)
         ON CONFLICT (customer_id, currency, shard) DO UPDATE
           SET completed_count = c.completed_count + 1, revenue_cents = c.revenue_cents + EXCLUDED.revenue_cents`,
        [order.customerId, order.currency, total],
      );
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Counts a baseline's effect: every job once in `orders`, `order_view` and the stats. */
export async function verifyBaseline(
  client: { query: PoolClient['query'] },
  schema: string,
  jobs: readonly OrderJob[],
): Promise<{ ok: boolean; orders: number; views: number; statsOrders: number; problems: string[] }> {
  const s = `"${schema}"`;
  const { rows } = await client.query<{
    orders: number;
    views: number;
    stats: number | null;
    cstats: number | null;
    revenue: number | null;
    rev: number | null;
  }>(
    `SELECT (SELECT count(*)::int FROM ${s}.orders) AS orders, (SELECT count(*)::int FROM ${s}.order_view) AS views,
            (SELECT sum(completed_count)::bigint FROM ${s}.daily_stats) AS stats,
            (SELECT sum(completed_count)::bigint FROM ${s}.customer_stats) AS cstats,
            (SELECT sum(revenue_cents)::bigint FROM ${s}.daily_stats) AS revenue,
            (SELECT sum(total_cents)::bigint FROM ${s}.orders) AS rev`,
  );
  const r = rows[0]!;
  const n = jobs.length;
  const problems: string[] = [];
  if (r.orders !== n) problems.push(`${r.orders} orders for ${n} jobs`);
  if (r.views !== n) problems.push(`${r.views} order views for ${n} jobs`);
  if ((r.stats ?? 0) !== n || (r.cstats ?? 0) !== n)
    problems.push(`stats count ${r.stats}/${r.cstats} orders for ${n} jobs`);
  if ((r.revenue ?? 0) !== (r.rev ?? 0)) problems.push(`stats revenue ${r.revenue} ≠ orders ${r.rev}`);
  return { ok: problems.length === 0, orders: r.orders, views: r.views, statsOrders: r.stats ?? 0, problems };
}
