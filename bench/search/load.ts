import type { Pool } from '../../shared/db/pool.ts';

/** What the search bench loads: orders across customers and API keys, spread over `days`. */
export interface LoadPlan {
  orders: number;
  customers: number;
  apiKeys: number;
  days: number;
  /** The newest orders that also get outbox events with a trace context (the outbox keeps hours, not years). */
  tracedOrders: number;
}

export interface LoadTimings {
  insertS: number;
  outboxS: number;
  indexesS: number;
  analyzeS: number;
  /** Each index's build time, seconds: what the search migration costs on a table this size. */
  perIndexS: Record<string, number>;
  tableBytes: number;
  indexBytes: number;
}

const seconds = (from: number) => Math.round((performance.now() - from) / 100) / 10;

/**
 * Fills the schema's `orders` with generate_series in SQL (no rows cross the wire: the fastest way
 * to load), in `lanes` concurrent statements, without its indexes; then builds every index the
 * migrations declare (primary key included) and ANALYZEs. Distribution: uniform customers and keys,
 * 10% of orders for a sub-tenant of their key, 94% completed / 5% rejected (3 reasons) / 1% dead-lettered
 * (2 errors), accepted uniformly over `days` in insertion order (like a real append).
 */
export async function loadOrders(
  pool: Pool,
  schema: string,
  plan: LoadPlan,
  lanes = 2,
): Promise<LoadTimings> {
  const { rows: idx } = await pool.query<{ name: string; def: string }>(
    `SELECT indexname AS name, indexdef AS def FROM pg_indexes WHERE schemaname = $1 AND tablename = 'orders'`,
    [schema],
  );
  await pool.query(`ALTER TABLE orders DROP CONSTRAINT orders_pkey`);
  for (const i of idx) if (i.name !== 'orders_pkey') await pool.query(`DROP INDEX "${i.name}"`);

  let t = performance.now();
  const per = Math.ceil(plan.orders / lanes);
  const spanMs = plan.days * 86_400_000;
  await Promise.all(
    Array.from({ length: lanes }, async (_, lane) => {
      const client = await pool.connect();
      try {
        await client.query(`SET synchronous_commit = off`);
        const lo = lane * per + 1;
        const hi = Math.min(plan.orders, (lane + 1) * per);
        await client.query(
          `INSERT INTO orders (order_id, customer_id, currency, total_cents, items, status, reason, attempts,
                               correlation_id, accepted_at, decided_at, accepted_by, tenant)
           SELECT gen_random_uuid(), 'cust-' || c, 'EUR', 1000 + (i % 5000),
                  '[{"sku":"sku-1","quantity":1,"unitPriceCents":1000}]'::jsonb,
                  CASE WHEN r < 0.94 THEN 'completed' WHEN r < 0.99 THEN 'rejected' ELSE 'dead_lettered' END,
                  CASE WHEN r < 0.94 THEN NULL
                       WHEN r < 0.96 THEN 'currency XAU is not supported'
                       WHEN r < 0.98 THEN 'payment declined: insufficient funds'
                       WHEN r < 0.99 THEN 'order total exceeds the supported range'
                       WHEN r < 0.995 THEN 'payment service unavailable: timeout after 5000 ms'
                       ELSE 'duplicate key value violates unique constraint' END,
                  1, 'corr-' || i, at, at + interval '40 ms', 'key-' || k,
                  CASE WHEN i % 10 = 0 THEN 'key-' || k || '/sub-' || (i % 7) ELSE 'key-' || k END
             FROM (SELECT i, random() AS r, (random() * ${plan.customers - 1})::int AS c,
                          (random() * ${plan.apiKeys - 1})::int AS k,
                          now() - ((${plan.orders} - i)::float8 * ${spanMs / plan.orders}) * interval '1 ms' AS at
                     FROM generate_series($1::int, $2::int) AS i) g`,
          [lo, hi],
        );
      } finally {
        client.release();
      }
    }),
  );
  const insertS = seconds(t);

  // Outbox events of the newest orders, with a W3C trace context (one trace per order).
  t = performance.now();
  await pool.query(
    `INSERT INTO outbox (event_id, event_type, event_version, aggregate_id, correlation_id, envelope, trace_context, published_at)
     SELECT gen_random_uuid(), 'order.placed', 1, order_id::text, correlation_id, '{}'::jsonb,
            jsonb_build_object('traceparent', '00-' || md5(order_id::text) || '-' || substr(md5(correlation_id), 1, 16) || '-01'),
            decided_at
       FROM (SELECT order_id, correlation_id, decided_at FROM orders ORDER BY accepted_at DESC LIMIT $1) o`,
    [plan.tracedOrders],
  );
  const outboxS = seconds(t);

  t = performance.now();
  const perIndexS: Record<string, number> = {};
  await pool.query(`SET maintenance_work_mem = '512MB'`);
  let start = performance.now();
  await pool.query(`ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (order_id)`);
  perIndexS.orders_pkey = seconds(start);
  for (const i of idx) {
    if (i.name === 'orders_pkey') continue;
    start = performance.now();
    await pool.query(i.def);
    perIndexS[i.name] = seconds(start);
  }
  await pool.query(`RESET maintenance_work_mem`);
  const indexesS = seconds(t);

  t = performance.now();
  await pool.query(`VACUUM ANALYZE orders`);
  await pool.query(`ANALYZE outbox`);
  const analyzeS = seconds(t);
  const { rows } = await pool.query<{ table: number; indexes: number }>(
    `SELECT pg_table_size('orders')::bigint AS table, pg_indexes_size('orders')::bigint AS indexes`,
  );
  return {
    insertS,
    outboxS,
    indexesS,
    analyzeS,
    perIndexS,
    tableBytes: Number(rows[0]!.table),
    indexBytes: Number(rows[0]!.indexes),
  };
}
