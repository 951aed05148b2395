import { randomInt } from 'node:crypto';
import type { PoolClient } from '../../../shared/db/pool.ts';

/**
 * Stats rows per (day, currency) and (customer, currency): each batch adds its deltas to one shard
 * picked at random, so concurrent batches rarely wait on each other's row locks (migration 0005).
 */
export const STATS_SHARDS = 16;

export interface OrderViewRow {
  orderId: string;
  customerId: string | null;
  currency: string | null;
  totalCents: number | null;
  items: unknown;
  status: 'completed' | 'rejected' | 'dead_lettered' | 'cancelled';
  attempts: number;
  lastError: string | null;
  correlationId: string;
  acceptedAt: string | null;
  completedAt: string | null;
  updatedAt: string;
  /** Who the order was for (its events' `tenant`); null when they name none. */
  tenant: string | null;
}

export interface StatsDelta {
  completed: number;
  rejected: number;
  deadLettered: number;
  revenueCents: number;
}

/**
 * Writes a batch's effect on every read model in one statement (one round trip, one named statement
 * Postgres plans once per connection): the order views — completed and rejected are final, a
 * dead-lettered order may still complete after a redrive — and the daily and per-customer stats
 * deltas, aggregated per row by the caller (`day|currency`, `customer|currency` keys), added to one
 * random shard of those rows.
 */
export async function applyReadModels(
  client: PoolClient,
  views: readonly OrderViewRow[],
  daily: ReadonlyMap<string, StatsDelta>,
  customers: ReadonlyMap<string, StatsDelta>,
): Promise<void> {
  if (views.length === 0 && daily.size === 0 && customers.size === 0) return;
  // Rows in key order: concurrent batches then lock shared rows (a day's stats, a customer's) in the
  // same order and queue behind each other instead of deadlocking.
  const byKey = <T>(m: ReadonlyMap<string, T>) =>
    [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const rows = [...views].sort((a, b) => (a.orderId < b.orderId ? -1 : a.orderId > b.orderId ? 1 : 0));
  const dayRows = byKey(daily);
  const dayKeys = dayRows.map(([k]) => k.split('|') as [string, string]);
  const dayValues = dayRows.map(([, v]) => v);
  const customerRows = byKey(customers);
  const customerKeys = customerRows.map(([k]) => k.split('|') as [string, string]);
  const customerValues = customerRows.map(([, v]) => v);
  await client.query({
    name: 'conveyor-apply-read-models',
    text: `WITH views AS (
       INSERT INTO order_view (order_id, customer_id, currency, total_cents, items, status, attempts, last_error,
                               correlation_id, accepted_at, completed_at, updated_at, tenant)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[], $6::text[], $7::int[],
                            $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[],
                            $25::text[])
       ON CONFLICT (order_id) DO UPDATE
         SET customer_id = COALESCE(EXCLUDED.customer_id, order_view.customer_id),
             currency = COALESCE(EXCLUDED.currency, order_view.currency),
             total_cents = COALESCE(EXCLUDED.total_cents, order_view.total_cents),
             items = COALESCE(EXCLUDED.items, order_view.items),
             status = EXCLUDED.status, attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
             correlation_id = EXCLUDED.correlation_id,
             accepted_at = COALESCE(EXCLUDED.accepted_at, order_view.accepted_at),
             completed_at = EXCLUDED.completed_at, updated_at = EXCLUDED.updated_at,
             tenant = COALESCE(EXCLUDED.tenant, order_view.tenant)
         WHERE order_view.status = 'dead_lettered'
     ), daily AS (
       INSERT INTO daily_stats_shards AS s (day, currency, completed_count, rejected_count, dead_lettered_count,
                                            revenue_cents, shard)
       SELECT *, $24::smallint FROM unnest($13::date[], $14::text[], $15::bigint[], $16::bigint[], $17::bigint[],
                                           $18::bigint[])
       ON CONFLICT (day, currency, shard) DO UPDATE
         SET completed_count = s.completed_count + EXCLUDED.completed_count,
             rejected_count = s.rejected_count + EXCLUDED.rejected_count,
             dead_lettered_count = s.dead_lettered_count + EXCLUDED.dead_lettered_count,
             revenue_cents = s.revenue_cents + EXCLUDED.revenue_cents
     ), customers AS (
       INSERT INTO customer_stats_shards AS s (customer_id, currency, completed_count, rejected_count, revenue_cents,
                                               shard)
       SELECT *, $24::smallint FROM unnest($19::text[], $20::text[], $21::bigint[], $22::bigint[], $23::bigint[])
       ON CONFLICT (customer_id, currency, shard) DO UPDATE
         SET completed_count = s.completed_count + EXCLUDED.completed_count,
             rejected_count = s.rejected_count + EXCLUDED.rejected_count,
             revenue_cents = s.revenue_cents + EXCLUDED.revenue_cents
     )
     SELECT 1`,
    values: [
      rows.map((r) => r.orderId),
      rows.map((r) => r.customerId),
      rows.map((r) => r.currency),
      rows.map((r) => r.totalCents),
      rows.map((r) => (r.items === null ? null : JSON.stringify(r.items))),
      rows.map((r) => r.status),
      rows.map((r) => r.attempts),
      rows.map((r) => r.lastError),
      rows.map((r) => r.correlationId),
      rows.map((r) => r.acceptedAt),
      rows.map((r) => r.completedAt),
      rows.map((r) => r.updatedAt),
      dayKeys.map((k) => k[0]),
      dayKeys.map((k) => k[1]),
      dayValues.map((v) => v.completed),
      dayValues.map((v) => v.rejected),
      dayValues.map((v) => v.deadLettered),
      dayValues.map((v) => v.revenueCents),
      customerKeys.map((k) => k[0]),
      customerKeys.map((k) => k[1]),
      customerValues.map((v) => v.completed),
      customerValues.map((v) => v.rejected),
      customerValues.map((v) => v.revenueCents),
      randomInt(STATS_SHARDS),
      rows.map((r) => r.tenant),
    ],
  });
}
