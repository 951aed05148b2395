import type { JobsOptions } from 'bullmq';
import type { OrderJob } from '../shared/domain/order.ts';
import { PLACE_ORDER_JOB, type OrdersQueue } from '../shared/queue/orders-queue.ts';
import { withDeadline } from '../shared/runtime/deadline.ts';

/** Puts one order job into Redis; resolves only once Redis has it (or already had that job id). */
export type Enqueue = (job: OrderJob) => Promise<void>;

export interface CoalescingOptions {
  /** Most jobs per `addBulk`; a full batch is flushed at once. */
  maxBatch: number;
  /**
   * How long a partial batch may wait for company, in ms. 0 = until the current event-loop turn
   * has run (every request whose Redis reply arrived in the same socket read joins the batch).
   */
  maxWaitMs: number;
  /** A bulk not acknowledged by Redis within this many ms fails (its callers answer 503). */
  timeoutMs: number;
  /**
   * Bulks awaiting Redis at once. While that many are out, new jobs wait for one to return and
   * then leave together (unless `maxBatch` fills first): under load batches grow on their own,
   * at low load a job leaves on the next turn as before.
   */
  maxInFlight: number;
}

interface Pending {
  job: OrderJob;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Coalesces concurrent single-order enqueues into one `queue.addBulk` (one Redis pipeline) per
 * event-loop turn (or `maxWaitMs`), at most `maxBatch` jobs each. Every caller still awaits its own
 * job: the promise resolves only after the bulk that carried it was written to Redis, and a failed
 * bulk rejects exactly the callers whose jobs it carried (never a false 202). Job ids are kept, so
 * BullMQ's dedupe by job id (idempotency-derived order ids) works as with `queue.add`.
 * @example const enqueue = coalescingEnqueue(queue, jobOptions, { maxBatch: 256, maxWaitMs: 0, timeoutMs: 2_000, maxInFlight: 1 }); await enqueue(job);
 */
export function coalescingEnqueue(
  queue: OrdersQueue,
  jobOptions: JobsOptions,
  options: CoalescingOptions,
): Enqueue {
  let batch: Pending[] = [];
  let scheduled: NodeJS.Immediate | NodeJS.Timeout | undefined;
  let inFlight = 0;

  const schedule = () => {
    scheduled = options.maxWaitMs > 0 ? setTimeout(flush, options.maxWaitMs) : setImmediate(flush);
  };

  const settled = () => {
    inFlight--;
    if (batch.length > 0 && scheduled === undefined) schedule();
  };

  function flush(): void {
    if (scheduled !== undefined) {
      if (options.maxWaitMs > 0) clearTimeout(scheduled as NodeJS.Timeout);
      else clearImmediate(scheduled as NodeJS.Immediate);
      scheduled = undefined;
    }
    // A full batch always leaves; a partial one waits while enough bulks are out (see `settled`).
    if (batch.length === 0 || (inFlight >= options.maxInFlight && batch.length < options.maxBatch)) return;
    const items = batch;
    batch = [];
    inFlight++;
    let added: Promise<unknown>;
    try {
      added = withDeadline(
        queue.addBulk(
          items.map(({ job }) => ({
            name: PLACE_ORDER_JOB,
            data: job,
            opts: { ...jobOptions, jobId: job.orderId },
          })),
        ),
        options.timeoutMs,
      );
    } catch (err) {
      added = Promise.reject(err);
    }
    added.then(
      () => {
        settled();
        for (const p of items) p.resolve();
      },
      (err: unknown) => {
        settled();
        for (const p of items) p.reject(err);
      },
    );
  }

  return (job) =>
    new Promise<void>((resolve, reject) => {
      batch.push({ job, resolve, reject });
      if (batch.length >= options.maxBatch) flush();
      else if (scheduled === undefined && inFlight < options.maxInFlight) schedule();
    });
}
