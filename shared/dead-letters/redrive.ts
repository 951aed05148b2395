import type { Queue } from 'bullmq';
import type { EventBus } from '../bus/event-bus.ts';
import type { OrdersQueue } from '../queue/orders-queue.ts';
import { PLACE_ORDER_JOB } from '../queue/orders-queue.ts';
import { QueueNames } from '../queue/names.ts';
import type { DeadLetterRecord } from './dead-letter.ts';

export interface RedriveDeps {
  ordersQueue: OrdersQueue;
  ordersDeadLetterQueue: Queue;
  jobOptions: Parameters<OrdersQueue['add']>[2];
  /** The event bus of each transport, created on first use. */
  bus: (transport: DeadLetterRecord['transport']) => Promise<EventBus>;
}

export type Redriver = (deadLetter: DeadLetterRecord) => Promise<void>;

/**
 * Sends a dead letter back to its origin: an order command to queue `orders` (same job id, fresh
 * attempts), an event to its bus. Processing stays idempotent, so a redrive never doubles an effect.
 */
export function createRedriver(deps: RedriveDeps): Redriver {
  return async (dl) => {
    if (dl.kind === 'command' && dl.origin === QueueNames.orders) {
      const jobId = dl.messageKey ?? undefined;
      if (jobId) await deps.ordersQueue.remove(jobId).catch(() => undefined);
      const data = JSON.parse(dl.payload.toString('utf8')) as Parameters<OrdersQueue['add']>[1];
      await deps.ordersQueue.add(PLACE_ORDER_JOB, data, { ...deps.jobOptions, ...(jobId ? { jobId } : {}) });
      await deps.ordersDeadLetterQueue.remove(dl.id).catch(() => undefined);
      return;
    }
    const bus = await deps.bus(dl.transport);
    await bus.redrive(dl);
  };
}
