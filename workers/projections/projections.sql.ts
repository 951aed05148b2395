import type { PoolClient } from '../../shared/db/pool.ts';

/** Records event ids in the inbox; returns those seen for the first time (the ones to apply). */
export async function claimInbox(
  client: PoolClient,
  consumer: string,
  eventIds: readonly string[],
): Promise<Set<string>> {
  const { rows } = await client.query<{ event_id: string }>(
    `INSERT INTO projection_inbox (consumer, event_id) SELECT $1, unnest($2::uuid[])
     ON CONFLICT DO NOTHING RETURNING event_id`,
    [consumer, eventIds],
  );
  return new Set(rows.map((r) => r.event_id));
}

export interface OrderViewRow {
  orderId: string;
  customerId: string | null;
  currency: string | null;
  totalCents: number | null;
  items: unknown;
  status: 'completed' | 'rejected' | 'dead_lettered';
  attempts: number;
  lastError: string | null;
  correlationId: string;
  acceptedAt: string | null;
  completedAt: string | null;
  updatedAt: string;
}

/** Completed and rejected are final; a dead-lettered order may still complete after a redrive. */
export async function upsertOrderViews(client: PoolClient, rows: readonly OrderViewRow[]): Promise<void> {
  if (rows.length === 0) return;
  await client.query(
    `INSERT INTO order_view (order_id, customer_id, currency, total_cents, items, status, attempts, last_error,
                             correlation_id, accepted_at, completed_at, updated_at)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[], $6::text[], $7::int[],
                          $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[])
     ON CONFLICT (order_id) DO UPDATE
       SET customer_id = COALESCE(EXCLUDED.customer_id, order_view.customer_id),
           currency = COALESCE(EXCLUDED.currency, order_view.currency),
           total_cents = COALESCE(EXCLUDED.total_cents, order_view.total_cents),
           items = COALESCE(EXCLUDED.items, order_view.items),
           status = EXCLUDED.status, attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
           correlation_id = EXCLUDED.correlation_id,
           accepted_at = COALESCE(EXCLUDED.accepted_at, order_view.accepted_at),
           completed_at = EXCLUDED.completed_at, updated_at = EXCLUDED.updated_at
       WHERE order_view.status = 'dead_lettered'`,
    [
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
    ],
  );
}

export interface StatsDelta {
  completed: number;
  rejected: number;
  deadLettered: number;
  revenueCents: number;
}

export async function addDailyStats(
  client: PoolClient,
  deltas: ReadonlyMap<string, StatsDelta>,
): Promise<void> {
  if (deltas.size === 0) return;
  const keys = [...deltas.keys()].map((k) => k.split('|') as [string, string]);
  const values = [...deltas.values()];
  await client.query(
    `INSERT INTO daily_stats AS s (day, currency, completed_count, rejected_count, dead_lettered_count, revenue_cents)
     SELECT * FROM unnest($1::date[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[])
     ON CONFLICT (day, currency) DO UPDATE
       SET completed_count = s.completed_count + EXCLUDED.completed_count,
           rejected_count = s.rejected_count + EXCLUDED.rejected_count,
           dead_lettered_count = s.dead_lettered_count + EXCLUDED.dead_lettered_count,
           revenue_cents = s.revenue_cents + EXCLUDED.revenue_cents`,
    [
      keys.map((k) => k[0]),
      keys.map((k) => k[1]),
      values.map((v) => v.completed),
      values.map((v) => v.rejected),
      values.map((v) => v.deadLettered),
      values.map((v) => v.revenueCents),
    ],
  );
}

export async function addCustomerStats(
  client: PoolClient,
  deltas: ReadonlyMap<string, StatsDelta>,
): Promise<void> {
  if (deltas.size === 0) return;
  const keys = [...deltas.keys()].map((k) => k.split('|') as [string, string]);
  const values = [...deltas.values()];
  await client.query(
    `INSERT INTO customer_stats AS s (customer_id, currency, completed_count, rejected_count, revenue_cents)
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
     ON CONFLICT (customer_id, currency) DO UPDATE
       SET completed_count = s.completed_count + EXCLUDED.completed_count,
           rejected_count = s.rejected_count + EXCLUDED.rejected_count,
           revenue_cents = s.revenue_cents + EXCLUDED.revenue_cents`,
    [
      keys.map((k) => k[0]),
      keys.map((k) => k[1]),
      values.map((v) => v.completed),
      values.map((v) => v.rejected),
      values.map((v) => v.revenueCents),
    ],
  );
}

/** Empties every read model and the inbox of `consumer`, for a rebuild from retained events. */
export async function truncateReadModels(client: PoolClient, consumer: string): Promise<void> {
  await client.query('TRUNCATE order_view, customer_stats, daily_stats');
  await client.query('DELETE FROM projection_inbox WHERE consumer = $1', [consumer]);
}
