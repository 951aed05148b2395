import { randomUUID } from 'node:crypto';
import { OrdersQueues, PLACE_ORDER_JOB } from '../../modules/orders/queue.ts';
import type { OrderJob } from '../../modules/orders/domain.ts';
import type { JobProgress } from '../../shared/queue/job-delivery.ts';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// The order worker runs but projections do not: decided orders stay out of the read model, as they
// are while projections lag. Their completed jobs are then trimmed from Redis, as an operator's
// clean in Bull Board (or removeOnComplete) does.
let platform: Platform;
let orders: Queue;
const url = (path: string) => `${platform.url}${path}`;

beforeAll(async () => {
  platform = await startPlatform(testConfig(), { workers: ['orders'] });
  orders = new Queue(OrdersQueues.commands, {
    connection: platform.rt.redis,
    prefix: platform.config.redis.queuePrefix,
  });
});
afterAll(async () => {
  await orders.close();
  await platform.close();
});

async function placeDecidedAndTrimmed(body: Record<string, unknown>): Promise<string> {
  const res = await request(url('/v1/orders'), { method: 'POST', json: body });
  expect(res.status).toBe(202);
  const orderId = res.body.orderId as string;
  await eventually(
    async () =>
      (await platform.rt.pool.query('SELECT 1 FROM orders WHERE order_id = $1', [orderId])).rowCount === 1,
    { what: `order ${orderId} decided in the write model` },
  );
  await eventually(async () => (await orders.getJob(orderId))?.finishedOn, { what: 'its job finished' });
  await orders.clean(0, 0, 'completed');
  expect(await orders.getJob(orderId)).toBeUndefined();
  return orderId;
}

describe('reading an accepted order', () => {
  it('answers a decided order by its decision when neither the read model nor the queue has it', async () => {
    const completed = await placeDecidedAndTrimmed(sampleOrder({ customerId: 'c-reads-1' }));
    const rejected = await placeDecidedAndTrimmed(sampleOrder({ customerId: 'c-reads-2', currency: 'XXX' }));
    const projected = await platform.rt.pool.query('SELECT count(*)::int AS n FROM order_view');
    expect(projected.rows[0].n).toBe(0);

    const one = await request(url(`/v1/orders/${completed}`));
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({
      orderId: completed,
      status: 'completed',
      customerId: 'c-reads-1',
      totalCents: 2500,
      attempts: 1,
    });
    expect(one.body.completedAt).toEqual(expect.any(String));

    const two = await request(url(`/v1/orders/${rejected}`));
    expect(two.status).toBe(200);
    expect(two.body).toMatchObject({ orderId: rejected, status: 'rejected' });
    expect(two.body.lastError).toEqual(expect.stringContaining('XXX'));

    const unknown = '00000000-0000-4000-8000-000000000000';
    const many = await request<{ orders: { orderId: string; status: string }[]; missing: string[] }>(
      url(`/v1/orders?ids=${completed},${rejected},${unknown}`),
    );
    expect(many.status).toBe(200);
    expect(many.body.orders.map((o) => [o.orderId, o.status])).toEqual([
      [completed, 'completed'],
      [rejected, 'rejected'],
    ]);
    expect(many.body.missing).toEqual([unknown]);
    expect((await request(url(`/v1/orders/${unknown}`))).status).toBe(404);
  });

  it('answers a queued order with the attempts the delivery core counted, not BullMQ', async () => {
    const orderId = randomUUID();
    const data: OrderJob = {
      orderId,
      correlationId: `reads-${orderId}`,
      acceptedAt: new Date().toISOString(),
      order: {
        customerId: 'c-reads-3',
        currency: 'EUR',
        items: [{ sku: 'a', quantity: 2, unitPriceCents: 1250 }],
      },
    };
    // Delayed as a hand-back leaves it: two attempts failed and one snooze, all in its progress
    // (BullMQ's own `attemptsMade` stays 0), its next delivery attempt 3.
    const job = await orders.add(PLACE_ORDER_JOB, data, { jobId: orderId, delay: 60_000, attempts: 5 });
    try {
      await job.updateProgress({
        attempt: 3,
        snoozes: 1,
        lastError: 'payment service answered 500',
      } satisfies JobProgress);
      const res = await request(url(`/v1/orders/${orderId}`));
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({
        orderId,
        status: 'queued',
        attempts: 2,
        // The core's retries leave BullMQ's failedReason empty: the error rides in the progress.
        lastError: 'payment service answered 500',
        totalCents: 2500,
        updatedAt: null,
      });
    } finally {
      await job.remove();
    }
  });
});
