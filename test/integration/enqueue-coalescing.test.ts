import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { coalescingEnqueue } from '../../shared/http/enqueue.ts';
import type { OrderJob } from '../../modules/orders/domain.ts';
import { createOrdersQueue, PLACE_ORDER_JOB } from '../../modules/orders/queue.ts';
import { commandJobOptions } from '../../shared/queue/command-queue.ts';
import { TEST_REDIS_URL, uniqueId } from '../support/env.ts';
import { sampleOrder } from '../support/http.ts';

const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: 1 });
const queue = createOrdersQueue(redis, uniqueId('cvq'));
const jobOptions = commandJobOptions({ attempts: 3, backoffMs: 50, keepCompletedSeconds: 60 });
const target = { queue, jobName: PLACE_ORDER_JOB, jobOptions };
const enqueueJob = coalescingEnqueue(target, {
  maxBatch: 8,
  maxWaitMs: 0,
  timeoutMs: 2_000,
  maxInFlight: 1,
});

/** Enqueues an order job under its order id, as POST /v1/orders does. */
const enqueue = (data: OrderJob) => enqueueJob({ id: data.orderId, data });

afterAll(async () => {
  await queue.obliterate({ force: true });
  await queue.close();
  redis.disconnect();
});

const job = (orderId: string = randomUUID()): OrderJob => ({
  orderId,
  correlationId: randomUUID(),
  acceptedAt: new Date().toISOString(),
  order: sampleOrder() as OrderJob['order'],
});

describe('coalescing enqueue (POST /v1/orders → one addBulk per turn)', () => {
  it('resolves each caller only once its own job is in Redis, across batches larger than maxBatch', async () => {
    const jobs = Array.from({ length: 30 }, () => job());
    await Promise.all(jobs.map((j) => enqueue(j)));
    const stored = await Promise.all(jobs.map((j) => queue.getJob(j.orderId)));
    expect(stored.map((s) => s?.data.orderId)).toEqual(jobs.map((j) => j.orderId));
    expect(stored.every((s) => s?.opts.attempts === 3)).toBe(true);
  });

  it('keeps job ids: the same order id enqueued twice is one job', async () => {
    const id = randomUUID();
    await Promise.all([enqueue(job(id)), enqueue(job(id))]);
    await enqueue(job(id));
    expect((await queue.getJobs(['waiting'])).filter((j) => j.id === id)).toHaveLength(1);
  });

  it('a failed bulk fails exactly the callers it carried; the next bulk is unaffected', async () => {
    // Same turn, one bulk: BullMQ refuses the whole bulk for the one invalid job id.
    const [a, bad, b] = [job(), job('not:valid'), job()];
    const outcomes = await Promise.allSettled([enqueue(a), enqueue(bad), enqueue(b)]);
    expect(outcomes.map((o) => o.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(await queue.getJob(a.orderId)).toBeUndefined();
    expect(await queue.getJob(b.orderId)).toBeUndefined();
    const next = job();
    await enqueue(next);
    expect((await queue.getJob(next.orderId))?.data.orderId).toBe(next.orderId);
  });
});
