import { isUuid } from '../../../shared/domain/ids.ts';
import { randomUUID } from 'node:crypto';
import type { DeadLetteredCommand } from '../../../shared/modules/module.ts';
import type { PoolClient } from '../../../shared/db/pool.ts';
import type { EventEnvelope } from '../../../shared/domain/events.ts';
import { OrderJobSchema, orderTotalCents } from '../domain.ts';
import { OrderEventTypes } from '../events.ts';
import { recordBatchDecisions } from '../../../shared/batches/store.ts';
import { upsertOrders } from './orders.sql.ts';

/** The order id and correlation id of an order job's data, even a malformed one. */
export function describeOrderJob(data: unknown): { correlationId: string | null; subjectId: string | null } {
  // Read field by field, not through OrderJobSchema: the schema transforms neither field, so a valid
  // job gives the same answer, and the worker calls this once per job on data it has just parsed.
  const loose = (data ?? {}) as { orderId?: unknown; correlationId?: unknown };
  return {
    correlationId: typeof loose.correlationId === 'string' ? loose.correlationId : null,
    subjectId: isUuid(loose.orderId) ? loose.orderId : null,
  };
}

/**
 * A dead-lettered order command, inside the dead-letter transaction: the order's `dead_lettered`
 * state in the write model and an `order.dead_lettered` event (so the read model shows it). An order
 * already decided (completed or rejected) stays so, and emits nothing.
 */
export async function orderDeadLettered(
  client: PoolClient,
  cmd: DeadLetteredCommand,
): Promise<EventEnvelope[]> {
  const parsed = OrderJobSchema.safeParse(cmd.data);
  const orderId = describeOrderJob(cmd.data).subjectId;
  if (!orderId) return [];
  const order = parsed.success ? parsed.data : null;
  const reason = cmd.error.message.slice(0, 1_000);
  // The batch it was posted in, even from data that fails the schema (that may be why it is here).
  const loose = (cmd.data ?? {}) as { batchId?: unknown };
  const batchId = order ? order.batchId : isUuid(loose.batchId) ? loose.batchId : undefined;
  if (order) {
    const written = await upsertOrders(client, [
      {
        orderId,
        customerId: order.order.customerId,
        currency: order.order.currency,
        totalCents: orderTotalCents(order.order.items),
        items: order.order.items,
        status: 'dead_lettered',
        reason,
        attempts: cmd.attempts,
        correlationId: cmd.correlationId,
        acceptedAt: order.acceptedAt,
        acceptedBy: order.acceptedBy ?? null,
        tenant: order.tenant ?? null,
        replayOf: order.replayOf ?? null,
      },
    ]);
    if (written.size === 0) return [];
  }
  // Counted once per order (a decided one stays so: shared/batches), in the dead letter's transaction.
  if (batchId)
    await recordBatchDecisions(client, 'orders', [{ batchId, itemId: orderId, outcome: 'dead_lettered' }]);
  return [
    {
      eventId: randomUUID(),
      type: OrderEventTypes.deadLettered,
      version: 1,
      key: orderId,
      correlationId: cmd.correlationId,
      occurredAt: cmd.at.toISOString(),
      payload: {
        orderId,
        customerId: order?.order.customerId ?? null,
        currency: order?.order.currency ?? null,
        totalCents: order ? orderTotalCents(order.order.items) : null,
        items: order?.order.items ?? null,
        attempts: cmd.attempts,
        acceptedAt: order?.acceptedAt ?? null,
        ...(order?.tenant === undefined ? {} : { tenant: order.tenant }),
        deadLetteredAt: cmd.at.toISOString(),
        error: reason,
        deadLetterId: cmd.deadLetterId,
      },
    },
  ];
}
