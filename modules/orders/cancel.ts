import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from '../../shared/db/pool.ts';
import type { EventEnvelope } from '../../shared/domain/events.ts';
import { isUuid } from '../../shared/domain/ids.ts';
import { StateConflictError } from '../../shared/errors/domain.ts';
import type { CommandStatus, CommandSummary } from '../../shared/search/query.ts';
import type { CancelWrite, CancelledCommand, CommandCancellation } from '../../shared/modules/module.ts';
import { OrderJobSchema, orderTotalCents } from './domain.ts';
import { OrderEventTypes } from './events.ts';

interface OrderSummaryRow {
  order_id: string;
  status: CommandStatus;
  tenant: string | null;
  accepted_by: string | null;
  customer_id: string;
  correlation_id: string;
  accepted_at: Date;
  decided_at: Date;
}

const summaryOf = (r: OrderSummaryRow): CommandSummary => ({
  module: 'orders',
  id: r.order_id,
  status: r.status,
  tenant: r.tenant,
  apiKey: r.accepted_by,
  subject: r.customer_id,
  correlationId: r.correlation_id,
  traceId: null,
  errorCode: null,
  acceptedAt: r.accepted_at.toISOString(),
  decidedAt: r.decided_at.toISOString(),
});

async function find(db: Pool | PoolClient, id: string): Promise<CommandSummary | undefined> {
  const { rows } = await db.query<OrderSummaryRow>(
    `SELECT order_id, status, tenant, accepted_by, customer_id, correlation_id, accepted_at, decided_at
       FROM orders WHERE order_id = $1`,
    [id],
  );
  return rows[0] && summaryOf(rows[0]);
}

/**
 * Cancels an order not yet decided: its `cancelled` row (from the job's data) and its `order.cancelled`
 * event. The row is inserted only when the order has none: a decision already there (or being written by
 * a worker, whose uncommitted row this insert waits for) wins, and the worker's own upsert later leaves a
 * cancelled row alone (only a dead-lettered one may be decided again), so the order is never executed.
 */
async function cancel(client: PoolClient, cmd: CancelledCommand): Promise<CancelWrite> {
  const parsed = OrderJobSchema.safeParse(cmd.data);
  if (!parsed.success || parsed.data.orderId !== cmd.id) {
    throw new StateConflictError(
      'command.invalid',
      `order ${cmd.id} is not a valid order command: it will be dead-lettered, not cancelled`,
    );
  }
  const job = parsed.data;
  const at = cmd.at.toISOString();
  const totalCents = orderTotalCents(job.order.items);
  const written = await client.query<OrderSummaryRow>(
    `INSERT INTO orders (order_id, customer_id, currency, total_cents, items, status, reason, attempts,
                         correlation_id, accepted_at, accepted_by, tenant, decided_at, replay_of)
     VALUES ($1, $2, $3, $4, $5, 'cancelled', $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (order_id) DO NOTHING
     RETURNING order_id, status, tenant, accepted_by, customer_id, correlation_id, accepted_at, decided_at`,
    [
      job.orderId,
      job.order.customerId,
      job.order.currency,
      totalCents,
      JSON.stringify(job.order.items),
      cmd.reason,
      cmd.attempts,
      job.correlationId,
      job.acceptedAt,
      job.acceptedBy ?? null,
      job.tenant ?? null,
      at,
      job.replayOf ?? null,
    ],
  );
  const row = written.rows[0];
  if (!row) {
    const existing = await find(client, cmd.id);
    if (!existing) throw new Error(`order ${cmd.id}: insert skipped but no row found`);
    return { written: false, existing };
  }
  const event: EventEnvelope = {
    eventId: randomUUID(),
    type: OrderEventTypes.cancelled,
    version: 1,
    key: job.orderId,
    correlationId: job.correlationId,
    occurredAt: at,
    payload: {
      orderId: job.orderId,
      customerId: job.order.customerId,
      currency: job.order.currency,
      totalCents,
      items: job.order.items,
      attempts: cmd.attempts,
      acceptedAt: job.acceptedAt,
      ...(job.tenant === undefined ? {} : { tenant: job.tenant }),
      cancelledAt: at,
      cancelledBy: cmd.actor,
      reason: cmd.reason,
    },
  };
  return { written: true, summary: summaryOf(row), events: [event], batchId: job.batchId };
}

/** The orders module's side of a cancel (POST /v1/orders/{orderId}/cancel). */
export const orderCancellation: CommandCancellation = { isId: isUuid, cancel, find };
