import type { Pool, PoolClient } from '../../../shared/db/pool.ts';
import { OUTBOX_COLUMNS, outboxColumns } from '../../../shared/db/outbox.sql.ts';
import type { EventEnvelope } from '../../../shared/domain/events.ts';

export interface OrderRow {
  orderId: string;
  customerId: string;
  currency: string;
  totalCents: number;
  items: unknown;
  status: 'completed' | 'rejected' | 'dead_lettered';
  reason: string | null;
  attempts: number;
  correlationId: string;
  acceptedAt: string;
  /** The API key that posted it (`principal`); null for a foreign producer's job. */
  acceptedBy: string | null;
  /** Who it was for (the job's `tenant`: the key, or `<key>/<sub-tenant>`); null when the job named none. */
  tenant: string | null;
  /** The order it replays (bulk `replay`); null for an order posted by a producer. */
  replayOf: string | null;
}

/**
 * Upserts orders from parameters $1..$13 ({@link orderColumns}); returns the ids actually written. A
 * redriven order keeps the tenant its dead-lettered row has (one written before the column existed
 * takes the job's).
 */
const UPSERT_ORDERS = `INSERT INTO orders (order_id, customer_id, currency, total_cents, items, status, reason, attempts,
                         correlation_id, accepted_at, accepted_by, tenant, replay_of)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[], $6::text[], $7::text[],
                          $8::int[], $9::text[], $10::timestamptz[], $11::text[], $12::text[], $13::uuid[])
     ON CONFLICT (order_id) DO UPDATE
       SET customer_id = EXCLUDED.customer_id, currency = EXCLUDED.currency, total_cents = EXCLUDED.total_cents,
           items = EXCLUDED.items, status = EXCLUDED.status, reason = EXCLUDED.reason, attempts = EXCLUDED.attempts,
           correlation_id = EXCLUDED.correlation_id, tenant = COALESCE(orders.tenant, EXCLUDED.tenant),
           decided_at = now()
       WHERE orders.status = 'dead_lettered' AND EXCLUDED.status <> 'dead_lettered'
     RETURNING order_id`;

const orderColumns = (rows: readonly OrderRow[]) => [
  rows.map((r) => r.orderId),
  rows.map((r) => r.customerId),
  rows.map((r) => r.currency),
  rows.map((r) => r.totalCents),
  rows.map((r) => JSON.stringify(r.items)),
  rows.map((r) => r.status),
  rows.map((r) => r.reason),
  rows.map((r) => r.attempts),
  rows.map((r) => r.correlationId),
  rows.map((r) => r.acceptedAt),
  rows.map((r) => r.acceptedBy),
  rows.map((r) => r.tenant),
  rows.map((r) => r.replayOf),
];

/**
 * Writes orders in one statement. Idempotent: an order already decided is left alone (a redelivered
 * job changes nothing); only a `dead_lettered` order may be decided again, after a redrive.
 * @returns the ids actually written — only those get outbox events.
 */
export async function upsertOrders(client: PoolClient, rows: readonly OrderRow[]): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const result = await client.query<{ order_id: string }>(UPSERT_ORDERS, orderColumns(rows));
  return new Set(result.rows.map((r) => r.order_id));
}

/**
 * The order worker's whole write in one statement — orders upserted as in {@link upsertOrders}, and the
 * event of each order actually written appended to the outbox — so it is atomic without BEGIN/COMMIT:
 * one round trip per batch instead of four. `events[i]` belongs to `rows[i]` (its key is the order id).
 * A named (prepared) statement: Postgres parses and plans it once per connection. On a client, it is
 * part of the caller's transaction (a batch's decisions are counted in the same one: shared/batches).
 * @returns the ids actually written.
 */
export async function decideOrders(
  pool: Pool | PoolClient,
  rows: readonly OrderRow[],
  events: readonly EventEnvelope[],
): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const result = await pool.query<{ order_id: string }>({
    name: 'conveyor-decide-orders',
    text: `WITH written AS (${UPSERT_ORDERS}), appended AS (
       INSERT INTO outbox (${OUTBOX_COLUMNS})
       SELECT e.* FROM unnest($14::uuid[], $15::text[], $16::int[], $17::text[], $18::text[], $19::jsonb[],
                              $20::jsonb[])
                    AS e(event_id, event_type, event_version, aggregate_id, correlation_id, envelope, trace_context)
        WHERE e.aggregate_id::uuid IN (SELECT order_id FROM written)
     )
     SELECT order_id FROM written`,
    values: [...orderColumns(rows), ...outboxColumns(events)],
  });
  return new Set(result.rows.map((r) => r.order_id));
}
