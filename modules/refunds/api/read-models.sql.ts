import type { Pool } from '../../../shared/db/pool.ts';

export interface RefundView {
  refundId: string;
  orderId: string | null;
  customerId: string | null;
  currency: string | null;
  amountCents: number | null;
  reason: string | null;
  status: 'queued' | 'processing' | 'completed' | 'rejected' | 'dead_lettered' | 'cancelled';
  code: string | null;
  detail: string | null;
  attempts: number;
  correlationId: string | null;
  requestedAt: string | null;
  decidedAt: string | null;
  /** When the read model last changed; null while it has not projected the refund yet. */
  updatedAt: string | null;
}

const iso = (col: string) => `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
const COLUMNS = `refund_id AS "refundId", order_id AS "orderId", customer_id AS "customerId", currency,
  amount_cents::bigint AS "amountCents", reason, status, code, detail, attempts, correlation_id AS "correlationId",
  ${iso('requested_at')} AS "requestedAt"`;

/** Refunds from the read model, in one query. */
export async function findRefunds(pool: Pool, ids: readonly string[]): Promise<RefundView[]> {
  const { rows } = await pool.query<RefundView>(
    `SELECT ${COLUMNS}, ${iso('decided_at')} AS "decidedAt", ${iso('updated_at')} AS "updatedAt"
       FROM refund_view WHERE refund_id = ANY($1::uuid[])`,
    [ids],
  );
  return rows;
}

/** Decided refunds the read model does not have yet, from the write model (`updatedAt` null). */
export async function findDecidedRefunds(pool: Pool, ids: readonly string[]): Promise<RefundView[]> {
  if (ids.length === 0) return [];
  const { rows } = await pool.query<RefundView>(
    `SELECT ${COLUMNS}, ${iso('decided_at')} AS "decidedAt", NULL AS "updatedAt"
       FROM refunds WHERE refund_id = ANY($1::uuid[])`,
    [ids],
  );
  return rows;
}

/** The refunds of many orders, oldest first, in one query. */
export async function refundsOfOrders(
  pool: Pool,
  orderIds: readonly string[],
): Promise<Map<string, RefundView[]>> {
  const byOrder = new Map<string, RefundView[]>(orderIds.map((id) => [id, []]));
  if (orderIds.length === 0) return byOrder;
  const { rows } = await pool.query<RefundView>(
    `SELECT ${COLUMNS}, ${iso('decided_at')} AS "decidedAt", ${iso('updated_at')} AS "updatedAt"
       FROM refund_view WHERE order_id = ANY($1::uuid[]) ORDER BY requested_at, refund_id`,
    [[...orderIds]],
  );
  for (const r of rows) byOrder.get(r.orderId!)?.push(r);
  return byOrder;
}

/** Completed refunds per `(dimension, key, currency)`; `key` null = every key (all-time totals per currency). */
export async function refundTotals(
  pool: Pool,
  dimension: 'day' | 'customer',
  keys: readonly string[] | null,
): Promise<Map<string, { refundCount: number; refundedCents: number }>> {
  const { rows } = await pool.query<{
    key: string;
    currency: string;
    refundCount: number;
    refundedCents: number;
  }>(
    keys === null
      ? `SELECT '' AS key, currency, sum(refund_count)::bigint AS "refundCount", sum(refunded_cents)::bigint AS "refundedCents"
           FROM refund_stats WHERE dimension = $1 GROUP BY currency`
      : `SELECT key, currency, refund_count::bigint AS "refundCount", refunded_cents::bigint AS "refundedCents"
           FROM refund_stats WHERE dimension = $1 AND key = ANY($2::text[])`,
    keys === null ? [dimension] : [dimension, [...keys]],
  );
  return new Map(
    rows.map((r) => [
      `${r.key}|${r.currency}`,
      { refundCount: r.refundCount, refundedCents: r.refundedCents },
    ]),
  );
}
