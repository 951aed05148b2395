import type { Pool } from '../../../shared/db/pool.ts';

export interface OrderView {
  orderId: string;
  customerId: string | null;
  currency: string | null;
  totalCents: number | null;
  items: { sku: string; quantity: number; unitPriceCents: number }[] | null;
  status: 'queued' | 'processing' | 'completed' | 'rejected' | 'dead_lettered' | 'cancelled';
  attempts: number;
  lastError: string | null;
  correlationId: string | null;
  acceptedAt: string | null;
  completedAt: string | null;
  updatedAt: string | null;
  /** Who it was for (fairness): the key's id or `<key id>/<sub-tenant>`; null when its job named none. */
  tenant: string | null;
  /** The order it replays (bulk `replay`): present only when it is a replay. */
  replayOf?: string;
}

/** Rows read with a nullable `replayOf`: the field only where it is set. */
function withReplayOf(rows: (OrderView & { replayOf?: string | null })[]): OrderView[] {
  return rows.map(({ replayOf, ...v }) => (replayOf ? { ...v, replayOf } : v));
}

const ORDER_VIEW_COLUMNS = `order_id AS "orderId", customer_id AS "customerId", currency, total_cents AS "totalCents",
  items, status, attempts, last_error AS "lastError", correlation_id AS "correlationId",
  to_char(accepted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "acceptedAt",
  to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "completedAt",
  to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "updatedAt", tenant`;

/** Many orders in ONE query (never a loop of single reads: the brief's N+1 pitfall). */
export async function findOrders(pool: Pool, ids: readonly string[]): Promise<OrderView[]> {
  // replayOf is in the write model only (a replay is rare): one primary-key lookup per order.
  const { rows } = await pool.query<OrderView & { replayOf: string | null }>(
    `SELECT ${ORDER_VIEW_COLUMNS},
            (SELECT o.replay_of::text FROM orders o WHERE o.order_id = order_view.order_id) AS "replayOf"
       FROM order_view WHERE order_id = ANY($1::uuid[])`,
    [ids],
  );
  return withReplayOf(rows);
}

/**
 * Decided orders the read model does not have yet, from the write model, in ONE query. The order
 * worker writes `orders` before its events are projected (and before its job may be trimmed from
 * Redis), so an accepted order that is neither in the read model nor in the queue is here.
 * `updatedAt` stays null: no read model has it yet.
 */
export async function findDecidedOrders(pool: Pool, ids: readonly string[]): Promise<OrderView[]> {
  if (ids.length === 0) return [];
  const iso = (col: string) => `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
  const { rows } = await pool.query<OrderView & { replayOf: string | null }>(
    `SELECT order_id AS "orderId", customer_id AS "customerId", currency, total_cents AS "totalCents",
            items, status, attempts, reason AS "lastError", correlation_id AS "correlationId",
            ${iso('accepted_at')} AS "acceptedAt",
            CASE WHEN status = 'dead_lettered' THEN NULL ELSE ${iso('decided_at')} END AS "completedAt",
            NULL AS "updatedAt", tenant, replay_of::text AS "replayOf"
       FROM orders WHERE order_id = ANY($1::uuid[])`,
    [ids],
  );
  return withReplayOf(rows);
}

export interface CustomerPage {
  orders: OrderView[];
  nextCursor: string | null;
}

interface Cursor {
  acceptedAt: string;
  orderId: string;
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.acceptedAt, c.orderId])).toString('base64url');
}

export function decodeCursor(raw: string): Cursor | null {
  try {
    const [acceptedAt, orderId] = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as unknown[];
    if (typeof acceptedAt !== 'string' || typeof orderId !== 'string') return null;
    if (Number.isNaN(Date.parse(acceptedAt)) || !/^[0-9a-f-]{36}$/i.test(orderId)) return null;
    return { acceptedAt, orderId };
  } catch {
    return null;
  }
}

/** Keyset pagination over the customer index of the order view, newest first. */
export async function customerOrders(
  pool: Pool,
  customerId: string,
  limit: number,
  cursor: Cursor | null,
): Promise<CustomerPage> {
  const { rows } = await pool.query<OrderView>(
    `SELECT ${ORDER_VIEW_COLUMNS} FROM order_view
      WHERE customer_id = $1 AND ($2::timestamptz IS NULL OR (accepted_at, order_id) < ($2::timestamptz, $3::uuid))
      ORDER BY accepted_at DESC, order_id DESC LIMIT $4`,
    [customerId, cursor?.acceptedAt ?? null, cursor?.orderId ?? null, limit + 1],
  );
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    orders: page,
    nextCursor:
      rows.length > limit && last?.acceptedAt
        ? encodeCursor({ acceptedAt: last.acceptedAt, orderId: last.orderId })
        : null,
  };
}

export interface CurrencyTotals {
  currency: string;
  completedCount: number;
  rejectedCount: number;
  revenueCents: number;
}

export async function customerTotals(pool: Pool, customerId: string): Promise<CurrencyTotals[]> {
  const { rows } = await pool.query<CurrencyTotals>(
    `SELECT currency, completed_count AS "completedCount", rejected_count AS "rejectedCount",
            revenue_cents AS "revenueCents"
       FROM customer_stats WHERE customer_id = $1 ORDER BY currency`,
    [customerId],
  );
  return rows;
}

export interface DailyStats extends CurrencyTotals {
  day: string;
  deadLetteredCount: number;
}

/** Stats from the pre-aggregated daily table: a few rows per day, never a scan of orders. */
export async function stats(
  pool: Pool,
  days: number,
): Promise<{ totals: (CurrencyTotals & { deadLetteredCount: number })[]; daily: DailyStats[] }> {
  const [totals, daily] = await Promise.all([
    pool.query<CurrencyTotals & { deadLetteredCount: number }>(
      `SELECT currency, sum(completed_count)::bigint AS "completedCount", sum(rejected_count)::bigint AS "rejectedCount",
              sum(dead_lettered_count)::bigint AS "deadLetteredCount", sum(revenue_cents)::bigint AS "revenueCents"
         FROM daily_stats GROUP BY currency ORDER BY currency`,
    ),
    pool.query<DailyStats>(
      `SELECT to_char(day, 'YYYY-MM-DD') AS day, currency, completed_count AS "completedCount",
              rejected_count AS "rejectedCount", dead_lettered_count AS "deadLetteredCount",
              revenue_cents AS "revenueCents"
         FROM daily_stats WHERE day > current_date - $1::int ORDER BY day, currency`,
      [days],
    ),
  ]);
  return { totals: totals.rows, daily: daily.rows };
}
