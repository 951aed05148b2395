import { randomUUID } from 'node:crypto';
import { insertOutbox } from '../../../shared/db/outbox.sql.ts';
import { withTransaction, type Pool, type PoolClient } from '../../../shared/db/pool.ts';
import type { EventEnvelope } from '../../../shared/domain/events.ts';
import { decideRefund, type RefundableOrder, type RefundJob } from '../domain.ts';
import { RefundEventTypes } from '../events.ts';

export type RefundOutcome =
  | { status: 'completed' | 'rejected'; refundId: string; code?: string }
  /** Decided earlier (a redelivery): nothing written, nothing emitted. */
  | { status: 'duplicate'; refundId: string };

/**
 * The order, its row locked until the transaction ends: every refund of one order is decided one after
 * the other, each seeing the refunds committed before it (READ COMMITTED takes a new snapshot per
 * statement), so two concurrent refunds can never together exceed the order's total.
 */
async function lockOrder(client: PoolClient, orderId: string): Promise<RefundableOrder | null> {
  const { rows } = await client.query<{
    status: string;
    currency: string;
    customer_id: string;
    total_cents: string;
  }>('SELECT status, currency, customer_id, total_cents FROM orders WHERE order_id = $1 FOR UPDATE', [
    orderId,
  ]);
  const order = rows[0];
  if (!order) return null;
  const refunded = await client.query<{ sum: string }>(
    `SELECT COALESCE(sum(amount_cents), 0) AS sum FROM refunds WHERE order_id = $1 AND status = 'completed'`,
    [orderId],
  );
  return {
    status: order.status,
    currency: order.currency,
    customerId: order.customer_id,
    totalCents: Number(order.total_cents),
    refundedCents: Number(refunded.rows[0]!.sum),
  };
}

/**
 * Decides one refund and commits its row and event in one transaction. Idempotent: a refund already
 * decided is left alone (only a dead-lettered one may be decided again, after a redrive).
 */
export async function decideAndWriteRefund(
  pool: Pool,
  job: RefundJob,
  attempt: number,
  now: Date,
): Promise<RefundOutcome> {
  return withTransaction(pool, async (client) => {
    const order = await lockOrder(client, job.orderId);
    const decision = decideRefund(job.refund, order);
    const status = decision.kind === 'complete' ? 'completed' : 'rejected';
    const code = decision.kind === 'reject' ? decision.code : null;
    const detail = decision.kind === 'reject' ? decision.reason : null;
    // A redriven refund keeps the tenant its dead-lettered row has (one from before the column takes the job's).
    const written = await client.query(
      `INSERT INTO refunds (refund_id, order_id, amount_cents, currency, customer_id, reason, status, code, detail,
                            attempts, correlation_id, requested_at, tenant)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
       ON CONFLICT (refund_id) DO UPDATE
         SET currency = EXCLUDED.currency, customer_id = EXCLUDED.customer_id, status = EXCLUDED.status,
             code = EXCLUDED.code, detail = EXCLUDED.detail, attempts = EXCLUDED.attempts,
             tenant = COALESCE(refunds.tenant, EXCLUDED.tenant), decided_at = now()
         WHERE refunds.status = 'dead_lettered'
       RETURNING refund_id`,
      [
        job.refundId,
        job.orderId,
        job.refund.amountCents,
        order?.currency ?? null,
        order?.customerId ?? null,
        job.refund.reason ?? null,
        status,
        code,
        detail,
        attempt,
        job.correlationId,
        job.requestedAt,
        job.tenant ?? null,
      ],
    );
    if (written.rowCount === 0) return { status: 'duplicate', refundId: job.refundId };
    const meta = {
      eventId: randomUUID(),
      version: 1,
      key: job.orderId,
      correlationId: job.correlationId,
      occurredAt: now.toISOString(),
    };
    const snapshot = {
      refundId: job.refundId,
      orderId: job.orderId,
      amountCents: job.refund.amountCents,
      reason: job.refund.reason ?? null,
      attempts: attempt,
      requestedAt: job.requestedAt,
      // In the events only when the job names one (events stay as they were for jobs without).
      ...(job.tenant === undefined ? {} : { tenant: job.tenant }),
    };
    const event: EventEnvelope =
      decision.kind === 'complete'
        ? {
            ...meta,
            type: RefundEventTypes.completed,
            payload: {
              ...snapshot,
              customerId: order!.customerId,
              currency: order!.currency,
              completedAt: now.toISOString(),
            },
          }
        : {
            ...meta,
            type: RefundEventTypes.rejected,
            payload: {
              ...snapshot,
              customerId: order?.customerId ?? null,
              currency: order?.currency ?? null,
              code: decision.code,
              detail: decision.reason,
              rejectedAt: now.toISOString(),
            },
          };
    await insertOutbox(client, [event]);
    return decision.kind === 'complete'
      ? { status: 'completed', refundId: job.refundId }
      : { status: 'rejected', refundId: job.refundId, code: decision.code };
  });
}
