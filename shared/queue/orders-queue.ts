import { Queue, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { OrderJob } from '../domain/order.ts';
import { QueueNames } from './names.ts';

export const PLACE_ORDER_JOB = 'place-order';

export interface OrderJobPolicy {
  attempts: number;
  backoffMs: number;
  keepCompletedSeconds: number;
}

/** Retries with exponential backoff and jitter; completed jobs kept a while so `queued` → `completed` is visible. */
export function orderJobOptions(policy: OrderJobPolicy): JobsOptions {
  return {
    attempts: policy.attempts,
    backoff: { type: 'exponential', delay: policy.backoffMs, jitter: 0.5 },
    removeOnComplete: { age: policy.keepCompletedSeconds, count: 100_000 },
    // Dead letters hold the full record; keep a bounded tail of failed jobs for Bull Board.
    removeOnFail: { count: 1_000 },
  };
}

export type OrdersQueue = Queue<OrderJob, unknown, typeof PLACE_ORDER_JOB>;

export function createOrdersQueue(connection: Redis, prefix: string): OrdersQueue {
  return new Queue<OrderJob, unknown, typeof PLACE_ORDER_JOB>(QueueNames.orders, { connection, prefix });
}
