import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandQueues } from '../../shared/queue/names.ts';
import { eventually, testConfig } from '../support/env.ts';
import { request, sampleOrder } from '../support/http.ts';
import { startPlatform, type Platform } from '../support/platform.ts';

// Issue #20: with `*_KEEP_COMPLETED_SECONDS=0` a job leaves Redis the moment it completes. A read of an
// accepted order (or refund) asked the write model first and the queue second: when the worker
// decided it and its job was removed between those two reads, neither had it and the API answered 404.
// The window is made deterministic here: the command queue is paused, and the API's own queue read
// (BullMQ reads a job with HGETALL on the shared connection) first lets the real worker decide the
// command and remove its job, then reads. Projections do not run, so the read model never has it.
let platform: Platform;
let redis: Redis;
const url = (path: string) => `${platform.url}${path}`;
const queues = new Map<string, Queue>();

/** The test's own handle on a command queue, on its own connection (never through the hook). */
function queue(module: string): Queue {
  let q = queues.get(module);
  if (!q) {
    q = new Queue(commandQueues(module).commands, {
      connection: redis,
      prefix: platform.config.redis.queuePrefix,
    });
    queues.set(module, q);
  }
  return q;
}

/**
 * Before the API's next read of job `id` of `module`'s queue, runs `between` — after the API has
 * already looked in the read and write models. Resolves once the hook has fired.
 */
function beforeQueueRead(module: string, id: string, between: () => Promise<void>): () => boolean {
  const client = platform.rt.redis;
  const original = client.hgetall.bind(client);
  const key = `${platform.config.redis.queuePrefix}:${commandQueues(module).commands}:${id}`;
  let fired = false;
  const hooked = async (k: string) => {
    if (!fired && k === key) {
      fired = true;
      client.hgetall = original;
      await between();
    }
    return original(k);
  };
  client.hgetall = hooked as typeof client.hgetall;
  return () => fired;
}

/** Resumes `module`'s queue and waits until the worker decided `id` (`table`) and its job is gone. */
async function decideAndRemove(module: string, table: string, column: string, id: string): Promise<void> {
  await queue(module).resume();
  await eventually(
    async () =>
      (await platform.rt.pool.query(`SELECT 1 FROM ${table} WHERE ${column} = $1`, [id])).rowCount === 1 &&
      (await queue(module).getJob(id)) === undefined,
    { what: `${module} ${id} decided and its job removed (removeOnComplete)` },
  );
}

beforeAll(async () => {
  platform = await startPlatform(
    testConfig({ ORDERS_KEEP_COMPLETED_SECONDS: '0', REFUNDS_KEEP_COMPLETED_SECONDS: '0' }),
    { workers: ['orders', 'refunds'] },
  );
  redis = new Redis(platform.config.redis.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  for (const q of queues.values()) await q.close();
  redis?.disconnect();
  await platform?.close();
});

describe('an accepted command never reads as 404, even when its job is removed mid-read', () => {
  it('an order decided and removed from the queue between the write-model read and the queue read', async () => {
    await queue('orders').pause();
    const placed = await request(url('/v1/orders'), {
      method: 'POST',
      json: sampleOrder({ customerId: 'c-window' }),
    });
    expect(placed.status).toBe(202);
    const orderId = placed.body.orderId as string;
    expect(await queue('orders').getJob(orderId)).toBeDefined();

    const fired = beforeQueueRead('orders', orderId, () =>
      decideAndRemove('orders', 'orders', 'order_id', orderId),
    );
    const res = await request(url(`/v1/orders/${orderId}`));
    expect(fired()).toBe(true);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ orderId, status: 'completed', customerId: 'c-window' });
    const projected = await platform.rt.pool.query('SELECT 1 FROM order_view WHERE order_id = $1', [orderId]);
    expect(projected.rowCount).toBe(0); // answered from the write model, read after the queue

    // The batch read closes the same window.
    await queue('orders').pause();
    const second = await request(url('/v1/orders'), { method: 'POST', json: sampleOrder() });
    const secondId = second.body.orderId as string;
    const firedMany = beforeQueueRead('orders', secondId, () =>
      decideAndRemove('orders', 'orders', 'order_id', secondId),
    );
    const many = await request<{ orders: { orderId: string; status: string }[]; missing: string[] }>(
      url(`/v1/orders?ids=${secondId}`),
    );
    expect(firedMany()).toBe(true);
    expect(many.body).toEqual({ orders: [expect.objectContaining({ orderId: secondId })], missing: [] });
  });

  it('a refund decided and removed from the queue between the write-model read and the queue read', async () => {
    await queue('orders').resume();
    const placed = await request(url('/v1/orders'), { method: 'POST', json: sampleOrder() });
    const orderId = placed.body.orderId as string;
    await eventually(
      async () =>
        (
          await platform.rt.pool.query(`SELECT 1 FROM orders WHERE order_id = $1 AND status = 'completed'`, [
            orderId,
          ])
        ).rowCount === 1,
      { what: `order ${orderId} completed` },
    );

    await queue('refunds').pause();
    const asked = await request(url(`/v1/orders/${orderId}/refunds`), {
      method: 'POST',
      json: { amountCents: 500, reason: 'window' },
    });
    expect(asked.status).toBe(202);
    const refundId = asked.body.refundId as string;

    const fired = beforeQueueRead('refunds', refundId, () =>
      decideAndRemove('refunds', 'refunds', 'refund_id', refundId),
    );
    const res = await request(url(`/v1/refunds/${refundId}`));
    expect(fired()).toBe(true);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ refundId, orderId, status: 'completed', amountCents: 500 });

    const unknown = '00000000-0000-4000-8000-00000000beef';
    expect((await request(url(`/v1/refunds/${unknown}`))).status).toBe(404);
    expect((await request(url(`/v1/orders/${unknown}`))).status).toBe(404);
  });
});
