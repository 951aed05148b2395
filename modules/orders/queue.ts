import type { Redis } from '../../shared/queue/redis.ts';
import { createCommandQueue, type CommandQueue } from '../../shared/queue/command-queue.ts';
import { commandQueues } from '../../shared/queue/names.ts';
import type { OrderJob } from './domain.ts';
import { ordersModule } from './module.ts';

/** The orders module's queues (`orders`, `orders-dead-letters`), for producers and tools outside the API. */
export const OrdersQueues = commandQueues(ordersModule.name);
/** The job name of an order command: what foreign producers enqueue into `orders`. */
export const PLACE_ORDER_JOB = ordersModule.jobName;

export type OrdersQueue = CommandQueue<OrderJob>;

/** The producer side of queue `orders`. */
export function createOrdersQueue(connection: Redis, prefix: string): OrdersQueue {
  return createCommandQueue<OrderJob>(connection, prefix, OrdersQueues.commands);
}
