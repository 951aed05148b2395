import { randomUUID } from 'node:crypto';
import type { Job, Queue } from 'bullmq';
import { withTransaction, type Pool } from '../../shared/db/pool.ts';
import {
  deadLetterParams,
  INSERT_DEAD_LETTER_SQL,
  type NewDeadLetter,
} from '../../shared/dead-letters/dead-letter.ts';
import { EventTypes, type EventEnvelope } from '../../shared/domain/events.ts';
import { CorrelationIdSchema, OrderJobSchema, orderTotalCents } from '../../shared/domain/order.ts';
import { QueueNames } from '../../shared/queue/names.ts';
import { insertOutbox, upsertOrders } from './orders.sql.ts';

const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface CommandDeadLetterDeps {
  pool: Pool;
  /** BullMQ queue `orders-dead-letters`, so operators see dead letters in Bull Board too. */
  dlq: Queue;
  /** Called after the dead-letter event was committed to the outbox: wakes the relays. */
  onOutboxAppended?: () => void;
}

export function commandDeadLetterId(jobId: string): string {
  return `bullmq-${QueueNames.orders}-${jobId}`;
}

/**
 * Moves an order command to the dead letters: in ONE transaction the dead-letter record, the order's
 * `dead_lettered` state in the write model and an `order.dead_lettered` event (so the read model shows
 * it); then a copy in the BullMQ dead-letter queue. Idempotent per job id.
 */
export async function deadLetterOrderJob(
  deps: CommandDeadLetterDeps,
  job: Job,
  error: Error,
  attempts: number,
): Promise<string> {
  const id = commandDeadLetterId(job.id ?? randomUUID());
  const data: unknown = job.data;
  const parsed = OrderJobSchema.safeParse(data);
  const loose = (data ?? {}) as { orderId?: unknown; correlationId?: unknown };
  const orderId = parsed.success
    ? parsed.data.orderId
    : typeof loose.orderId === 'string' && uuidRe.test(loose.orderId)
      ? loose.orderId
      : null;
  const correlationId = parsed.success
    ? parsed.data.correlationId
    : CorrelationIdSchema.safeParse(loose.correlationId).success
      ? (loose.correlationId as string)
      : job.id
        ? `job-${job.id}`.slice(0, 128).padEnd(8, '-')
        : randomUUID();
  const now = new Date();
  const record: NewDeadLetter = {
    id,
    transport: 'bullmq',
    origin: QueueNames.orders,
    kind: 'command',
    messageKey: job.id ?? null,
    payload: Buffer.from(JSON.stringify(data ?? null)),
    headers: { 'job-name': job.name, 'correlation-id': correlationId },
    error: error.message,
    stack: error.stack ?? null,
    attempts,
    correlationId,
    orderId,
    firstFailedAt: new Date(job.processedOn ?? job.timestamp),
    failedAt: now,
  };

  const appended = await withTransaction(deps.pool, async (client) => {
    await client.query(INSERT_DEAD_LETTER_SQL, deadLetterParams(record));
    if (!orderId) return false;
    const order = parsed.success ? parsed.data : null;
    if (order) {
      const written = await upsertOrders(client, [
        {
          orderId,
          customerId: order.order.customerId,
          currency: order.order.currency,
          totalCents: orderTotalCents(order.order.items),
          items: order.order.items,
          status: 'dead_lettered',
          reason: error.message.slice(0, 1_000),
          attempts,
          correlationId,
          acceptedAt: order.acceptedAt,
        },
      ]);
      // An order already decided (completed/rejected) stays so: no dead-letter event for it.
      if (written.size === 0) return false;
    }
    const event: EventEnvelope = {
      eventId: randomUUID(),
      type: EventTypes.orderDeadLettered,
      version: 1,
      key: orderId,
      correlationId,
      occurredAt: now.toISOString(),
      payload: {
        orderId,
        customerId: order?.order.customerId ?? null,
        currency: order?.order.currency ?? null,
        totalCents: order ? orderTotalCents(order.order.items) : null,
        items: order?.order.items ?? null,
        attempts,
        acceptedAt: order?.acceptedAt ?? null,
        deadLetteredAt: now.toISOString(),
        error: error.message.slice(0, 1_000),
        deadLetterId: id,
      },
    };
    await insertOutbox(client, [event]);
    return true;
  });
  if (appended) deps.onOutboxAppended?.();

  await deps.dlq.add(
    'dead-letter',
    {
      deadLetterId: id,
      origin: QueueNames.orders,
      jobId: job.id,
      data,
      error: error.message,
      attempts,
      correlationId,
    },
    { jobId: id, removeOnComplete: true, removeOnFail: true },
  );
  return id;
}
