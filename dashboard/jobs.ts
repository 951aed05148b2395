import type { Queue } from 'bullmq';
import { attemptsMadeOf, lastErrorOf, deliveryStateOf } from '../shared/queue/job-delivery.ts';
import type { QueueName } from '../shared/queue/names.ts';

/** A BullMQ job as the console shows it: where it is and what its attempts said. */
export interface JobSnapshot {
  queue: string;
  id: string;
  /** `waiting`, `active`, `delayed`, `prioritized`, `completed`, `failed`, … */
  state: string;
  /**
   * The attempts it used, by the delivery core's count (BullMQ's own `attemptsMade` does not count
   * the core's retries): those that ended — not the one running now, nor a snooze.
   */
  attemptsMade: number;
  /** The attempt its current delivery is (`active`), its next (waiting, delayed) or its last (finished). */
  attempt: number;
  /** Times it was snoozed (handed back without an attempt consumed: a dependency or PostgreSQL down). */
  snoozes: number;
  /** The attempts its options allow. */
  attempts: number;
  /** BullMQ's failure reason: set when BullMQ itself failed or retried it, not by the core's retries. */
  failedReason: string | null;
  /** The first line of each failed attempt's stack (BullMQ keeps one per attempt). */
  errors: string[];
  enqueuedAt: Date;
  processedAt: Date | null;
  finishedAt: Date | null;
  data: unknown;
}

/** Reads single jobs by id (a hash lookup, never a scan of a queue). */
export interface JobLookup {
  get(queue: QueueName, id: string): Promise<JobSnapshot | null>;
}

const firstLine = (stack: string) => stack.split('\n', 1)[0] ?? stack;

/** @example const job = await createJobLookup(queues).get('orders', orderId); */
export function createJobLookup(queues: readonly Queue[]): JobLookup {
  const byName = new Map(queues.map((q) => [q.name, q]));
  return {
    async get(name, id) {
      const queue = byName.get(name);
      if (!queue) return null;
      const job = await queue.getJob(id);
      if (!job?.id) return null;
      const state = await job.getState();
      const delivery = deliveryStateOf(job);
      return {
        queue: name,
        id: job.id,
        state,
        attemptsMade: attemptsMadeOf(job),
        attempt: delivery.attempt,
        snoozes: delivery.snoozes,
        attempts: job.opts.attempts ?? 1,
        failedReason: lastErrorOf(job),
        errors: (job.stacktrace ?? []).map(firstLine),
        enqueuedAt: new Date(job.timestamp),
        processedAt: job.processedOn ? new Date(job.processedOn) : null,
        finishedAt: job.finishedOn ? new Date(job.finishedOn) : null,
        data: job.data,
      };
    },
  };
}
